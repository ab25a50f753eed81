//! cgroup v1: one hierarchy per controller (or per group of co-mounted controllers, such as
//! `cpu,cpuacct`), so a run is one directory in each of the memory, pids, cpu and cpuacct
//! hierarchies, plus, on hybrid hosts, a controller-less "tracking" directory on the cgroup2
//! mount that gives v1 runs `cgroup.kill`.
//!
//! v1 has no safe delegation to ordinary users, so without root it is used only through a parent
//! that root prepared and named in `AIRLOCK_CGROUP_PARENT`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::parse::{self, CgroupMount};
use super::{
    CPU_PERIOD_US, CgroupLimits, CgroupUsage, Host, PARENT_ENV, PARENT_NAME, Refusal, WEAK,
    env_dir, is_denied, make_run_dir, read, read_number, remove_dirs, write_file, write_limit,
};
use crate::error::JailError;

/// Where v1 runs go: the parent directory in each hierarchy.
#[derive(Clone, Debug)]
pub(super) struct Parent {
    pub memory: PathBuf,
    pub pids: PathBuf,
    /// `None` when no hierarchy carries the controller: then no CPU quota (or CPU time).
    pub cpu: Option<PathBuf>,
    /// The same directory as `cpu` when the two are co-mounted.
    pub cpuacct: Option<PathBuf>,
    /// Parent of the tracking cgroups on the cgroup2 mount, when there is one with cgroup.kill.
    pub unified: Option<PathBuf>,
    pub swap_active: bool,
}

impl Parent {
    /// The distinct directories, v1 hierarchies first.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let all = [
            Some(&self.memory),
            Some(&self.pids),
            self.cpu.as_ref(),
            self.cpuacct.as_ref(),
        ];
        let mut out: Vec<PathBuf> = Vec::new();
        for d in all.into_iter().flatten().chain(self.unified.as_ref()) {
            if !out.contains(d) {
                out.push(d.clone());
            }
        }
        out
    }
}

/// Finds the parent in every hierarchy; with `apply`, creates the `airlock` directories.
pub(super) fn resolve(host: &Host, apply: bool) -> Result<Parent, Refusal> {
    let l = &host.layout;
    let (Some(memory), Some(pids)) = (l.hierarchy("memory"), l.hierarchy("pids")) else {
        return Err(Refusal::new(
            "cgroup v1 has no memory or no pids hierarchy mounted",
            format!("mount them (mount -t cgroup -o memory none /sys/fs/cgroup/memory); {WEAK}"),
        ));
    };
    let dir_for = |m: &CgroupMount| -> Result<PathBuf, Refusal> {
        if let Some(rel) = &host.env {
            return env_dir(host, m, rel);
        }
        if !host.privileged() {
            return Err(unprivileged(host));
        }
        if m.read_only {
            return Err(Refusal::new(
                format!(
                    "the cgroup v1 hierarchy at {} is mounted read-only",
                    m.mount_point.display()
                ),
                format!("give this container writable cgroup mounts; {WEAK}"),
            ));
        }
        // Below our own cgroup, so that limits set on the supervisor also bound its runs.
        let dir = l
            .own_dir(m)
            .unwrap_or_else(|| m.mount_point.clone())
            .join(PARENT_NAME);
        if apply {
            fs::create_dir_all(&dir).map_err(|e| {
                Refusal::new(
                    format!("cannot create the cgroup parent {}: {e}", dir.display()),
                    format!(
                        "make {} writable for root (in a container: writable cgroup \
                         mounts); {WEAK}",
                        m.mount_point.display()
                    ),
                )
            })?;
        }
        Ok(dir)
    };
    let memory_dir = dir_for(memory)?;
    let pids_dir = dir_for(pids)?;
    let cpu = l.hierarchy("cpu").map(dir_for).transpose()?;
    let cpuacct = l.hierarchy("cpuacct").map(dir_for).transpose()?;
    let unified = l.v2.as_ref().and_then(|m| tracking_parent(host, m, apply));
    Ok(Parent {
        memory: memory_dir,
        pids: pids_dir,
        cpu,
        cpuacct,
        unified,
        swap_active: host.swap_active,
    })
}

