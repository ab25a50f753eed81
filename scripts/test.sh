#!/usr/bin/env bash
# Sets up the host, then runs the whole suite. As root it covers both identities: root and an
# unprivileged user that the tests create. Finally it checks that nothing was left behind.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo nextest run --workspace --no-fail-fast --test-threads 4 --failure-output final
cargo nextest run --workspace --run-ignored only -E 'binary(leaks)'
