//! Zygotes (DESIGN §4): a pre-started interpreter that has imported a run's packages, never runs
//! user code, and forks a child per run. Each child enters fresh namespaces, its own cgroup,
//! limits, Landlock and the run filter before it reads its code (see `inside`), so it is as
//! isolated as a cold run's sandbox while costing a `fork` instead of a sandbox and an
//! interpreter start.
//!
//! The zygote itself is a sandbox like any other, under [`Profile::Zygote`]: it holds no
//! capability, and its filter lets it unshare and mount, because each child makes a user
//! namespace of its own and, in it, the run's namespaces and mounts. Everything else of the
//! isolation contract holds for it, except Landlock (a Landlocked process may not mount). The
//! supervisor talks to it over a private `SOCK_SEQPACKET` socket at descriptor 3: one spec
//! record at start (`spec`), then one record per child carrying that run's descriptors. The interpreter side is a small script of the runtime's that loads
//! this crate built as a library (the `zygote-lib` feature, `ffi`).

#[cfg(feature = "zygote-lib")]
pub mod ffi;
#[cfg(all(feature = "zygote-lib", target_arch = "x86_64"))]
pub mod freeze;
#[cfg(feature = "zygote-lib")]
mod inside;
mod spec;
#[cfg(feature = "zygote-lib")]
mod vfork;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cgroup::{Cgroup, CgroupLimits};
use crate::error::{JailError, Result};
use crate::policy::{CgroupMode, Limits, Network, Policy};
use crate::seccomp::Profile;
use crate::spawn::{Command, Killer, Sandbox, pipe, socketpair};
use crate::supervise::{CpuBefore, Exit, Outcome, Stream, Watch, report};
use crate::sys;

/// Message tag of a fork request on the zygote's control socket.
pub(crate) const FORK_REQUEST: u8 = b'F';

/// Stages of a zygote child's setup (reported as `(stage, errno)`), after `child::stage`'s.
pub(crate) mod zstage {
    pub const CGROUP_ATTACH: u32 = 40;
    pub const UNSHARE: u32 = 41;
    pub const FORK: u32 = 42;
    pub const MOUNTS: u32 = 43;
    pub const REAP: u32 = 44;
    pub const USER_NS: u32 = 45;
    pub const RECEIVE: u32 = 46;

    pub fn name(code: u32) -> Option<&'static str> {
        Some(match code {
            CGROUP_ATTACH => "join the run's cgroup",
            UNSHARE => "unshare the run's namespaces",
            FORK => "fork the run's process",
            MOUNTS => "mount the run's /tmp, /workspace, /dev/shm and /proc",
            REAP => "wait for the run's process",
            USER_NS => "enter the run's own user namespace",
            RECEIVE => "receive the run's descriptors",
            _ => return None,
        })
    }
}

/// Names a stage reported by a zygote child.
pub(crate) fn stage_name(code: u32) -> &'static str {
    zstage::name(code).unwrap_or_else(|| crate::child::stage::name(code))
}

/// How long a zygote's child may take to say it is ready.
const CHILD_READY: Duration = Duration::from_secs(10);

/// Processes a zygote's own cgroup may hold at least: the zygote and the children it forked
/// that have not yet moved into their runs' cgroups (which on cgroup v1 takes a while), however
/// many runs come at once. Each run's own pids limit is its cgroup's.
const ZYGOTE_PIDS: u64 = 1024;

/// Open files a zygote may have at least (up to the hard limit): it holds a few descriptors
/// of every run in flight. Each run's own limit is set in the run.
const ZYGOTE_OPEN_FILES: u64 = 16384;

/// A running zygote. Dropping it kills it and every child it still has.
pub struct Zygote {
    sandbox: Sandbox,
    control: Mutex<OwnedFd>,
    limits: Limits,
    born: Instant,
}

