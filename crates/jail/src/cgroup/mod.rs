//! One cgroup per run: memory (swap 0), pids and CPU quota, on cgroup v2 and on cgroup v1.
//!
//! DESIGN §3 asks for hard limits on both versions: airlock's own machines run v1 hybrid, most
//! users run pure v2. The two backends (`v1.rs`, `v2.rs`) share this front: [`probe`] describes the
//! host without changing it (for `airlock doctor` and for choosing), [`Cgroup::create`] makes one
//! run's cgroup and [`Cgroup`]'s `Drop` removes it, so a run leaves nothing behind.
//!
//! Where runs go: under a *parent* that airlock resolves once per process and caches.
//! - `AIRLOCK_CGROUP_PARENT` set: that path, relative to the cgroup2 mount (v2) or to each
//!   controller's mount (v1). This is how an unprivileged user hands airlock a delegated subtree.
//! - as root on v1: `<own cgroup of that controller>/airlock` in every hierarchy, so a supervisor
//!   confined by its own limits keeps its runs inside them.
//! - as root on v2: `/airlock` at the hierarchy root, or `<own cgroup>/airlock` when our own
//!   cgroup already passes the controllers down (see `v2.rs` for why that is rare).
//! - unprivileged on v2: `<own cgroup>/airlock` when our own cgroup is delegated to us.
//! - unprivileged on v1, nothing set: unavailable (v1 has no safe delegation), with the fix.
//!
//! There is no `unsafe` here: everything is file I/O on cgroupfs. That is also why this module
//! cannot signal processes on its own. On v2 [`Cgroup::kill`] uses `cgroup.kill`; on a v1 hybrid
//! host each run is additionally placed in a controller-less "tracking" cgroup on the cgroup2
//! mount, so `cgroup.kill` works there too. Where neither exists, the caller kills
//! [`Cgroup::pids`].

#![forbid(unsafe_code)]

mod parse;
#[cfg(test)]
mod tests;
mod v1;
mod v2;

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::error::JailError;
use parse::{CgroupMount, Membership};

/// The environment variable naming airlock's parent cgroup, relative to the hierarchy root.
pub const PARENT_ENV: &str = "AIRLOCK_CGROUP_PARENT";

/// Name of the parent airlock creates for itself when `AIRLOCK_CGROUP_PARENT` is not set.
const PARENT_NAME: &str = "airlock";
/// Leaf airlock moves its own process into when that is the only way to enable controllers for
/// its runs (cgroup v2's "no internal processes" rule; see [`v2`]).
const SUPERVISOR_LEAF: &str = "airlock-supervisor";
/// How long [`Cgroup::destroy`] waits for the last processes of a run to leave.
const DESTROY_WAIT: Duration = Duration::from_secs(2);
/// [`cleanup_stale`] leaves younger `run-*` cgroups alone: another supervisor (perhaps in another
/// pid namespace, where its pid means nothing to us) may have just created one and not yet moved
/// its child in.
const STALE_GRACE: Duration = Duration::from_secs(10);
/// CFS period for the CPU quota: 100 ms, the kernel default, so `cpu_millis` maps to µs × 100.
const CPU_PERIOD_US: u64 = 100_000;
/// The kernel refuses quotas below 1 ms per period.
const CPU_MIN_QUOTA_US: u64 = 1_000;
/// Above this the kernel rejects `pids.max` numbers (PID_MAX_LIMIT); beyond it means "max".
const PID_MAX_LIMIT: u64 = 4 * 1024 * 1024;

/// The limits of one run's cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupLimits {
    /// Memory in bytes; swap is limited to 0 on top of it.
    pub memory_bytes: u64,
    /// Maximum number of tasks (processes and threads).
    pub pids: u64,
    /// CPU bandwidth in millicores: 1000 is one full core, 250 a quarter. 0 means no quota.
    pub cpu_millis: u64,
}

impl CgroupLimits {
    /// The CFS quota per [`CPU_PERIOD_US`] period, or `None` for no quota.
    fn cpu_quota_us(&self) -> Option<u64> {
        (self.cpu_millis > 0).then(|| (self.cpu_millis.saturating_mul(100)).max(CPU_MIN_QUOTA_US))
    }

    /// The `pids.max` value, "max" when the number is beyond what the kernel accepts.
    fn pids_value(&self) -> String {
        if self.pids >= PID_MAX_LIMIT {
            "max".into()
        } else {
            self.pids.to_string()
        }
    }
}

