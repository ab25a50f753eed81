//! A pyenv shim's answer, remembered across processes.
//!
//! `python3` on a pyenv host is a shell script that picks the interpreter every time it runs.
//! Asking it which interpreter it stands for (`sys.executable`) costs a bash, pyenv's own
//! scripts and a Python start: about 120 ms, three times what the cold sandbox around the run
//! costs, paid by every `airlock run`. So the answer is kept in the store, under a digest of
//! everything pyenv decides by: the shim itself, the variables it reads, the version file it
//! would find (with its content), and the names of the installed versions and plugins. A change
//! to any of them asks the shim again, and so does an answer that is no longer an executable in
//! pyenv's versions or the system's paths. Shims of other version managers are asked every time.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::language::SYSTEM_PATHS;

/// What pyenv reads from the environment to choose (`PATH` for the `system` version).
const PYENV_VARIABLES: &[&str] = &["PYENV_VERSION", "PYENV_DIR", "PATH"];

/// The interpreter `shim` stands for: remembered in `store` (its `probes` directory) when the
/// shim is pyenv's and nothing it decides by has changed, else `ask`ed and remembered.
pub(crate) fn resolve(
    shim: &Path,
    store: Option<&Path>,
    cwd: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    ask: impl FnOnce(&Path) -> Result<PathBuf, String>,
) -> Result<PathBuf, String> {
    let Some((root, id)) = fs::read_to_string(shim)
        .ok()
        .and_then(|text| evidence(shim, &text, cwd, env))
    else {
        return ask(shim);
    };
    let Some(store) = store else {
        return ask(shim);
    };
    let digest = Sha256::digest(id.as_bytes());
    let name: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let cached = store.join("probes").join(format!("pyenv-{name}"));
    if let Ok(v) = fs::read_to_string(&cached) {
        let exe = PathBuf::from(v.trim());
        if plausible(&exe, &root) {
            return Ok(exe);
        }
    }
    let exe = ask(shim)?;
    if plausible(&exe, &root) && fs::create_dir_all(store.join("probes")).is_ok() {
        let tmp = cached.with_extension(format!("tmp{}", std::process::id()));
        if fs::write(&tmp, exe.as_os_str().as_encoded_bytes()).is_ok() {
            let _ = fs::rename(&tmp, &cached);
        }
    }
    Ok(exe)
}

