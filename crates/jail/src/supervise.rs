//! Watching a running sandbox: drain its output as it comes (capped, never blocking), enforce the
//! wall-clock timeout on the whole tree, reap it, and report how it ended.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::cgroup::Cgroup;
use crate::error::{JailError, Result};
use crate::policy::Limits;
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

/// How long a zygote may take to report a run it was told to kill.
const KILL_REPORT_GRACE: Duration = Duration::from_secs(5);

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

/// How the end of a watched run is learned.
pub(crate) enum Exit {
    /// The sandbox's init is our child: its pidfd becomes readable, then `wait4` reaps it.
    Child { pid: libc::pid_t, pidfd: RawFd },
    /// A zygote child: its reporter writes one [`report`] frame on this pipe (EOF without one
    /// means the reporter itself was killed).
    Reported { fd: RawFd },
}

/// The status frame a zygote child's reporter writes: a tag, then two native-endian i32s.
pub(crate) mod report {
    pub const LEN: usize = 9;
    /// `S`, wait status, 0: the run ended with that status.
    pub const STATUS: u8 = b'S';
    /// `E`, stage, errno: setting the child up failed before any user code ran.
    pub const ERROR: u8 = b'E';

    #[cfg_attr(not(feature = "zygote-lib"), allow(dead_code))]
    pub fn encode(tag: u8, a: i32, b: i32) -> [u8; LEN] {
        let mut f = [0u8; LEN];
        f[0] = tag;
        f[1..5].copy_from_slice(&a.to_ne_bytes());
        f[5..].copy_from_slice(&b.to_ne_bytes());
        f
    }

    pub fn decode(f: &[u8; LEN]) -> (u8, i32, i32) {
        let a = i32::from_ne_bytes([f[1], f[2], f[3], f[4]]);
        let b = i32::from_ne_bytes([f[5], f[6], f[7], f[8]]);
        (f[0], a, b)
    }
}

/// One run being watched.
pub(crate) struct Watch<'a> {
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub limits: &'a Limits,
    pub exit: Exit,
    pub cgroup: Option<&'a Cgroup>,
    /// Kills every process of the run (on timeout).
    pub kill: &'a dyn Fn(),
    pub started: Instant,
    pub released: Instant,
    pub execed: Instant,
    /// CPU time used before the run began (a pre-started sandbox's start and preload), which
    /// is not the run's.
    pub cpu_before: Duration,
}

impl Sandbox {
    /// Waits for the run to end, passing captured output to `on_output` as it arrives.
    pub fn wait(mut self, on_output: impl FnMut(Stream, &[u8])) -> Result<Outcome> {
        let limits = self.limits.clone();
        let (stdout, stderr) = (self.stdout.take(), self.stderr.take());
        let sandbox = &self;
        let kill = || sandbox.kill();
        let watch = Watch {
            stdout,
            stderr,
            limits: &limits,
            exit: Exit::Child {
                pid: self.pid,
                pidfd: self.pidfd.as_raw_fd(),
            },
            cgroup: self.cgroup.as_ref(),
            kill: &kill,
            started: self.started,
            released: self.released,
            execed: self.execed,
            cpu_before: self.cpu_before,
        };
        let (outcome, reaped) = watch.run(on_output)?;
        self.reaped = reaped;
        Ok(outcome)
        // Dropping `self` removes the cgroup.
    }
}

impl Watch<'_> {
    /// Drains output until the run ended and its pipes closed (or the grace after its end ran
    /// out), enforcing the wall-clock limit. Returns the outcome and whether a child was reaped.
    pub(crate) fn run(
        mut self,
        mut on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<(Outcome, bool)> {
        let limits = self.limits;
        let mut out = Capture::new(self.stdout.take(), limits.stdout_bytes, Stream::Stdout)?;
        let mut err = Capture::new(self.stderr.take(), limits.stderr_bytes, Stream::Stderr)?;
        let deadline = self.execed + limits.wall_timeout;
        let mut chunk = vec![0u8; 64 * 1024];
        let mut timed_out = false;
        let mut status = None;
        let mut exited_at = None;
        let mut reaped = false;
        let exit_fd = match self.exit {
            Exit::Child { pidfd, .. } => pidfd,
            Exit::Reported { fd } => fd,
        };

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
                (self.kill)();
            }
            // A killed run's status comes from its zygote: never wait on a stuck one forever.
            if status.is_none()
                && timed_out
                && matches!(self.exit, Exit::Reported { .. })
                && now >= deadline + KILL_REPORT_GRACE
            {
                status = Some((libc::SIGKILL, empty_rusage()));
                exited_at = Some(now);
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
                    fd: exit_fd,
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
            if status.is_none() {
                let ended = match self.exit {
                    Exit::Child { pid, .. } => {
                        let s = sys::wait4(pid, true).map_err(|e| {
                            JailError::host(
                                "reaping the sandbox",
                                std::io::Error::from_raw_os_error(e),
                            )
                        })?;
                        reaped |= s.is_some();
                        s
                    }
                    Exit::Reported { fd } => read_report(fd, timed_out)?,
                };
                if ended.is_some() {
                    status = ended;
                    exited_at = Some(Instant::now());
                }
            }
        }
        let ended = exited_at.unwrap_or_else(Instant::now);
        let (wstatus, rusage) = status.unwrap_or((0, empty_rusage()));

        let mut usage = Usage {
            cpu: tv(rusage.ru_utime) + tv(rusage.ru_stime),
            memory_peak_bytes: (rusage.ru_maxrss.max(0) as u64) * 1024,
        };
        let mut memory_limit = false;
        if let Some(cg) = self.cgroup {
            let u = cg.usage();
            if let Some(peak) = u.memory_peak_bytes {
                usage.memory_peak_bytes = peak;
            }
            if let Some(ns) = u.cpu_ns {
                usage.cpu = Duration::from_nanos(ns);
            }
            memory_limit = u.oom;
        }
        usage.cpu = usage.cpu.saturating_sub(self.cpu_before);
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
        let outcome = Outcome {
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
        };
        Ok((outcome, reaped))
    }
}

/// Reads a zygote child's status frame once its pipe is readable (`None`: not yet).
fn read_report(fd: RawFd, killed: bool) -> Result<Option<(i32, libc::rusage)>> {
    let mut ready = [libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }];
    if !matches!(sys::poll(&mut ready, 0), Ok(n) if n > 0) {
        return Ok(None);
    }
    let mut frame = [0u8; report::LEN];
    let n = sys::read_full(fd, &mut frame).map_err(|e| {
        JailError::host(
            "reading the run's status from the zygote",
            std::io::Error::from_raw_os_error(e),
        )
    })?;
    if n < report::LEN {
        // The zygote closed the pipe without a word: it died (killing the run with it), or
        // the run was killed before the zygote could watch it.
        if killed {
            return Ok(Some((libc::SIGKILL, empty_rusage())));
        }
        return Err(JailError::host(
            "supervising a zygote child",
            std::io::Error::other(
                "the process reporting the run's status was killed, or its zygote was \
                 (the run may have been cut short); run it again",
            ),
        ));
    }
    match report::decode(&frame) {
        (report::STATUS, wstatus, _) => Ok(Some((wstatus, empty_rusage()))),
        (_, stage, errno) => Err(JailError::Setup {
            stage: crate::zygote::stage_name(stage as u32),
            detail: " (zygote child)".into(),
            source: std::io::Error::from_raw_os_error(errno),
        }),
    }
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

fn empty_rusage() -> libc::rusage {
    // SAFETY: rusage is plain old data; all-zero is valid.
    unsafe { std::mem::zeroed() }
}