/// Which cgroup version a run's limits are enforced with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// What the host offers, for `airlock doctor` and for choosing a backend. Never fails; describes.
///
/// Probing changes nothing on the host: whether the parent would work is predicted from file
/// contents and ownership, and [`Cgroup::create`] reports precisely if the prediction was wrong.
#[derive(Clone, Debug)]
pub struct HostCgroups {
    /// The version airlock would use, `None` when neither has the memory and pids controllers.
    pub version: Option<Version>,
    /// The cgroup2 mount, with or without controllers (`/sys/fs/cgroup/unified` on v1 hybrid).
    pub v2_mount: Option<PathBuf>,
    /// Every v1 controller and the mount of its hierarchy; co-mounted controllers (`cpu,cpuacct`)
    /// appear once each, with the same path.
    pub v1_mounts: Vec<(String, PathBuf)>,
    /// Controllers available on the cgroup2 hierarchy (its root's `cgroup.controllers`).
    pub v2_controllers: Vec<String>,
    /// Why airlock cannot enforce limits here, with the fix; `Ok` when it can.
    pub usable: Result<(), String>,
    /// Where run cgroups would be created (one directory per hierarchy on v1), when usable.
    pub parents: Vec<PathBuf>,
    /// Whether the kernel can kill a whole run in one step (`cgroup.kill`, Linux 5.14+; on v1
    /// through the tracking cgroup on the cgroup2 mount). Otherwise the caller kills each pid.
    pub kill_supported: bool,
    /// Weaker points that do not make limits unusable (no CPU quota, unaccounted swap, …).
    pub notes: Vec<String>,
}

impl HostCgroups {
    /// One line for `airlock doctor`: what is mounted, what airlock would use, and where.
    pub fn describe(&self) -> String {
        let v2 = self.v2_mount.as_ref().map(|m| m.display().to_string());
        let mut line = match self.version {
            Some(Version::V2) => format!(
                "cgroup v2 at {} (controllers: {})",
                v2.as_deref().unwrap_or("?"),
                self.v2_controllers.join(" ")
            ),
            Some(Version::V1) => {
                let used: Vec<&str> = ["memory", "pids", "cpu", "cpuacct"]
                    .into_iter()
                    .filter(|c| self.v1_mounts.iter().any(|(m, _)| m == c))
                    .collect();
                let mut l = format!("cgroup v1 ({})", used.join(", "));
                if let Some(v2) = &v2 {
                    l.push_str(&format!(", cgroup2 at {v2} without memory/pids (hybrid)"));
                }
                l
            }
            None => format!(
                "no hierarchy with memory and pids controllers (cgroup2: {}, controllers [{}]; v1 \
                 controllers [{}])",
                v2.as_deref().unwrap_or("not mounted"),
                self.v2_controllers.join(" "),
                self.v1_mounts
                    .iter()
                    .map(|(c, _)| c.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        };
        if self.usable.is_ok() && !self.parents.is_empty() {
            let parents: Vec<String> = self
                .parents
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            line.push_str(&format!("; runs under {}", parents.join(", ")));
        }
        if self.kill_supported {
            line.push_str("; whole-run kill via cgroup.kill");
        }
        for note in &self.notes {
            line.push_str("; ");
            line.push_str(note);
        }
        line
    }
}

/// What a run consumed, read from its cgroup. Best effort: a missing file gives `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    /// Highest memory use of the run in bytes (v2 `memory.peak`, Linux 5.19+; v1
    /// `memory.max_usage_in_bytes`).
    pub memory_peak_bytes: Option<u64>,
    /// CPU time of all its processes, user + system (v2 `cpu.stat`, v1 `cpuacct.usage`).
    pub cpu_ns: Option<u64>,
    /// The memory limit was enforced by the OOM killer.
    ///
    /// Counted from the kernel's OOM events (v2 `memory.events` `oom`/`oom_kill`, v1
    /// `memory.oom_control` `oom_kill`), not from "the limit was reached" counters (v2 `max`, v1
    /// `failcnt`): those also rise when the kernel merely reclaims page cache at the limit, which
    /// every run that reads a file larger than its limit does, and which is not a memory error.
    /// Only kernels older than 4.13 lack the v1 `oom_kill` counter; there `failcnt > 0` is used.
    pub oom: bool,
}

/// Reads a cgroup's usage without holding it: for a supervisor that samples a long-lived
/// sandbox (a session) while another thread owns its cgroup. Once the cgroup is removed, every
/// figure reads as unknown.
#[derive(Clone, Debug)]
pub enum Meter {
    V1 {
        memory: PathBuf,
        cpuacct: Option<PathBuf>,
        unified: Option<PathBuf>,
    },
    V2 {
        dir: PathBuf,
    },
}

impl Meter {
    pub fn usage(&self) -> CgroupUsage {
        match self {
            Meter::V1 {
                memory,
                cpuacct,
                unified,
            } => v1::usage_at(memory, cpuacct.as_deref(), unified.as_deref()),
            Meter::V2 { dir } => v2::usage_at(dir),
        }
    }
}

/// One run's cgroup. Dropping it kills what is left inside (where the kernel can) and removes it
/// on every hierarchy; it never panics.
#[derive(Debug)]
pub struct Cgroup {
    name: String,
    backend: Backend,
    /// Teardown already ran (successfully or not): `Drop` must not block a second time.
    done: bool,
}

#[derive(Debug)]
enum Backend {
    V1(v1::V1Cgroup),
    V2(v2::V2Cgroup),
}

impl Cgroup {
    /// Creates a fresh cgroup named `name` (unique, e.g. `run-<pid>-<counter>`) under airlock's
    /// parent and applies the limits. `Err(Unavailable)` when it cannot be done (the caller decides
    /// whether that is fatal); the first call also creates the parent and enables controllers.
    pub fn create(name: &str, limits: &CgroupLimits) -> Result<Cgroup, JailError> {
        check_name(name)?;
        // Another supervisor's `release_parents` may remove an empty parent between our
        // resolving it and creating the run's directory: resolve again and retry.
        let mut attempt = 0;
        let backend = loop {
            let parent = resolved_parent()?;
            let made = match &*parent {
                Parent::V1(p) => v1::V1Cgroup::create(p, name, limits).map(Backend::V1),
                Parent::V2(p) => v2::V2Cgroup::create(p, name, limits).map(Backend::V2),
            };
            match made {
                Err(_) if attempt < 3 && !parent.dirs().iter().all(|d| d.is_dir()) => attempt += 1,
                other => break other?,
            }
        };
        Ok(Cgroup {
            name: name.to_string(),
            backend,
            done: false,
        })
    }

