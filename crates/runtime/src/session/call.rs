//! One call of a session: hand the agent the code and fresh output pipes, wait for its
//! completion under the call's deadline, and make the result from what the host saw.

use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jail::{OutputCap, Stream};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::net::unix::pipe;
use tokio::sync::watch;

use super::frame::{FrameError, SendError, read_frame, send_frame};
use super::{END_GRACE, Shared, stopped_answering, worker_failed};
use crate::error::RuntimeError;
use crate::request::RunRequest;
use crate::result::RunResult;
use crate::scheduler::OnOutput;

/// What came of handing the agent a call.
enum Answer {
    Frame(u8, Vec<u8>),
    Failed(FrameError),
    /// The kernel refused the call's descriptors: nothing reached the agent.
    NotSent(std::io::Error),
    TimedOut,
}

/// How one call ended, before it becomes a result.
enum Ending {
    /// The agent reported the code's exit status; the session lives on.
    Status(u32),
    /// The call's own timeout: the session is killed.
    TimedOut,
    /// The sandbox ended during the call (the memory limit, its lifetime, the interpreter
    /// exiting).
    Ended,
    /// The agent broke the protocol (its code shares the agent's interpreter and tampered
    /// with it): the session is killed, and the result says why.
    Broken(String),
}

pub(super) struct Call;

/// Why a call has no result.
pub(super) enum CallFailed {
    /// Nothing reached the agent: the session can take the next call.
    NotSent(RuntimeError),
    /// The session cannot go on.
    Fatal(RuntimeError),
}

