//! Where each language's interpreter lives on the host, and what of the host it needs inside a
//! sandbox: its executable and, when it lives outside `/usr` (pyenv, nvm, a venv's base), its
//! own prefix — never the rest of the home directory around it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::diagnose::Language;
use crate::error::RuntimeError;

/// A located interpreter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interpreter {
    /// Real path of the executable (symlinks and shims resolved).
    pub executable: PathBuf,
    /// Host directories bound read-only at the same path, beyond the system ones.
    pub prefix: Option<PathBuf>,
}

/// System paths every sandbox gets read-only. Symlinks (merged /usr) are reproduced as symlinks.
pub const SYSTEM_PATHS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32",
];

/// Where the program's code is placed inside the sandbox.
pub fn code_path(lang: Language) -> &'static str {
    match lang {
        Language::Python => "/airlock/main.py",
        Language::JavaScript => "/airlock/main.js",
        Language::Shell => "/airlock/main.sh",
    }
}

pub fn name(lang: Language) -> &'static str {
    match lang {
        Language::Python => "python",
        Language::JavaScript => "javascript",
        Language::Shell => "shell",
    }
}

/// Parses a language name as given by a user (`python`, `py`, `javascript`, `js`, `node`, `shell`, `bash`, `sh`).
pub fn parse(name: &str) -> Option<Language> {
    match name.to_ascii_lowercase().as_str() {
        "python" | "python3" | "py" => Some(Language::Python),
        "javascript" | "js" | "node" => Some(Language::JavaScript),
        "shell" | "bash" | "sh" => Some(Language::Shell),
        _ => None,
    }
}

/// The language a file name implies.
pub fn from_extension(path: &Path) -> Option<Language> {
    match path.extension()?.to_str()? {
        "py" => Some(Language::Python),
        "js" | "mjs" | "cjs" => Some(Language::JavaScript),
        "sh" | "bash" => Some(Language::Shell),
        _ => None,
    }
}

/// The interpreter for `lang`, located once per process.
pub fn locate(lang: Language) -> Result<&'static Interpreter, RuntimeError> {
    static PY: OnceLock<Result<Interpreter, String>> = OnceLock::new();
    static JS: OnceLock<Result<Interpreter, String>> = OnceLock::new();
    static SH: OnceLock<Result<Interpreter, String>> = OnceLock::new();
    let (cell, env, default) = match lang {
        Language::Python => (&PY, "AIRLOCK_PYTHON", "python3"),
        Language::JavaScript => (&JS, "AIRLOCK_NODE", "node"),
        Language::Shell => (&SH, "AIRLOCK_BASH", "bash"),
    };
    cell.get_or_init(|| {
        let wanted = std::env::var_os(env)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(default));
        find(lang, &wanted).map_err(|why| format!("{why} (set {env} to the interpreter's path)"))
    })
    .as_ref()
    .map_err(|why| RuntimeError::Interpreter {
        language: name(lang),
        why: why.clone(),
    })
}

fn find(lang: Language, wanted: &Path) -> Result<Interpreter, String> {
    let on_path = if wanted.components().count() > 1 {
        wanted.to_path_buf()
    } else {
        which(wanted).ok_or_else(|| format!("`{}` is not on PATH", wanted.display()))?
    };
    let mut exe =
        std::fs::canonicalize(&on_path).map_err(|e| format!("{}: {e}", on_path.display()))?;
    if lang == Language::Python && is_script(&exe) {
        // A shim (pyenv, asdf) is a script that picks the real interpreter: ask it, once per
        // process, and for pyenv's once until its choice can have changed.
        let store = crate::environment::PackageConfig::default()
            .store_root()
            .ok();
        let cwd = crate::shim::working_directory();
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        exe = crate::shim::resolve(&exe, store.as_deref(), &cwd, &env, ask_python)?;
    }
    let prefix = prefix_of(&exe);
    if let Some(p) = &prefix
        && is_home(p)
    {
        // Binding this "prefix" would expose the whole home directory around the interpreter.
        return Err(format!(
            "{} lives directly in the home directory {}; use an interpreter installed in its own prefix",
            exe.display(),
            p.display()
        ));
    }
    Ok(Interpreter {
        prefix,
        executable: exe,
    })
}

fn which(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn is_script(p: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 2];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == b"#!"
}

fn ask_python(shim: &Path) -> Result<PathBuf, String> {
    let out = Command::new(shim)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .map_err(|e| format!("running {}: {e}", shim.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            shim.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let exe = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    std::fs::canonicalize(&exe).map_err(|e| format!("{}: {e}", exe.display()))
}

/// A home directory (or the directory holding them), which must never be bound whole.
fn is_home(p: &Path) -> bool {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    p == Path::new("/root")
        || p == Path::new("/home")
        || p.parent() == Some(Path::new("/home"))
        || home.is_some_and(|h| h == p)
}

/// The interpreter's own installation directory when it lives outside the system paths:
/// `<prefix>/bin/<exe>` gives `<prefix>`.
fn prefix_of(exe: &Path) -> Option<PathBuf> {
    if SYSTEM_PATHS.iter().any(|s| exe.starts_with(s)) {
        return None;
    }
    let bin = exe.parent()?;
    match bin.file_name()?.to_str()? {
        "bin" => bin.parent().map(Path::to_path_buf),
        _ => Some(bin.to_path_buf()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_only_the_interpreters_own() {
        assert_eq!(prefix_of(Path::new("/usr/bin/python3.11")), None);
        assert_eq!(
            prefix_of(Path::new("/home/u/.pyenv/versions/3.11.7/bin/python3.11")),
            Some(PathBuf::from("/home/u/.pyenv/versions/3.11.7"))
        );
        assert_eq!(
            prefix_of(Path::new("/opt/node/node")),
            Some(PathBuf::from("/opt/node"))
        );
    }

    #[test]
    fn names_and_extensions() {
        assert_eq!(parse("JS"), Some(Language::JavaScript));
        assert_eq!(parse("ruby"), None);
        assert_eq!(from_extension(Path::new("a/b.py")), Some(Language::Python));
        assert_eq!(from_extension(Path::new("x.txt")), None);
    }
}