    /// The name given to [`Cgroup::create`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which backend enforces this run's limits.
    pub fn version(&self) -> Version {
        match self.backend {
            Backend::V1(_) => Version::V1,
            Backend::V2(_) => Version::V2,
        }
    }

    /// Every directory of this cgroup (one per v1 hierarchy, plus the tracking cgroup).
    pub fn paths(&self) -> Vec<PathBuf> {
        match &self.backend {
            Backend::V1(c) => c.dirs().to_vec(),
            Backend::V2(c) => vec![c.dir().to_path_buf()],
        }
    }

    /// v2 only: an open `O_DIRECTORY` fd of the cgroup for `clone3(CLONE_INTO_CGROUP)`, which
    /// starts the child inside the cgroup with no window outside it. `None` on v1, where the
    /// child must be [`attach`](Cgroup::attach)ed instead.
    pub fn dir_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.backend {
            Backend::V1(_) => None,
            Backend::V2(c) => Some(c.dir_fd()),
        }
    }

    /// Whether runs' cgroups will be v2 ones, which a child is cloned straight into; v1 ones
    /// are joined after the clone ([`Cgroup::attach`]). Only reads the host: making the parent
    /// is left to [`Cgroup::create`], which fails if it cannot.
    pub fn clones_into() -> Result<bool, JailError> {
        let env = env_parent();
        if let Some((cached_env, parent)) = &*PARENT.lock().unwrap_or_else(|p| p.into_inner())
            && *cached_env == env
        {
            return Ok(matches!(**parent, Parent::V2(_)));
        }
        let host = Host::with_env(env);
        let v2_controllers = host.v2_controllers();
        let answer = match choose(&host.layout, &v2_controllers) {
            Some(version) => Ok(version == Version::V2),
            None => Err(no_controllers(&host, &v2_controllers).into_error()),
        };
        Probed::keep(host);
        answer
    }

    /// Moves process `pid` (all its threads) into this cgroup (v1: every hierarchy's
    /// `cgroup.procs`; v2: `cgroup.procs`). Its children born afterwards stay inside.
    pub fn attach(&self, pid: i32) -> Result<(), JailError> {
        match &self.backend {
            Backend::V1(c) => c.attach(pid),
            Backend::V2(c) => c.attach(pid),
        }
    }

    /// `cgroup.procs` of every directory of this cgroup, open for writing: a process that
    /// writes `0` to each joins the cgroup. The kernel checks the opener's credentials (ours),
    /// so they are handed to a zygote's child for moving itself in.
    pub fn procs_files(&self) -> Result<Vec<OwnedFd>, JailError> {
        self.paths()
            .iter()
            .map(|dir| {
                let path = dir.join("cgroup.procs");
                fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map(OwnedFd::from)
                    .map_err(|e| JailError::host(format!("opening {}", path.display()), e))
            })
            .collect()
    }

    /// Peak memory, CPU time used and whether the memory limit was enforced. Best effort.
    pub fn usage(&self) -> CgroupUsage {
        match &self.backend {
            Backend::V1(c) => c.usage(),
            Backend::V2(c) => c.usage(),
        }
    }

