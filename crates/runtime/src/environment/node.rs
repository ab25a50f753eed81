//! JavaScript environments, installed by the host's npm (`npm install --prefix <env>`) into
//! `<env>/node_modules`, which runs see both on `NODE_PATH` (for `require`) and next to their
//! program (for ES module `import`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jail::{Command, Mount};

use super::install::{Job, host_ca_bundle};
use super::python::local_mount;
use super::spec::{Spec, npm_exact};
use super::{CACHE_MOUNT, ENV_MOUNT, LINKS_MOUNT, Resolved, Store, Target, probe};
use crate::error::RuntimeError;
use crate::language::{Interpreter, SYSTEM_PATHS};

pub(crate) struct Npm {
    /// The npm entry point (`.../npm/bin/npm-cli.js`), symlinks resolved.
    pub cli: PathBuf,
    /// npm's package directory (holds its `package.json`).
    pub root: PathBuf,
    pub version: String,
}

impl Npm {
    /// `AIRLOCK_NPM`, else `npm` on `PATH`.
    pub(crate) fn locate() -> Result<Npm, RuntimeError> {
        let missing = |why: String| RuntimeError::Environment {
            what: "finding npm, the JavaScript installer".into(),
            why: format!("{why}; install npm (Debian: apt-get install npm) or set AIRLOCK_NPM"),
        };
        let wanted = std::env::var_os("AIRLOCK_NPM")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::split_paths(&std::env::var_os("PATH")?)
                    .map(|d| d.join("npm"))
                    .find(|p| p.is_file())
            })
            .ok_or_else(|| missing("`npm` is not on PATH".into()))?;
        let cli = std::fs::canonicalize(&wanted)
            .map_err(|e| missing(format!("{}: {e}", wanted.display())))?;
        // .../lib/node_modules/npm/bin/npm-cli.js -> .../lib/node_modules/npm
        let root = cli
            .parent()
            .and_then(Path::parent)
            .filter(|r| r.join("package.json").is_file())
            .ok_or_else(|| {
                missing(format!(
                    "{} is not npm's npm-cli.js inside its package",
                    cli.display()
                ))
            })?
            .to_path_buf();
        let package: serde_json::Value = std::fs::read(root.join("package.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let version = package["version"].as_str().unwrap_or("unknown").to_owned();
        Ok(Npm { cli, root, version })
    }
}

/// What the key needs to know about node and npm.
pub(crate) fn target(
    npm: &Npm,
    store: &Store,
    interp: &Interpreter,
) -> Result<Target, RuntimeError> {
    const PROBE: &str = "console.log(process.version, 'abi' + process.versions.modules, \
        process.platform + '-' + process.arch, \
        (process.report && process.report.getReport().header.glibcVersionRuntime) || 'noglibc')";
    let out = probe(store, &interp.executable, &["-e", PROBE])?;
    let mut parts = out.split_whitespace();
    let (version, abi) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    Ok(Target {
        interpreter: format!("node {version} {abi} {}", interp.executable.display()),
        platform: parts.collect::<Vec<_>>().join(" "),
        installer: format!("npm {}", npm.version),
    })
}

/// The npm invocation for `specs`. An exact `NAME@VERSION` found as `npm pack`'s tarball
/// (`NAME-VERSION.tgz`, a scope's `@` dropped and `/` made `-`) in a find-links directory is
/// installed from there: offline wheelhouses work for JavaScript too.
pub(crate) fn job(npm: &Npm, interp: &Interpreter, cfg: &Resolved, specs: &[Spec]) -> Job {
    let mut mounts = Vec::new();
    if !SYSTEM_PATHS.iter().any(|s| npm.root.starts_with(s)) {
        mounts.push(Mount::same(npm.root.clone()));
    }
    let mut command = Command::new(&interp.executable)
        .arg(&npm.cli)
        .args(["install", "--prefix", ENV_MOUNT])
        .args(["--no-audit", "--no-fund", "--no-update-notifier"]);
    for (i, dir) in cfg.find_links.iter().enumerate() {
        mounts.push(Mount::read_only(dir.clone(), format!("{LINKS_MOUNT}/{i}")));
    }
    command = command.arg("--");
    for (i, s) in specs.iter().enumerate() {
        command = command.arg(match s {
            Spec::Registry(r) => match tarball(cfg, r) {
                Some(inside) => inside,
                None => r.clone(),
            },
            Spec::Remote(r) => r.clone(),
            Spec::Local { prefix, path } => {
                let inside = local_mount(i, path);
                mounts.push(Mount::read_only(path.clone(), &inside));
                format!("{prefix}file:{inside}")
            }
        });
    }
    let mut env = BTreeMap::new();
    env.insert("npm_config_cache".to_string(), CACHE_MOUNT.to_string());
    env.insert(
        "npm_config_logs_dir".to_string(),
        "/tmp/npm-logs".to_string(),
    );
    env.insert(
        "npm_config_update_notifier".to_string(),
        "false".to_string(),
    );
    env.insert("npm_config_progress".to_string(), "false".to_string());
    env.insert(
        "npm_config_userconfig".to_string(),
        "/tmp/.npmrc".to_string(),
    );
    env.insert(
        "npm_config_globalconfig".to_string(),
        "/tmp/npmrc".to_string(),
    );
    if let Some(r) = &cfg.npm_registry {
        env.insert("npm_config_registry".to_string(), r.clone());
    }
    if cfg.no_index {
        env.insert("npm_config_offline".to_string(), "true".to_string());
    }
    if let Some(ca) = host_ca_bundle() {
        env.insert("NODE_EXTRA_CA_CERTS".to_string(), ca.to_string());
    }
    Job {
        command,
        mounts,
        env,
    }
}

/// The in-sandbox path of a find-links tarball serving `spec`, if there is one.
fn tarball(cfg: &Resolved, spec: &str) -> Option<String> {
    let (name, version) = npm_exact(spec)?;
    let file = format!(
        "{}-{version}.tgz",
        name.trim_start_matches('@').replace('/', "-")
    );
    cfg.find_links
        .iter()
        .position(|d| d.join(&file).is_file())
        .map(|i| format!("{LINKS_MOUNT}/{i}/{file}"))
}
