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
# group's output under $OUT (default /tmp/runtime-contest). When a group's contest process dies
# (a test `expect`ed a runtime command to succeed), its tests are run one by one
# (`-t group::test`), named from any runtime's log of that group or from a file
# CONTEST_DIR/contest-tests/GROUP (one name a line); a test whose process died is `not ok`. RUNTIME_KIND is `runc` for runc (contest then skips a few cases runc is known to
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
run_contest() {
  set +e
  (
    # contest passes its own descriptors on, and fd_control's only_stdio asks the runtime to keep
    # fds 3..102: whatever this shell inherited (a CI runner's, a terminal's) would show up there.
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ] && [ "$fd" -lt 255 ]; then eval "exec $fd<&-"; fi
    done
    RUNTIME_KIND=$kind exec timeout -k 10 "$TIMEOUT" ./contest run --runtime "$cmd" --runtimetest ./runtimetest \
      -t "$1" >"$2" 2>&1
  )
  rc=$?
  set -e
  sweep
}
count() {
  ok=$(grep -Ec '^[0-9]+ / [0-9]+ : .* : ok$' "$1" || true)
  nok=$(grep -Ec '^[0-9]+ / [0-9]+ : .* : not ok$' "$1" || true)
  skip=$(grep -Ec '^[0-9]+ / [0-9]+ : .* : skipped$' "$1" || true)
}
for rt in "${RUNTIMES[@]}"; do
  cmd=$(command -v "$rt" || true)
  kind=
  [ "$rt" = runc ] && kind=runc
  [ "$rt" = berth ] && cmd=$W/berth-runtime
  mkdir -p "$OUT/$rt"
  tok=0 tnok=0 tskip=0
  for g in $GROUPS_ALL; do
    log=$OUT/$rt/$g.log
    run_contest "$g" "$log"
    grc=$rc
    count "$log"
    note=
    if ! grep -q "^# End group" "$log"; then
      # The group's contest process panicked or timed out: run its tests one by one.
      names=$({
        sed -nE 's/^[0-9]+ \/ [0-9]+ : (.*) : (ok|not ok|skipped)$/\1/p' "$OUT"/*/"$g".log
        cat "$DIR/contest-tests/$g"
      } 2>/dev/null | sort -u || true)
      ok=0 nok=0 skip=0
      [ -n "$names" ] || nok=1
      : >"$log.each"
      while IFS= read -r t; do
        [ -n "$t" ] || continue
        run_contest "$g::$t" "$log.one"
        cat "$log.one" >>"$log.each"
        if grep -Eq "^[0-9]+ / [0-9]+ : .* : (ok|not ok|skipped)$" "$log.one"; then
          c_ok=$ok c_nok=$nok c_skip=$skip
          count "$log.one"
          ok=$((ok + c_ok)) nok=$((nok + c_nok)) skip=$((skip + c_skip))
        else
          nok=$((nok + 1))
          echo "$t : not ok (contest aborted)" >>"$log.each"
        fi
      done <<<"$names"
      rm -f "$log.one"
      note="(group aborted rc=$grc; run test by test)"
    fi
    tok=$((tok + ok)) tnok=$((tnok + nok)) tskip=$((tskip + skip))
    printf '%-6s %-34s ok %-3s not-ok %-3s skip %-3s %s\n' "$rt" "$g" "$ok" "$nok" "$skip" "$note" >>"$OUT/$rt/summary"
  done
  printf '%-6s TOTAL ok %s not-ok %s skip %s\n' "$rt" "$tok" "$tnok" "$tskip" >>"$OUT/$rt/summary"
  grep -E 'not-ok [1-9]|TOTAL' "$OUT/$rt/summary"
done
