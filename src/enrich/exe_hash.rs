//! `process.exe_sha256`: the SHA-256 of the event's executable, computed off the processing thread.
//!
//! Why a background thread: hashing reads the whole file (tens of MiB for some programs) and the
//! processing thread must never wait on disk. It only asks the [`ExeHashes`] cache: a known path is
//! answered at once (its digest as last computed); an unknown one, or one not checked for
//! `exe_hash_recheck`, is queued for the hasher thread (bounded queue; when full the request is
//! dropped and counted, a later event asks again) and the event goes out without the member.
//!
//! The hasher keeps its own `lru` cache keyed by path + device + inode + mtime (+ size): a request
//! for a file whose metadata are unchanged is answered from it without reading, a changed file
//! (replaced by a package upgrade: new inode; rewritten in place: new mtime) is hashed again. Its
//! reads are bounded to `exe_hash_bytes_per_second` (it sleeps to stay under), so hashing never
//! competes with the daemon for the disk or a core beyond that.
//!
//! What is hashed is the path as the kernel reported it, opened in the daemon's mount namespace:
//! for a process in a container (known `process.container_id`) that path names another file, so no
//! hash is asked for. Off by default (`[enrich] exe_hash`); never in `replay` (the replaying host's
//! files are not the recorded machine's).

use std::collections::HashSet;
use std::io::Read;
use std::num::NonZeroUsize;
use std::os::unix::fs::MetadataExt;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

use super::worker::Lazy;

use sha2::{Digest, Sha256};

/// Bounds of the hasher (`[enrich] exe_hash_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashBounds {
    pub cache_size: usize,
    pub queue: usize,
    pub bytes_per_second: u64,
    pub recheck: Duration,
}

/// Counters, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HashStats {
    pub hits: u64,
    pub misses: u64,
    /// Requests not queued because the hasher's queue was full.
    pub queue_full: u64,
    pub answered: u64,
}

#[derive(Debug)]
struct Known {
    digest: Option<[u8; 32]>,
    checked: Instant,
}

type Answer = (Box<[u8]>, Option<[u8; 32]>);

/// Path → digest, answered without blocking (see the module doc).
pub struct ExeHashes {
    cache: lru::LruCache<Box<[u8]>, Known>,
    pending: HashSet<Box<[u8]>>,
    worker: Lazy<Box<[u8]>, Answer>,
    bounds: HashBounds,
    pub stats: HashStats,
}

impl std::fmt::Debug for ExeHashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExeHashes").field("len", &self.cache.len()).field("stats", &self.stats).finish()
    }
}

impl ExeHashes {
    /// A cache whose hasher thread starts at the first request.
    pub fn new(bounds: HashBounds) -> ExeHashes {
        let size = NonZeroUsize::new(bounds.cache_size).unwrap_or(NonZeroUsize::MIN);
        ExeHashes {
            cache: lru::LruCache::new(size),
            pending: HashSet::new(),
            worker: Lazy::default(),
            bounds,
            stats: HashStats::default(),
        }
    }

    /// Take the hasher's answers so far. Call once per event, before lookups.
    pub fn drain(&mut self, now: Instant) {
        let Some(answers) = self.worker.answers() else { return };
        while let Ok((path, digest)) = answers.try_recv() {
            self.pending.remove(&path);
            self.stats.answered += 1;
            self.cache.put(path, Known { digest, checked: now });
        }
    }

    /// The digest of `path`, if known now. Never blocks; a miss or an entry due for a check is
    /// queued.
    pub fn lookup(&mut self, path: &[u8], now: Instant) -> Option<[u8; 32]> {
        let due = match self.cache.get(path) {
            Some(k) => {
                self.stats.hits += 1;
                let digest = k.digest;
                if now.saturating_duration_since(k.checked) > self.bounds.recheck {
                    self.request(path);
                }
                return digest;
            }
            None => true,
        };
        if due {
            self.stats.misses += 1;
            self.request(path);
        }
        None
    }

    fn request(&mut self, path: &[u8]) {
        if self.pending.contains(path) {
            return;
        }
        if self.pending.len() >= self.bounds.queue.max(1) * 2 {
            self.stats.queue_full += 1;
            return;
        }
        let Some(requests) = self.requests() else { return };
        match requests.try_send(path.into()) {
            Ok(()) => {
                self.pending.insert(path.into());
            }
            Err(TrySendError::Full(_)) => {
                self.stats.queue_full += 1;
                if self.stats.queue_full.is_power_of_two() {
                    log::warn!(
                        "executable hasher is behind: {} requests not queued so far ([enrich] exe_hash_queue = {}, exe_hash_bytes_per_second = {}); hashes come on later events",
                        self.stats.queue_full,
                        self.bounds.queue,
                        self.bounds.bytes_per_second
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => self.worker.ended(),
        }
    }

    fn requests(&mut self) -> Option<&SyncSender<Box<[u8]>>> {
        let bounds = self.bounds;
        self.worker.requests("executable hasher", "no process.exe_sha256", || {
            let mut hasher = Hasher::new(bounds);
            let q = bounds.queue.max(1);
            super::worker::spawn("auditrelay-exehash", q, q * 2, move |path: Box<[u8]>| -> Answer {
                let digest = hasher.digest(&path);
                (path, digest)
            })
        })
    }

    /// Wait until every queued request is answered or `timeout` passes (tests, benchmarks).
    pub fn settle(&mut self, timeout: Duration) {
        let end = Instant::now() + timeout;
        while !self.pending.is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
            self.drain(Instant::now());
        }
    }
}

/// A file's identity for the hasher's cache: unchanged identity, unchanged content.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FileKey {
    path: Box<[u8]>,
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    size: u64,
}

/// The hasher thread's state: its cache and its rate budget.
struct Hasher {
    known: lru::LruCache<FileKey, [u8; 32]>,
    bytes_per_second: u64,
    window: Instant,
    spent: u64,
    buf: Vec<u8>,
}

impl Hasher {
    fn new(bounds: HashBounds) -> Hasher {
        let size = NonZeroUsize::new(bounds.cache_size).unwrap_or(NonZeroUsize::MIN);
        Hasher {
            known: lru::LruCache::new(size),
            bytes_per_second: bounds.bytes_per_second.max(1),
            window: Instant::now(),
            spent: 0,
            buf: vec![0; 64 << 10],
        }
    }

