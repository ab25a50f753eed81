//! cgroup v2: one unified hierarchy; a run is one directory with `memory.max`,
//! `memory.swap.max`, `memory.oom.group`, `pids.max` and `cpu.max`.
//!
//! The parent needs the controllers enabled in its own `cgroup.subtree_control` and in that of
//! every ancestor (top-down), and the kernel's "no internal processes" rule allows that only for
//! cgroups that hold no processes, the root excepted. Hence:
//! - as root the parent is `/airlock` directly under the root. `<own cgroup>/airlock` would need
//!   controllers enabled in our own cgroup, which holds us, so it cannot have them unless it is
//!   the root; it is used only when our own cgroup already has them because we sit in a leaf
//!   below it (see `own_prepared`).
//! - when the cgroup that must enable controllers holds exactly one process, this supervisor,
//!   the supervisor moves itself into a leaf `airlock-supervisor` below it first. That is the
//!   standard answer of delegation (systemd's "move the main process into a leaf") and is what
//!   makes `systemd-run --user --scope -p Delegate=yes airlock …` and a container whose cgroup
//!   namespace root holds only airlock work. Any other process there: refused, with the fix.

use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::parse::{self, CgroupMount};
use super::{
    CPU_PERIOD_US, CgroupLimits, CgroupUsage, Host, Layout, PARENT_ENV, PARENT_NAME, Refusal,
    SUPERVISOR_LEAF, WEAK, env_dir, is_denied, make_run_dir, read, read_number, read_pids,
    remove_dirs, write_file, write_limit,
};
use crate::error::JailError;

/// Where v2 runs go and which limits they get.
#[derive(Clone, Debug)]
pub(super) struct Parent {
    pub dir: PathBuf,
    /// Which limit files to write. Always true for memory and pids when resolved from the host
    /// (resolution refuses otherwise); the tests on a cgroup2 mount without controllers build a
    /// parent with all of them off.
    pub memory: bool,
    pub pids: bool,
    pub cpu: bool,
    pub swap_active: bool,
}

/// Finds the parent on `mount`, whose hierarchy offers `available` controllers; with `apply`,
/// creates it and enables the controllers (see the module documentation).
pub(super) fn resolve(
    host: &Host,
    mount: &CgroupMount,
    available: &[String],
    apply: bool,
) -> Result<Parent, Refusal> {
    let root = &mount.mount_point;
    if mount.read_only {
        return Err(Refusal::new(
            format!(
                "the cgroup2 filesystem at {} is mounted read-only",
                root.display()
            ),
            format!(
                "in a container, give it a writable cgroup (podman/docker with \
                 --cgroupns=private and cgroup v2 delegation, or systemd-nspawn); {WEAK}"
            ),
        ));
    }
    for c in ["memory", "pids"] {
        if !available.iter().any(|a| a == c) {
            return Err(Refusal::new(
                format!(
                    "the cgroup2 hierarchy at {} has no {c} controller",
                    root.display()
                ),
                format!("enable it in the kernel or delegate it to this container; {WEAK}"),
            ));
        }
    }
    // `floor` is the topmost cgroup whose cgroup.subtree_control we may have to write.
    let (floor, dir) = match &host.env {
        Some(rel) => {
            let dir = env_dir(host, mount, rel)?;
            (
                if host.privileged() {
                    root.clone()
                } else {
                    dir.clone()
                },
                dir,
            )
        }
        // As root: below our own cgroup when it already passes the controllers down, else
        // directly below the root; see the module documentation.
        None if host.privileged() => match own_prepared(host, mount) {
            Some(own) => (own.clone(), own.join(PARENT_NAME)),
            None => (root.clone(), root.join(PARENT_NAME)),
        },
        None => {
            let own = own_delegated(host, mount)?;
            (own.clone(), own.join(PARENT_NAME))
        }
    };
    let mut chain = vec![floor.clone()];
    if let Ok(rest) = dir.strip_prefix(&floor) {
        for c in rest.components() {
            let next = chain[chain.len() - 1].join(c);
            chain.push(next);
        }
    }
    let mut cpu = false;
    for d in &chain {
        if !d.is_dir() {
            let above = d.parent().unwrap_or(root);
            if !apply {
                if !host.may_write(above) {
                    return Err(denied(host, root, above, "cannot create a child in it"));
                }
                cpu = available.iter().any(|a| a == "cpu");
                break;
            }
            match fs::create_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(denied(
                        host,
                        root,
                        above,
                        &format!("cannot create {}: {e}", d.display()),
                    ));
                }
            }
        }
        cpu = enable(host, root, d, apply)?;
    }
    Ok(Parent {
        dir,
        memory: true,
        pids: true,
        cpu,
        swap_active: host.swap_active,
    })
}

