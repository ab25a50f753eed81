//! A run request and its validation. Every limit is checked against DESIGN §7's ranges and
//! every error names the field.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use crate::diagnose::Language;
use crate::error::RuntimeError;

pub const MAX_CODE_BYTES: usize = 10 << 20;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// No network but the sandbox's own loopback.
    #[default]
    None,
    /// The host's network: an explicit, weaker opt-in.
    Host,
    /// Only `RunRequest::allowed_domains`, over HTTP(S) through a host-side proxy (see
    /// `network`). No domains means `None`.
    Allowlist,
}

impl NetworkMode {
    pub fn parse(s: &str) -> Result<NetworkMode, RuntimeError> {
        match s {
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            "allowlist" => Ok(NetworkMode::Allowlist),
            other => Err(RuntimeError::invalid(
                "network",
                format!("{other:?} is not one of none, allowlist, host"),
            )),
        }
    }
}

/// `SRC:DST[:ro|rw]`: a host path bound into the sandbox (read-only unless `rw`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSpec {
    pub source: PathBuf,
    pub target: PathBuf,
    pub writable: bool,
}

impl MountSpec {
    pub fn parse(spec: &str) -> Result<MountSpec, RuntimeError> {
        let bad = |why: &str| {
            RuntimeError::invalid(
                "mount",
                format!("{spec:?}: {why} (expected SRC:DST[:ro|rw])"),
            )
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let (src, dst, writable) = match parts.as_slice() {
            [s, d] => (*s, *d, false),
            [s, d, "ro"] => (*s, *d, false),
            [s, d, "rw"] => (*s, *d, true),
            [_, _, m] => return Err(bad(&format!("mode {m:?} is not ro or rw"))),
            _ => return Err(bad("wrong number of `:`-separated parts")),
        };
        if src.is_empty() || dst.is_empty() {
            return Err(bad("empty path"));
        }
        let source = resolve_host_path(std::path::Path::new(src))
            .map_err(|e| bad(&format!("source {src}: {e}")))?;
        let target = PathBuf::from(dst);
        if !target.is_absolute() {
            return Err(bad(
                "the destination must be an absolute path inside the sandbox",
            ));
        }
        Ok(MountSpec {
            source,
            target,
            writable,
        })
    }
}

/// The real path of a host path the caller wants bound in, following only symlinks owned by
/// root. A symlink owned by anyone else may have been planted by an earlier sandbox through a
/// read-write bind (a sandbox runs as its caller's uid when the caller is not root), so
/// following it could bind whatever it points at — the caller's `~/.ssh`, say.
pub fn resolve_host_path(path: &std::path::Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::MetadataExt;
    let abs = std::path::absolute(path).map_err(|e| e.to_string())?;
    let mut real = PathBuf::from("/");
    for part in abs.components().skip(1) {
        match part {
            std::path::Component::ParentDir => {
                real.pop();
                continue;
            }
            std::path::Component::CurDir => continue,
            _ => {}
        }
        let next = real.join(part);
        let meta =
            std::fs::symlink_metadata(&next).map_err(|e| format!("{}: {e}", next.display()))?;
        if meta.file_type().is_symlink() {
            if meta.uid() != 0 {
                return Err(format!(
                    "{} is a symlink owned by uid {} (a sandbox may have planted it); give the real path",
                    next.display(),
                    meta.uid()
                ));
            }
            real = std::fs::canonicalize(&next).map_err(|e| format!("{}: {e}", next.display()))?;
        } else {
            real = next;
        }
    }
    Ok(real)
}

/// One run: code, language and limits. `Default` gives DESIGN §7's defaults.
#[derive(Clone, Debug)]
pub struct RunRequest {
    pub code: Vec<u8>,
    pub language: Language,
    pub timeout: Duration,
    pub memory_mb: u64,
    pub pids: u64,
    /// CPU quota in cores (fractions allowed).
    pub cpus: f64,
    pub network: NetworkMode,
    /// Under `NetworkMode::Allowlist`: the names the sandbox may reach (exact or `*.suffix`).
    pub allowed_domains: Vec<String>,
    /// Under `NetworkMode::Allowlist`: explicit opt-in to names that resolve to private,
    /// loopback, link-local or carrier-grade NAT addresses (cloud metadata stays refused).
    pub allow_private: bool,
    /// Under `NetworkMode::Allowlist`: fixed addresses for names (like curl's `--resolve`),
    /// used instead of the host's resolver. The address checks still apply to them.
    pub pinned_hosts: BTreeMap<String, Vec<std::net::IpAddr>>,
    pub mounts: Vec<MountSpec>,
    /// A host directory bound read-write at `/workspace` instead of a private tmpfs.
    pub workdir: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub stdout_limit: usize,
    pub stderr_limit: usize,
    pub tmp_mb: u64,
    /// Explicit opt-in: run with rlimit-only limits where no cgroup can be had.
    pub weak_limits: bool,
    /// Packages for the run: pip requirement specifiers (Python) or npm specs (JavaScript),
    /// installed once per set into a cached environment mounted read-only (DESIGN §5).
    /// Unpinned specs work but are cache-unfriendly: the environment keeps whatever version
    /// was newest when it was built, until it is pruned.
    pub packages: Vec<String>,
    /// Explicit opt-in: accept URLs, local paths and VCS references among `packages`.
    /// Installer options (`--index-url`, `-e`, `-r`) are refused even then.
    pub allow_unsafe_specs: bool,
    /// Explicit opt-in, Python only: the packages are trusted, so a warm pool may import them
    /// once in a zygote that forks every run of this environment (DESIGN §4), instead of in a
    /// use-once sandbox per run. Their import-time code then runs in a process that passes
    /// every such run its descriptors: a malicious package could carry data between runs of
    /// the same environment. Without it, packages are imported in each run's own sandbox.
    pub trust_packages: bool,
    /// Where environments are stored and which index or mirror installs use.
    pub package_config: crate::environment::PackageConfig,
    /// Files placed in `/workspace` before the code runs: a path relative to `/workspace`,
    /// and the contents. Not with `workdir` (that directory is the host's).
    pub files: Vec<(String, Vec<u8>)>,
    /// A private result channel: the program finds a descriptor number in `AIRLOCK_RESULT_FD`,
    /// and what it writes there (up to `RESULT_LIMIT` bytes) comes back as `RunResult::result`.
    pub result_channel: bool,
}

/// Most bytes a run may send back over its result channel.
pub const RESULT_LIMIT: usize = 256 << 20;
/// Most bytes of input files per run.
pub const MAX_FILES_BYTES: usize = 64 << 20;

impl Default for RunRequest {
    fn default() -> Self {
        RunRequest {
            code: Vec::new(),
            language: Language::Python,
            timeout: Duration::from_secs(30),
            memory_mb: 512,
            pids: 256,
            cpus: 1.0,
            network: NetworkMode::None,
            allowed_domains: Vec::new(),
            allow_private: false,
            pinned_hosts: BTreeMap::new(),
            mounts: Vec::new(),
            workdir: None,
            env: BTreeMap::new(),
            stdout_limit: 1 << 20,
            stderr_limit: 1 << 20,
            tmp_mb: 256,
            weak_limits: false,
            packages: Vec::new(),
            allow_unsafe_specs: false,
            trust_packages: false,
            package_config: Default::default(),
            files: Vec::new(),
            result_channel: false,
        }
    }
}

/// Environment names refused because they change how an interpreter or the loader starts.
const FORBIDDEN_ENV: &[&str] = &[
    "GLIBC_TUNABLES",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PYTHONINSPECT",
    "PYTHONEXECUTABLE",
    "NODE_OPTIONS",
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
];
const FORBIDDEN_ENV_PREFIXES: &[&str] = &["LD_", "BASH_FUNC_", "MALLOC_"];

pub(crate) fn check_env_name(name: &str) -> Result<(), RuntimeError> {
    let valid = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !valid {
        return Err(RuntimeError::invalid(
            "env",
            format!("{name:?} is not a valid variable name"),
        ));
    }
    if FORBIDDEN_ENV.contains(&name) || FORBIDDEN_ENV_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Err(RuntimeError::invalid(
            "env",
            format!("{name} is refused: it changes how the interpreter or the loader starts"),
        ));
    }
    Ok(())
}

