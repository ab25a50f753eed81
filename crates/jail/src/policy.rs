//! What a sandbox may see and use. A `Policy` is plain data: building one never touches the host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::JailError;

/// How a host path appears inside the sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Path on the host. Must exist and be absolute.
    pub source: PathBuf,
    /// Absolute path inside the sandbox.
    pub target: PathBuf,
    /// Writable inside the sandbox. Read-only binds are also `nosuid`, `nodev`.
    pub writable: bool,
}

impl Mount {
    pub fn read_only(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Mount {
        Mount {
            source: source.into(),
            target: target.into(),
            writable: false,
        }
    }
    pub fn read_write(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Mount {
        Mount {
            source: source.into(),
            target: target.into(),
            writable: true,
        }
    }
    /// The same path on both sides, read-only.
    pub fn same(path: impl Into<PathBuf>) -> Mount {
        let p = path.into();
        Mount::read_only(p.clone(), p)
    }
}

/// A file synthesized into the sandbox's read-only root (for example the program to run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    /// Absolute path inside the sandbox; parents are created.
    pub target: PathBuf,
    pub contents: Vec<u8>,
    /// Unix permission bits.
    pub mode: u32,
}

/// Which network the sandbox lives in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// A fresh network namespace holding only its own loopback, brought up.
    #[default]
    None,
    /// The host's network namespace. Weaker: documented as an explicit opt-in.
    Host,
}

/// Resource limits. Memory, pids and CPU are enforced by a cgroup; the rest by rlimits and the
/// supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Memory in bytes (cgroup memory limit, swap 0).
    pub memory_bytes: u64,
    /// Maximum number of tasks (cgroup pids limit).
    pub pids: u64,
    /// CPU quota in millicores (1000 = one core).
    pub cpu_millis: u64,
    /// Wall-clock timeout; at expiry the whole tree is killed.
    pub wall_timeout: Duration,
    /// RLIMIT_CPU in seconds (0 = derived from the wall timeout).
    pub cpu_seconds: u64,
    /// RLIMIT_NOFILE.
    pub open_files: u64,
    /// RLIMIT_DATA in bytes, if set: an allocation beyond it fails inside the program (Python's
    /// `MemoryError`) instead of meeting the cgroup's OOM kill.
    pub data_bytes: Option<u64>,
    /// RLIMIT_FSIZE in bytes: the largest file the program may write.
    pub file_size_bytes: u64,
    /// Captured bytes of stdout; beyond it output is drained and dropped, and flagged.
    pub stdout_bytes: usize,
    /// Captured bytes of stderr.
    pub stderr_bytes: usize,
    /// Size of the `/tmp` tmpfs in bytes.
    pub tmp_bytes: u64,
    /// Size of the `/workspace` tmpfs in bytes (when it is not a host bind).
    pub workspace_bytes: u64,
    /// Size of the `/dev/shm` tmpfs in bytes.
    pub shm_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        const MIB: u64 = 1 << 20;
        Limits {
            memory_bytes: 512 * MIB,
            pids: 256,
            cpu_millis: 1000,
            wall_timeout: Duration::from_secs(30),
            cpu_seconds: 0,
            open_files: 1024,
            data_bytes: None,
            file_size_bytes: 1024 * MIB,
            stdout_bytes: 1 << 20,
            stderr_bytes: 1 << 20,
            tmp_bytes: 256 * MIB,
            workspace_bytes: 256 * MIB,
            shm_bytes: 64 * MIB,
        }
    }
}

impl Limits {
    /// The RLIMIT_CPU a run gets: `cpu_seconds`, or the wall timeout plus 2 s.
    pub fn cpu_rlimit(&self) -> u64 {
        match self.cpu_seconds {
            0 => self.wall_timeout.as_secs() + 2,
            s => s,
        }
    }
}

/// What to do when cgroup limits (memory, pids, CPU) cannot be enforced on this host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CgroupMode {
    /// Refuse to run (fail closed).
    #[default]
    Required,
    /// Explicit opt-in to a weaker profile: run with rlimits only (RLIMIT_DATA for memory, no
    /// pids or CPU quota) when no cgroup can be created.
    BestEffort,
}

/// Everything the jail needs to start one isolated child.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Read-only or read-write binds of host paths.
    pub mounts: Vec<Mount>,
    /// Files synthesized into the read-only root.
    pub files: Vec<File>,
    /// A host directory bound read-write at `/workspace`; `None` means a private tmpfs.
    pub workspace: Option<PathBuf>,
    /// Working directory inside the sandbox (default `/workspace`).
    pub cwd: PathBuf,
    /// The complete environment of the program. Nothing of the host's is added.
    pub env: BTreeMap<String, String>,
    pub hostname: String,
    pub network: Network,
    /// With `Network::None`: a TCP listener on 127.0.0.1:PORT inside the sandbox, created by the
    /// jail and handed to the supervisor (`Sandbox::take_listener`). That is how a host-side proxy
    /// serves the sandbox while the sandbox still has no route out of its namespace.
    pub loopback_listener: Option<u16>,
    pub limits: Limits,
    pub cgroup: CgroupMode,
    /// As root: the host uid/gid the sandbox user maps to, instead of a fresh per-run one —
    /// for work whose files later runs must own alike (say, a package installer's cache). Never
    /// 0. Ignored when the supervisor is not root (the sandbox is then that user).
    pub host_id: Option<u32>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mounts: Vec::new(),
            files: Vec::new(),
            workspace: None,
            cwd: PathBuf::from("/workspace"),
            env: BTreeMap::new(),
            hostname: "sandbox".into(),
            network: Network::None,
            loopback_listener: None,
            limits: Limits::default(),
            cgroup: CgroupMode::Required,
            host_id: None,
        }
    }
}