/// The parent of tracking cgroups on the cgroup2 mount of a hybrid host, or `None` when there is
/// none we can use. Best effort: it only adds `cgroup.kill`, never a limit.
fn tracking_parent(host: &Host, m: &CgroupMount, apply: bool) -> Option<PathBuf> {
    // An ordinary user could create tracking cgroups in a delegated directory but not move
    // processes into them: cgroup2 also demands write access to the common ancestor of the
    // process's current cgroup and the new one, which is the root-owned root.
    if m.read_only || !host.privileged() {
        return None;
    }
    let dir = match &host.env {
        Some(rel) => env_dir(host, m, rel).ok()?,
        None => host
            .layout
            .own_dir(m)
            .unwrap_or_else(|| m.mount_point.clone())
            .join(PARENT_NAME),
    };
    if !apply {
        return (dir.is_dir() || host.privileged()).then_some(dir);
    }
    if let Err(e) = fs::create_dir_all(&dir) {
        tracing::debug!("no tracking cgroup parent {}: {e}", dir.display());
        return None;
    }
    // cgroup.kill appeared in Linux 5.14; without it a tracking cgroup is of no use.
    dir.join("cgroup.kill").exists().then_some(dir)
}

fn unprivileged(host: &Host) -> Refusal {
    let mut dirs: Vec<String> = Vec::new();
    for c in ["memory", "pids", "cpu", "cpuacct"] {
        if let Some(m) = host.layout.hierarchy(c) {
            let d = m.mount_point.display().to_string();
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    Refusal::new(
        format!(
            "cgroup v1 hierarchies can be written only by root (this process runs as uid {}) \
             and {PARENT_ENV} is not set",
            host.euid.map_or("?".into(), |u| u.to_string())
        ),
        format!(
            "run airlock as root; or have root delegate a parent in each hierarchy (for d in {}; \
             do mkdir $d/airlock-$USER && chown -R $USER $d/airlock-$USER; done) and set \
             {PARENT_ENV}=airlock-$USER; {WEAK}",
            dirs.join(" ")
        ),
    )
}

/// One run's cgroup on v1.
#[derive(Debug)]
pub(super) struct V1Cgroup {
    memory: PathBuf,
    pids: PathBuf,
    cpu: Option<PathBuf>,
    cpuacct: Option<PathBuf>,
    unified: Option<PathBuf>,
    /// Every process attached so far is also in the tracking cgroup, so `cgroup.kill` there
    /// reaches them all. Should moving one in fail, the tracking cgroup no longer stands for the
    /// run, and [`V1Cgroup::kill`] says so.
    tracked: AtomicBool,
    /// Every distinct directory above, in creation order.
    dirs: Vec<PathBuf>,
}

impl V1Cgroup {
    pub fn create(
        parent: &Parent,
        name: &str,
        limits: &CgroupLimits,
    ) -> Result<V1Cgroup, JailError> {
        let mut cg = V1Cgroup {
            memory: parent.memory.join(name),
            pids: parent.pids.join(name),
            cpu: parent.cpu.as_ref().map(|p| p.join(name)),
            cpuacct: parent.cpuacct.as_ref().map(|p| p.join(name)),
            unified: None,
            tracked: AtomicBool::new(true),
            dirs: Vec::new(),
        };
        let wanted = [
            Some(&cg.memory),
            Some(&cg.pids),
            cg.cpu.as_ref(),
            cg.cpuacct.as_ref(),
        ];
        let mut made: Vec<PathBuf> = Vec::new();
        for d in wanted.into_iter().flatten() {
            if made.contains(d) {
                continue;
            }
            if let Err(e) = make_run_dir(d) {
                remove_dirs(&made);
                return Err(e);
            }
            made.push(d.clone());
        }
        if let Some(u) = &parent.unified {
            let d = u.join(name);
            match fs::create_dir(&d) {
                Ok(()) => {
                    made.push(d.clone());
                    cg.unified = Some(d);
                }
                Err(e) => tracing::warn!(
                    "no tracking cgroup {} ({e}): killing this run falls back to one pid at a time",
                    d.display()
                ),
            }
        }
        cg.dirs = made;
        if let Err(e) = cg.configure(parent, limits) {
            remove_dirs(&cg.dirs);
            return Err(e);
        }
        Ok(cg)
    }

    fn configure(&self, parent: &Parent, limits: &CgroupLimits) -> Result<(), JailError> {
        let bytes = limits.memory_bytes.to_string();
        write_limit(&self.memory, "memory.limit_in_bytes", &bytes)?;
        // memsw is memory + swap, so equal to the memory limit means no swap. It is written
        // second because the kernel keeps memsw >= limit at every step.
        if self.memory.join("memory.memsw.limit_in_bytes").exists() {
            write_limit(&self.memory, "memory.memsw.limit_in_bytes", &bytes)?;
        } else if parent.swap_active {
            // Without swap accounting the best we can do is make the run the last to be swapped.
            let _ = write_file(&self.memory.join("memory.swappiness"), "0");
            tracing::warn!(
                "swap is active but {} has no memory.memsw.limit_in_bytes (boot with \
                 swapaccount=1): the run may swap beyond its memory limit",
                self.memory.display()
            );
        }
        // A child inherits oom_kill_disable from its parent; a run must be killed at its limit,
        // never left hanging in the OOM state.
        let oom = read(&self.memory.join("memory.oom_control")).unwrap_or_default();
        if parse::keyed(&oom, "oom_kill_disable") == Some(1) {
            write_limit(&self.memory, "memory.oom_control", "0")?;
        }
        write_limit(&self.pids, "pids.max", &limits.pids_value())?;
        if let Some(cpu) = &self.cpu {
            write_limit(cpu, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
            let quota = limits
                .cpu_quota_us()
                .map_or("-1".to_string(), |q| q.to_string());
            write_limit(cpu, "cpu.cfs_quota_us", &quota)?;
        }
        Ok(())
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Writes `pid` into every hierarchy, memory first (the limit that matters most), then into
    /// the tracking cgroup, best effort.
    pub fn attach(&self, pid: i32) -> Result<(), JailError> {
        for d in self
            .dirs
            .iter()
            .filter(|d| Some(*d) != self.unified.as_ref())
        {
            write_file(&d.join("cgroup.procs"), &pid.to_string()).map_err(|e| {
                let hint = if is_denied(&e) {
                    " (not permitted for this user)"
                } else {
                    ""
                };
                JailError::host(
                    format!("moving process {pid} into cgroup {}{hint}", d.display()),
                    e,
                )
            })?;
        }
        if let Some(u) = &self.unified
            && let Err(e) = write_file(&u.join("cgroup.procs"), &pid.to_string())
        {
            self.tracked.store(false, Ordering::Relaxed);
            tracing::debug!("process {pid} not tracked in {}: {e}", u.display());
        }
        Ok(())
    }

    /// `cgroup.kill` on the tracking cgroup; `true` only if it held every attached process.
    pub fn kill(&self) -> bool {
        let Some(u) = &self.unified else { return false };
        // Even when not every process is tracked, kill those that are.
        super::v2::kill_dir(u) && self.tracked.load(Ordering::Relaxed)
    }

    pub fn usage(&self) -> CgroupUsage {
        usage_at(
            &self.memory,
            self.cpuacct.as_deref(),
            self.unified.as_deref(),
        )
    }

    /// The files [`V1Cgroup::usage`] reads, for reading them later without the cgroup.
    pub fn meter(&self) -> super::Meter {
        super::Meter::V1 {
            memory: self.memory.clone(),
            cpuacct: self.cpuacct.clone(),
            unified: self.unified.clone(),
        }
    }
}

/// What a run consumed, from its v1 memory and cpuacct directories (and the tracking cgroup's
/// `cpu.stat` where there is no cpuacct).
pub(super) fn usage_at(
    memory: &Path,
    cpuacct: Option<&Path>,
    unified: Option<&Path>,
) -> CgroupUsage {
    let oom_control = read(&memory.join("memory.oom_control")).unwrap_or_default();
    let oom = match parse::keyed(&oom_control, "oom_kill") {
        Some(kills) => kills > 0,
        // Before Linux 4.13 there is no oom_kill counter; failcnt is the closest there is.
        None => read_number(&memory.join("memory.failcnt")).is_some_and(|n| n > 0),
    } || parse::keyed(&oom_control, "under_oom") == Some(1);
    let cpu_ns = cpuacct
        .and_then(|d| read_number(&d.join("cpuacct.usage")))
        .or_else(|| unified.and_then(super::v2::cpu_stat_ns));
    CgroupUsage {
        memory_peak_bytes: read_number(&memory.join("memory.max_usage_in_bytes")),
        cpu_ns,
        oom,
    }
}
