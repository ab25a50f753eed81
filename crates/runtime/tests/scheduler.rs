//! The Scheduler: warm pools of use-once sandboxes, fresh state between runs, faults, and
//! cancellation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_runtime::{Language, RunRequest, Scheduler, SchedulerConfig, Status};

mod common;
use common::*;

#[test]
fn warm_runs_in_every_language() {
    rt().block_on(async {
        let s = sched(1);
        for (lang, code, want) in [
            (
                Language::Python,
                "import sys\nprint(1, sys.argv[0], __name__)",
                "1 /airlock/main.py __main__\n",
            ),
            (
                Language::JavaScript,
                "console.log(1, require.main === module)",
                "1 true\n",
            ),
            (Language::Shell, "echo 1 $0", "1 /airlock/main.sh\n"),
        ] {
            let r = req(lang, code);
            assert_eq!(
                s.prewarm(&r, 1, Duration::from_secs(20)).await.unwrap(),
                1,
                "{lang:?} pool never filled"
            );
            let out = run(&s, r).await;
            assert_eq!(out.pool, "warm", "{lang:?}");
            assert_eq!(out.status, Status::Ok, "{lang:?}: {out:?}");
            assert_eq!(out.stdout, want, "{lang:?}");
        }
    });
}

#[test]
fn a_warm_run_gets_code_larger_than_one_read() {
    rt().block_on(async {
        let s = sched(1);
        // Past the agent's first read (64 KiB) and a pipe's buffer: the frame arrives in parts.
        let text = "a".repeat(3 << 20);
        for (lang, code) in [
            (Language::Python, format!("x = '{text}'\nprint(len(x))")),
            (
                Language::JavaScript,
                format!("const x = '{text}';\nconsole.log(x.length)"),
            ),
        ] {
            let r = req(lang, &code);
            assert_eq!(s.prewarm(&r, 1, Duration::from_secs(20)).await.unwrap(), 1);
            let out = run(&s, r).await;
            assert_eq!(out.pool, "warm", "{lang:?}");
            assert_eq!(out.stdout, format!("{}\n", 3 << 20), "{lang:?}: {out:?}");
        }
    });
}

#[test]
fn warm_errors_look_like_cold_ones() {
    rt().block_on(async {
        let s = sched(1);
        let r = req(Language::Python, "x = 1\ndef f():\n    return 1 / 0\nf()");
        s.prewarm(&r, 1, Duration::from_secs(20)).await.unwrap();
        let out = run(&s, r).await;
        assert_eq!(out.pool, "warm");
        assert_eq!(out.status, Status::Error);
        let e = out.error.expect("parsed error");
        assert_eq!(e.kind, "ZeroDivisionError");
        assert_eq!(e.line, Some(3));
        assert!(
            !out.stderr.contains("agent"),
            "the agent shows in the traceback: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("return 1 / 0"),
            "source line missing: {}",
            out.stderr
        );
        let r = req(Language::Python, "import sys\nsys.exit(7)");
        s.prewarm(&r, 1, Duration::from_secs(20)).await.unwrap();
        assert_eq!(run(&s, r).await.exit_code, Some(7));
    });
}

as_us_and_the_test_user!(
    state_never_leaks_between_runs_of_one_pool,
    state_never_leaks_between_runs_of_one_pool_as_the_test_user,
    state_never_leaks_unprivileged,
    state_never_leaks
);

fn state_never_leaks() {
    rt().block_on(async {
        let s = sched(2);
        let plant = req(
            Language::Python,
            r#"
import builtins, os, random, subprocess, json
builtins.print_orig = print
json.MARK = "planted"
open("/tmp/planted", "w").write("x")
open("/workspace/planted", "w").write("x")
os.environ["PLANTED"] = "1"
subprocess.Popen(["sleep", "300"])
random.seed(1234)
print(random.random())
"#,
        );
        let probe = req(
            Language::Python,
            r#"
import builtins, os, random, json
print(hasattr(builtins, "print_orig"), hasattr(json, "MARK"), os.path.exists("/tmp/planted"),
      os.path.exists("/workspace/planted"), "PLANTED" in os.environ,
      sorted(int(p) for p in os.listdir("/proc") if p.isdigit()) == [1, 2])
print(random.random())
"#,
        );
        // Same shape (same limits, same language): the same pool serves both.
        s.prewarm(&plant, 2, Duration::from_secs(20)).await.unwrap();
        let a = run(&s, plant).await;
        let b = run(&s, probe).await;
        assert_eq!(a.pool, "warm");
        assert_eq!(b.pool, "warm");
        let lines: Vec<&str> = b.stdout.lines().collect();
        assert_eq!(
            lines[0], "False False False False False True",
            "{}",
            b.stdout
        );
        assert_ne!(lines[1], a.stdout.trim(), "random state carried over");
    });
}

#[test]
fn a_request_with_other_limits_never_gets_that_sandbox() {
    rt().block_on(async {
        let s = sched(1);
        let small = RunRequest {
            memory_mb: 64,
            ..req(Language::Python, "print(1)")
        };
        s.prewarm(&small, 1, Duration::from_secs(20)).await.unwrap();
        let big = RunRequest {
            memory_mb: 256,
            ..req(Language::Python, "print(2)")
        };
        let out = run(&s, big).await;
        assert_eq!(out.pool, "cold");
        assert_eq!(s.ready(&small), 1, "the other shape's sandbox was used");
    });
}

as_us_and_the_test_user!(
    concurrent_runs_see_only_themselves,
    concurrent_runs_see_only_themselves_as_the_test_user,
    concurrent_runs_unprivileged,
    concurrent_runs
);

fn concurrent_runs() {
    rt().block_on(async {
        let s = sched(2);
        let mut tasks = Vec::new();
        for i in 0..50 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let code = format!(
                    "import os, signal\nopen('/tmp/me', 'w').write('{i}')\ntry:\n    os.kill(1, signal.SIGKILL)  # its own init: ignored, or refused (Landlock scope)\nexcept PermissionError:\n    pass\nkilled = 0\nfor pid in range(3, 400):\n    try:\n        os.kill(pid, signal.SIGKILL); killed += 1\n    except OSError:\n        pass\nprint({i}, open('/tmp/me').read(), killed, len([p for p in os.listdir('/proc') if p.isdigit()]))"
                );
                run(&s, req(Language::Python, &code)).await
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let out = t.await.unwrap();
            assert_eq!(out.status, Status::Ok, "{out:?}");
            assert_eq!(out.stdout.trim(), format!("{i} {i} 0 2"), "run {i} saw another run");
        }
    });
}

/// Pids of this test process's direct children (sandbox inits) whose command line, or whose
/// program's (the init's child), names `what`.
fn our_children_running(procs: &[(i32, i32, String, String)], what: &str) -> Vec<i32> {
    let runs = |p: &(i32, i32, String, String)| {
        p.3.contains(what) || procs.iter().any(|c| c.1 == p.0 && c.3.contains(what))
    };
    procs
        .iter()
        .filter(|p| p.1 == std::process::id() as i32 && runs(p))
        .map(|p| p.0)
        .collect()
}

