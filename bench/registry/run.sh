#!/usr/bin/env bash
# Side-by-side benchmark of berth's registry and Distribution (Debian's docker-registry) on loopback.
# Usage: bench/registry/run.sh [SECONDS] [CONCURRENCY]   (writes bench/registry/results.md)
# Needs: /usr/bin/docker-registry (apt: docker-registry). Builds the release examples first.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-5}
CONC=${2:-32}
OUT=bench/registry/results.md
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

nice -n 15 cargo build --release -p berth-registry --example registry --example registry_bench >&2
BIN=target/release/examples
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/v2/" && return 0; sleep 0.1; done; echo "port $1 never answered" >&2; return 1; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

run_one() { # name pid port -> prints "json idle_rss_kb peak_rss_kb"
  local pid=$2 port=$3 idle json
  idle=$(rss_kb "$pid")
  json=$("$BIN/registry_bench" --addr "127.0.0.1:$port" --seconds "$SECS" --concurrency "$CONC" --prefix "$1")
  echo "$json $idle $(hwm_kb "$pid")"
}

P1=$(free_port)
"$BIN/registry" serve --addr "127.0.0.1:$P1" --root "$WORK/berth" 2>"$WORK/berth.log" &
PIDS+=($!); BPID=$!
wait_port "$P1"

P2=$(free_port)
cat > "$WORK/distribution.yml" <<YML
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage:
  cache: { blobdescriptor: inmemory }
  filesystem: { rootdirectory: $WORK/distribution }
  delete: { enabled: true }
http: { addr: 127.0.0.1:$P2 }
YML
/usr/bin/docker-registry serve "$WORK/distribution.yml" 2>"$WORK/distribution.log" &
PIDS+=($!); DPID=$!
wait_port "$P2"

read -r BJSON BIDLE BPEAK < <(run_one berth "$BPID" "$P1")
read -r DJSON DIDLE DPEAK < <(run_one distribution "$DPID" "$P2")

python3 - "$BJSON" "$DJSON" "$BIDLE" "$BPEAK" "$DIDLE" "$DPEAK" "$SECS" "$CONC" > "$OUT" <<'PY'
import json, sys, datetime, platform, os
b, d = json.loads(sys.argv[1]), json.loads(sys.argv[2])
bi, bp, di, dp = (int(x) for x in sys.argv[3:7])
secs, conc = sys.argv[7], sys.argv[8]
rows = [
  ("100 MB blob upload (MB/s, higher is better)", "upload_mb_s", True),
  ("100 MB blob download (MB/s)", "download_mb_s", True),
  (f"manifest GET, {conc} connections (req/s)", "manifest_get_rps", True),
  (f"blob HEAD, {conc} connections (req/s)", "blob_head_rps", True),
  ("20 concurrent pushes, 4 MB layer each (s, lower is better)", "push20_seconds", False),
]
print("# Registry benchmark: berth vs Distribution 2.8 (docker-registry), loopback\n")
print(f"Run {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPUs ({platform.machine()}), {secs} s per rate row, by `bench/registry/run.sh`.\n")
print("| row | berth | Distribution | berth ≥ Distribution |\n|---|---:|---:|:---:|")
for label, key, higher in rows:
    ok = b[key] >= d[key] if higher else b[key] <= d[key]
    print(f"| {label} | {b[key]} | {d[key]} | {'yes' if ok else 'no'} |")
print(f"| server RSS idle (MiB, lower is better) | {bi/1024:.1f} | {di/1024:.1f} | {'yes' if bi <= di else 'no'} |")
print(f"| server RSS peak (MiB) | {bp/1024:.1f} | {dp/1024:.1f} | {'yes' if bp <= dp else 'no'} |")
PY
cat "$OUT"
