#!/usr/bin/env python3
"""The live benchmark: every audit daemon on every audit storm, in the same run, side by side.

    sudo benches/live.py [--duration S] [--rounds N] [--quick]
                         [--tools reader,auditd,...] [--workloads openat20k,...] [--out FILE]

Tools (each registers as the kernel's audit daemon in turn):
  reader             benches/count_reader.rs: receives and counts, nothing else (the physical limit)
  auditd             Debian's auditd, private config dir, log_format RAW to a file, no plugins
  auditrelay-file    auditrelay run: spool -> [[output]] type="file"
  auditrelay-relp    auditrelay run: spool -> [[output]] type="relp" to a private rsyslogd (imrelp -> file)
  auditrelay-both    both outputs at once (an event counts as delivered once it reached both)
  auditrelay-both-uncompressed  the same with `[spool] compression = "none"` (the cost before issue 12)
  auditrelay-both-unenriched    the same with `[enrich] enabled = false` (schema v1: what issue 8's
                                interpretation costs on the whole path)
  auditrelay-stdout  auditrelay run with no output: JSON lines on stdout, piped into a counter

Workloads (benches/storm.rs makes the events; one audit rule matches the storm and nothing else):
  openat20k  failing openat paced at 20 k/s (SYSCALL, CWD, PATH, PROCTITLE, EOE per event)
  exec2k     fork + execve /bin/true paced at 2 k/s (7 records + EOE per event)
  exec200    the same paced at 200/s: an ordinary server's rate, where what a daemon pays per
             wake-up (not per event) decides its cost
  flatout    openat flat out, kernel default backlog_wait_time: the storm is slowed to the pace the
             daemon drains the kernel at, so its rate is the drain rate (valid while nothing is lost)
  lossless   openat paced at 10k, 20k, ... 50k, 55k, 60k, ... 80k, 90k, 100k, ... 300k/s with
             backlog_wait_time 0, until the first step
             that loses an event (kernel `lost` > 0 or delivered < generated): the highest lossless rate

Every (tool, workload) pair runs once per round, tools in a rotated order each round, all with
backlog_limit 8192 and the same single rule. Per pair: events generated (the storm's syscalls) and
delivered (key-carrying events the tool wrote or received, counted after its pipeline drained),
the kernel `lost` delta, the daemon's CPU (utime+stime from /proc/PID/stat, start-up excluded) per
delivered event, its peak RSS (VmHWM), the rate, and each figure's ratio to auditd and to the
reader. One markdown table goes to stdout, the same figures (and every round's raw numbers) to a
JSON file.

Needs root. Holds the kernel flock /tmp/auditrelay-kernel.lock for the whole run, refuses to start
when another audit daemon is registered, and puts back the kernel's audit state it found (rules,
audit pid, enabled, failure, rate_limit, backlog_limit, backlog_wait_time) at the end, on error and
on SIGINT/SIGTERM/SIGHUP. Every process it starts is stopped by pid and checked gone; its temp dir
(under /var/tmp: on disk, unlike a tmpfs /tmp) is removed.
"""

import argparse
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCK_PATH = "/tmp/auditrelay-kernel.lock"
KEY = "arbench"
BACKLOG_LIMIT = 8192
# The kernel's default backlog_wait_time is 60 s in jiffies (60 * HZ); auditctl documents 15000 (HZ 250).
DEFAULT_WAIT_TIME = 15000
# The exec storm runs in this group and its rule filters on it (no account uses it).
BENCH_GID = 64123
# Paced rates of the `lossless` workload, tried in order until one loses an event. 5 k apart from
# 50 k to 80 k: on the 2-vCPU benchmark VM the storm itself tops out at 63–70 k/s, so with 20 k steps
# there a daemon that lost at 80 k was given its 60 k step against the reader's storm-bound ~68 k.
LOSSLESS_STEPS = [10_000, 20_000, 30_000, 40_000, 50_000, 55_000, 60_000, 65_000, 70_000, 75_000, 80_000,
                  90_000, 100_000, 120_000, 140_000, 160_000, 200_000, 250_000, 300_000]
# How the tools' outputs spell the key. The kernel puts `key` last in a SYSCALL record; a
# CONFIG_CHANGE for adding the rule names it too, but mid-record: anchoring on the end counts only
# SYSCALL records. RECORD_KEY is for count-reader, which also checks the record type.
RECORD_KEY = f'key="{KEY}"'.encode()
RAW_KEY = f'key="{KEY}"\n'.encode()  # auditd log_format RAW: one record per line
JSON_KEY = f'"key":"{KEY}"}}'.encode()  # auditrelay JSON: the last field of the record's "fields"
TOOLS = ["reader", "auditd", "auditrelay-file", "auditrelay-relp", "auditrelay-both", "auditrelay-stdout"]
# Opt-in (not in the default run): the spool without compression, beside auditrelay-both.
EXTRA_TOOLS = ["auditrelay-both-uncompressed", "auditrelay-both-unenriched"]
WORKLOADS = ["openat20k", "exec2k", "exec200", "flatout", "lossless"]


