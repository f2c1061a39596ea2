//! auditrelay: the user-space half of Linux audit.
//!
//! ```text
//! kernel ──netlink──▶ netlink::reader (own thread, only receives)
//!        ──bounded channel──▶ record::parse ──▶ reassemble (EventId → Event)
//!        ──▶ enrich (decoded members beside the raw records) ──▶ format (JSON, one reused buffer) ──▶ spool (append) ──▶ output sinks (acked)
//! control plane: rules (auditctl syntax ⇄ audit_rule_data), netlink::client (status, pid, rules)
//! self-report: logging (one logger), telemetry (one snapshot → control socket, metrics, summary)
//! ```
//!
//! Parse through format is plain synchronous code, testable without a runtime; threads and tokio
//! live at the edges (netlink reader, sinks, signals, timers).

pub mod cli;
pub mod config;
pub mod daemon;
pub mod enrich;
pub mod file_trust;
pub mod filter;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
mod hash;
pub mod logging;
pub mod loss;
pub mod netlink;
pub mod output;
pub mod reassemble;
pub mod record;
pub mod replay;
pub mod rules;
pub mod spool;
pub mod telemetry;
pub mod units;
