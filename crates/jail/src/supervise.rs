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
    /// The sandbox's init ended before it could report the program's status (it was killed
    /// from outside the sandbox, say): `exit_code` and `signal` are the init's, and how the
    /// program itself ended is unknown. Never set for a run that timed out or that its
    /// [`crate::Killer`] killed.
    pub init_died: bool,
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
    kept: OutputCap,
    stream: Stream,
}

/// One output stream's captured bytes, at most `cap` of them: everything while under the cap;
/// once past it, the head, a marker, and the latest bytes (a program's last words, such as a
/// traceback or a final result, matter more than its middle).
#[derive(Debug)]
pub struct OutputCap {
    buf: Vec<u8>,
    cap: usize,
    truncated: bool,
    /// Once past the cap: the latest bytes, a ring of `tail_len(cap)` starting at `tail_at`.
    tail: Vec<u8>,
    tail_at: usize,
}

/// Put between the head and the tail of a truncated capture.
const CUT: &[u8] = b"\n[... airlock: output truncated here ...]\n";

/// How much of a capped stream's end is kept. None for caps too small to split.
fn tail_len(cap: usize) -> usize {
    if cap < 16 * CUT.len() { 0 } else { cap / 4 }
}

impl OutputCap {
    pub fn new(cap: usize) -> OutputCap {
        OutputCap {
            buf: Vec::new(),
            cap,
            truncated: false,
            tail: Vec::new(),
            tail_at: 0,
        }
    }