/// Our own cgroup when it is not the root and already enables memory and pids for its children.
/// Keeping runs there keeps them inside the supervisor's own limits (a service's `MemoryMax=`),
/// but that is possible only when we sit in a leaf below it (`airlock-supervisor`, set up by an
/// administrator or a unit with `Delegate=yes`), since a cgroup holding us cannot enable them.
fn own_prepared(host: &Host, mount: &CgroupMount) -> Option<PathBuf> {
    let mut own = host.layout.own_dir(mount)?;
    if own.file_name().is_some_and(|n| n == SUPERVISOR_LEAF) {
        own.pop();
    }
    let enabled = parse::words(&read(&own.join("cgroup.subtree_control"))?);
    let passes = ["memory", "pids"]
        .iter()
        .all(|c| enabled.iter().any(|e| e == c));
    (own != mount.mount_point && passes).then_some(own)
}

/// Our own cgroup, when it is delegated to us (unprivileged, no `AIRLOCK_CGROUP_PARENT`).
fn own_delegated(host: &Host, mount: &CgroupMount) -> Result<PathBuf, Refusal> {
    let root = &mount.mount_point;
    let Some(mut own) = host.layout.own_dir(mount) else {
        return Err(Refusal::new(
            format!(
                "our own cgroup ({:?} in /proc/self/cgroup) is not visible under the cgroup2 \
                 mount {}",
                host.layout.own_path(mount).unwrap_or("none"),
                root.display()
            ),
            fix_unprivileged(root),
        ));
    };
    // After an earlier evacuation (see `evacuate`) we sit in `<own>/airlock-supervisor`.
    if own.file_name().is_some_and(|n| n == SUPERVISOR_LEAF) {
        own.pop();
    }
    let offered = read(&own.join("cgroup.controllers"))
        .map(|t| parse::words(&t))
        .unwrap_or_default();
    let missing: Vec<&str> = ["memory", "pids"]
        .into_iter()
        .filter(|c| !offered.iter().any(|o| o == c))
        .collect();
    if !missing.is_empty() {
        return Err(Refusal::new(
            format!(
                "the {} controller(s) are not delegated to our own cgroup {} (its \
                 cgroup.controllers: {offered:?})",
                missing.join(" and "),
                own.display()
            ),
            fix_unprivileged(root),
        ));
    }
    if !host.may_write(&own) || !host.may_write(&own.join("cgroup.subtree_control")) {
        return Err(Refusal::new(
            format!(
                "our own cgroup {} is not delegated to uid {} (not writable)",
                own.display(),
                host.euid.map_or("?".into(), |u| u.to_string())
            ),
            fix_unprivileged(root),
        ));
    }
    Ok(own)
}