impl Call {
    pub(super) async fn run(
        s: &Shared,
        control: &mut UnixStream,
        req: &RunRequest,
        on_output: OnOutput,
    ) -> Result<RunResult, CallFailed> {
        let started = Instant::now();
        let before = sample(s);
        let sink = Arc::new(Mutex::new(on_output));
        let (stop, stopped) = watch::channel(false);
        let mut ends = Vec::new();
        let mut drains = Vec::new();
        for (stream, cap) in [
            (Stream::Stdout, req.stdout_limit),
            (Stream::Stderr, req.stderr_limit),
        ] {
            let not_sent =
                |e| CallFailed::NotSent(RuntimeError::host("creating a call's output pipe", e));
            let (tx, rx) = pipe::pipe().map_err(not_sent)?;
            ends.push(tx.into_blocking_fd().map_err(not_sent)?);
            drains.push(tokio::spawn(drain(
                rx,
                stream,
                cap,
                Arc::clone(&sink),
                stopped.clone(),
            )));
        }
        // The agent echoes the call's id with its status: a completion left over from an
        // earlier call (one its code forged to end itself early) is not taken for this one's.
        let id = call_id();
        let mut payload = Vec::with_capacity(8 + req.code.len());
        payload.extend_from_slice(&id);
        payload.extend_from_slice(&req.code);
        // Sending is under the call's deadline too: an agent that stopped reading (its code
        // forged an earlier completion and went on) must not hold the call past its timeout.
        let deadline = tokio::time::Instant::now() + req.timeout;
        let mut ended = s.ended.clone();
        let exchange = async {
            let fds: Vec<_> = ends.iter().map(|f| f.as_fd()).collect();
            let sent = send_frame(control, b'C', &payload, &fds).await;
            drop(fds);
            drop(ends); // the agent holds them now: EOF comes when it and what it started close them
            match sent {
                Ok(()) => {}
                Err(SendError::TooManyInFlight(e)) => return Answer::NotSent(e),
                Err(SendError::Failed(why)) => return Answer::Failed(FrameError::Closed(why)),
            }
            match read_frame(control, |kind| if kind == b'X' { 12 } else { 0 }).await {
                Ok((kind, payload)) => Answer::Frame(kind, payload),
                Err(e) => Answer::Failed(e),
            }
        };
        let answer = tokio::select! {
            a = exchange => a,
            _ = tokio::time::sleep_until(deadline) => Answer::TimedOut,
            _ = ended.wait_for(Option::is_some) => Answer::Failed(FrameError::Closed(String::new())),
        };
        drop(payload);
        let ending = match answer {
            Answer::NotSent(refused) => {
                let _ = stop.send(true);
                for d in drains {
                    let _ = d.await;
                }
                return Err(CallFailed::NotSent(RuntimeError::host(
                    "passing a call its output pipes",
                    std::io::Error::other(format!(
                        "{refused}: too many descriptors are in flight for this host user, held \
                         by another sandbox of the same user that never reads them. Nothing \
                         was sent and the session is still open: retry later, or run airlock \
                         as root or as a user of its own (docs/security.md, \"Descriptors in \
                         flight\")"
                    )),
                )));
            }
            Answer::Frame(b'X', done) if done.len() == 12 && done[..8] == id => {
                Ending::Status(u32::from_be_bytes([done[8], done[9], done[10], done[11]]))
            }
            Answer::Frame(kind, _) => Ending::Broken(format!(
                "the session's agent sent a frame ({}) that was not this call's \
                 completion: its code wrote to the session's control channel",
                kind.escape_ascii()
            )),
            Answer::Failed(FrameError::Bad(why)) => Ending::Broken(why),
            // The agent's end closed: most often the interpreter exited, and how is the story.
            Answer::Failed(FrameError::Closed(why)) => match s.end_after_agent_closed().await {
                Some(_) => Ending::Ended,
                None => Ending::Broken(stopped_answering(&why)),
            },
            Answer::TimedOut => Ending::TimedOut,
        };
        let elapsed = started.elapsed();
        let after = sample(s);
        let ending = match ending {
            // The memory limit killed a process of the session. On cgroup v2 that ends the
            // whole sandbox (`memory.oom.group`); on v1 it is ended here, to the same effect.
            Ending::Status(_) if after.as_ref().is_some_and(|a| a.oom) => Ending::Ended,
            other => other,
        };
        if !matches!(ending, Ending::Status(_)) {
            match &ending {
                Ending::Broken(why) => s.close(why), // which kills
                _ => s.killer.kill(),
            }
            let _ = tokio::time::timeout(END_GRACE, ended.wait_for(Option::is_some)).await;
        }
        let _ = stop.send(true);
        let mut kept = Vec::new();
        for d in drains {
            kept.push(
                d.await
                    .map_err(|e| CallFailed::Fatal(worker_failed("draining a call's output", e)))?,
            );
        }
        let (mut out, mut err) = (kept.remove(0), kept.remove(0));
        let session_end = ended.borrow().clone();
        let mut outcome = jail::Outcome {
            stdout_truncated: out.truncated(),
            stderr_truncated: err.truncated(),
            stdout: out.finish(),
            stderr: err.finish(),
            timing: jail::Timing {
                execute: elapsed,
                total: elapsed,
                ..Default::default()
            },
            ..Default::default()
        };
        match ending {
            Ending::Status(code) => {
                outcome.exit_code = Some((code & 0xFF) as i32);
                if let (Some(b), Some(a)) = (before, after) {
                    outcome.usage = jail::Usage {
                        cpu: a.cpu.saturating_sub(b.cpu),
                        memory_peak_bytes: a.memory_peak_bytes,
                    };
                }
            }
            Ending::TimedOut => outcome.timed_out = true,
            Ending::Ended | Ending::Broken(_) => {
                // The session's own ending: its status, and its usage as a whole.
                let end = session_end.unwrap_or_default();
                outcome.exit_code = end.exit_code;
                outcome.signal = end.signal;
                outcome.memory_limit = end.memory_limit;
                outcome.init_died = end.init_died;
                outcome.timed_out = end.timed_out;
                outcome.usage = end.usage;
            }
        }
        let mut result = crate::run::result_from(req, outcome, "warm");
        if let Some(key) = &s.environment {
            // Found or built when the session started: no call waits for an install.
            crate::environment::annotate_found(key, &mut result);
        }
        let closed = || Some("the session is closed: start a new one".to_string());
        match ending {
            Ending::Broken(why) => {
                result.status = crate::Status::SandboxError;
                result.error = Some(crate::ErrorInfo {
                    hint: closed(),
                    ..crate::ErrorInfo::new("SandboxError", why)
                });
            }
            // The sandbox's own wall clock is the session's lifetime, not this call's timeout.
            Ending::Ended if result.status == crate::Status::Timeout => {
                result.error = Some(crate::ErrorInfo {
                    hint: closed(),
                    ..crate::ErrorInfo::new(
                        "Timeout",
                        format!(
                            "the session reached its max_lifetime of {} s",
                            s.lifetime.as_secs_f64()
                        ),
                    )
                });
            }
            _ => {}
        }
        Ok(result)
    }
}

