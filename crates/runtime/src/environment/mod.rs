//! Dependency environments (DESIGN §5): the packages a run names, installed once per key into a
//! store on the host and bound read-only into every run that asks for the same set.
//!
//! Layout under the store root (`AIRLOCK_HOME`, else `/var/cache/airlock` as root, else
//! `$XDG_CACHE_HOME/airlock` or `~/.cache/airlock`):
//!
//! ```text
//! envs/<key>/               a published environment (read-only, root-owned when root built it)
//! envs/.tmp-<key>-<rand>/   an install in progress, or the debris of one that failed or died
//! locks/<key>.lock          flock: exclusive to install or prune, shared while a run uses it
//! meta/<key>.json           specs, language, sizes, created and last-used times
//! cache/uv, cache/npm       the installers' download caches, shared by all installs
//! probes/                   interpreter and installer versions, cached by file identity
//! ```
//!
//! Why each piece: the key covers everything that changes what an install produces (specs,
//! interpreter, platform, installer), so an environment never serves a run it was not built
//! for. An install happens inside a sandbox because installing runs the packages' own build
//! code. It writes only a temporary directory that is published by one `rename`, so a reader
//! either sees a complete environment or none, and a failed or interrupted install leaves only
//! debris that the next builder of that key removes under the same lock.

mod install;
pub(crate) use install::INSTALL_OPEN_FILES;
mod node;
mod python;
pub(crate) mod spec;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jail::{Mount, Policy};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::diagnose::Language;
use crate::error::RuntimeError;
use crate::language::{self, Interpreter};
use crate::result::RunResult;

pub use spec::{MAX_PACKAGES, MAX_SPEC_LEN};

/// As root, installs run as this host uid/gid: one fixed identity (unlike the per-run uids,
/// from 1_500_000_000) so the installer caches it writes stay writable by the next install.
pub const INSTALLER_HOST_ID: u32 = 1_499_999_999;

/// Where an environment appears inside a run. Installs build it at the same path, so every
/// absolute path an installer bakes in (bytecode, script shebangs, npm links) holds in runs.
pub const ENV_MOUNT: &str = "/opt/airlock/env";
/// JavaScript runs also see the environment's `node_modules` next to their program, so ES
/// module `import`s resolve without `NODE_PATH` (which only `require` honours).
const NODE_MODULES_MOUNT: &str = "/airlock/node_modules";
const CACHE_MOUNT: &str = "/opt/airlock/cache";
const LINKS_MOUNT: &str = "/opt/airlock/links";
const LOCAL_MOUNT: &str = "/opt/airlock/local";

/// Where environments are stored and where installers fetch from. Each `None` or empty field
/// falls back to an environment variable, then to the installer's own default, so a deployment
/// can point every face at a mirror without code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackageConfig {
    /// Store root. Falls back to `AIRLOCK_HOME`, then `/var/cache/airlock` (root) or
    /// `$XDG_CACHE_HOME/airlock` / `~/.cache/airlock`.
    pub home: Option<PathBuf>,
    /// Python package index (uv's `--index-url`, e.g. a private mirror). Falls back to
    /// `AIRLOCK_INDEX_URL`.
    pub index_url: Option<String>,
    /// Directories of wheels and sdists (uv's `--find-links`) and of npm tarballs named as
    /// `npm pack` names them (`NAME-VERSION.tgz`, serving exact `NAME@VERSION` specs). Falls
    /// back to `AIRLOCK_FIND_LINKS` (colon-separated).
    pub find_links: Vec<PathBuf>,
    /// Offline: only the find-links directories, never an index or registry (npm then works
    /// from its cache and the tarballs). Also set by `AIRLOCK_NO_INDEX=1`.
    pub no_index: bool,
    /// npm registry URL. Falls back to `AIRLOCK_NPM_REGISTRY`.
    pub npm_registry: Option<String>,
}

/// A [`PackageConfig`] with its fallbacks applied and checked.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub home: PathBuf,
    pub index_url: Option<String>,
    pub find_links: Vec<PathBuf>,
    pub no_index: bool,
    pub npm_registry: Option<String>,
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn check_url(field: &str, url: &str) -> Result<String, RuntimeError> {
    let u = url.trim();
    let ok = (u.starts_with("https://") || u.starts_with("http://"))
        && u.len() <= 2048
        && !u.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(RuntimeError::invalid(
            field,
            format!("{url:?} is not an http(s) URL"),
        ));
    }
    Ok(u.to_owned())
}

