//! Outputs: sinks that take events from the spool and report what the receiver acknowledged.
//!
//! Every sink runs as its own task fed by [`delivery::Delivery`] values through a bounded channel and
//! answers with cumulative acknowledgements; what "acknowledged" means is said in each sink's docs.

pub mod delivery;

// Spool-side: delivery driver, shipper, file and stdout sinks.

// Network sinks: relp, syslog (RFC 5424 + RFC 6587), tcp, udp, unix, tls.
pub mod backoff;
pub mod netstats;
pub mod relp;
pub mod syslog;
pub mod tcp;
pub mod tls;
pub mod truncate;
pub mod udp;
pub mod units;
pub mod unix;
