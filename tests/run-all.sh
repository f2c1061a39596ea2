#!/usr/bin/env bash
# Install what the tests need on a fresh Debian machine (as root), then run every test.
# (python3: tests/journald_log.rs stands a small listener in for journald.)
#
# Kernel tests register a daemon, load rules and change kernel audit settings; they take an flock on
# /tmp/auditrelay-kernel.lock, run one at a time and restore the kernel state they found.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(auditd rsyslog rsyslog-relp rsyslog-openssl rsyslog-elasticsearch rsyslog-kafka openssl systemd man-db python3)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "run-all: installing ${missing[*]}"
    # Debian would start auditd and rsyslogd on install; we need the kernel's audit pid free and
    # start our own rsyslogd per test, so deny service starts for the duration of the install.
    policy=/usr/sbin/policy-rc.d
    added_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && added_policy=1
    fi
    trap '[ "$added_policy" = 1 ] && rm -f "$policy"' EXIT
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "$added_policy" = 1 ] && rm -f "$policy"
    trap - EXIT
fi

if pgrep -x auditd >/dev/null; then
    echo "run-all: auditd is running and holds the kernel audit pid; stop it first (kernel tests need it free)" >&2
    exit 1
fi

# The kernel-state check is part of the suite: without it a test that leaves rules or a registered
# pid behind would pass. Read under the kernel lock so another run's test in progress is not seen.
state_tool=tools/audit-state
kernel_lock=/tmp/auditrelay-kernel.lock
if [ ! -x "$state_tool" ]; then
    echo "run-all: $state_tool is missing or not executable: cannot check the kernel state the tests leave" >&2
    exit 1
fi
state_before=$(mktemp)
log=$(mktemp)
trap 'rm -f "$log" "$state_before"' EXIT
flock "$kernel_lock" "$state_tool" --check --save "$state_before" || {
    echo "run-all: the kernel's audit state is not clean before the tests (see above)" >&2
    exit 1
}

cargo fmt --check
cargo build --all-targets --locked
cargo clippy --all-targets --locked -- -D warnings
set +e
cargo test --locked --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

if ! flock "$kernel_lock" "$state_tool" --check --against "$state_before"; then
    echo "run-all: the tests left kernel audit state behind" >&2
    status=1
fi

# The .deb: build, install, check, purge (tests/package.sh; bounded by PACKAGE_TIMEOUT).
if ! bash tests/package.sh; then
    echo "run-all: the package test failed" >&2
    status=1
fi

# One closing line over every test binary (cargo prints one summary per binary, the last of which
# is the doc tests').
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