impl PackageConfig {
    /// The store root this configuration names.
    pub fn store_root(&self) -> Result<PathBuf, RuntimeError> {
        if let Some(h) = self
            .home
            .clone()
            .or_else(|| env_var("AIRLOCK_HOME").map(PathBuf::from))
        {
            if !h.is_absolute() {
                return Err(RuntimeError::invalid(
                    "home",
                    format!("{} (AIRLOCK_HOME) must be an absolute path", h.display()),
                ));
            }
            return Ok(h);
        }
        if is_root() {
            return Ok(PathBuf::from("/var/cache/airlock"));
        }
        if let Some(x) = env_var("XDG_CACHE_HOME").filter(|x| x.starts_with('/')) {
            return Ok(PathBuf::from(x).join("airlock"));
        }
        match env_var("HOME").filter(|h| h.starts_with('/')) {
            Some(h) => Ok(PathBuf::from(h).join(".cache/airlock")),
            None => Err(RuntimeError::Environment {
                what: "locating the environment store".into(),
                why: "neither AIRLOCK_HOME, XDG_CACHE_HOME nor HOME is set; set AIRLOCK_HOME \
                      to a directory airlock may write"
                    .into(),
            }),
        }
    }

    pub(crate) fn resolve(&self) -> Result<Resolved, RuntimeError> {
        let index_url = match self
            .index_url
            .clone()
            .or_else(|| env_var("AIRLOCK_INDEX_URL"))
        {
            Some(u) => Some(check_url("index_url", &u)?),
            None => None,
        };
        let npm_registry = match self
            .npm_registry
            .clone()
            .or_else(|| env_var("AIRLOCK_NPM_REGISTRY"))
        {
            Some(u) => Some(check_url("npm_registry", &u)?),
            None => None,
        };
        let dirs: Vec<PathBuf> = if self.find_links.is_empty() {
            env_var("AIRLOCK_FIND_LINKS")
                .map(|v| {
                    v.split(':')
                        .filter(|s| !s.is_empty())
                        .map(PathBuf::from)
                        .collect()
                })
                .unwrap_or_default()
        } else {
            self.find_links.clone()
        };
        let mut find_links = Vec::new();
        for d in dirs {
            let c = fs::canonicalize(&d)
                .ok()
                .filter(|c| c.is_dir())
                .ok_or_else(|| {
                    RuntimeError::invalid(
                        "find_links",
                        format!("{} is not an existing directory", d.display()),
                    )
                })?;
            find_links.push(c);
        }
        let no_index = self.no_index
            || env_var("AIRLOCK_NO_INDEX")
                .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
        Ok(Resolved {
            home: self.store_root()?,
            index_url,
            find_links,
            no_index,
            npm_registry,
        })
    }
}

/// What an environment is built for, beyond its specifiers: part of the key.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The interpreter's implementation, version, ABI and path.
    pub interpreter: String,
    /// OS, architecture and libc (which wheels and native addons fit).
    pub platform: String,
    /// The installer and its version.
    pub installer: String,
}

/// Events of an install, for a progress display.
#[derive(Clone, Debug)]
pub enum Progress {
    /// Nothing is cached for this key: an install starts.
    Installing {
        key: String,
        language: Language,
        specs: Vec<String>,
    },
    /// A line of the installer's output.
    Output(String),
    /// The install finished and its environment is published.
    Installed { key: String, elapsed: Duration },
}

/// One environment's record (`meta/<key>.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnvInfo {
    pub key: String,
    /// `python` or `javascript`.
    pub language: String,
    /// The canonical specifiers.
    pub specs: Vec<String>,
    pub interpreter: String,
    pub platform: String,
    pub installer: String,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds; refreshed at most once a minute by the runs that use it.
    pub last_used: u64,
    pub size_bytes: u64,
    pub install_ms: f64,
}

/// A ready environment, held for one run: a shared lock on its key keeps `prune` from removing
/// it while the run has it mounted.
#[derive(Debug)]
pub struct Environment {
    pub key: String,
    pub path: PathBuf,
    pub language: Language,
    /// Whether it already existed (no install work was done).
    pub cached: bool,
    /// Time to find (or build) it.
    pub elapsed: Duration,
    _lock: File,
}

