#!/usr/bin/env bash
# Catch-up after a receiver outage against delivery with the receiver up (issue 12's target: the
# catch-up rate is at least the rate RELP reaches with the receiver up), on the real kernel and a
# private rsyslogd (imrelp → omfile, the live benchmark's receiver), one daemon, spool → RELP:
#
#   1. receiver up:   openat flat out for UP_SECONDS; the delivery rate is the events rsyslogd
#                     wrote over the time from its first to its last write;
#   2. receiver down: rsyslogd stopped, openat at OUTAGE_RATE/s for OUTAGE_SECONDS (spooled);
#   3. receiver back: rsyslogd started again; the catch-up rate is measured the same way.
#
#   bash benches/outage.sh [UP_SECONDS] [OUTAGE_RATE] [OUTAGE_SECONDS]   (default 5 20000 10)
#
# Needs root, rsyslog and rsyslog-relp (apt-get install rsyslog rsyslog-relp), and the release
# build (cargo build --release --examples). Holds the kernel lock of the tests and of
# benches/live.py. The daemon puts back the kernel's rules and settings itself when it stops
# (SIGTERM, also when this script is interrupted).
set -euo pipefail
cd "$(dirname "$0")/.."
up_s=${1:-5}
rate=${2:-20000}
outage_s=${3:-10}
bin=${CARGO_TARGET_DIR:-target}/release
for f in "$bin/auditrelay" "$bin/examples/storm"; do
  [ -x "$f" ] || { echo "outage: $f missing: cargo build --release --examples" >&2; exit 1; }
done
command -v rsyslogd >/dev/null || { echo "outage: apt-get install rsyslog rsyslog-relp" >&2; exit 1; }
command -v auditctl >/dev/null || { echo "outage: apt-get install auditd (for auditctl -l)" >&2; exit 1; }
bin=$(cd "$bin" && pwd)
exec 9>>/tmp/auditrelay-kernel.lock
flock -w 600 9 || { echo "outage: the kernel lock is held by another test or benchmark" >&2; exit 1; }

