//! Dependency environments, offline: every package comes from a wheelhouse or an npm tarball
//! that the test builds itself, installed with the index switched off (`AIRLOCK_NO_INDEX`).
//! Each test gets its own store (`AIRLOCK_HOME`), so "installed once" and "nothing published"
//! are about that test alone. The registry group is `registry.rs`.

mod common;
use common::*;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Writes wheels, sdists and npm tarballs. The sdists carry an in-tree PEP 517 backend
/// (`backend-path = ["."]`, no build requirements), so building one needs no index — and its
/// `build_wheel` is arbitrary code run by the installer, which is what the evil one exploits.
const FIXTURES: &str = r#"
import base64, hashlib, io, json, os, sys, tarfile, zipfile

WHEEL_WRITER = r'''
import base64, hashlib, zipfile
def write_wheel(directory, name, version, files):
    dist = f"{name}-{version}.dist-info"
    files = dict(files)
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n"
    files[f"{dist}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: airlock-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    filename = f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(f"{directory}/{filename}", "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return filename
'''
exec(WHEEL_WRITER)

def sdist(directory, name, version, build_body):
    backend = WHEEL_WRITER + "\n" + f'''
NAME, VERSION = {name!r}, {version!r}
def get_requires_for_build_wheel(config_settings=None):
    return []
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = {{NAME + "/__init__.py": "VERSION = " + repr(VERSION) + "\\n"}}
''' + "\n".join("    " + l for l in build_body.splitlines()) + '''
    return write_wheel(wheel_directory, NAME, VERSION, files)
'''
    members = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "fixturebackend"\nbackend-path = ["."]\n\n'
                          f'[project]\nname = "{name.replace("_", "-")}"\nversion = "{version}"\n',
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n",
        "fixturebackend.py": backend,
    }
    with tarfile.open(f"{directory}/{name}-{version}.tar.gz", "w:gz") as t:
        for path, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{path}")
            info.size = len(data)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))

def npm_tarball(directory, name, version, main):
    members = {
        "package.json": json.dumps({"name": name, "version": version, "main": "index.js"}),
        "index.js": main,
    }
    with tarfile.open(f"{directory}/{name}-{version}.tgz", "w:gz") as t:
        for path, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"package/{path}")
            info.size = len(data)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))

spec = json.loads(sys.argv[1])
for item in spec:
    kind, directory = item["kind"], item["dir"]
    os.makedirs(directory, exist_ok=True)
    if kind == "wheel":
        write_wheel(directory, item["name"], item["version"],
                    {item["name"] + "/__init__.py": "VERSION = " + repr(item["version"]) + "\n"})
    elif kind == "sdist":
        sdist(directory, item["name"], item["version"], item["build"])
    elif kind == "npm":
        npm_tarball(directory, item["name"], item["version"], item["main"])
"#;

/// What the evil sdist's build does: try to take host secrets and write into host homes, and
/// record every outcome in the wheel it builds, so a run can report it.
fn evil_build(who: &Who, tag: &str) -> String {
    let reads = [
        ROOT_MARKER.to_string(),
        who.home_marker().display().to_string(),
        who.home().join(".ssh/id_ed25519").display().to_string(),
        TMP_MARKER.to_string(),
        "/etc/shadow".to_string(),
    ];
    let writes = [
        who.home().join(format!("airlock-evil-wrote-{tag}")),
        PathBuf::from(format!("/root/airlock-evil-wrote-{tag}")),
        PathBuf::from(format!("/tmp/airlock-evil-wrote-{tag}")),
    ];
    format!(
        r#"import os
report = {{"read": {{}}, "write": {{}}, "list": {{}}, "env": dict(os.environ), "uid": os.getuid()}}
for p in {reads:?}:
    try:
        report["read"][p] = "ok:" + open(p).read()
    except Exception as e:
        report["read"][p] = "err:" + type(e).__name__
for p in {writes:?}:
    try:
        with open(p, "w") as f:
            f.write("pwned")
        report["write"][p] = "ok"
    except Exception as e:
        report["write"][p] = "err:" + type(e).__name__
for d in ["/root", "/home", {home:?}]:
    try:
        report["list"][d] = sorted(os.listdir(d))
    except Exception as e:
        report["list"][d] = "err:" + type(e).__name__
files[NAME + "/report.py"] = "REPORT = " + repr(report) + "\n""#,
        writes = writes
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>(),
        home = who.home().display().to_string(),
    )
}

