//! Test harness: run the real `airlock` binary as root and as an unprivileged user.
//!
//! As root, the setup creates the user `airlock-test`, plants marker secrets in both homes and
//! in host `/tmp`, copies the binary where that user can execute it, and delegates a cgroup
//! subtree to it (the way an administrator would), so both identities run the full profile.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

pub const TEST_USER: &str = "airlock-test";
pub const ROOT_MARKER: &str = "/root/airlock-marker-secret";
pub const TMP_MARKER: &str = "/tmp/airlock-host-marker";
pub const SECRET: &str = "AIRLOCK-HOST-SECRET-7f3a9c";
pub const ENV_SECRET_NAME: &str = "AIRLOCK_TEST_HOST_SECRET";
/// Relative cgroup parent delegated to the test user.
pub const USER_CGROUP: &str = "airlock-test-user";
/// Where the unprivileged user finds the binary (the checkout may sit in a private home); one
/// directory per checkout, so two checkouts testing at once do not swap binaries.
fn user_bin_dir() -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bin().hash(&mut h);
    format!("/var/tmp/airlock-test-bin-{:016x}", h.finish())
}

#[derive(Clone, Debug)]
pub enum Who {
    Root,
    User { uid: u32, gid: u32, home: PathBuf },
}

impl Who {
    pub fn home(&self) -> PathBuf {
        match self {
            Who::Root => PathBuf::from("/root"),
            Who::User { home, .. } => home.clone(),
        }
    }
    pub fn home_marker(&self) -> PathBuf {
        self.home().join("airlock-marker-secret")
    }
    pub fn is_root(&self) -> bool {
        matches!(self, Who::Root)
    }
}

pub fn is_root() -> bool {
    // Reading our own status avoids needing libc in the tests.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_airlock"))
}

fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("sh runs")
}

fn id_of(user: &str, flag: &str) -> Option<u32> {
    let o = Command::new("id").arg(flag).arg(user).output().ok()?;
    String::from_utf8_lossy(&o.stdout).trim().parse().ok()
}

/// One-time, idempotent host setup, serialized across test processes with flock.
fn setup() -> &'static Option<Who> {
    static USER: OnceLock<Option<Who>> = OnceLock::new();
    USER.get_or_init(|| {
        if !is_root() {
            return None;
        }
        // The binary goes where the user can execute it (the checkout may sit in a private home).
        let out = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../scripts/test-user.sh"
            ))
            .arg(user_bin_dir())
            .arg(bin())
            .env("AIRLOCK_TEST_SECRET", SECRET)
            .env("AIRLOCK_TEST_ROOT_MARKER", ROOT_MARKER)
            .env("AIRLOCK_TEST_TMP_MARKER", TMP_MARKER)
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "test setup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let uid = id_of(TEST_USER, "-u").expect("test user exists");
        let gid = id_of(TEST_USER, "-g").expect("test user exists");
        let home = String::from_utf8_lossy(
            &sh(&format!("getent passwd {TEST_USER} | cut -d: -f6")).stdout,
        )
        .trim()
        .to_owned();
        Some(Who::User {
            uid,
            gid,
            home: PathBuf::from(home),
        })
    })
}

/// The identities to test under: root (when we are root) and an unprivileged user.
pub fn identity(root: bool) -> Option<Who> {
    if root {
        if !is_root() {
            eprintln!("skipped: the root variant needs the tests to run as root");
            return None;
        }
        setup();
        return Some(Who::Root);
    }
    match setup() {
        Some(u) => Some(u.clone()),
        None => {
            // Not root: we are the unprivileged user ourselves.
            let uid = id_of(&std::env::var("USER").unwrap_or_default(), "-u").unwrap_or(0);
            Some(Who::User {
                uid,
                gid: uid,
                home: std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_default(),
            })
        }
    }
}

/// The `airlock` command for `who`, with a host secret in its environment.
pub fn airlock(who: &Who) -> Command {
    let mut cmd = match who {
        Who::Root => Command::new(bin()),
        Who::User { uid, gid, home } if is_root() => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(format!("{}/airlock", user_bin_dir()));
            c.env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .env("HOME", home)
                .env("USER", TEST_USER)
                // The root-owned pyenv interpreter lives in /root, which this user cannot enter.
                .env("AIRLOCK_PYTHON", "/usr/bin/python3")
                .env("AIRLOCK_CGROUP_PARENT", USER_CGROUP)
                .env("AIRLOCK_UV", format!("{}/uv", user_bin_dir()))
                .current_dir("/");
            c
        }
        Who::User { .. } => Command::new(bin()),
    };
    cmd.env(ENV_SECRET_NAME, SECRET);
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `airlock run --json` with `args` and returns the parsed result and the exit code.
pub fn run_json(who: &Who, args: &[&str]) -> (Value, i32) {
    let out = airlock(who)
        .arg("run")
        .arg("--json")
        .args(args)
        .output()
        .expect("airlock runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "airlock printed no JSON ({e}): stdout={text:?} stderr={:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out.status.code().unwrap_or(-1))
}

/// Runs Python code and returns the result, asserting the sandbox itself worked.
pub fn py(who: &Who, code: &str) -> Value {
    py_with(who, &[], code)
}

pub fn py_with(who: &Who, args: &[&str], code: &str) -> Value {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--lang", "python", "-c", code]);
    let (v, _) = run_json(who, &all);
    assert_ne!(v["status"], "sandbox_error", "sandbox failed: {v}");
    v
}

pub fn sh_in(who: &Who, args: &[&str], code: &str) -> Value {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--lang", "shell", "-c", code]);
    let (v, _) = run_json(who, &all);
    assert_ne!(v["status"], "sandbox_error", "sandbox failed: {v}");
    v
}

pub fn stdout(v: &Value) -> String {
    v["stdout"].as_str().unwrap_or_default().to_owned()
}

/// Asserts the run succeeded and returns its stdout.
pub fn ok_stdout(v: &Value) -> String {
    assert_eq!(v["status"], "ok", "run failed: {v}");
    stdout(v)
}

/// A host directory the sandbox user can write through a bind, removed on drop.
pub struct HostDir(pub PathBuf);

impl HostDir {
    pub fn new(tag: &str) -> HostDir {
        let p = std::env::temp_dir().join(format!("airlock-it-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o777)).unwrap();
        HostDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn write(&self, name: &str, data: &str) -> PathBuf {
        let p = self.0.join(name);
        fs::File::create(&p)
            .unwrap()
            .write_all(data.as_bytes())
            .unwrap();
        p
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A fresh environment store directory (`AIRLOCK_HOME`) for `who`, owned by them.
pub fn store_dir(who: &Who, kind: &str, tag: &str) -> PathBuf {
    let id = if who.is_root() { "root" } else { "user" };
    let dir = PathBuf::from(format!(
        "/var/tmp/airlock-{kind}-{tag}-{id}-{}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    if let Who::User { uid, gid, .. } = who
        && is_root()
    {
        std::os::unix::fs::chown(&dir, Some(*uid), Some(*gid)).unwrap();
    }
    dir
}

/// Generates `root` and `user` test variants of one attack.
#[macro_export]
macro_rules! both {
    ($name:ident, |$who:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn body($who: &$crate::common::Who) $body
            #[test]
            fn as_root() {
                if let Some(w) = $crate::common::identity(true) {
                    body(&w)
                }
            }
            #[test]
            fn as_user() {
                if let Some(w) = $crate::common::identity(false) {
                    body(&w)
                }
            }
        }
    };
}
