//! A pyenv shim's answer, remembered across processes.
//!
//! `python3` on a pyenv host is a shell script that picks the interpreter every time it runs.
//! Asking it which interpreter it stands for (`sys.executable`) costs a bash, pyenv's own
//! scripts and a Python start: about 120 ms, three times what the cold sandbox around the run
//! costs, paid by every `airlock run`. So the answer is kept in the store, under a digest of
//! everything pyenv decides by: the shim itself and pyenv's own script, the variables it reads,
//! the version file it would find (with its content), the installed versions and whether each
//! has the program, the program on `PATH` (the `system` version), and the hooks of pyenv and its
//! plugins. A change to any of them asks the shim again. So does an answer that is no longer an
//! executable in pyenv's versions or the system's paths, or a remembered one that someone else
//! could have written. Shims of other version managers, and pyenv set up with `PYENV_DIR` or
//! `PYENV_HOOK_PATH`, are asked every time.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::language::SYSTEM_PATHS;

/// What pyenv reads from the environment to choose (`PATH` for the `system` version, `HOME` to
/// expand it).
const PYENV_VARIABLES: &[&str] = &["PYENV_VERSION", "PATH", "HOME"];
/// Settings whose effect is not worth following: with one of them set, the shim is asked.
const PYENV_UNFOLLOWED: &[&str] = &["PYENV_DIR", "PYENV_HOOK_PATH"];
/// Where pyenv looks for hooks besides its plugins (`pyenv hooks`).
const PYENV_HOOK_DIRS: &[&str] = &[
    "/usr/etc/pyenv.d",
    "/usr/local/etc/pyenv.d",
    "/etc/pyenv.d",
    "/usr/lib/pyenv/hooks",
];

/// The interpreter `shim` stands for: remembered in `store` (its `probes` directory) when the
/// shim is pyenv's and nothing it decides by has changed, else `ask`ed and remembered.
/// `cwd` is the working directory as the shell names it (`working_directory`).
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
    let probes = store.join("probes");
    let cached = probes.join(format!("pyenv-{name}"));
    if let Some(exe) = remembered(&probes, &cached, &root) {
        return Ok(exe);
    }
    let exe = ask(shim)?;
    if plausible(&exe, &root) && crate::environment::Store::open(store).is_ok() {
        let bytes = exe.as_os_str().as_encoded_bytes();
        let _ = crate::environment::write_replacing(&cached, bytes, 0o600);
    }
    Ok(exe)
}

/// The working directory as the shell names it, which is what pyenv walks up from: `$PWD` when
/// it names the same directory as the kernel's (through symlinks, say), else the kernel's.
pub(crate) fn working_directory() -> PathBuf {
    let real = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let same = |a: &Path, b: &Path| match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    match std::env::var_os("PWD").map(PathBuf::from) {
        Some(pwd) if pwd.is_absolute() && same(&pwd, &real) => pwd,
        _ => real,
    }
}

/// A remembered answer, if it is still one: in a file only we could have written (ours, in a
/// directory of ours, writable by no one else), canonical, and plausible.
fn remembered(probes: &Path, cached: &Path, root: &Path) -> Option<PathBuf> {
    let me = jail::probe::effective_uid();
    let ours =
        |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.uid() == me && m.mode() & 0o022 == 0);
    if !ours(probes) || !ours(cached) {
        return None;
    }
    let text = fs::read_to_string(cached).ok()?;
    let exe = PathBuf::from(text.trim_end_matches('\n'));
    (fs::canonicalize(&exe).ok()? == exe && plausible(&exe, root)).then_some(exe)
}

