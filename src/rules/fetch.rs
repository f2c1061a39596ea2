//! Centrally managed rule sets: fetch an http(s) rule source with ETag revalidation, an optional
//! pinned SHA-256, a timeout and a size bound, and keep the last good copy on disk.
//!
//! Cache layout (one pair per URL, named by the SHA-256 of the URL): `<hash>.rules` is the last
//! body that passed its pin, `<hash>.etag` the server's ETag for it. Both are written to a
//! temporary file and renamed, so a crash never leaves a half-written cache.
//!
//! Outcomes: 200 → the new body (pin checked, then cached); 304 → the cached body; any transport
//! error or other status → the cached body with the reason (this is what makes boot work while the
//! server is down), or an error when there is no cache. A body that does not match its pin never
//! touches the cache; the cached copy, which did match, is served instead (counted as a pin
//! mismatch and as served from cache). An empty cached body counts as no cache: it is what a crash
//! between create and write leaves, and loading it would leave the host without rules. Every
//! fallback and failure is counted in [`FetchStats`] so the daemon can log and export it.
//!
//! Redirects are followed here, not by the HTTP client, at most [`MAX_REDIRECTS`] hops, and never
//! from https to plain http (see [`redirect_target`]): a pinless https source must stay https end
//! to end. The client of an https source is also built https-only, so no hop can be plain http.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::rules::data::hex;
use crate::rules::source::MAX_SOURCE_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: fetch failed ({detail}) and no cached copy exists")]
    Unavailable { url: String, detail: String },
    #[error("{url}: larger than {MAX_SOURCE_BYTES} bytes")]
    TooLarge { url: String },
    #[error("{url}: sha256 {got} does not match the pinned {expected}; keeping the current rules")]
    Pin { url: String, expected: String, got: String },
    #[error("{url}: the rule set is not UTF-8 text")]
    NotUtf8 { url: String },
    #[error("{path}: rule cache: {source}")]
    Cache { path: PathBuf, source: std::io::Error },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// 200: a new body from the server.
    Fresh,
    /// 304: the server confirmed the cached body.
    NotModified,
    /// The server could not be used; this is the last good copy.
    Cache { reason: String },
}

#[derive(Clone, Debug)]
pub struct Fetched {
    pub url: String,
    pub text: String,
    pub sha256: String,
    pub origin: Origin,
}

/// Counters for logs and metrics.
#[derive(Debug, Default)]
pub struct FetchStats {
    pub fetched: AtomicU64,
    pub not_modified: AtomicU64,
    pub served_from_cache: AtomicU64,
    pub failed: AtomicU64,
    pub pin_mismatches: AtomicU64,
}

/// Redirect hops followed for one fetch.
pub const MAX_REDIRECTS: usize = 5;

pub struct Fetcher {
    agent: ureq::Agent,
    /// For https sources: refuses any plain-http connection, whatever the redirects say.
    https_agent: ureq::Agent,
    cache_dir: Option<PathBuf>,
    pub stats: FetchStats,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(Sha256::digest(bytes).as_slice())
}

/// Write to a temporary file, fsync it, rename over `path`: after a crash `path` holds the old or
/// the new bytes, never an empty or half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let io = |source| FetchError::Cache { path: path.to_path_buf(), source };
    // 0600, not through a symlink; the rename replaces a link at `path`, never follows it.
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(crate::file_trust::NO_FOLLOW)
            .open(&tmp)
            .map_err(io)?
    };
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Where a redirect from `from` to `location` (absolute, `//host/…`, `/path` or relative) leads,
/// or why it is not followed: never from https to anything but https.
pub fn redirect_target(from: &str, location: &str) -> Result<String, String> {
    let location = location.trim();
    let scheme_end = from.find("://").map_or(0, |i| i + 3);
    let origin_end = from[scheme_end..].find('/').map_or(from.len(), |i| scheme_end + i);
    // `scheme:` before any `/`, `?` or `#` makes it absolute (RFC 3986), whatever the scheme.
    let has_scheme = location.split_once(':').is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    let target = if has_scheme {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{}{rest}", &from[..scheme_end])
    } else if location.starts_with('/') {
        format!("{}{location}", &from[..origin_end])
    } else {
        let path = &from[..from.find(['?', '#']).unwrap_or(from.len())];
        let dir_end = path[origin_end..].rfind('/').map_or(path.len(), |i| origin_end + i);
        format!("{}/{location}", &path[..dir_end])
    };
    if !is_url(&target) {
        return Err(format!("redirect to {target}: not an http(s) URL"));
    }
    if from.starts_with("https://") && !target.starts_with("https://") {
        return Err(format!("redirect from {from} to {target}: https to plain http is never followed"));
    }
    Ok(target)
}

