#!/usr/bin/env bash
# Start latency of `run --rm busybox true`, end to end, berth beside raw crun on the same
# rootfs and, when installed, dockerd and podman; plus idle daemon RSS and per-shim RSS.
# Prints a markdown table of medians and ratios to raw crun. Run as root from the repo root:
#   cargo build --release && [BENCH_TMP=DIR] bench/start-latency.sh [RUNS]
#
# Three columns, each timed with the engines taking turns (bench/ab.py), so that a shared VM's
# drift over the minutes of a run hits them all alike (timed one block after the other, the
# same build came out 1.6x and 2.3x crun in two runs):
# - back to back: each engine's runs in blocks of 5 in a row, the first of a block not timed
#   (it follows another engine's run), the blocks in turn;
# - isolated: each run 50 ms after the previous one, the engines in turn;
# - in turn: crun and berth --network none alternately, one run each, back to back (not the
#   bridge: the kernel tears a veth's namespace down after the run, during the next one, and
#   that would be crun's).
# dockerd and podman are timed on their own afterwards (hyperfine), against crun's back to back.
# Exec roots are on tmpfs (/run), as in production (berth: /run/berth, docker: /run/docker).
set -euo pipefail
RUNS=${1:-20}
BERTH=${BERTH:-$PWD/target/release/berth}
# Data roots (berth's, dockerd's, podman's) and the bundle go under BENCH_TMP (default /tmp).
W=$(mktemp -d "${BENCH_TMP:-/tmp}/berth-bench.XXXXXX")
R=$(mktemp -d /run/berth-bench.XXXXXX)
# /run is a tmpfs on production hosts; where it is not (this VM's is on the root disk), the
# exec roots get one of their own, or every runtime state save would flush to disk.
[ "$(stat -f -c %T /run)" = tmpfs ] || mount -t tmpfs tmpfs "$R"
cleanup() {
  set +e
  [ -n "${BPID:-}" ] && kill -TERM "$BPID" 2>/dev/null && wait "$BPID" 2>/dev/null
  [ -n "${DPID:-}" ] && kill -TERM "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
  grep -E " ($W|$R)" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$W" "$R"
  ip link del "btlat$$" 2>/dev/null
  nft delete table ip "berth_btlat$$" 2>/dev/null
  for d in /sys/fs/cgroup/*/berth; do rmdir "$d" 2>/dev/null; done
  [ -n "${HUGETLB_MOUNTED:-}" ] && umount /sys/fs/cgroup/hugetlb && rmdir /sys/fs/cgroup/hugetlb
}
trap cleanup EXIT
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }
timeit() { # command... -> median seconds over RUNS
  if command -v hyperfine >/dev/null; then
    hyperfine -N -w 3 -r "$RUNS" --export-json "$W/h.json" "$(printf '%q ' "$@")" >/dev/null 2>&1 &&
      python3 -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["results"][0]["median"])' "$W/h.json" && return
  fi
  for _ in $(seq "$RUNS"); do
    s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
    echo "$e - $s" | bc -l
  done | median
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

./scripts/busybox-rootfs.sh > "$W/busybox.tar"
mkdir -p "$W/bundle/rootfs" && tar -C "$W/bundle/rootfs" -xf "$W/busybox.tar"

# berth
# Its own default bridge (removed below), so a bench never touches berth0 or its firewall table.
echo "{\"bridge\": \"btlat$$\"}" > "$W/daemon.json"
"$BERTH" daemon --data-root "$W/berth" --exec-root "$R/berth" -H "unix://$W/berth.sock" --config-file "$W/daemon.json" 2>"$W/berth.log" &
BPID=$!
export DOCKER_HOST="unix://$W/berth.sock"
for _ in $(seq 100); do "$BERTH" version >/dev/null 2>&1 && break; sleep 0.05; done
"$BERTH" import -c 'CMD ["sh"]' "$W/busybox.tar" busybox:latest >/dev/null
"$BERTH" run --rm busybox true
sleep 1
# The daemon and its shim spawner (runtime::shim::spawner), its child.
spawner=$(pgrep -P "$BPID" -x berth-spawner | head -1 || true)
spawner_rss=0
[ -n "$spawner" ] && spawner_rss=$(rss_kb "$spawner")
berth_idle=$(( $(rss_kb $BPID) + spawner_rss ))
cid=$("$BERTH" run -d busybox sleep 30)
# The shim is the container's parent.
shim=$(awk '/^PPid/ {print $2}' "/proc/$("$BERTH" inspect -f '{{.State.Pid}}' "$cid")/status" 2>/dev/null || true)
shim_rss=${shim:+$(rss_kb "$shim")}
"$BERTH" rm -f "$cid" >/dev/null
unset DOCKER_HOST

# raw crun on the same rootfs
crun_t=n/a; crun_iso=n/a; inter=()
if command -v crun >/dev/null; then
  (cd "$W/bundle" && crun spec && sed -i 's/"sh"/"true"/; s/"terminal": true/"terminal": false/' config.json)
  # crun refuses a host whose cgroup2 hierarchy holds a controller ("hybrid mode"); on a v1
  # host with hugetlb bound to the cgroup2 mount it runs once hugetlb is mounted as v1 (undone
  # at exit). A crun that still cannot run is not timed: a failing run is fast.
  if ! crun run -b "$W/bundle" bench-crun >"$W/crun.err" 2>&1 && grep -q "hybrid mode" "$W/crun.err" &&
    [ -d /sys/fs/cgroup/unified ] && [ ! -e /sys/fs/cgroup/hugetlb ] &&
    grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers; then
    mkdir /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb && HUGETLB_MOUNTED=1
    echo "note: mounted the hugetlb controller as cgroup v1 for crun (undone at exit)" >&2
  fi
  if crun run -b "$W/bundle" bench-crun >"$W/crun.err" 2>&1; then
    crun_ok=1
  else
    echo "note: crun cannot run a container here: $(cat "$W/crun.err")" >&2
  fi
fi
# berth (bridge, --network none) and, when it runs, crun, in turn (medians in seconds, in order).
B="env DOCKER_HOST=unix://$W/berth.sock $BERTH run --rm"
cmds=("$B busybox true" "$B --network none busybox true")
[ -n "${crun_ok:-}" ] && cmds+=("crun run -b $W/bundle bench-crun")
inturn() { python3 "$(dirname "$0")/ab.py" "$RUNS" "$@" | awk '{print $1 / 1000}'; }
mapfile -t b2b < <(inturn --block 5 "${cmds[@]}")
mapfile -t iso < <(inturn --gap 0.05 "${cmds[@]}")
berth_t=${b2b[0]}; berth_none_t=${b2b[1]}; crun_t=${b2b[2]:-n/a}
berth_iso=${iso[0]}; berth_none_iso=${iso[1]}; crun_iso=${iso[2]:-n/a}
[ -n "${crun_ok:-}" ] && mapfile -t inter < <(inturn "${cmds[2]}" "${cmds[1]}")

# dockerd on its own roots
docker_t=n/a; docker_idle=n/a
if command -v dockerd >/dev/null && command -v docker >/dev/null; then
  dockerd --data-root "$W/docker" --exec-root "$R/docker" -H "unix://$W/docker.sock" --pidfile "$W/docker.pid" \
    --bridge none --iptables=false --ip-masq=false >"$W/dockerd.log" 2>&1 &
  DPID=$!
  export DOCKER_HOST="unix://$W/docker.sock"
  for _ in $(seq 200); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
  if docker import -c 'CMD ["sh"]' "$W/busybox.tar" busybox:latest >/dev/null 2>&1 && docker run --rm --network none busybox true >/dev/null 2>&1; then
    sleep 1
    docker_idle=$(( $(rss_kb $DPID) + $(pgrep -x containerd | head -1 | xargs -r -I{} awk '/^VmRSS/ {print $2}' /proc/{}/status || echo 0) ))
    docker_t=$(timeit docker run --rm --network none busybox true)
  fi
  unset DOCKER_HOST
fi

# podman
podman_t=n/a
if command -v podman >/dev/null; then
  P="podman --root $W/podman --runroot $W/podman-run"
  if $P import -c 'CMD ["sh"]' "$W/busybox.tar" busybox:latest >/dev/null 2>&1 && $P run --rm --network none busybox true >/dev/null 2>&1; then
    podman_t=$(timeit $P run --rm --network none busybox true)
  fi
  $P system reset -f >/dev/null 2>&1 || true
fi

ratio() { [ "$1" = n/a ] || [ "$2" = n/a ] && echo n/a || printf "%.2f" "$(echo "$1 / $2" | bc -l)"; }
ms() { [ "$1" = n/a ] && echo n/a || printf "%.1f ms" "$(echo "$1 * 1000" | bc -l)"; }
echo "| engine (medians of $RUNS runs, engines in turn) | back to back | ÷ crun | isolated | ÷ crun |"
echo "|---|---|---|---|---|"
echo "| raw crun run | $(ms "$crun_t") | 1.00 | $(ms "$crun_iso") | 1.00 |"
echo "| berth --network none (crun's namespaces) | $(ms "$berth_none_t") | $(ratio "$berth_none_t" "$crun_t") | $(ms "$berth_none_iso") | $(ratio "$berth_none_iso" "$crun_iso") |"
echo "| berth, default bridge | $(ms "$berth_t") | $(ratio "$berth_t" "$crun_t") | $(ms "$berth_iso") | $(ratio "$berth_iso" "$crun_iso") |"
echo "| dockerd 20.10 --network none (on its own) | $(ms "$docker_t") | $(ratio "$docker_t" "$crun_t") | | |"
echo "| podman --network none (on its own) | $(ms "$podman_t") | $(ratio "$podman_t" "$crun_t") | | |"
if [ "${#inter[@]}" -eq 2 ]; then
  echo
  echo "| in turn: crun and berth, one run each, back to back ($RUNS rounds) | median | ÷ crun |"
  echo "|---|---|---|"
  echo "| raw crun run | $(ms "${inter[0]}") | 1.00 |"
  echo "| berth --network none | $(ms "${inter[1]}") | $(ratio "${inter[1]}" "${inter[0]}") |"
fi
echo
echo "| memory | RSS |"
echo "|---|---|"
echo "| berth daemon + shim spawner, idle | ${berth_idle} kB |"
echo "| berth shim, per container | ${shim_rss:-n/a} kB |"
echo "| dockerd + containerd, idle | ${docker_idle} kB |"
