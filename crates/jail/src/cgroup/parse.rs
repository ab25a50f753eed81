//! Parsers for the kernel's cgroup text files.
//!
//! Pure functions over strings, so that host layouts we do not run on (pure v2, co-mounted v1
//! controllers, containers whose cgroup mounts start below the hierarchy root) are testable with
//! fixture text.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// Controller names a v1 hierarchy can carry. Mount options that are not in this list
/// (`rw`, `name=systemd`, `release_agent=…`, `clone_children`, …) are not controllers.
const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// One cgroup filesystem mount from `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CgroupMount {
    /// `true` for cgroup2, `false` for a v1 hierarchy.
    pub v2: bool,
    /// Controllers of a v1 hierarchy, sorted (`["cpu", "cpuacct"]` when co-mounted); empty for
    /// cgroup2, whose controllers are listed in its `cgroup.controllers` instead.
    pub controllers: Vec<String>,
    /// The cgroup, relative to our cgroup namespace, that this mount shows at its mount point:
    /// `/` normally, something deeper when a container bind-mounts a sub-tree.
    pub root: String,
    pub mount_point: PathBuf,
    /// Mounted read-only: nothing can be created there, whoever we are.
    pub read_only: bool,
}

impl CgroupMount {
    /// The directory of cgroup `path` (as written in `/proc/self/cgroup`) under this mount, or
    /// `None` when the cgroup lies outside the part of the hierarchy the mount shows.
    pub fn dir_of(&self, path: &str) -> Option<PathBuf> {
        let root = self.root.trim_end_matches('/');
        let rest = if root.is_empty() {
            path
        } else {
            let rest = path.strip_prefix(root)?;
            if !rest.is_empty() && !rest.starts_with('/') {
                return None; // `/foo` is not below `/fo`
            }
            rest
        };
        let rest = rest.trim_start_matches('/');
        Some(if rest.is_empty() {
            self.mount_point.clone()
        } else {
            self.mount_point.join(rest)
        })
    }
}

/// The cgroup mounts listed in mountinfo `text` (`man 5 proc`, /proc/pid/mountinfo), in order.
pub(super) fn mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        // Fixed fields: id, parent, major:minor, root, mount point, mount options, then optional
        // fields up to a lone "-", then fstype, source, super options.
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if sep < 6 || fields.len() < sep + 4 {
            continue;
        }
        let fstype = fields[sep + 1];
        let v2 = match fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let super_opts: Vec<&str> = fields[sep + 3].split(',').collect();
        let mut controllers: Vec<String> = if v2 {
            Vec::new()
        } else {
            super_opts
                .iter()
                .filter(|o| V1_CONTROLLERS.contains(o))
                .map(|o| o.to_string())
                .collect()
        };
        controllers.sort();
        let read_only = fields[5].split(',').any(|o| o == "ro") || super_opts.contains(&"ro");
        out.push(CgroupMount {
            v2,
            controllers,
            root: String::from_utf8_lossy(&unescape(fields[3])).into_owned(),
            mount_point: PathBuf::from(OsString::from_vec(unescape(fields[4]))),
            read_only,
        });
    }
    out
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\134` for a backslash, …).
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// One line of `/proc/self/cgroup`: `hierarchy-id:controllers:path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Membership {
    /// 0 for the cgroup2 line.
    pub id: u32,
    /// Sorted v1 controllers (`name=systemd` kept as is); empty for the cgroup2 line.
    pub controllers: Vec<String>,
    pub path: String,
}

/// Parses `/proc/self/cgroup` `text`. Lines that do not have the documented shape are skipped.
pub(super) fn proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let id = parts.next()?.parse().ok()?;
            let mut controllers: Vec<String> = parts
                .next()?
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            controllers.sort();
            let path = parts.next()?.to_string();
            path.starts_with('/').then_some(Membership {
                id,
                controllers,
                path,
            })
        })
        .collect()
}

/// The value of `key` in a flat-keyed file (`cpu.stat`, `memory.events`, `memory.oom_control`,
/// `cgroup.events`: lines of `key value`).
pub(super) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut it = line.split_whitespace();
        (it.next()? == key).then_some(())?;
        it.next()?.parse().ok()
    })
}

/// A single-number file (`memory.peak`, `cpuacct.usage`, `memory.failcnt`).
pub(super) fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The pids of `cgroup.procs`, one per line.
pub(super) fn pids(text: &str) -> Vec<i32> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Space-separated names (`cgroup.controllers`, `cgroup.subtree_control`).
pub(super) fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// The effective uid from `/proc/self/status` `text` (`Uid: real effective saved fs`).
#[cfg(test)]
pub(super) fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Whether `/proc/swaps` `text` lists any active swap area (beyond its header line).
pub(super) fn swap_active(text: &str) -> bool {
    text.lines().skip(1).any(|l| !l.trim().is_empty())
}

/// The supervisor pid encoded in a run name `run-<pid>-<anything>`, if it has that shape.
pub(super) fn run_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("run-")?;
    let digits = rest.split('-').next()?;
    digits.parse().ok()
}