fn kill9_and_wait(victims: &[i32]) {
    assert!(!victims.is_empty(), "nothing to kill");
    for v in victims {
        let _ = std::process::Command::new("kill")
            .arg("-9")
            .arg(v.to_string())
            .status();
    }
    // SIGKILL takes effect asynchronously: wait until they are zombies or gone.
    for v in victims {
        for _ in 0..500 {
            let st = std::fs::read_to_string(format!("/proc/{v}/stat")).unwrap_or_default();
            if st.is_empty() || st.contains(") Z ") {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Starts `r` (which prints one line, then sleeps) on `s`, waits for its line, kills what
/// `victims` picks from this test's processes, and returns the run's result and its output.
async fn kill_mid_run(
    s: &Scheduler,
    r: &RunRequest,
    victims: impl Fn(&[(i32, i32, String, String)]) -> Vec<i32>,
) -> (airlock_runtime::RunResult, String) {
    if s.config().pool_size > 0 {
        assert!(s.prewarm(r, 1, Duration::from_secs(60)).await.unwrap() >= 1);
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let (s2, r2) = (s.clone(), r.clone());
    let task = tokio::spawn(async move {
        s2.run(
            r2,
            Box::new(move |_, b| sink.lock().unwrap().extend_from_slice(b)),
        )
        .await
    });
    for _ in 0..2000 {
        if !seen.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kill9_and_wait(&victims(&our_descendants()));
    let out = task.await.unwrap().expect("a result, not a hang");
    let printed = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    (out, printed)
}

#[test]
fn killing_a_warm_sandbox_mid_run_is_a_clear_error_and_the_pool_recovers() {
    rt().block_on(async {
        let s = sched(1);
        let r = req(
            Language::JavaScript,
            "console.log(process.pid); setTimeout(() => {}, 30000);",
        );
        // The sandbox's init is killed from outside (as a crash or the OOM killer would).
        let (out, printed) = kill_mid_run(&s, &r, |procs| {
            our_children_running(procs, "/airlock/agent.js")
        })
        .await;
        assert_killed_from_outside(&out);
        // Never silently re-run: its output appeared once.
        assert_eq!(printed.lines().count(), 1, "{printed:?}");
        // And the pool serves the next run.
        assert!(s.prewarm(&r, 1, Duration::from_secs(20)).await.unwrap() >= 1);
        let next = run(&s, req(Language::JavaScript, "console.log('next')")).await;
        assert_eq!(next.stdout, "next\n", "{next:?}");
    });
}

/// The run's result when its sandbox's init was killed: not passed off as the program's own
/// signal (nor, without a word, as the memory limit).
fn assert_killed_from_outside(out: &airlock_runtime::RunResult) {
    assert_eq!(out.status, Status::Killed, "{out:?}");
    assert_eq!(out.signal, Some(9));
    assert_eq!(
        out.exit_code, None,
        "the init's exit code is not the program's"
    );
    let e = out.error.as_ref().expect("an error saying what happened");
    assert_eq!(e.kind, "SandboxKilled", "{e:?}");
    assert!(
        e.message
            .contains("init (pid 1) was killed by signal 9 (SIGKILL)")
            && e.message.contains("unknown"),
        "{e:?}"
    );
    assert!(
        e.hint
            .as_deref()
            .unwrap_or("")
            .contains("outside the sandbox")
    );
}

/// A Python run that names its process (`comm`) so a test can find it, prints once, sleeps.
const VICTIM: &str = "import ctypes, time\nctypes.CDLL(None).prctl(15, b'victim-run', 0, 0, 0)\nprint('up', flush=True)\ntime.sleep(30)";

/// The processes `VICTIM` named.
fn victims(
    procs: &[(i32, i32, String, String)],
) -> impl Iterator<Item = &(i32, i32, String, String)> {
    procs.iter().filter(|p| p.2 == "victim-run")
}

#[test]
fn killing_a_zygote_child_mid_run_is_a_clear_error_and_the_pool_recovers() {
    rt().block_on(async {
        let s = sched(1);
        let r = req(Language::Python, VICTIM);
        let (out, printed) =
            kill_mid_run(&s, &r, |procs| victims(procs).map(|p| p.0).collect()).await;
        assert_eq!(out.status, Status::Killed, "{out:?}");
        assert_eq!(out.signal, Some(9));
        assert_eq!(printed.lines().count(), 1, "never re-run: {printed:?}");
        let next = run(&s, req(Language::Python, "print('next')")).await;
        assert_eq!(next.stdout, "next\n", "{next:?}");
    });
}

#[test]
fn killing_a_runs_init_mid_run_says_the_sandbox_was_killed_cold_and_from_a_zygote() {
    rt().block_on(async {
        for pool_size in [0, 1] {
            let s = sched(pool_size);
            let r = req(Language::Python, VICTIM);
            // The run's init is the victim's parent (from a zygote, a child of the zygote's).
            let (out, printed) =
                kill_mid_run(&s, &r, |procs| victims(procs).map(|p| p.1).collect()).await;
            assert_eq!(out.pool, if pool_size == 0 { "cold" } else { "warm" });
            assert_killed_from_outside(&out);
            assert_eq!(printed.lines().count(), 1, "never re-run: {printed:?}");
            let next = run(&s, req(Language::Python, "print('next')")).await;
            assert_eq!(next.stdout, "next\n", "{next:?}");
        }
    });
}

#[test]
fn killing_the_zygote_mid_run_is_a_clear_error_and_a_new_zygote_serves_the_next_run() {
    rt().block_on(async {
        let s = sched(1);
        let r = req(Language::Python, VICTIM);
        let (out, printed) = kill_mid_run(&s, &r, |procs| {
            our_children_running(procs, "/airlock/zygote.py")
        })
        .await;
        assert_eq!(out.status, Status::SandboxError, "{out:?}");
        let message = out
            .error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default();
        assert!(message.contains("zygote"), "{message}");
        assert_eq!(printed.lines().count(), 1, "never re-run: {printed:?}");
        // The ready child died with its zygote; the pool starts a new zygote.
        let next = run(&s, req(Language::Python, "print('next')")).await;
        assert_eq!(next.stdout, "next\n", "{next:?}");
        assert!(s.prewarm(&r, 1, Duration::from_secs(60)).await.unwrap() >= 1);
        let again = run(
            &s,
            req(Language::Python, "import sys; print('json' in sys.modules)"),
        )
        .await;
        assert_eq!(
            again.stdout, "True\n",
            "served by a zygote again: {again:?}"
        );
    });
}

#[test]
fn every_zygote_child_draws_fresh_randomness() {
    rt().block_on(async {
        let s = sched(2);
        let code = "import random, os; print(random.random(), os.urandom(8).hex())";
        let r = req(Language::Python, code);
        warmed(&s, &r).await;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..6 {
            let out = run(&s, r.clone()).await;
            assert_eq!(out.status, Status::Ok, "{}", out.stderr);
            for value in out.stdout.split_whitespace() {
                assert!(seen.insert(value.to_string()), "{value} repeated");
            }
        }
    });
}

/// A zygote child's run ends without waiting for its memory's teardown (the holder of its
/// memory outlives it until its init has reported), and still ends as an ordinary exit would:
/// its exit code, every line of output, a non-daemon thread joined first; nothing of it is
/// left once the run has returned, the holder included (it carries the run's process name).
#[test]
fn a_zygote_childs_fast_exit_keeps_its_status_and_output_and_leaves_nothing() {
    rt().block_on(async {
        let s = sched(1);
        let code = "import ctypes, sys, threading, time\n\
                    ctypes.CDLL(None).prctl(15, b'fast-exit-run', 0, 0, 0)\n\
                    def late():\n    time.sleep(0.2)\n    print('thread done', flush=True)\n\
                    threading.Thread(target=late).start()\n\
                    print('fast exit', '_airlock_exit' in sys.modules)\n\
                    sys.exit(7)";
        let r = req(Language::Python, code);
        warmed(&s, &r).await;
        for _ in 0..3 {
            let out = run(&s, r.clone()).await;
            assert_eq!(out.pool, "warm", "{out:?}");
            assert_eq!(out.status, Status::Error, "{out:?}");
            assert_eq!(out.exit_code, Some(7), "{out:?}");
            // Served by the fast exit (this fails if the agent no longer takes it).
            assert_eq!(out.stdout, "fast exit True\nthread done\n", "{out:?}");
            let mut left = Vec::new();
            for _ in 0..100 {
                left = our_descendants()
                    .into_iter()
                    .filter(|p| p.2 == "fast-exit-run")
                    .collect();
                if left.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(left.is_empty(), "left behind: {left:?}");
        }
    });
}

#[test]
fn zygote_children_keep_the_runs_limits() {
    rt().block_on(async {
        let s = sched(1);
        // Memory: an allocation past the limit fails inside the run.
        let mut r = req(Language::Python, "b = bytearray(400 * 1024 * 1024)\nprint('no')");
        r.memory_mb = 128;
        warmed(&s, &r).await;
        let out = run(&s, r).await;
        let kind = out.error.as_ref().map(|e| e.kind.as_str());
        assert_eq!(kind, Some("MemoryError"), "{out:?}");
        // Its usage is its own cgroup's, not the zygote's.
        assert!(out.usage.memory_peak_bytes > 0, "{out:?}");
        // Wall clock: the whole run is killed.
        let mut r = req(Language::Python, "while True: pass");
        r.timeout = Duration::from_secs(1);
        warmed(&s, &r).await;
        let out = run(&s, r).await;
        assert_eq!(out.status, Status::Timeout, "{out:?}");
        // Processes: a fork bomb meets the pids limit.
        let mut r = req(
            Language::Python,
            "import os\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            import time; time.sleep(5); os._exit(0)\n        n += 1\nexcept OSError as e:\n    print('stopped', n < 64, e.errno)",
        );
        r.pids = 32;
        warmed(&s, &r).await;
        let out = run(&s, r).await;
        assert_eq!(out.stdout.trim(), "stopped True 11", "{out:?}");
    });
}

/// A shell run that sleeps for hours, and the number its command line names (unique to this
/// test process and `base`).
fn a_long_sleep(base: u32) -> (RunRequest, String) {
    let marker = format!(
        "{}.{}",
        base + std::process::id() % 1000,
        std::process::id()
    );
    (req(Language::Shell, &format!("sleep {marker}")), marker)
}

/// Whether any process's command line contains `marker`.
fn a_process_names(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(marker))
            .unwrap_or(false)
    })
}

#[test]
fn dropping_the_future_kills_the_run() {
    rt().block_on(async {
        let s = sched(0);
        let (r, marker) = a_long_sleep(7000);
        let fut = s.run(r, Box::new(|_, _| {}));
        let _ = tokio::time::timeout(Duration::from_millis(700), fut).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !a_process_names(&marker),
            "the cancelled run is still running"
        );
    });
}

#[test]
fn a_run_cancelled_before_its_sandbox_started_never_runs_on() {
    rt().block_on(async {
        let s = sched(0);
        let (r, marker) = a_long_sleep(8000);
        // Dropped while the worker is still building the cold sandbox: the sandbox it then
        // starts is killed as soon as it has one.
        let fut = s.run(r, Box::new(|_, _| {}));
        let _ = tokio::time::timeout(Duration::from_millis(1), fut).await;
        // Gone for 3 s (far longer than a cold start takes), not merely not started yet.
        let mut seen_gone = 0;
        for _ in 0..1000 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            seen_gone = if a_process_names(&marker) {
                0
            } else {
                seen_gone + 1
            };
            if seen_gone >= 300 {
                break;
            }
        }
        assert!(seen_gone >= 300, "the cancelled run is still running");
    });
}

#[test]
fn excess_waiting_runs_are_refused_not_hung() {
    rt().block_on(async {
        let s = one_at_a_time(1);
        let slow = || req(Language::Shell, "sleep 2");
        let a = tokio::spawn({
            let s = s.clone();
            async move { s.run(slow(), Box::new(|_, _| {})).await }
        });
        let b = tokio::spawn({
            let s = s.clone();
            async move { s.run(slow(), Box::new(|_, _| {})).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let c = s.run(slow(), Box::new(|_, _| {})).await;
        assert!(
            matches!(c, Err(airlock_runtime::RuntimeError::Busy { .. })),
            "{c:?}"
        );
        assert!(a.await.unwrap().is_ok() && b.await.unwrap().is_ok());
    });
}

#[test]
fn result_channel_and_input_files_cold_and_warm() {
    rt().block_on(async {
        let code = "import os\ndata = open('/workspace/in/data.bin', 'rb').read()\nwith os.fdopen(int(os.environ['AIRLOCK_RESULT_FD']), 'wb') as f:\n    f.write(data * 2)\nprint('stdout is separate')";
        let big = vec![7u8; 6 << 20];
        let r = RunRequest {
            files: vec![("in/data.bin".into(), big.clone())],
            result_channel: true,
            ..req(Language::Python, code)
        };
        for pool_size in [0, 1] {
            let s = sched(pool_size);
            if pool_size > 0 {
                assert_eq!(s.prewarm(&r, 1, Duration::from_secs(20)).await.unwrap(), 1);
            }
            let out = run(&s, r.clone()).await;
            assert_eq!(out.status, Status::Ok, "{out:?}");
            assert_eq!(out.pool, if pool_size > 0 { "warm" } else { "cold" });
            assert_eq!(out.stdout, "stdout is separate\n");
            let got = out.result.expect("a result");
            assert_eq!(got.len(), big.len() * 2);
            assert!(got.iter().all(|b| *b == 7));
        }
        let bad = RunRequest { files: vec![("../escape".into(), vec![])], ..req(Language::Python, "1") };
        assert!(sched(0).run(bad, Box::new(|_, _| {})).await.is_err());
    });
}

/// Waits until the pool for `r`'s shape has a ready sandbox.
async fn warmed(s: &Scheduler, r: &RunRequest) {
    let ready = s.prewarm(r, 1, Duration::from_secs(120)).await.unwrap();
    assert!(ready >= 1, "the pool never got a ready sandbox");
}

/// What a zygote's child sees of itself: the same isolation a cold run gets.
const ISOLATION_PROBE: &str = r#"
import ctypes, os, socket, sys
status = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
libc = ctypes.CDLL(None, use_errno=True)
def errno_of(rc):
    return ctypes.get_errno() if rc != 0 else 0
print("zygote", "json" in sys.modules and "ctypes" in sys.modules)
print("pid", os.getpid(), os.getppid())
print("procs", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
print("ids", os.getuid(), os.geteuid(), os.getgid())
print("caps", status["CapEff"].strip(), status["CapPrm"].strip(), status["CapBnd"].strip(), status["CapAmb"].strip())
print("nnp", status["NoNewPrivs"].strip(), "seccomp", status["Seccomp"].strip())
print("cgroup root", all(l.endswith(":/") for l in open("/proc/self/cgroup").read().split()))
print("host", socket.gethostname())
print("tmp", os.listdir("/tmp"), os.listdir("/workspace"), os.getcwd())
print("unshare", errno_of(libc.unshare(0x00020000)))
print("mount", errno_of(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)))
print("ifaces", sorted(l.split(":")[0].strip() for l in open("/proc/self/net/dev").readlines()[2:]))
"#;

as_us_and_the_test_user!(
    python_pools_fork_from_a_zygote_into_full_isolation,
    python_pools_fork_from_a_zygote_into_full_isolation_as_the_test_user,
    zygote_isolation_unprivileged,
    zygote_isolation
);

fn zygote_isolation() {
    rt().block_on(async {
        let s = sched(2);
        let r = req(Language::Python, ISOLATION_PROBE);
        warmed(&s, &r).await;
        let out = run(&s, r).await;
        assert_eq!(out.status, Status::Ok, "{}", out.stderr);
        assert_eq!(out.pool, "warm");
        let want = [
            "zygote True",
            "pid 2 1",
            "procs [1, 2]",
            "ids 1000 1000 1000",
            "caps 0000000000000000 0000000000000000 0000000000000000 0000000000000000",
            "nnp 1 seccomp 2",
            "cgroup root True",
            "host sandbox",
            "tmp [] [] /workspace",
            "unshare 1",
            "mount 1",
            "ifaces ['lo']",
        ];
        let lines: Vec<&str> = out.stdout.lines().collect();
        for w in want {
            assert!(lines.contains(&w), "missing {w:?} in:\n{}", out.stdout);
        }
        // The zygote itself holds no capability in any set: each child gets the ones it
        // needs from a user namespace of its own.
        let zygotes = our_children_running(&our_descendants(), "/airlock/zygote.py");
        assert_eq!(zygotes.len(), 1, "one zygote for the pool");
        let status = std::fs::read_to_string(format!("/proc/{}/status", zygotes[0])).unwrap();
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            let line = status.lines().find(|l| l.starts_with(set)).unwrap();
            assert!(line.ends_with("0000000000000000"), "zygote {line}");
        }
        // Once it has served a run it is non-dumpable (its children share its memory, and one
        // makes it dumpable for a moment to write its id maps): the /proc files of a
        // non-dumpable process belong to root, not to its uid.
        use std::os::unix::fs::MetadataExt;
        let mem = std::fs::metadata(format!("/proc/{}/mem", zygotes[0])).unwrap();
        assert_eq!(mem.uid(), 0, "the zygote is dumpable after a run");
    });
}

as_us_and_the_test_user!(
    zygote_children_each_get_network_and_ipc_namespaces_of_their_own,
    zygote_children_each_get_network_and_ipc_namespaces_of_their_own_as_the_test_user,
    own_namespaces_unprivileged,
    own_namespaces
);

/// Each run, at once with the others, takes what one network and one ipc namespace have only
/// one of: a listener on 127.0.0.1:45831 and the SysV shared memory key 0x41495200, created
/// exclusively. Either fails (the run errors) if two runs share a namespace. Each namespace
/// is owned by the run's own user namespace, so what the run may do there it may do nowhere
/// else.
const OWN_NAMESPACES: &str = r#"
import ctypes, fcntl, os, socket, time
libc = ctypes.CDLL(None, use_errno=True)
shm = libc.shmget(0x41495200, 4096, 0o1000 | 0o2000 | 0o600)  # IPC_CREAT | IPC_EXCL
err = ctypes.get_errno()
listener = socket.socket()
listener.bind(("127.0.0.1", 45831))
listener.listen()
ino = {n: os.stat("/proc/self/ns/" + n).st_ino for n in ("net", "ipc", "user")}
own = {n: os.fstat(fcntl.ioctl(os.open("/proc/self/ns/" + n, os.O_RDONLY), 0xB701)).st_ino for n in ("net", "ipc")}
print("shm", shm >= 0, err, "owned", own["net"] == ino["user"], own["ipc"] == ino["user"], ino["net"], ino["ipc"])
time.sleep(1)
"#;

fn own_namespaces() {
    rt().block_on(async {
        let s = sched(2);
        let r = req(Language::Python, OWN_NAMESPACES);
        warmed(&s, &r).await;
        let runs: Vec<_> = (0..6)
            .map(|_| {
                let (s, r) = (s.clone(), r.clone());
                tokio::spawn(async move { run(&s, r).await })
            })
            .collect();
        let (mut nets, mut ipcs) = (
            std::collections::BTreeSet::new(),
            std::collections::BTreeSet::new(),
        );
        for t in runs {
            let out = t.await.unwrap();
            assert_eq!(
                out.status,
                Status::Ok,
                "two runs share a namespace? {}",
                out.stderr
            );
            assert_eq!(out.pool, "warm", "{out:?}");
            let w: Vec<&str> = out.stdout.split_whitespace().collect();
            assert_eq!(
                w[..6],
                ["shm", "True", "0", "owned", "True", "True"],
                "{}",
                out.stdout
            );
            nets.insert(w[6].to_string());
            ipcs.insert(w[7].to_string());
        }
        assert_eq!(
            (nets.len(), ipcs.len()),
            (6, 6),
            "shared: {nets:?} {ipcs:?}"
        );
    });
}

/// Its import counts itself in /dev/shm and says so on stdout: neither may reach a run that
/// did not import it itself, and no run may see what another did to it.
const COUNTED: &str = r#"
print("import-time output")
with open("/dev/shm/imports", "a") as f:
    f.write("x")
IMPORTS = len(open("/dev/shm/imports").read())
MARK = None
"#;

const PLANT_IN_PACKAGE: &str = r#"
import airlock_counted, sys
airlock_counted.MARK = "planted"
open("/dev/shm/imports", "a").write("yyyy")
print("A", airlock_counted.IMPORTS)
"#;

const PROBE_PACKAGE: &str = r#"
import os, sys
m = sys.modules.get("airlock_counted")
shm = len(open("/dev/shm/imports").read()) if os.path.exists("/dev/shm/imports") else -1
print("B", m is not None, getattr(m, "IMPORTS", None), getattr(m, "MARK", None), shm, "ctypes" in sys.modules)
"#;

#[test]
fn pooled_runs_with_packages_come_imported_and_start_fresh() {
    let house = Wheelhouse::new("counted", "airlock_counted", COUNTED);
    rt().block_on(async {
        // Untrusted (the default): a freezer imports them once, in a sandbox of its own, and
        // each run's sandbox restores that interpreter. Trusted: a zygote imports them once
        // and forks each run. Either way the import's /dev/shm is not the runs'.
        for (trusted, want) in [
            (false, "B True 1 None -1 True"),
            (true, "B True 1 None -1 True"),
        ] {
            let s = sched(2);
            let plant = house.request("airlock_counted", PLANT_IN_PACKAGE, trusted);
            let probe = house.request("airlock_counted", PROBE_PACKAGE, trusted);
            let ready = s.prewarm(&plant, 2, Duration::from_secs(60)).await.unwrap();
            assert_eq!(ready, 2, "trusted={trusted}");
            let a = run(&s, plant).await;
            let b = run(&s, probe).await;
            for r in [&a, &b] {
                assert_eq!(r.status, Status::Ok, "trusted={trusted}: {}", r.stderr);
                assert_eq!(r.pool, "warm", "trusted={trusted}");
                assert_eq!(r.environment_cached, Some(true));
                assert!(!r.stdout.contains("import-time"), "{}", r.stdout);
            }
            assert_eq!(a.stdout.trim(), "A 1", "trusted={trusted}");
            assert_eq!(b.stdout.trim(), want, "trusted={trusted}");
            s.shutdown().await;
        }
    });
}

/// A package whose module holds memory a run can write: a mutable buffer, and the bytes of an
/// immutable constant (through ctypes, as hostile code would).
const HELD: &str = r#"
import mmap, ssl
CTX = ssl.create_default_context()  # OpenSSL's generator, seeded at import
# Memory the kernel wipes in a forked child (a generator's state, say): never in an image.
WIPED = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE)
WIPED.write(b"secret")
WIPED.madvise(getattr(mmap, "MADV_WIPEONFORK", 18))
DATA = bytearray(b"original")
CONST = b"an immutable constant"
"#;

/// Run A writes over the memory its sandbox restored from the pool's image, and draws random
/// numbers; run B, restored from the same image right after, must see neither.
const WRITE_OVER_IMAGE: &str = r#"
import ctypes, os, random, sys, airlock_held
airlock_held.DATA[:] = b"planted!"
start = id(airlock_held.CONST) + sys.getsizeof(airlock_held.CONST) - len(airlock_held.CONST) - 1
ctypes.memmove(start, b"X" * len(airlock_held.CONST), len(airlock_held.CONST))
assert airlock_held.CONST == b"X" * len(airlock_held.CONST)
import ssl
print(os.path.basename(os.readlink("/proc/self/exe")), bytes(airlock_held.DATA), random.random(), ssl.RAND_bytes(16).hex(), os.urandom(16).hex())
"#;

const READ_IMAGE: &str = r#"
import os, random, ssl, sys
m = sys.modules["airlock_held"]
print(os.path.basename(os.readlink("/proc/self/exe")), bytes(m.DATA), m.CONST, "wiped", m.WIPED[:6] == bytes(6), random.random(), ssl.RAND_bytes(16).hex(), os.urandom(16).hex())
"#;

as_us_and_the_test_user!(
    runs_restored_from_one_image_never_see_each_other,
    runs_restored_from_one_image_never_see_each_other_as_the_test_user,
    restored_runs_unprivileged,
    restored_runs
);

fn restored_runs() {
    let house = Wheelhouse::new("held", "airlock_held", HELD);
    rt().block_on(async {
        let s = sched(1);
        let a_req = house.request("airlock_held", WRITE_OVER_IMAGE, false);
        let b_req = house.request("airlock_held", READ_IMAGE, false);
        let mut draws = Vec::new();
        for round in 0..3 {
            warmed(&s, &a_req).await;
            let a = run(&s, a_req.clone()).await;
            let b = run(&s, b_req.clone()).await;
            for r in [&a, &b] {
                assert_eq!(r.status, Status::Ok, "round {round}: {}", r.stderr);
                assert_eq!(r.pool, "warm");
            }
            let a: Vec<&str> = a.stdout.split_whitespace().collect();
            let b: Vec<&str> = b.stdout.split_whitespace().collect();
            assert_eq!(a[..2], ["restore", "b'planted!'"], "round {round}: {a:?}");
            assert_eq!(
                b[..3],
                ["restore", "b'original'", "b'an"],
                "round {round}: run B saw run A's writes: {b:?}"
            );
            assert_eq!(b[5..7], ["wiped", "True"], "round {round}: {b:?}");
            draws.extend(a[a.len() - 3..].iter().map(|d| d.to_string()));
            draws.extend(b[b.len() - 3..].iter().map(|d| d.to_string()));
        }
        // Every restored process reseeds (`random`, OpenSSL's generator made at import, the
        // kernel's): no two runs draw the same number.
        let mut distinct = draws.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            draws.len(),
            "random draws repeat: {draws:?}"
        );
        s.shutdown().await;
    });
}

/// What a freeze cannot carry into a restored process — a thread, a process or a descriptor
/// an import left — makes the pool pre-start sandboxes that import for themselves instead.
#[test]
fn an_untrusted_package_that_leaves_a_thread_or_a_descriptor_is_never_frozen() {
    for (name, init) in [
        (
            "airlock_threaded_u",
            "import threading, time\nthreading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n",
        ),
        (
            "airlock_fd_u",
            "import os\nFD = os.open('/dev/null', os.O_RDONLY)\n",
        ),
    ] {
        let house = Wheelhouse::new(name, name, init);
        rt().block_on(async {
            let s = sched(1);
            let code = format!(
                "import os, sys\nprint({name:?} in sys.modules, os.path.basename(os.readlink('/proc/self/exe')).startswith('python'))"
            );
            let r = house.request(name, &code, false);
            warmed(&s, &r).await;
            let out = run(&s, r).await;
            assert_eq!(out.status, Status::Ok, "{}", out.stderr);
            assert_eq!(out.pool, "warm");
            assert_eq!(out.stdout.trim(), "True True", "{name}: {}", out.stdout);
            s.shutdown().await;
        });
    }
}

#[test]
fn a_trusted_package_that_leaves_a_thread_or_shared_memory_is_never_forked_from() {
    for (name, init) in [
        (
            "airlock_threaded",
            "import threading, time\nthreading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n",
        ),
        (
            "airlock_shared",
            "import mmap\nSHARED = mmap.mmap(-1, 4096)\n",
        ),
        // Read-only, but any child could mprotect it writable.
        (
            "airlock_shared_ro",
            "import mmap\nSHARED = mmap.mmap(-1, 4096, access=mmap.ACCESS_READ)\n",
        ),
    ] {
        let house = Wheelhouse::new(name, name, init);
        rt().block_on(async {
            let s = sched(1);
            let code =
                format!("import sys\nprint({name:?} in sys.modules, \"ctypes\" in sys.modules)");
            let r = house.request(name, &code, true);
            warmed(&s, &r).await;
            let out = run(&s, r).await;
            assert_eq!(out.status, Status::Ok, "{}", out.stderr);
            // The zygote refused to serve: a pre-started sandbox did, with its own import.
            assert_eq!(out.pool, "warm");
            assert_eq!(out.stdout.trim(), "True False", "{name}: {}", out.stdout);
            assert!(
                our_children_running(&our_descendants(), "/airlock/zygote.py").is_empty(),
                "{name}: no zygote left running"
            );
        });
    }
}

#[test]
fn prewarm_refuses_a_template_no_run_could_have_and_names_the_field() {
    rt().block_on(async {
        let s = sched(1);
        let mut template = req(Language::Python, "");
        template.memory_mb = 1;
        let err = s
            .prewarm(&template, 1, Duration::from_secs(5))
            .await
            .expect_err("1 MiB of memory is refused");
        assert!(
            matches!(&err, airlock_runtime::RuntimeError::InvalidInput { field, .. } if field == "memory"),
            "{err:?}"
        );
        assert_eq!(s.ready(&template), 0);
        // A template's code is not looked at: an empty one pools.
        template.memory_mb = 256;
        assert_eq!(s.prewarm(&template, 1, Duration::from_secs(20)).await.unwrap(), 1);
    });
}

/// A use-once sandbox imports the run's packages before the run exists: that import must not
/// eat into the run's CPU limit (timeout + 2 s), and the run must still get exactly its own.
#[test]
fn a_slow_preload_does_not_spend_the_runs_cpu_limit() {
    let burn = "import time\nend = time.process_time() + 2.5\nwhile time.process_time() < end:\n    pass\n";
    let house = Wheelhouse::new("slow", "airlock_slow", burn);
    rt().block_on(async {
        let s = sched(1);
        let code = "import resource, sys\n\
                    u = resource.getrusage(resource.RUSAGE_SELF)\n\
                    print('airlock_slow' in sys.modules, resource.getrlimit(resource.RLIMIT_CPU)[0] - (u.ru_utime + u.ru_stime))";
        let r = RunRequest {
            timeout: Duration::from_millis(500), // RLIMIT_CPU 2 s: less than the import takes
            ..house.request("airlock_slow", code, false)
        };
        assert_eq!(s.prewarm(&r, 1, Duration::from_secs(60)).await.unwrap(), 1);
        let out = run(&s, r).await;
        assert_eq!(out.status, Status::Ok, "{}", out.stderr);
        assert_eq!(out.pool, "warm");
        let (imported, left) = out.stdout.trim().split_once(' ').unwrap();
        assert_eq!(imported, "True", "{}", out.stdout);
        let left: f64 = left.parse().unwrap();
        // What is left is the run's own 2 s (plus under a second of rounding), not the
        // preload's allowance.
        assert!((1.0..3.0).contains(&left), "CPU seconds left to the run: {left}");
        // Nor does the run's reported CPU time include the 2.5 s the preload burned.
        assert!(
            out.usage.cpu_ms < 1000,
            "cpu_ms {} counts the preload",
            out.usage.cpu_ms
        );
    });
}

/// The run's CPU limit is set from outside once the preload is done; a package that starts a
/// process at import (which would keep the preload's larger limit) gets no use-once sandbox.
#[test]
fn a_package_that_forks_at_import_gets_no_pre_started_sandbox() {
    let init = "import os, time\nif os.fork() == 0:\n    time.sleep(3600)\n    os._exit(0)\n";
    let house = Wheelhouse::new("forks", "airlock_forks", init);
    rt().block_on(async {
        let s = sched(1);
        let r = house.request("airlock_forks", "print('ran')", false);
        assert_eq!(s.prewarm(&r, 1, Duration::from_secs(5)).await.unwrap(), 0);
        let out = run(&s, r).await;
        assert_eq!(out.status, Status::Ok, "{}", out.stderr);
        assert_eq!((out.pool.as_str(), out.stdout.trim()), ("cold", "ran"));
    });
}

/// Native thread pools an import starts (OpenBLAS, OpenMP) are sized by the sandbox's CPU
/// quota, not by the host's cores, during a pooled sandbox's imports; the run's own
/// environment is what it asked for, and a size the caller set is kept.
#[test]
fn a_preload_sizes_native_thread_pools_by_the_cpu_quota() {
    let init = "import os\nSEEN = {v: os.environ.get(v) for v in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'NUMEXPR_NUM_THREADS')}\n";
    let house = Wheelhouse::new("pools", "airlock_pools", init);
    let code = "import os, sys\nm = sys.modules.get('airlock_pools')\nprint(sorted(set(m.SEEN.values())) if m else 'not preloaded', os.environ.get('OMP_NUM_THREADS'))";
    rt().block_on(async {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for (trusted, cpus, env, want) in [
            // A use-once sandbox: its quota in whole cores.
            (false, 1.0, vec![], "['1'] None".to_string()),
            (false, 1.5, vec![], format!("['{}'] None", 2.min(cores))),
            // A zygote: always one thread (only the forking one survives a fork).
            (true, 2.0, vec![], "['1'] None".to_string()),
            // What the caller set stays.
            (
                false,
                1.0,
                vec![("OMP_NUM_THREADS".to_string(), "7".to_string())],
                "['1', '7'] 7".to_string(),
            ),
        ] {
            let s = sched(1);
            let mut r = house.request("airlock_pools", code, trusted);
            r.cpus = cpus;
            r.env = env.into_iter().collect();
            warmed(&s, &r).await;
            let out = run(&s, r).await;
            assert_eq!(out.status, Status::Ok, "{}", out.stderr);
            assert_eq!(out.pool, "warm");
            assert_eq!(out.stdout.trim(), want, "trusted={trusted} cpus={cpus}");
            s.shutdown().await;
        }
    });
}

/// Distinct request shapes cannot each get a pool without bound. Beyond `max_pools` a new
/// shape runs cold and leaves the pool in use alone; once that pool has gone unused for the
/// eviction time (half of `idle` here, 2 s), the new shape takes its place.
#[test]
fn request_shapes_beyond_max_pools_run_cold_until_a_pool_goes_unused() {
    rt().block_on(async {
        let s = track(Scheduler::new(SchedulerConfig {
            pool_size: 1,
            max_pools: 1,
            idle: Duration::from_secs(4),
            ..SchedulerConfig::default()
        }));
        let a = req(Language::Python, "print('a')");
        let b = RunRequest {
            memory_mb: 256,
            ..req(Language::Python, "print('b')")
        };
        warmed(&s, &a).await;
        let out = run(&s, b.clone()).await;
        assert_eq!(
            (out.status, out.pool.as_str()),
            (Status::Ok, "cold"),
            "{out:?}"
        );
        let wait = Duration::from_secs(5);
        assert_eq!(s.prewarm(&b, 1, wait).await.unwrap(), 0, "a second pool");
        assert_eq!(
            (s.ready(&a), s.ready(&b)),
            (1, 0),
            "the pool in use was touched"
        );
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(s.prewarm(&b, 1, wait).await.unwrap(), 1, "no room made");
        assert_eq!(
            (s.ready(&a), s.ready(&b)),
            (0, 1),
            "the unused pool is still there"
        );
        let out = run(&s, b).await;
        assert_eq!(
            (out.status, out.pool.as_str()),
            (Status::Ok, "warm"),
            "{out:?}"
        );
    });
}

/// A zygote serves every run of its pool at once, so its own limits are not a run's: a burst of
/// runs with a small pids limit must not make its forks fail (which killed it, and every run in
/// flight with it), nor the descriptors it holds per run exhaust its open-files limit. Each run
/// still has exactly its own limits.
#[test]
fn a_burst_of_runs_never_takes_the_zygote_and_the_runs_in_flight_with_it() {
    rt().block_on(async {
        let s = track(Scheduler::new(airlock_runtime::SchedulerConfig {
            pool_size: 2,
            max_concurrent: 155,
            ..airlock_runtime::SchedulerConfig::default()
        }));
        let template = RunRequest {
            pids: 8,
            timeout: Duration::from_secs(60),
            ..req(Language::Python, "")
        };
        warmed(&s, &template).await;
        let victim = RunRequest {
            code: b"import resource, time\nprint(resource.getrlimit(resource.RLIMIT_NOFILE), flush=True)\ntime.sleep(6)\nprint('done')".to_vec(),
            ..template.clone()
        };
        let v = tokio::spawn({
            let s = s.clone();
            async move { run(&s, victim).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Its limits: the zygote's own, not the run's.
        let procs = our_descendants();
        let zygote = procs
            .iter()
            .find(|p| p.3.contains("/airlock/zygote.py"))
            .expect("a zygote is running")
            .0;
        let files = open_files_limit(&zygote.to_string());
        assert!(files > 1024, "the zygote has a run's open-files limit: {files}");
        let burst: Vec<_> = (0..150)
            .map(|i| {
                let s = s.clone();
                let r = RunRequest {
                    code: format!("print({i})").into_bytes(),
                    ..template.clone()
                };
                tokio::spawn(async move { run(&s, r).await })
            })
            .collect();
        let mut warm = 0;
        for (i, b) in burst.into_iter().enumerate() {
            let r = b.await.unwrap();
            assert_eq!(r.status, Status::Ok, "run {i}: {r:?}");
            assert_eq!(r.stdout, format!("{i}\n"));
            warm += usize::from(r.pool == "warm");
        }
        let v = v.await.unwrap();
        assert_eq!(v.status, Status::Ok, "the run in flight: {v:?}");
        assert_eq!(v.pool, "warm");
        assert_eq!(v.stdout, "(1024, 1024)\ndone\n", "the run's own open-files limit");
        eprintln!("{warm} of 150 burst runs were warm");
        s.shutdown().await;
    });
}

as_us_and_the_test_user!(
    one_run_cannot_take_the_hosts_inotify_instances,
    one_run_cannot_take_the_hosts_inotify_instances_as_the_test_user,
    inotify_unprivileged,
    inotify_instances
);

/// Inotify instances are counted per user up the chain of user namespaces, to each one's owner:
/// the supervisor's user (host root, as root). A run that takes every one it can gets its own
/// namespace's share, cold or forked by a zygote, and while it holds them the host can still
/// make one.
fn inotify_instances() {
    const HOG: &str = "import ctypes, time\nlibc = ctypes.CDLL(None, use_errno=True)\nn = 0\nwhile libc.inotify_init1(0) >= 0:\n    n += 1\nprint(n, ctypes.get_errno(), flush=True)\ntime.sleep(3)";
    let host_can = || {
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import ctypes; print(ctypes.CDLL(None).inotify_init1(0) >= 0)",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "True"
    };
    // A sandbox writes its namespace's cap through the host's /proc (best effort): a host whose
    // /proc/sys is mounted read-only (a container's) keeps the host's limits alone.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let read_only_sys = mountinfo.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(4) == Some(&"/proc/sys") && f.get(5).is_some_and(|o| o.split(',').any(|o| o == "ro"))
    });
    if read_only_sys || !std::path::Path::new("/proc/sys/user/max_inotify_instances").exists() {
        eprintln!(
            "skipped: this host's /proc/sys is read-only or has no user.max_inotify_instances"
        );
        return;
    }
    rt().block_on(async {
        let s = sched(1);
        for warm in [false, true] {
            let r = req(Language::Python, HOG);
            if warm {
                warmed(&s, &r).await;
            }
            let could = host_can();
            let (said, mut holding) = tokio::sync::watch::channel(false);
            let hog = tokio::spawn({
                let s = s.clone();
                async move {
                    s.run(
                        r,
                        Box::new(move |_, _| {
                            let _ = said.send(true);
                        }),
                    )
                    .await
                    .expect("the run completes")
                }
            });
            // Its instances are all taken once it has said how many it got.
            holding.wait_for(|h| *h).await.unwrap();
            let host_could = host_can();
            let out = hog.await.unwrap();
            assert_eq!(out.status, Status::Ok, "{out:?}");
            assert_eq!(out.pool, if warm { "warm" } else { "cold" });
            assert_eq!(
                out.stdout.trim(),
                "16 24",
                "warm={warm}: the run's share (EMFILE after)"
            );
            if could {
                assert!(
                    host_could,
                    "warm={warm}: a run took the host user's last inotify instance"
                );
            }
        }
    });
}

/// A zygote whose fork fails (its cgroup full) fails that request alone and serves on: the
/// runs go cold meanwhile, and it is the same zygote afterwards.
#[test]
fn a_zygote_whose_fork_fails_serves_on() {
    rt().block_on(async {
        let s = sched(1);
        let r = req(Language::Python, "print('fine')");
        warmed(&s, &r).await;
        let zygote = our_descendants()
            .into_iter()
            .find(|p| p.3.contains("/airlock/zygote.py"))
            .expect("a zygote is running")
            .0;
        let cgroups = std::fs::read_to_string(format!("/proc/{zygote}/cgroup")).unwrap();
        let dir = match cgroups.lines().find_map(|l| l.split_once(":pids:")) {
            Some((_, path)) => format!("/sys/fs/cgroup/pids{path}"),
            None => {
                let path = cgroups.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
                format!("/sys/fs/cgroup{path}")
            }
        };
        let max = format!("{dir}/pids.max");
        let before = std::fs::read_to_string(&max).unwrap();
        let current = std::fs::read_to_string(format!("{dir}/pids.current")).unwrap();
        std::fs::write(&max, current.trim()).unwrap();
        let mut pools = Vec::new();
        for _ in 0..4 {
            let out = run(&s, r.clone()).await;
            assert_eq!(out.status, Status::Ok, "{out:?}");
            assert_eq!(out.stdout, "fine\n");
            pools.push(out.pool);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        std::fs::write(&max, before.trim()).unwrap();
        assert!(
            std::path::Path::new(&format!("/proc/{zygote}")).exists(),
            "a failed fork ended the zygote"
        );
        assert!(
            pools.iter().any(|p| p == "cold"),
            "no fork was refused: {pools:?}"
        );
        s.shutdown().await;
    });
}

/// A scheduler that runs one run at a time, cold, and lets `max_queue` wait.
fn one_at_a_time(max_queue: usize) -> Scheduler {
    track(Scheduler::new(SchedulerConfig {
        max_concurrent: 1,
        max_queue,
        pool_size: 0,
        ..SchedulerConfig::default()
    }))
}

type Outcome = Result<airlock_runtime::RunResult, airlock_runtime::RuntimeError>;

/// `Scheduler::start`'s completions, sent on a channel: the channel disconnects once `on_done`
/// is gone, so a second report would have to come before that.
fn started(
    s: &Scheduler,
    r: RunRequest,
) -> (
    airlock_runtime::RunHandle,
    std::sync::mpsc::Receiver<Outcome>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = s.start(
        r,
        Box::new(|_, _| {}),
        Box::new(move |outcome| tx.send(outcome).unwrap()),
    );
    (handle, rx)
}

/// Exactly one report: it arrives, and then the callback (the sender) is gone.
async fn the_one_report(rx: std::sync::mpsc::Receiver<Outcome>) -> Outcome {
    tokio::task::spawn_blocking(move || {
        let outcome = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("on_done was never called");
        assert!(
            matches!(
                rx.recv_timeout(Duration::from_secs(5)),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
            ),
            "on_done was called again, or never let go of"
        );
        outcome
    })
    .await
    .unwrap()
}

/// Waits (up to 6 s) for a process whose command line holds `marker`; whether one showed.
async fn until_running(marker: &str) -> bool {
    for _ in 0..300 {
        if a_process_names(marker) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Cancels the running run of `handle` and checks it is reported, not as a success, and gone.
async fn cancel_while_running(
    handle: airlock_runtime::RunHandle,
    rx: std::sync::mpsc::Receiver<Outcome>,
    marker: &str,
    what: &str,
) -> Outcome {
    handle.cancel();
    let out = the_one_report(rx).await;
    assert!(
        !matches!(&out, Ok(r) if r.status == Status::Ok),
        "{what}: a killed run reported success: {out:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !a_process_names(marker),
        "{what}: the cancelled run is still running"
    );
    out
}

#[test]
fn start_reports_each_run_once_warm_and_cold() {
    rt().block_on(async {
        let warm = sched(1);
        let cold = sched(0);
        for lang in [Language::Python, Language::Shell] {
            let code = match lang {
                Language::Shell => "echo started",
                _ => "print('started')",
            };
            let r = req(lang, code);
            assert_eq!(
                warm.prewarm(&r, 1, Duration::from_secs(20)).await.unwrap(),
                1,
                "{lang:?} pool never filled"
            );
            for (s, pool) in [(&warm, "warm"), (&cold, "cold")] {
                let (_handle, rx) = started(s, r.clone());
                let out = the_one_report(rx)
                    .await
                    .unwrap_or_else(|e| panic!("{lang:?} {pool}: {e}"));
                assert_eq!(out.status, Status::Ok, "{lang:?} {pool}: {out:?}");
                assert_eq!(out.stdout, "started\n", "{lang:?} {pool}");
                assert_eq!(out.pool, pool, "{lang:?}");
            }
        }
        // Refused before it starts: reported too, naming the field.
        let (_handle, rx) = started(&warm, req(Language::Python, ""));
        let e = the_one_report(rx).await.unwrap_err();
        assert!(e.to_string().contains("code"), "{e}");
    });
}

#[test]
fn a_started_warm_run_cancelled_is_killed_and_its_pool_refilled() {
    rt().block_on(async {
        let s = sched(1);
        for lang in [Language::Python, Language::Shell] {
            let (r, marker) = a_long_sleep(8500);
            let r = match lang {
                Language::Python => req(
                    lang,
                    &format!("import subprocess\nsubprocess.run(['sleep', '{marker}'])"),
                ),
                _ => r,
            };
            assert_eq!(
                s.prewarm(&r, 1, Duration::from_secs(20)).await.unwrap(),
                1,
                "{lang:?} pool never filled"
            );
            let (handle, rx) = started(&s, r.clone());
            assert!(
                until_running(&marker).await,
                "{lang:?}: the run never started"
            );
            let out = cancel_while_running(handle, rx, &marker, &format!("{lang:?}")).await;
            if let Ok(out) = out {
                assert_eq!(out.pool, "warm", "{lang:?}: {out:?}");
            }
            // And the pool serves again, refilled after the kill.
            assert_eq!(
                s.prewarm(&r, 1, Duration::from_secs(20)).await.unwrap(),
                1,
                "{lang:?} pool never refilled"
            );
            let echo = match lang {
                Language::Shell => "echo after",
                _ => "print('after')",
            };
            let out = run(
                &s,
                RunRequest {
                    code: echo.into(),
                    ..r
                },
            )
            .await;
            assert_eq!(
                (out.stdout.as_str(), out.pool.as_str()),
                ("after\n", "warm"),
                "{lang:?}"
            );
        }
    });
}

#[test]
fn a_run_cancelled_before_its_thread_starts_spends_no_warm_sandbox() {
    // One blocking thread, held: the started run's thread cannot begin until it is let go.
    let rt = Rt(tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap());
    rt.block_on(async {
        let s = sched(1);
        let r = req(Language::Python, "print('ran')");
        assert_eq!(s.prewarm(&r, 1, Duration::from_secs(20)).await.unwrap(), 1);
        let built = s.warm_started();
        let (gate, held) = std::sync::mpsc::channel::<()>();
        let holder = tokio::task::spawn_blocking(move || held.recv());
        let (handle, rx) = started(&s, r.clone());
        handle.cancel();
        gate.send(()).unwrap();
        holder.await.unwrap().unwrap();
        let out = the_one_report(rx).await;
        assert!(
            matches!(&out, Err(airlock_runtime::RuntimeError::Busy { why }) if why.contains("stopped waiting")),
            "{out:?}"
        );
        assert_eq!(s.ready(&r), 1, "the warm sandbox was spent on a cancelled run");
        assert_eq!(s.warm_started(), built, "a sandbox was built to replace one never used");
        let out = run(&s, r).await;
        assert_eq!((out.stdout.as_str(), out.pool.as_str()), ("ran\n", "warm"));
    });
}

#[test]
fn a_started_run_cancelled_running_or_queued_is_stopped_and_reported() {
    rt().block_on(async {
        let s = one_at_a_time(4);
        let (running, running_marker) = a_long_sleep(9000);
        let (queued, queued_marker) = a_long_sleep(9500);
        let (a, a_rx) = started(&s, running);
        let (b, b_rx) = started(&s, queued);
        // `a` holds the only slot (it is running once its process shows); `b` waits for it.
        assert!(
            until_running(&running_marker).await,
            "the first run never started"
        );
        b.cancel();
        let b_out = the_one_report(b_rx).await;
        assert!(
            matches!(b_out, Err(airlock_runtime::RuntimeError::Busy { .. })),
            "{b_out:?}"
        );
        // Reported without waiting for the slot: the run ahead of it is still going.
        assert!(
            a_process_names(&running_marker),
            "the queued run was reported only once the slot was free"
        );
        let _ = cancel_while_running(a, a_rx, &running_marker, "the running run").await;
        assert!(
            !a_process_names(&queued_marker),
            "the cancelled queued run started"
        );
        // The slot is free again.
        let out = run(&s, req(Language::Shell, "echo after")).await;
        assert_eq!(out.stdout, "after\n");
    });
}
