#!/usr/bin/env python3
"""Regenerate the rule goldens from the real auditctl and the real kernel.

For every distinct rule line of rules/*.rules, tests/data/rules/*.rules,
/usr/share/doc/auditd/examples/rules/*.rules and /work/shared/rulesets/**/*.rules this loads
the line alone with auditctl (split on spaces exactly as `auditctl -R` splits a file line),
then records what the kernel lists (raw AUDIT_LIST_RULES payloads, hex) and `auditctl -l`,
or auditctl's rejection message (classified as auditctl-side or kernel-side), then `auditctl -D`.

Control lines (-D -b -f -e -r -i -c --backlog_wait_time --loginuid-immutable) are recorded as
control and never run: -e 2 / -f 2 / --loginuid-immutable cannot be undone on a live machine.

Holds an exclusive flock on /tmp/auditrelay-kernel.lock throughout; starts from the kernel's
rule set saved as raw payloads and restores it at the end, also on failure or SIGINT/SIGTERM.

Output: tests/data/rules/goldens.jsonl (one object per distinct line, sorted by line) and
tests/data/rules/env.json (which watched paths were directories, user/group names) so the pure
tests can compile exactly as auditctl did here without touching this machine's filesystem.

Needs: root, python3, Debian package auditd (auditctl 3.0.9). Run: sudo python3 regenerate.py
"""
import fcntl, glob, grp, json, os, pwd, signal, socket, struct, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
LOCK = "/tmp/auditrelay-kernel.lock"
AUDIT_ADD_RULE, AUDIT_DEL_RULE, AUDIT_LIST_RULES = 1011, 1012, 1013
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK = 1, 4
CONTROL = {"-D", "-b", "-f", "-e", "-r", "-i", "-c", "--backlog_wait_time", "--loginuid-immutable", "-s", "-l"}


def sources():
    pats = [os.path.join(REPO, "rules", "*.rules"), os.path.join(HERE, "*.rules"),
            "/usr/share/doc/auditd/examples/rules/*.rules", "/work/shared/rulesets/**/*.rules"]
    files = []
    for p in pats:
        files += sorted(glob.glob(p, recursive=True))
    return files


class Audit:
    def __init__(self):
        self.s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 9)
        self.s.bind((0, 0))
        self.seq = 0

    def request(self, typ, payload=b"", flags=NLM_F_REQUEST | NLM_F_ACK):
        self.seq += 1
        self.s.send(struct.pack("=IHHII", 16 + len(payload), typ, flags, self.seq, 0) + payload)
        return self.seq

    def list_rules(self):
        seq = self.request(AUDIT_LIST_RULES, flags=NLM_F_REQUEST)
        out = []
        while True:
            data = self.s.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                ln, typ, _fl, sq, _pid = struct.unpack_from("=IHHII", data, off)
                body = data[off + 16: off + ln]
                off += (ln + 3) & ~3
                if sq != seq:
                    continue
                if typ == NLMSG_DONE:
                    return out
                if typ == NLMSG_ERROR:
                    err = struct.unpack_from("=i", body)[0]
                    if err != 0:
                        raise OSError(-err, "AUDIT_LIST_RULES")
                    continue
                if typ == AUDIT_LIST_RULES:
                    out.append(bytes(body))

    def ack(self, typ, payload):
        seq = self.request(typ, payload)
        while True:
            data = self.s.recv(65536)
            ln, t, _fl, sq, _pid = struct.unpack_from("=IHHII", data, 0)
            if sq == seq and t == NLMSG_ERROR:
                err = struct.unpack_from("=i", data, 16)[0]
                if err != 0:
                    raise OSError(-err, os.strerror(-err))
                return


def split_like_auditctl(line):
    """auditctl -R: `\\ ` is a space and `\\\\` a backslash inside a word (not the first word);
    words are separated by spaces only (tabs are part of words)."""
    marks = list(line)
    esc = False
    for j, c in enumerate(marks):
        if c == "\\" and not esc:
            esc = True
            continue
        if esc:
            if c == " ":
                marks[j - 1], marks[j] = "\x07", "\x07"
            elif c == "\\":
                marks[j - 1], marks[j] = "\x04", "\x04"
            esc = False
    words = [w for w in "".join(marks).split(" ") if w]
    return words[:1] + [w.replace("\x07\x07", " ").replace("\x04\x04", "\\") for w in words[1:]]


def auditctl(args):
    p = subprocess.run(["auditctl"] + args, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def locked_run(work):
    """work(a) with the kernel to ourselves: exclusive flock, the kernel's rules saved first and put
    back after, also on failure or SIGINT/SIGTERM. Returns what work returns."""
    if os.geteuid() != 0:
        sys.exit(f"{os.path.basename(sys.argv[0])}: must run as root")
    lockf = open(LOCK, "a+")
    fcntl.flock(lockf, fcntl.LOCK_EX)
    a = Audit()
    saved = a.list_rules()

    def restore():
        auditctl(["-D"])
        for p in saved:
            try:
                a.ack(AUDIT_ADD_RULE, p)
            except OSError as e:
                print(f"restore: {e}", file=sys.stderr)

    def on_signal(signum, _frame):
        restore()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return work(a)
    finally:
        restore()


def main():
    goldens, env = locked_run(run)
    with open(os.path.join(HERE, "goldens.jsonl"), "w") as f:
        for g in goldens:
            f.write(json.dumps(g, sort_keys=True) + "\n")
    with open(os.path.join(HERE, "env.json"), "w") as f:
        json.dump(env, f, indent=1, sort_keys=True)
        f.write("\n")


def run(a):
    lines = {}
    for path in sources():
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for raw in f:
                line = raw.rstrip("\n")
                words = split_like_auditctl(line)
                if not words or words[0].startswith("#"):
                    continue
                lines.setdefault(line, words)
    auditctl(["-D"])
    goldens, dirs = [], set()
    for line in sorted(lines):
        words = lines[line]
        g = {"line": line}
        if words[0] in CONTROL:
            g["result"] = "control"
            goldens.append(g)
            continue
        for i, w in enumerate(words[:-1]):
            if w in ("-w", "-W"):
                p = words[i + 1]
                while len(p) > 2 and p.endswith("/"):
                    p = p[:-1]
                if os.path.isdir(p):
                    dirs.add(p)
        rc, out, err = auditctl(words)
        msg = (err.strip() + "\n" + out.strip()).strip()
        rules = a.list_rules()
        if rc == 0 and rules:
            g["result"] = "accepted"
            g["payloads"] = [r.hex() for r in rules]
            _rc, listing, _err = auditctl(["-l"])
            g["listing"] = listing
            if msg:
                g["message"] = msg
        elif rc == 0:
            # e.g. -d of an absent rule is only a warning for auditctl
            g["result"] = "no_rule"
            g["message"] = msg
        else:
            g["result"] = "rejected_kernel" if "Error sending" in msg else "rejected_auditctl"
            g["message"] = msg
        goldens.append(g)
        if rules:
            auditctl(["-D"])
    env = {
        "machine": os.uname().machine,
        "auditctl": auditctl(["-v"])[1].strip(),
        "kernel": os.uname().release,
        "dirs": sorted(dirs),
        "users": {p.pw_name: p.pw_uid for p in pwd.getpwall()},
        "groups": {g.gr_name: g.gr_gid for g in grp.getgrall()},
    }
    return goldens, env


if __name__ == "__main__":
    main()
