//! User and group ids: `uid=0 auid=4294967295` → `0`, `"unset"`, and names through NSS.
//!
//! Why a background resolver: `getpwuid_r` goes wherever nsswitch.conf points (LDAP, SSSD,
//! winbind) and may take seconds. The processing thread must never wait on it, so it only asks
//! the [`NameCache`]: a hit (even one older than the TTL) is answered at once; a miss or a stale
//! entry queues the id for the resolver thread (bounded queue; when full the request is dropped and
//! counted, and a later event asks again) and the event goes out without that name. The answer
//! fills the cache, and later events carry the name. Negative answers (no such user) are cached
//! too, so an unknown id costs one lookup per TTL, not one per event.
//!
//! Bounds: `name_cache_size` entries (least recently used evicted), `name_queue` requests in
//! flight, entries re-resolved after `name_ttl`.
//!
//! Offline (`auditrelay replay`) the cache may block instead ([`NameCache::resolve_inline`]): a
//! miss or a stale entry is resolved on the calling thread before the lookup answers, so every
//! event that carries a resolvable id carries its name, and two replays of one input write the
//! same bytes. Only replay chooses it; the daemon's processing thread never waits on NSS.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

use super::worker::Lazy;

/// The kernel's "no id": `(uid_t)-1`, written as 4294967295 (and `-1` by some user-space tools).
pub const UNSET: u32 = u32::MAX;

/// An id as the kernel wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    Id(u32),
    /// 4294967295: never set (auid before login, ses outside a session).
    Unset,
}

impl Id {
    /// Parse a decimal id field; `None` when it is not a number (`?`, `(none)`).
    pub fn parse(text: &[u8]) -> Option<Id> {
        if text == b"-1" {
            return Some(Id::Unset);
        }
        match u32::try_from(super::parse_u64(text)?) {
            Ok(UNSET) => Some(Id::Unset),
            Ok(n) => Some(Id::Id(n)),
            Err(_) => None,
        }
    }

    pub fn get(self) -> Option<u32> {
        match self {
            Id::Id(n) => Some(n),
            Id::Unset => None,
        }
    }
}

/// Which database an id is looked up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    User,
    Group,
}

/// Resolves one id to a name, on the resolver thread. NSS in the daemon; a table in tests.
pub type Resolve = Box<dyn Fn(IdKind, u32) -> Option<String> + Send>;

/// NSS lookup through getpwuid_r / getgrgid_r (thread-safe).
pub fn nss(kind: IdKind, id: u32) -> Option<String> {
    use nix::unistd::{Gid, Group, Uid, User};
    match kind {
        IdKind::User => User::from_uid(Uid::from_raw(id)).ok().flatten().map(|u| u.name),
        IdKind::Group => Group::from_gid(Gid::from_raw(id)).ok().flatten().map(|g| g.name),
    }
}

/// Bounds of the name cache (`[enrich]` name_cache_size, name_ttl, name_queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheBounds {
    pub size: usize,
    pub ttl: Duration,
    pub queue: usize,
}

#[derive(Debug)]
struct Entry {
    name: Option<Box<str>>,
    fetched: Instant,
}

type Answer = (IdKind, u32, Option<String>);

/// Counters of the name cache, for status and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NameStats {
    /// Lookups answered from the cache (a stale entry too: it answers, and is asked again).
    pub hits: u64,
    /// Lookups of an id not in the cache.
    pub misses: u64,
    /// Requests handed to the resolver thread.
    pub queued: u64,
    /// Requests not queued because the resolver's queue was full.
    pub queue_full: u64,
    /// Answers taken into the cache (from the resolver thread, or resolved inline).
    pub resolved: u64,
    /// Entries pushed out of the full cache (least recently used first).
    pub evictions: u64,
}

/// Id → name, answered without blocking (see the module doc).
pub struct NameCache {
    cache: lru::LruCache<(IdKind, u32), Entry>,
    ttl: Duration,
    /// Ids queued and not answered yet (at most `queue` + answers in transit).
    pending: HashSet<(IdKind, u32)>,
    max_pending: usize,
    worker: Lazy<(IdKind, u32), Answer>,
    bounds: CacheBounds,
    resolve: Option<Resolve>,
    /// Resolve misses on the calling thread (replay only, see the module doc).
    inline: bool,
    pub stats: NameStats,
}

impl std::fmt::Debug for NameCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameCache").field("len", &self.cache.len()).field("stats", &self.stats).finish()
    }
}

impl NameCache {
    /// A cache whose resolver thread (started at the first miss) calls `resolve`.
    pub fn new(bounds: CacheBounds, resolve: Resolve) -> NameCache {
        let size = NonZeroUsize::new(bounds.size).unwrap_or(NonZeroUsize::MIN);
        NameCache {
            cache: lru::LruCache::new(size),
            ttl: bounds.ttl,
            pending: HashSet::new(),
            max_pending: bounds.queue.max(1) * 2,
            worker: Lazy::default(),
            bounds,
            resolve: Some(resolve),
            inline: false,
            stats: NameStats::default(),
        }
    }