    /// A [`Meter`] of this cgroup.
    pub fn meter(&self) -> Meter {
        match &self.backend {
            Backend::V1(c) => c.meter(),
            Backend::V2(c) => c.meter(),
        }
    }

    /// The processes inside (thread-group ids), sorted, for a caller that must kill them itself
    /// (v1 without a tracking cgroup; see [`Cgroup::kill`]).
    pub fn pids(&self) -> Vec<i32> {
        let mut all: Vec<i32> = self.paths().iter().flat_map(|d| read_pids(d)).collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Kills every process inside at once via `cgroup.kill` (no pid-reuse race, no escape by
    /// forking). Returns `false` when the kernel cannot (before Linux 5.14, or v1 without a cgroup2
    /// mount for the tracking cgroup): then the caller kills [`Cgroup::pids`].
    pub fn kill(&self) -> bool {
        match &self.backend {
            Backend::V1(c) => c.kill(),
            Backend::V2(c) => c.kill(),
        }
    }

    /// Kills what is left (where [`Cgroup::kill`] can), waits up to 2 s for the cgroup to empty
    /// and removes it on every hierarchy.
    pub fn destroy(mut self) -> Result<(), JailError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), JailError> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        self.kill();
        let mut left = self.paths();
        let deadline = Instant::now() + DESTROY_WAIT;
        loop {
            let mut busy = None;
            left.retain(|dir| match fs::remove_dir(dir) {
                Ok(()) => false,
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(e) => {
                    busy.get_or_insert(e);
                    true
                }
            });
            let Some(err) = busy else { return Ok(()) };
            if err.raw_os_error() != Some(libc::EBUSY) || Instant::now() >= deadline {
                let pids = self.pids();
                return Err(JailError::host(
                    format!(
                        "cannot remove cgroup {} ({} process(es) still inside: {:?}); kill them; \
                         once it is empty cleanup_stale() removes it",
                        left[0].display(),
                        pids.len(),
                        pids
                    ),
                    err,
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::warn!("{e}");
        }
    }
}

/// Describes the host's cgroups and whether airlock could enforce limits with them.
pub fn probe() -> HostCgroups {
    let host = Host::current();
    let layout = &host.layout;
    let v2_controllers = host.v2_controllers();
    let mut v1_mounts: Vec<(String, PathBuf)> = layout
        .v1
        .iter()
        .flat_map(|m| {
            m.controllers
                .iter()
                .map(|c| (c.clone(), m.mount_point.clone()))
        })
        .collect();
    v1_mounts.sort();
    let mut notes = Vec::new();
    let resolved = resolve(&host, false);
    let parents = resolved.as_ref().map(|p| p.dirs()).unwrap_or_default();
    let kill_supported = match &resolved {
        Ok(Parent::V1(p)) => p.unified.is_some() && v2::kernel_has_kill(layout),
        Ok(Parent::V2(_)) => v2::kernel_has_kill(layout),
        Err(_) => false,
    };
    if let Ok(p) = &resolved {
        if !p.has_cpu() {
            notes.push(
                "no cpu controller for airlock's cgroups: CPU time is bounded only by RLIMIT_CPU \
                 and the wall-clock timeout, not rate-limited"
                    .into(),
            );
        }
        if host.swap_active && !p.limits_swap() {
            notes.push(
                "swap is active but cgroup swap accounting is off: runs may swap beyond their \
                 memory limit; boot with swapaccount=1 (v1) or a kernel with CONFIG_MEMCG_SWAP"
                    .into(),
            );
        }
        if !kill_supported {
            notes.push("no cgroup.kill: the supervisor kills a run's processes one by one".into());
        }
    }
    HostCgroups {
        version: choose(layout, &v2_controllers),
        v2_mount: layout.v2.as_ref().map(|m| m.mount_point.clone()),
        v1_mounts,
        v2_controllers,
        usable: resolved
            .map(|_| ())
            .map_err(|r| format!("{}. Fix: {}", r.why, r.fix)),
        parents,
        kill_supported,
        notes,
    }
}

/// Destroys `cg` on a background thread: removing a cgroup waits for the kernel to empty it
/// and costs a millisecond or more on cgroup v1, which a run's result need not wait for.
/// [`flush_destroys`] waits until every cgroup handed over is gone.
pub fn destroy_later(cg: Cgroup) {
    let queue = DESTROYER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Box<Cgroup>>();
        let started = std::thread::Builder::new()
            .name("airlock-cgroup-destroy".into())
            .spawn(move || {
                for cg in rx {
                    drop(cg); // Drop tears it down and logs what it cannot remove
                    let (count, emptied) = &PENDING;
                    let mut n = count.lock().unwrap_or_else(|p| p.into_inner());
                    *n -= 1;
                    emptied.notify_all();
                }
            });
        started.ok().map(|_| Mutex::new(tx))
    });
    let Some(queue) = queue else {
        drop(cg); // no thread: remove it here
        return;
    };
    *PENDING.0.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    let sent = queue
        .lock()
        .map(|tx| tx.send(Box::new(cg)).map_err(|e| e.0));
    if let Ok(Err(cg)) = sent {
        *PENDING.0.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        drop(cg);
    }
}

/// Waits until every cgroup given to [`destroy_later`] has been removed.
pub fn flush_destroys() {
    let (count, emptied) = &PENDING;
    let mut n = count.lock().unwrap_or_else(|p| p.into_inner());
    while *n > 0 {
        n = emptied.wait(n).unwrap_or_else(|p| p.into_inner());
    }
}

static DESTROYER: std::sync::OnceLock<Option<Mutex<std::sync::mpsc::Sender<Box<Cgroup>>>>> =
    std::sync::OnceLock::new();
static PENDING: (Mutex<usize>, std::sync::Condvar) = (Mutex::new(0), std::sync::Condvar::new());

/// Removes empty `run-*` cgroups left under airlock's parent by a supervisor that crashed, and
/// returns how many runs it removed. Cheap: one directory listing per hierarchy. Leaves alone
/// cgroups that still hold processes, whose creator (the pid in `run-<pid>-…`) is alive, or that
/// are younger than a few seconds.
pub fn cleanup_stale() -> usize {
    match known_parent() {
        Some(parent) => cleanup_in(&parent.dirs(), STALE_GRACE),
        None => 0,
    }
}

fn cleanup_in(parents: &[PathBuf], grace: Duration) -> usize {
    let mut removed = BTreeSet::new();
    for parent in parents {
        let Ok(entries) = fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("run-") || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if parse::run_owner(&name)
                .is_some_and(|pid| Path::new("/proc").join(pid.to_string()).exists())
            {
                continue;
            }
            let young = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_none_or(|age| age < grace);
            if young {
                continue;
            }
            if fs::remove_dir(entry.path()).is_ok() {
                tracing::info!("removed stale cgroup {}", entry.path().display());
                removed.insert(name);
            }
        }
    }
    removed.len()
}

