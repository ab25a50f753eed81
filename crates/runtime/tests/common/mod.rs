//! What the runtime's integration tests share: requests, schedulers that are shut down after
//! each test, and running a test again as the unprivileged test user.
#![allow(dead_code)] // each test binary uses its own part

use airlock_runtime::{Language, RunRequest, Scheduler, SchedulerConfig};

pub fn req(lang: Language, code: &str) -> RunRequest {
    RunRequest {
        language: lang,
        code: code.as_bytes().to_vec(),
        ..RunRequest::default()
    }
}

pub fn sched(pool_size: usize) -> Scheduler {
    track(Scheduler::new(SchedulerConfig {
        pool_size,
        ..SchedulerConfig::default()
    }))
}

pub fn track(s: Scheduler) -> Scheduler {
    MADE.with(|m| m.borrow_mut().push(s.clone()));
    s
}

thread_local! {
    // Per test thread, so tests sharing one process (cargo test) never stop each other's.
    static MADE: std::cell::RefCell<Vec<Scheduler>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs a test body, then shuts every scheduler it made down, so no sandbox or cgroup of the
/// test outlives it: also when the body panics (a failing test), before the panic goes on.
pub struct Rt(pub tokio::runtime::Runtime);

impl Rt {
    pub fn block_on<F: std::future::Future<Output = ()>>(&self, f: F) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.block_on(f)));
        let all = MADE.with(|m| std::mem::take(&mut *m.borrow_mut()));
        self.0.block_on(async move {
            for s in all {
                s.shutdown().await;
            }
        });
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

pub fn rt() -> Rt {
    Rt(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap())
}

pub async fn run(s: &Scheduler, r: RunRequest) -> airlock_runtime::RunResult {
    s.run(r, Box::new(|_, _| {}))
        .await
        .expect("the run completes")
}

/// The soft open-files limit of process `pid` (`self` for this one), from its /proc limits.
pub fn open_files_limit(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .expect("Max open files in /proc/<pid>/limits")
}

/// Whether this process runs as root (its real uid, from /proc: no libc needed).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
    })
}

/// Runs this binary's ignored test `helper` as the unprivileged test user, set up by
/// `scripts/test-user.sh`. As root, runs get distinct host uids; as an ordinary user every run
/// has the same one, so what keeps runs apart must be tried there too. Called by a non-root
/// test run, does nothing: the plain variant of the test already ran unprivileged.
pub fn as_test_user(helper: &str) {
    if !is_root() {
        eprintln!("not re-run: this test process is unprivileged already");
        return;
    }
    use std::hash::{Hash, Hasher};
    let exe = std::env::current_exe().unwrap();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    exe.hash(&mut h);
    let dir = format!("/var/tmp/airlock-test-bin-{:016x}", h.finish());
    let setup = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/test-user.sh"
        ))
        .arg(&dir)
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        setup.status.success(),
        "test user setup: {}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let ask = |cmd: &str, args: &[&str]| {
        let o = std::process::Command::new(cmd).args(args).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let id = |flag: &str| ask("id", &[flag, "airlock-test"]);
    let passwd = ask("getent", &["passwd", "airlock-test"]);
    let home = passwd.split(':').nth(5).unwrap_or("/").to_string();
    let copy = format!("{dir}/{}", exe.file_name().unwrap().to_string_lossy());
    // An ordinary login's soft open-files limit, not root's (which the test process may have
    // raised): what a user's program starts with.
    let out = std::process::Command::new("prlimit")
        .args([
            "--nofile=1024:".into(),
            "--".into(),
            "setpriv".into(),
            format!("--reuid={}", id("-u")),
            format!("--regid={}", id("-g")),
            "--clear-groups".into(),
            "--".into(),
            copy,
        ])
        .args(["--exact", helper, "--ignored", "--nocapture"])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home)
        .env("USER", "airlock-test")
        // root's pyenv interpreter lives in /root, which the user cannot enter
        .env("AIRLOCK_PYTHON", "/usr/bin/python3")
        .env("AIRLOCK_CGROUP_PARENT", "airlock-test-user")
        // The installer, published by test-user.sh (root's lives where the user cannot enter)
        .env("AIRLOCK_UV", format!("{dir}/uv"))
        .current_dir("/")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{helper} as the test user:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Three tests for one isolation claim: as whoever runs the tests, as the unprivileged test
/// user when that is root, and the ignored helper the second one runs.
#[macro_export]
macro_rules! as_us_and_the_test_user {
    ($test:ident, $as_user:ident, $helper:ident, $body:ident) => {
        #[test]
        fn $test() {
            $body();
        }

        #[test]
        fn $as_user() {
            as_test_user(stringify!($helper));
        }

        #[test]
        #[ignore = "helper: run as the test user by its `_as_the_test_user` test"]
        fn $helper() {
            assert!(!is_root(), "must run unprivileged");
            $body();
        }
    };
}

/// Processes descending from this test process (other tests run in parallel processes).
pub fn our_descendants() -> Vec<(i32, i32, String, String)> {
    let all: Vec<(i32, i32, String, String)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter_map(|pid: i32| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let ppid = status
                .lines()
                .find_map(|l| l.strip_prefix("PPid:\t"))?
                .parse()
                .ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some((
                pid,
                ppid,
                comm.trim().to_string(),
                String::from_utf8_lossy(&cmd).into_owned(),
            ))
        })
        .collect();
    let mut ours = vec![std::process::id() as i32];
    let mut found = Vec::new();
    loop {
        let next: Vec<_> = all
            .iter()
            .filter(|p| ours.contains(&p.1) && !ours.contains(&p.0))
            .cloned()
            .collect();
        if next.is_empty() {
            return found;
        }
        ours.extend(next.iter().map(|p| p.0));
        found.extend(next);
    }
}

/// A wheelhouse holding one pure-Python wheel (`name` 1.0, whose `__init__.py` is `init`) and
/// a store of its own; removed on drop.
pub struct Wheelhouse {
    pub dir: std::path::PathBuf,
}

impl Wheelhouse {
    pub fn new(tag: &str, name: &str, init: &str) -> Wheelhouse {
        let dir = std::env::temp_dir().join(format!("airlock-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("links")).unwrap();
        let writer = r#"
import base64, hashlib, sys, zipfile
directory, name, init = sys.argv[1:]
dist = f"{name}-1.0.dist-info"
files = {f"{name}/__init__.py": init,
         f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
         f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: airlock-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
record = []
for path, text in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
    record.append(f"{path},sha256={digest},{len(text.encode())}")
files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
with zipfile.ZipFile(f"{directory}/{name}-1.0-py3-none-any.whl", "w") as z:
    for path, text in files.items():
        z.writestr(path, text)
"#;
        let made = std::process::Command::new("python3")
            .args(["-c", writer])
            .arg(dir.join("links"))
            .args([name, init])
            .status()
            .unwrap();
        assert!(made.success(), "writing the test wheel");
        Wheelhouse { dir }
    }

    /// A request for `code` with the wheel's package, installed from this wheelhouse alone.
    pub fn request(&self, name: &str, code: &str, trusted: bool) -> RunRequest {
        RunRequest {
            packages: vec![format!("{name}==1.0")],
            trust_packages: trusted,
            package_config: airlock_runtime::PackageConfig {
                home: Some(self.dir.join("store")),
                find_links: vec![self.dir.join("links")],
                no_index: true,
                ..Default::default()
            },
            ..req(Language::Python, code)
        }
    }
}

impl Drop for Wheelhouse {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
