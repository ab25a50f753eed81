//! Resource limits, each attacked: fork bomb, memory bombs, output floods, a full /tmp, and
//! programs that refuse to die at the timeout.

mod common;
use common::*;

fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) && !cmd.contains("airlock") {
                found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

both!(fork_bomb_is_stopped_by_the_pids_limit, |who| {
    let code = r#"
import os, time
n = 0
try:
    while True:
        pid = os.fork()
        if pid == 0:
            time.sleep(30); os._exit(0)
        n += 1
except OSError as e:
    print("stopped", n, e.errno)
"#;
    let v = py_with(who, &["--pids", "40"], code);
    let out = ok_stdout(&v);
    let n: u32 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    // The program and what it forks: exactly the limit (the sandbox's init is not counted).
    assert_eq!(n, 39, "forked {n} processes under a limit of 40");
    // The same forked from a zygote.
    let v = py_with(who, &["--pool", "--pids", "40"], code);
    assert_eq!(ok_stdout(&v), out, "{v}");
    // At the smallest limit the program runs and may fork nothing, cold and pooled (a zygote's
    // forking child must not take a slot while the run's processes are made).
    for args in [&["--pids", "1"][..], &["--pool", "--pids", "1"][..]] {
        let v = py_with(who, args, code);
        assert_eq!(ok_stdout(&v).trim(), "stopped 0 11", "{args:?}: {v}");
    }
    // And a shell fork bomb ends (at the timeout at worst) without harming the host.
    let v = sh_in(
        who,
        &["--pids", "64", "--timeout", "3"],
        "bomb() { bomb | bomb & }; bomb; sleep 5",
    );
    assert!(
        ["timeout", "ok", "error"].contains(&v["status"].as_str().unwrap()),
        "{v}"
    );
    let after = py(who, "print('alive')");
    assert_eq!(ok_stdout(&after).trim(), "alive");
});

both!(python_memory_bomb_raises_memory_error, |who| {
    let v = py_with(who, &["--memory", "128"], "b = bytearray(1 << 30)");
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["error"]["type"], "MemoryError", "{v}");
    let v = py_with(
        who,
        &["--memory", "128"],
        "l = []\nwhile True: l.append(bytearray(8 << 20))",
    );
    assert!(
        v["status"] == "error" || v["status"] == "memory_limit",
        "{v}"
    );
    if v["status"] == "error" {
        assert_eq!(v["error"]["type"], "MemoryError", "{v}");
    }
    assert_eq!(
        ok_stdout(&py(who, "print(2)")).trim(),
        "2",
        "the engine survives"
    );
});

both!(native_memory_bomb_ends_as_memory_limit, |who| {
    // tail must hold the whole "line" in memory: no language-level error is possible.
    let v = sh_in(
        who,
        &["--memory", "64", "--timeout", "20"],
        "head -c 2000000000 /dev/zero | tail >/dev/null; echo survived",
    );
    assert_eq!(v["status"], "memory_limit", "{v}");
    assert!(
        v["usage"]["memory_peak_bytes"].as_u64().unwrap() >= 32 << 20,
        "{v}"
    );
});

both!(output_flood_is_capped_exactly, |who| {
    let v = py(
        who,
        "import sys\nsys.stdout.write('x' * 5_000_000)\nsys.stderr.write('y' * 3_000_000)",
    );
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["stdout"].as_str().unwrap().len(), 1 << 20);
    assert_eq!(v["stderr"].as_str().unwrap().len(), 1 << 20);
    assert_eq!(v["stdout_truncated"], true);
    assert_eq!(v["stderr_truncated"], true);
    // An endless flood ends at the timeout with the capture intact.
    let v = py_with(who, &["--timeout", "2"], "while True: print('z' * 4096)");
    assert_eq!(v["status"], "timeout", "{v}");
    assert_eq!(v["stdout"].as_str().unwrap().len(), 1 << 20);
    assert_eq!(v["stdout_truncated"], true);
    let v = py(who, "print('small')");
    assert_eq!(v["stdout_truncated"], false);
});