/// Makes memory and pids (and cpu when offered) enabled for the children of `dir`. Returns
/// whether cpu is enabled: the CPU quota is best effort, memory and pids are not.
fn enable(host: &Host, root: &Path, dir: &Path, apply: bool) -> Result<bool, Refusal> {
    let words = |f: &str| {
        read(&dir.join(f))
            .map(|t| parse::words(&t))
            .unwrap_or_default()
    };
    let have = words("cgroup.subtree_control");
    let offered = words("cgroup.controllers");
    let missing: Vec<&str> = ["memory", "pids"]
        .into_iter()
        .filter(|c| !have.iter().any(|h| h == c))
        .collect();
    if !missing.is_empty() {
        if apply {
            write_subtree(host, root, dir, &missing)?;
        } else {
            predict_subtree(host, root, dir, &missing)?;
        }
    }
    if have.iter().any(|h| h == "cpu") {
        return Ok(true);
    }
    if !offered.iter().any(|o| o == "cpu") {
        return Ok(false);
    }
    if !apply {
        return Ok(predict_subtree(host, root, dir, &["cpu"]).is_ok());
    }
    match write_subtree(host, root, dir, &["cpu"]) {
        Ok(()) => Ok(true),
        Err(r) => {
            tracing::warn!("CPU quota will not be enforced for airlock runs: {}", r.why);
            Ok(false)
        }
    }
}

fn write_subtree(host: &Host, root: &Path, dir: &Path, ctrls: &[&str]) -> Result<(), Refusal> {
    let path = dir.join("cgroup.subtree_control");
    let line: Vec<String> = ctrls.iter().map(|c| format!("+{c}")).collect();
    let mut evacuated = false;
    loop {
        let Err(e) = write_file(&path, &line.join(" ")) else {
            return Ok(());
        };
        if e.raw_os_error() == Some(libc::EBUSY) {
            let procs = read_pids(dir);
            if !evacuated && procs == [std::process::id() as i32] {
                evacuate(dir)?;
                evacuated = true;
                continue;
            }
            return Err(busy(dir, ctrls, &procs));
        }
        return Err(if is_denied(&e) {
            denied(
                host,
                root,
                dir,
                &format!("cannot enable {} for its children: {e}", ctrls.join(" ")),
            )
        } else {
            not_offered(dir, ctrls, &format!("{e}"))
        });
    }
}

/// What [`write_subtree`] would run into, judged without writing.
fn predict_subtree(host: &Host, root: &Path, dir: &Path, ctrls: &[&str]) -> Result<(), Refusal> {
    let procs = read_pids(dir);
    // Only the real root lacks cgroup.type; a cgroup namespace's root is not exempt.
    let real_root = !dir.join("cgroup.type").exists();
    if !procs.is_empty() && !real_root && procs != [std::process::id() as i32] {
        return Err(busy(dir, ctrls, &procs));
    }
    if !host.may_write(&dir.join("cgroup.subtree_control")) {
        return Err(denied(
            host,
            root,
            dir,
            &format!("cannot enable {} for its children", ctrls.join(" ")),
        ));
    }
    let offered = read(&dir.join("cgroup.controllers"))
        .map(|t| parse::words(&t))
        .unwrap_or_default();
    if let Some(c) = ctrls.iter().find(|c| !offered.iter().any(|o| o == *c)) {
        return Err(not_offered(
            dir,
            ctrls,
            &format!("{c} is not in its cgroup.controllers"),
        ));
    }
    Ok(())
}

/// Moves this process into `<dir>/airlock-supervisor` so that `dir` holds no process and may
/// enable controllers. Only called when we are the only process in `dir`.
fn evacuate(dir: &Path) -> Result<(), Refusal> {
    let leaf = dir.join(SUPERVISOR_LEAF);
    let pid = std::process::id();
    let fail = |what: String, e: io::Error| {
        Refusal::new(
            format!(
                "{} holds this process (pid {pid}), so it cannot enable controllers for its \
                 children, and {what}: {e}",
                dir.display()
            ),
            format!(
                "start airlock in a cgroup of its own whose parent it may write, e.g. \
                 `systemd-run --user --scope -p Delegate=yes airlock …`; {WEAK}"
            ),
        )
    };
    match fs::create_dir(&leaf) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fail(format!("creating {} failed", leaf.display()), e)),
    }
    write_file(&leaf.join("cgroup.procs"), &pid.to_string())
        .map_err(|e| fail(format!("moving it into {} failed", leaf.display()), e))?;
    tracing::info!(
        "moved the airlock supervisor (pid {pid}) from {} into {} so that controllers can be \
         enabled for its runs (cgroup v2 enables them only below cgroups without processes)",
        dir.display(),
        leaf.display()
    );
    Ok(())
}

