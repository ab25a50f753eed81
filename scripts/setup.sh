#!/usr/bin/env bash
# Installs what airlock and its tests need (Debian/Ubuntu), then builds the release binary.
# Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v python3 >/dev/null || need+=(python3)
command -v node >/dev/null || need+=(nodejs)
command -v bwrap >/dev/null || need+=(bubblewrap)        # a peer for `airlock bench`
command -v unshare >/dev/null || need+=(util-linux)      # a peer for `airlock bench`; setpriv for tests
command -v useradd >/dev/null || need+=(passwd)          # tests create an unprivileged user
command -v flock >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup: please install: ${need[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "setup: Rust (cargo) is required; install it with rustup" >&2
  exit 1
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
cargo build --release --workspace --quiet