/// A world-readable fixture directory (the installer's uid must read it), removed on drop.
struct Fixtures(PathBuf);

impl Fixtures {
    fn new(tag: &str) -> Fixtures {
        let p = PathBuf::from(format!(
            "/var/tmp/airlock-pkgfix-{tag}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Fixtures(p)
    }
    /// A subdirectory (a wheelhouse) holding `items`.
    fn house(&self, name: &str, items: Value) -> PathBuf {
        let dir = self.0.join(name);
        fs::create_dir_all(&dir).unwrap();
        let mut items = items.as_array().unwrap().clone();
        for i in &mut items {
            i["dir"] = Value::String(dir.display().to_string());
        }
        let out = Command::new("python3")
            .arg("-c")
            .arg(FIXTURES)
            .arg(Value::Array(items).to_string())
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "building fixtures failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        open_up(&self.0);
        dir
    }
}

impl Drop for Fixtures {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn open_up(p: &Path) {
    let m = fs::metadata(p).unwrap();
    let mode = if m.is_dir() { 0o755 } else { 0o644 };
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    if m.is_dir() {
        for e in fs::read_dir(p).unwrap().flatten() {
            open_up(&e.path());
        }
    }
}

fn wheel(name: &str, version: &str) -> Value {
    serde_json::json!({"kind": "wheel", "name": name, "version": version})
}
fn sdist(name: &str, version: &str, build: &str) -> Value {
    serde_json::json!({"kind": "sdist", "name": name, "version": version, "build": build})
}
fn npm(name: &str, version: &str) -> Value {
    let main = format!("module.exports = {{ name: {name:?}, version: {version:?} }};\n");
    serde_json::json!({"kind": "npm", "name": name, "version": version, "main": main})
}

/// A store of environments for one test and identity, owned by that identity.
struct Store {
    dir: PathBuf,
    links: Vec<PathBuf>,
}

impl Store {
    fn new(who: &Who, tag: &str) -> Store {
        let dir = store_dir(who, "pkgstore", tag);
        Store {
            dir,
            links: Vec::new(),
        }
    }
    fn with_links(mut self, links: &[&Path]) -> Store {
        self.links = links.iter().map(|p| p.to_path_buf()).collect();
        self
    }
    fn airlock(&self, who: &Who) -> Command {
        let mut c = airlock(who);
        c.env("AIRLOCK_HOME", &self.dir)
            .env("AIRLOCK_NO_INDEX", "1");
        let links: Vec<String> = self.links.iter().map(|p| p.display().to_string()).collect();
        c.env("AIRLOCK_FIND_LINKS", links.join(":"));
        c
    }
    /// `airlock run --json ARGS`: the parsed output and exit code.
    fn run(&self, who: &Who, args: &[&str]) -> (Value, i32) {
        let out = self
            .airlock(who)
            .arg("run")
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        parse(&out)
    }
    fn envs(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.dir.join("envs"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn parse(out: &std::process::Output) -> (Value, i32) {
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "airlock printed no JSON ({e}): stdout={text:?} stderr={:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out.status.code().unwrap_or(-1))
}

fn ok(v: &Value) -> String {
    assert_eq!(v["status"], "ok", "run failed: {v}");
    v["stdout"].as_str().unwrap_or_default().trim().to_owned()
}

const SHOW_TINY: &str = "import airlock_tiny, sys; print(airlock_tiny.VERSION)";

both!(a_python_package_installs_once_and_is_then_a_hit, |who| {
    let fx = Fixtures::new("hit");
    let house = fx.house("house", serde_json::json!([wheel("airlock_tiny", "1.0")]));
    let store = Store::new(who, "hit").with_links(&[&house]);
    let (v, code) = store.run(who, &["-p", "airlock-tiny==1.0", "-c", SHOW_TINY]);
    assert_eq!(ok(&v), "1.0");
    assert_eq!(code, 0);
    let key = v["environment"]
        .as_str()
        .expect("an environment key")
        .to_owned();
    assert!(
        key.len() >= 16 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key}"
    );
    assert_eq!(v["environment_cached"], false, "{v}");
    assert!(v["timing"]["install_ms"].as_f64().unwrap() > 0.0);

    let (v, _) = store.run(who, &["-p", "Airlock_Tiny == 1.0", "-c", SHOW_TINY]);
    assert_eq!(ok(&v), "1.0");
    assert_eq!(
        v["environment"],
        key.as_str(),
        "the same packages, the same environment"
    );
    // The hit did no install work; its lookup time is measured, never asserted.
    assert_eq!(v["environment_cached"], true, "{v}");
    assert_eq!(store.envs(), vec![key.clone()]);

    // The environment is read-only inside the run, and only the run's own packages are there.
    let (v, _) = store.run(
        who,
        &[
            "-p",
            "airlock-tiny==1.0",
            "-c",
            "import airlock_tiny, os\n\
             try:\n    open(os.path.join(os.path.dirname(airlock_tiny.__file__), 'x'), 'w'); print('wrote')\n\
             except OSError as e: print('refused', e.errno)",
        ],
    );
    assert!(ok(&v).starts_with("refused"), "{v}");
    let (v, _) = store.run(who, &["-c", "import airlock_tiny"]);
    assert_eq!(
        v["status"], "error",
        "a run without packages sees none: {v}"
    );
    assert_eq!(v["environment"], Value::Null);
    assert_eq!(v["environment_cached"], Value::Null);

    // Without --json and with stderr not a terminal: no progress, only the program's output.
    let out = store
        .airlock(who)
        .args(["run", "-p", "airlock-tiny==1.0", "-c", SHOW_TINY])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1.0\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
});

both!(two_versions_live_side_by_side, |who| {
    let fx = Fixtures::new("side");
    let house = fx.house(
        "house",
        serde_json::json!([wheel("airlock_tiny", "1.0"), wheel("airlock_tiny", "2.0")]),
    );
    let store = Store::new(who, "side").with_links(&[&house]);
    let (one, _) = store.run(who, &["-p", "airlock-tiny==1.0", "-c", SHOW_TINY]);
    let (two, _) = store.run(who, &["-p", "airlock-tiny==2.0", "-c", SHOW_TINY]);
    assert_eq!(ok(&one), "1.0");
    assert_eq!(ok(&two), "2.0");
    assert_ne!(one["environment"], two["environment"]);
    let (again, _) = store.run(who, &["-p", "airlock-tiny==1.0", "-c", SHOW_TINY]);
    assert_eq!(ok(&again), "1.0");
    assert_eq!(again["environment"], one["environment"]);
    assert_eq!(store.envs().len(), 2);
});

both!(a_javascript_package_from_a_local_tarball, |who| {
    let fx = Fixtures::new("npm");
    let house = fx.house(
        "house",
        serde_json::json!([
            npm("airlock-tiny-js", "1.0.0"),
            npm("airlock-tiny-js", "2.0.0")
        ]),
    );
    let store = Store::new(who, "npm").with_links(&[&house]);
    let code = "const t = require('airlock-tiny-js'); console.log(t.version)";
    let (v, _) = store.run(
        who,
        &[
            "--lang",
            "javascript",
            "-p",
            "airlock-tiny-js@1.0.0",
            "-c",
            code,
        ],
    );
    assert_eq!(ok(&v), "1.0.0");
    assert_eq!(v["environment_cached"], false);
    let (v2, _) = store.run(
        who,
        &[
            "--lang",
            "javascript",
            "-p",
            "airlock-tiny-js@2.0.0",
            "-c",
            code,
        ],
    );
    assert_eq!(ok(&v2), "2.0.0");
    let (hit, _) = store.run(
        who,
        &[
            "--lang",
            "javascript",
            "-p",
            "airlock-tiny-js@1.0.0",
            "-c",
            code,
        ],
    );
    assert_eq!(ok(&hit), "1.0.0");
    assert_eq!(hit["environment_cached"], true);
    assert_eq!(hit["environment"], v["environment"]);
    // ES module imports resolve too (not only require through NODE_PATH).
    let (m, _) = store.run(
        who,
        &[
            "--lang",
            "javascript",
            "-p",
            "airlock-tiny-js@1.0.0",
            "-c",
            "import('airlock-tiny-js').then(m => console.log(m.default.name))",
        ],
    );
    assert_eq!(ok(&m), "airlock-tiny-js");
});

both!(
    a_build_script_cannot_read_host_secrets_or_write_the_host_home,
    |who| {
        let tag = format!(
            "{}-{}",
            std::process::id(),
            if who.is_root() { "r" } else { "u" }
        );
        let fx = Fixtures::new("evil");
        let house = fx.house(
            "house",
            serde_json::json!([sdist("airlock_evil", "1.0", &evil_build(who, &tag))]),
        );
        let store = Store::new(who, "evil").with_links(&[&house]);
        let (v, _) = store.run(
            who,
            &[
                "-p",
                "airlock-evil==1.0",
                "-c",
                "import json, airlock_evil.report as r; print(json.dumps(r.REPORT))",
            ],
        );
        let report: Value = serde_json::from_str(&ok(&v)).unwrap();
        let text = report.to_string();
        assert!(
            !text.contains(SECRET),
            "the build saw a host secret: {report:#}"
        );
        assert!(
            !text.contains(ENV_SECRET_NAME),
            "the build saw the host environment: {report:#}"
        );
        for (path, outcome) in report["read"].as_object().unwrap() {
            assert!(
                outcome.as_str().unwrap().starts_with("err:"),
                "{path}: {outcome}"
            );
        }
        for (path, outcome) in report["write"].as_object().unwrap() {
            // The sandbox's own /tmp is writable; the host's is not that one (checked below).
            if !path.starts_with("/tmp/") {
                assert!(
                    outcome.as_str().unwrap().starts_with("err:"),
                    "{path}: {outcome}"
                );
            }
        }
        assert_eq!(report["env"]["HOME"], "/tmp", "{report:#}");
        assert_ne!(report["uid"], 0);
        // A home is at most the path down to a bound interpreter prefix (root's pyenv), never its
        // files.
        for listing in report["list"].as_object().unwrap().values() {
            let names = listing.as_array().cloned().unwrap_or_default();
            assert!(
                names.iter().all(|n| n == ".pyenv"),
                "a host home is visible: {report:#}"
            );
        }
        // From the host side: nothing was written, the markers are intact.
        for p in [
            who.home().join(format!("airlock-evil-wrote-{tag}")),
            PathBuf::from(format!("/root/airlock-evil-wrote-{tag}")),
            PathBuf::from(format!("/tmp/airlock-evil-wrote-{tag}")),
        ] {
            assert!(!p.exists(), "the build wrote {} on the host", p.display());
        }
        if is_root() {
            assert_eq!(fs::read_to_string(who.home_marker()).unwrap(), SECRET);
            assert_eq!(fs::read_to_string(ROOT_MARKER).unwrap(), SECRET);
        }
    }
);

both!(install_failures_carry_the_installers_own_message, |who| {
    let fx = Fixtures::new("fail");
    let house = fx.house(
        "house",
        serde_json::json!([
            wheel("airlock_tiny", "1.0"),
            sdist(
                "airlock_broken",
                "1.0",
                "raise RuntimeError('AIRLOCK-BUILD-BROKE: libfoo is missing')"
            ),
            npm("airlock-tiny-js", "1.0.0"),
        ]),
    );
    let store = Store::new(who, "fail").with_links(&[&house]);
    let (v, code) = store.run(who, &["-p", "airlock-tiny==9.9", "-c", "pass"]);
    assert_eq!(code, 125, "{v}");
    assert_eq!(v["error"]["type"], "DependencyInstallError", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("airlock-tiny") && msg.contains("9.9"), "{msg}");
    assert!(!msg.contains('\u{1b}'), "terminal escapes in {msg:?}");

    let (v, _) = store.run(who, &["-p", "airlock-broken==1.0", "-c", "pass"]);
    assert_eq!(v["error"]["type"], "DependencyInstallError", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("AIRLOCK-BUILD-BROKE: libfoo is missing"),
        "{msg}"
    );

    let (v, _) = store.run(
        who,
        &[
            "--lang",
            "javascript",
            "-p",
            "airlock-tiny-js@9.9.9",
            "-c",
            "1",
        ],
    );
    assert_eq!(v["error"]["type"], "DependencyInstallError", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("npm error"),
        "{v}"
    );

    assert!(
        store.envs().is_empty(),
        "a failed install published something: {:?}",
        store.envs()
    );
    // Without --json the message reaches stderr and the exit code is 125.
    let out = store
        .airlock(who)
        .args(["run", "-p", "airlock-tiny==9.9", "-c", "pass"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("9.9"));
});

both!(ten_concurrent_first_uses_install_once, |who| {
    let fx = Fixtures::new("ten");
    let house = fx.house("house", serde_json::json!([wheel("airlock_tiny", "1.0")]));
    let store = Store::new(who, "ten").with_links(&[&house]);
    let children: Vec<_> = (0..10)
        .map(|_| {
            store
                .airlock(who)
                .args(["run", "--json", "-p", "airlock-tiny==1.0", "-c", SHOW_TINY])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let results: Vec<Value> = children
        .into_iter()
        .map(|c| parse(&c.wait_with_output().unwrap()).0)
        .collect();
    for v in &results {
        assert_eq!(ok(v), "1.0");
    }
    let installs = results
        .iter()
        .filter(|v| v["environment_cached"] == false)
        .count();
    assert_eq!(installs, 1, "{results:#?}");
    let keys: std::collections::BTreeSet<String> = results
        .iter()
        .map(|v| v["environment"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 1);
    assert_eq!(store.envs().len(), 1, "{:?}", store.envs());
});

both!(
    a_failed_or_interrupted_install_is_not_used_and_the_retry_works,
    |who| {
        let fx = Fixtures::new("retry");
        let empty = fx.house("empty", serde_json::json!([]));
        let slow = fx.house(
            "slow",
            serde_json::json!([sdist("airlock_late", "1.0", "import time\ntime.sleep(120)")]),
        );
        let good = fx.house("good", serde_json::json!([wheel("airlock_late", "1.0")]));
        let show = "import airlock_late; print(airlock_late.VERSION)";

        // Failed: the package is not there yet.
        let store = Store::new(who, "retry").with_links(&[&empty]);
        let (v, _) = store.run(who, &["-p", "airlock-late==1.0", "-c", show]);
        assert_eq!(v["error"]["type"], "DependencyInstallError", "{v}");
        assert!(store.envs().is_empty(), "{:?}", store.envs());

        // Interrupted: the supervisor dies mid-build; its half-built directory stays behind.
        let store = store.with_links(&[&slow]);
        let mut child = store
            .airlock(who)
            .args(["run", "--json", "-p", "airlock-late==1.0", "-c", show])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !store.envs().iter().any(|e| e.starts_with(".tmp-")) {
            assert!(
                Instant::now() < deadline,
                "no build started: {:?}",
                store.envs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        let killed = child.id();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            store.envs().iter().all(|e| e.starts_with(".tmp-")),
            "{:?}",
            store.envs()
        );

        // Retried: the debris is not used, it is removed, and the install completes.
        let store = store.with_links(&[&good]);
        let (v, _) = store.run(who, &["-p", "airlock-late==1.0", "-c", show]);
        assert_eq!(ok(&v), "1.0");
        assert_eq!(v["environment_cached"], false);
        let envs = store.envs();
        assert_eq!(
            envs,
            vec![v["environment"].as_str().unwrap().to_owned()],
            "{envs:?}"
        );

        // The dead supervisor's install cgroup goes too, once the jail's stale grace has
        // passed and a later run cleans up.
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let mut left = Vec::new();
            cgroups_of(
                Path::new("/sys/fs/cgroup"),
                &format!("run-{killed}-"),
                0,
                &mut left,
            );
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the killed install's cgroup stays: {left:?}"
            );
            std::thread::sleep(Duration::from_secs(2));
            let _ = store
                .airlock(who)
                .args(["run", "--lang", "shell", "-c", "true"])
                .output();
        }
    }
);

fn cgroups_of(dir: &Path, prefix: &str, depth: usize, found: &mut Vec<PathBuf>) {
    if depth > 8 {
        return;
    }
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                found.push(e.path());
            }
            cgroups_of(&e.path(), prefix, depth + 1, found);
        }
    }
}

both!(unsafe_specs_are_refused_unless_explicitly_allowed, |who| {
    let fx = Fixtures::new("unsafe");
    let house = fx.house("house", serde_json::json!([wheel("airlock_tiny", "1.0")]));
    let store = Store::new(who, "unsafe").with_links(&[&house]);
    for (spec, says) in [
        ("--index-url=http://127.0.0.1:9/simple", "option"),
        ("-e", "option"),
        ("-r", "option"),
        ("git+https://127.0.0.1:9/repo.git", "VCS"),
        ("pkg @ https://127.0.0.1:9/pkg.tar.gz", "URL"),
        ("./some/dir", "local path"),
    ] {
        let arg = format!("--package={spec}");
        let (v, code) = store.run(who, &[&arg, "-c", "pass"]);
        assert_eq!(code, 125, "{spec}: {v}");
        assert_eq!(v["error"]["type"], "InvalidInput", "{spec}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("packages") && msg.contains(says),
            "{spec}: {msg}"
        );
    }
    let (v, _) = store.run(who, &["--lang", "shell", "-p", "x", "-c", "true"]);
    assert_eq!(v["error"]["type"], "InvalidInput");
    let many: Vec<String> = (0..101).map(|i| format!("p{i}")).collect();
    let mut args: Vec<&str> = Vec::new();
    for m in &many {
        args.extend(["-p", m.as_str()]);
    }
    args.extend(["-c", "pass"]);
    let (v, _) = store.run(who, &args);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("100"),
        "{v}"
    );
    assert!(store.envs().is_empty());

    // Explicitly allowed: a local wheel by path.
    let whl = house.join("airlock_tiny-1.0-py3-none-any.whl");
    let whl = whl.to_str().unwrap();
    let (v, _) = store.run(who, &["-p", whl, "-c", SHOW_TINY]);
    assert_eq!(v["error"]["type"], "InvalidInput", "{v}");
    let (v, _) = store.run(who, &["--allow-unsafe-specs", "-p", whl, "-c", SHOW_TINY]);
    assert_eq!(ok(&v), "1.0");
});

both!(env_list_create_and_prune, |who| {
    let fx = Fixtures::new("envcmd");
    let house = fx.house(
        "house",
        serde_json::json!([
            wheel("airlock_tiny", "1.0"),
            npm("airlock-tiny-js", "1.0.0")
        ]),
    );
    let store = Store::new(who, "envcmd").with_links(&[&house]);
    let json = |args: &[&str]| -> Value {
        let out = store.airlock(who).arg("env").args(args).output().unwrap();
        assert!(out.status.success(), "env {args:?}: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(json(&["list", "--json"]), serde_json::json!([]));
    let created = json(&["create", "--json", "airlock-tiny==1.0"]);
    assert_eq!(created["cached"], false);
    assert_eq!(created["specs"], serde_json::json!(["airlock-tiny==1.0"]));
    let again = json(&["create", "--json", "airlock-tiny == 1.0"]);
    assert_eq!(again["cached"], true);
    assert_eq!(again["key"], created["key"]);
    json(&[
        "create",
        "--json",
        "--lang",
        "javascript",
        "airlock-tiny-js@1.0.0",
    ]);

    // A run with the same packages uses the created environment.
    let (v, _) = store.run(who, &["-p", "airlock-tiny==1.0", "-c", SHOW_TINY]);
    assert_eq!(v["environment"], created["key"]);
    assert_eq!(v["environment_cached"], true);

    let listed = json(&["list", "--json"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    for e in listed {
        assert!(e["size_bytes"].as_u64().unwrap() > 0, "{e}");
        assert!(e["last_used"].as_u64().unwrap() > 0, "{e}");
        assert!(!e["specs"].as_array().unwrap().is_empty(), "{e}");
    }
    let table = store.airlock(who).args(["env", "list"]).output().unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("KEY") && table.contains("airlock-tiny==1.0"),
        "{table}"
    );

    let kept = json(&["prune", "--json", "--older-than", "1d"]);
    assert_eq!(kept["removed"], serde_json::json!([]));
    let pruned = json(&["prune", "--json", "--all"]);
    assert_eq!(pruned["removed"].as_array().unwrap().len(), 2, "{pruned}");
    assert_eq!(json(&["list", "--json"]), serde_json::json!([]));
    assert!(store.envs().is_empty());
});

// Pooled (`--pool`, the Scheduler's warm path): the run finds its packages imported. By
// default its sandbox restored an interpreter frozen after the imports (its program is the
// restorer); with `--trust-packages` a zygote imported them, and the run it forks is still as
// isolated as a cold one.
both!(a_pooled_run_finds_its_packages_imported, |who| {
    let fx = Fixtures::new("pooled");
    let house = fx.house("house", serde_json::json!([wheel("airlock_tiny", "1.0")]));
    let store = Store::new(who, "pooled").with_links(&[&house]);
    let probe = r#"
import os, sys
status = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
print("imported", "airlock_tiny" in sys.modules, "exe", os.path.basename(os.readlink("/proc/self/exe")))
print("caps", status["CapEff"].strip(), status["CapBnd"].strip(), "nnp", status["NoNewPrivs"].strip(), "seccomp", status["Seccomp"].strip())
print("procs", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()), "ids", os.getuid(), os.getgid())
print("fds", sorted(int(f) for f in os.listdir("/proc/self/fd")))
"#;
    for (extra, exe) in [(None, "restore"), (Some("--trust-packages"), "python")] {
        let mut args = vec!["--pool", "-p", "airlock-tiny==1.0", "-c", probe];
        args.extend(extra);
        let (v, _) = store.run(who, &args);
        assert_eq!(v["pool"], "warm", "{v}");
        assert_eq!(v["environment_cached"], true, "{v}");
        let out = ok(&v);
        assert!(
            out.starts_with(&format!("imported True exe {exe}")),
            "{extra:?}: {out}"
        );
        for want in [
            "caps 0000000000000000 0000000000000000 nnp 1 seccomp 2",
            "procs [1, 2] ids 1000 1000",
            "fds [0, 1, 2, 3]",
        ] {
            assert!(
                out.lines().any(|l| l == want),
                "{extra:?}: missing {want:?} in:\n{out}"
            );
        }
    }
});
