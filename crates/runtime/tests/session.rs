//! Sessions: state that persists across calls of one session and nowhere else, calls one at a
//! time, output that belongs to its call, and a host that stays sound whatever the code does to
//! the agent it shares an interpreter with.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_runtime::{
    Language, RunRequest, RunResult, RuntimeError, Scheduler, Session, SessionOptions, Status,
};

mod common;
use common::*;

fn python() -> RunRequest {
    RunRequest {
        timeout: Duration::from_secs(20),
        ..req(Language::Python, "")
    }
}

async fn open(s: &Scheduler, template: RunRequest, options: SessionOptions) -> Session {
    s.session(template, options)
        .await
        .expect("the session starts")
}

async fn call(session: &Session, code: &str) -> RunResult {
    session
        .run(code, None, Box::new(|_, _| {}))
        .await
        .expect("the call completes")
}

fn assert_closed(r: Result<RunResult, RuntimeError>) {
    match r {
        Err(e @ RuntimeError::SessionClosed { .. }) => assert_eq!(e.kind(), "SessionClosed"),
        other => panic!("a closed session served a call: {other:?}"),
    }
}

/// The session refuses calls, saying `why`, and its sandbox is soon gone.
async fn assert_closed_because(session: &Session, why: &str) {
    match session.run("print(1)", None, Box::new(|_, _| {})).await {
        Err(RuntimeError::SessionClosed { why: said }) => assert!(said.contains(why), "{said}"),
        other => panic!("a session closed for {why:?} served a call: {other:?}"),
    }
    for _ in 0..100 {
        if live_session_sandboxes().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        live_session_sandboxes().is_empty(),
        "the sandbox of a session closed for {why:?} lives on"
    );
}

/// Sessions' sandboxes still running in this test process (each test has its own process).
fn live_session_sandboxes() -> Vec<i32> {
    our_descendants()
        .iter()
        .filter(|p| p.3.contains("/airlock/session.py"))
        .map(|p| p.0)
        .collect()
}

#[test]
fn variables_imports_files_and_the_working_directory_persist() {
    rt().block_on(async {
        let s = sched(0);
        let session = open(&s, python(), SessionOptions::default()).await;
        let first = call(
            &session,
            "import json, os\nx = 41\nopen('notes.txt', 'w').write('kept')\nos.makedirs('/tmp/d')\nos.chdir('/tmp/d')\nprint('set')",
        )
        .await;
        assert_eq!(first.status, Status::Ok, "{first:?}");
        assert_eq!(first.stdout, "set\n");
        assert_eq!(first.pool, "warm");
        let second = call(
            &session,
            "print(x + 1, json.dumps([1]), os.getcwd(), open('/workspace/notes.txt').read())",
        )
        .await;
        assert_eq!(second.status, Status::Ok, "{second:?}");
        assert_eq!(second.stdout, "42 [1] /tmp/d kept\n", "only this call's output");
        session.close().await;
        assert!(!session.is_open());
        assert_closed(session.run("print(1)", None, Box::new(|_, _| {})).await);
    });
}

#[test]
fn files_go_in_and_come_out_as_bytes() {
    rt().block_on(async {
        let s = sched(0);
        let session = open(&s, python(), SessionOptions::default()).await;
        let bytes: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        session.write_file("data/in.bin", &bytes).await.unwrap();
        let r = call(
            &session,
            "d = open('data/in.bin', 'rb').read()\nprint(len(d), d[:3])\nopen('/tmp/out.bin', 'wb').write(d[::-1])",
        )
        .await;
        assert_eq!(r.stdout, "300000 b'\\x00\\x01\\x02'\n", "{r:?}");
        let back = session.read_file("/tmp/out.bin").await.unwrap();
        assert_eq!(back, bytes.iter().rev().copied().collect::<Vec<_>>());
        // A file whose size reads as 0 is read to its end.
        let status = session.read_file("/proc/self/status").await.unwrap();
        assert!(String::from_utf8_lossy(&status).contains("Name:"), "{status:?}");
        match session.read_file("missing.txt").await {
            Err(RuntimeError::InvalidInput { field, .. }) => assert_eq!(field, "path"),
            other => panic!("reading a missing file: {other:?}"),
        }
        match session.write_file("", b"x").await {
            Err(RuntimeError::InvalidInput { field, .. }) => assert_eq!(field, "path"),
            other => panic!("an empty path: {other:?}"),
        }
        // A failed file operation leaves the session as it was.
        assert_eq!(call(&session, "print(len(d))").await.stdout, "300000\n");
        // Writable only where a run could write: the system stays read-only.
        assert!(session.write_file("/usr/evil", b"x").await.is_err());
        assert!(session.is_open());
    });
}

