//! Chaos suite, receivers that misbehave (issue 10): the real `auditrelay run` binary on the real
//! kernel (marker execs), shipping over RELP (and TCP where it differs) to a fake receiver in this
//! process that refuses, accepts then resets, answers RELP 500, answers garbage, or stalls without
//! acks; then the receiver behaves and everything must arrive.
//!
//! What each case may lose is stated on it and checked: RELP nothing (an event leaves the spool
//! only on `rsp 200`); plain TCP only bytes the receiver had read before it went away (its
//! kernel acknowledged them: docs/configuration.md, `src/output/tcp.rs`), and exactly those.
//! Each case is bounded: the bad phase lasts `BAD_PHASE`, delivery after recovery `RECOVERY`.
//!
//! Needs root and holds the kernel flock (tests/common).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chaos;
mod common;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use chaos::{
    config, exec_markers, lost_now, relp_output, tcp_output, wait_markers, FakeReceiver, Mode, Proto, Spawned,
};
use common::{marker, KernelGuard, TempDir};

const EVENTS: usize = 30;
const BAD_PHASE: Duration = Duration::from_secs(3);
const RECOVERY: Duration = Duration::from_secs(20);

/// Run one fault: markers while the receiver is in `bad`, then `Good`; returns the receiver.
fn ride_out(name: &str, proto: Proto, bad: Mode) -> (FakeReceiver, String, BTreeSet<usize>) {
    let guard = KernelGuard::take();
    let lost_before = lost_now();
    let dir = TempDir::new(name);
    let fake = FakeReceiver::start(proto, bad);
    let (key, tag) = (marker("ck"), marker(name));
    let out = match proto {
        Proto::Relp => relp_output(&fake.address()),
        Proto::Tcp => tcp_output(&fake.address()),
    };
    let cfg = config(&dir, &key, &out);
    let mut d = Spawned::start(&dir.0, "daemon", &["run", "--config", &cfg]);
    d.wait_ready(&key, Duration::from_secs(10));
    exec_markers(&tag, 0..EVENTS);
    std::thread::sleep(BAD_PHASE);
    assert!(d.alive(), "{name}: the daemon must ride out the fault: {}", d.stderr());
    assert_eq!(fake.messages(), 0, "{name}: nothing is taken while the receiver misbehaves");
    if bad != Mode::Refuse {
        assert!(fake.accepted.load(std::sync::atomic::Ordering::Relaxed) >= 1, "{name}: the daemon connected");
    }
    fake.set(Mode::Good);
    let got = wait_markers(&tag, EVENTS, RECOVERY, || fake.events());
    let st = d.terminate(Duration::from_secs(15));
    assert!(
        st.success(),
        "{name}: exit {st}: {}",
        std::fs::read_to_string(dir.path("daemon.stderr")).unwrap_or_default()
    );
    assert_eq!(lost_now(), lost_before, "{name}: the kernel lost nothing");
    drop(guard);
    (fake, tag, got)
}

fn all() -> BTreeSet<usize> {
    (0..EVENTS).collect()
}

/// Connection refused, then the receiver comes up. Lost: nothing (RELP and TCP).
#[test]
fn receiver_refuses_then_comes_up_relp_loses_nothing() {
    let (_, _, got) = ride_out("refuse-relp", Proto::Relp, Mode::Refuse);
    assert_eq!(got, all());
}

#[test]
fn receiver_refuses_then_comes_up_tcp_loses_nothing() {
    let (_, _, got) = ride_out("refuse-tcp", Proto::Tcp, Mode::Refuse);
    assert_eq!(got, all());
}

/// Every connection accepted and reset (RST). RELP: reset after the first read; nothing lost
/// (no rsp, nothing acknowledged). TCP: reset once the small window's queue is still; only what
/// the receiver's kernel had acknowledged (read or queued) may be missing, everything missing is
/// in those bytes, and what the window held back is resent.
#[test]
fn receiver_accepts_then_resets_relp_loses_nothing() {
    let (fake, _, got) = ride_out("reset-relp", Proto::Relp, Mode::Reset);
    assert_eq!(got, all());
    assert!(fake.accepted.load(std::sync::atomic::Ordering::Relaxed) >= 2, "reconnected after resets");
}