work=$(mktemp -d /var/tmp/auditrelay-outage.XXXXXX)
daemon=""
rsyslog=""
cleanup() {
  [ -n "$rsyslog" ] && kill "$rsyslog" 2>/dev/null || true
  if [ -n "$daemon" ]; then
    kill -TERM "$daemon" 2>/dev/null || true
    wait "$daemon" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/rs/work"
sed -e "s|@WORK@|$work/rs/work|" -e "s|@OUT@|$work/rs/relp.log|" -e "s|@PORT@|$port|" \
  benches/data/rsyslog-relp.conf > "$work/rs/rsyslog.conf"
start_rsyslog() {
  rsyslogd -n -f "$work/rs/rsyslog.conf" -i "$work/rs/pid" 2>>"$work/rs/err" &
  rsyslog=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "outage: rsyslogd did not listen on $port (see $work/rs/err)" >&2
  exit 1
}
stop_rsyslog() {
  kill "$rsyslog"
  wait "$rsyslog" 2>/dev/null || true
  rsyslog=""
}

storm="$bin/examples/storm"
echo "-D" > "$work/bench.rules"
echo "-a always,exit -F arch=b64 -S openat -F exe=$storm -F success=0 -F key=arbench" >> "$work/bench.rules"
cat > "$work/auditrelay.toml" <<TOML
[kernel]
enabled = 1
backlog_limit = 8192
rate_limit = 0

[rules]
sources = ["$work/bench.rules"]
cache_dir = "$work/rules-cache"

[spool]
dir = "$work/spool"

[[output]]
type = "relp"
name = "relp"
address = "127.0.0.1:$port"
TOML

start_rsyslog
"$bin/auditrelay" run --config "$work/auditrelay.toml" 2>"$work/auditrelay.err" &
daemon=$!
for _ in $(seq 200); do
  grep -q "arbench" <(auditctl -l 2>/dev/null || true) && break
  kill -0 "$daemon" 2>/dev/null || { echo "outage: the daemon exited (see $work/auditrelay.err)" >&2; cat "$work/auditrelay.err" >&2; exit 1; }
  sleep 0.1
done
grep -q "arbench" <(auditctl -l 2>/dev/null || true) || { echo "outage: the rule was not loaded" >&2; exit 1; }
sleep 1

# Lines rsyslogd wrote (one per event), and a rate over the span of its writes: from the first
# write after `from` lines to the last, once the file stopped growing for a second with at least
# `want` lines in it.
lines() { [ -f "$work/rs/relp.log" ] && grep -c arbench "$work/rs/relp.log" || echo 0; }
delivery_rate() {
  local from=$1 want=$2 first="" last="" size=0 now grown still=0
  for _ in $(seq 6000); do
    grown=$(stat -c %s "$work/rs/relp.log" 2>/dev/null || echo 0)
    now=$(date +%s.%N)
    if [ "$grown" -gt "$size" ]; then
      [ -z "$first" ] && first=$now
      last=$now size=$grown still=0
    else
      still=$((still + 1))
    fi
    if [ -n "$first" ] && [ "$still" -ge 20 ] && [ "$(lines)" -ge "$want" ]; then break; fi
    if [ -n "$first" ] && [ "$still" -ge 200 ]; then break; fi
    sleep 0.05
  done
  local got=$(( $(lines) - from ))
  python3 -c "import sys; n, a, b = int(sys.argv[1]), float(sys.argv[2] or 0), float(sys.argv[3] or 0); print(n, f'{n / (b - a):.0f}' if b > a else 0)" "$got" "$first" "$last"
}
generated() { python3 -c 'import json, sys; print(json.load(sys.stdin)["syscalls"])'; }

# 1. Receiver up, flat out. The storm runs alongside; delivery lags behind the kernel's drain.
before=$(lines)
(cd / && "$storm" openat --rate 0 --duration "$up_s") > "$work/storm-up.json" &
storm_pid=$!
read -r up_got up_rate < <(delivery_rate "$before" 1)
wait "$storm_pid"
up_generated=$(generated < "$work/storm-up.json")
up_delivered=$(( $(lines) - before ))

# 2. Receiver down for a paced storm: everything goes to the spool.
stop_rsyslog
(cd / && "$storm" openat --rate "$rate" --duration "$outage_s") > "$work/storm-down.json"
down_generated=$(generated < "$work/storm-down.json")
sleep 2
spool_bytes=$(du -sb "$work/spool" | cut -f1)

# 3. Receiver back: catch-up from the spool, into a new file. Appending to the up phase's file
# (300+ MB, much of it still being written back) measured the receiver's disk: 0.82-0.94x the up
# rate that way, 1.75x into a new file, on the 2-vCPU benchmark VM.
rm -f "$work/rs/relp.log"
before=0
back=$(date +%s.%N)
start_rsyslog
read -r down_got catch_rate < <(delivery_rate "$before" "$((before + down_generated))")
done_after=$(python3 -c "import os, sys; print(f'{os.stat(sys.argv[1]).st_mtime - float(sys.argv[2]):.1f}')" "$work/rs/relp.log" "$back")
down_delivered=$(( $(lines) - before ))

echo "receiver up:   storm $up_generated events flat out, delivered $up_delivered; delivery rate $up_rate events/s"
echo "receiver down: storm $down_generated events at $rate/s for $outage_s s, spool $((spool_bytes / 1024)) KiB"
echo "receiver back: delivered $down_delivered of $down_generated; catch-up rate $catch_rate events/s (all written $done_after s after the receiver came back)"
python3 -c "import sys; u, c = float(sys.argv[1]), float(sys.argv[2]); print(f'catch-up / up: {c / u:.2f}x' if u else 'catch-up / up: -')" "$up_rate" "$catch_rate"
if [ "$up_delivered" -lt "$up_generated" ] || [ "$down_delivered" -lt "$down_generated" ]; then
  echo "outage: events missing (up $up_delivered of $up_generated, outage $down_delivered of $down_generated)" >&2
  exit 1
fi