    /// Resolve misses and stale entries on the calling thread, blocking until NSS answers, instead
    /// of in the background. For offline replay, where a reproducible output matters and waiting
    /// costs nothing; never for the daemon. Takes effect while the resolver thread has not been
    /// started (no lookup yet); after that the cache stays asynchronous (returns false).
    pub fn resolve_inline(&mut self) -> bool {
        self.inline = self.resolve.is_some();
        self.inline
    }

    /// Entries cached now (answers and "no such id" alike).
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Put an answer into the cache, counting the entry it pushes out, if any.
    fn store(
        cache: &mut lru::LruCache<(IdKind, u32), Entry>,
        stats: &mut NameStats,
        key: (IdKind, u32),
        name: Option<String>,
        now: Instant,
    ) {
        let entry = Entry { name: name.map(String::into_boxed_str), fetched: now };
        if let Some((old, _)) = cache.push(key, entry) {
            if old != key {
                stats.evictions += 1;
            }
        }
    }

    /// Take the resolver's answers so far into the cache. Call once per event, before lookups.
    pub fn drain(&mut self, now: Instant) {
        let Some(answers) = self.worker.answers() else { return };
        while let Ok((kind, id, name)) = answers.try_recv() {
            self.pending.remove(&(kind, id));
            self.stats.resolved += 1;
            Self::store(&mut self.cache, &mut self.stats, (kind, id), name, now);
        }
    }

    /// The name of `id`, if known now. Never blocks; a miss or stale entry is queued.
    pub fn lookup(&mut self, kind: IdKind, id: u32, now: Instant) -> Option<&str> {
        let key = (kind, id);
        if self.inline {
            return self.lookup_inline(key, now);
        }
        let stale = match self.cache.peek(&key) {
            Some(entry) => now.saturating_duration_since(entry.fetched) > self.ttl,
            None => {
                self.stats.misses += 1;
                self.request(key);
                return None;
            }
        };
        self.stats.hits += 1;
        if stale {
            self.request(key);
        }
        self.cache.get(&key).and_then(|e| e.name.as_deref())
    }

    /// [`NameCache::lookup`] when resolving inline: a miss or stale entry waits for the answer.
    fn lookup_inline(&mut self, key: (IdKind, u32), now: Instant) -> Option<&str> {
        let fresh = match self.cache.peek(&key) {
            Some(entry) => {
                self.stats.hits += 1;
                now.saturating_duration_since(entry.fetched) <= self.ttl
            }
            None => {
                self.stats.misses += 1;
                false
            }
        };
        if !fresh {
            if let Some(resolve) = &self.resolve {
                let name = resolve(key.0, key.1);
                self.stats.resolved += 1;
                Self::store(&mut self.cache, &mut self.stats, key, name, now);
            }
        }
        self.cache.get(&key).and_then(|e| e.name.as_deref())
    }

    fn request(&mut self, key: (IdKind, u32)) {
        if self.pending.contains(&key) {
            return;
        }
        if self.pending.len() >= self.max_pending {
            self.stats.queue_full += 1;
            return;
        }
        let Some(requests) = self.requests() else { return };
        match requests.try_send(key) {
            Ok(()) => {
                self.stats.queued += 1;
                self.pending.insert(key);
            }
            Err(TrySendError::Full(_)) => {
                self.stats.queue_full += 1;
                if self.stats.queue_full.is_power_of_two() {
                    log::warn!(
                        "user/group name resolver is behind: {} lookups not queued so far ([enrich] name_queue = {}); names are filled in on later events",
                        self.stats.queue_full,
                        self.bounds.queue
                    );
                }
            }
            // The resolver thread is gone (it panicked in NSS); names stay as cached.
            Err(TrySendError::Disconnected(_)) => self.worker.ended(),
        }
    }

    /// The request queue, starting the resolver thread on first use.
    fn requests(&mut self) -> Option<&SyncSender<(IdKind, u32)>> {
        let (resolve, q) = (&mut self.resolve, self.bounds.queue);
        self.worker.requests("user/group name resolver", "events carry ids without names", || {
            let resolve = resolve.take().ok_or_else(|| std::io::Error::other("no resolver"))?;
            super::worker::spawn("auditrelay-names", q, q, move |(kind, id): (IdKind, u32)| -> Answer {
                (kind, id, resolve(kind, id))
            })
        })
    }