/// The host's memory, read once: every run is validated against it, and a warm run need not
/// read `/proc/meminfo` on its way.
fn host_memory_mb() -> u64 {
    static MB: OnceLock<u64> = OnceLock::new();
    *MB.get_or_init(|| {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(u64::MAX, |kb| kb / 1024)
    })
}

/// The cores this process may use.
fn host_cores() -> f64 {
    jail::probe::cores() as f64
}

impl RunRequest {
    /// Checks every field, naming the first that is wrong.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        if self.code.is_empty() {
            return Err(RuntimeError::invalid("code", "is empty"));
        }
        if self.code.len() > MAX_CODE_BYTES {
            return Err(RuntimeError::invalid(
                "code",
                format!(
                    "is {} bytes; the limit is {MAX_CODE_BYTES} (10 MiB)",
                    self.code.len()
                ),
            ));
        }
        if self.code.contains(&0) {
            return Err(RuntimeError::invalid("code", "contains a NUL byte"));
        }
        self.validate_shape()
    }

    /// Checks every field but the code: what a pool template (`Scheduler::prewarm`) has.
    pub fn validate_shape(&self) -> Result<(), RuntimeError> {
        let t = self.timeout.as_secs_f64();
        if !(0.1..=3600.0).contains(&t) {
            return Err(RuntimeError::invalid(
                "timeout",
                format!("{t} s is outside 0.1–3600 s"),
            ));
        }
        let host_mb = host_memory_mb();
        if self.memory_mb < 32 || self.memory_mb > host_mb {
            return Err(RuntimeError::invalid(
                "memory",
                format!(
                    "{} MiB is outside 32 MiB – {host_mb} MiB (this host)",
                    self.memory_mb
                ),
            ));
        }
        if !(1..=32768).contains(&self.pids) {
            return Err(RuntimeError::invalid(
                "pids",
                format!("{} is outside 1–32768", self.pids),
            ));
        }
        let cores = host_cores();
        if !(self.cpus > 0.0 && self.cpus <= cores) || self.cpus * 1000.0 < 1.0 {
            return Err(RuntimeError::invalid(
                "cpus",
                format!("{} is outside (0, {cores}] cores (this host)", self.cpus),
            ));
        }
        if self.tmp_mb == 0 {
            return Err(RuntimeError::invalid("tmp", "must be at least 1 MiB"));
        }
        crate::network::check_request(self)?;
        let mut total = 0;
        for (path, contents) in &self.files {
            let p = std::path::Path::new(path);
            let clean = !path.is_empty()
                && p.is_relative()
                && p.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
                && !path.contains('\0');
            if !clean {
                return Err(RuntimeError::invalid(
                    "files",
                    format!("{path:?} must be a relative path inside /workspace, without `..`"),
                ));
            }
            total += contents.len();
        }
        if total > MAX_FILES_BYTES {
            return Err(RuntimeError::invalid(
                "files",
                format!("{total} bytes; the limit is {MAX_FILES_BYTES}"),
            ));
        }
        if !self.files.is_empty() && self.workdir.is_some() {
            return Err(RuntimeError::invalid(
                "files",
                "cannot be combined with workdir (a host directory)",
            ));
        }
        for name in self.env.keys() {
            check_env_name(name)?;
        }
        for (k, v) in &self.env {
            if v.contains('\0') {
                return Err(RuntimeError::invalid(
                    "env",
                    format!("the value of {k} contains a NUL byte"),
                ));
            }
        }
        if let Some(w) = &self.workdir
            && !w.is_dir()
        {
            return Err(RuntimeError::invalid(
                "workdir",
                format!("{} is not a directory", w.display()),
            ));
        }
        for m in &self.mounts {
            let inside_rw = |t: &PathBuf| {
                self.mounts
                    .iter()
                    .any(|o| o.writable && o.target != *t && t.starts_with(&o.target))
                    || (self.workdir.is_some() && t.starts_with("/workspace"))
            };
            if inside_rw(&m.target) {
                // Its mount point would be created through a directory the sandbox can change.
                return Err(RuntimeError::invalid(
                    "mount",
                    format!(
                        "{} lies inside a read-write bind; mount it elsewhere",
                        m.target.display()
                    ),
                ));
            }
            let env_mount = std::path::Path::new(crate::environment::ENV_MOUNT);
            if m.target.starts_with("/opt/airlock")
                || (!self.packages.is_empty() && env_mount.starts_with(&m.target))
            {
                return Err(RuntimeError::invalid(
                    "mount",
                    format!(
                        "{} would cover {}, where the run's packages are mounted",
                        m.target.display(),
                        env_mount.display()
                    ),
                ));
            }
        }
        crate::environment::spec::parse_all(
            self.language,
            &self.packages,
            self.allow_unsafe_specs,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> RunRequest {
        RunRequest {
            code: b"print(1)".to_vec(),
            ..RunRequest::default()
        }
    }

    fn field(r: RunRequest) -> String {
        match r.validate() {
            Err(RuntimeError::InvalidInput { field, .. }) => field,
            other => panic!("expected an invalid-input error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        req().validate().unwrap();
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(
            field(RunRequest {
                code: vec![],
                ..req()
            }),
            "code"
        );
        assert_eq!(
            field(RunRequest {
                code: vec![b'x'; MAX_CODE_BYTES + 1],
                ..req()
            }),
            "code"
        );
        assert_eq!(
            field(RunRequest {
                timeout: Duration::from_millis(50),
                ..req()
            }),
            "timeout"
        );
        assert_eq!(
            field(RunRequest {
                timeout: Duration::from_secs(3601),
                ..req()
            }),
            "timeout"
        );
        assert_eq!(
            field(RunRequest {
                memory_mb: 16,
                ..req()
            }),
            "memory"
        );
        assert_eq!(field(RunRequest { pids: 0, ..req() }), "pids");
        assert_eq!(
            field(RunRequest {
                pids: 40000,
                ..req()
            }),
            "pids"
        );
        assert_eq!(field(RunRequest { cpus: 0.0, ..req() }), "cpus");
        assert_eq!(
            field(RunRequest {
                cpus: 1000.0,
                ..req()
            }),
            "cpus"
        );
        for bad in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "PYTHONSTARTUP",
            "NODE_OPTIONS",
            "BASH_ENV",
            "GLIBC_TUNABLES",
            "1X",
            "A-B",
            "",
        ] {
            let mut r = req();
            r.env.insert(bad.into(), "x".into());
            assert_eq!(field(r), "env", "{bad}");
        }
    }

    #[test]
    fn mount_specs() {
        let m = MountSpec::parse("/usr/share:/data").unwrap();
        assert!(!m.writable);
        assert!(MountSpec::parse("/usr/share:/data:rw").unwrap().writable);
        for bad in [
            "/usr",
            "/usr:/a:rx",
            "/nonexistent-x:/a",
            "/usr:relative",
            ":/a",
        ] {
            assert!(
                matches!(
                    MountSpec::parse(bad),
                    Err(RuntimeError::InvalidInput { .. })
                ),
                "{bad}"
            );
        }
        assert!(NetworkMode::parse("bogus").is_err());
    }
}