impl Environment {
    /// Binds the environment read-only into a run's policy and points the interpreter at it.
    /// The variables are airlock's own: a caller's `PYTHONPATH`/`NODE_PATH` is kept after ours.
    pub(crate) fn apply(&self, policy: &mut Policy) {
        policy
            .mounts
            .push(Mount::read_only(self.path.clone(), ENV_MOUNT));
        let (var, dir, bin) = match self.language {
            Language::JavaScript => {
                let nm = self.path.join("node_modules");
                if nm.is_dir() {
                    policy.mounts.push(Mount::read_only(nm, NODE_MODULES_MOUNT));
                }
                (
                    "NODE_PATH",
                    format!("{ENV_MOUNT}/node_modules"),
                    format!("{ENV_MOUNT}/node_modules/.bin"),
                )
            }
            _ => (
                "PYTHONPATH",
                format!("{ENV_MOUNT}/site-packages"),
                format!("{ENV_MOUNT}/site-packages/bin"),
            ),
        };
        let joined = match policy.env.get(var) {
            Some(theirs) if !theirs.is_empty() => format!("{dir}:{theirs}"),
            _ => dir,
        };
        policy.env.insert(var.into(), joined);
        if let Some(path) = policy.env.get_mut("PATH") {
            *path = format!("{bin}:{path}");
        }
    }

    /// Records the environment in a run's result.
    pub(crate) fn annotate(&self, result: &mut RunResult) {
        result.environment = Some(self.key.clone());
        result.environment_cached = Some(self.cached);
        result.timing.install_ms = ms(self.elapsed);
    }

    /// Records the environment in the result of a run served by a pooled sandbox, which found
    /// (or built) it before the run came: the run itself waited for no install.
    pub(crate) fn annotate_pooled(&self, result: &mut RunResult) {
        annotate_found(&self.key, result);
    }
}

/// [`Environment::annotate_pooled`] for a caller that keeps only the key (a session, whose
/// environment lives as long as its sandbox, not its handle).
pub(crate) fn annotate_found(key: &str, result: &mut RunResult) {
    result.environment = Some(key.to_owned());
    result.environment_cached = Some(true);
    result.timing.install_ms = 0.0;
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// What to install: the request's package fields.
pub(crate) struct Wanted<'a> {
    pub language: Language,
    pub interp: &'a Interpreter,
    pub packages: &'a [String],
    pub allow_unsafe: bool,
    pub config: &'a PackageConfig,
    pub weak_limits: bool,
}

/// The environment for `w`'s packages: found in the store, or installed (once, under the key's
/// lock) and published. `None` when no packages are named.
pub(crate) fn ensure(
    w: &Wanted<'_>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Option<Environment>, RuntimeError> {
    if w.packages.is_empty() {
        return Ok(None);
    }
    let started = Instant::now();
    let specs = spec::parse_all(w.language, w.packages, w.allow_unsafe)?;
    let cfg = w.config.resolve()?;
    let store = Store::open(&cfg.home)?;
    let tool = Tool::locate(w.language, w.interp)?;
    let target = tool.target(&store, w.interp)?;
    let key = key_of(w.language, &specs, &target);
    let shown: Vec<String> = specs.iter().map(shown_spec).collect();
    let record = Record {
        language: w.language,
        specs: shown.clone(),
        target: target.clone(),
    };
    let cache = store.root.join("cache").join(tool.name());
    let mut install = |tmp: &Path, progress: &mut dyn FnMut(&Progress)| {
        // Only when something is installed: finding the index's hosts may start the host's
        // Python, which a cached environment should not wait for.
        let network = install_network(w.language, &cfg, &specs)?;
        let job = match &tool {
            Tool::Uv(uv) => python::job(uv, w.interp, &cfg, &specs),
            Tool::Npm(npm) => node::job(npm, w.interp, &cfg, &specs),
        };
        install::run(
            &job,
            &network,
            tmp,
            &cache,
            w.interp,
            w.weak_limits,
            progress,
        )?
        .map_err(|message| RuntimeError::Install {
            installer: tool.name(),
            specs: shown.join(" "),
            message,
        })
    };
    let mut env = ensure_key(&store, &key, &record, progress, &mut install)?;
    env.elapsed = started.elapsed();
    Ok(Some(env))
}