impl Zygote {
    /// Starts `command` (the zygote's interpreter and script) under `policy`. The command's
    /// descriptor 3 is the zygote's control socket; any descriptors it passes itself follow.
    /// Returns once the zygote wrote its readiness byte `R` on the socket (it has imported
    /// what it pre-imports), or fails after `ready_timeout`.
    ///
    /// Children share what the zygote's sandbox holds, so a policy with anything writable
    /// beyond the per-child tmpfs mounts (a host workspace, a writable bind) is refused, as is
    /// one without required cgroups (each child's limits are its own cgroup's) or with a
    /// loopback listener (which would be shared too).
    pub fn start(policy: &Policy, mut command: Command, ready_timeout: Duration) -> Result<Zygote> {
        let refuse = |why: &str| {
            Err(JailError::Policy {
                field: "zygote".into(),
                why: why.into(),
            })
        };
        if policy.workspace.is_some() || policy.mounts.iter().any(|m| m.writable) {
            return refuse("a zygote's children would share a writable host directory");
        }
        if policy.cgroup != CgroupMode::Required {
            return refuse("a zygote's children need cgroups for their own limits");
        }
        if policy.loopback_listener.is_some() {
            return refuse("a zygote's children would share one loopback listener");
        }
        let (ours, theirs) = seqpacket_pair()?;
        command.fds.insert(0, Arc::new(theirs));
        // The zygote serves every run of its pool at once: its own limits are not a run's.
        let mut own = policy.clone();
        own.limits.pids = own.limits.pids.max(ZYGOTE_PIDS);
        own.limits.open_files = own
            .limits
            .open_files
            .max(ZYGOTE_OPEN_FILES.min(sys::nofile_hard()));
        let mut sandbox = Sandbox::spawn_as(&own, &command, Profile::Zygote)?;
        drop(command);
        let stderr = Diagnostics::drain(sandbox.stdout.take(), sandbox.stderr.take());
        let l = &policy.limits;
        let spec = spec::Spec {
            cpu_seconds: l.cpu_rlimit(),
            open_files: l.open_files,
            tmp_bytes: l.tmp_bytes,
            workspace_bytes: l.workspace_bytes,
            shm_bytes: l.shm_bytes,
            own_network: policy.network == Network::None,
        };
        sys::send_nosignal(ours.as_raw_fd(), &spec.encode())
            .map_err(|e| host("sending the zygote its spec", e))?;
        wait_readable(&[ours.as_raw_fd()], ready_timeout)
            .map_err(|e| host("waiting for the zygote to start", e))?;
        let mut ready = [0u8; 1];
        match sys::read(ours.as_raw_fd(), &mut ready) {
            Ok(1) if ready == *b"R" => {}
            Ok(_) => {
                return Err(JailError::host(
                    "starting the zygote",
                    io::Error::other(format!(
                        "it ended before it was ready ({}); its stderr: {:?} (`airlock \
                         doctor` checks the host)",
                        sandbox
                            .reap_within(Duration::from_secs(1))
                            .unwrap_or_else(|| "still running".into()),
                        stderr.tail()
                    )),
                ));
            }
            Err(e) => return Err(host("starting the zygote", e)),
        }
        Ok(Zygote {
            sandbox,
            control: Mutex::new(ours),
            limits: policy.limits.clone(),
            born: Instant::now(),
        })
    }

    /// Whether the zygote is still running.
    pub fn alive(&self) -> bool {
        !self.sandbox.has_exited()
    }

    /// When it became ready.
    pub fn born(&self) -> Instant {
        self.born
    }

    /// The zygote's init as seen from the host (for tests that kill it).
    pub fn pid(&self) -> i32 {
        self.sandbox.pid()
    }