#[test]
fn an_exception_or_exit_ends_the_call_not_the_session() {
    rt().block_on(async {
        let s = sched(0);
        let session = open(&s, python(), SessionOptions::default()).await;
        let r = call(&session, "y = 5\ndef f():\n    return 1 / 0\nf()").await;
        assert_eq!(r.status, Status::Error);
        let e = r.error.expect("parsed error");
        assert_eq!(e.kind, "ZeroDivisionError");
        assert_eq!(e.line, Some(3));
        assert!(
            !r.stderr.contains("session.py"),
            "agent frame shown: {}",
            r.stderr
        );
        let r = call(&session, "import sys\nprint(y)\nsys.exit(3)").await;
        assert_eq!(r.exit_code, Some(3), "{r:?}");
        assert_eq!(r.stdout, "5\n");
        assert_eq!(call(&session, "print(y * 2)").await.stdout, "10\n");
        assert!(
            r.usage.memory_peak_bytes > 0,
            "usage read from outside: {r:?}"
        );
        // The call's CPU time is its own, not the session's so far: a busy call counts some,
        // a trivial one after it less.
        let busy = call(&session, "n = sum(range(3 * 10**7))").await;
        assert!(busy.usage.cpu_ms > 0, "{busy:?}");
        let idle = call(&session, "pass").await;
        assert!(
            idle.usage.cpu_ms < busy.usage.cpu_ms,
            "{idle:?} after {busy:?}"
        );
    });
}

#[test]
fn a_call_that_times_out_ends_the_session() {
    rt().block_on(async {
        let s = sched(0);
        let session = open(&s, python(), SessionOptions::default()).await;
        let r = session
            .run(
                "print('started', flush=True)\nwhile True: pass",
                Some(Duration::from_millis(500)),
                Box::new(|_, _| {}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, Status::Timeout, "{r:?}");
        assert_eq!(r.stdout, "started\n");
        assert!(!session.is_open());
        assert_closed(session.run("print(1)", None, Box::new(|_, _| {})).await);

        assert!(live_session_sandboxes().is_empty());
    });
}

#[test]
fn a_memory_error_ends_the_call_and_an_oom_kill_the_session() {
    rt().block_on(async {
        let s = sched(0);
        let small = RunRequest {
            memory_mb: 64,
            ..python()
        };
        let session = open(&s, small, SessionOptions::default()).await;
        call(&session, "kept = 1").await;
        let r = call(&session, "b = bytearray(512 << 20)").await;
        assert_eq!(r.status, Status::Error, "{r:?}");
        assert_eq!(r.error.expect("parsed error").kind, "MemoryError");
        assert_eq!(call(&session, "print(kept)").await.stdout, "1\n");
        // A process that the memory limit kills ends the session, on v1 as on v2.
        let r = call(
            &session,
            "import subprocess\nsubprocess.run('head -c 2000000000 /dev/zero | tail > /dev/null', shell=True)\nprint('survived')",
        )
        .await;
        assert_eq!(r.status, Status::MemoryLimit, "{r:?}");
        assert_closed(session.run("print(1)", None, Box::new(|_, _| {})).await);
    });
}

#[test]
fn an_idle_session_is_closed() {
    rt().block_on(async {
        let s = sched(0);
        let options = SessionOptions {
            idle_timeout: Duration::from_millis(300),
            ..SessionOptions::default()
        };
        let session = open(&s, python(), options).await;
        assert_eq!(call(&session, "print(1)").await.stdout, "1\n");
        // A call longer than the idle timeout is not idleness.
        let r = call(&session, "import time\ntime.sleep(1)\nprint(2)").await;
        assert_eq!(r.stdout, "2\n", "{r:?}");
        for _ in 0..100 {
            if !session.is_open() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!session.is_open(), "still open long after its idle timeout");
        assert_closed_because(&session, "idle").await;
    });
}

#[test]
fn calls_run_one_at_a_time() {
    rt().block_on(async {
        let s = sched(0);
        let session = open(&s, python(), SessionOptions::default()).await;
        call(&session, "log = []").await;
        let step = "import time\nlog.append('s')\ntime.sleep(0.2)\nlog.append('e')";
        let calls: Vec<_> = (0..3)
            .map(|_| {
                let session = session.clone();
                tokio::spawn(async move { call(&session, step).await })
            })
            .collect();
        for c in calls {
            assert_eq!(c.await.unwrap().status, Status::Ok);
        }
        assert_eq!(
            call(&session, "print(''.join(log))").await.stdout,
            "sesese\n"
        );
    });
}

#[test]
fn output_belongs_to_the_call_that_wrote_it() {
    rt().block_on(async {
        let s = sched(0);
        let session = open(&s, python(), SessionOptions::default()).await;
        let streamed = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&streamed);
        // A background process keeps writing after its call returned.
        let first = session
            .run(
                "import subprocess\nsubprocess.Popen('sleep 0.3; echo late; echo late >&2', shell=True)\nprint('first')",
                None,
                Box::new(move |_, data| sink.lock().unwrap().extend_from_slice(data)),
            )
            .await
            .unwrap();
        assert_eq!(first.stdout, "first\n");
        assert_eq!(*streamed.lock().unwrap(), b"first\n");
        let second = call(&session, "import time\ntime.sleep(0.8)\nprint('second')").await;
        assert_eq!(second.stdout, "second\n", "{second:?}");
        assert_eq!(second.stderr, "");
        let limited = RunRequest {
            stdout_limit: 10,
            ..python()
        };
        let session = open(&s, limited, SessionOptions::default()).await;
        let r = call(&session, "print('x' * 100)").await;
        assert!(r.stdout_truncated, "{r:?}");
        assert!(r.stdout.len() < 100);
    });
}