/// A cgroup name is one path component: it is joined under the parent on every hierarchy.
fn check_name(name: &str) -> Result<(), JailError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(JailError::Policy {
            field: "cgroup name".into(),
            why: format!("{name:?} must be 1-200 characters of [A-Za-z0-9._-], not . or .."),
        })
    }
}

/// Why limits cannot be enforced, and what the host's owner can do about it.
#[derive(Clone, Debug)]
struct Refusal {
    why: String,
    fix: String,
}

impl Refusal {
    fn new(why: impl Into<String>, fix: impl Into<String>) -> Refusal {
        Refusal {
            why: why.into(),
            fix: fix.into(),
        }
    }

    fn into_error(self) -> JailError {
        JailError::Unavailable {
            layer: "cgroup",
            why: self.why,
            fix: self.fix,
        }
    }
}

/// The last resort every fix text offers.
const WEAK: &str = "or accept rlimit-only limits explicitly with --weak-limits";

/// Where the host's cgroups are and where this process sits in them.
#[derive(Clone, Debug, Default)]
struct Layout {
    /// The cgroup2 mount (with or without controllers).
    v2: Option<CgroupMount>,
    /// One mount per v1 hierarchy that carries controllers.
    v1: Vec<CgroupMount>,
    membership: Vec<Membership>,
}

impl Layout {
    fn from_text(mountinfo: &str, proc_cgroup: &str) -> Layout {
        let mounts = parse::mountinfo(mountinfo);
        let membership = parse::proc_cgroup(proc_cgroup);
        let mut layout = Layout {
            v2: None,
            v1: Vec::new(),
            membership,
        };
        // A hierarchy may be mounted more than once (bind mounts, containers): prefer the mount
        // through which our own cgroup is visible, then the conventional places.
        let score = |l: &Layout, m: &CgroupMount| {
            let visible = l.own_dir(m).is_some();
            let conventional = m.mount_point.starts_with("/sys/fs/cgroup");
            (visible, conventional, m.root == "/")
        };
        for m in &mounts {
            if m.v2 {
                if layout
                    .v2
                    .as_ref()
                    .is_none_or(|old| score(&layout, m) > score(&layout, old))
                {
                    layout.v2 = Some(m.clone());
                }
            } else if !m.controllers.is_empty() {
                match layout
                    .v1
                    .iter()
                    .position(|old| old.controllers == m.controllers)
                {
                    None => layout.v1.push(m.clone()),
                    Some(i) => {
                        if score(&layout, m) > score(&layout, &layout.v1[i]) {
                            layout.v1[i] = m.clone();
                        }
                    }
                }
            }
        }
        layout
    }