/// An install's network: the configured mirror's or the public index's hosts, plus those of
/// URL specifiers the caller allowed; none offline (see `network::for_install`).
fn install_network(
    language: Language,
    cfg: &Resolved,
    specs: &[spec::Spec],
) -> Result<install::InstallNetwork, RuntimeError> {
    let remote: Vec<&str> = specs
        .iter()
        .filter_map(|s| match s {
            spec::Spec::Remote(r) => Some(r.as_str()),
            _ => None,
        })
        .collect();
    let (mirror, field) = match language {
        Language::JavaScript => (&cfg.npm_registry, "npm_registry"),
        _ => (&cfg.index_url, "index_url"),
    };
    let mirror: Vec<&str> = mirror.iter().map(String::as_str).collect();
    // The public index's names are asked of the installer only when they are needed.
    let defaults = if mirror.is_empty() && !cfg.no_index {
        match language {
            Language::JavaScript => crate::network::default_npm_registry_hosts()?,
            _ => crate::network::default_python_index_hosts()?,
        }
    } else {
        Vec::new()
    };
    let defaults: Vec<&str> = defaults.iter().map(String::as_str).collect();
    crate::network::for_install(&defaults, &mirror, &remote, cfg.no_index, field)
}

/// [`ensure`] for a run request.
pub(crate) fn ensure_for(
    req: &crate::request::RunRequest,
    interp: &Interpreter,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Option<Environment>, RuntimeError> {
    ensure(
        &Wanted {
            language: req.language,
            interp,
            packages: &req.packages,
            allow_unsafe: req.allow_unsafe_specs,
            config: &req.package_config,
            weak_limits: req.weak_limits,
        },
        progress,
    )
}

/// What an environment's record says about it, besides what its build measures.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub language: Language,
    pub specs: Vec<String>,
    pub target: Target,
}

/// An installer: fills the build directory it is given, reporting progress.
pub(crate) type Installer<'a> =
    dyn FnMut(&Path, &mut dyn FnMut(&Progress)) -> Result<(), RuntimeError> + 'a;

/// The store protocol for one key, independent of the installer: a shared lock to use it, an
/// exclusive one to build it, a temporary directory published by rename.
pub(crate) fn ensure_key(
    store: &Store,
    key: &str,
    record: &Record,
    progress: &mut dyn FnMut(&Progress),
    install: &mut Installer<'_>,
) -> Result<Environment, RuntimeError> {
    let started = Instant::now();
    let ready = |lock: File, cached: bool| Environment {
        path: store.env_dir(key),
        key: key.to_owned(),
        language: record.language,
        cached,
        elapsed: started.elapsed(),
        _lock: lock,
    };
    for _ in 0..5 {
        let lock = store.lock(key, Lock::Shared)?;
        if store.env_dir(key).is_dir() {
            store.touch(key);
            return Ok(ready(lock, true));
        }
        drop(lock);
        let lock = store.lock(key, Lock::Exclusive)?;
        let cached = store.env_dir(key).is_dir();
        if !cached {
            build(store, key, record, progress, install)?;
        }
        // Downgrade to shared for the run; prune may slip in during the conversion, so check
        // again and start over if it did.
        lock.lock_shared()
            .map_err(|e| store.io("locking", key, e))?;
        if store.env_dir(key).is_dir() {
            if cached {
                store.touch(key);
            }
            return Ok(ready(lock, cached));
        }
    }
    Err(RuntimeError::Environment {
        what: format!("using environment {key}"),
        why: "it was removed (pruned) each time it was built; stop the concurrent prune".into(),
    })
}

/// Builds `key` into a temporary directory and publishes it. The caller holds the exclusive
/// lock of the key.
fn build(
    store: &Store,
    key: &str,
    record: &Record,
    progress: &mut dyn FnMut(&Progress),
    install: &mut Installer<'_>,
) -> Result<(), RuntimeError> {
    let started = Instant::now();
    store.clean_debris(key);
    progress(&Progress::Installing {
        key: key.to_owned(),
        language: record.language,
        specs: record.specs.clone(),
    });
    let tmp = store.new_temp(key)?;
    let result = (|| {
        install(&tmp, progress)?;
        let size = seal(&tmp, store.privileged).map_err(|e| store.io("sealing", key, e))?;
        let now = unix_now();
        store.write_meta(&EnvInfo {
            key: key.to_owned(),
            language: language::name(record.language).to_owned(),
            specs: record.specs.clone(),
            interpreter: record.target.interpreter.clone(),
            platform: record.target.platform.clone(),
            installer: record.target.installer.clone(),
            created: now,
            last_used: now,
            size_bytes: size,
            install_ms: ms(started.elapsed()),
        })?;
        fs::rename(&tmp, store.env_dir(key)).map_err(|e| store.io("publishing", key, e))
    })();
    if let Err(e) = result {
        remove_tree(&tmp);
        return Err(e);
    }
    progress(&Progress::Installed {
        key: key.to_owned(),
        elapsed: started.elapsed(),
    });
    Ok(())
}