as_us_and_the_test_user!(
    sessions_never_see_each_other,
    sessions_never_see_each_other_as_the_test_user,
    sessions_never_see_each_other_unprivileged,
    sessions_are_isolated
);

fn sessions_are_isolated() {
    rt().block_on(async {
        let s = sched(0);
        let a = open(&s, python(), SessionOptions::default()).await;
        let b = open(&s, python(), SessionOptions::default()).await;
        let planted = call(
            &a,
            "import os, subprocess\nsecret = 1\nopen('/tmp/a', 'w').write('a')\nopen('/workspace/a', 'w').write('a')\nos.environ['PLANTED'] = '1'\np = subprocess.Popen(['sleep', '60'])\nprint(os.getpid(), p.pid)",
        )
        .await;
        assert_eq!(planted.status, Status::Ok, "{planted:?}");
        let pids: Vec<&str> = planted.stdout.split_whitespace().collect();
        let seen = call(
            &b,
            &format!(
                "import os, signal\nprint('secret' in globals(), os.path.exists('/tmp/a'), os.path.exists('/workspace/a'), 'PLANTED' in os.environ)\nfor pid in [{}]:\n    if pid in (1, os.getpid()):\n        continue  # its own init and itself: these numbers are its own namespace's\n    try:\n        os.kill(pid, signal.SIGKILL)\n        print('killed', pid)\n    except OSError as e:\n        print('refused', e.errno)",
                pids.join(", ")
            ),
        )
        .await;
        assert_eq!(seen.status, Status::Ok, "{seen:?}");
        let mut lines = seen.stdout.lines();
        assert_eq!(lines.next(), Some("False False False False"), "{seen:?}");
        for line in lines {
            assert!(line.starts_with("refused"), "session b reached session a: {line}");
        }
        let still = call(&a, "print(secret, p.poll())").await;
        assert_eq!(still.stdout, "1 None\n", "session a was disturbed: {still:?}");
    });
}