/// The uid and gid the program runs as inside the sandbox. Never 0.
pub const SANDBOX_UID: u32 = 1000;
pub const SANDBOX_GID: u32 = 1000;
/// The sandbox user's name in the synthesized `/etc/passwd`.
pub const SANDBOX_USER: &str = "sandbox";

/// Paths inside the sandbox that the jail builds itself and that no bind may cover.
const RESERVED: &[&str] = &[
    "/",
    "/proc",
    "/dev",
    "/tmp",
    "/workspace",
    "/etc",
    "/airlock",
];

impl Policy {
    /// Checks the policy without touching the host beyond `stat`ing mount sources.
    pub fn validate(&self) -> Result<(), JailError> {
        let bad = |field: &str, why: String| {
            Err(JailError::Policy {
                field: field.into(),
                why,
            })
        };
        for m in &self.mounts {
            if !m.source.is_absolute() {
                return bad(
                    "mounts.source",
                    format!("{} is not an absolute path", m.source.display()),
                );
            }
            if !m.target.is_absolute() || has_dot_components(&m.target) {
                return bad(
                    "mounts.target",
                    format!(
                        "{} must be absolute, without `.` or `..`",
                        m.target.display()
                    ),
                );
            }
            if RESERVED.iter().any(|r| Path::new(r) == m.target) {
                return bad(
                    "mounts.target",
                    format!(
                        "{} is built by the sandbox itself and cannot be replaced",
                        m.target.display()
                    ),
                );
            }
            // Those are mounted after the binds and would hide them.
            if ["/proc", "/dev", "/tmp", "/workspace"]
                .iter()
                .any(|r| m.target.starts_with(r))
            {
                return bad(
                    "mounts.target",
                    format!(
                        "{} is inside /proc, /dev, /tmp or /workspace",
                        m.target.display()
                    ),
                );
            }
            // The jail writes its files (the program) there after the binds: through a
            // writable bind they would land on the host.
            if m.writable && m.target.starts_with("/airlock") {
                return bad(
                    "mounts.target",
                    format!(
                        "{} is inside /airlock, which is read-only",
                        m.target.display()
                    ),
                );
            }
            if let Some(f) = self.files.iter().find(|f| f.target.starts_with(&m.target)) {
                return bad(
                    "mounts.target",
                    format!(
                        "{} would cover the sandbox's own file {}",
                        m.target.display(),
                        f.target.display()
                    ),
                );
            }
            // Its mount point would be created through a directory the sandbox can change.
            if self
                .mounts
                .iter()
                .any(|o| o.writable && o.target != m.target && m.target.starts_with(&o.target))
            {
                return bad(
                    "mounts.target",
                    format!(
                        "{} lies inside a read-write bind; mount it elsewhere",
                        m.target.display()
                    ),
                );
            }
            if !m.source.exists() {
                return bad(
                    "mounts.source",
                    format!("{} does not exist on the host", m.source.display()),
                );
            }
        }
        for f in &self.files {
            if f.target.starts_with("/proc") || f.target.starts_with("/dev") {
                return bad(
                    "files.target",
                    format!("{} is inside /proc or /dev", f.target.display()),
                );
            }
            if self.workspace.is_some() && f.target.starts_with("/workspace") {
                return bad(
                    "files.target",
                    format!(
                        "{} would be written into the host's workspace directory",
                        f.target.display()
                    ),
                );
            }
            if !f.target.is_absolute()
                || has_dot_components(&f.target)
                || f.target.parent().is_none()
            {
                return bad(
                    "files.target",
                    format!("{} must be an absolute file path", f.target.display()),
                );
            }
        }
        if let Some(ws) = &self.workspace
            && (!ws.is_absolute() || !ws.is_dir())
        {
            return bad(
                "workspace",
                format!("{} is not an existing absolute directory", ws.display()),
            );
        }
        if !self.cwd.is_absolute() || has_dot_components(&self.cwd) {
            return bad("cwd", format!("{} must be absolute", self.cwd.display()));
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return bad("env", format!("{k:?} is not a valid environment variable"));
            }
        }
        match (self.loopback_listener, self.network) {
            (Some(0), _) => return bad("loopback_listener", "port 0 is not a port".into()),
            (Some(_), Network::Host) => {
                return bad(
                    "loopback_listener",
                    "needs network None (its own loopback)".into(),
                );
            }
            _ => {}
        }
        if self.host_id == Some(0) {
            return bad("host_id", "the sandbox never maps to host root".into());
        }
        let h = &self.hostname;
        if h.is_empty()
            || h.len() > 64
            || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("hostname", format!("{h:?} is not a valid hostname"));
        }
        let l = &self.limits;
        if l.memory_bytes < (16 << 20) {
            return bad("limits.memory_bytes", "must be at least 16 MiB".into());
        }
        if l.pids == 0 {
            return bad("limits.pids", "must be at least 1".into());
        }
        if l.cpu_millis == 0 {
            return bad("limits.cpu_millis", "must be above 0".into());
        }
        if l.wall_timeout.is_zero() {
            return bad("limits.wall_timeout", "must be above 0".into());
        }
        if l.open_files < 16 {
            return bad("limits.open_files", "must be at least 16".into());
        }
        Ok(())
    }
}

fn has_dot_components(p: &Path) -> bool {
    p.components().any(|c| {
        matches!(
            c,
            std::path::Component::CurDir | std::path::Component::ParentDir
        )
    })
}
