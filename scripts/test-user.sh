#!/usr/bin/env bash
# Host setup for the tests that run as an unprivileged user (run as root, idempotent, safe to
# run from many test processes at once): the user `airlock-test`, a cgroup parent delegated to
# it (`airlock-test-user`), a directory it can execute test binaries from, and host markers
# that attack tests try to reach.
#
#   test-user.sh BIN_DIR [FILE...]
#
# Publishes each FILE (and uv, which usually lives where the user cannot enter) into BIN_DIR.
# With AIRLOCK_TEST_SECRET set, writes it to AIRLOCK_TEST_ROOT_MARKER, to a marker and an ssh
# key in the user's home, and to AIRLOCK_TEST_TMP_MARKER.
set -euo pipefail
user=airlock-test
cgroup=airlock-test-user
bin_dir=$1
shift

exec 9>/var/lock/airlock-test-setup.lock
flock 9
id -u "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
home=$(getent passwd "$user" | cut -d: -f6)
uid=$(id -u "$user")
gid=$(id -g "$user")

if [ -n "${AIRLOCK_TEST_SECRET:-}" ]; then
  s=$AIRLOCK_TEST_SECRET
  printf '%s' "$s" > "$AIRLOCK_TEST_ROOT_MARKER"; chmod 600 "$AIRLOCK_TEST_ROOT_MARKER"
  printf '%s' "$s" > "$home/airlock-marker-secret"
  chown "$user": "$home/airlock-marker-secret"; chmod 600 "$home/airlock-marker-secret"
  mkdir -p "$home/.ssh"; printf '%s' "$s" > "$home/.ssh/id_ed25519"
  chown -R "$user": "$home/.ssh"; chmod 700 "$home/.ssh"
  printf '%s' "$s" > "$AIRLOCK_TEST_TMP_MARKER"; chmod 644 "$AIRLOCK_TEST_TMP_MARKER"
fi

publish() { # publish SRC NAME: replace BIN_DIR/NAME atomically when it differs
  if ! cmp -s "$1" "$bin_dir/$2"; then
    cp "$1" "$bin_dir/$2.new"; chmod 755 "$bin_dir/$2.new"; mv "$bin_dir/$2.new" "$bin_dir/$2"
  fi
}
mkdir -p "$bin_dir"; chmod 755 "$bin_dir"
for f in "$@"; do publish "$f" "$(basename "$f")"; done
uvbin=$(python3 -c 'import uv; print(uv.find_uv_bin())' 2>/dev/null || true)
if [ -n "$uvbin" ]; then publish "$uvbin" uv; fi

if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
  # pure cgroup v2: delegate a subtree with the controllers enabled
  for c in memory pids cpu; do echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true; done
  d=/sys/fs/cgroup/$cgroup; mkdir -p "$d"
  chown "$uid:$gid" "$d" "$d/cgroup.procs" "$d/cgroup.subtree_control" "$d/cgroup.threads"
else
  for c in memory pids cpu cpuacct; do
    m=$(awk -v c="$c" '$3=="cgroup" && (","$4",") ~ (","c",") {print $2; exit}' /proc/mounts)
    [ -n "$m" ] || continue
    mkdir -p "$m/$cgroup"
    # Its own control files only, not -R: the user's own runs create and remove run-* cgroups
    # below it meanwhile (find, even with -ignore_readdir_race, still failed on a run-* removed
    # while it listed the directory; the control files of this one never go away).
    chown "$uid:$gid" "$m/$cgroup"
    for f in "$m/$cgroup"/*; do
      if [ -f "$f" ]; then chown "$uid:$gid" "$f"; fi
    done
  done
fi