    /// Forks a child for one run and returns once it is isolated and waiting for its code.
    /// `result` becomes the child's descriptor 4 (the runtime's result channel).
    pub fn fork(&self, result: Option<OwnedFd>) -> Result<ZygoteChild> {
        let started = Instant::now();
        if !self.alive() {
            return Err(JailError::host(
                "forking a zygote child",
                io::Error::other("the zygote has exited"),
            ));
        }
        let l = &self.limits;
        let cgroup = Cgroup::create(
            &crate::spawn::run_cgroup_name(),
            &CgroupLimits {
                memory_bytes: l.memory_bytes,
                // The run's init. (For a moment the zygote's child that forks the run's
                // process is there too, before the init forks the program.)
                pids: l.pids + 1,
                cpu_millis: l.cpu_millis,
            },
        )?;
        let procs = cgroup.procs_files()?;
        let (control, control_theirs) = socketpair()?;
        let (stdout, stdout_w) = pipe()?;
        let (stderr, stderr_w) = pipe()?;
        let (status, status_w) = pipe()?;
        let mut fds: Vec<RawFd> = [&status_w, &stdout_w, &stderr_w, &control_theirs]
            .iter()
            .map(|fd| fd.as_raw_fd())
            .collect();
        fds.extend(result.as_ref().map(|fd| fd.as_raw_fd()));
        fds.extend(procs.iter().map(|fd| fd.as_raw_fd()));
        let header = [FORK_REQUEST, procs.len() as u8, u8::from(result.is_some())];
        {
            let socket = self.control.lock().unwrap_or_else(|p| p.into_inner());
            // A SOCK_SEQPACKET record: all of it or nothing.
            sys::send_fds(socket.as_raw_fd(), &header, &fds)
                .map_err(|e| host("handing a run to the zygote", e))?;
        }
        drop((status_w, stdout_w, stderr_w, control_theirs, result, procs));
        let mut child = ZygoteChild {
            cgroup: Some(Arc::new(cgroup)),
            control: Some(control),
            stdout: Some(stdout),
            stderr: Some(stderr),
            status,
            limits: self.limits.clone(),
            started,
            ready: started,
            born: started,
            cpu_before: CpuBefore::default(),
            killed: Default::default(),
        };
        child.await_ready()?;
        child.ready = Instant::now();
        child.born = child.ready;
        // The reported rusage is the run's process's alone; its cgroup also had the setup.
        child.cpu_before.cgroup = child
            .cgroup
            .as_ref()
            .and_then(|cg| cg.usage().cpu_ns)
            .map(Duration::from_nanos);
        Ok(child)
    }
}

/// One run's process, forked by a zygote: isolated, waiting for its code on its control
/// socket (descriptor 3). Dropping it kills the run and removes its cgroup.
pub struct ZygoteChild {
    /// Always `Some` until dropped.
    cgroup: Option<Arc<Cgroup>>,
    control: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    status: OwnedFd,
    limits: Limits,
    started: Instant,
    ready: Instant,
    born: Instant,
    /// What the child's setup used before it was ready: not the run's CPU time.
    cpu_before: CpuBefore,
    /// Set by its [`Killer`]: the run was ended on purpose.
    killed: Arc<std::sync::atomic::AtomicBool>,
}

impl ZygoteChild {
    fn await_ready(&mut self) -> Result<()> {
        let control = self.control.as_ref().map_or(-1, |c| c.as_raw_fd());
        wait_readable(&[control, self.status.as_raw_fd()], CHILD_READY)
            .map_err(|e| host("waiting for a zygote child", e))?;
        let mut ready = [0u8; 1];
        if matches!(sys::read(control, &mut ready), Ok(1)) && ready == *b"R" {
            return Ok(());
        }
        // It never got as far as the interpreter: its status pipe says why.
        let mut frame = [0u8; report::LEN];
        let _ = wait_readable(&[self.status.as_raw_fd()], Duration::from_secs(2));
        if let Ok(report::LEN) = sys::read_full(self.status.as_raw_fd(), &mut frame)
            && let (report::ERROR, stage, errno) = report::decode(&frame)
        {
            return Err(JailError::Setup {
                stage: stage_name(stage as u32),
                detail: " (zygote child)".into(),
                source: io::Error::from_raw_os_error(errno),
            });
        }
        Err(JailError::host(
            "starting a zygote child",
            io::Error::other("it ended before it was ready (the zygote may have been killed)"),
        ))
    }

    /// The run's control socket (a stream socket; the child's descriptor 3), taken once: the
    /// runtime writes the code frame on it and closes it.
    pub fn take_control(&mut self) -> Option<OwnedFd> {
        self.control.take()
    }

    /// Whether the child is still waiting (it has not ended or failed).
    pub fn alive(&self) -> bool {
        matches!(sys::readable_now(self.status.as_raw_fd()), Ok(false))
    }

    /// When it became ready.
    pub fn born(&self) -> Instant {
        self.born
    }