#[test]
fn forged_or_garbled_frames_close_only_that_session() {
    rt().block_on(async {
        let s = sched(0);
        let bystander = open(&s, python(), SessionOptions::default()).await;
        call(&bystander, "kept = 'yes'").await;
        for (attack, want) in [
            // A frame longer than the host accepts.
            (
                "import os\nos.write(3, b'X' + (1 << 60).to_bytes(8, 'big'))\nimport time\ntime.sleep(5)",
                Status::SandboxError,
            ),
            // A frame of a kind the host never expects during a call.
            (
                "import os\nos.write(3, b'D' + (3).to_bytes(8, 'big') + b'abc')\nimport time\ntime.sleep(5)",
                Status::SandboxError,
            ),
            // A completion with a guessed id.
            (
                "import os\nos.write(3, b'X' + (12).to_bytes(8, 'big') + bytes(12))\nimport time\ntime.sleep(5)",
                Status::SandboxError,
            ),
            // Frames that carry descriptors for the host (which closes them unread).
            (
                "import socket, time\nsocket.send_fds(socket.socket(fileno=3), [b'X' + (12).to_bytes(8, 'big') + bytes(12)], [1, 2])\ntime.sleep(5)",
                Status::SandboxError,
            ),
            (
                "import socket, time\nsocket.send_fds(socket.socket(fileno=3), [b'D' + (3).to_bytes(8, 'big') + b'abc'], [0])\ntime.sleep(5)",
                Status::SandboxError,
            ),
            // Closing the control channel under the agent: it cannot answer, and exits.
            ("import os\nos.close(3)", Status::Error),
            // Ending the interpreter, agent and all.
            ("import os\nos._exit(9)", Status::Error),
        ] {
            let victim = open(&s, python(), SessionOptions::default()).await;
            let r = victim
                .run(attack, None, Box::new(|_, _| {}))
                .await
                .expect("a result, not a hang or a host error");
            assert_eq!(r.status, want, "{attack}: {r:?}");
            if want == Status::SandboxError {
                let message = r.error.expect("why").message;
                assert!(message.contains("control channel"), "{attack}: {message}");
            }
            assert!(!victim.is_open(), "{attack}: the session goes on");
            assert_closed(victim.run("print(1)", None, Box::new(|_, _| {})).await);
        }
        // A completion forged with the call's id (read out of the agent's frame) ends that call
        // early: the session only ever fools itself, and the real completion, arriving during
        // the next call, closes it.
        let fooled = open(&s, python(), SessionOptions::default()).await;
        let r = call(
            &fooled,
            "import os, sys, time\nid = sys._getframe(1).f_locals['call_id']\nos.write(3, b'X' + (12).to_bytes(8, 'big') + id + (0).to_bytes(4, 'big'))\ntime.sleep(0.3)",
        )
        .await;
        assert_eq!(r.exit_code, Some(0), "{r:?}");
        let next = fooled
            .run("print(1)", None, Box::new(|_, _| {}))
            .await
            .expect("a result, not a hang or a host error");
        assert_eq!(next.status, Status::SandboxError, "a stale completion was taken: {next:?}");
        let message = next.error.expect("why").message;
        assert!(message.contains("control channel"), "{message}");
        match fooled.run("print(1)", None, Box::new(|_, _| {})).await {
            Err(RuntimeError::SessionClosed { why }) => {
                assert!(why.contains("control channel"), "{why}")
            }
            other => panic!("a tampered session served a call: {other:?}"),
        }
        fooled.close().await;
        assert_eq!(call(&bystander, "print(kept)").await.stdout, "yes\n");
        bystander.close().await;
        assert!(live_session_sandboxes().is_empty(), "a session outlived its close");
    });
}

#[test]
fn sessions_refuse_what_they_cannot_do_and_name_the_field() {
    rt().block_on(async {
        let s = sched(0);
        let cases = [
            (
                req(Language::Shell, ""),
                SessionOptions::default(),
                "language",
            ),
            (
                RunRequest {
                    result_channel: true,
                    ..python()
                },
                SessionOptions::default(),
                "result_channel",
            ),
            (
                python(),
                SessionOptions {
                    max_lifetime: Duration::ZERO,
                    ..SessionOptions::default()
                },
                "max_lifetime",
            ),
            (
                python(),
                SessionOptions {
                    idle_timeout: Duration::from_secs(7200),
                    max_lifetime: Duration::from_secs(60),
                },
                "idle_timeout",
            ),
        ];
        for (template, options, want) in cases {
            match s.session(template, options).await {
                Err(RuntimeError::InvalidInput { field, .. }) => assert_eq!(field, want),
                Err(e) => panic!("{want}: {e}"),
                Ok(_) => panic!("{want}: a session started"),
            }
        }
    });
}