class BenchError(Exception):
    """A run (or the whole benchmark) cannot give a valid figure; the message says why."""


class Interrupted(BaseException):
    """SIGINT/SIGTERM/SIGHUP: stop everything, restore the kernel, exit."""


def log(msg):
    print(f"live: {msg}", file=sys.stderr, flush=True)


# ---- the kernel: AUDIT_GET / AUDIT_SET and raw rule lists over NETLINK_AUDIT ---------------------

AUDIT_GET, AUDIT_SET, AUDIT_ADD_RULE, AUDIT_DEL_RULE, AUDIT_LIST_RULES = 1000, 1001, 1011, 1012, 1013
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
STATUS_FIELDS = ("mask", "enabled", "failure", "pid", "rate_limit", "backlog_limit", "lost", "backlog",
                 "feature_bitmap", "backlog_wait_time", "backlog_wait_time_actual")
MASK = {"enabled": 0x01, "failure": 0x02, "pid": 0x04, "rate_limit": 0x08, "backlog_limit": 0x10,
        "backlog_wait_time": 0x20}


class Kernel:
    """Request/ack exchanges with the audit subsystem, each on a fresh socket (no stray events)."""

    def _request(self, msg_type, payload=b"", dump=False):
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 9) as sock:
            sock.bind((0, 0))
            sock.settimeout(5.0)
            seq = int(time.monotonic_ns() & 0x7FFFFFFF) or 1
            flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_DUMP if dump else 0)
            sock.send(struct.pack("=LHHLL", 16 + len(payload), msg_type, flags, seq, 0) + payload)
            replies, acked, done = [], False, msg_type in (AUDIT_SET, AUDIT_ADD_RULE, AUDIT_DEL_RULE)
            while not (acked and done):
                data = sock.recv(1 << 16)
                off = 0
                while off + 16 <= len(data):
                    length, typ, _, rseq, _ = struct.unpack_from("=LHHLL", data, off)
                    body = data[off + 16:off + max(length, 16)]
                    off += max(16, (length + 3) & ~3)
                    if rseq != seq:
                        continue
                    if typ == NLMSG_ERROR:
                        err = struct.unpack_from("=i", body)[0]
                        if err:
                            raise OSError(-err, f"kernel refused audit request {msg_type}: {os.strerror(-err)}")
                        acked = True
                    elif typ == NLMSG_DONE:
                        done = True
                    elif typ == msg_type:
                        replies.append(body)
                        done = done or not dump
            return replies

    def status(self):
        body = self._request(AUDIT_GET)[0]
        words = struct.unpack_from(f"={len(body) // 4}I", body)
        return dict(zip(STATUS_FIELDS, words + (0,) * (len(STATUS_FIELDS) - len(words))))

    def set(self, **fields):
        values = [0] * len(STATUS_FIELDS)
        for name, value in fields.items():
            values[0] |= MASK[name]
            values[STATUS_FIELDS.index(name)] = value
        self._request(AUDIT_SET, struct.pack(f"={len(values)}I", *values))

    def rules(self):
        return self._request(AUDIT_LIST_RULES, dump=True)

    def delete_all_rules(self):
        for rule in self.rules():
            self._request(AUDIT_DEL_RULE, rule)

    def add_rules(self, rules):
        for rule in rules:
            self._request(AUDIT_ADD_RULE, rule)


class KernelState:
    """What the kernel looked like before the benchmark, and putting it back."""

    RESTORED = ("enabled", "failure", "rate_limit", "backlog_limit", "backlog_wait_time")

    def __init__(self, kernel):
        self.kernel = kernel
        self.status = kernel.status()
        self.rules = kernel.rules()
        # For the record (and for a human restoring by hand if this process is killed -9).
        self.auditctl_s = run_text(["auditctl", "-s"])
        self.auditctl_l = run_text(["auditctl", "-l"])
        if self.status["enabled"] == 2:
            raise BenchError("kernel audit rules are locked (enabled=2): the benchmark cannot run")
        if self.status["pid"]:
            raise BenchError(f"another audit daemon (pid {self.status['pid']}) is registered; stop it first")

    def restore(self):
        errors = []
        now = self.kernel.status()
        if now["pid"] != self.status["pid"]:
            try:
                # Our daemons are stopped by now; a dead registered pid is reset by this request.
                self.kernel.set(pid=0)
            except OSError as e:
                errors.append(f"audit pid {now['pid']} still registered: {e}")
        try:
            if self.kernel.rules() != self.rules:
                self.kernel.delete_all_rules()
                self.kernel.add_rules(self.rules)
        except OSError as e:
            errors.append(f"rules: {e}")
        try:
            self.kernel.set(**{k: self.status[k] for k in self.RESTORED})
        except OSError as e:
            errors.append(f"settings: {e}")
        after = self.kernel.status()
        changed = [k for k in self.RESTORED + ("pid",) if after[k] != self.status[k]]
        if errors or changed or self.kernel.rules() != self.rules:
            raise BenchError(f"kernel audit state NOT fully restored ({'; '.join(errors)} changed: {changed}); "
                             f"it was:\n{self.auditctl_s}\n{self.auditctl_l}")


