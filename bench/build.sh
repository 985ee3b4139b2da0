#!/usr/bin/env bash
# A reference build: COPY of 2,000 small files and one 50 MB file, three RUN steps; cold
# (--no-cache) and warm (everything cached), berth beside `docker build` (legacy builder and
# BuildKit) and `podman build` when installed. Prints a markdown table of medians and the
# ratios to docker's legacy builder. Builders run interleaved, round by round. As root:
#   cargo build --release && bench/build.sh [RUNS]     (VERBOSE=1 also prints every time)
set -euo pipefail
RUNS=${1:-3}
BERTH=${BERTH:-$PWD/target/release/berth}
W=$(mktemp -d /tmp/berth-bench-build.XXXXXX)
cleanup() {
  set +e
  [ -n "${BPID:-}" ] && kill -TERM "$BPID" 2>/dev/null && wait "$BPID" 2>/dev/null
  [ -n "${DPID:-}" ] && kill -TERM "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
  grep " $W" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$W"
  for d in /sys/fs/cgroup/*/berth; do rmdir "$d" 2>/dev/null; done
}
trap cleanup EXIT
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
secs() { local s e; s=$(date +%s.%N); "$@" >"$W/last.log" 2>&1 || { cat "$W/last.log" >&2; return 1; }; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
# One timed build (cold adds --no-cache before the context, the last argument).
timed() { # cold|warm build-command...
  local mode=$1; shift
  if [[ $mode == cold ]]; then secs "${@:1:$#-1}" --no-cache "${@: -1}"; else secs "$@"; fi
}

./scripts/busybox-rootfs.sh > "$W/busybox.tar"
C="$W/ctx"
mkdir -p "$C/small"
for i in $(seq 2000); do echo "file $i" > "$C/small/f$i.txt"; done
head -c 50000000 /dev/urandom > "$C/big.bin"
cat > "$C/Dockerfile" <<'D'
FROM busybox:latest
COPY small/ /small/
COPY big.bin /big.bin
RUN ls /small | wc -l > /count
RUN sha256sum /big.bin > /sum
RUN echo done > /done
D

# berth
"$BERTH" daemon --data-root "$W/berth" --exec-root "$W/berth-run" -H "unix://$W/berth.sock" --config-file /dev/null 2>"$W/berth.log" &
BPID=$!
for _ in $(seq 100); do DOCKER_HOST="unix://$W/berth.sock" "$BERTH" version >/dev/null 2>&1 && break; sleep 0.05; done
DOCKER_HOST="unix://$W/berth.sock" "$BERTH" import -c 'CMD ["sh"]' "$W/busybox.tar" busybox:latest >/dev/null
BERTH_CMD=(env DOCKER_HOST="unix://$W/berth.sock" "$BERTH" build --network none -t ref "$C")

# dockerd on its own roots: the legacy builder and BuildKit
if command -v dockerd >/dev/null && command -v docker >/dev/null; then
  dockerd --data-root "$W/docker" --exec-root "$W/docker-run" -H "unix://$W/docker.sock" --pidfile "$W/docker.pid" \
    --bridge none --iptables=false --ip-masq=false >"$W/dockerd.log" 2>&1 &
  DPID=$!
  export DOCKER_HOST="unix://$W/docker.sock"
  for _ in $(seq 200); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
  if docker import -c 'CMD ["sh"]' "$W/busybox.tar" busybox:latest >/dev/null 2>&1; then
    LEGACY_CMD=(env DOCKER_BUILDKIT=0 DOCKER_HOST="unix://$W/docker.sock" docker build --network none -t ref "$C")
    BK_CMD=(env DOCKER_BUILDKIT=1 DOCKER_HOST="unix://$W/docker.sock" docker build --network none -t ref "$C")
  fi
  unset DOCKER_HOST
fi

# podman
if command -v podman >/dev/null; then
  # crun refuses this host's hybrid cgroups: podman gets runc and cgroupfs.
  P="podman --root $W/podman --runroot $W/podman-run --runtime runc --cgroup-manager cgroupfs"
  if $P import -c 'CMD ["sh"]' "$W/busybox.tar" localhost/busybox:latest >/dev/null 2>&1; then
    sed 's|FROM busybox:latest|FROM localhost/busybox:latest|' "$C/Dockerfile" > "$W/Containerfile"
    PODMAN_CMD=($P build --network none -f "$W/Containerfile" -t ref "$C")
  fi
fi

# Interleaved: each round runs every builder once, so load from other work on the machine
# falls on all of them alike. A builder whose first build fails is left out (n/a).
declare -A CMDS=()
for b in berth legacy bk podman; do
  v="${b^^}_CMD[@]"
  [[ -v "${b^^}_CMD" ]] || continue
  cmd=("${!v}")
  "${cmd[@]}" >/dev/null 2>&1 && CMDS[$b]=1
done
for mode in cold warm; do
  for _ in $(seq "$RUNS"); do
    for b in berth legacy bk podman; do
      [[ -n "${CMDS[$b]:-}" ]] || continue
      v="${b^^}_CMD[@]"
      timed "$mode" "${!v}" >> "$W/$b.$mode"
    done
  done
done
get() { if [[ -s "$W/$1.$2" ]]; then median < "$W/$1.$2"; else echo n/a; fi; }
berth_cold=$(get berth cold); berth_warm=$(get berth warm)
legacy_cold=$(get legacy cold); legacy_warm=$(get legacy warm)
bk_cold=$(get bk cold); bk_warm=$(get bk warm)
podman_cold=$(get podman cold); podman_warm=$(get podman warm)
[[ -n "${VERBOSE:-}" ]] && for f in "$W"/*.cold "$W"/*.warm; do echo "$(basename "$f"): $(tr '\n' ' ' < "$f")"; done

ratio() { if [[ "$1" == n/a || "$2" == n/a ]]; then echo n/a; else printf '%.2f' "$(echo "$1 / $2" | bc -l)"; fi; }
echo "| builder | cold (s) | warm (s) | cold / docker legacy | warm / docker legacy |"
echo "|---|---|---|---|---|"
for row in "berth $berth_cold $berth_warm" "docker-legacy $legacy_cold $legacy_warm" "docker-buildkit $bk_cold $bk_warm" "podman $podman_cold $podman_warm"; do
  set -- $row
  echo "| $1 | $2 | $3 | $(ratio "$2" "$legacy_cold") | $(ratio "$3" "$legacy_warm") |"
done
