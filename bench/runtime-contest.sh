#!/usr/bin/env bash
# OCI runtime conformance, second suite: youki's `contest` (tests/contest in containers/youki)
# against `berth runtime` and, for comparison, runc and crun on the same machine. Fetches and
# builds nothing: give it a directory holding youki's `contest` binary, its static `runtimetest`
# and the suite's `bundle.tar.gz` (tests/contest/contest/bundle.tar.gz). Not part of CI.
# Build them outside this repository, as youki's scripts/build.sh does:
#   cargo build --release --bin contest
#   RUSTFLAGS=-Ctarget-feature=+crt-static CARGO_BUILD_TARGET=x86_64-unknown-linux-gnu \
#     CARGO_TARGET_DIR=contest-target cargo build --release --bin runtimetest
# Run as root from the repo root:
#   cargo build -p berth && bench/runtime-contest.sh CONTEST_DIR [RUNTIME...]
# RUNTIME is `berth`, or any runc-compatible command on PATH (default: berth runc crun).
# contest runs every group in one process and a single panicking test (it `expect`s some runtime
# commands to succeed) aborts the whole run, so each group runs in its own `contest run -t GROUP`.
# Per runtime it prints tests ok / not ok / skipped, per group and in total, and keeps each
# group's output under $OUT (default /tmp/runtime-contest). A group whose contest process died
# counts its unreported tests as `not ok` (the number of tests comes from a passing runtime's log,
# else 1). RUNTIME_KIND is `runc` for runc (contest then skips a few cases runc is known to
# fail) and empty otherwise: neither runc nor youki, so no case is skipped for the runtime's sake
# (youki's own mode would skip checkpoint/restore, which youki lacks).
set -euo pipefail
DIR=$(realpath "${1:?usage: $0 CONTEST_DIR [RUNTIME...]}")
shift
RUNTIMES=("$@")
[ ${#RUNTIMES[@]} -gt 0 ] || RUNTIMES=(berth runc crun)
BERTH=$(realpath "${BERTH:-$PWD/target/debug/berth}")
OUT=${OUT:-/tmp/runtime-contest}
TIMEOUT=${TIMEOUT:-300}
GROUPS_TO_RUN=${GROUPS_TO_RUN:-}

W=$(mktemp -d /tmp/berth-contest.XXXXXX)
cgroups_now() { find /sys/fs/cgroup -mindepth 1 -type d 2>/dev/null | sort; }
cgroups_now >"$W/cgroups.before"
awk '{print $2}' /proc/self/mounts | sort >"$W/mounts.before"
# Whatever a group left behind: processes in the cgroups contest's containers got (named by
# contest's uuid container ids, or its `runtime-test` parent) created since the start, then those
# cgroups, deepest first. Other cgroups (a daemon running beside this) are not touched. Mounts
# that appeared on the host are reported; those under a contest bundle are unmounted.
UUID='[/:][0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(/|$)|/runtime-test(/|$)'
sweep() {
  local new
  new=$(cgroups_now | comm -13 "$W/cgroups.before" - | grep -E "$UUID" || true)
  if [ -n "$new" ]; then
    # A paused container's frozen processes die only once thawed.
    for d in $new; do [ -f "$d/freezer.state" ] && echo THAWED >"$d/freezer.state" 2>/dev/null || true; done
    for d in $new; do cat "$d/cgroup.procs" 2>/dev/null || true; done | sort -u | xargs -r kill -9 2>/dev/null || true
    sleep 0.5
    echo "$new" | sort -r | xargs -r rmdir 2>/dev/null || true
  fi
  local m
  for m in $(awk '{print $2}' /proc/self/mounts | sort | comm -13 "$W/mounts.before" -); do
    case $m in
      # contest's bundles live in /tmp/.tmpXXXXXX/bundle: a rootfs mount that propagated back.
      /tmp/.tmp*/bundle/*) echo "left mounted by $rt: $m" >&2; umount -l "$m" 2>/dev/null || true ;;
      *) echo "new mount (not touched): $m" >&2 ;;
    esac
  done
}
cleanup() {
  set +e
  sweep
  rm -rf "$W"
}
trap cleanup EXIT

cat >"$W/berth-runtime" <<EOF
#!/bin/sh
exec "$BERTH" runtime "\$@"
EOF
chmod +x "$W/berth-runtime"

cd "$DIR"
[ -f bundle.tar.gz ] || { echo "no bundle.tar.gz in $DIR" >&2; exit 1; }
GROUPS_ALL=${GROUPS_TO_RUN:-$(./contest list)}
mkdir -p "$OUT"
for rt in "${RUNTIMES[@]}"; do
  cmd=$(command -v "$rt" || true)
  kind=
  [ "$rt" = runc ] && kind=runc
  [ "$rt" = berth ] && cmd=$W/berth-runtime
  mkdir -p "$OUT/$rt"
  tok=0 tnok=0 tskip=0
  for g in $GROUPS_ALL; do
    log=$OUT/$rt/$g.log
    set +e
    RUNTIME_KIND=$kind timeout -k 10 "$TIMEOUT" ./contest run --runtime "$cmd" --runtimetest ./runtimetest -t "$g" \
      >"$log" 2>&1
    rc=$?
    set -e
    sweep
    ok=$(grep -Ec '^[0-9]+ / [0-9]+ : .* : ok$' "$log" || true)
    nok=$(grep -Ec '^[0-9]+ / [0-9]+ : .* : not ok$' "$log" || true)
    skip=$(grep -Ec '^[0-9]+ / [0-9]+ : .* : skipped$' "$log" || true)
    note=
    if ! grep -q "^# End group" "$log"; then
      # The group never reported: its contest process panicked or timed out.
      n=1
      for other in "$OUT"/*/"$g".log; do
        m=$(grep -Eo '^1 / [0-9]+' "$other" 2>/dev/null | head -1 | awk '{print $3}' || true)
        [ -n "$m" ] && n=$m && break
      done
      nok=$((nok + n))
      note="(aborted rc=$rc)"
    fi
    tok=$((tok + ok)) tnok=$((tnok + nok)) tskip=$((tskip + skip))
    printf '%-6s %-34s ok %-3s not-ok %-3s skip %-3s %s\n' "$rt" "$g" "$ok" "$nok" "$skip" "$note" >>"$OUT/$rt/summary"
  done
  printf '%-6s TOTAL ok %s not-ok %s skip %s\n' "$rt" "$tok" "$tnok" "$tskip" >>"$OUT/$rt/summary"
  grep -E 'not-ok [1-9]|TOTAL' "$OUT/$rt/summary"
done