fn busy(dir: &Path, ctrls: &[&str], procs: &[i32]) -> Refusal {
    Refusal::new(
        format!(
            "cannot enable {} for the children of {}: it holds {} process(es) (pids {:?}), and \
             cgroup v2 enables controllers only below cgroups without processes",
            ctrls.join(" "),
            dir.display(),
            procs.len(),
            &procs[..procs.len().min(8)]
        ),
        format!(
            "move those processes into a leaf (mkdir {d}/leaf; echo PID > {d}/leaf/cgroup.procs \
             for each), or point {PARENT_ENV} at a cgroup without processes; {WEAK}",
            d = dir.display()
        ),
    )
}

fn denied(host: &Host, root: &Path, dir: &Path, what: &str) -> Refusal {
    Refusal::new(
        format!(
            "{}: {what} (uid {})",
            dir.display(),
            host.euid.map_or("?".into(), |u| u.to_string())
        ),
        if host.privileged() {
            format!(
                "the cgroup filesystem is not writable here even as root: in a container, run \
                 it with a writable, delegated cgroup2 mount (e.g. --cgroupns=private); {WEAK}"
            )
        } else {
            fix_unprivileged(root)
        },
    )
}

fn not_offered(dir: &Path, ctrls: &[&str], detail: &str) -> Refusal {
    Refusal::new(
        format!(
            "cannot enable {} for the children of {}: {detail} (its parent does not pass them \
             down)",
            ctrls.join(" "),
            dir.display()
        ),
        format!(
            "enable them top-down in each ancestor, as root: echo '+memory +pids +cpu' > \
             <ancestor>/cgroup.subtree_control; {WEAK}"
        ),
    )
}

fn fix_unprivileged(root: &Path) -> String {
    format!(
        "run airlock as root; or start it in a delegated cgroup: `systemd-run --user --scope -p \
         Delegate=yes airlock …`; or have root delegate a cgroup holding no processes (mkdir \
         {r}/airlock-$USER, enable '+memory +pids +cpu' in the cgroup.subtree_control of it and \
         of its ancestors, chown -R $USER {r}/airlock-$USER) and set {PARENT_ENV}=airlock-$USER; \
         {WEAK}",
        r = root.display()
    )
}

/// Whether this kernel has `cgroup.kill` (5.14+). Only non-root cgroups carry the file, so look
/// at our own cgroup or any child of the root.
pub(super) fn kernel_has_kill(layout: &Layout) -> bool {
    let Some(m) = &layout.v2 else { return false };
    if let Some(own) = layout.own_dir(m).filter(|d| d.join("cgroup.type").exists()) {
        return own.join("cgroup.kill").exists();
    }
    match fs::read_dir(&m.mount_point)
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| e.path().join("cgroup.type").exists())
    {
        Some(e) => e.path().join("cgroup.kill").exists(),
        // No child cgroup to look at (the root has no cgroup.kill): the kernel has it from 5.14.
        None => kernel_at_least(5, 14),
    }
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let (Some(a), Some(b)) = (parts.next(), parts.next()) else {
        return false;
    };
    (a, b) >= (major, minor)
}

/// One run's cgroup on v2.
#[derive(Debug)]
pub(super) struct V2Cgroup {
    dir: PathBuf,
    /// Kept open for `clone3(CLONE_INTO_CGROUP)`; closing it does not affect removal.
    fd: OwnedFd,
}