    /// Wait until every queued lookup is answered (tests, and replay before its last events), at
    /// most `limit`. The processing thread of the daemon never calls this.
    pub fn settle(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.pending.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            self.drain(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn ids_parse_with_unset() {
        assert_eq!(Id::parse(b"0"), Some(Id::Id(0)));
        assert_eq!(Id::parse(b"1000"), Some(Id::Id(1000)));
        assert_eq!(Id::parse(b"4294967295"), Some(Id::Unset));
        assert_eq!(Id::parse(b"-1"), Some(Id::Unset));
        assert_eq!(Id::parse(b"4294967296"), None);
        assert_eq!(Id::parse(b"?"), None);
        assert_eq!(Id::parse(b""), None);
    }

    fn bounds() -> CacheBounds {
        CacheBounds { size: 4, ttl: Duration::from_secs(60), queue: 2 }
    }

    #[test]
    fn a_miss_is_answered_on_a_later_lookup_and_negatives_are_cached() {
        let calls = Arc::new(Mutex::new(0));
        let counted = calls.clone();
        let mut cache = NameCache::new(
            bounds(),
            Box::new(move |kind, id| {
                *counted.lock().unwrap() += 1;
                (kind == IdKind::User && id == 0).then(|| "root".to_string())
            }),
        );
        let now = Instant::now();
        assert_eq!(cache.lookup(IdKind::User, 0, now), None, "first lookup never waits");
        assert_eq!(cache.lookup(IdKind::User, 7, now), None);
        cache.settle(Duration::from_secs(5));
        assert_eq!(cache.lookup(IdKind::User, 0, now), Some("root"));
        assert_eq!(cache.lookup(IdKind::User, 7, now), None);
        assert_eq!(*calls.lock().unwrap(), 2, "the unknown id was not looked up again");
        assert_eq!(cache.stats.hits, 2);
    }

    #[test]
    fn a_slow_resolver_never_blocks_and_the_queue_is_bounded() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let waiting = gate.clone();
        let mut cache = NameCache::new(
            bounds(),
            Box::new(move |_, id| {
                drop(waiting.lock());
                Some(format!("u{id}"))
            }),
        );
        let started = Instant::now();
        for id in 0..100 {
            assert_eq!(cache.lookup(IdKind::User, id, Instant::now()), None);
        }
        assert!(started.elapsed() < Duration::from_secs(1), "lookups did not wait for NSS");
        assert!(cache.stats.queue_full > 0);
        assert!(cache.pending.len() <= cache.max_pending);
        drop(held);
        cache.settle(Duration::from_secs(5));
        assert_eq!(cache.lookup(IdKind::User, 0, Instant::now()), Some("u0"));
    }

    #[test]
    fn stale_entries_answer_and_are_refreshed() {
        let generation = Arc::new(Mutex::new(0));
        let g = generation.clone();
        let mut cache = NameCache::new(
            CacheBounds { size: 4, ttl: Duration::from_millis(10), queue: 2 },
            Box::new(move |_, _| Some(format!("v{}", *g.lock().unwrap()))),
        );
        let t0 = Instant::now();
        cache.lookup(IdKind::Group, 5, t0);
        cache.settle(Duration::from_secs(5));
        assert_eq!(cache.lookup(IdKind::Group, 5, t0), Some("v0"));
        *generation.lock().unwrap() = 1;
        let later = t0 + Duration::from_secs(1);
        assert_eq!(cache.lookup(IdKind::Group, 5, later), Some("v0"), "stale answers at once");
        cache.settle(Duration::from_secs(5));
        assert_eq!(cache.lookup(IdKind::Group, 5, later), Some("v1"));
    }

    #[test]
    fn inline_resolution_answers_the_first_lookup_and_counts() {
        let mut cache = NameCache::new(
            CacheBounds { size: 2, ttl: Duration::from_secs(60), queue: 2 },
            Box::new(|_, id| (id < 10).then(|| format!("u{id}"))),
        );
        assert!(cache.resolve_inline());
        let now = Instant::now();
        assert_eq!(cache.lookup(IdKind::User, 0, now), Some("u0"), "the first lookup waits for the answer");
        assert_eq!(cache.lookup(IdKind::User, 0, now), Some("u0"));
        assert_eq!(cache.lookup(IdKind::User, 11, now), None);
        assert_eq!(cache.lookup(IdKind::User, 1, now), Some("u1"));
        assert_eq!(cache.len(), 2);
        let s = cache.stats;
        assert_eq!((s.hits, s.misses, s.resolved, s.queued, s.queue_full, s.evictions), (1, 3, 3, 0, 0, 1));
        assert!(cache.worker.answers().is_none(), "no resolver thread");
    }

    #[test]
    fn background_lookups_count_queued_and_evictions() {
        let mut cache = NameCache::new(
            CacheBounds { size: 1, ttl: Duration::from_secs(60), queue: 4 },
            Box::new(|_, id| Some(format!("u{id}"))),
        );
        let now = Instant::now();
        cache.lookup(IdKind::User, 1, now);
        cache.lookup(IdKind::User, 2, now);
        cache.settle(Duration::from_secs(5));
        assert_eq!(cache.stats.queued, 2);
        assert_eq!(cache.stats.evictions, 1, "a cache of one entry kept the later answer");
        assert_eq!(cache.len(), 1);
        assert!(!cache.resolve_inline(), "too late once the resolver thread runs");
    }

    #[test]
    fn nss_knows_root() {
        assert_eq!(nss(IdKind::User, 0).as_deref(), Some("root"));
        assert_eq!(nss(IdKind::Group, 0).as_deref(), Some("root"));
    }
}
