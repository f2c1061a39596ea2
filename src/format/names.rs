//! User and group names for the derived formats (go-audit's `uid_map`, ECS `user.*.name`, the
//! ENRICHED audit.log part), from NSS through a bounded LRU cache with a TTL.
//!
//! Why here and not only in enrichment: these formats must work on native lines written without
//! schema v2's `user.*_name` members (before enrichment existed, or with it off). When those
//! members are present the formats use them and never ask NSS.
//!
//! Where it runs: in an output's pump thread, never on the processing thread or the async runtime,
//! so a slow NSS source (LDAP) slows only that output's conversion, which the spool absorbs.
//! Bounds: at most `capacity` ids per kind are cached (least recently used evicted); an answer,
//! including "no such user", is kept for [`TTL`] and then asked again.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;

/// Ids cached per kind (users, groups) by default.
pub const DEFAULT_CAPACITY: usize = 4096;
/// How long an answer is trusted.
pub const TTL: Duration = Duration::from_secs(600);

/// The audit "unset" id (`(uid_t)-1`).
pub const UNSET: u32 = u32::MAX;

enum Source {
    System,
    Fixed(Vec<(u32, String)>),
}

/// See the module docs.
pub struct Names {
    source: Source,
    users: LruCache<u32, (Option<Box<str>>, Instant)>,
    groups: LruCache<u32, (Option<Box<str>>, Instant)>,
    /// NSS lookups made (cache misses), for tests and stats.
    pub lookups: u64,
}

impl Names {
    /// Resolve through the system's NSS (`getpwuid_r`, `getgrgid_r`).
    pub fn system(capacity: usize) -> Names {
        Names::new(Source::System, capacity)
    }

    /// A fixed table of users (also used for groups): for tests and benches, no NSS.
    pub fn fixed(entries: &[(u32, &str)]) -> Names {
        Names::new(Source::Fixed(entries.iter().map(|(i, n)| (*i, n.to_string())).collect()), 64)
    }

    fn new(source: Source, capacity: usize) -> Names {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Names { source, users: LruCache::new(cap), groups: LruCache::new(cap), lookups: 0 }
    }

    /// The name of user `uid`, if it has one.
    pub fn user(&mut self, uid: u32) -> Option<&str> {
        self.cached(uid, false)
    }

    /// The name of group `gid`, if it has one.
    pub fn group(&mut self, gid: u32) -> Option<&str> {
        self.cached(gid, true)
    }

    fn cached(&mut self, id: u32, group: bool) -> Option<&str> {
        let now = Instant::now();
        let cache = if group { &mut self.groups } else { &mut self.users };
        let fresh = cache.peek(&id).is_some_and(|(_, at)| now.duration_since(*at) < TTL);
        if !fresh {
            self.lookups += 1;
            let name = match &self.source {
                Source::System => lookup(id, group),
                Source::Fixed(t) => t.iter().find(|(i, _)| *i == id).map(|(_, n)| n.clone()),
            };
            let cache = if group { &mut self.groups } else { &mut self.users };
            cache.put(id, (name.map(String::into_boxed_str), now));
        }
        let cache = if group { &mut self.groups } else { &mut self.users };
        cache.get(&id).and_then(|(n, _)| n.as_deref())
    }
}

fn lookup(id: u32, group: bool) -> Option<String> {
    if group {
        nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(id)).ok().flatten().map(|g| g.name)
    } else {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(id)).ok().flatten().map(|u| u.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_names_resolve_root_and_cache_misses() {
        let mut n = Names::system(2);
        assert_eq!(n.user(0), Some("root"));
        assert_eq!(n.group(0), Some("root"));
        assert_eq!(n.user(3_999_999_999), None);
        assert_eq!(n.user(3_999_999_999), None);
        assert_eq!(n.lookups, 3, "a negative answer is cached too");
        n.user(1);
        n.user(2);
        n.user(0);
        assert_eq!(n.lookups, 6, "capacity 2: root was evicted");
    }
}