    fn read() -> Layout {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let cgroup = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Layout::from_text(&mountinfo, &cgroup)
    }

    /// The v1 hierarchy carrying `controller`.
    fn hierarchy(&self, controller: &str) -> Option<&CgroupMount> {
        self.v1
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == controller))
    }

    /// Our own cgroup on `mount`'s hierarchy, as written in `/proc/self/cgroup`.
    fn own_path(&self, mount: &CgroupMount) -> Option<&str> {
        self.membership
            .iter()
            .find(|l| {
                if mount.v2 {
                    l.id == 0 && l.controllers.is_empty()
                } else {
                    l.controllers == mount.controllers
                }
            })
            .map(|l| l.path.as_str())
    }

    /// The directory of our own cgroup on `mount`, when the mount shows it.
    fn own_dir(&self, mount: &CgroupMount) -> Option<PathBuf> {
        mount.dir_of(self.own_path(mount)?)
    }
}

/// Everything resolution depends on, gathered once so that tests can vary it.
#[derive(Clone, Debug)]
struct Host {
    layout: Layout,
    /// `AIRLOCK_CGROUP_PARENT`, when set and not empty.
    env: Option<String>,
    euid: Option<u32>,
    /// Swap is on, so a run could escape its memory limit into swap unless swap is accounted.
    swap_active: bool,
}

impl Host {
    fn current() -> Host {
        Host::with_env(env_parent())
    }

    fn with_env(env: Option<String>) -> Host {
        Host {
            layout: Layout::read(),
            env,
            euid: Some(crate::sys::geteuid()),
            swap_active: parse::swap_active(&fs::read_to_string("/proc/swaps").unwrap_or_default()),
        }
    }

    fn privileged(&self) -> bool {
        self.euid == Some(0)
    }

    fn v2_controllers(&self) -> Vec<String> {
        self.layout
            .v2
            .as_ref()
            .and_then(|m| read(&m.mount_point.join("cgroup.controllers")))
            .map(|t| parse::words(&t))
            .unwrap_or_default()
    }

    /// Whether we may write `path`, predicted from its mode and owner (probe must not write).
    fn may_write(&self, path: &Path) -> bool {
        let Ok(md) = fs::metadata(path) else {
            return false;
        };
        match self.euid {
            Some(0) => true,
            Some(uid) => (md.uid() == uid && md.mode() & 0o200 != 0) || md.mode() & 0o002 != 0,
            None => false,
        }
    }
}

/// The version to use: v2 when its hierarchy has the memory and pids controllers, else v1 when
/// its hierarchies have them (hybrid hosts bind them to v1 and leave cgroup2 without).
fn choose(layout: &Layout, v2_controllers: &[String]) -> Option<Version> {
    let v2_has = |c: &str| v2_controllers.iter().any(|x| x == c);
    if layout.v2.is_some() && v2_has("memory") && v2_has("pids") {
        Some(Version::V2)
    } else if layout.hierarchy("memory").is_some() && layout.hierarchy("pids").is_some() {
        Some(Version::V1)
    } else {
        None
    }
}

/// Where runs go, resolved.
#[derive(Debug)]
enum Parent {
    V1(v1::Parent),
    V2(v2::Parent),
}

impl Parent {
    fn dirs(&self) -> Vec<PathBuf> {
        match self {
            Parent::V1(p) => p.dirs(),
            Parent::V2(p) => vec![p.dir.clone()],
        }
    }

    fn has_cpu(&self) -> bool {
        match self {
            Parent::V1(p) => p.cpu.is_some(),
            Parent::V2(p) => p.cpu,
        }
    }

    fn limits_swap(&self) -> bool {
        match self {
            Parent::V1(p) => p.memory.join("memory.memsw.limit_in_bytes").exists(),
            Parent::V2(p) => p.dir.join("memory.swap.max").exists(),
        }
    }
}

/// Finds (and with `apply`, creates and prepares) the parent of runs. Without `apply` nothing is
/// written: the answer is a prediction, for [`probe`] and [`cleanup_stale`].
fn resolve(host: &Host, apply: bool) -> Result<Parent, Refusal> {
    let v2_controllers = host.v2_controllers();
    match (choose(&host.layout, &v2_controllers), &host.layout.v2) {
        (Some(Version::V2), Some(mount)) => {
            v2::resolve(host, mount, &v2_controllers, apply).map(Parent::V2)
        }
        (Some(Version::V1), _) => v1::resolve(host, apply).map(Parent::V1),
        _ => Err(no_controllers(host, &v2_controllers)),
    }
}

