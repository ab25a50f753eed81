//! The command line: languages, exit codes, bad input, errors and hints, doctor.

mod common;
use common::*;

both!(three_languages_run, |who| {
    assert_eq!(ok_stdout(&py(who, "print(1)")).trim(), "1");
    let (v, code) = run_json(who, &["--lang", "javascript", "-c", "console.log(1 + 1)"]);
    assert_eq!(ok_stdout(&v).trim(), "2");
    assert_eq!(code, 0);
    let (v, _) = run_json(who, &["--lang", "shell", "-c", "echo 1; echo err >&2"]);
    assert_eq!(ok_stdout(&v).trim(), "1");
    assert_eq!(v["stderr"], "err\n");
    assert_eq!(v["pool"], "cold");
    for field in [
        "status",
        "exit_code",
        "signal",
        "stdout",
        "stderr",
        "stdout_truncated",
        "stderr_truncated",
        "error",
        "timing",
        "usage",
        "pool",
        "environment",
    ] {
        assert!(v.get(field).is_some(), "missing result field {field}: {v}");
    }
    for t in ["setup_ms", "boot_ms", "execute_ms", "total_ms"] {
        assert!(v["timing"][t].is_number(), "{v}");
    }
});

both!(exit_codes_pass_through, |who| {
    let out = airlock(who)
        .args(["run", "--lang", "shell", "-c", "echo out; exit 7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    let out = airlock(who)
        .args([
            "run",
            "-c",
            "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
        ])
        .output()
        .unwrap();
    assert!(out.status.code().is_some());
});

both!(code_from_file_and_stdin, |who| {
    let dir = HostDir::new("file");
    let f = dir.write("hello.js", "console.log('from file')");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = airlock(who)
        .args(["run", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "from file\n",
        "{:?}",
        out
    );
    let mut child = airlock(who)
        .args(["run", "--lang", "python", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"import sys\nprint('stdin code', sys.stdin.read() == '')")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "stdin code True\n");
});

fn rejected(who: &Who, args: &[&str], field: &str) {
    let (v, code) = run_json(who, args);
    assert_eq!(code, 125, "{args:?}: {v}");
    assert_eq!(v["status"], "sandbox_error");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("`{field}`")),
        "{args:?}: message does not name `{field}`: {msg}"
    );
}

both!(bad_input_is_refused_naming_the_field, |who| {
    rejected(who, &["--lang", "ruby", "-c", "puts 1"], "lang");
    rejected(who, &["-c", ""], "code");
    rejected(who, &["/nonexistent/file.py"], "file");
    rejected(who, &["--mount", "/usr", "-c", "1"], "mount");
    rejected(who, &["--mount", "/usr:/x:rx", "-c", "1"], "mount");
    rejected(who, &["--env", "NOEQUALS", "-c", "1"], "env");
    rejected(who, &["--env", "LD_PRELOAD=/tmp/x.so", "-c", "1"], "env");
    rejected(who, &["--env", "PYTHONSTARTUP=/tmp/x", "-c", "1"], "env");
    rejected(
        who,
        &["--env", "NODE_OPTIONS=--require=x", "-c", "1"],
        "env",
    );
    rejected(who, &["--env", "BASH_ENV=/tmp/x", "-c", "1"], "env");
    rejected(who, &["--env", "GLIBC_TUNABLES=x", "-c", "1"], "env");
    rejected(who, &["--timeout", "0.01", "-c", "1"], "timeout");
    rejected(who, &["--timeout", "4000", "-c", "1"], "timeout");
    rejected(who, &["--memory", "8", "-c", "1"], "memory");
    rejected(who, &["--pids", "0", "-c", "1"], "pids");
    rejected(who, &["--cpus", "0", "-c", "1"], "cpus");
    rejected(who, &["--network", "everything", "-c", "1"], "network");
    rejected(
        who,
        &["--workdir", "/nonexistent-dir", "-c", "1"],
        "workdir",
    );
    let big = "#".repeat(10 * 1024 * 1024 + 1);
    let dir = HostDir::new("big");
    let f = dir.write("big.py", &big);
    rejected(who, &[f.to_str().unwrap()], "code");
});

both!(env_passes_explicitly, |who| {
    let v = py_with(
        who,
        &["--env", "GREETING=hello world", "--env", "EMPTY="],
        "import os; print(os.environ['GREETING'], repr(os.environ['EMPTY']))",
    );
    assert_eq!(ok_stdout(&v).trim(), "hello world ''");
});

both!(errors_are_parsed_with_hints, |who| {
    let v = py(who, "def f():\n    return 1 / 0\nf()");
    assert_eq!(v["status"], "error");
    assert_eq!(v["exit_code"], 1);
    assert_eq!(v["error"]["type"], "ZeroDivisionError", "{v}");
    assert_eq!(v["error"]["line"], 2, "{v}");
    let v = py(who, "import pandas_not_here");
    assert_eq!(v["error"]["type"], "ModuleNotFoundError", "{v}");
    assert!(
        v["error"]["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("pandas_not_here"),
        "{v}"
    );
    let v = py(who, "if True:\nprint(1)");
    assert_eq!(v["error"]["type"], "IndentationError", "{v}");
    let v = py(
        who,
        "import urllib.request\nurllib.request.urlopen('http://example.com', timeout=3)",
    );
    assert!(
        v["error"]["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("network"),
        "{v}"
    );
    let (v, _) = run_json(
        who,
        &[
            "--lang",
            "javascript",
            "-c",
            "const x = 1;\nundefinedThing()",
        ],
    );
    assert_eq!(v["error"]["type"], "ReferenceError", "{v}");
    assert_eq!(v["error"]["line"], 2, "{v}");
    let (v, _) = run_json(who, &["--lang", "shell", "-c", "echo a\nnot-a-command-xyz"]);
    assert_eq!(v["error"]["type"], "CommandNotFound", "{v}");
    assert_eq!(v["error"]["line"], 2, "{v}");
});

both!(host_network_is_an_explicit_opt_in, |who| {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!(
        "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=5)\nprint('connected')"
    );
    let v = py_with(who, &["--network", "host"], &code);
    assert_eq!(ok_stdout(&v).trim(), "connected");
});

#[test]
fn doctor_reports_each_layer() {
    let out = std::process::Command::new(bin())
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for layer in [
        "user namespaces",
        "net namespaces",
        "cgroups",
        "seccomp",
        "landlock",
        "kvm",
        "trial sandbox",
    ] {
        assert!(
            text.contains(layer),
            "doctor does not mention {layer}:\n{text}"
        );
    }
    if is_root() {
        assert!(
            out.status.success(),
            "doctor reports a missing layer as root on this host:\n{text}"
        );
        assert!(
            text.contains("PVM")
                || text.contains("vmx")
                || text.contains("absent")
                || text.contains("without vmx"),
            "{text}"
        );
    }
}

#[test]
fn unprivileged_without_cgroup_is_refused_unless_opted_in() {
    let Some(who) = identity(false) else { return };
    if !is_root() {
        eprintln!("skipped: needs root to run the user without its delegated cgroup");
        return;
    }
    let mut cmd = airlock(&who);
    cmd.env_remove("AIRLOCK_CGROUP_PARENT");
    let out = cmd
        .args(["run", "--json", "-c", "print(1)"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    if v["status"] == "ok" {
        // A pure-v2 host with a writable own cgroup: limits are enforced there.
        return;
    }
    assert_eq!(out.status.code(), Some(125), "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("cgroup") && msg.contains("--weak-limits"),
        "{msg}"
    );
    let mut cmd = airlock(&who);
    cmd.env_remove("AIRLOCK_CGROUP_PARENT");
    let out = cmd
        .args(["run", "--json", "--weak-limits", "-c", "print(1)"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "ok", "{v}");
}

both!(output_streams_live, |who| {
    use std::io::BufRead;
    let dir = HostDir::new("stream");
    let mount = format!("{}:/shared", dir.path().display());
    // The program waits for a file the test creates only after reading the first line: without
    // live streaming it times out instead.
    let code = "import os, time\nprint('ready', flush=True)\nwhile not os.path.exists('/shared/go'): time.sleep(0.02)\nprint('done')";
    let mut child = airlock(who)
        .args(["run", "--timeout", "20", "--mount", &mount, "-c", code])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    std::fs::write(dir.path().join("go"), "").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "done\n");
    assert_eq!(child.wait().unwrap().code(), Some(0));
});

// `airlock bench` works end to end: every row is there and none failed. Structure only; the
// figures go into notes, never into an assertion. The decorated-call row needs the Python
// package, which the suite installs only after this binary runs: it may say "skipped".
both!(bench_prints_every_row_as_json, |who| {
    let out = airlock(who)
        .args([
            "bench",
            "--json",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--warm-runs",
            "3",
            "--sustain-seconds",
            "0.5",
            "--package",
            "",
            "--decorated-runs",
            "2",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bench printed no JSON ({e}): {stderr}"));
    let names = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key} in {v}"))
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    for row in ["bare python3 -c pass", "airlock run -c pass"] {
        assert!(names("rows").iter().any(|n| n == row), "no {row:?}: {v}");
    }
    for r in v["rows"].as_array().unwrap() {
        assert!(
            r["error"].is_null() || !r["name"].as_str().unwrap().starts_with("airlock"),
            "an airlock row failed: {r}"
        );
    }
    for row in [
        "warm Scheduler.run(\"print(1)\")",
        "decorated call add(2, 3) (Python pkg)",
        "decorated call add(2, 3), idle first",
        "sustained fresh-sandbox runs",
        "session call (state kept)",
    ] {
        assert!(names("warm").iter().any(|n| n == row), "no {row:?}: {v}");
    }
    for r in v["warm"].as_array().unwrap() {
        let note = r["note"].as_str().unwrap_or_default();
        let measured = r["median_ms"].is_number() || r["per_second"].is_number();
        assert!(
            measured || note.starts_with("skipped: "),
            "a warm row has no figure: {r}"
        );
    }
});