def take_kernel_lock(timeout):
    lock = open(LOCK_PATH, "a")
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise BenchError(f"{LOCK_PATH} still held by another kernel test after {timeout:.0f} s")
            if not told:
                log(f"waiting for {LOCK_PATH} (another kernel test or benchmark holds it)")
                told = True
            time.sleep(0.5)


# ---- processes -----------------------------------------------------------------------------------

def run_text(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    return (out.stdout + out.stderr).strip()


class Procs:
    """Every process the benchmark starts, so each is stopped by its pid, also on error or signal."""

    def __init__(self):
        self.live = []

    def start(self, cmd, stderr_to=None, **kw):
        """Start `cmd`; with `stderr_to`, its stderr is appended to that file."""
        # Own session: a ^C in the terminal reaches only this script, which stops its children in order.
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        if stderr_to is not None:
            with open(stderr_to, "a") as err:
                p = subprocess.Popen(cmd, start_new_session=True, stderr=err, **kw)
        else:
            p = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.live.append(p)
        return p

    def stop(self, p, timeout=20.0):
        """SIGTERM, wait up to `timeout`, then SIGKILL; returns the exit status. Verifies it is gone."""
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"pid {p.pid} ({Path(p.args[0]).name}) ignored SIGTERM for {timeout:.0f} s: SIGKILL")
                p.kill()
                p.wait(5)
        if p in self.live:
            self.live.remove(p)
        if Path(f"/proc/{p.pid}").exists():
            raise BenchError(f"pid {p.pid} ({p.args[0]}) still exists after being stopped")
        return p.returncode

    def stop_all(self):
        for p in reversed(list(self.live)):
            try:
                self.stop(p, timeout=10.0)
            except (BenchError, subprocess.TimeoutExpired) as e:
                log(f"cleanup: {e}")


def last_line(path):
    try:
        lines = Path(path).read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(no output)"
    except FileNotFoundError:
        return "(no output)"


def cpu_seconds(pid):
    """utime + stime of the whole process (every thread, live or exited), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmHWM in /proc/{pid}/status")


def wait_port(port, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{proc.args[0]} exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- counting delivered events -------------------------------------------------------------------

class FileCounter:
    """Occurrences of a pattern in a growing file, read incrementally (outputs reach gigabytes)."""

    def __init__(self, path, pattern):
        self.path, self.pattern = Path(path), pattern
        self.offset, self.count, self.tail = 0, 0, b""

    def __call__(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                while chunk := f.read(8 << 20):
                    self.offset += len(chunk)
                    data = self.tail + chunk
                    self.count += data.count(self.pattern)
                    # Keep a partial match for the next read; a whole one was counted already.
                    keep = len(self.pattern) - 1
                    last = data.rfind(self.pattern)
                    self.tail = data[max(len(data) - keep, last + len(self.pattern) if last >= 0 else 0):]
        except FileNotFoundError:
            pass
        return self.count


class CountsFile:
    """The JSON counts that count-reader rewrites every 100 ms."""

    def __init__(self, path):
        self.path = Path(path)

    def read(self):
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"datagrams": 0, "matched": 0, "overruns": 0, "truncated": 0, "done": False}

    def __call__(self):
        return self.read()["matched"]


# ---- the tools -----------------------------------------------------------------------------------

class Tool:
    """One audit daemon under test. `start` leaves it registered with the workload's rule loaded;
    `delivered` counts key-carrying events it has written/received; `pid` is the process measured."""

    registers_rule_itself = False

    def __init__(self, bench, name, dir_):
        self.bench, self.name, self.dir = bench, name, dir_
        self.proc = None
        self.extra = []  # helper processes (rsyslogd, counters), stopped after the daemon

    @property
    def pid(self):
        return self.proc.pid

    def delivered(self):
        raise NotImplementedError

    def details(self):
        return {}

    def check(self, generated, delivered):
        """Raise if the tool evidently did not do its job (e.g. wrote nothing)."""
        if generated and not delivered:
            raise BenchError(f"{self.name} delivered none of {generated} events")

    def stop(self):
        rc = self.bench.procs.stop(self.proc)
        for p in self.extra:
            self.bench.procs.stop(p)
        return rc


class Reader(Tool):
    def start(self, workload):
        self.counts = CountsFile(self.dir / "counts.json")
        self.proc = self.bench.procs.start(
            [str(self.bench.examples / "count-reader"), "--pattern", RECORD_KEY.decode(),
             "--counts", str(self.counts.path)],
            stderr_to=self.dir / "reader.err")

    def delivered(self):
        return self.counts()

    def details(self):
        return self.counts.read()

    def check(self, generated, delivered):
        super().check(generated, delivered)
        if self.counts.read()["overruns"]:
            raise BenchError("count-reader saw its socket buffer overrun (ENOBUFS)")


class Auditd(Tool):
    CONF = """\
