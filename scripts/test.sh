#!/usr/bin/env bash
# Sets up the host, then runs the whole suite. As root it covers both identities: root and an
# unprivileged user that the tests create. Finally it checks that nothing was left behind.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# What is on the host before the suite, so the final check counts only what the suite leaves.
cargo nextest run --workspace --run-ignored only -E 'binary(leaks) & test(baseline_before_the_suite)'
cargo nextest run --workspace --no-fail-fast --test-threads 4 --failure-output final
# The Python package: built by maturin (release), installed into python3, then its pytest suite.
pep668=()
python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["stdlib"], "EXTERNALLY-MANAGED")))' \
  && pep668=(--break-system-packages)
python3 -m pip install --quiet --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps \
  "${pep668[@]}" ./crates/python
python3 -m pytest crates/python/tests -q
cargo nextest run --workspace --run-ignored only -E 'binary(leaks) & test(nothing_remains_after_the_suite)'