fn shown_spec(s: &spec::Spec) -> String {
    match s {
        spec::Spec::Registry(r) | spec::Spec::Remote(r) => r.clone(),
        spec::Spec::Local { prefix, path } => format!("{prefix}{}", path.display()),
    }
}

/// The cache key: a SHA-256 over a canonical text of everything that changes the install,
/// shown (and stored) as its first 20 hex digits (80 bits).
pub(crate) fn key_of(language: Language, specs: &[spec::Spec], target: &Target) -> String {
    let mut text = format!(
        "airlock-env-v1\nlanguage={}\ninterpreter={}\nplatform={}\ninstaller={}\n",
        language::name(language),
        target.interpreter,
        target.platform,
        target.installer
    );
    let mut canon: Vec<String> = specs.iter().map(spec::Spec::canonical).collect();
    canon.sort();
    canon.dedup();
    for c in canon {
        text.push_str("spec=");
        text.push_str(&c);
        text.push('\n');
    }
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(10).map(|b| format!("{b:02x}")).collect()
}

/// The installer for a language.
pub(crate) enum Tool {
    Uv(python::Uv),
    Npm(node::Npm),
}

impl Tool {
    fn locate(language: Language, interp: &Interpreter) -> Result<Tool, RuntimeError> {
        match language {
            Language::Python => Ok(Tool::Uv(python::Uv::locate(interp)?)),
            Language::JavaScript => Ok(Tool::Npm(node::Npm::locate()?)),
            Language::Shell => Err(RuntimeError::invalid(
                "packages",
                "a shell run has no package manager",
            )),
        }
    }
    fn name(&self) -> &'static str {
        match self {
            Tool::Uv(_) => "uv",
            Tool::Npm(_) => "npm",
        }
    }
    fn target(&self, store: &Store, interp: &Interpreter) -> Result<Target, RuntimeError> {
        match self {
            Tool::Uv(uv) => python::target(uv, store, interp),
            Tool::Npm(npm) => node::target(npm, store, interp),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lock {
    Shared,
    Exclusive,
}

/// The store on disk.
pub(crate) struct Store {
    pub root: PathBuf,
    /// We are root: installs map to [`INSTALLER_HOST_ID`] and published trees become root's.
    pub privileged: bool,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    pub(crate) fn open(root: &Path) -> Result<Store, RuntimeError> {
        let privileged = is_root();
        let store = Store {
            root: root.to_path_buf(),
            privileged,
        };
        let fail = |what: &Path, e: std::io::Error| RuntimeError::Environment {
            what: format!("creating the environment store at {}", what.display()),
            why: format!("{e}; set AIRLOCK_HOME to a directory airlock may write"),
        };
        for (dir, mode) in [
            (root.to_path_buf(), 0o755),
            (root.join("envs"), 0o755),
            (root.join("locks"), 0o700),
            (root.join("meta"), 0o755),
            (root.join("probes"), 0o700),
            (root.join("cache"), 0o755),
            (root.join("cache/uv"), 0o700),
            (root.join("cache/npm"), 0o700),
        ] {
            match fs::create_dir(&dir) {
                Ok(()) => {
                    fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
                        .map_err(|e| fail(&dir, e))?;
                    if privileged && dir.starts_with(root.join("cache/")) {
                        // The installers' caches belong to the installer identity.
                        std::os::unix::fs::chown(
                            &dir,
                            Some(INSTALLER_HOST_ID),
                            Some(INSTALLER_HOST_ID),
                        )
                        .map_err(|e| fail(&dir, e))?;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) if dir == root => {
                    fs::create_dir_all(&dir).map_err(|_| fail(&dir, e))?;
                    fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
                        .map_err(|e| fail(&dir, e))?;
                }
                Err(e) => return Err(fail(&dir, e)),
            }
        }
        Ok(store)
    }

    fn io(&self, what: &str, key: &str, e: std::io::Error) -> RuntimeError {
        RuntimeError::Environment {
            what: format!("{what} environment {key} in {}", self.root.display()),
            why: e.to_string(),
        }
    }

    pub(crate) fn env_dir(&self, key: &str) -> PathBuf {
        self.root.join("envs").join(key)
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.root.join("meta").join(format!("{key}.json"))
    }

    /// Takes the key's lock (blocking). Verifies after locking that the file is still the one
    /// at the path: `prune` deletes lock files while holding them, and a lock on a deleted
    /// file would exclude nobody.
    fn lock(&self, key: &str, kind: Lock) -> Result<File, RuntimeError> {
        self.lock_with(key, kind, true)?
            .ok_or_else(|| self.io("locking", key, std::io::Error::other("busy")))
    }

    /// As `lock`; when `wait` is false, `None` if someone else holds it.
    fn lock_with(&self, key: &str, kind: Lock, wait: bool) -> Result<Option<File>, RuntimeError> {
        let path = self.root.join("locks").join(format!("{key}.lock"));
        loop {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(|e| self.io("opening the lock of", key, e))?;
            let got = match (kind, wait) {
                (Lock::Shared, true) => f.lock_shared().map(|()| true),
                (Lock::Exclusive, true) => f.lock().map(|()| true),
                (Lock::Shared, false) => try_lock(f.try_lock_shared()),
                (Lock::Exclusive, false) => try_lock(f.try_lock()),
            }
            .map_err(|e| self.io("locking", key, e))?;
            if !got {
                return Ok(None);
            }
            let same = match (f.metadata(), fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if same {
                return Ok(Some(f));
            }
        }
    }

    /// A fresh temporary directory for building `key`, writable by the installer.
    fn new_temp(&self, key: &str) -> Result<PathBuf, RuntimeError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = self
            .root
            .join("envs")
            .join(format!(".tmp-{key}-{}-{nanos:08x}{n}", std::process::id()));
        fs::create_dir(&p).map_err(|e| self.io("creating a build directory for", key, e))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755))
            .map_err(|e| self.io("creating a build directory for", key, e))?;
        if self.privileged {
            std::os::unix::fs::chown(&p, Some(INSTALLER_HOST_ID), Some(INSTALLER_HOST_ID))
                .map_err(|e| self.io("handing the build directory to the installer for", key, e))?;
        }
        Ok(p)
    }

    /// Removes what failed or interrupted builds of `key` left. The caller holds the key's
    /// exclusive lock, so no live build owns any of it.
    fn clean_debris(&self, key: &str) {
        let prefix = format!(".tmp-{key}-");
        if let Ok(entries) = fs::read_dir(self.root.join("envs")) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    remove_tree(&e.path());
                }
            }
        }
    }

    fn write_meta(&self, info: &EnvInfo) -> Result<(), RuntimeError> {
        let text = serde_json::to_vec_pretty(info).unwrap_or_default();
        write_replacing(&self.meta_path(&info.key), &text, 0o644)
            .map_err(|e| self.io("recording", &info.key, e))
    }

    fn read_meta(&self, key: &str) -> Option<EnvInfo> {
        serde_json::from_slice(&fs::read(self.meta_path(key)).ok()?).ok()
    }

    /// Marks `key` used now (at most once a minute: a hit should cost no write).
    fn touch(&self, key: &str) {
        if let Some(mut info) = self.read_meta(key) {
            let now = unix_now();
            if now.saturating_sub(info.last_used) >= 60 {
                info.last_used = now;
                let _ = self.write_meta(&info);
            }
        }
    }

    /// Every published environment, most recently used first.
    fn list(&self) -> Vec<EnvInfo> {
        let mut out = Vec::new();
        if let Ok(entries) = fs::read_dir(self.root.join("envs")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || !e.path().is_dir() {
                    continue;
                }
                let info = self.read_meta(&name).unwrap_or_else(|| EnvInfo {
                    key: name.clone(),
                    language: "unknown".into(),
                    specs: Vec::new(),
                    interpreter: String::new(),
                    platform: String::new(),
                    installer: String::new(),
                    created: 0,
                    last_used: 0,
                    size_bytes: tree_size(&e.path()),
                    install_ms: 0.0,
                });
                out.push(info);
            }
        }
        out.sort_by(|a, b| b.last_used.cmp(&a.last_used).then(a.key.cmp(&b.key)));
        out
    }
}