    /// Takes in `data`; returns the part of it that is within the cap, which is what a live
    /// stream passes on (past the cap, only the tail is kept, and not streamed).
    pub fn push<'d>(&mut self, data: &'d [u8]) -> &'d [u8] {
        let room = self.cap.saturating_sub(self.buf.len());
        let (head, rest) = data.split_at(data.len().min(room));
        self.buf.extend_from_slice(head);
        if !rest.is_empty() {
            self.truncated = true;
            self.keep_tail(rest);
        }
        head
    }

    /// Whether more than `cap` bytes came.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Keeps `data`, past the cap, as the latest bytes of the tail ring.
    fn keep_tail(&mut self, data: &[u8]) {
        let len = tail_len(self.cap);
        if len == 0 {
            return;
        }
        let mut data = &data[data.len().saturating_sub(len)..];
        if self.tail.len() < len {
            let (fill, rest) = data.split_at(data.len().min(len - self.tail.len()));
            self.tail.extend_from_slice(fill);
            data = rest;
        }
        while !data.is_empty() {
            let n = (len - self.tail_at).min(data.len());
            self.tail[self.tail_at..self.tail_at + n].copy_from_slice(&data[..n]);
            self.tail_at = (self.tail_at + n) % len;
            data = &data[n..];
        }
    }

    /// What was captured, at most `cap` bytes: everything, or once past the cap its head, a
    /// marker and its tail.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        if self.tail.is_empty() {
            return out;
        }
        out.truncate(self.cap - tail_len(self.cap) - CUT.len());
        out.extend_from_slice(CUT);
        let (newer, older) = self.tail.split_at(self.tail_at);
        out.extend_from_slice(older);
        out.extend_from_slice(newer);
        out
    }
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
            kept: OutputCap::new(cap),
            stream,
        })
    }

    /// Reads what is available; keeps up to `cap` bytes and passes them on, then only the end
    /// of what follows (and says so).
    fn drain(&mut self, chunk: &mut [u8], on_output: &mut dyn FnMut(Stream, &[u8])) {
        let Some(fd) = self.fd.as_ref().map(|fd| fd.as_raw_fd()) else {
            return;
        };
        loop {
            match sys::read(fd, chunk) {
                Ok(0) => {
                    self.fd = None;
                    return;
                }
                Ok(n) => {
                    let head = self.kept.push(&chunk[..n]);
                    if !head.is_empty() {
                        on_output(self.stream, head);
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
    /// The program's own status is the [`report`] frame the init wrote on `report` before it
    /// exited (none when the init died first: the outcome then says `init_died`).
    Child {
        pid: libc::pid_t,
        pidfd: RawFd,
        report: Option<RawFd>,
    },
    /// A zygote child: the run's init writes an `S` [`report`] frame on this pipe, then the
    /// zygote an `I` frame for the init's own exit (alone when the init died first); `E` when
    /// the child's setup failed. EOF without a frame means the zygote itself was killed.
    Reported { fd: RawFd },
}

/// The status frame a zygote child's reporter writes: a tag, then two native-endian i32s.
pub(crate) mod report {
    pub const LEN: usize = 9;
    /// `S`, wait status, 0: the run ended with that status.
    pub const STATUS: u8 = b'S';
    /// `E`, stage, errno: setting the child up failed before any user code ran.
    pub const ERROR: u8 = b'E';
    /// `I`, wait status, 0: the sandbox's init ended with that status (a zygote writes this
    /// after the init's own `S` frame for the program, or alone when the init died first).
    #[cfg_attr(not(feature = "zygote-lib"), allow(dead_code))]
    pub const INIT: u8 = b'I';

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
    /// Set when the run was killed on purpose (its [`crate::Killer`]): its init's death is
    /// then no news.
    pub killed: &'a std::sync::atomic::AtomicBool,
    pub started: Instant,
    pub released: Instant,
    pub execed: Instant,
    /// CPU time used before the run began (a pre-started sandbox's start and preload), which
    /// is not the run's.
    pub cpu_before: CpuBefore,
}

/// CPU time used before a run began, as each source of the outcome's CPU time counts it, so
/// that what is subtracted is always of the same source as what it is subtracted from.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CpuBefore {
    /// The cgroup's usage, where there was one to read.
    pub cgroup: Option<Duration>,
    /// What the init's rusage counts (its own time and its reaped children's).
    pub rusage: Duration,
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
                report: self.report.as_ref().map(|fd| fd.as_raw_fd()),
            },
            cgroup: self.cgroup.as_ref(),
            kill: &kill,
            killed: &self.killed,
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
        // The init ended without the program's status.
        let mut init_died = false;
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
                    Exit::Child { pid, report, .. } => {
                        let s = sys::wait4(pid, true).map_err(|e| {
                            JailError::host(
                                "reaping the sandbox",
                                std::io::Error::from_raw_os_error(e),
                            )
                        })?;
                        reaped |= s.is_some();
                        // Its rusage counts the program (reaped by it) and the init itself.
                        s.map(|(init, rusage)| match report.map(program_status) {
                            Some(Some(program)) => (program, rusage, false),
                            Some(None) => (init, rusage, true),
                            None => (init, rusage, false),
                        })
                    }
                    Exit::Reported { fd } => read_report(fd, timed_out)?,
                };
                if let Some((wstatus, rusage, died)) = ended {
                    status = Some((wstatus, rusage));
                    // Read now: a kill asked for after this (while output drains) did not
                    // cause the death.
                    init_died = died && !self.killed.load(std::sync::atomic::Ordering::SeqCst);
                    exited_at = Some(Instant::now());
                }
            }
        }
        let ended = exited_at.unwrap_or_else(Instant::now);
        let (wstatus, rusage) = status.unwrap_or((0, empty_rusage()));

        let mut usage = Usage {
            cpu: (tv(rusage.ru_utime) + tv(rusage.ru_stime)).saturating_sub(self.cpu_before.rusage),
            memory_peak_bytes: (rusage.ru_maxrss.max(0) as u64) * 1024,
        };
        let mut memory_limit = false;
        if let Some(cg) = self.cgroup {
            let u = cg.usage();
            if let Some(peak) = u.memory_peak_bytes {
                usage.memory_peak_bytes = peak;
            }
            if let Some(ns) = u.cpu_ns {
                let before = self.cpu_before.cgroup.unwrap_or_default();
                usage.cpu = Duration::from_nanos(ns).saturating_sub(before);
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
        let outcome = Outcome {
            exit_code,
            signal,
            timed_out,
            memory_limit,
            init_died: init_died && !timed_out,
            stdout: out.kept.finish(),
            stderr: err.kept.finish(),
            stdout_truncated: out.kept.truncated(),
            stderr_truncated: err.kept.truncated(),
            timing,
            usage,
        };
        Ok((outcome, reaped))
    }
}

/// A [`report`] frame from `fd` if it is readable now (`Ok(None)`: not yet), with how many of
/// its bytes came before end of file.
fn frame_if_ready(fd: RawFd) -> sys::SysResult<Option<(usize, [u8; report::LEN])>> {
    if !matches!(sys::readable_now(fd), Ok(true)) {
        return Ok(None);
    }
    let mut frame = [0u8; report::LEN];
    sys::read_full(fd, &mut frame).map(|n| Some((n, frame)))
}

