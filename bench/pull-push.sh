#!/usr/bin/env bash
# Pull and push of a ~200 MB image of 3 gzip layers on loopback: berth's daemon, and dockerd
# (20.10) side by side when it is installed. Cold pull (nothing local), warm pull (an image that
# shares every layer with one already pulled), cold push (registry empty), warm push (registry
# has every blob). Both daemons use the same `berth registry serve` on 127.0.0.1.
# Usage: bench/pull-push.sh [MB]   (default 200; writes bench/pull-push.results.md)
# Needs root (the daemons), python3, curl. dockerd runs with its own data/exec roots and socket,
# no bridge and no iptables rules, and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-200}
OUT=bench/pull-push.results.md
WORK=$(mktemp -d /tmp/bpp.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

nice -n 15 cargo build --release -p berth >&2
BERTH=$PWD/target/release/berth
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; echo "$1 never answered" >&2; return 1; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }

# The image: 3 layers of incompressible data (gzip level 1), an OCI manifest and two configs
# (image a, and image b with the same layers) so that a warm pull has a new image to make.
python3 - "$WORK" "$MB" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
work, mb = sys.argv[1], int(sys.argv[2])
def sha(b): return "sha256:" + hashlib.sha256(b).hexdigest()
layers, diffs = [], []
for i in range(3):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as t:
        data = os.urandom(mb * 1024 * 1024 // 3)
        ti = tarfile.TarInfo(f"data/layer{i}.bin"); ti.size = len(data); ti.mode = 0o644
        t.addfile(ti, io.BytesIO(data))
    tar = raw.getvalue()
    blob = gzip.compress(tar, compresslevel=1, mtime=0)
    diffs.append(sha(tar)); layers.append(blob)
    open(f"{work}/layer{i}", "wb").write(blob)
for name in ("a", "b"):
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"], "Labels": {"image": name}},
                      "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()
    open(f"{work}/config-{name}", "wb").write(cfg)
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(cfg), "size": len(cfg)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(b), "size": len(b)} for b in layers]}).encode()
    open(f"{work}/manifest-{name}", "wb").write(man)
PY
SIZE=$(du -cb "$WORK"/layer* | tail -1 | cut -f1)

REG=127.0.0.1:$(free_port)
"$BERTH" registry serve --addr "$REG" --root "$WORK/registry" 2>"$WORK/registry.log" &
PIDS+=($!)
wait_http "http://$REG/v2/"
seed() { # repo name
  for f in "$WORK"/layer0 "$WORK"/layer1 "$WORK"/layer2 "$WORK/config-$2"; do
    d=sha256:$(sha256sum "$f" | cut -d' ' -f1)
    curl -sf -X POST --data-binary @"$f" -H 'Content-Type: application/octet-stream' "http://$REG/v2/$1/blobs/uploads/?digest=$d" >/dev/null
  done
  curl -sf -X PUT --data-binary @"$WORK/manifest-$2" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/$1/manifests/1" >/dev/null
}
seed bench/a a
seed bench/b b
# Pushes go to a second, empty registry: nothing to mount, every blob uploaded.
REG2=127.0.0.1:$(free_port)
"$BERTH" registry serve --addr "$REG2" --root "$WORK/registry2" 2>"$WORK/registry2.log" &
PIDS+=($!)
wait_http "http://$REG2/v2/"

# run_engine NAME CLI...: prints "cold_pull warm_pull cold_push warm_push" in seconds.
run_engine() {
  local name=$1; shift
  local t0 t1 t2 t3 t4 t5 t6
  t0=$(now); "$@" pull -q "$REG/bench/a:1" >/dev/null; t1=$(now)
  "$@" pull -q "$REG/bench/b:1" >/dev/null; t2=$(now)
  "$@" tag "$REG/bench/a:1" "$REG2/push-$name/a:1"
  t3=$(now); "$@" push "$REG2/push-$name/a:1" >/dev/null; t4=$(now)
  "$@" push "$REG2/push-$name/a:1" >/dev/null; t5=$(now)
  echo "$(secs "$t0" "$t1") $(secs "$t1" "$t2") $(secs "$t3" "$t4") $(secs "$t4" "$t5")"
}

mkdir -p "$WORK/b"
echo '{}' > "$WORK/b/daemon.json"
"$BERTH" daemon --data-root "$WORK/b/data" --exec-root "$WORK/b/run" -H "unix://$WORK/b/s.sock" --config-file "$WORK/b/daemon.json" 2>"$WORK/b/log" &
PIDS+=($!)
for _ in $(seq 200); do [ -S "$WORK/b/s.sock" ] && break; sleep 0.05; done
B=$(run_engine berth "$BERTH" -H "unix://$WORK/b/s.sock")

D="not installed"
if command -v dockerd >/dev/null && command -v docker >/dev/null; then
  mkdir -p "$WORK/d"
  echo '{}' > "$WORK/d/daemon.json"
  dockerd --data-root "$WORK/d/data" --exec-root "$WORK/d/run" -H "unix://$WORK/d/s.sock" --pidfile "$WORK/d/pid" \
    --bridge=none --iptables=false --ip-masq=false --ip-forward=false --containerd-namespace bpp --containerd-plugins-namespace bpp-p \
    --config-file "$WORK/d/daemon.json" >"$WORK/d/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 400); do docker -H "unix://$WORK/d/s.sock" info >/dev/null 2>&1 && break; sleep 0.05; done
  D=$(DOCKER_CONFIG=$WORK/d/cfg run_engine docker docker -H "unix://$WORK/d/s.sock")
  kill "$(cat "$WORK/d/pid")" 2>/dev/null || true
  for _ in $(seq 200); do [ -e "$WORK/d/pid" ] || break; sleep 0.05; done
fi

{
  echo "# pull/push benchmark"
  echo
  echo "\`bench/pull-push.sh $MB\` on $(date -u +%Y-%m-%d), $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)."
  echo "Image: 3 gzip layers, $((SIZE / 1000000)) MB compressed, from \`berth registry serve\` on loopback."
  echo
  echo "| step | berth (s) | dockerd (s) | dockerd / berth |"
  echo "|---|---:|---:|---:|"
  read -r b1 b2 b3 b4 <<<"$B"
  if [ "$D" != "not installed" ]; then read -r d1 d2 d3 d4 <<<"$D"; else d1=-; d2=-; d3=-; d4=-; fi
  ratio() { [ "$2" = "-" ] && echo "-" || python3 -c "print(f'{$2 / max($1, 0.001):.1f}x')"; }
  echo "| pull, cold | $b1 | $d1 | $(ratio "$b1" "$d1") |"
  echo "| pull, layers present | $b2 | $d2 | $(ratio "$b2" "$d2") |"
  echo "| push, cold | $b3 | $d3 | $(ratio "$b3" "$d3") |"
  echo "| push, blobs present | $b4 | $d4 | $(ratio "$b4" "$d4") |"
  echo
  echo "berth cold pull throughput: $(python3 -c "print(f'{$SIZE / 1e6 / max($b1, 0.001):.0f}')") MB/s."
} | tee "$OUT"
