#!/usr/bin/env python3
"""Capture the JSON events of the live benchmark's two storms, as `auditrelay run` spools them.

    sudo benches/capture_storms.py [--events N] [--build debug|release]

Writes tests/data/storm-openat.jsonl.zst and tests/data/storm-exec.jsonl.zst: N consecutive events
(default 2000) of each storm from the middle of a 2 s run (`storm openat --rate 2000`, `storm exec
--rate 2000`), the lines auditrelay's file output wrote, unedited. benches/spool.rs measures the
spool's compression on them (bytes on disk per event against the JSON size).

Reuses benches/live.py for the kernel side: holds /tmp/auditrelay-kernel.lock, refuses to run
beside another audit daemon, loads one rule through auditrelay's own rule file, and puts back the
kernel's audit state it found (rules, pid, settings), also on error.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import live  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def capture(kernel, procs, target, storm, tmp, n):
    rule = (f"-a always,exit -F arch=b64 -S openat -F exe={target / 'examples' / 'storm'} -F success=0 -F key={live.KEY}"
            if storm == "openat" else
            f"-a always,exit -F arch=b64 -S execve -F gid={live.BENCH_GID} -F key={live.KEY}")
    rate = 2000
    d = Path(tempfile.mkdtemp(prefix=f"capture-{storm}-", dir=tmp))
    (d / "bench.rules").write_text(f"-D\n{rule}\n")
    events = d / "events.jsonl"
    (d / "auditrelay.toml").write_text("\n".join([
        "[kernel]", "enabled = 1", f"backlog_limit = {live.BACKLOG_LIMIT}", "",
        "[rules]", f'sources = ["{d / "bench.rules"}"]', f'cache_dir = "{d / "rules-cache"}"', "",
        "[spool]", f'dir = "{d / "spool"}"', "",
        "[[output]]", 'type = "file"', 'name = "file"', f'path = "{events}"', "max_size = 0", ""]))
    p = procs.start([str(target / "auditrelay"), "run", "--config", str(d / "auditrelay.toml")],
                    stderr_to=d / "auditrelay.err")
    deadline = time.monotonic() + 30
    while not (kernel.status()["pid"] == p.pid and any(live.KEY.encode() in r for r in kernel.rules())):
        if time.monotonic() > deadline or p.poll() is not None:
            raise live.BenchError(f"auditrelay did not register with the rule (see {d})")
        time.sleep(0.05)
    time.sleep(0.5)
    cmd = [str(target / "examples" / "storm"), storm, "--rate", str(rate), "--duration", "2"]
    if storm == "exec":
        cmd += ["--gid", str(live.BENCH_GID)]
    subprocess.run(cmd, cwd="/", check=True, stdout=subprocess.DEVNULL)
    time.sleep(3)
    rc = procs.stop(p)
    if rc != 0:
        raise live.BenchError(f"auditrelay exited with {rc} (see {d})")
    lines = [l for l in events.read_bytes().split(b"\n") if live.JSON_KEY in l]
    if len(lines) < 2 * n:
        raise live.BenchError(f"{storm}: only {len(lines)} storm events captured")
    start = (len(lines) - n) // 2
    out = REPO / "tests" / "data" / f"storm-{storm}.jsonl.zst"
    subprocess.run(["zstd", "-19", "-q", "-f", "-o", str(out)], input=b"\n".join(lines[start:start + n]) + b"\n",
                   check=True)
    live.log(f"{storm}: {n} of {len(lines)} events -> {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--build", default="debug", choices=["debug", "release"])
    args = ap.parse_args()
    target = REPO / "target" / args.build
    lock = live.take_kernel_lock(900)
    kernel = live.Kernel()
    state = live.KernelState(kernel)
    procs = live.Procs()
    tmp = Path(tempfile.mkdtemp(prefix="auditrelay-capture-", dir="/var/tmp"))
    try:
        for storm in ("openat", "exec"):
            capture(kernel, procs, target, storm, tmp, args.events)
    finally:
        procs.stop_all()
        state.restore()
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
        lock.close()


if __name__ == "__main__":
    main()
