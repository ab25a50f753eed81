//! Python environments, installed by `uv pip install --target` into `<env>/site-packages`, which
//! runs put on `PYTHONPATH`. A target directory (rather than a virtualenv) needs no interpreter
//! of its own, so one environment serves the run's interpreter as it is, with nothing for the
//! user to activate. Bytecode is compiled at install time because runs cannot write it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jail::{Command, Mount};

use super::install::{Job, host_ca_bundle};
use super::spec::Spec;
use super::{CACHE_MOUNT, ENV_MOUNT, LINKS_MOUNT, LOCAL_MOUNT, Resolved, Store, Target, probe};
use crate::error::RuntimeError;
use crate::language::Interpreter;

/// Where uv appears inside the install sandbox.
const UV_MOUNT: &str = "/opt/airlock/bin/uv";

pub(crate) struct Uv {
    pub path: PathBuf,
}

impl Uv {
    /// `AIRLOCK_UV`, else a uv next to the run's interpreter (where `python3 -m pip install
    /// uv` puts it), else a uv binary on `PATH`. Shims (pyenv's scripts) are skipped: the
    /// sandbox needs the binary itself.
    pub(crate) fn locate(interp: &Interpreter) -> Result<Uv, RuntimeError> {
        let missing = |why: String| RuntimeError::Environment {
            what: "finding uv, the Python installer".into(),
            why: format!(
                "{why}; install it with `python3 -m pip install uv` (scripts/setup.sh does) or \
                 set AIRLOCK_UV to the uv binary"
            ),
        };
        if let Some(p) = std::env::var_os("AIRLOCK_UV").filter(|p| !p.is_empty()) {
            let p = std::fs::canonicalize(&p)
                .map_err(|e| missing(format!("AIRLOCK_UV={}: {e}", Path::new(&p).display())))?;
            if !is_binary(&p) {
                return Err(missing(format!(
                    "AIRLOCK_UV={} is not an executable binary",
                    p.display()
                )));
            }
            return Ok(Uv { path: p });
        }
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(bin) = interp.executable.parent() {
            candidates.push(bin.join("uv"));
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path).map(|d| d.join("uv")));
        }
        if let Some(home) = std::env::var_os("HOME") {
            candidates.push(PathBuf::from(home).join(".local/bin/uv"));
        }
        candidates
            .iter()
            .filter_map(|c| std::fs::canonicalize(c).ok())
            .find(|c| is_binary(c))
            .map(|path| Uv { path })
            .ok_or_else(|| missing("no uv binary next to the interpreter or on PATH".into()))
    }
}

/// An executable ELF file (not a shell-script shim).
fn is_binary(p: &Path) -> bool {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let exec =
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let mut head = [0u8; 4];
    exec && std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == b"\x7fELF"
}

/// What the key needs to know about the interpreter and uv.
pub(crate) fn target(uv: &Uv, store: &Store, interp: &Interpreter) -> Result<Target, RuntimeError> {
    const PROBE: &str = "import sys, sysconfig, platform; \
        print(sys.implementation.cache_tag, '.'.join(map(str, sys.version_info[:3])) + sys.abiflags, \
        sysconfig.get_platform(), '-'.join(platform.libc_ver()))";
    let py = probe(store, &interp.executable, &["-I", "-c", PROBE])?;
    let mut parts = py.split_whitespace();
    let (tag, version) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let platform = parts.collect::<Vec<_>>().join(" ");
    let uv_version = probe(store, &uv.path, &["--version"])?;
    Ok(Target {
        interpreter: format!("{tag} {version} {}", interp.executable.display()),
        platform,
        installer: uv_version,
    })
}

/// The uv invocation for `specs`.
pub(crate) fn job(uv: &Uv, interp: &Interpreter, cfg: &Resolved, specs: &[Spec]) -> Job {
    let mut mounts = vec![Mount::read_only(uv.path.clone(), UV_MOUNT)];
    let mut command = Command::new(UV_MOUNT)
        .args(["pip", "install", "--no-config", "--no-python-downloads"])
        .arg("--target")
        .arg(format!("{ENV_MOUNT}/site-packages"))
        .arg("--python")
        .arg(&interp.executable)
        // The cache and the environment are different mounts: hard links cannot cross them.
        .args(["--link-mode", "copy", "--compile-bytecode"]);
    if let Some(url) = &cfg.index_url {
        command = command.arg("--index-url").arg(url);
    }
    for (i, dir) in cfg.find_links.iter().enumerate() {
        let inside = format!("{LINKS_MOUNT}/{i}");
        mounts.push(Mount::read_only(dir.clone(), &inside));
        command = command.arg("--find-links").arg(inside);
    }
    if cfg.no_index {
        command = command.arg("--no-index");
    }
    command = command.arg("--");
    for (i, s) in specs.iter().enumerate() {
        command = command.arg(match s {
            Spec::Registry(r) | Spec::Remote(r) => r.clone(),
            Spec::Local { prefix, path } => {
                let inside = local_mount(i, path);
                mounts.push(Mount::read_only(path.clone(), &inside));
                if prefix.is_empty() {
                    inside
                } else {
                    format!("{prefix}file://{inside}")
                }
            }
        });
    }
    let mut env = BTreeMap::new();
    env.insert("UV_CACHE_DIR".to_string(), CACHE_MOUNT.to_string());
    env.insert("UV_NO_PROGRESS".to_string(), "1".to_string());
    if let Some(ca) = host_ca_bundle() {
        env.insert("SSL_CERT_FILE".to_string(), ca.to_string());
    }
    Job {
        command,
        mounts,
        env,
    }
}

/// Where local package `i` appears inside the install sandbox (its own name kept: installers
/// read meaning into file names).
pub(crate) fn local_mount(i: usize, path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pkg".into());
    format!("{LOCAL_MOUNT}/{i}/{name}")
}
