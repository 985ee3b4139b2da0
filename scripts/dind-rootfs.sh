#!/bin/sh
# Writes to stdout a root filesystem tar for running berth in a container (DinD): the busybox
# rootfs of busybox-rootfs.sh plus the given berth binary, nft, tini as docker-init, and the
# shared libraries they load, copied from this host.
#   scripts/dind-rootfs.sh target/release/berth > dind.tar
set -eu
berth=${1:?usage: dind-rootfs.sh BERTH_BINARY}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$here/busybox-rootfs.sh" | tar -C "$dir" -xf -
mkdir -p "$dir/usr/local/bin" "$dir/usr/sbin" "$dir/var/lib/berth" "$dir/run" "$dir/etc/berth"
cp "$berth" "$dir/usr/local/bin/berth"
bins="$dir/usr/local/bin/berth"
if nft=$(command -v nft); then cp "$nft" "$dir/usr/sbin/nft"; bins="$bins $dir/usr/sbin/nft"; fi
if [ -x /usr/bin/docker-init ]; then mkdir -p "$dir/usr/bin"; cp /usr/bin/docker-init "$dir/usr/bin/docker-init"; fi
for b in $bins; do
  ldd "$b" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}' | while read -r lib; do
    mkdir -p "$dir$(dirname "$lib")"
    cp -L "$lib" "$dir$lib"
  done
done
echo '{}' > "$dir/etc/berth/daemon.json"
tar -C "$dir" --numeric-owner -cf - .
