#!/usr/bin/env bash
# Networking cost and throughput: start latency of `run --rm busybox true` with --network none
# vs the default bridge (veth + address + route), and host -> container throughput through a
# published port (busybox httpd serving a file, fetched with curl from 127.0.0.1), berth beside
# dockerd when installed (dockerd on its own roots, its bridge on a test subnet, iptables off so
# the host's firewall is untouched: its published port then goes through docker-proxy, Docker's
# default path for traffic to 127.0.0.1). All traffic stays on this host.
# Run as root from the repo root:
#   cargo build --release && bench/network.sh [RUNS] [MB]
set -euo pipefail
RUNS=${1:-20}
MB=${2:-256}
BERTH=${BERTH:-$PWD/target/release/berth}
W=$(mktemp -d /tmp/berth-netbench.XXXXXX)
BR=btbench$$
cleanup() {
  set +e
  [ -n "${BPID:-}" ] && kill -TERM "$BPID" 2>/dev/null && wait "$BPID" 2>/dev/null
  [ -n "${DPID:-}" ] && kill -TERM "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
  grep " $W" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  ip link del "$BR" 2>/dev/null
  ip link del btdocker 2>/dev/null
  nft delete table ip "berth_$BR" 2>/dev/null
  rm -rf "$W"
  for d in /sys/fs/cgroup/*/berth; do rmdir "$d" 2>/dev/null; done
}
trap cleanup EXIT
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }
timeit() { # command... -> median seconds over RUNS
  for _ in $(seq "$RUNS"); do
    s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
    echo "$e - $s" | bc -l
  done | median
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# MB/s of a GET of the whole file through 127.0.0.1:$1 (median of 3).
throughput() {
  for _ in 1 2 3; do
    curl -s -o /dev/null -w '%{speed_download}\n' "http://127.0.0.1:$1/big"
  done | median | awk '{printf "%.0f\n", $1/1048576}'
}
wait_http() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return; sleep 0.1; done; }
SERVE="mkdir -p /www && echo ok > /www/index.html && dd if=/dev/zero of=/www/big bs=1M count=$MB 2>/dev/null && exec httpd -f -p 80 -h /www"

./scripts/busybox-rootfs.sh > "$W/busybox.tar"

# berth
echo "{\"bridge\": \"$BR\"}" > "$W/daemon.json"
"$BERTH" daemon --data-root "$W/berth" --exec-root "$W/berth-run" -H "unix://$W/berth.sock" --config-file "$W/daemon.json" 2>"$W/berth.log" &
BPID=$!
export DOCKER_HOST="unix://$W/berth.sock"
for _ in $(seq 100); do "$BERTH" version >/dev/null 2>&1 && break; sleep 0.05; done
"$BERTH" import -c 'CMD ["sh"]' "$W/busybox.tar" busybox:latest >/dev/null
"$BERTH" run --rm busybox true
b_none=$(timeit "$BERTH" run --rm --network none busybox true)
b_bridge=$(timeit "$BERTH" run --rm busybox true)
port=$(free_port)
"$BERTH" run -d --name bench-web -p "$port:80" busybox sh -c "$SERVE" >/dev/null
wait_http "$port"
b_tput=$(throughput "$port")
"$BERTH" rm -f bench-web >/dev/null
unset DOCKER_HOST

# dockerd
d_none=n/a; d_bridge=n/a; d_tput=n/a
if command -v dockerd >/dev/null && command -v docker >/dev/null; then
  ip link add btdocker type bridge && ip addr add 10.231.250.1/24 dev btdocker && ip link set btdocker up
  dockerd --data-root "$W/docker" --exec-root "$W/docker-run" -H "unix://$W/docker.sock" --pidfile "$W/docker.pid" \
    --bridge btdocker --iptables=false --ip-masq=false >"$W/dockerd.log" 2>&1 &
  DPID=$!
  export DOCKER_HOST="unix://$W/docker.sock"
  for _ in $(seq 200); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
  if docker import -c 'CMD ["sh"]' "$W/busybox.tar" busybox:latest >/dev/null 2>&1 && docker run --rm busybox true >/dev/null 2>&1; then
    d_none=$(timeit docker run --rm --network none busybox true)
    d_bridge=$(timeit docker run --rm busybox true)
    port=$(free_port)
    docker run -d --name bench-web -p "127.0.0.1:$port:80" busybox sh -c "$SERVE" >/dev/null
    wait_http "$port"
    d_tput=$(throughput "$port")
    docker rm -f bench-web >/dev/null
  fi
  unset DOCKER_HOST
fi

r() { [ "$1" = n/a ] || [ "$2" = n/a ] && echo n/a || printf "%.2f" "$(echo "$1 / $2" | bc -l)"; }
echo "| engine | --network none | default bridge | bridge / none | published port, host -> container ($MB MB GET) |"
echo "|---|---|---|---|---|"
echo "| berth | ${b_none}s | ${b_bridge}s | $(r "$b_bridge" "$b_none") | ${b_tput} MB/s |"
echo "| dockerd 20.10 | ${d_none}s | ${d_bridge}s | $(r "$d_bridge" "$d_none") | ${d_tput} MB/s |"