impl Fetcher {
    /// `cache_dir: None` fetches without keeping a copy (`rules check` of a URL).
    pub fn new(timeout: Duration, cache_dir: Option<PathBuf>) -> Fetcher {
        let config = |https_only: bool| {
            ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .http_status_as_error(false)
                .max_redirects(0)
                .max_redirects_will_error(false)
                .https_only(https_only)
                .build()
                .into()
        };
        Fetcher { agent: config(false), https_agent: config(true), cache_dir, stats: FetchStats::default() }
    }

    fn cache_paths(&self, url: &str) -> Option<(PathBuf, PathBuf)> {
        let dir = self.cache_dir.as_ref()?;
        let name = sha256_hex(url.as_bytes());
        Some((dir.join(format!("{name}.rules")), dir.join(format!("{name}.etag"))))
    }

    fn cached(&self, url: &str) -> Option<(Vec<u8>, Option<String>)> {
        let (body, etag) = self.cache_paths(url)?;
        let body = std::fs::read(body).ok().filter(|b| !b.is_empty())?;
        let etag = std::fs::read_to_string(etag).ok().filter(|e| !e.trim().is_empty());
        Some((body, etag))
    }

    fn finish(&self, url: &str, body: Vec<u8>, pin: Option<&str>, origin: Origin) -> Result<Fetched, FetchError> {
        let sha256 = sha256_hex(&body);
        if let Some(expected) = pin {
            if !expected.eq_ignore_ascii_case(&sha256) {
                self.stats.pin_mismatches.fetch_add(1, Ordering::Relaxed);
                return Err(FetchError::Pin { url: url.to_string(), expected: expected.to_string(), got: sha256 });
            }
        }
        let text = String::from_utf8(body).map_err(|_| FetchError::NotUtf8 { url: url.to_string() })?;
        Ok(Fetched { url: url.to_string(), text, sha256, origin })
    }

    fn fall_back_to_cache(&self, url: &str, pin: Option<&str>, reason: String) -> Result<Fetched, FetchError> {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        match self.cached(url) {
            Some((body, _)) => {
                self.stats.served_from_cache.fetch_add(1, Ordering::Relaxed);
                self.finish(url, body, pin, Origin::Cache { reason })
            }
            None => Err(FetchError::Unavailable { url: url.to_string(), detail: reason }),
        }
    }