/// pyenv's root and everything its choice depends on, as one text; `None` when `text` is not
/// a pyenv shim, or pyenv is set up in a way this does not follow.
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
    let program = shim.file_name()?.to_str()?;
    if !root.is_absolute()
        || !text.contains(&runs_pyenv)
        || PYENV_UNFOLLOWED.iter().any(|v| env(v).is_some())
    {
        return None;
    }
    let mut id = format!("v2 {}\n{text}\n", shim.display());
    id += &format!("pyenv {}\n", identity(&root.join("libexec/pyenv")));
    for var in PYENV_VARIABLES {
        id += &format!("{var}={:?}\n", env(var));
    }
    if env("PYENV_VERSION").is_none() {
        let file = version_file(&root, cwd);
        let content = file.as_ref().and_then(|f| fs::read(f).ok());
        id += &format!("file {file:?} {content:?}\n");
    }
    // pyenv falls back to `system` when the chosen version lacks the program.
    for version in entries(&root.join("versions")) {
        let exe = root
            .join("versions")
            .join(&version)
            .join("bin")
            .join(program);
        id += &format!("version {version:?} {}\n", identity(&exe));
    }
    for dir in env("PATH").unwrap_or_default().split(':') {
        id += &format!("path {dir:?} {}\n", identity(&Path::new(dir).join(program)));
    }
    let mut hooks: Vec<PathBuf> = PYENV_HOOK_DIRS.iter().map(PathBuf::from).collect();
    hooks.push(root.join("pyenv.d"));
    for plugin in entries(&root.join("plugins")) {
        hooks.push(root.join("plugins").join(plugin).join("etc/pyenv.d"));
    }
    for dir in hooks {
        id += &format!("hooks {dir:?}\n");
        tree(&dir, &mut id, 3);
    }
    Some((root, id))
}