impl V2Cgroup {
    pub fn create(
        parent: &Parent,
        name: &str,
        limits: &CgroupLimits,
    ) -> Result<V2Cgroup, JailError> {
        let dir = parent.dir.join(name);
        make_run_dir(&dir)?;
        match configure(parent, &dir, limits) {
            Ok(fd) => Ok(V2Cgroup { dir, fd }),
            Err(e) => {
                remove_dirs(&[dir]);
                Err(e)
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn dir_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn attach(&self, pid: i32) -> Result<(), JailError> {
        write_file(&self.dir.join("cgroup.procs"), &pid.to_string()).map_err(|e| {
            JailError::host(
                format!("moving process {pid} into cgroup {}", self.dir.display()),
                e,
            )
        })
    }

    pub fn kill(&self) -> bool {
        kill_dir(&self.dir)
    }

    pub fn usage(&self) -> CgroupUsage {
        usage_at(&self.dir)
    }

    /// The directory [`V2Cgroup::usage`] reads, for reading it later without the cgroup.
    pub fn meter(&self) -> super::Meter {
        super::Meter::V2 {
            dir: self.dir.clone(),
        }
    }
}

/// What a run consumed, from its v2 directory.
pub(super) fn usage_at(dir: &Path) -> CgroupUsage {
    let events = read(&dir.join("memory.events")).unwrap_or_default();
    let count = |k| parse::keyed(&events, k).unwrap_or(0);
    CgroupUsage {
        memory_peak_bytes: read_number(&dir.join("memory.peak")),
        cpu_ns: cpu_stat_ns(dir),
        oom: count("oom") > 0 || count("oom_kill") > 0,
    }
}

/// Writes a fresh run's limits and opens its directory.
fn configure(parent: &Parent, dir: &Path, limits: &CgroupLimits) -> Result<OwnedFd, JailError> {
    if parent.memory {
        write_limit(dir, "memory.max", &limits.memory_bytes.to_string())?;
        if dir.join("memory.swap.max").exists() {
            write_limit(dir, "memory.swap.max", "0")?;
        } else if parent.swap_active {
            tracing::warn!(
                "swap is active but {} has no memory.swap.max (no swap accounting): the run may \
                 swap beyond its memory limit",
                dir.display()
            );
        }
        // One OOM kill ends the whole run: a sandbox that lost one of its processes (perhaps
        // its agent) is in no state to continue, and the run must end as `memory_limit`.
        if dir.join("memory.oom.group").exists() {
            write_limit(dir, "memory.oom.group", "1")?;
        }
    }
    if parent.pids {
        write_limit(dir, "pids.max", &limits.pids_value())?;
    }
    if parent.cpu {
        let quota = limits
            .cpu_quota_us()
            .map_or("max".to_string(), |q| q.to_string());
        write_limit(dir, "cpu.max", &format!("{quota} {CPU_PERIOD_US}"))?;
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| JailError::host(format!("opening cgroup directory {}", dir.display()), e))?;
    Ok(OwnedFd::from(file))
}

/// `cgroup.kill` of `dir`: SIGKILL to every process inside and below, atomically with respect
/// to forks. False when the file is missing (kernel before 5.14) or the write fails.
pub(super) fn kill_dir(dir: &Path) -> bool {
    match write_file(&dir.join("cgroup.kill"), "1") {
        Ok(()) => true,
        Err(e) => {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!("cannot kill cgroup {}: {e}", dir.display());
            }
            false
        }
    }
}

/// CPU time in ns from `cpu.stat` (`usage_usec`, present without the cpu controller too).
pub(super) fn cpu_stat_ns(dir: &Path) -> Option<u64> {
    let usec = parse::keyed(&read(&dir.join("cpu.stat"))?, "usage_usec")?;
    Some(usec.saturating_mul(1000))
}