    /// Kills the run (everything in its cgroup) from any thread.
    pub fn killer(&self) -> Killer {
        Killer::of_cgroup(self.cgroup.as_ref(), &self.killed)
    }

    /// Starts the run's clock now (see `Sandbox::start_clock`).
    pub fn start_clock(&mut self) {
        let now = Instant::now();
        self.started = now;
        self.ready = now;
    }

    /// Waits for the run to end, passing output to `on_output` as it arrives.
    pub fn wait(mut self, on_output: impl FnMut(Stream, &[u8])) -> Result<Outcome> {
        let cgroup = self.cgroup.clone();
        let kill = || cgroup.as_deref().map_or((), kill_cgroup);
        let watch = Watch {
            stdout: self.stdout.take(),
            stderr: self.stderr.take(),
            limits: &self.limits,
            exit: Exit::Reported {
                fd: self.status.as_raw_fd(),
            },
            cgroup: cgroup.as_deref(),
            kill: &kill,
            killed: &self.killed,
            started: self.started,
            released: self.ready,
            execed: self.ready,
            cpu_before: self.cpu_before,
        };
        Ok(watch.run(on_output)?.0)
    }
}

impl Drop for ZygoteChild {
    fn drop(&mut self) {
        let Some(cgroup) = self.cgroup.take() else {
            return;
        };
        kill_cgroup(&cgroup);
        // Removing the cgroup waits for it to empty: not on the run's critical path. (A
        // killer upgraded at this very moment drops it instead, which also removes it.)
        if let Ok(cg) = Arc::try_unwrap(cgroup) {
            crate::cgroup::destroy_later(cg);
        }
    }
}

/// The zygote's own stdout and stderr, drained for as long as it lives so it can never block
/// on a full pipe. Nothing is expected there; what comes is logged, and the tail of stderr is
/// kept for the error when the zygote fails to start.
#[derive(Clone, Default)]
struct Diagnostics(Arc<Mutex<Vec<u8>>>);

impl Diagnostics {
    const KEEP: usize = 4096;

    fn drain(stdout: Option<OwnedFd>, stderr: Option<OwnedFd>) -> Diagnostics {
        let kept = Diagnostics::default();
        for (fd, keep) in [(stdout, false), (stderr, true)] {
            let Some(fd) = fd else { continue };
            let sink = kept.clone();
            let _ = std::thread::Builder::new()
                .name("airlock-zygote-log".into())
                .spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = sys::read(fd.as_raw_fd(), &mut buf) {
                        let text = String::from_utf8_lossy(&buf[..n]);
                        tracing::warn!("zygote output: {}", text.trim_end());
                        if keep {
                            let mut tail = sink.0.lock().unwrap_or_else(|p| p.into_inner());
                            tail.extend_from_slice(&buf[..n]);
                            let excess = tail.len().saturating_sub(Self::KEEP);
                            tail.drain(..excess);
                        }
                    }
                });
        }
        kept
    }

    fn tail(&self) -> String {
        // The reader may still be catching up with what a dying zygote wrote.
        std::thread::sleep(Duration::from_millis(50));
        let tail = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&tail).trim().to_string()
    }
}

/// Kills every process of `cg`: `cgroup.kill` where the kernel has it, else one by one.
pub(crate) fn kill_cgroup(cg: &Cgroup) {
    if !cg.kill() {
        for pid in cg.pids() {
            let _ = sys::kill(pid, libc::SIGKILL);
        }
    }
}

fn host(what: &str, errno: i32) -> JailError {
    JailError::host(what, io::Error::from_raw_os_error(errno))
}

/// Waits until one of `fds` is readable (or hung up); ETIMEDOUT after `timeout`.
fn wait_readable(fds: &[RawFd], timeout: Duration) -> std::result::Result<(), i32> {
    let deadline = Instant::now() + timeout;
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(libc::ETIMEDOUT);
        }
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        if sys::poll(&mut polls, ms)? > 0 {
            return Ok(());
        }
    }
}

fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd)> {
    let (a, b) = sys::socketpair_of(libc::SOCK_SEQPACKET)
        .map_err(|e| host("creating the zygote's control socket", e))?;
    // SAFETY: socketpair returned two fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(a), OwnedFd::from_raw_fd(b)) })
}
