//! The measuring loop shared by the `cargo bench` targets (included with `#[path]`; not a target).
//!
//! No framework: a pass runs repeatedly for about a budget and its throughput is printed per CPU
//! second of this thread (robust on a machine shared with compiling neighbours) and per wall second.

use std::time::{Duration, Instant};

/// This thread's CPU time: on a shared machine wall time measures the neighbours too.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Run `pass` (which handles `unit`s and returns how many) until `budget` is spent; print units per
/// CPU second and per wall second, return the former.
pub fn measure(name: &str, unit: &str, budget: Duration, mut pass: impl FnMut() -> usize) -> f64 {
    pass(); // warm-up
    let start = Instant::now();
    let cpu_start = thread_cpu_time();
    let mut units = 0usize;
    let mut passes = 0;
    while start.elapsed() < budget {
        units += pass();
        passes += 1;
    }
    let wall = units as f64 / start.elapsed().as_secs_f64();
    let cpu = units as f64 / (thread_cpu_time() - cpu_start).as_secs_f64();
    println!("{name:<26} {cpu:>10.0} {unit}/CPU-s {wall:>10.0} {unit}/wall-s  ({passes} passes)");
    cpu
}