#[test]
fn shutdown_closes_every_session() {
    rt().block_on(async {
        let s = sched(0);
        let a = open(&s, python(), SessionOptions::default()).await;
        let b = open(&s, python(), SessionOptions::default()).await;
        call(&a, "import subprocess\nsubprocess.Popen(['sleep', '60'])").await;
        s.shutdown().await;
        assert!(!a.is_open() && !b.is_open());
        assert!(
            live_session_sandboxes().is_empty(),
            "a session outlived shutdown"
        );
        assert!(
            !our_descendants().iter().any(|p| p.3.contains("sleep")),
            "a session's process outlived shutdown"
        );
    });
}

#[test]
fn a_cancelled_call_closes_its_session() {
    rt().block_on(async {
        let s = sched(0);
        let session = open(&s, python(), SessionOptions::default()).await;
        let dropped = tokio::time::timeout(
            Duration::from_millis(300),
            session.run("import time\ntime.sleep(60)", None, Box::new(|_, _| {})),
        )
        .await;
        assert!(dropped.is_err(), "the call ended by itself: {dropped:?}");
        assert!(!session.is_open());
        assert_closed_because(&session, "cancelled").await;
    });
}

#[test]
fn a_session_with_packages_imports_them_from_its_environment() {
    rt().block_on(async {
        let s = sched(0);
        let wheels = Wheelhouse::new("session-pkg", "airlock_sessionpkg", "VALUE = 7\n");
        let template = RunRequest {
            timeout: Duration::from_secs(20),
            ..wheels.request("airlock_sessionpkg", "", false)
        };
        let session = open(&s, template, SessionOptions::default()).await;
        call(&session, "import airlock_sessionpkg as p\np.VALUE += 1").await;
        let r = call(&session, "print(p.VALUE)").await;
        assert_eq!(r.stdout, "8\n", "{r:?}");
        assert!(
            r.environment.is_some() && r.environment_cached == Some(true),
            "{r:?}"
        );
        session.close().await;
    });
}

/// Files go in and out a chunk at a time: a file of a third of the session's memory fits (the
/// agent held three copies of it before), and a file operation the memory limit ends says so.
#[test]
fn big_files_stream_and_the_memory_limit_is_named() {
    rt().block_on(async {
        let s = sched(0);
        let small = RunRequest {
            memory_mb: 64,
            ..python()
        };
        let session = open(&s, small.clone(), SessionOptions::default()).await;
        let bytes: Vec<u8> = (0..=250u8).cycle().take(20 << 20).collect();
        session.write_file("big.bin", &bytes).await.unwrap();
        assert_eq!(session.read_file("big.bin").await.unwrap(), bytes);
        let r = call(&session, "import os\nprint(os.path.getsize('big.bin'))").await;
        assert_eq!(r.stdout, format!("{}\n", 20 << 20));
        assert!(session.is_open());
        session.close().await;
        // A file larger than the memory left: /workspace is memory too.
        let session = open(&s, small, SessionOptions::default()).await;
        let huge = vec![1u8; 60 << 20];
        match session.write_file("huge.bin", &huge).await {
            Err(e @ RuntimeError::SessionClosed { .. }) => {
                assert!(e.to_string().contains("memory limit of 64 MiB"), "{e}")
            }
            // The workspace's own size may refuse it first, leaving the session open.
            Err(RuntimeError::InvalidInput { field, why }) => {
                assert_eq!(field, "path");
                assert!(why.contains("space"), "{why}");
                assert!(session.is_open());
            }
            other => panic!("60 MiB into 64 MiB: {other:?}"),
        }
    });
}

