//! Watching a running sandbox: drain its output as it comes (capped, never blocking), enforce the
//! wall-clock timeout on the whole tree, reap it, and report how it ended.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::error::{JailError, Result};
use crate::spawn::Sandbox;
use crate::sys;

/// Which output stream a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    /// Preparing the plan, uid slot and cgroup, and cloning the child.
    pub setup: Duration,
    /// From releasing the child to its `execve`: namespaces, mounts, seccomp.
    pub boot: Duration,
    /// From `execve` to the end of the run.
    pub execute: Duration,
    pub total: Duration,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu: Duration,
    pub memory_peak_bytes: u64,
}

/// How a run ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Exit code when the program exited on its own.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// The wall-clock limit was reached and the whole tree was killed.
    pub timed_out: bool,
    /// The memory limit was hit (the kernel's OOM killer acted inside the sandbox).
    pub memory_limit: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub timing: Timing,
    pub usage: Usage,
}

/// How long output pipes may stay open after the sandbox's init exited. Every process of the
/// sandbox dies with its pid namespace, so this only guards against the unexpected.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

struct Capture {
    fd: Option<OwnedFd>,
    buf: Vec<u8>,
    cap: usize,
    truncated: bool,
    stream: Stream,
}

impl Capture {
    fn new(fd: Option<OwnedFd>, cap: usize, stream: Stream) -> Result<Capture> {
        if let Some(fd) = &fd {
            sys::set_nonblocking(fd.as_raw_fd()).map_err(|e| {
                JailError::host(
                    "making an output pipe non-blocking",
                    std::io::Error::from_raw_os_error(e),
                )
            })?;
        }
        Ok(Capture {
            fd,
            buf: Vec::new(),
            cap,
            truncated: false,
            stream,
        })
    }

    /// Reads what is available; keeps up to `cap` bytes, drops the rest (and says so).
    fn drain(&mut self, chunk: &mut [u8], on_output: &mut dyn FnMut(Stream, &[u8])) {
        let Some(fd) = &self.fd else { return };
        loop {
            match sys::read(fd.as_raw_fd(), chunk) {
                Ok(0) => {
                    self.fd = None;
                    return;
                }
                Ok(n) => {
                    let room = self.cap.saturating_sub(self.buf.len());
                    let keep = n.min(room);
                    if keep > 0 {
                        self.buf.extend_from_slice(&chunk[..keep]);
                        on_output(self.stream, &chunk[..keep]);
                    }
                    if keep < n {
                        self.truncated = true;
                    }
                }
                Err(libc::EINTR) => {}
                Err(libc::EAGAIN) => return,
                Err(_) => {
                    self.fd = None;
                    return;
                }
            }
        }
    }
}

impl Sandbox {
    /// Waits for the run to end, passing captured output to `on_output` as it arrives.
    pub fn wait(mut self, mut on_output: impl FnMut(Stream, &[u8])) -> Result<Outcome> {
        let limits = self.limits.clone();
        let mut out = Capture::new(self.stdout.take(), limits.stdout_bytes, Stream::Stdout)?;
        let mut err = Capture::new(self.stderr.take(), limits.stderr_bytes, Stream::Stderr)?;
        let deadline = self.execed + limits.wall_timeout;
        let mut chunk = vec![0u8; 64 * 1024];
        let mut timed_out = false;
        let mut status = None;
        let mut exited_at = None;

        loop {
            if status.is_some() && out.fd.is_none() && err.fd.is_none() {
                break;
            }
            let now = Instant::now();
            if let Some(t) = exited_at
                && now.duration_since(t) > DRAIN_GRACE
            {
                break;
            }
            if status.is_none() && !timed_out && now >= deadline {
                timed_out = true;
                self.kill();
            }
            let wake = match (status.is_some(), timed_out) {
                (true, _) => exited_at.map_or(Duration::ZERO, |t: Instant| {
                    (t + DRAIN_GRACE).saturating_duration_since(now)
                }),
                (false, true) => Duration::from_millis(50),
                (false, false) => deadline.saturating_duration_since(now),
            };
            let mut fds = Vec::with_capacity(3);
            for c in [&out, &err] {
                if let Some(fd) = &c.fd {
                    fds.push(libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    });
                }
            }
            if status.is_none() {
                fds.push(libc::pollfd {
                    fd: self.pidfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            let ms = wake.as_millis().clamp(1, i32::MAX as u128) as i32;
            sys::poll(&mut fds, ms).map_err(|e| {
                JailError::host(
                    "waiting for the sandbox",
                    std::io::Error::from_raw_os_error(e),
                )
            })?;
            out.drain(&mut chunk, &mut on_output);
            err.drain(&mut chunk, &mut on_output);
            if status.is_none()
                && let Some(s) = sys::wait4(self.pid, true).map_err(|e| {
                    JailError::host("reaping the sandbox", std::io::Error::from_raw_os_error(e))
                })?
            {
                self.reaped = true;
                status = Some(s);
                exited_at = Some(Instant::now());
            }
        }
        let ended = exited_at.unwrap_or_else(Instant::now);
        let (wstatus, rusage) = status.unwrap_or((0, empty_rusage()));

        let mut usage = Usage {
            cpu: tv(rusage.ru_utime) + tv(rusage.ru_stime),
            memory_peak_bytes: (rusage.ru_maxrss.max(0) as u64) * 1024,
        };
        let mut memory_limit = false;
        if let Some(cg) = &self.cgroup {
            let u = cg.usage();
            if let Some(peak) = u.memory_peak_bytes {
                usage.memory_peak_bytes = peak;
            }
            if let Some(ns) = u.cpu_ns {
                usage.cpu = Duration::from_nanos(ns);
            }
            memory_limit = u.oom;
        }
        let (exit_code, signal) = if libc::WIFEXITED(wstatus) {
            (Some(libc::WEXITSTATUS(wstatus)), None)
        } else if libc::WIFSIGNALED(wstatus) {
            (None, Some(libc::WTERMSIG(wstatus)))
        } else {
            (None, None)
        };
        let timing = Timing {
            setup: self.released.duration_since(self.started),
            boot: self.execed.duration_since(self.released),
            execute: ended.duration_since(self.execed),
            total: ended.duration_since(self.started),
        };
        Ok(Outcome {
            exit_code,
            signal,
            timed_out,
            memory_limit,
            stdout: std::mem::take(&mut out.buf),
            stderr: std::mem::take(&mut err.buf),
            stdout_truncated: out.truncated,
            stderr_truncated: err.truncated,
            timing,
            usage,
        })
        // Dropping `self` removes the cgroup.
    }
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

fn empty_rusage() -> libc::rusage {
    // SAFETY: rusage is plain old data; all-zero is valid.
    unsafe { std::mem::zeroed() }
}
