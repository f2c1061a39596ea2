//! Byte buffers shared between threads and given back for reuse when the last holder lets go.
//!
//! Why: a frame the spool writes is read by every output, and its events then wait in the sinks'
//! windows until acknowledged. Shared, one buffer serves them all: no output decompresses a frame
//! the writer still has in memory, and no event is copied out of its frame into a batch buffer
//! (those copies and decompressions were most of the spool-reader threads' CPU,
//! docs/performance.md). Given back to a [`Pool`], the same few buffers serve every batch: a
//! ~1 MB buffer allocated on one thread and freed on another kept glibc's arenas growing and
//! raised the peak RSS (docs/performance.md, "Peak RSS").

use std::ops::{Deref, Range};
use std::sync::{Arc, Mutex};

/// Most emptied buffers a pool keeps: the writer's recent frames (see `store::RECENT_FRAMES`)
/// and the frames in the sinks' windows come back here; a pool that kept 8 held as much idle
/// memory as it saved allocations.
const KEPT_MAX: usize = 4;

/// A buffer that grew past this (an outsized event) is freed, not kept: a frame is at most
/// `frame::STAGE_MAX` (256 KiB) plus one record.
const KEPT_BYTES_MAX: usize = 2 << 20;

/// Emptied buffers waiting to be filled again; cheap to clone (one pool shared by its users).
#[derive(Clone, Default)]
pub struct Pool {
    kept: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pool")
    }
}

impl Pool {
    /// A given-back buffer when there is one, holding what it held before (clear or overwrite
    /// it: a decompressor `resize`s it and so zero-fills only growth), else a new empty one with
    /// room for `room` bytes.
    pub fn take(&self, room: usize) -> Vec<u8> {
        self.kept.lock().ok().and_then(|mut kept| kept.pop()).unwrap_or_else(|| Vec::with_capacity(room))
    }

    /// `data`, shared; it comes back to this pool when the last clone is dropped.
    pub fn share(&self, data: Vec<u8>) -> Arc<Shared> {
        Arc::new(Shared { data, home: Some(self.clone()) })
    }

    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.kept.lock().map(|k| k.len()).unwrap_or(0)
    }
}

/// Bytes read by several threads; see the module docs.
#[derive(Debug, Default)]
pub struct Shared {
    data: Vec<u8>,
    home: Option<Pool>,
}

impl Shared {
    /// Bytes with no pool to go back to (a delivery made outside the spool, a test).
    pub fn own(data: Vec<u8>) -> Arc<Shared> {
        Arc::new(Shared { data, home: None })
    }

    /// Where `part` (a slice borrowed from these bytes) lies in them; `None` when it is not theirs.
    pub fn range_of(&self, part: &[u8]) -> Option<Range<usize>> {
        let start = (part.as_ptr() as usize).checked_sub(self.data.as_ptr() as usize)?;
        let end = start.checked_add(part.len())?;
        (end <= self.data.len()).then_some(start..end)
    }
}

impl Deref for Shared {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let Some(home) = self.home.take() else { return };
        if self.data.capacity() > KEPT_BYTES_MAX {
            return;
        }
        if let Ok(mut kept) = home.kept.lock() {
            if kept.len() < KEPT_MAX {
                kept.push(std::mem::take(&mut self.data));
            }
        };
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_when_its_last_holder_drops_it_and_the_pool_is_bounded() {
        let pool = Pool::default();
        let mut v = pool.take(16);
        v.extend_from_slice(b"hello");
        let at = v.as_ptr();
        let a = pool.share(v);
        let b = a.clone();
        drop(a);
        assert_eq!(pool.kept(), 0, "still held");
        assert_eq!(&b[..], b"hello");
        drop(b);
        assert_eq!(pool.kept(), 1);
        let again = pool.take(16);
        assert_eq!((again.as_ptr(), &again[..]), (at, &b"hello"[..]), "the same buffer serves again, as it was");
        let held: Vec<_> = (0..KEPT_MAX + 3).map(|_| pool.share(vec![1; 8])).collect();
        drop(held);
        assert_eq!(pool.kept(), KEPT_MAX);
        drop(pool.share(vec![0; KEPT_BYTES_MAX + 1]));
        assert_eq!(pool.kept(), KEPT_MAX);
    }

    #[test]
    fn range_of_finds_borrowed_parts_and_refuses_others() {
        let s = Shared::own(b"0123456789".to_vec());
        assert_eq!(s.range_of(&s[2..5]), Some(2..5));
        assert_eq!(s.range_of(&s[10..]), Some(10..10));
        assert_eq!(s.range_of(b"23"), None);
    }
}