/// A FIFO or a device in the session is not a file to read or write: refused at once, not a
/// read that never ends.
#[test]
fn only_regular_files_are_read_or_written() {
    rt().block_on(async {
        let s = sched(0);
        let session = open(
            &s,
            RunRequest {
                timeout: Duration::from_secs(30),
                ..python()
            },
            SessionOptions::default(),
        )
        .await;
        call(&session, "import os\nos.mkfifo('/workspace/fifo')").await;
        let started = std::time::Instant::now();
        for r in [
            session.read_file("fifo").await.map(drop),
            session.write_file("fifo", b"x").await,
            session.read_file("/dev/zero").await.map(drop),
            session.write_file("/dev/null", b"x").await,
        ] {
            match r {
                Err(RuntimeError::InvalidInput { field, why }) => {
                    assert_eq!(field, "path");
                    assert!(why.contains("not a regular file"), "{why}");
                }
                other => panic!("a special file: {other:?}"),
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "a special file held a file operation until the session's timeout"
        );
        assert!(session.is_open());
        assert_eq!(call(&session, "print('fine')").await.stdout, "fine\n");
    });
}

/// What the agent answers a file operation with is bounded for its kind: a reason is a few
/// KiB, not the 64 MiB a file may be.
#[test]
fn a_file_operations_answer_is_bounded_for_its_kind() {
    rt().block_on(async {
        let s = sched(0);
        let session = open(&s, python(), SessionOptions::default()).await;
        // The agent's own reasons are cut short, and a failed operation leaves no descriptor.
        let fds = "import os\nprint(len(os.listdir('/proc/self/fd')))";
        let before = call(&session, fds).await.stdout;
        call(
            &session,
            "import os\nreal = os.open\ndef loud(*a, **k):\n    raise OSError(13, 'no ' * (1 << 20))\nos.open = loud",
        )
        .await;
        for _ in 0..3 {
            match session.read_file("x").await {
                Err(RuntimeError::InvalidInput { why, .. }) => {
                    assert!(why.contains("no no"), "{why:.100}");
                    assert!(why.len() < 5000, "a reason of {} bytes", why.len())
                }
                other => panic!("{other:?}"),
            }
        }
        call(&session, "os.open = real").await;
        assert_eq!(call(&session, fds).await.stdout, before, "descriptors leaked");
        // And one the code forges past the bound closes the session.
        call(
            &session,
            "import socket\nsend = socket.socket.sendall\ndef big(self, data, *a):\n    if data[:1] == b'E':\n        data = b'E' + (5 << 20).to_bytes(8, 'big') + bytes(5 << 20)\n    return send(self, data, *a)\nsocket.socket.sendall = big",
        )
        .await;
        match session.read_file("missing").await {
            Err(RuntimeError::SessionClosed { why }) => {
                assert!(why.contains("control channel"), "{why}")
            }
            other => panic!("a 5 MiB reason: {other:?}"),
        }
        assert!(!session.is_open());
    });
}

/// A call that outlives the session says that the session's lifetime ended it, not its own
/// timeout.
#[test]
fn a_call_cut_by_the_sessions_lifetime_says_so() {
    rt().block_on(async {
        let s = sched(0);
        // The lifetime counts from the sandbox's start: room for a slow start under load.
        let options = SessionOptions {
            max_lifetime: Duration::from_secs(4),
            idle_timeout: Duration::from_secs(4),
        };
        let session = open(&s, python(), options).await;
        let r = call(&session, "import time\ntime.sleep(15)").await;
        assert_eq!(r.status, Status::Timeout, "{r:?}");
        let message = r.error.expect("why").message;
        assert!(message.contains("max_lifetime of 4 s"), "{message}");
        assert_closed_because(&session, "max_lifetime").await;
    });
}

#[test]
fn sessions_beyond_the_limit_are_refused_even_when_started_together() {
    rt().block_on(async {
        let s = track(Scheduler::new(airlock_runtime::SchedulerConfig {
            pool_size: 0,
            max_sessions: 2,
            ..airlock_runtime::SchedulerConfig::default()
        }));
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.session(python(), SessionOptions::default()).await })
            })
            .collect();
        let mut open = Vec::new();
        let mut busy = 0;
        for start in starts {
            match start.await.unwrap() {
                Ok(session) => open.push(session),
                Err(e @ RuntimeError::Busy { .. }) => {
                    assert!(e.to_string().contains("max_sessions"), "{e}");
                    busy += 1
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((open.len(), busy), (2, 2));
        // A closed session frees its place.
        open.pop().unwrap().close().await;
        let again = s.session(python(), SessionOptions::default()).await;
        assert!(again.is_ok(), "{:?}", again.err());
        s.shutdown().await;
        match s.session(python(), SessionOptions::default()).await {
            Err(RuntimeError::SessionClosed { why }) => assert!(why.contains("shut down"), "{why}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a session started after shutdown"),
        }
    });
}

as_us_and_the_test_user!(
    descriptors_parked_in_flight_stop_no_other_session,
    descriptors_parked_in_flight_stop_no_other_session_as_the_test_user,
    descriptors_parked_in_flight_stop_no_other_session_unprivileged,
    parked_descriptors
);

