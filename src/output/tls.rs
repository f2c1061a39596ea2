//! Connecting a stream sink: TCP, optionally wrapped in TLS from the first byte (RFC 5425 syslog
//! over TLS, RELP over TLS as imrelp `tls="on"`).
//!
//! TLS is rustls with the ring provider (no cmake/nasm at build time). Trust is explicit: the CA
//! file is required and the system store is not consulted, because an audit trail should go only to
//! the receiver the operator named. The server's certificate must match `server_name` (default: the
//! host part of `address`; an IP address is matched against IP SANs). A client certificate is
//! presented when `cert_file` and `key_file` are both set (imrelp `tls.authMode` needs one).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the CA certificate(s) that signed the receiver's certificate.
    pub ca_file: PathBuf,
    /// PEM client certificate chain, for receivers that authenticate clients.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Name the receiver's certificate must carry; default: the host part of `address`.
    pub server_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read PEM: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{path}: no certificate found")]
    NoCertificate { path: PathBuf },
    #[error("tls: cert_file and key_file must be set together")]
    HalfClientAuth,
    #[error("tls: invalid server name {name:?}")]
    ServerName { name: String },
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A connected byte stream, plain or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
pub type BoxStream = Box<dyn Stream>;

/// A connected stream and the raw socket under it (for `SIOCOUTQ`, see `tcp.rs`); the fd is valid
/// as long as `stream` lives.
pub struct Connected {
    pub stream: BoxStream,
    pub fd: RawFd,
}

/// Where and how to connect; built once per sink from config, used for every reconnect.
#[derive(Clone)]
pub struct Connector {
    address: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
}

/// `host` of `host:port` or `[v6]:port`.
pub fn host_of(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            return &rest[..end];
        }
    }
    address.rsplit_once(':').map_or(address, |(h, _)| h)
}

fn load_certs(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Pem { path: path.clone(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.clone() });
    }
    Ok(certs)
}

pub fn client_config(cfg: &TlsConfig) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(&cfg.ca_file)? {
        roots.add(cert)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match (&cfg.cert_file, &cfg.key_file) {
        (Some(cert), Some(key)) => {
            let chain = load_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| TlsError::Pem { path: key.clone(), message: e.to_string() })?;
            builder.with_client_auth_cert(chain, key)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(TlsError::HalfClientAuth),
    };
    Ok(config)
}

impl Connector {
    pub fn new(address: &str, tls: Option<&TlsConfig>, connect_timeout: Duration) -> Result<Connector, TlsError> {
        let tls = match tls {
            None => None,
            Some(cfg) => {
                let name = cfg.server_name.clone().unwrap_or_else(|| host_of(address).to_string());
                let server_name = ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName { name })?;
                Some((TlsConnector::from(Arc::new(client_config(cfg)?)), server_name))
            }
        };
        Ok(Connector { address: address.to_string(), tls, connect_timeout })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Resolve (again, so DNS changes are followed), connect, and do the TLS handshake, all within
    /// the connect timeout.
    pub async fn connect(&self) -> io::Result<Connected> {
        let fut = async {
            let tcp = TcpStream::connect(self.address.as_str()).await?;
            tcp.set_nodelay(true)?;
            let fd = tcp.as_raw_fd();
            let stream = match &self.tls {
                None => Box::new(tcp) as BoxStream,
                Some((connector, name)) => Box::new(connector.connect(name.clone(), tcp).await?) as BoxStream,
            };
            Ok(Connected { stream, fd })
        };
        match tokio::time::timeout(self.connect_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn host_parts() {
        assert_eq!(host_of("127.0.0.1:2514"), "127.0.0.1");
        assert_eq!(host_of("[::1]:2514"), "::1");
        assert_eq!(host_of("logs.example.org:6514"), "logs.example.org");
    }

    #[test]
    fn missing_ca_file_is_an_error_naming_it() {
        let cfg =
            TlsConfig { ca_file: "/nonexistent/ca.pem".into(), cert_file: None, key_file: None, server_name: None };
        let err = client_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn cert_without_key_rejected() {
        let dir = std::env::temp_dir().join(format!("auditrelay-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A syntactically valid (self-signed, throwaway) certificate is not needed to reach the check:
        // the CA file is read first, so give it one made by the test helper when openssl exists.
        let ca = dir.join("ca.pem");
        let ok = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=t"])
            .arg("-keyout")
            .arg(dir.join("ca.key"))
            .arg("-out")
            .arg(&ca)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        // tests/run-all.sh installs openssl; a test that cannot run fails, it never passes.
        assert!(ok, "openssl req failed or is not installed");
        let cfg = TlsConfig { ca_file: ca.clone(), cert_file: Some(ca), key_file: None, server_name: None };
        assert!(matches!(client_config(&cfg), Err(TlsError::HalfClientAuth)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
