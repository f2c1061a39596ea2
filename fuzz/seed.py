#!/usr/bin/env python3
"""Fill fuzz/corpus/<target>/ with seeds from real data in this repository: kernel payloads and
audit.log lines captured from a real kernel (fuzz/seeds/, a per-type sample), the rule files
(rules/, tests/data/rules/ with the golden lines and listings), the replay-compat logs in
tests/data/, the example config, and RELP frames and spool segments built from
those records the way auditrelay writes them. Run from anywhere: python3 fuzz/seed.py"""
import base64, glob, hashlib, json, os, struct, zlib

FUZZ = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(FUZZ)


def put(target, data):
    d = os.path.join(FUZZ, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def main():
    payloads = []
    for l in open(os.path.join(FUZZ, "seeds", "netlink.jsonl")):
        j = json.loads(l)
        typ = struct.unpack_from("=H", bytes.fromhex(j["header_hex"]), 4)[0]
        p = base64.b64decode(j["payload_b64"])
        payloads.append(p)
        put("kernel_record", struct.pack("<H", typ) + p)
    lines = open(os.path.join(FUZZ, "seeds", "audit.log"), "rb").read().splitlines()
    for l in lines:
        put("log_line", l)
    for l in lines[:3]:
        put("log_line", b"node=host1 " + l)
    # Interpretation: each event's lines together; each SOCKADDR's bytes.
    events = {}
    for l in lines:
        stamp = l[l.index(b"audit("):].split(b")")[0]
        events.setdefault(stamp, []).append(l)
    for ls in events.values():
        put("execve_argv", b"\n".join(ls))
    for l in lines:
        if l.startswith(b"type=SOCKADDR"):
            put("sockaddr", bytes.fromhex(l.rsplit(b"=", 1)[1].decode()))
    rule_files = glob.glob(os.path.join(REPO, "rules", "*.rules")) + glob.glob(os.path.join(REPO, "tests", "data", "rules", "*.rules"))
    for path in rule_files:
        data = open(path, "rb").read()
        put("rules_text", data)
        for l in data.splitlines():
            if l.strip() and not l.startswith(b"#"):
                put("rules_text", l)
    for path in glob.glob(os.path.join(REPO, "examples", "*.toml")):
        put("config_text", open(path, "rb").read())
    # RELP: what auditrelay sends and rsyslog answers (frame.rs encode format).
    frames = [b"1 open 85 relp_version=0\nrelp_software=auditrelay\ncommands=syslog\n",
              b"1 rsp 92 200 OK\nrelp_version=0\nrelp_software=rsyslogd,8.2302.0,https://www.rsyslog.com\ncommands=syslog\n",
              b"2 rsp 6 200 OK\n", b"3 rsp 9 500 error\n", b"0 serverclose 0\n", b"4 close 0\n"]
    for p in payloads[:20]:
        frames.append(b"2 syslog %d %s\n" % (len(p), p))
    for i, f in enumerate(frames):
        put("relp_frames", bytes([1 + i % 7]) + f)
    put("relp_frames", b"\x40" + b"".join(frames))
    # Spool segments (v2): the magic, then frames as spool/frame.rs writes them, stored uncompressed
    # (codec 0; the harness's property tests cover the compressed codecs), 8 events per frame.
    def inner(pos, body, ident):
        return struct.pack("<IQH", 10 + len(ident) + len(body), 1795374595144 + pos, len(ident)) + ident + body
    def frame(first, raws):
        data = b"".join(raws)
        rest = struct.pack("<QII", first, len(raws), len(data)) + b"\0" * 8 + data
        return struct.pack("<II", len(data), zlib.crc32(rest)) + rest
    seg, batch = b"ARSPOOL2", []
    for i, l in enumerate(lines[:40]):
        body = json.dumps({"raw": l.decode("utf-8", "replace")}).encode()
        batch.append(inner(i + 1, body, b"31353-%d" % i))
        if len(batch) == 8:
            seg += frame(i + 2 - len(batch), batch)
            batch = []
            put("spool_segment", seg)
    put("spool_segment", seg[:-7])
    # tests/data: the replay-compat logs (CRLF, legacy, enriched, out of order) and the rule lines
    # whose kernel bytes and listings the goldens hold.
    for path in glob.glob(os.path.join(REPO, "tests", "data", "replay-compat", "*")):
        for l in open(path, "rb").read().splitlines():
            put("log_line", l)
    for name in ("goldens.jsonl", "numeric-syscalls.jsonl"):
        for l in open(os.path.join(REPO, "tests", "data", "rules", name)):
            j = json.loads(l)
            for key in ("line", "listing"):
                if key in j:
                    put("rules_text", j[key].encode())


if __name__ == "__main__":
    main()