/// The first line `exe args` prints, cached in the store by the file's identity (device, inode,
/// size, mtime): versions go into every key, and asking npm or node each time would cost more
/// than the whole warm lookup. Runs on the host, outside any sandbox: `exe` is the trusted
/// interpreter or installer the host chose, with a cleared environment.
pub(crate) fn probe(store: &Store, exe: &Path, args: &[&str]) -> Result<String, RuntimeError> {
    let meta = fs::metadata(exe).map_err(|e| RuntimeError::Environment {
        what: format!("inspecting {}", exe.display()),
        why: e.to_string(),
    })?;
    let id = format!(
        "v1 {} {} {} {} {}.{} {}",
        exe.display(),
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        args.join("\u{1f}")
    );
    let digest = Sha256::digest(id.as_bytes());
    let name: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let cached = store.root.join("probes").join(name);
    if let Ok(v) = fs::read_to_string(&cached)
        && !v.trim().is_empty()
    {
        return Ok(v.trim().to_owned());
    }
    let out = std::process::Command::new(exe)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| RuntimeError::Environment {
            what: format!("running {}", exe.display()),
            why: e.to_string(),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or("").trim().to_owned();
    if !out.status.success() || first.is_empty() {
        return Err(RuntimeError::Environment {
            what: format!("asking {} for its version", exe.display()),
            why: format!(
                "it failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let _ = write_replacing(&cached, first.as_bytes(), 0o600);
    Ok(first)
}

/// Writes `bytes` to `path` whole or not at all: into a new file beside it with permissions
/// `mode`, then renamed over it, so no reader sees half of it and a failure leaves nothing.
pub(crate) fn write_replacing(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(
        "{name}.tmp{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let r = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        // Whatever the umask took away.
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)))
        .and_then(|()| fs::rename(&tmp, path));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

fn try_lock(r: Result<(), fs::TryLockError>) -> std::io::Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(fs::TryLockError::WouldBlock) => Ok(false),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether this process is root (effective uid 0).
pub(crate) fn is_root() -> bool {
    jail::probe::effective_uid() == 0
}

/// Makes a finished build safe to share: no group/other write, no setuid/setgid/sticky, readable
/// by every run's uid, and (as root) owned by root so no run or later install can change it.
/// Never follows a symlink the installer planted. Returns the tree's disk usage in bytes.
fn seal(dir: &Path, privileged: bool) -> std::io::Result<u64> {
    let mut size = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p)?;
        size += m.blocks() * 512;
        if privileged {
            std::os::unix::fs::lchown(&p, Some(0), Some(0))?;
        }
        let ft = m.file_type();
        if ft.is_symlink() {
            continue;
        }
        let mode = if ft.is_dir() || m.mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
        if ft.is_dir() {
            for e in fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(size)
}

fn tree_size(dir: &Path) -> u64 {
    let mut size = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        size += m.blocks() * 512;
        if m.is_dir()
            && let Ok(rd) = fs::read_dir(&p)
        {
            stack.extend(rd.flatten().map(|e| e.path()));
        }
    }
    size
}

/// Removes a tree, giving its directories owner write first if needed (an installer may leave
/// read-only directories, which an unprivileged owner cannot empty otherwise).
fn remove_tree(p: &Path) {
    if fs::remove_dir_all(p).is_ok() || !p.exists() {
        return;
    }
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(m) = fs::symlink_metadata(&d)
            && m.is_dir()
        {
            let _ = fs::set_permissions(&d, fs::Permissions::from_mode(0o700));
            if let Ok(rd) = fs::read_dir(&d) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    let _ = fs::remove_dir_all(p);
}

/// Builds (or finds) the environment for `packages` without running anything: `airlock env
/// create`. The lock is released on return.
pub fn create(
    language: Language,
    packages: &[String],
    allow_unsafe: bool,
    config: &PackageConfig,
    weak_limits: bool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(EnvInfo, bool), RuntimeError> {
    if packages.is_empty() {
        return Err(RuntimeError::invalid(
            "packages",
            "name at least one package",
        ));
    }
    let interp = language::locate(language)?;
    let env = ensure(
        &Wanted {
            language,
            interp,
            packages,
            allow_unsafe,
            config,
            weak_limits,
        },
        progress,
    )?
    .expect("packages are not empty");
    let store = Store::open(&config.store_root()?)?;
    let info = store
        .read_meta(&env.key)
        .ok_or_else(|| RuntimeError::Environment {
            what: format!("reading the record of environment {}", env.key),
            why: "meta file missing".into(),
        })?;
    Ok((info, env.cached))
}

/// Every published environment of the store, most recently used first.
pub fn list(config: &PackageConfig) -> Result<Vec<EnvInfo>, RuntimeError> {
    let root = config.store_root()?;
    if !root.join("envs").is_dir() {
        return Ok(Vec::new());
    }
    Ok(Store::open(&root)?.list())
}

/// What `prune` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Pruned {
    /// Environments removed.
    pub removed: Vec<EnvInfo>,
    /// Keys kept because a run or an install holds them right now.
    pub busy: Vec<String>,
    /// Leftovers of failed or interrupted installs removed.
    pub debris: usize,
    /// Remembered interpreter answers removed (`probes/`): each is asked again when next needed.
    pub probes: usize,
}

/// Removes environments unused for `older_than` (or every one with `all`) and, always, the
/// leftovers of failed or interrupted installs. Environments in use are skipped, never broken.
/// The remembered interpreter answers (`probes/`) written that long ago go too (every one with
/// `all`): they are a cache, keyed by what they answer for, so a stale key is never read again
/// and a live one is asked again once.
pub fn prune(
    config: &PackageConfig,
    older_than: Option<Duration>,
    all: bool,
) -> Result<Pruned, RuntimeError> {
    let mut out = Pruned::default();
    let root = config.store_root()?;
    let now = unix_now();
    out.probes = prune_probes(&root.join("probes"), now, older_than, all);
    if !root.join("envs").is_dir() {
        return Ok(out);
    }
    let store = Store::open(&root)?;
    for info in store.list() {
        let old = older_than.is_some_and(|d| now.saturating_sub(info.last_used) >= d.as_secs());
        if !(all || old) {
            continue;
        }
        let Some(_lock) = store.lock_with(&info.key, Lock::Exclusive, false)? else {
            out.busy.push(info.key.clone());
            continue;
        };
        let trash = store
            .root
            .join("envs")
            .join(format!(".tmp-{}-pruned", info.key));
        remove_tree(&trash);
        fs::rename(store.env_dir(&info.key), &trash)
            .map_err(|e| store.io("removing", &info.key, e))?;
        let _ = fs::remove_file(store.meta_path(&info.key));
        remove_tree(&trash);
        let _ = fs::remove_file(store.root.join("locks").join(format!("{}.lock", info.key)));
        out.removed.push(info);
    }
    // Debris: temporary directories no live build holds, and records without an environment.
    if let Ok(entries) = fs::read_dir(store.root.join("envs")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(".tmp-") else {
                continue;
            };
            let key = rest.split('-').next().unwrap_or_default();
            if store.lock_with(key, Lock::Exclusive, false)?.is_some() {
                remove_tree(&e.path());
                out.debris += 1;
            }
        }
    }
    if let Ok(entries) = fs::read_dir(store.root.join("meta")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let key = name.split('.').next().unwrap_or_default().to_owned();
            if !store.env_dir(&key).is_dir()
                && let Some(_l) = store.lock_with(&key, Lock::Exclusive, false)?
                && !store.env_dir(&key).is_dir()
            {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    Ok(out)
}

/// A write in flight (`write_replacing`'s temporary file) older than this was interrupted.
const PROBE_WRITE_GRACE: u64 = 3600;

/// Removes the probe files last written `older_than` ago (all of them with `all`), and
/// temporary files of interrupted writes. Returns how many went.
fn prune_probes(dir: &Path, now: u64, older_than: Option<Duration>, all: bool) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let age = now.saturating_sub(u64::try_from(meta.mtime()).unwrap_or(0));
        let in_flight = e.file_name().to_string_lossy().contains(".tmp");
        let gone = if in_flight {
            age >= PROBE_WRITE_GRACE
        } else {
            all || older_than.is_some_and(|d| age >= d.as_secs())
        };
        if gone && fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests;