/// Unprivileged, every sandbox is one host user, and the kernel refuses to send descriptors
/// while that user has more in flight than the sender's soft open-files limit: a session that
/// parks as many as it can in a socket it never reads must not stop another's calls (each of
/// which passes two).
fn parked_descriptors() {
    rt().block_on(async {
        let s = sched(0);
        let victim = open(&s, python(), SessionOptions::default()).await;
        let attacker = open(&s, python(), SessionOptions::default()).await;
        let parked = call(
            &attacker,
            "import os, socket\na, b = socket.socketpair()\nd = os.open('/dev/null', os.O_RDONLY)\nn = 0\ntry:\n    while True:\n        socket.send_fds(a, [b'x'], [d] * 250)\n        n += 250\nexcept OSError as e:\n    print(n, e.errno)",
        )
        .await;
        assert_eq!(parked.status, Status::Ok, "{parked:?}");
        let n: u64 = parked.stdout.split_whitespace().next().unwrap().parse().unwrap();
        assert!(n >= 1000, "the attack parked only {n}: {parked:?}");
        for _ in 0..3 {
            let r = call(&victim, "print('fine')").await;
            assert_eq!(r.stdout, "fine\n", "{r:?}");
        }
        assert!(victim.is_open());
    });
}

as_us_and_the_test_user!(
    descriptors_raced_in_flight_fail_a_call_not_another_session,
    descriptors_raced_in_flight_fail_a_call_not_another_session_as_the_test_user,
    descriptors_raced_in_flight_fail_a_call_not_another_session_unprivileged,
    raced_descriptors
);

