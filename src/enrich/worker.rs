//! The background threads of enrichment (names from NSS, executable hashes, /proc lookups): each
//! answers requests one at a time, in order, so the processing thread never waits on a slow
//! source. One shape, here: a bounded request queue, a bounded answer queue, and a thread that
//! ends when either side is dropped.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Start thread `name` calling `work` for each request; `queue` requests and `answers` answers
/// wait at most. The caller sends with `try_send` (a full queue is its to count) and drains
/// answers with `try_recv`.
pub fn spawn<Q, A>(
    name: &str,
    queue: usize,
    answers: usize,
    mut work: impl FnMut(Q) -> A + Send + 'static,
) -> std::io::Result<(SyncSender<Q>, Receiver<A>)>
where
    Q: Send + 'static,
    A: Send + 'static,
{
    let (req_tx, req_rx) = sync_channel::<Q>(queue.max(1));
    let (ans_tx, ans_rx) = sync_channel::<A>(answers.max(1));
    std::thread::Builder::new().name(name.into()).spawn(move || {
        // Ends when the asking side (the request sender) or the answer receiver is dropped.
        while let Ok(request) = req_rx.recv() {
            if ans_tx.send(work(request)).is_err() {
                break;
            }
        }
    })?;
    Ok((req_tx, ans_rx))
}

#[cfg(test)]
mod tests {
    #[test]
    fn answers_come_in_order_and_the_thread_ends_with_its_asker() {
        let (tx, rx) = super::spawn("test-worker", 4, 4, |n: u32| n * 2).unwrap();
        for n in 1..=3 {
            tx.try_send(n).unwrap();
        }
        assert_eq!((0..3).map(|_| rx.recv().unwrap()).collect::<Vec<_>>(), [2, 4, 6]);
        drop(tx);
        assert!(rx.recv().is_err(), "the thread ended and dropped its sender");
    }
}