#[test]
fn receiver_accepts_then_resets_tcp_loses_only_what_it_had_read() {
    let (fake, tag, got) = ride_out("reset-tcp", Proto::Tcp, Mode::Reset);
    let swallowed = fake.swallowed();
    // The swallowed bytes are octet-counted frames, possibly cut at the end: find markers in them.
    let text = String::from_utf8_lossy(&swallowed);
    let had: BTreeSet<usize> = (0..EVENTS).filter(|i| text.contains(&format!("\"{tag}-{i}\""))).collect();
    let missing: BTreeSet<usize> = all().difference(&got).copied().collect();
    assert!(missing.is_subset(&had), "missing {missing:?} but the receiver only ever had {had:?}");
    assert!(!got.is_empty(), "what the small window held back at the reset was resent: got nothing");
    assert!(fake.accepted.load(std::sync::atomic::Ordering::Relaxed) >= 2, "reconnected after resets");
    eprintln!(
        "reset-tcp: {} of {EVENTS} lost, all of them acknowledged by the receiver before its reset \
         ({} markers were in what it held)",
        missing.len(),
        had.len()
    );
}

/// `rsp 500` to every frame: the session is broken, nothing acknowledged, resent after
/// recovery. Lost: nothing.
#[test]
fn receiver_answers_relp_500_loses_nothing() {
    let (_, _, got) = ride_out("code500", Proto::Relp, Mode::Code500);
    assert_eq!(got, all());
}

/// Bytes that are no RELP at all: the session is dropped as a protocol error. Lost: nothing.
#[test]
fn receiver_answers_garbage_loses_nothing() {
    let (_, _, got) = ride_out("garbage", Proto::Relp, Mode::Garbage);
    assert_eq!(got, all());
}

/// Reads and never answers: after `response_timeout` (2 s here) the session is given up and
/// reopened, and the window is resent. Lost: nothing.
#[test]
fn receiver_stalls_without_acks_loses_nothing() {
    let (fake, _, got) = ride_out("stall", Proto::Relp, Mode::Stall);
    assert_eq!(got, all());
    assert!(!fake.swallowed().is_empty(), "the stalled receiver was sent frames");
}

/// The same events are not lost by a daemon that only ever saw the receiver stall: at SIGTERM
/// they stay in the spool, and a start against a good receiver delivers them.
#[test]
fn stalled_receiver_at_shutdown_keeps_events_for_the_next_start() {
    let guard = KernelGuard::take();
    let dir = TempDir::new("stall-restart");
    let fake = FakeReceiver::start(Proto::Relp, Mode::Stall);
    let (key, tag) = (marker("ck"), marker("stallrestart"));
    let cfg = config(&dir, &key, &relp_output(&fake.address()));
    let mut d = Spawned::start(&dir.0, "first", &["run", "--config", &cfg]);
    d.wait_ready(&key, Duration::from_secs(10));
    exec_markers(&tag, 0..EVENTS);
    std::thread::sleep(Duration::from_secs(1));
    // drain_timeout 5 s + RELP close bound (1 s + 4 s) + margin: well within 20 s.
    let st = d.terminate(Duration::from_secs(20));
    assert!(st.success());
    assert_eq!(fake.messages(), 0);
    fake.set(Mode::Good);
    let d = Spawned::start(&dir.0, "second", &["run", "--config", &cfg]);
    let got = wait_markers(&tag, EVENTS, RECOVERY, || fake.events());
    assert_eq!(got, all(), "events spooled under a stalled receiver arrive after restart");
    assert!(d.terminate(Duration::from_secs(15)).success());
    drop(guard);
}