/// Many threads sending at once, each copying data the kernel must first page in, all pass the
/// in-flight check before any is counted: an ordinary user's sandboxes can then park more than
/// any open-files limit allows, and the host's next send to another session is refused. That
/// call fails with a host error saying so, and its session goes on (nothing was sent); once
/// the descriptors are received, calls pass again. As root the sends are never refused.
fn raced_descriptors() {
    const RACE: &str = r#"
import array, mmap, os, socket, threading, time
big, size = None, 0
for root, dirs, files in os.walk('/usr/lib'):
    for f in files:
        p = os.path.join(root, f)
        try:
            if not os.path.islink(p) and os.path.isfile(p) and os.path.getsize(p) > size:
                big, size = p, os.path.getsize(p)
        except OSError:
            pass
fd = os.open(big, os.O_RDONLY)
m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
m.madvise(mmap.MADV_RANDOM)
mv = memoryview(m)
d = os.open('/dev/null', os.O_RDONLY)
fds = array.array('i', [d] * 250)
N, IOV, PAGE, pages = 120, 60, 4096, size // 4096
m.madvise(mmap.MADV_DONTNEED)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
go = threading.Event()
ok = []
socks = [socket.socketpair() for _ in range(N)]
def send(i):
    a, b = socks[i]
    bufs = [mv[((i * IOV + j) * 7 % pages) * PAGE:((i * IOV + j) * 7 % pages) * PAGE + 1] for j in range(IOV)]
    go.wait()
    try:
        a.sendmsg(bufs, [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        ok.append(i)
    except OSError:
        pass
threads = []
for i in range(N):
    t = threading.Thread(target=send, args=(i,))
    try:
        t.start()
    except RuntimeError:
        break
    threads.append(t)
time.sleep(0.2)
go.set()
for t in threads:
    t.join()
print(len(ok) * 250)
"#;
    rt().block_on(async {
        let s = sched(0);
        let template = RunRequest {
            timeout: Duration::from_secs(120),
            pids: 512,
            ..python()
        };
        let victim = open(&s, template.clone(), SessionOptions::default()).await;
        let attacker = open(&s, template, SessionOptions::default()).await;
        let parked = call(&attacker, RACE).await;
        assert_eq!(parked.status, Status::Ok, "{parked:?}");
        let parked: u64 = parked.stdout.trim().parse().unwrap();
        let r = victim.run("print('fine')", None, Box::new(|_, _| {})).await;
        // Root's sends are never refused; an ordinary user's are, past its soft limit.
        let refused = !is_root() && parked > open_files_limit("self") + 253;
        match r {
            Ok(r) if !refused => assert_eq!(r.stdout, "fine\n", "{r:?}"),
            Err(e) if refused => {
                assert!(e.to_string().contains("in flight"), "{e}");
                assert!(victim.is_open(), "a refused send closed the session: {e}");
            }
            other => panic!("{parked} parked, refused expected: {refused}: {other:?}"),
        }
        // Received (closed with the attacker's session), they no longer count.
        attacker.close().await;
        assert_eq!(call(&victim, "print('fine')").await.stdout, "fine\n");
        assert!(victim.is_open());
    });
}

#[test]
fn an_agent_that_stops_reading_cannot_hold_a_call_past_its_timeout() {
    rt().block_on(async {
        let s = sched(0);
        let session = open(&s, python(), SessionOptions::default()).await;
        // The first call ends itself early with a forged completion and then keeps the agent
        // busy: it never reads the next call.
        let forged = call(
            &session,
            "import os, sys, threading\nid = sys._getframe(1).f_locals['call_id']\nos.write(3, b'X' + (12).to_bytes(8, 'big') + id + (0).to_bytes(4, 'big'))\nwhile True: pass",
        )
        .await;
        assert_eq!(forged.exit_code, Some(0), "{forged:?}");
        // Far more code than the socket holds: sending it blocks.
        let big = format!("x = '{}'", "y".repeat(4 << 20));
        let next = tokio::time::timeout(
            Duration::from_secs(60),
            session.run(big, Some(Duration::from_secs(1)), Box::new(|_, _| {})),
        )
        .await
        .expect("the call outlived its timeout by a minute")
        .expect("a result");
        assert_ne!(next.status, Status::Ok, "{next:?}");
        assert!(!session.is_open());
        tokio::time::timeout(Duration::from_secs(60), session.close())
            .await
            .expect("close hung");
    });
}

#[test]
fn close_ends_a_call_in_progress() {
    rt().block_on(async {
        let s = sched(0);
        let patient = RunRequest {
            timeout: Duration::from_secs(300),
            ..python()
        };
        let session = open(&s, patient, SessionOptions::default()).await;
        let running = {
            let session = session.clone();
            tokio::spawn(async move {
                session
                    .run("import time\ntime.sleep(600)", None, Box::new(|_, _| {}))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::time::timeout(Duration::from_secs(30), session.close())
            .await
            .expect("close waited for the call");
        let r = running.await.unwrap().expect("the call's result");
        assert_ne!(r.status, Status::Ok, "{r:?}");
        // Its own close ended it: nothing outside the sandbox did.
        let kind = r.error.as_ref().map(|e| e.kind.as_str());
        assert_eq!((r.status, kind), (Status::Killed, Some("Signal")), "{r:?}");
        assert!(live_session_sandboxes().is_empty());
    });
}

#[test]
fn every_call_gets_all_of_its_output() {
    rt().block_on(async {
        let s = sched(0);
        let session = open(&s, python(), SessionOptions::default()).await;
        call(&session, "import sys").await;
        // Each call's output is in its pipes before its completion is sent; however the
        // host's reactor is running behind, none of it may be lost.
        for i in 0..300 {
            let r = call(&session, &format!("print({i})\nsys.stderr.write('e{i}')")).await;
            assert_eq!(
                (r.stdout.as_str(), r.stderr.as_str()),
                (format!("{i}\n").as_str(), format!("e{i}").as_str()),
                "call {i}: {r:?}"
            );
        }
    });
}

#[test]
fn a_session_start_given_up_on_leaves_nothing_after_shutdown() {
    rt().block_on(async {
        let s = sched(0);
        for wait_ms in [5, 15, 40] {
            let start = {
                let s = s.clone();
                tokio::spawn(async move { s.session(python(), SessionOptions::default()).await })
            };
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            start.abort();
        }
        s.shutdown().await;
        // The starts' blocking work went on; shutdown must have waited for it to be gone, so
        // that a process exiting now leaves nothing: no sandbox of theirs shows up later, and
        // none of their cgroups is there.
        let ours = format!("run-{}-", std::process::id());
        for _ in 0..60 {
            assert!(
                live_session_sandboxes().is_empty(),
                "a sandbox of an abandoned start is alive after shutdown"
            );
            let left: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
                .unwrap()
                .flatten()
                .flat_map(|hierarchy| walk(&hierarchy.path(), 4))
                .filter(|p| p.contains(&ours))
                .collect();
            assert!(left.is_empty(), "cgroups left after shutdown: {left:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
}

/// Directories under `dir`, `depth` levels down at most.
fn walk(dir: &std::path::Path, depth: usize) -> Vec<String> {
    let mut found = Vec::new();
    if depth == 0 {
        return found;
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            found.push(p.display().to_string());
            found.extend(walk(&p, depth - 1));
        }
    }
    found
}
