#!/usr/bin/env bash
# What confinement costs at start: `run --rm busybox true` with the default confinement
# (capabilities, masked paths, seccomp), with seccomp=unconfined, and --privileged; and the
# cost of compiling the default seccomp profile (paid once per daemon and capability set).
# Run as root from the repo root:
#   cargo build --release && bench/confinement.sh [RUNS]
set -euo pipefail
RUNS=${1:-20}
BERTH=${BERTH:-$PWD/target/release/berth}
W=$(mktemp -d /tmp/berth-bench.XXXXXX)
cleanup() {
  set +e
  [ -n "${BPID:-}" ] && kill -TERM "$BPID" 2>/dev/null && wait "$BPID" 2>/dev/null
  grep " $W" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$W"
  for d in /sys/fs/cgroup/*/berth; do rmdir "$d" 2>/dev/null; done
}
trap cleanup EXIT
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }
timeit() {
  if command -v hyperfine >/dev/null; then
    hyperfine -N -w 3 -r "$RUNS" --export-json "$W/h.json" "$(printf '%q ' "$@")" >/dev/null 2>&1 &&
      python3 -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["results"][0]["median"])' "$W/h.json" && return
  fi
  for _ in $(seq "$RUNS"); do
    s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
    echo "$e - $s" | bc -l
  done | median
}

./scripts/busybox-rootfs.sh > "$W/busybox.tar"
"$BERTH" daemon --data-root "$W/berth" --exec-root "$W/berth-run" -H "unix://$W/berth.sock" --config-file /dev/null 2>"$W/berth.log" &
BPID=$!
export DOCKER_HOST="unix://$W/berth.sock"
for _ in $(seq 100); do "$BERTH" version >/dev/null 2>&1 && break; sleep 0.05; done
"$BERTH" import -c 'CMD ["sh"]' "$W/busybox.tar" busybox:latest >/dev/null
# The first start compiles the default profile; time it, then the steady state.
s=$(date +%s.%N); "$BERTH" run --rm busybox true; e=$(date +%s.%N)
first=$(echo "$e - $s" | bc -l)
default_t=$(timeit "$BERTH" run --rm busybox true)
unconfined_t=$(timeit "$BERTH" run --rm --security-opt seccomp=unconfined busybox true)
privileged_t=$(timeit "$BERTH" run --rm --privileged busybox true)
bpf=$(ls -S "$W/berth-run/seccomp/" | head -1)
size=$(stat -c %s "$W/berth-run/seccomp/$bpf")
echo "| berth run --rm busybox true | median s | vs unconfined |"
echo "|---|---|---|"
for row in "default:$default_t" "seccomp=unconfined:$unconfined_t" "--privileged:$privileged_t"; do
  name=${row%%:*}; t=${row#*:}
  printf '| %s | %s | %.2f× |\n' "$name" "$t" "$(echo "$t / $unconfined_t" | bc -l)"
done
printf '\nfirst start (compiles the default profile): %.4f s; compiled program: %s bytes (%d instructions)\n' "$first" "$size" $((size / 8))
