#!/usr/bin/env bash
# OCI runtime conformance: runs the validation suite of opencontainers/runtime-tools against
# `berth runtime` and, for comparison, runc and crun on the same machine. Fetches nothing: give it
# an unpacked runtime-tools checkout (it carries its Go dependencies in vendor/). Not part of CI.
# Run as root from the repo root:
#   cargo build -p berth && bench/runtime-conformance.sh /path/to/runtime-tools [RUNTIME...]
# RUNTIME is `berth`, or any runc-compatible command on PATH (default: berth runc crun).
# Per runtime it prints how many test programs passed and the TAP assertions ok / not ok / skipped,
# and keeps every program's TAP output under $OUT (default /tmp/runtime-conformance).
set -euo pipefail
SUITE=$(realpath "${1:?usage: $0 RUNTIME_TOOLS_DIR [RUNTIME...]}")
shift
RUNTIMES=("$@")
[ ${#RUNTIMES[@]} -gt 0 ] || RUNTIMES=(berth runc crun)
BERTH=${BERTH:-$PWD/target/debug/berth}
OUT=${OUT:-/tmp/runtime-conformance}
TIMEOUT=${TIMEOUT:-120}
GO=${GO:-$(command -v go || echo /usr/lib/go-1.23/bin/go)}

# Build the test programs offline from the suite's vendor/ directory.
(
  cd "$SUITE"
  export PATH="$(dirname "$GO"):$PATH" GOFLAGS=-mod=vendor GOPROXY=off
  nice -n 10 make -s runtimetest validation-executables COMMIT=conformance >/dev/null
)

W=$(mktemp -d /tmp/berth-conformance.XXXXXX)
STATE=$W/state
cgroups_now() { find /sys/fs/cgroup -mindepth 1 -type d 2>/dev/null | sort; }
cgroups_now >"$W/cgroups.before"
cleanup() {
  set +e
  # Containers a failed test left behind, then the cgroups the suite created (deepest first).
  for id in $("$BERTH" runtime --root "$STATE" list -q 2>/dev/null); do
    "$BERTH" runtime --root "$STATE" delete --force "$id" >/dev/null 2>&1
  done
  cgroups_now | comm -13 "$W/cgroups.before" - | sort -r | xargs -r rmdir 2>/dev/null
  grep " $W" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT

# The suite runs a single command as the runtime: berth's is a wrapper around `berth runtime`.
cat >"$W/berth-runtime" <<EOF
#!/bin/sh
exec "$BERTH" runtime --root "$STATE" "\$@"
EOF
chmod +x "$W/berth-runtime"

cd "$SUITE"
TESTS=$(find validation -name '*.t' -type f | sort)
printf '%-8s %-10s %-8s %-8s %-8s %s\n' runtime programs ok "not ok" skip "failed programs"
for rt in "${RUNTIMES[@]}"; do
  cmd=$rt
  [ "$rt" = berth ] && cmd=$W/berth-runtime
  mkdir -p "$OUT/$rt"
  passed=0 total=0 ok=0 nok=0 skip=0 failed=""
  for t in $TESTS; do
    name=$(basename "$t" .t)
    total=$((total + 1))
    set +e
    RUNTIME=$cmd timeout -k 5 "$TIMEOUT" "./$t" >"$OUT/$rt/$name.tap" 2>&1
    rc=$?
    set -e
    f=$OUT/$rt/$name.tap
    o=$(grep -Ec '^ok [0-9]+' "$f" || true)
    n=$(grep -Ec '^not ok [0-9]+' "$f" || true)
    s=$(grep -Eic '^ok [0-9]+ ?-? ?# skip' "$f" || true)
    ok=$((ok + o - s))
    nok=$((nok + n))
    skip=$((skip + s))
    # A program passes when it exits 0 without a `not ok`. The *_fail programs print no TAP at
    # all when the runtime rightly refuses their config, and exit 1 when it accepts it.
    if [ "$rc" -eq 0 ] && [ "$n" -eq 0 ]; then
      passed=$((passed + 1))
    else
      # A program that died before any assertion counts as one `not ok`.
      [ "$n" -eq 0 ] && nok=$((nok + 1))
      failed="$failed $name"
    fi
  done
  printf '%-8s %-10s %-8s %-8s %-8s %s\n' "$rt" "$passed/$total" "$ok" "$nok" "$skip" "${failed# }"
  # Between runtimes: nothing of the previous one may linger.
  cgroups_now | comm -13 "$W/cgroups.before" - | sort -r | xargs -r rmdir 2>/dev/null || true
done
