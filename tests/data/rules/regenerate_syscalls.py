#!/usr/bin/env python3
"""Regenerate tests/data/rules/numeric-syscalls.jsonl from the real auditctl and kernel.

For every numeric `-S` spelling (0..2047 in decimal, and a few hex/octal/overflowing/trailing
garbage spellings) this loads `-a always,exit -F arch=b64 -S <n>` alone with auditctl and records
what the kernel lists: the syscall numbers set in the listed mask, the SHA-256 of the whole
listed payload (the file would be ~5 MB with the payloads themselves) and `auditctl -l`; or
auditctl's rejection. Then `auditctl -D`.

Same locking and restore as regenerate.py (exclusive flock on /tmp/auditrelay-kernel.lock, the
kernel's rules saved and put back, also on failure or SIGINT/SIGTERM).

Needs: root, python3, Debian package auditd (auditctl 3.0.9). Run: sudo python3 regenerate_syscalls.py
"""
import hashlib, json, os, struct, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from regenerate import HERE, auditctl, locked_run  # noqa: E402

EXTRA = ["0x10", "0X10", "010", "0x7ff", "0x7FF", "03777", "2048", "2049", "4095", "65535", "12abc", "7,9,11",
         "99999999999", "4294967296", "4294967297", "0x80000000", "0xffffffff", "0x", "08", "00", "1e3"]

def mask_bits(payload):
    words = struct.unpack_from("=64I", payload, 12)
    return [w * 32 + b for w in range(64) for b in range(32) if words[w] >> b & 1]


def run(a):
    out = []
    for s in [str(n) for n in range(2048)] + EXTRA:
        words = ["-a", "always,exit", "-F", "arch=b64", "-S", s]
        rc, so, se = auditctl(words)
        msg = (se.strip() + "\n" + so.strip()).strip()
        rules = a.list_rules()
        g = {"s": s}
        if rc == 0 and len(rules) == 1:
            g["result"] = "accepted"
            g["mask"] = mask_bits(rules[0])
            g["sha256"] = hashlib.sha256(rules[0]).hexdigest()
            g["listing"] = auditctl(["-l"])[1]
        elif rc == 0:
            g["result"] = "no_rule" if not rules else "several"
            g["message"] = msg
        else:
            g["result"] = "rejected_kernel" if "Error sending" in msg else "rejected_auditctl"
            g["message"] = msg
        out.append(g)
        if rules:
            auditctl(["-D"])
    return out


def main():
    def work(a):
        auditctl(["-D"])
        return run(a)

    goldens = locked_run(work)
    with open(os.path.join(HERE, "numeric-syscalls.jsonl"), "w") as f:
        for g in goldens:
            f.write(json.dumps(g, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