/// The refusal for a host where neither version has memory and pids controllers.
fn no_controllers(host: &Host, v2_controllers: &[String]) -> Refusal {
    let l = &host.layout;
    if l.v2.is_none() && l.v1.is_empty() {
        return Refusal::new(
            "no cgroup filesystem is mounted (nothing of type cgroup or cgroup2 in \
             /proc/self/mountinfo)",
            format!(
                "mount it (`mount -t cgroup2 none /sys/fs/cgroup`); in a container, run it with \
                 a cgroup mount (e.g. docker/podman default, or --cgroupns=private); {WEAK}"
            ),
        );
    }
    let mut missing = Vec::new();
    for c in ["memory", "pids"] {
        if !v2_controllers.iter().any(|x| x == c) && l.hierarchy(c).is_none() {
            missing.push(c);
        }
    }
    Refusal::new(
        format!(
            "the {} controller(s) are available neither on cgroup v2 ({}: {:?}) nor as a v1 \
             hierarchy",
            missing.join(" and "),
            l.v2.as_ref().map_or("not mounted".into(), |m| m
                .mount_point
                .display()
                .to_string()),
            v2_controllers
        ),
        format!(
            "enable them in the kernel (CONFIG_MEMCG, CONFIG_CGROUP_PIDS; boot without \
             cgroup_disable=memory); in a container, have the runtime delegate them; {WEAK}"
        ),
    )
}

/// The parent named by `AIRLOCK_CGROUP_PARENT=rel` on the hierarchy mounted at `mount`.
fn env_dir(host: &Host, mount: &CgroupMount, rel: &str) -> Result<PathBuf, Refusal> {
    let trimmed = rel.trim_matches('/');
    if trimmed.split('/').any(|c| c == "." || c == "..") {
        return Err(Refusal::new(
            format!("{PARENT_ENV}={rel:?} contains `.` or `..` components"),
            format!(
                "give the parent as a plain path relative to the cgroup mount {}, e.g. \
                 {PARENT_ENV}=airlock-$USER",
                mount.mount_point.display()
            ),
        ));
    }
    let dir = if trimmed.is_empty() {
        mount.mount_point.clone()
    } else {
        mount.mount_point.join(trimmed)
    };
    if !dir.is_dir() {
        return Err(Refusal::new(
            format!(
                "{PARENT_ENV}={rel:?} names {}, which does not exist",
                dir.display()
            ),
            format!(
                "create and delegate it (as root: mkdir -p {d} && chown -R $USER {d}, on v1 in \
                 every controller's hierarchy), or correct {PARENT_ENV} (it is relative to the \
                 cgroup mount {m}); {WEAK}",
                d = dir.display(),
                m = mount.mount_point.display()
            ),
        ));
    }
    if mount.read_only || !host.may_write(&dir) {
        return Err(Refusal::new(
            format!(
                "{PARENT_ENV}={rel:?} names {}, which uid {} cannot write{}",
                dir.display(),
                host.euid.map_or("?".into(), |u| u.to_string()),
                if mount.read_only {
                    " (the cgroup filesystem is mounted read-only)"
                } else {
                    ""
                }
            ),
            format!(
                "delegate it to this user (as root: chown -R $USER {}); {WEAK}",
                dir.display()
            ),
        ));
    }
    Ok(dir)
}

/// The parent, resolved once per process (and again when `AIRLOCK_CGROUP_PARENT` changes or a
/// parent directory disappears): resolution may create directories and enable controllers,
/// which need not be repeated for each of hundreds of runs per second, and the lock serializes
/// the first runs so that they do not race doing it.
fn resolved_parent() -> Result<Arc<Parent>, JailError> {
    let env = env_parent();
    let mut cache = PARENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((cached_env, parent)) = &*cache
        && *cached_env == env
        && parent.dirs().iter().all(|d| d.is_dir())
    {
        return Ok(Arc::clone(parent));
    }
    let host = Probed::take(&env).unwrap_or_else(|| Host::with_env(env));
    let parent = Arc::new(resolve(&host, true).map_err(Refusal::into_error)?);
    *cache = Some((host.env.clone(), Arc::clone(&parent)));
    Ok(parent)
}

/// The host as [`Cgroup::clones_into`] just read it, for the `create` of the same spawn that
/// follows on the same thread (before the clone on v2, after it on v1): reading the host's
/// cgroup files twice costs a quarter of a millisecond of a cold start. Per thread, so no spawn
/// takes another's; taken once, and only while fresh, so that no long-lived supervisor
/// resolves with an old view of the host (swap turned on since, say).
struct Probed;

thread_local! {
    static PROBED: std::cell::RefCell<Option<(Instant, Host)>> =
        const { std::cell::RefCell::new(None) };
}

impl Probed {
    /// Longer than any spawn takes between its probe and its `create`.
    const FRESH: Duration = Duration::from_secs(1);