local_events = yes
write_logs = yes
log_file = {log}
log_group = root
log_format = RAW
flush = INCREMENTAL_ASYNC
freq = 50
max_log_file = 0
num_logs = 0
priority_boost = 4
name_format = NONE
max_log_file_action = IGNORE
space_left = 75
space_left_action = IGNORE
verify_email = no
action_mail_acct = root
admin_space_left = 50
admin_space_left_action = IGNORE
disk_full_action = IGNORE
disk_error_action = IGNORE
use_libwrap = no
tcp_listen_queue = 5
tcp_max_per_addr = 1
tcp_client_max_idle = 0
transport = TCP
distribute_network = no
q_depth = 2000
overflow_action = SYSLOG
max_restarts = 10
plugin_dir = {plugins}
end_of_event_timeout = 2
"""
    # Debian's auditd.conf except: RAW format, our log file, no rotation, no plugins (an empty
    # plugin_dir), no disk space actions. priority_boost 4 is Debian's default and kept.

    def start(self, workload):
        conf_dir = self.dir / "etc"
        (conf_dir / "plugins.d").mkdir(parents=True)
        self.log_path = self.dir / "log" / "audit.log"
        self.log_path.parent.mkdir()
        conf = conf_dir / "auditd.conf"
        conf.write_text(self.CONF.format(log=self.log_path, plugins=conf_dir / "plugins.d"))
        conf.chmod(0o640)
        self.counter = FileCounter(self.log_path, RAW_KEY)
        # -n: no fork (so this is the pid to measure). Not -f: in the foreground auditd writes events
        # to stderr instead of its log.
        self.proc = self.bench.procs.start(["auditd", "-n", "-c", str(conf_dir)], stderr_to=self.dir / "auditd.err")

    def delivered(self):
        return self.counter()

    def check(self, generated, delivered):
        if not self.log_path.exists() or self.log_path.stat().st_size == 0:
            raise BenchError(f"auditd wrote nothing to {self.log_path}: {last_line(self.dir / 'auditd.err')}")
        super().check(generated, delivered)


class Rsyslogd:
    """A private rsyslogd with imrelp on a free loopback port, writing each message as a line."""

    def __init__(self, bench, dir_):
        dir_.mkdir()
        (dir_ / "work").mkdir()
        self.port = free_port()
        self.out = dir_ / "relp.log"
        conf = dir_ / "rsyslog.conf"
        template = (Path(__file__).parent / "data" / "rsyslog-relp.conf").read_text()
        conf.write_text(template.replace("@WORK@", f"{dir_}/work").replace("@OUT@", str(self.out))
                        .replace("@PORT@", str(self.port)))
        self.proc = bench.procs.start(["rsyslogd", "-n", "-f", str(conf), "-i", str(dir_ / "rsyslogd.pid")],
                                      stderr_to=dir_ / "rsyslogd.err")
        wait_port(self.port, self.proc)
        self.counter = FileCounter(self.out, JSON_KEY)


class Auditrelay(Tool):
    """auditrelay run with `outputs` (a subset of "file", "relp"; none = JSON lines on stdout)."""

    registers_rule_itself = True

    def __init__(self, bench, name, dir_, outputs):
        super().__init__(bench, name, dir_)
        self.outputs = outputs
        self.spool_keys = ['compression = "none"'] if name.endswith("-uncompressed") else []
        self.enrich_keys = ["enabled = false"] if name.endswith("-unenriched") else []
        self.counters = {}

    def start(self, workload):
        rules = self.dir / "bench.rules"
        rules.write_text(f"-D\n{workload.rule}\n")
        toml = [
            "[kernel]", "enabled = 1", f"backlog_limit = {BACKLOG_LIMIT}",
            f"backlog_wait_time = {workload.wait_time}", "rate_limit = 0", "",
            "[rules]", f'sources = ["{rules}"]', f'cache_dir = "{self.dir / "rules-cache"}"', "",
            "[spool]", f'dir = "{self.dir / "spool"}"', *self.spool_keys, "",
        ]
        if self.enrich_keys:
            toml += ["[enrich]", *self.enrich_keys, ""]
        for section, keys in self.bench.auditrelay_set.items():
            if f"[{section}]" in toml:
                at = toml.index(f"[{section}]") + 1
                toml[at:at] = keys
            else:
                toml += [f"[{section}]", *keys, ""]
        if "relp" in self.outputs:
            rs = Rsyslogd(self.bench, self.dir / "rsyslog")
            self.extra.append(rs.proc)
            self.counters["relp"] = rs.counter
            toml += ["[[output]]", 'type = "relp"', 'name = "relp"', f'address = "127.0.0.1:{rs.port}"', ""]
        if "file" in self.outputs:
            path = self.dir / "events.jsonl"
            self.counters["file"] = FileCounter(path, JSON_KEY)
            toml += ["[[output]]", 'type = "file"', 'name = "file"', f'path = "{path}"', "max_size = 0", ""]
        config = self.dir / "auditrelay.toml"
        config.write_text("\n".join(toml))
        cmd = [str(self.bench.release / "auditrelay"), "run", "--config", str(config)]
        err = self.dir / "auditrelay.err"
        if self.outputs:
            self.proc = self.bench.procs.start(cmd, stderr_to=err)
        else:
            self.proc = self.bench.procs.start(cmd, stdout=subprocess.PIPE, stderr_to=err)
            counts = CountsFile(self.dir / "stdout-counts.json")
            counter = self.bench.procs.start(
                [str(self.bench.examples / "count-reader"), "--stdin", "--pattern", JSON_KEY.decode(),
                 "--counts", str(counts.path)], stdin=self.proc.stdout, stderr_to=err)
            self.proc.stdout.close()  # the counter holds the pipe now
            self.extra.append(counter)
            self.counters["stdout"] = counts

    def delivered(self):
        # An event is delivered once it reached every output.
        return min(c() for c in self.counters.values())

    def details(self):
        return {f"delivered_{k}": c() for k, c in self.counters.items()}

    def stop(self):
        rc = super().stop()
        if rc != 0:
            raise BenchError(f"auditrelay exited with {rc}: {last_line(self.dir / 'auditrelay.err')}")
        return rc


def make_tool(bench, name, dir_):
    if name == "reader":
        return Reader(bench, name, dir_)
    if name == "auditd":
        return Auditd(bench, name, dir_)
    outputs = {"auditrelay-file": ["file"], "auditrelay-relp": ["relp"], "auditrelay-both": ["relp", "file"],
               "auditrelay-both-uncompressed": ["relp", "file"], "auditrelay-both-unenriched": ["relp", "file"],
               "auditrelay-stdout": []}[name]
    return Auditrelay(bench, name, dir_, outputs)


# ---- workloads -----------------------------------------------------------------------------------

class Workload:
    def __init__(self, name, storm, rates, wait_time, bench):
        self.name, self.storm, self.rates, self.wait_time = name, storm, rates, wait_time
        if storm == "openat":
            # success=0: the storm's own start-up (ld.so, libc) opens files too, successfully.
            storm = bench.examples / "storm"
            self.rule = f"-a always,exit -F arch=b64 -S openat -F exe={storm} -F success=0 -F key={KEY}"
        else:
            self.rule = f"-a always,exit -F arch=b64 -S execve -F gid={BENCH_GID} -F key={KEY}"

    @property
    def stepped(self):
        return self.name == "lossless"


def workloads(bench):
    return {
        "openat20k": Workload("openat20k", "openat", [20_000], DEFAULT_WAIT_TIME, bench),
        "exec2k": Workload("exec2k", "exec", [2_000], DEFAULT_WAIT_TIME, bench),
        "exec200": Workload("exec200", "exec", [200], DEFAULT_WAIT_TIME, bench),
        "flatout": Workload("flatout", "openat", [0], DEFAULT_WAIT_TIME, bench),
        "lossless": Workload("lossless", "openat", bench.lossless_steps, 0, bench),
    }


# ---- the benchmark -------------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
        self.release = target / "release"
        self.examples = self.release / "examples"
        self.kernel = Kernel()
        self.procs = Procs()
        self.lossless_steps = LOSSLESS_STEPS[:args.max_steps]
        self.auditrelay_set = args.auditrelay_set_parsed
        self.started = time.monotonic()

    def out_of_time(self):
        return time.monotonic() - self.started > self.args.max_minutes * 60

    def prepare_kernel(self, workload, tool):
        """The same kernel settings for every tool; the rule is loaded here unless the tool does it."""
        self.kernel.delete_all_rules()
        self.kernel.set(enabled=1, rate_limit=0, backlog_limit=BACKLOG_LIMIT, backlog_wait_time=workload.wait_time)
        if not tool.registers_rule_itself:
            out = subprocess.run(["auditctl"] + workload.rule.split(), capture_output=True, text=True)
            if out.returncode:
                raise BenchError(f"auditctl {workload.rule}: {out.stderr.strip()}")

    def wait_ready(self, tool, timeout=20.0):
        """Registered as the audit daemon, with the benchmark's rule in the kernel."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if tool.proc.poll() is not None:
                raise BenchError(f"{tool.name} exited with {tool.proc.returncode} during start-up "
                                 f"(see its stderr in {tool.dir})")
            if self.kernel.status()["pid"] == tool.pid and any(KEY.encode() in r for r in self.kernel.rules()):
                time.sleep(0.5)  # let start-up work (rule load, spool open) finish before measuring
                return
            time.sleep(0.05)
        raise BenchError(f"{tool.name} did not register with the rule loaded within {timeout:.0f} s")

    def storm(self, workload, rate, duration):
        cmd = [str(self.examples / "storm"), workload.storm, "--rate", str(rate), "--duration", str(duration)]
        if workload.storm == "exec":
            cmd += ["--gid", str(BENCH_GID)]
        # cwd / and a key-free path: no record text but the SYSCALL's key contains the key.
        p = self.procs.start(cmd, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = p.communicate(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            self.procs.stop(p)
            raise BenchError(f"storm did not finish within {duration + 60:.0f} s (daemon stuck?)")
        self.procs.live.remove(p)
        if p.returncode:
            raise BenchError(f"storm exited with {p.returncode}: {err.strip()}")
        return json.loads(out)

    def drain(self, tool, base, generated, timeout=30.0, stall=1.5):
        """Wait until the tool delivered every generated event, or made no progress for `stall` s."""
        deadline = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            n = tool.delivered() - base
            if n >= generated:
                return n
            if n != last:
                last, last_change = n, time.monotonic()
            elif time.monotonic() - last_change > stall and self.kernel.status()["backlog"] == 0:
                return n
            if tool.proc.poll() is not None:
                raise BenchError(f"{tool.name} exited with {tool.proc.returncode} while draining")
            time.sleep(0.1)
        return tool.delivered() - base

    def measure_step(self, tool, workload, rate, duration):
        base, lost0, cpu0 = tool.delivered(), self.kernel.status()["lost"], cpu_seconds(tool.pid)
        s = self.storm(workload, rate, duration)
        generated = s["syscalls"]
        delivered = self.drain(tool, base, generated)
        lost = (self.kernel.status()["lost"] - lost0) % (1 << 32)
        return {"rate": rate, "generated": generated, "delivered": delivered, "lost": lost,
                "storm_wall_s": s["wall_s"], "achieved": s["achieved"], "child_failed": s["child_failed"],
                "cpu_s": cpu_seconds(tool.pid) - cpu0,
                "lossless": lost == 0 and delivered == generated}

    def run_one(self, tool_name, workload, round_):
        dir_ = Path(tempfile.mkdtemp(prefix=f"{tool_name}-{workload.name}-", dir=self.tmp))
        tool = make_tool(self, tool_name, dir_)
        result = {"tool": tool_name, "workload": workload.name, "round": round_}
        try:
            self.prepare_kernel(workload, tool)
            tool.start(workload)
            self.wait_ready(tool)
            steps = []
            for rate in workload.rates:
                duration = self.args.step_duration if workload.stepped else self.args.duration
                step = self.measure_step(tool, workload, rate, duration)
                steps.append(step)
                log(f"  {tool_name:<18} {workload.name:<10} rate {rate or 'max':>7}: generated {step['generated']:>8} "
                    f"delivered {step['delivered']:>8} lost {step['lost']:>6} cpu {step['cpu_s']:.2f} s")
                if not step["lossless"]:
                    break
                if rate and step["achieved"] < 0.95 * rate:
                    step["storm_bound"] = True  # the storm itself cannot go faster here
                    break
                if self.out_of_time():
                    step["out_of_time"] = True
                    break
            generated = sum(s["generated"] for s in steps)
            delivered = sum(s["delivered"] for s in steps)
            tool.check(generated, delivered)
            result.update(steps=steps, generated=generated, delivered=delivered, lost=sum(s["lost"] for s in steps),
                          cpu_s=sum(s["cpu_s"] for s in steps), rss_mb=peak_rss_mb(tool.pid), details=tool.details())
            result["cpu_us_per_event"] = result["cpu_s"] * 1e6 / delivered if delivered else None
            if workload.stepped:
                ok = [s for s in steps if s["lossless"]]
                result["rate"] = ok[-1]["achieved"] if ok else 0.0
                last = steps[-1]
                result["note"] = (f"lost at {last['rate'] // 1000}k/s" if not last["lossless"] else
                                  "storm-bound" if last.get("storm_bound") else
                                  "out of time" if last.get("out_of_time") else
                                  f"no loss up to the last step ({last['rate'] // 1000}k/s)")
            else:
                result["rate"] = steps[0]["achieved"]
                if workload.name == "flatout" and not steps[0]["lossless"]:
                    result["note"] = "events lost: not a drain rate"
            tool.stop()
            tool.proc = None
        except (BenchError, OSError) as e:
            result["error"] = str(e)
            log(f"  {tool_name} {workload.name}: ERROR {e}")
        finally:
            # After an error: the daemon first, then whatever else this run started.
            for p in [tool.proc] + list(reversed(self.procs.live)):
                if p in self.procs.live:
                    self.procs.stop(p)
            if self.kernel.status()["pid"]:
                # The tool is gone but did not unregister: a dead pid is reset by this request.
                result.setdefault("error", "the daemon left its pid registered")
                self.kernel.set(pid=0)
            if not self.args.keep:
                shutil.rmtree(dir_, ignore_errors=True)
        return result

    def run(self, tools, names):
        wl = workloads(self)
        results = []
        for round_ in range(self.args.rounds):
            for w in names:
                k = round_ % len(tools)
                order = tools[k:] + tools[:k]
                for tool in order:
                    if self.out_of_time():
                        log(f"time limit of {self.args.max_minutes} min reached: "
                            f"skipping {tool} {w} round {round_ + 1}")
                        results.append({"tool": tool, "workload": w, "round": round_, "error": "skipped: time limit"})
                        continue
                    results.append(self.run_one(tool, wl[w], round_))
        return results


# ---- the table -----------------------------------------------------------------------------------

def summarise(results, tools, names):
    rows = []
    for w in names:
        for t in tools:
            runs = [r for r in results if r["tool"] == t and r["workload"] == w and "error" not in r]
            errors = [r["error"] for r in results if r["tool"] == t and r["workload"] == w and "error" in r]
            row = {"workload": w, "tool": t, "rounds": len(runs), "errors": errors}
            if runs:
                cpu = [r["cpu_us_per_event"] for r in runs if r["cpu_us_per_event"] is not None]
                row.update(generated=sum(r["generated"] for r in runs), delivered=sum(r["delivered"] for r in runs),
                           lost=sum(r["lost"] for r in runs), rss_mb=max(r["rss_mb"] for r in runs),
                           cpu_us_per_event=statistics.median(cpu) if cpu else None,
                           rate=statistics.median(r["rate"] for r in runs),
                           note="; ".join(sorted({r["note"] for r in runs if r.get("note")})))
            rows.append(row)
    for row in rows:
        peers = {p: next((r for r in rows if r["workload"] == row["workload"] and r["tool"] == p), None)
                 for p in ("auditd", "reader")}
        for figure in ("cpu_us_per_event", "rss_mb", "rate"):
            for p, peer in peers.items():
                mine, theirs = row.get(figure), peer.get(figure) if peer else None
                row[f"{figure}_vs_{p}"] = mine / theirs if mine is not None and theirs else None
    return rows


def markdown(rows):
    def num(v, fmt):
        return "–" if v is None else format(v, fmt)

    def ratio(v):
        return "–" if v is None else f"{v:.2f}×"

    head = ("| workload | tool | generated | delivered | kernel lost (records) | CPU µs/event | ×auditd | ×reader "
            "| peak RSS MB | ×auditd | ×reader | rate ev/s | ×auditd | ×reader | note |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if not r["rounds"]:
            empty = " | ".join(["–"] * 12)
            lines.append(f"| {r['workload']} | {r['tool']} | {empty} | {'; '.join(r['errors'])} |")
            continue
        note = "; ".join(filter(None, [r["note"], *(f"error: {e}" for e in r["errors"])]))
        lines.append(
            f"| {r['workload']} | {r['tool']} | {r['generated']} | {r['delivered']} "
            f"({100 * r['delivered'] / r['generated']:.1f} %) | {r['lost']} "
            f"| {num(r['cpu_us_per_event'], '.1f')} | {ratio(r['cpu_us_per_event_vs_auditd'])} "
            f"| {ratio(r['cpu_us_per_event_vs_reader'])} | {r['rss_mb']:.1f} | {ratio(r['rss_mb_vs_auditd'])} "
            f"| {ratio(r['rss_mb_vs_reader'])} | {r['rate']:.0f} | {ratio(r['rate_vs_auditd'])} "
            f"| {ratio(r['rate_vs_reader'])} | {note} |")
    return "\n".join(lines)


# ---- main ----------------------------------------------------------------------------------------

def ensure_installed(tools):
    """Debian's auditd and rsyslog(-relp), installed without letting Debian start their services."""
    need = []
    if "auditd" in tools and not shutil.which("auditd"):
        need.append("auditd")
    if not shutil.which("auditctl"):
        need.append("auditd")
    if any(t in tools for t in ("auditrelay-relp", "auditrelay-both")):
        if not shutil.which("rsyslogd"):
            need.append("rsyslog")
        if not any(Path(d, "imrelp.so").exists() for d in ("/usr/lib/x86_64-linux-gnu/rsyslog", "/usr/lib/rsyslog")):
            need.append("rsyslog-relp")
    if not need:
        return
    need = sorted(set(need))
    log(f"installing {' '.join(need)} (services kept from starting)")
    policy = Path("/usr/sbin/policy-rc.d")
    added = not policy.exists()
    if added:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *need], check=True, env=env)
    finally:
        if added:
            policy.unlink()


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--duration", type=float, help="seconds per storm (default 5; --quick 1.5)")
    ap.add_argument("--step-duration", type=float, help="seconds per lossless step (default 3; --quick 1)")
    ap.add_argument("--rounds", type=int, help="rounds, tool order rotated each round (default 2; --quick 1)")
    ap.add_argument("--max-steps", type=int, help=f"lossless steps at most (default {len(LOSSLESS_STEPS)}; --quick 2)")
    ap.add_argument("--max-minutes", type=float, help="skip what is left after this long (default 15; --quick 2)")
    ap.add_argument("--quick", action="store_true", help="a short run: a smoke test, not a measurement")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS + EXTRA_TOOLS)}")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated subset of {','.join(WORKLOADS)}")
    ap.add_argument("--out", type=Path, help="JSON results (default target/live-bench/results-<UTC time>.json)")
    ap.add_argument("--tmpdir", default="/var/tmp", help="where run directories go (default /var/tmp: on disk)")
    ap.add_argument("--keep", action="store_true", help="keep each run's directory (outputs, configs, stderr)")
    ap.add_argument("--no-build", action="store_true", help="use the binaries already in target/release")
    ap.add_argument("--auditrelay-set", action="append", default=[], metavar="SECTION.KEY=TOML",
                    help="a config key for every auditrelay tool, e.g. netlink.gather='\"40ms\"' (repeatable)")
    ap.add_argument("--lock-timeout", type=float, default=900.0, help="seconds to wait for the kernel lock")
    a = ap.parse_args()
    quick = a.quick
    for name, full, short in (("duration", 5.0, 1.5), ("step_duration", 3.0, 1.0), ("rounds", 2, 1),
                              ("max_steps", len(LOSSLESS_STEPS), 2), ("max_minutes", 15.0, 2.0)):
        if getattr(a, name) is None:
            setattr(a, name, short if quick else full)
    a.tools = [t for t in a.tools.split(",") if t]
    a.workloads = [w for w in a.workloads.split(",") if w]
    bad = [t for t in a.tools if t not in TOOLS + EXTRA_TOOLS] + [w for w in a.workloads if w not in WORKLOADS]
    if bad or not a.tools or not a.workloads:
        ap.error(f"unknown or empty tools/workloads: {bad}")
    a.auditrelay_set_parsed = {}
    for item in a.auditrelay_set:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not section or not name or not value:
            ap.error(f"--auditrelay-set {item!r}: expected SECTION.KEY=TOML-VALUE")
        a.auditrelay_set_parsed.setdefault(section, []).append(f"{name} = {value}")
    if a.rounds < 1 or a.duration <= 0 or a.step_duration <= 0 or a.max_steps < 1:
        ap.error("--rounds, --duration, --step-duration and --max-steps must be positive")
    return a


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "?")
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    commit = run_text(["git", "-C", str(REPO), "describe", "--always", "--dirty"])
    return {"cpu": cpu, "cpus": os.cpu_count(), "mem_mb": mem, "kernel": os.uname().release,
            "auditd": run_text(["dpkg-query", "-W", "-f=${Version}", "auditd"]),
            "rsyslog": run_text(["dpkg-query", "-W", "-f=${Version}", "rsyslog"]), "commit": commit,
            "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3]}


def main():
    args = parse_args()
    if os.geteuid() != 0:
        sys.exit("live: needs root (registers as the audit daemon, loads rules)")
    ensure_installed(args.tools)

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    if not args.no_build:
        log("cargo build --release --examples --bins")
        subprocess.run(["cargo", "build", "--release", "--examples", "--bins"], cwd=REPO, check=True)
    bench = Bench(args)
    for exe in (bench.examples / "storm", bench.examples / "count-reader", bench.release / "auditrelay"):
        if not exe.exists():
            sys.exit(f"live: {exe} missing (build failed?)")

    lock = take_kernel_lock(args.lock_timeout)
    state, status, results = None, 0, []
    bench.tmp = tempfile.mkdtemp(prefix="auditrelay-live-", dir=args.tmpdir)
    info = machine()
    try:
        state = KernelState(bench.kernel)
        log(f"kernel before: {state.auditctl_s.replace(chr(10), ', ')}; {len(state.rules)} rules")
        results = bench.run(args.tools, args.workloads)
    except Interrupted as e:
        log(f"interrupted by {e}: stopping")
        status = 130
    except BenchError as e:
        log(f"error: {e}")
        status = 1
    finally:
        bench.procs.stop_all()
        if state is not None:
            try:
                state.restore()
                log("kernel audit state restored")
            except (BenchError, OSError) as e:
                log(f"error: {e}")
                status = status or 1
        if args.keep:
            log(f"run directories kept in {bench.tmp}")
        else:
            shutil.rmtree(bench.tmp, ignore_errors=True)
        fcntl.flock(lock, fcntl.LOCK_UN)

    info["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    rows = summarise(results, args.tools, args.workloads)
    table = markdown(rows)
    print(table)
    out = args.out or REPO / "target" / "live-bench" / f"results-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    settings.update(backlog_limit=BACKLOG_LIMIT, default_backlog_wait_time=DEFAULT_WAIT_TIME,
                    lossless_steps=bench.lossless_steps)
    out.write_text(json.dumps({"machine": info, "settings": settings, "summary": rows, "runs": results,
                               "markdown": table}, indent=2, default=str) + "\n")
    log(f"results: {out} ({time.monotonic() - bench.started:.0f} s)")
    if any("error" in r for r in results):
        status = status or 1
    return status


if __name__ == "__main__":
    sys.exit(main())
