#!/bin/sh
# save + load of one image, berth beside dockerd 20.10 (each on its own data root and socket).
# Usage: bench/save-load.sh [berth binary] [runs]   (default target/release/berth, 5 runs)
set -eu
BERTH=${1:-target/release/berth}
RUNS=${2:-5}
dir=$(mktemp -d /tmp/bsl.XXXXXX)
cleanup() {
    [ -f "$dir/berth.pid" ] && kill "$(cat "$dir/berth.pid")" 2>/dev/null || true
    [ -f "$dir/d.pid" ] && kill "$(cat "$dir/d.pid")" 2>/dev/null || true
    sleep 2
    grep -o " $dir[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
sh "$(dirname "$0")/../scripts/busybox-rootfs.sh" > "$dir/bb.tar"
"$BERTH" daemon --data-root "$dir/bd" --exec-root "$dir/be" -H "unix://$dir/b.sock" --config-file /dev/null 2>/dev/null &
echo $! > "$dir/berth.pid"
B="env DOCKER_HOST=unix://$dir/b.sock $BERTH"
sleep 1
$B import -c 'CMD ["sh"]' "$dir/bb.tar" bench:1 > /dev/null
ms() { s=$(date +%s%N); "$@" > /dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
echo "berth: save ms / load ms"
for i in $(seq "$RUNS"); do
    a=$(ms $B save -o "$dir/b.tar" bench:1); b=$(ms $B load -i "$dir/b.tar"); echo "  $a / $b"
done
if command -v dockerd > /dev/null; then
    dockerd --data-root "$dir/dd" --exec-root "$dir/de" -H "unix://$dir/d.sock" --pidfile "$dir/d.pid" \
        --bridge=none --iptables=false --ip6tables=false --storage-driver=overlay2 > "$dir/dlog" 2>&1 &
    D="env DOCKER_HOST=unix://$dir/d.sock DOCKER_CONFIG=$dir/dc docker"
    for _ in $(seq 50); do $D version > /dev/null 2>&1 && break; sleep 0.2; done
    $D import -c 'CMD ["sh"]' "$dir/bb.tar" bench:1 > /dev/null
    echo "dockerd 20.10 (overlay2): save ms / load ms"
    for i in $(seq "$RUNS"); do
        a=$(ms $D save -o "$dir/d.tar" bench:1); b=$(ms $D load -i "$dir/d.tar"); echo "  $a / $b"
    done
fi