/// The session's usage so far, read from outside.
struct Sample {
    cpu: Duration,
    memory_peak_bytes: u64,
    /// The memory limit has killed a process.
    oom: bool,
}

/// From the session's cgroup (every process of it), or without one from its interpreter (and
/// the children it reaped).
fn sample(s: &Shared) -> Option<Sample> {
    // The interpreter's (and the children it reaped) and the init's (the orphans it reaped).
    // Read, then checked: had the init been reaped by then, the pids could be another's (the
    // program's, once the init has reaped it, for a moment before the init exits too).
    let own = || {
        let init = jail::process_usage(s.pid).ok()?;
        let program = match s.program == s.pid {
            true => jail::Usage::default(),
            false => jail::process_usage(s.program).ok()?,
        };
        s.killer.not_reaped().then(|| jail::Usage {
            cpu: init.cpu + program.cpu,
            memory_peak_bytes: init.memory_peak_bytes.max(program.memory_peak_bytes),
        })
    };
    match &s.meter {
        Some(meter) => {
            let u = meter.usage();
            let cpu = u
                .cpu_ns
                .map(Duration::from_nanos)
                .or_else(|| own().map(|o| o.cpu))?;
            Some(Sample {
                cpu,
                memory_peak_bytes: u.memory_peak_bytes.unwrap_or(0),
                oom: u.oom,
            })
        }
        None => own().map(|o| Sample {
            cpu: o.cpu,
            memory_peak_bytes: o.memory_peak_bytes,
            oom: false,
        }),
    }
}

/// An id no earlier call of any session had, and that code cannot guess ahead of its call.
fn call_id() -> [u8; 8] {
    use std::hash::{BuildHasher, Hasher};
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    // Keyed from the host's randomness, so the hash of a counter is not predictable.
    h.write_u64(n);
    h.finish().to_be_bytes()
}

/// How much of a call's output pipe is read once the call has ended: the most a pipe holds
/// (`/proc/sys/fs/pipe-max-size`'s default, which an unprivileged process cannot exceed).
const LAST_READ: usize = 1 << 20;

/// Reads one output pipe of a call until EOF or until told to stop; then takes what is already
/// in it (everything the call wrote before it ended, up to a pipe's size) and returns what was
/// kept.
async fn drain(
    mut rx: pipe::Receiver,
    stream: Stream,
    cap: usize,
    sink: Arc<Mutex<OnOutput>>,
    mut stop: watch::Receiver<bool>,
) -> OutputCap {
    let mut kept = OutputCap::new(cap);
    let mut buf = vec![0u8; 64 * 1024];
    let pass = |kept: &mut OutputCap, data: &[u8]| {
        let head = kept.push(data);
        if !head.is_empty() {
            (sink.lock().unwrap_or_else(|p| p.into_inner()))(stream, head);
        }
    };
    loop {
        let stopped = tokio::select! {
            r = rx.read(&mut buf) => match r {
                Ok(0) | Err(_) => return kept,
                Ok(n) => {
                    pass(&mut kept, &buf[..n]);
                    false
                }
            },
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopped {
            break;
        }
    }
    // What the call wrote is in the pipe, but tokio reports a pipe readable only once its
    // reactor has seen the event, which may not have happened yet: so plain non-blocking reads,
    // up to what a pipe can hold (more is a process the call left running, still writing).
    let fd = match rx.into_nonblocking_fd() {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!("reading the rest of a session call's {stream:?}: {e}");
            return kept;
        }
    };
    let mut pipe = std::fs::File::from(fd);
    let mut left = LAST_READ;
    while left > 0 {
        let room = left.min(buf.len());
        match std::io::Read::read(&mut pipe, &mut buf[..room]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                pass(&mut kept, &buf[..n]);
                left -= n;
            }
        }
    }
    kept
}
