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
command -v npm >/dev/null || need+=(npm)                  # installs JavaScript packages (-p)
have_uv() { python3 -c 'import uv' 2>/dev/null || command -v uv >/dev/null; }
have_uv || python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)  # builds and installs the Python package
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup: please install: ${need[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# uv installs the Python packages runs name (-p); its wheel on the Python index ships the binary.
if ! have_uv; then
  python3 -m pip install --quiet --disable-pip-version-check uv 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages uv \
    || { echo "setup: could not install uv: run \`python3 -m pip install uv\` or set AIRLOCK_UV" >&2; exit 1; }
fi
# The Python package (crates/python): maturin builds it, pytest tests it, cloudpickle (>= 3) carries
# decorated calls into sandboxes.
py_need=()
python3 -c 'import maturin' 2>/dev/null || py_need+=('maturin>=1.9.4,<2')
python3 -c 'import pytest' 2>/dev/null || py_need+=(pytest)
python3 -c 'import sys, cloudpickle; sys.exit(int(cloudpickle.__version__.split(".")[0]) < 3)' 2>/dev/null \
  || py_need+=('cloudpickle>=3.0')
if [ ${#py_need[@]} -gt 0 ]; then
  python3 -m pip install --quiet --disable-pip-version-check "${py_need[@]}" 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${py_need[@]}" \
    || { echo "setup: could not install ${py_need[*]}: run \`python3 -m pip install ${py_need[*]}\`" >&2; exit 1; }
fi
if ! command -v cargo >/dev/null; then
  echo "setup: Rust (cargo) is required; install it with rustup" >&2
  exit 1
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
# Host tuning (root only; AIRLOCK_SETUP_NO_TUNING=1 skips it): cgroup moves without an RCU grace
# period. Moving a process into a cgroup (every cold run on cgroup v1, every zygote child) otherwise
# waits for one, about 8 ms here: most of a cold run's overhead. The kernel's `favordynmods` trades
# that for slightly dearer forks and exits; `airlock bench` measures both. It lasts until reboot.
if [ "$(id -u)" = 0 ] && [ -z "${AIRLOCK_SETUP_NO_TUNING:-}" ] \
  && grep -qx favordynmods /sys/kernel/cgroup/features 2>/dev/null; then
  # The mount point and options of the first cgroup2 mount. A remount sets exactly the options
  # it is given, so the current ones (nsdelegate, ...) are passed along with the new one.
  read -r cg2 cg2_opts < <(awk '$3 == "cgroup2" { print $2, $4; exit }' /proc/self/mounts || true) || true
  has_fdm() { awk -v m="$cg2" '$2 == m && $3 == "cgroup2" { print $4 }' /proc/self/mounts | tr , '\n' | grep -qx favordynmods; }
  if [ -n "${cg2:-}" ] && ! has_fdm; then
    if mount -o "remount,$cg2_opts,favordynmods" "$cg2" 2>/dev/null && has_fdm; then
      echo "setup: remounted $cg2 with favordynmods (faster cgroup moves; see README, Benchmarks)" >&2
    else
      echo "setup: could not remount $cg2 with favordynmods; cold runs pay an RCU grace period (airlock doctor)" >&2
    fi
  fi
fi
# The Python extension is built once, by maturin, when scripts/test.sh installs the package.
cargo build --release --workspace --exclude airlock-python --quiet