    /// Fetch `url` (revalidating the cached copy), checking `pin` when given.
    pub fn fetch(&self, url: &str, pin: Option<&str>) -> Result<Fetched, FetchError> {
        let cached = self.cached(url);
        let agent = if url.starts_with("https://") { &self.https_agent } else { &self.agent };
        let mut at = url.to_string();
        let mut hops = 0;
        let mut resp = loop {
            let mut req = agent.get(&at);
            if let Some((_, Some(etag))) = &cached {
                req = req.header("If-None-Match", etag.trim());
            }
            let resp = match req.call() {
                Ok(r) => r,
                Err(e) => return self.fall_back_to_cache(url, pin, e.to_string()),
            };
            if !resp.status().is_redirection() || resp.status().as_u16() == 304 {
                break resp;
            }
            let Some(location) = resp.headers().get("location").and_then(|v| v.to_str().ok()) else {
                return self.fall_back_to_cache(url, pin, format!("HTTP status {} without Location", resp.status()));
            };
            hops += 1;
            if hops > MAX_REDIRECTS {
                return self.fall_back_to_cache(url, pin, format!("more than {MAX_REDIRECTS} redirects"));
            }
            match redirect_target(&at, location) {
                Ok(next) => at = next,
                Err(reason) => return self.fall_back_to_cache(url, pin, reason),
            }
        };
        match resp.status().as_u16() {
            304 => match cached {
                Some((body, _)) => {
                    self.stats.not_modified.fetch_add(1, Ordering::Relaxed);
                    self.finish(url, body, pin, Origin::NotModified)
                }
                None => self.fall_back_to_cache(url, pin, "304 without a cached copy".into()),
            },
            200 => {
                let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
                let mut body = Vec::new();
                let read = resp.body_mut().as_reader().take(MAX_SOURCE_BYTES + 1).read_to_end(&mut body);
                if let Err(e) = read {
                    return self.fall_back_to_cache(url, pin, format!("reading the body: {e}"));
                }
                if body.len() as u64 > MAX_SOURCE_BYTES {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    return Err(FetchError::TooLarge { url: url.to_string() });
                }
                let fetched = match self.finish(url, body, pin, Origin::Fresh) {
                    Err(e @ FetchError::Pin { .. }) => {
                        // The server's body is not the pinned one; the cached copy passed the same pin.
                        return match self.cached(url) {
                            Some((cached, _)) => {
                                self.stats.served_from_cache.fetch_add(1, Ordering::Relaxed);
                                self.finish(url, cached, pin, Origin::Cache { reason: e.to_string() })
                            }
                            None => Err(e),
                        };
                    }
                    other => other?,
                };
                self.stats.fetched.fetch_add(1, Ordering::Relaxed);
                if let Some((body_path, etag_path)) = self.cache_paths(url) {
                    if let Some(dir) = &self.cache_dir {
                        std::fs::create_dir_all(dir)
                            .map_err(|source| FetchError::Cache { path: dir.clone(), source })?;
                    }
                    write_atomic(&body_path, fetched.text.as_bytes())?;
                    match etag {
                        Some(e) => write_atomic(&etag_path, e.as_bytes())?,
                        None => {
                            let _ = std::fs::remove_file(&etag_path);
                        }
                    }
                }
                Ok(fetched)
            }
            status => self.fall_back_to_cache(url, pin, format!("HTTP status {status}")),
        }
    }
}

impl Fetcher {
    /// The cached copy of `url` without asking the server (start-up before the network is used):
    /// pin checked; an error when there is none.
    pub fn cached_copy(&self, url: &str, pin: Option<&str>) -> Result<Fetched, FetchError> {
        match self.cached(url) {
            Some((body, _)) => {
                self.stats.served_from_cache.fetch_add(1, Ordering::Relaxed);
                self.finish(url, body, pin, Origin::Cache { reason: "not fetched yet".into() })
            }
            None => Err(FetchError::Unavailable { url: url.to_string(), detail: "not fetched yet".into() }),
        }
    }
}

pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// A one-connection-at-a-time HTTP server: serves `body` with ETag "v1", answers 304 to
    /// If-None-Match: "v1", and records the requests it saw.
    fn serve(body: &'static str, requests: usize) -> (String, Arc<Mutex<Vec<String>>>, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/web.rules", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let handle = std::thread::spawn(move || {
            for _ in 0..requests {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let revalidate = head.to_ascii_lowercase().contains("if-none-match: \"v1\"");
                log.lock().unwrap().push(head);
                let mut stream = stream;
                if revalidate {
                    write!(stream, "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n").unwrap();
                } else {
                    write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .unwrap();
                }
            }
        });
        (url, seen, handle)
    }

    /// Regression: https→http redirects were followed, so a pinless https source could be served
    /// over plain http by whoever could answer the redirect.
    #[test]
    fn redirects_never_go_from_https_to_http() {
        let from = "https://rules.example.org/dir/web.rules?v=1";
        assert!(redirect_target(from, "http://rules.example.org/web.rules").unwrap_err().contains("never followed"));
        assert!(redirect_target(from, "//evil.example/web.rules").is_ok(), "scheme-relative stays https");
        assert_eq!(redirect_target(from, "//m.example/x").unwrap(), "https://m.example/x");
        assert_eq!(redirect_target(from, "/other.rules").unwrap(), "https://rules.example.org/other.rules");
        assert_eq!(redirect_target(from, "new.rules").unwrap(), "https://rules.example.org/dir/new.rules");
        assert_eq!(redirect_target("https://h", "a.rules").unwrap(), "https://h/a.rules");
        assert!(redirect_target(from, "ftp://x/y").is_err());
        assert!(redirect_target(from, "file:///etc/passwd").is_err());
        // Upgrades and http → http (a pinned source) are followed.
        assert_eq!(redirect_target("http://h/a", "https://h/b").unwrap(), "https://h/b");
        assert_eq!(redirect_target("http://h/a", "/b").unwrap(), "http://h/b");
    }

    /// A server that answers every request with `response` (one connection per request).
    fn answer(response: String, requests: usize) -> (String, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            for _ in 0..requests {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                    line.clear();
                }
                let mut stream = stream;
                stream.write_all(response.as_bytes()).unwrap();
            }
        });
        (base, handle)
    }

    #[test]
    fn a_redirect_is_followed_and_its_body_pinned() {
        let body = "-w /etc/hosts -p wa -k moved\n";
        let (target, t) =
            answer(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()), 1);
        let (from, f) = answer(
            format!("HTTP/1.1 302 Found\r\nLocation: {target}/moved.rules\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            1,
        );
        let fetcher = Fetcher::new(Duration::from_secs(5), None);
        let got = fetcher.fetch(&format!("{from}/web.rules"), Some(&sha256_hex(body.as_bytes()))).unwrap();
        assert_eq!(got.text, body);
        t.join().unwrap();
        f.join().unwrap();
    }

    /// Regression: a body that did not match the pin made boot fail although the cached copy,
    /// which did match, was at hand; and an empty cache file (a crash) was served as a rule set.
    #[test]
    fn pin_mismatch_serves_the_pinned_cached_copy_and_empty_cache_is_none() {
        let good = "-w /etc/hosts -p wa -k good\n";
        let dir = std::env::temp_dir().join(format!("auditrelay-fetch-pin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let evil = "-e 0\n";
        let (base, server) =
            answer(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{evil}", evil.len()), 2);
        let url = format!("{base}/web.rules");
        let f = Fetcher::new(Duration::from_secs(5), Some(dir.clone()));
        let (body_path, etag_path) = f.cache_paths(&url).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&body_path, good).unwrap();
        std::fs::write(&etag_path, "").unwrap();
        let pin = sha256_hex(good.as_bytes());
        let got = f.fetch(&url, Some(&pin)).unwrap();
        assert_eq!(got.text, good);
        assert!(
            matches!(&got.origin, Origin::Cache { reason } if reason.contains("does not match")),
            "{:?}",
            got.origin
        );
        assert_eq!(f.stats.pin_mismatches.load(Ordering::Relaxed), 1);
        assert_eq!(std::fs::read_to_string(&body_path).unwrap(), good, "the cache is untouched");
        std::fs::write(&body_path, "").unwrap();
        assert!(f.cached_copy(&url, None).is_err(), "an empty cached body is no copy");
        assert!(matches!(f.fetch(&url, Some(&pin)), Err(FetchError::Pin { .. })));
        server.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn etag_revalidation_pin_and_cache_fallback() {
        let body = "-w /etc/hosts -p wa -k web\n";
        let (url, seen, server) = serve(body, 3);
        let dir = std::env::temp_dir().join(format!("auditrelay-fetch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let f = Fetcher::new(Duration::from_secs(5), Some(dir.clone()));
        let pin = sha256_hex(body.as_bytes());

        let first = f.fetch(&url, Some(&pin)).unwrap();
        assert_eq!(first.origin, Origin::Fresh);
        assert_eq!(first.text, body);

        let second = f.fetch(&url, Some(&pin)).unwrap();
        assert_eq!(second.origin, Origin::NotModified);
        assert_eq!(second.text, body);
        assert!(seen.lock().unwrap()[1].to_ascii_lowercase().contains("if-none-match: \"v1\""));

        // A wrong pin is refused and leaves the cache alone.
        let wrong = "0".repeat(64);
        let err = Fetcher::new(Duration::from_secs(5), None).fetch(&url, Some(&wrong)).unwrap_err();
        assert!(matches!(err, FetchError::Pin { .. }), "{err}");
        server.join().unwrap();

        // Server gone: the last good copy is served, and counted.
        let third = f.fetch(&url, Some(&pin)).unwrap();
        assert!(matches!(third.origin, Origin::Cache { .. }), "{:?}", third.origin);
        assert_eq!(third.text, body);
        assert_eq!(f.stats.served_from_cache.load(Ordering::Relaxed), 1);

        // No cache and no server: an error naming the URL.
        let err = Fetcher::new(Duration::from_secs(5), None).fetch(&url, None).unwrap_err();
        assert!(matches!(err, FetchError::Unavailable { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