    fn keep(host: Host) {
        PROBED.with(|p| *p.borrow_mut() = Some((Instant::now(), host)));
    }

    fn take(env: &Option<String>) -> Option<Host> {
        let (at, host) = PROBED.with(|p| p.borrow_mut().take())?;
        Probed::usable(at.elapsed(), &host.env, env).then_some(host)
    }

    /// Whether a probe `age` old, made for `AIRLOCK_CGROUP_PARENT` `made_for`, may stand in
    /// for reading the host now, with `now` set.
    fn usable(age: Duration, made_for: &Option<String>, now: &Option<String>) -> bool {
        age < Probed::FRESH && made_for == now
    }
}

/// The parent [`resolved_parent`] last resolved, with the `AIRLOCK_CGROUP_PARENT` it was for.
static PARENT: Mutex<Option<(Option<String>, Arc<Parent>)>> = Mutex::new(None);

/// The parent of runs, without creating anything: the one this process resolved (reading the
/// host again costs more than the cleanup it serves), else a prediction.
fn known_parent() -> Option<Arc<Parent>> {
    let env = env_parent();
    if let Some((cached_env, parent)) = &*PARENT.lock().unwrap_or_else(|p| p.into_inner())
        && *cached_env == env
    {
        return Some(Arc::clone(parent));
    }
    resolve(&Host::with_env(env), false).ok().map(Arc::new)
}

/// Removes airlock's own parent cgroups if no run is using them, so an idle supervisor leaves
/// nothing behind (a parent below our own cgroup would otherwise keep that cgroup busy). A
/// delegated `AIRLOCK_CGROUP_PARENT` is the administrator's and is never removed. The next
/// `create` makes the parents again.
pub fn release_parents() {
    if env_parent().is_some() {
        return;
    }
    if let Some(parent) = known_parent() {
        for dir in parent.dirs() {
            // Fails with EBUSY while another run is inside: exactly when it must stay.
            let _ = fs::remove_dir(dir);
        }
    }
}

/// `AIRLOCK_CGROUP_PARENT`, when set and not empty.
fn env_parent() -> Option<String> {
    std::env::var_os(PARENT_ENV)
        .map(|v| v.to_string_lossy().into_owned())
        .filter(|v| !v.is_empty())
}

fn read(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

fn read_pids(dir: &Path) -> Vec<i32> {
    read(&dir.join("cgroup.procs"))
        .map(|t| parse::pids(&t))
        .unwrap_or_default()
}

fn read_number(path: &Path) -> Option<u64> {
    parse::number(&read(path)?)
}

/// Writes `value` to a cgroup control file in one `write(2)`: cgroupfs takes each write as one
/// command, and the file exists already (no create, no truncate).
fn write_file(path: &Path, value: &str) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

/// Creates a run's directory; the error says whether that is a host limitation (Unavailable) or
/// an operational failure.
fn make_run_dir(dir: &Path) -> Result<(), JailError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if is_denied(&e) => Err(Refusal::new(
            format!("cannot create cgroup {}: {e}", dir.display()),
            format!(
                "run airlock as root, or delegate the parent to this user (chown -R $USER {}) \
                 and set {PARENT_ENV}; {WEAK}",
                dir.parent().unwrap_or(dir).display()
            ),
        )
        .into_error()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(JailError::host(
            format!(
                "creating cgroup {}: the name is taken; each run needs a unique name",
                dir.display()
            ),
            e,
        )),
        Err(e) => Err(JailError::host(
            format!("creating cgroup {}", dir.display()),
            e,
        )),
    }
}

/// Writes one limit of a fresh run cgroup. A file we may not write or that does not exist (the
/// controller is not enabled) means the limit cannot be enforced: Unavailable.
fn write_limit(dir: &Path, file: &str, value: &str) -> Result<(), JailError> {
    let path = dir.join(file);
    write_file(&path, value).map_err(|e| {
        if is_denied(&e) || e.kind() == io::ErrorKind::NotFound {
            Refusal::new(
                format!("cannot set {} to {value}: {e}", path.display()),
                format!(
                    "make sure the controller is enabled for airlock's parent ({}) and that it \
                     is writable by this user; {WEAK}",
                    dir.parent().unwrap_or(dir).display()
                ),
            )
            .into_error()
        } else {
            JailError::host(format!("setting {} to {value}", path.display()), e)
        }
    })
}

/// Removes directories created for a run that then failed to be set up.
fn remove_dirs(dirs: &[PathBuf]) {
    for d in dirs {
        if let Err(e) = fs::remove_dir(d) {
            tracing::warn!("cannot remove half-made cgroup {}: {e}", d.display());
        }
    }
}

fn is_denied(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::EROFS)
}