// Past the cap a stream keeps its head and its end: a traceback after a flood of warnings
// still reaches the result, parsed.
both!(a_flooded_stderr_keeps_its_traceback, |who| {
    let v = py(
        who,
        "import sys\nsys.stderr.write('warning: noise\\n' * 300_000)\nraise ValueError('the last words')",
    );
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["stderr_truncated"], true);
    let stderr = v["stderr"].as_str().unwrap();
    assert_eq!(stderr.len(), 1 << 20);
    assert!(stderr.starts_with("warning: noise\n"), "{}", &stderr[..100]);
    assert!(stderr.contains("[... airlock: output truncated here ...]"));
    assert!(
        stderr.trim_end().ends_with("ValueError: the last words"),
        "{}",
        &stderr[stderr.len() - 200..]
    );
    assert_eq!(v["error"]["type"], "ValueError", "{}", v["error"]);
    assert_eq!(v["error"]["message"], "the last words");
});

both!(filling_tmp_hits_enospc, |who| {
    let v = sh_in(
        who,
        &[],
        "dd if=/dev/zero of=/tmp/fill bs=1M count=400 2>&1; echo rc=$?; df -m /tmp | tail -1",
    );
    let out = stdout(&v);
    assert!(out.contains("No space left on device"), "{v}");
    assert!(out.contains("rc=1"), "{out}");
});

both!(infinite_loop_is_killed_at_the_timeout, |who| {
    let start = std::time::Instant::now();
    let out = airlock(who)
        .args(["run", "--timeout", "1", "-c", "while True: pass"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(124), "timeout exit code");
    assert!(start.elapsed().as_secs() < 20);
    let v = py_with(who, &["--timeout", "1"], "while True: pass");
    assert_eq!(v["status"], "timeout");
    assert_eq!(v["error"]["type"], "Timeout", "{v}");
});

both!(
    sigterm_ignoring_tree_and_daemons_die_at_the_timeout,
    |who| {
        let marker = format!(
            "{}.{}",
            4000 + std::process::id() % 1000,
            std::process::id()
        );
        let code = format!(
            r#"
import os, signal, subprocess, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen(["sleep", "{marker}"])
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.execvp("sleep", ["sleep", "{marker}"])
    os._exit(0)
print("started", flush=True)
while True:
    time.sleep(0.1)
"#
        );
        let v = py_with(who, &["--timeout", "2"], &code);
        assert_eq!(v["status"], "timeout", "{v}");
        assert!(stdout(&v).contains("started"));
        let left = processes_with(&format!("sleep {marker}"));
        assert!(left.is_empty(), "processes survived the sandbox: {left:?}");
    }
);

both!(daemons_die_when_the_program_exits, |who| {
    let marker = format!(
        "{}.{}",
        5000 + std::process::id() % 1000,
        std::process::id()
    );
    let code =
        format!("(setsid sleep {marker} &) ; nohup sleep {marker} >/dev/null 2>&1 & echo done");
    let v = sh_in(who, &[], &code);
    assert_eq!(ok_stdout(&v).trim(), "done");
    let left = processes_with(&format!("sleep {marker}"));
    assert!(left.is_empty(), "daemons survived: {left:?}");
});

both!(cpu_usage_and_timing_are_reported, |who| {
    let v = py(who, "s = 0\nfor i in range(3_000_000): s += i\nprint(s)");
    assert_eq!(v["status"], "ok");
    assert!(v["usage"]["cpu_ms"].as_u64().unwrap() > 0, "{v}");
    assert!(
        v["usage"]["memory_peak_bytes"].as_u64().unwrap() > 1 << 20,
        "{v}"
    );
    let t = &v["timing"];
    assert!(t["total_ms"].as_f64().unwrap() >= t["execute_ms"].as_f64().unwrap());
});

both!(sandbox_dies_with_its_supervisor, |who| {
    let marker = format!(
        "{}.{}",
        8000 + std::process::id() % 1000,
        std::process::id()
    );
    let mut sup = airlock(who)
        .args([
            "run",
            "--timeout",
            "60",
            "--lang",
            "shell",
            "-c",
            &format!("sleep {marker}"),
        ])
        .spawn()
        .unwrap();
    let pattern = format!("sleep {marker}");
    let mut seen = false;
    for _ in 0..250 {
        if !processes_with(&pattern).is_empty() {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(seen, "the sandboxed process never started");
    // SIGKILL: the supervisor gets no chance to clean up; the kernel's death signal must.
    sup.kill().unwrap();
    let _ = sup.wait();
    let mut gone = false;
    for _ in 0..250 {
        if processes_with(&pattern).is_empty() {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        gone,
        "the sandbox outlived its supervisor: {:?}",
        processes_with(&pattern)
    );
});
