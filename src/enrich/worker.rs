//! The background threads of enrichment (names from NSS, executable hashes, /proc lookups): each
//! answers requests one at a time, in order, so the processing thread never waits on a slow
//! source. One shape, here: a bounded request queue, a bounded answer queue, and a thread that
//! ends when either side is dropped.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// A worker's two queues, as [`spawn`] returns them.
pub type Queues<Q, A> = (SyncSender<Q>, Receiver<A>);

/// Start thread `name` calling `work` for each request; `queue` requests and `answers` answers
/// wait at most. The caller sends with `try_send` (a full queue is its to count) and drains
/// answers with `try_recv`.
pub fn spawn<Q, A>(
    name: &str,
    queue: usize,
    answers: usize,
    mut work: impl FnMut(Q) -> A + Send + 'static,
) -> std::io::Result<Queues<Q, A>>
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

/// A worker started at its first request, so enrichment nobody asks for costs no thread. It is
/// tried once: a worker that could not start, or whose thread ended, is not asked again (its
/// answers still in the queue are taken).
pub struct Lazy<Q, A> {
    requests: Option<SyncSender<Q>>,
    answers: Option<Receiver<A>>,
    tried: bool,
}

impl<Q, A> Default for Lazy<Q, A> {
    fn default() -> Self {
        Lazy { requests: None, answers: None, tried: false }
    }
}

impl<Q, A> std::fmt::Debug for Lazy<Q, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lazy").field("running", &self.requests.is_some()).field("tried", &self.tried).finish()
    }
}

impl<Q, A> Lazy<Q, A> {
    /// The request queue, calling `start` (which calls [`spawn`]) the first time; if it fails,
    /// the warning names the worker (`what`) and what is `without` it.
    pub fn requests(
        &mut self,
        what: &str,
        without: &str,
        start: impl FnOnce() -> std::io::Result<Queues<Q, A>>,
    ) -> Option<&SyncSender<Q>> {
        if !self.tried {
            self.tried = true;
            match start() {
                Ok((requests, answers)) => {
                    self.requests = Some(requests);
                    self.answers = Some(answers);
                }
                Err(e) => log::warn!("{what} thread not started ({e}); {without}"),
            }
        }
        self.requests.as_ref()
    }

    /// The answer queue, once started.
    pub fn answers(&self) -> Option<&Receiver<A>> {
        self.answers.as_ref()
    }

    /// The worker's thread is gone (a send found it disconnected): ask no more.
    pub fn ended(&mut self) {
        self.requests = None;
    }
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

    #[test]
    fn a_lazy_worker_starts_at_the_first_request_and_is_tried_once() {
        let mut lazy: super::Lazy<u32, u32> = super::Lazy::default();
        assert!(lazy.answers().is_none(), "nothing started before a request");
        let mut starts = 0;
        let failed = lazy.requests("test-worker", "nothing", || {
            starts += 1;
            Err(std::io::Error::other("no threads"))
        });
        assert!(failed.is_none());
        assert!(lazy.requests("test-worker", "nothing", || super::spawn("test-worker", 1, 1, |n: u32| n)).is_none());
        assert_eq!(starts, 1, "not tried again");
        let mut lazy: super::Lazy<u32, u32> = super::Lazy::default();
        lazy.requests("test-worker", "nothing", || super::spawn("test-worker", 1, 1, |n: u32| n + 1))
            .unwrap()
            .send(1)
            .unwrap();
        assert_eq!(lazy.answers().unwrap().recv().unwrap(), 2);
        lazy.ended();
        assert!(lazy.requests("test-worker", "nothing", || unreachable!()).is_none());
        assert!(lazy.answers().is_some(), "answers still in the queue are taken");
    }
}