/// pyenv's root and everything its choice depends on, as one text; `None` when `text` is not
/// a pyenv shim.
fn evidence(
    shim: &Path,
    text: &str,
    cwd: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<(PathBuf, String)> {
    let root = text.lines().find_map(|l| {
        let v = l.trim().strip_prefix("export PYENV_ROOT=\"")?;
        v.strip_suffix('"').map(PathBuf::from)
    })?;
    let runs_pyenv = format!("\"{}/libexec/pyenv\" exec ", root.display());
    if !root.is_absolute() || !text.contains(&runs_pyenv) {
        return None;
    }
    let mut id = format!("v1 {}\n{text}\n", shim.display());
    for var in PYENV_VARIABLES {
        id += &format!("{var}={:?}\n", env(var));
    }
    if env("PYENV_VERSION").is_none() {
        let file = version_file(&root, cwd, env("PYENV_DIR").map(PathBuf::from));
        let content = file.as_ref().and_then(|f| fs::read(f).ok());
        id += &format!("file {file:?} {content:?}\n");
    }
    for dir in ["versions", "plugins"] {
        id += &format!("{dir} {:?}\n", entries(&root.join(dir)));
    }
    Some((root, id))
}

/// The names in `dir`, sorted (installing or removing a version or plugin changes them).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The file pyenv takes the version from (`pyenv version-file`): the nearest `.python-version`
/// from `PYENV_DIR`, then from the working directory, else the global one, if any.
fn version_file(root: &Path, cwd: &Path, pyenv_dir: Option<PathBuf>) -> Option<PathBuf> {
    let nearest = |start: &Path| {
        start
            .ancestors()
            .map(|d| d.join(".python-version"))
            .find(|f| f.is_file())
    };
    pyenv_dir
        .as_deref()
        .and_then(nearest)
        .or_else(|| nearest(cwd))
        .or_else(|| Some(root.join("version")).filter(|f| f.is_file()))
}

/// Whether `exe` can be what a pyenv shim under `root` stands for: an executable file in one of
/// its versions or in the system's paths (its `system` version). A remembered answer that is
/// not is asked again.
fn plausible(exe: &Path, root: &Path) -> bool {
    let inside =
        exe.starts_with(root.join("versions")) || SYSTEM_PATHS.iter().any(|s| exe.starts_with(s));
    inside
        && exe.is_absolute()
        && fs::metadata(exe).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::BTreeMap;

    struct Host {
        dir: PathBuf,
        root: PathBuf,
        shim: PathBuf,
        store: PathBuf,
        project: PathBuf,
    }

    impl Host {
        fn new(name: &str) -> Host {
            let dir = std::env::temp_dir().join(format!("shim-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            let root = dir.join("pyenv");
            for v in ["3.11.7", "3.12.1"] {
                let bin = root.join("versions").join(v).join("bin");
                fs::create_dir_all(&bin).unwrap();
                fs::write(bin.join("python3"), "").unwrap();
                fs::set_permissions(bin.join("python3"), fs::Permissions::from_mode(0o755))
                    .unwrap();
            }
            fs::create_dir_all(root.join("plugins")).unwrap();
            fs::create_dir_all(root.join("shims")).unwrap();
            fs::write(root.join("version"), "3.11.7\n").unwrap();
            let shim = root.join("shims/python3");
            let text = format!(
                "#!/usr/bin/env bash\nset -e\nprogram=\"${{0##*/}}\"\n\nexport PYENV_ROOT=\"{r}\"\nexec \"{r}/libexec/pyenv\" exec \"$program\" \"$@\"\n",
                r = root.display()
            );
            fs::write(&shim, text).unwrap();
            let project = dir.join("project/src");
            fs::create_dir_all(&project).unwrap();
            let store = dir.join("store");
            Host {
                dir,
                root,
                shim,
                store,
                project,
            }
        }

        fn exe(&self, version: &str) -> PathBuf {
            self.root.join("versions").join(version).join("bin/python3")
        }

        /// Resolves as pyenv would say `answer`; returns what came out and whether it asked.
        fn resolve(&self, vars: &BTreeMap<&str, &str>, answer: &Path) -> (PathBuf, bool) {
            let asked = Cell::new(false);
            let env = |k: &str| vars.get(k).map(|v| v.to_string());
            let exe = resolve(&self.shim, Some(&self.store), &self.project, &env, |_| {
                asked.set(true);
                Ok(answer.to_path_buf())
            })
            .unwrap();
            (exe, asked.get())
        }
    }

    impl Drop for Host {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn a_pyenv_shim_is_asked_once_until_what_pyenv_decides_by_changes() {
        let h = Host::new("pyenv");
        let none = BTreeMap::new();
        let old = h.exe("3.11.7");
        assert_eq!(h.resolve(&none, &old), (old.clone(), true));
        assert_eq!(h.resolve(&none, &old), (old.clone(), false));

        // A local version file nearer than the global one.
        let new = h.exe("3.12.1");
        fs::write(h.dir.join("project/.python-version"), "3.12.1\n").unwrap();
        assert_eq!(h.resolve(&none, &new), (new.clone(), true));
        assert_eq!(h.resolve(&none, &new), (new.clone(), false));
        // Its content changes.
        fs::write(h.dir.join("project/.python-version"), "3.11.7\n").unwrap();
        assert_eq!(h.resolve(&none, &old), (old.clone(), true));
        // A version is installed.
        fs::create_dir_all(h.root.join("versions/3.13.0")).unwrap();
        assert_eq!(h.resolve(&none, &old), (old.clone(), true));
        // A plugin is installed.
        fs::create_dir_all(h.root.join("plugins/pyenv-virtualenv")).unwrap();
        assert_eq!(h.resolve(&none, &old), (old.clone(), true));
        assert_eq!(h.resolve(&none, &old), (old.clone(), false));
        // The variables pyenv reads.
        let pinned = BTreeMap::from([("PYENV_VERSION", "3.12.1")]);
        assert_eq!(h.resolve(&pinned, &new), (new.clone(), true));
        assert_eq!(h.resolve(&pinned, &new), (new.clone(), false));
        let path = BTreeMap::from([("PATH", "/usr/bin")]);
        assert_eq!(h.resolve(&path, &old), (old.clone(), true));
        // The global version, once no local file is nearer.
        fs::remove_file(h.dir.join("project/.python-version")).unwrap();
        fs::write(h.root.join("version"), "3.12.1\n").unwrap();
        assert_eq!(h.resolve(&none, &new), (new.clone(), true));
        assert_eq!(h.resolve(&none, &new), (new, false));
    }

    #[test]
    fn a_remembered_answer_outside_the_versions_and_system_paths_is_asked_again() {
        let h = Host::new("tampered");
        let none = BTreeMap::new();
        let exe = h.exe("3.11.7");
        assert!(h.resolve(&none, &exe).1);
        let probes: Vec<_> = fs::read_dir(h.store.join("probes"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(probes.len(), 1);
        // Pointing it at an executable elsewhere, whose directory a sandbox would then get.
        let elsewhere = h.dir.join("secrets/bin/python3");
        fs::create_dir_all(elsewhere.parent().unwrap()).unwrap();
        fs::write(&elsewhere, "").unwrap();
        fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(probes[0].path(), elsewhere.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(h.resolve(&none, &exe), (exe.clone(), true));
        // Nor is a wrong answer from the shim itself remembered.
        fs::remove_file(probes[0].path()).unwrap();
        assert_eq!(h.resolve(&none, &elsewhere), (elsewhere.clone(), true));
        assert_eq!(h.resolve(&none, &elsewhere), (elsewhere, true));
        // An interpreter that is gone is asked again.
        assert!(h.resolve(&none, &exe).1);
        fs::remove_file(&exe).unwrap();
        let other = h.exe("3.12.1");
        assert_eq!(h.resolve(&none, &other), (other, true));
    }

    #[test]
    fn other_shims_are_asked_every_time() {
        let h = Host::new("asdf");
        fs::write(
            &h.shim,
            "#!/usr/bin/env bash\nexec asdf exec \"python3\" \"$@\"\n",
        )
        .unwrap();
        let none = BTreeMap::new();
        let exe = h.exe("3.11.7");
        assert!(h.resolve(&none, &exe).1);
        assert!(h.resolve(&none, &exe).1);
        assert!(!h.store.join("probes").exists());
    }
}
