#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine, builds berth, starts the daemon, makes
# busybox:latest from Debian's busybox-static and runs a container. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
if command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static libseccomp-dev pkg-config gcc procps nftables iproute2 >/dev/null
fi
command -v cargo >/dev/null || { echo "quickstart: install Rust first (https://rustup.rs)" >&2; exit 1; }
cargo build --release --locked
install -m 0755 target/release/berth /usr/local/bin/berth
export DOCKER_HOST=unix:///run/berth/berth.sock
if ! berth version >/dev/null 2>&1; then
  mkdir -p /var/log
  nohup berth daemon >/var/log/berth.log 2>&1 &
  for _ in $(seq 100); do berth version >/dev/null 2>&1 && break; sleep 0.1; done
fi
if ! berth images -q busybox:latest | grep -q .; then
  ./scripts/busybox-rootfs.sh | berth import -c 'CMD ["sh"]' - busybox:latest
fi
berth run --rm busybox echo "Hello from a berth container"