/// The file pyenv takes the version from (`pyenv version-file`): the nearest `.python-version`
/// from the working directory up, else the global one, if any.
fn version_file(root: &Path, cwd: &Path) -> Option<PathBuf> {
    cwd.ancestors()
        .map(|d| d.join(".python-version"))
        .find(|f| f.is_file())
        .or_else(|| Some(root.join("version")).filter(|f| f.is_file()))
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

/// Every file below `dir` (to `depth` levels) with its identity, appended to `id`.
fn tree(dir: &Path, id: &mut String, depth: u32) {
    for name in entries(dir) {
        let p = dir.join(&name);
        *id += &format!("  {} {}\n", p.display(), identity(&p));
        if depth > 0 && p.is_dir() {
            tree(&p, id, depth - 1);
        }
    }
}

/// Device, inode, size and modification time, or `-` when it is missing: what changes when a
/// file is written, replaced, created or removed.
fn identity(p: &Path) -> String {
    match fs::metadata(p) {
        Ok(m) => format!(
            "{} {} {} {}.{}",
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec()
        ),
        Err(_) => "-".into(),
    }
}

/// Whether `exe` can be what a pyenv shim under `root` stands for: an executable file in one of
/// its versions or in the system's paths (its `system` version), named without `..`. A
/// remembered answer that is not is asked again, and an answer that is not is not remembered.
fn plausible(exe: &Path, root: &Path) -> bool {
    use std::path::Component;
    let inside =
        exe.starts_with(root.join("versions")) || SYSTEM_PATHS.iter().any(|s| exe.starts_with(s));
    inside
        && exe.is_absolute()
        && exe
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && fs::metadata(exe).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

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
            self.resolve_in(&self.project, vars, answer)
        }

        fn resolve_in(
            &self,
            cwd: &Path,
            vars: &BTreeMap<&str, &str>,
            answer: &Path,
        ) -> (PathBuf, bool) {
            let asked = Cell::new(false);
            let env = |k: &str| vars.get(k).map(|v| v.to_string());
            let exe = resolve(&self.shim, Some(&self.store), cwd, &env, |_| {
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
        // A version that lacks the program (pyenv then falls back to `system`) gains it.
        let partial = h.root.join("versions/3.13.0/bin");
        fs::create_dir_all(&partial).unwrap();
        assert_eq!(h.resolve(&none, &old), (old.clone(), false));
        fs::write(partial.join("python3"), "").unwrap();
        assert_eq!(h.resolve(&none, &old), (old.clone(), true));
        // A hook is added to a plugin.
        let hooks = h.root.join("plugins/pyenv-virtualenv/etc/pyenv.d/which");
        fs::create_dir_all(&hooks).unwrap();
        assert_eq!(h.resolve(&none, &old), (old.clone(), true));
        fs::write(hooks.join("envs.bash"), "").unwrap();
        assert_eq!(h.resolve(&none, &old), (old.clone(), true));
        assert_eq!(h.resolve(&none, &old), (old.clone(), false));
        // The global version, once no local file is nearer.
        fs::remove_file(h.dir.join("project/.python-version")).unwrap();
        fs::write(h.root.join("version"), "3.12.1\n").unwrap();
        assert_eq!(h.resolve(&none, &new), (new.clone(), true));
        assert_eq!(h.resolve(&none, &new), (new, false));
    }

    #[test]
    fn a_remembered_answer_that_is_not_plausible_or_not_ours_is_asked_again() {
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
        // Writable by others.
        assert!(h.resolve(&none, &exe).1);
        let probe = fs::read_dir(h.store.join("probes"))
            .unwrap()
            .flatten()
            .next()
            .unwrap();
        let probe = probe.path();
        assert_eq!(fs::metadata(&probe).unwrap().mode() & 0o777, 0o600);
        assert!(!h.resolve(&none, &exe).1);
        fs::set_permissions(&probe, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(h.resolve(&none, &exe).1);
        assert!(!h.resolve(&none, &exe).1);
        // `..` out of the versions, to that same executable elsewhere.
        let dotted = h.root.join("versions/../../secrets/bin/python3");
        assert!(dotted.exists());
        fs::write(&probe, dotted.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(h.resolve(&none, &exe), (exe.clone(), true));
        // Nor is such an answer from the shim remembered.
        fs::remove_dir_all(h.store.join("probes")).unwrap();
        assert_eq!(h.resolve(&none, &dotted), (dotted.clone(), true));
        assert_eq!(h.resolve(&none, &dotted), (dotted, true));
        // An interpreter that is gone is asked again.
        assert!(h.resolve(&none, &exe).1);
        fs::remove_file(&exe).unwrap();
        let other = h.exe("3.12.1");
        assert_eq!(h.resolve(&none, &other), (other, true));
    }

    #[test]
    fn the_version_file_is_found_from_the_directory_as_the_shell_names_it() {
        let h = Host::new("logical");
        let none = BTreeMap::new();
        // `a/link` is `b`: from `a/link/sub` pyenv reads `a/.python-version`, from `b/sub`
        // the global version, though both are the same directory.
        let (a, b) = (h.dir.join("a"), h.dir.join("b"));
        fs::create_dir_all(b.join("sub")).unwrap();
        fs::create_dir_all(&a).unwrap();
        std::os::unix::fs::symlink(&b, a.join("link")).unwrap();
        fs::write(a.join(".python-version"), "3.12.1\n").unwrap();
        let (new, old) = (h.exe("3.12.1"), h.exe("3.11.7"));
        let via_link = a.join("link/sub");
        assert_eq!(h.resolve_in(&via_link, &none, &new), (new.clone(), true));
        assert_eq!(
            h.resolve_in(&b.join("sub"), &none, &old),
            (old.clone(), true)
        );
        assert_eq!(h.resolve_in(&via_link, &none, &new), (new, false));
        assert_eq!(h.resolve_in(&b.join("sub"), &none, &old), (old, false));
    }

    #[test]
    fn pyenv_set_up_with_pyenv_dir_or_a_hook_path_is_asked_every_time() {
        let h = Host::new("unfollowed");
        let exe = h.exe("3.11.7");
        for var in PYENV_UNFOLLOWED {
            let vars = BTreeMap::from([(*var, "/somewhere")]);
            assert!(h.resolve(&vars, &exe).1);
            assert!(h.resolve(&vars, &exe).1);
        }
        assert!(!h.store.join("probes").exists());
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
