//! Which host uid/gid a sandbox runs as.
//!
//! As root, each concurrent run gets its own unprivileged host uid (and gid) from a range nobody
//! else uses, so runs cannot signal or ptrace each other and own nothing on the host. A slot is
//! held by an OFD lock on one byte of a lock file, so two supervisors on one host never hand out
//! the same uid, and a crashed supervisor's slots free themselves. As an ordinary user, the
//! sandbox is that user (the only uid an unprivileged user namespace may map).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{JailError, Result};
use crate::sys;

/// First host uid and gid of the range used for sandboxes when running as root.
pub const HOST_ID_BASE: u32 = 1_500_000_000;
/// Number of slots: the maximum number of concurrent root-started sandboxes per host.
pub const HOST_ID_SLOTS: u32 = 65_536;

const LOCK_DIR: &str = "/run/airlock";
const LOCK_FILE: &str = "/run/airlock/uids.lock";

/// The host identity a sandbox maps its in-sandbox user to. Holds the slot while alive.
#[derive(Debug)]
pub(crate) struct HostIdentity {
    pub uid: u32,
    pub gid: u32,
    /// True when we are root and map to a private uid (setgroups stays allowed).
    pub privileged: bool,
    /// True when no other sandbox can have this uid at the same time.
    pub unique: bool,
    _slot: Option<File>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

pub(crate) fn allocate(fixed: Option<u32>) -> Result<HostIdentity> {
    let euid = sys::geteuid();
    if euid != 0 {
        return Ok(HostIdentity {
            uid: euid,
            gid: sys::getegid(),
            privileged: false,
            unique: false,
            _slot: None,
        });
    }
    if let Some(id) = fixed {
        return Ok(HostIdentity {
            uid: id,
            gid: id,
            privileged: true,
            unique: false,
            _slot: None,
        });
    }
    std::fs::create_dir_all(LOCK_DIR)
        .map_err(|e| JailError::host(format!("creating {LOCK_DIR} for uid slots"), e))?;
    // One open file description holds one slot (OFD locks conflict between descriptions, also
    // within one process); failed attempts reuse it.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(LOCK_FILE)
        .map_err(|e| JailError::host(format!("opening {LOCK_FILE}"), e))?;
    let start =
        (std::process::id().wrapping_mul(7919)).wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
    for i in 0..HOST_ID_SLOTS {
        let slot = start.wrapping_add(i) % HOST_ID_SLOTS;
        match sys::try_lock_byte(file.as_raw_fd(), u64::from(slot)) {
            Ok(true) => {
                let id = HOST_ID_BASE + slot;
                return Ok(HostIdentity {
                    uid: id,
                    gid: id,
                    privileged: true,
                    unique: true,
                    _slot: Some(file),
                });
            }
            Ok(false) => continue,
            Err(e) => {
                return Err(JailError::host(
                    format!("locking uid slot {slot} in {LOCK_FILE}"),
                    std::io::Error::from_raw_os_error(e),
                ));
            }
        }
    }
    Err(JailError::host(
        "allocating a sandbox uid",
        std::io::Error::other(format!("all {HOST_ID_SLOTS} slots are in use")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_allocations_get_distinct_uids() {
        let ids: Vec<_> = (0..64).map(|_| allocate(None).unwrap()).collect();
        let mut uids: Vec<u32> = ids.iter().map(|i| i.uid).collect();
        uids.sort_unstable();
        uids.dedup();
        if sys::geteuid() == 0 {
            assert_eq!(uids.len(), 64);
            assert!(uids.iter().all(|u| *u >= HOST_ID_BASE));
        } else {
            assert_eq!(uids, vec![sys::geteuid()]);
        }
    }
}