    /// The digest of the regular file at `path`, from the cache when its metadata are unchanged.
    fn digest(&mut self, path: &[u8]) -> Option<[u8; 32]> {
        let p = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
        let mut file = std::fs::File::open(p).ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        let key = FileKey {
            path: path.into(),
            dev: meta.dev(),
            ino: meta.ino(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            size: meta.size(),
        };
        if let Some(d) = self.known.get(&key) {
            return Some(*d);
        }
        let mut h = Sha256::new();
        loop {
            self.pace();
            let n = match file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("{}: not hashed: {e}", p.display());
                    return None;
                }
            };
            self.spent += n as u64;
            h.update(&self.buf[..n]);
        }
        let digest: [u8; 32] = h.finalize().into();
        self.known.put(key, digest);
        Some(digest)
    }

    /// Sleep while more was read than the budget allows since the window began.
    fn pace(&mut self) {
        let elapsed = self.window.elapsed();
        if elapsed > Duration::from_secs(1) {
            // A new window: what was spent in the last one carries over beyond its allowance.
            let allowed = (self.bytes_per_second as f64 * elapsed.as_secs_f64()) as u64;
            self.spent = self.spent.saturating_sub(allowed);
            self.window = Instant::now();
            return;
        }
        let allowed = (self.bytes_per_second as f64 * elapsed.as_secs_f64()) as u64;
        if self.spent > allowed {
            let wait = (self.spent - allowed) as f64 / self.bytes_per_second as f64;
            std::thread::sleep(Duration::from_secs_f64(wait.min(1.0)));
        }
    }
}

use std::os::unix::ffi::OsStrExt;

/// Lowercase hex of a digest.
pub fn hex_into(digest: &[u8; 32], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in digest {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> HashBounds {
        HashBounds { cache_size: 16, queue: 4, bytes_per_second: 64 << 20, recheck: Duration::from_millis(50) }
    }

    fn hex(d: [u8; 32]) -> String {
        let mut v = Vec::new();
        hex_into(&d, &mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn a_hash_comes_on_a_later_lookup_and_follows_a_changed_file() {
        let dir = std::env::temp_dir().join(format!("auditrelay-exehash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("prog");
        std::fs::write(&path, b"abc").unwrap();
        let p = path.as_os_str().as_bytes();
        let mut h = ExeHashes::new(bounds());
        assert_eq!(h.lookup(p, Instant::now()), None, "never blocks: the first event has none");
        h.settle(Duration::from_secs(10));
        let d = h.lookup(p, Instant::now()).expect("answered");
        // sha256("abc")
        assert_eq!(hex(d), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        // Replaced (new inode, new content): after the recheck interval the new digest comes.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"abcd").unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(h.lookup(p, Instant::now()), Some(d), "the old digest until the check is answered");
        h.settle(Duration::from_secs(10));
        let d2 = h.lookup(p, Instant::now()).unwrap();
        assert_eq!(hex(d2), "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_file_has_no_hash_and_the_queue_is_bounded() {
        let mut h = ExeHashes::new(HashBounds { queue: 1, ..bounds() });
        let now = Instant::now();
        for n in 0..10 {
            h.lookup(format!("/nonexistent/auditrelay/{n}").as_bytes(), now);
        }
        assert!(h.pending.len() <= 2, "{}", h.pending.len());
        assert!(h.stats.queue_full > 0);
        h.settle(Duration::from_secs(10));
        assert_eq!(h.lookup(b"/nonexistent/auditrelay/0", Instant::now()), None);
    }

    #[test]
    fn reads_are_paced_to_the_budget() {
        let dir = std::env::temp_dir().join(format!("auditrelay-exehash-pace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big");
        std::fs::write(&path, vec![7u8; 256 << 10]).unwrap();
        let mut hasher = Hasher::new(HashBounds { bytes_per_second: 512 << 10, ..bounds() });
        let t = Instant::now();
        assert!(hasher.digest(path.as_os_str().as_bytes()).is_some());
        // 256 KiB at 512 KiB/s: about half a second (the first chunk is free).
        assert!(t.elapsed() >= Duration::from_millis(300), "{:?}", t.elapsed());
        let t = Instant::now();
        assert!(hasher.digest(path.as_os_str().as_bytes()).is_some());
        assert!(t.elapsed() < Duration::from_millis(100), "unchanged metadata: from the cache");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