/// Reads a zygote child's first status frame once its pipe is readable (`None`: not yet): the
/// wait status, and whether it is the init's own (it died before reporting the program's).
fn read_report(fd: RawFd, killed: bool) -> Result<Option<(i32, libc::rusage, bool)>> {
    let Some((n, frame)) = frame_if_ready(fd).map_err(|e| {
        JailError::host(
            "reading the run's status from the zygote",
            std::io::Error::from_raw_os_error(e),
        )
    })?
    else {
        return Ok(None);
    };
    if n < report::LEN {
        // The zygote closed the pipe without a word: it died (killing the run with it), or
        // the run was killed before the zygote could watch it.
        if killed {
            return Ok(Some((libc::SIGKILL, empty_rusage(), false)));
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
        (report::STATUS, wstatus, _) => Ok(Some((wstatus, empty_rusage(), false))),
        (report::INIT, wstatus, _) => Ok(Some((wstatus, empty_rusage(), true))),
        (_, stage, errno) => Err(JailError::Setup {
            stage: crate::zygote::stage_name(stage as u32),
            detail: " (zygote child)".into(),
            source: std::io::Error::from_raw_os_error(errno),
        }),
    }
}

/// The program's wait status, as the sandbox's init reported it on `fd` before it exited.
fn program_status(fd: RawFd) -> Option<i32> {
    match frame_if_ready(fd) {
        Ok(Some((report::LEN, frame))) => match report::decode(&frame) {
            (report::STATUS, wstatus, _) => Some(wstatus),
            _ => None,
        },
        _ => None,
    }
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

fn empty_rusage() -> libc::rusage {
    // SAFETY: rusage is plain old data; all-zero is valid.
    unsafe { std::mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    /// Captures `writes` (written one by one, drained after each) under `cap`.
    fn capture(cap: usize, writes: &[&[u8]]) -> (Vec<u8>, bool, Vec<u8>) {
        let (r, w) = sys::pipe().unwrap();
        // SAFETY: pipe returned two fresh descriptors that nothing else owns.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(r), OwnedFd::from_raw_fd(w)) };
        let mut c = Capture::new(Some(r), cap, Stream::Stderr).unwrap();
        let mut streamed = Vec::new();
        let mut chunk = vec![0u8; 7]; // smaller than the writes: reads split them
        for data in writes {
            sys::write_all(w.as_raw_fd(), data).unwrap();
            c.drain(&mut chunk, &mut |_, d| streamed.extend_from_slice(d));
        }
        drop(w);
        c.drain(&mut chunk, &mut |_, d| streamed.extend_from_slice(d));
        assert!(c.fd.is_none(), "EOF seen");
        (c.kept.finish(), c.kept.truncated(), streamed)
    }

    #[test]
    fn under_the_cap_everything_is_kept() {
        let (out, truncated, streamed) = capture(4096, &[b"hello ", b"world"]);
        assert_eq!(out, b"hello world");
        assert!(!truncated);
        assert_eq!(streamed, b"hello world");
    }

    #[test]
    fn past_the_cap_the_head_and_the_tail_are_kept_in_exactly_cap_bytes() {
        let cap = 4096;
        let head = vec![b'h'; 3000];
        let middle = vec![b'm'; 50_000];
        let end = b"Traceback: ValueError: the last words".to_vec();
        let (out, truncated, streamed) = capture(cap, &[&head, &middle, &end]);
        assert!(truncated);
        assert_eq!(out.len(), cap);
        assert!(out.starts_with(&head[..100]));
        assert!(
            out.ends_with(&end),
            "{:?}",
            String::from_utf8_lossy(&out[out.len() - 80..])
        );
        let cut = out
            .windows(CUT.len())
            .position(|w| w == CUT)
            .expect("the marker");
        assert_eq!(cut, cap - tail_len(cap) - CUT.len());
        // Live output stops at the cap: what was streamed is the head as it came.
        assert_eq!(streamed.len(), cap);
        assert!(streamed.iter().take(3000).all(|&b| b == b'h'));
    }

    #[test]
    fn a_tail_that_wraps_keeps_the_latest_bytes_in_order() {
        let cap = 4096;
        let writes: Vec<Vec<u8>> = (0..400u32)
            .map(|i| format!("{i:05} ").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = writes.iter().map(Vec::as_slice).collect();
        let (out, _, _) = capture(cap, &refs);
        let all: Vec<u8> = writes.concat();
        assert!(out.ends_with(&all[all.len() - tail_len(cap)..]));
    }

    #[test]
    fn a_tiny_cap_keeps_only_its_head() {
        let (out, truncated, _) = capture(10, &[b"0123456789abcdef"]);
        assert_eq!((out.as_slice(), truncated), (&b"0123456789"[..], true));
    }
}
