#!/usr/bin/env bash
# Replay throughput of auditrelay against laurel (Debian package `laurel`) on the same input, in the
# same run: the captured corpus repeated COPIES times with serials and timestamps shifted per copy,
# so every copy is new events. Both read audit.log text; laurel writes its JSON log file, auditrelay
# writes JSON lines to /dev/null. Prints wall and user seconds and the ratio.
#
#   bash benches/compare-laurel.sh [COPIES]     (default 200: ~560k records, ~120 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
copies=${1:-200}
command -v laurel >/dev/null || { echo "compare-laurel: apt-get install laurel" >&2; exit 1; }
cargo build --release --locked -q
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$copies" "$work/big.log" <<'PY'
import re, sys
copies, out = int(sys.argv[1]), sys.argv[2]
lines = open("tests/data/sample-audit.log", "rb").read().splitlines()
pat = re.compile(rb"audit\((\d+)\.(\d+):(\d+)\)")
serials = [int(m.group(3)) for l in lines for m in [pat.search(l)] if m]
span = max(serials) - min(serials) + 1
with open(out, "wb") as f:
    for k in range(copies):
        for l in lines:
            f.write(pat.sub(lambda m: b"audit(%d.%s:%d)" % (int(m.group(1)) + k * 10, m.group(2), int(m.group(3)) + k * span), l) + b"\n")
PY
mkdir -p "$work/laurel"
cat > "$work/laurel.toml" <<TOML
directory = "$work/laurel"
user = "root"
statusreport-period = 0
[auditlog]
file = "audit.log"
size = 50000000000
generations = 2
[translate]
universal = false
user-db = false
[enrich]
pid = false
container = false
script = false
TOML
records=$(wc -l < "$work/big.log")
measure() { /usr/bin/time -f "%e %U" "$@" 2>&1 >/dev/null | tail -n 1; }
read -r ar_wall ar_user < <(measure ./target/release/auditrelay replay "$work/big.log")
read -r la_wall la_user < <(measure laurel -c "$work/laurel.toml" < "$work/big.log")
awk -v n="$records" -v aw="$ar_wall" -v au="$ar_user" -v lw="$la_wall" -v lu="$la_user" 'BEGIN {
  printf "records: %d\n", n
  printf "auditrelay replay: %6.2f s wall, %6.2f s user, %9.0f records/s\n", aw, au, n / aw
  printf "laurel:            %6.2f s wall, %6.2f s user, %9.0f records/s\n", lw, lu, n / lw
  printf "ratio (laurel wall / auditrelay wall): %.1fx\n", lw / aw
}'
