//! The parent's side of starting a sandbox: turn a `Policy` into a `Plan`, clone the child into
//! fresh namespaces, write its uid/gid maps and cgroup membership, release it, and learn whether
//! it reached `execve`.

use std::collections::BTreeSet;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::Instant;

use crate::Limits;
use crate::cgroup::{Cgroup, CgroupLimits};
use crate::child::{self, BindSource, NEWROOT, OLDROOT, Plan, Step, stage};
use crate::error::{JailError, Result};
use crate::landlock::{self, LandlockRules};
use crate::policy::{CgroupMode, Network, Policy, SANDBOX_GID, SANDBOX_UID, SANDBOX_USER};
use crate::seccomp::{self, Profile};
use crate::supervise::CpuBefore;
use crate::sys::{self, CloneArgs};
use crate::uid::{self, HostIdentity};

/// The program to run inside the sandbox: a path inside the sandbox and its arguments.
#[derive(Clone, Debug)]
pub struct Command {
    program: PathBuf,
    args: Vec<OsString>,
    pub(crate) fds: Vec<std::sync::Arc<OwnedFd>>,
}

impl Command {
    pub fn new(program: impl Into<PathBuf>) -> Command {
        Command {
            program: program.into(),
            args: Vec::new(),
            fds: Vec::new(),
        }
    }
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Command {
        self.args.push(arg.as_ref().to_owned());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Command {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }
    /// Gives the program a descriptor: the first at fd 3, the next at 4, and so on (at most
    /// seven). It is the only way anything but stdio crosses into the sandbox — for example a
    /// private control channel.
    pub fn pass_fd(mut self, fd: OwnedFd) -> Command {
        self.fds.push(std::sync::Arc::new(fd));
        self
    }

    pub fn program(&self) -> &Path {
        &self.program
    }
}

/// A running sandbox. Dropping it kills everything inside and removes its cgroup.
pub struct Sandbox {
    pub(crate) pid: libc::pid_t,
    pub(crate) pidfd: std::sync::Arc<OwnedFd>,
    pub(crate) stdout: Option<OwnedFd>,
    pub(crate) stderr: Option<OwnedFd>,
    pub(crate) cgroup: Option<Cgroup>,
    /// The cgroup is still to be made, while the child sets up (see `spawn_as`).
    cgroup_pending: bool,
    pub(crate) limits: Limits,
    pub(crate) started: Instant,
    pub(crate) released: Instant,
    pub(crate) execed: Instant,
    /// See [`Sandbox::exclude_cpu_so_far`].
    pub(crate) cpu_before: CpuBefore,
    pub(crate) reaped: bool,
    pub(crate) wants_listener: bool,
    pub(crate) listener: Option<OwnedFd>,
    /// Where the sandbox's init writes the program's wait status (`None` for a zygote, which
    /// is its namespace's init itself).
    pub(crate) report: Option<OwnedFd>,
    /// Set by [`Killer::kill`]: the run was ended on purpose (cancelled, closed, shut down).
    pub(crate) killed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub(crate) _identity: HostIdentity,
}

impl Sandbox {
    /// Starts `cmd` under `policy`. Returns once the program has been exec'd inside the
    /// sandbox; any failure before that is an error and leaves nothing behind.
    pub fn spawn(policy: &Policy, cmd: &Command) -> Result<Sandbox> {
        Sandbox::spawn_as(policy, cmd, Profile::Run)
    }

    /// [`Sandbox::spawn`] under `profile`: `Profile::Zygote` only for `crate::zygote`.
    pub(crate) fn spawn_as(policy: &Policy, cmd: &Command, profile: Profile) -> Result<Sandbox> {
        let started = Instant::now();
        policy.validate()?;
        if profile == Profile::ZygoteRun {
            // Only a complement of the zygote's filter, installed by its children on top of it.
            return Err(JailError::Policy {
                field: "profile".into(),
                why: "the zygote child's filter is not a sandbox's".into(),
            });
        }
        if !cmd.program.is_absolute() {
            return Err(JailError::Policy {
                field: "program".into(),
                why: format!(
                    "{} must be an absolute path inside the sandbox",
                    cmd.program.display()
                ),
            });
        }
        let identity = uid::allocate(policy.host_id)?;
        // A v2 cgroup must exist before the clone, which starts the child inside it. A v1 one
        // is joined after the clone anyway, so it is made while the child sets up its mounts,
        // off the critical path. Only when failing closed: the best-effort profile must know
        // before the plan whether there is a cgroup, because that decides the rlimits.
        let cgroup_pending = policy.cgroup == CgroupMode::Required && !Cgroup::clones_into()?;
        let cgroup = match cgroup_pending {
            true => None,
            false => create_cgroup(&policy.limits, policy.cgroup)?,
        };
        let seccomp = seccomp::compiled(profile)?;

        let (sync_child, sync_parent) = socketpair()?;
        let (error_read, error_write) = pipe()?;
        let (stdout_read, stdout_write) = pipe()?;
        let (stderr_read, stderr_write) = pipe()?;
        let stdin = std::fs::File::open("/dev/null")
            .map_err(|e| JailError::host("opening /dev/null", e))?;
        let stdin = above_passed(OwnedFd::from(stdin))?;

        if cmd.fds.len() > MAX_PASSED_FDS {
            return Err(JailError::Policy {
                field: "command.fds".into(),
                why: format!(
                    "{} descriptors passed; at most {MAX_PASSED_FDS}",
                    cmd.fds.len()
                ),
            });
        }
        let passed = cmd
            .fds
            .iter()
            .map(|fd| {
                sys::dup_at_least(fd.as_raw_fd(), PLAN_FD_MIN)
                    // SAFETY: dup_at_least returned a fresh descriptor owned by nobody else.
                    .map(|raw| unsafe { OwnedFd::from_raw_fd(raw) })
                    .map_err(|e| {
                        JailError::host(
                            "duplicating a passed descriptor",
                            io::Error::from_raw_os_error(e),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?;

        let has_cgroup = cgroup.is_some() || cgroup_pending;
        let mut plan = build_plan(policy, cmd, &identity, has_cgroup, profile)?;
        plan.seccomp = seccomp;
        plan.passed = passed.iter().map(|fd| fd.as_raw_fd()).collect();
        plan.stdio = [
            stdin.as_raw_fd(),
            stdout_write.as_raw_fd(),
            stderr_write.as_raw_fd(),
        ];
        plan.sync = sync_child.as_raw_fd();
        plan.error_write = error_write.as_raw_fd();
        let mut keep: Vec<RawFd> = plan.stdio.to_vec();
        keep.extend([plan.sync, plan.error_write]);
        keep.extend(&plan.passed);
        keep.extend(plan.steps.iter().filter_map(|s| match s {
            Step::Bind {
                source: BindSource::Tree(fd),
                ..
            } => Some(fd.as_raw_fd()),
            _ => None,
        }));
        keep.sort_unstable();
        plan.keep_fds = keep;

        // The network namespace (`Network::None`) the child makes itself (`Plan::own_network`).
        let flags = libc::CLONE_NEWUSER
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS;
        let mut pidfd: RawFd = -1;
        let mut args = CloneArgs {
            flags: flags as u64 | sys::CLONE_PIDFD,
            pidfd: &mut pidfd as *mut RawFd as u64,
            exit_signal: libc::SIGCHLD as u64,
            ..CloneArgs::default()
        };
        if let Some(fd) = cgroup.as_ref().and_then(|c| c.dir_fd()) {
            args.flags |= sys::CLONE_INTO_CGROUP;
            args.cgroup = fd.as_raw_fd() as u64;
        }
        let pid = clone_on_spawner(&plan, args).map_err(|e| {
            let e = io::Error::from_raw_os_error(e);
            match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::ENOSPC) | Some(libc::EINVAL) => {
                    namespaces_unavailable(format!(
                        "clone3 of user/mount/pid/ipc/uts namespaces failed: {e}"
                    ))
                }
                _ => JailError::host("clone3 of the sandbox", e),
            }
        })?;
        // SAFETY: clone3 with CLONE_PIDFD stored a new descriptor that we now own.
        let pidfd = std::sync::Arc::new(unsafe { OwnedFd::from_raw_fd(pidfd) });
        drop((
            sync_child,
            error_write,
            stdout_write,
            stderr_write,
            stdin,
            passed,
        ));

        let mut sandbox = Sandbox {
            killed: Default::default(),
            pid,
            pidfd,
            stdout: Some(stdout_read),
            stderr: Some(stderr_read),
            cgroup,
            cgroup_pending,
            limits: policy.limits.clone(),
            started,
            released: started,
            execed: started,
            cpu_before: CpuBefore::default(),
            reaped: false,
            wants_listener: policy.loopback_listener.is_some(),
            listener: None,
            report: None,
            _identity: identity,
        };
        // From here on, dropping `sandbox` on an error kills and reaps the child.
        if let Err(e) = sandbox.release(&sync_parent, &identity_maps(&sandbox._identity)) {
            // A child that failed before its release (its network namespace) is gone, which
            // is what failed here: its own report says why.
            if !matches!(sys::readable_now(error_read.as_raw_fd()), Ok(true)) {
                return Err(e);
            }
            return Err(sandbox
                .await_exec(error_read, cmd, &plan)
                .err()
                .unwrap_or(e));
        }
        if plan.init {
            sandbox.report = Some(sync_parent);
        }
        sandbox.released = Instant::now();
        sandbox.await_exec(error_read, cmd, &plan)?;
        sandbox.execed = Instant::now();
        Ok(sandbox)
    }

    fn release(&mut self, sync: &OwnedFd, maps: &IdMaps) -> Result<()> {
        let proc = format!("/proc/{}", self.pid);
        let write = |file: &str, data: &str| {
            std::fs::write(format!("{proc}/{file}"), data).map_err(|e| {
                JailError::host(
                    format!("writing {data:?} to {proc}/{file} of the sandbox"),
                    e,
                )
            })
        };
        if let Some(setgroups) = maps.setgroups {
            write("setgroups", setgroups)?;
        }
        write("gid_map", &maps.gid_map)?;
        write("uid_map", &maps.uid_map)?;
        let go = |what: &str| {
            // A child that failed its setup is gone: its own error report says why.
            match sys::send_nosignal(sync.as_raw_fd(), b"1") {
                Ok(()) | Err(libc::EPIPE) | Err(libc::ECONNRESET) => Ok(()),
                Err(e) => Err(JailError::host(
                    what.to_string(),
                    io::Error::from_raw_os_error(e),
                )),
            }
        };
        go("releasing the sandbox child")?;
        // A cgroup made only now was not cloned into, whichever version it turned out to be.
        let made_now = std::mem::take(&mut self.cgroup_pending);
        if made_now {
            self.cgroup = create_cgroup(&self.limits, CgroupMode::Required)?;
        }
        if let Some(cg) = &self.cgroup
            && (made_now || cg.dir_fd().is_none())
        {
            cg.attach(self.pid)?;
        }
        go("releasing the sandbox child into its cgroup")?;
        if self.wants_listener {
            // None when the child failed first; its error report follows on the error pipe.
            if let Ok(Some(fd)) = sys::recv_fd(sync.as_raw_fd()) {
                // SAFETY: recvmsg delivered a fresh descriptor that we now own.
                self.listener = Some(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        Ok(())
    }

    /// The TCP listener on the sandbox's own 127.0.0.1 (`Policy::loopback_listener`), for the
    /// supervisor to serve; taken once.
    pub fn take_listener(&mut self) -> Option<OwnedFd> {
        self.listener.take()
    }

    fn await_exec(&mut self, error_read: OwnedFd, cmd: &Command, plan: &Plan) -> Result<()> {
        let mut msg = [0u8; 8];
        let n = sys::read_full(error_read.as_raw_fd(), &mut msg).map_err(|e| {
            JailError::host(
                "reading the sandbox's setup status",
                io::Error::from_raw_os_error(e),
            )
        })?;
        if n == 0 {
            return Ok(()); // the error pipe closed on exec
        }
        let code = u32::from_ne_bytes(msg[..4].try_into().unwrap_or_default());
        let errno = i32::from_ne_bytes(msg[4..].try_into().unwrap_or_default());
        let source = io::Error::from_raw_os_error(errno);
        if code == stage::NET_NS && matches!(errno, libc::EPERM | libc::ENOSPC | libc::EUSERS) {
            return Err(namespaces_unavailable(format!(
                "creating the sandbox's network namespace failed: {source}"
            )));
        }
        if code == stage::EXEC {
            return Err(JailError::Exec {
                program: cmd.program.display().to_string(),
                source,
            });
        }
        if code >= stage::STEP_BASE
            && let Some(step) = plan.steps.get((code - stage::STEP_BASE) as usize)
        {
            let path = step.path().to_string_lossy();
            let path = path.strip_prefix("/newroot").unwrap_or(&path);
            return Err(JailError::Setup {
                stage: step.name(),
                detail: format!(" of {path}"),
                source,
            });
        }
        Err(JailError::Setup {
            stage: stage::name(code),
            detail: String::new(),
            source,
        })
    }

    /// The sandbox's init process as seen from the host.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Starts the run's clock now: the wall-clock timeout and the `execute` timing count from
    /// here, and setup and boot count as zero. For a sandbox pre-started in a pool, whose run
    /// begins only when its code arrives.
    pub fn start_clock(&mut self) {
        let now = Instant::now();
        self.started = now;
        self.released = now;
        self.execed = now;
    }

    /// Sets the sandbox's RLIMIT_CPU to the CPU time it has used so far (rounded up) plus
    /// `seconds`: for a sandbox that did work of its own (a preload) before its run, under a
    /// larger limit, so that the run's limit counts from here. Set from outside, because what
    /// ran inside may be hostile; and refused (the sandbox must not serve) if the init is not
    /// alone, since a process forked before now would keep the larger limit.
    pub fn restart_cpu_limit(&self, seconds: u64) -> Result<()> {
        let what = |e: io::Error| {
            JailError::host(
                format!("restarting the CPU limit of sandbox {}", self.pid),
                e,
            )
        };
        let alone = || {
            what(io::Error::other(
                "its program has ended, or started another process, which would keep the larger \
                 limit",
            ))
        };
        let program = self.program_pid().ok_or_else(alone)?;
        // The program is the init's child, not ours: its pid is free once the init reaps it.
        // Held by a pidfd, and checked to be the init's child after, the number is the
        // program's from the check on; one still open after the limit is set was never another
        // process's meanwhile. (An exit between the check and the limit could still hand the
        // limit to a process that took the pid in those microseconds: the error then says so.)
        let pidfd = sys::pidfd_open(program).map_err(|e| what(io::Error::from_raw_os_error(e)))?;
        // SAFETY: pidfd_open returned a new descriptor that we now own.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        if self.program_pid() != Some(program) {
            return Err(alone());
        }
        // RLIMIT_CPU counts the process's own time only.
        let (own, _) = cpu_ticks_of(program).map_err(what)?;
        let used = own.div_ceil(sys::clock_ticks());
        sys::prlimit_cpu(program, used + seconds)
            .map_err(|e| what(io::Error::from_raw_os_error(e)))?;
        // Checked after: a process started before the new limit would keep the old one.
        if has_children(program) || self.program_pid() != Some(program) || exited(&pidfd) {
            return Err(alone());
        }
        Ok(())
    }

    /// The program's process on the host: the sandbox init's one child (the init itself in a
    /// sandbox without one, a zygote's). `None` once it has ended, or while the init has
    /// another child too (an orphan the program left).
    pub fn program_pid(&self) -> Option<i32> {
        if self.report.is_none() {
            return Some(self.pid);
        }
        // The init is single-threaded: its one task's children are all of them.
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.pid)).ok()?;
        let mut pids = children.split_whitespace().map(str::parse::<i32>);
        match (pids.next(), pids.next()) {
            (Some(Ok(pid)), None) => Some(pid),
            _ => None,
        }
    }

    /// Counts the CPU time used so far as not the run's: the outcome's `usage.cpu` starts
    /// from here. For a sandbox pre-started in a pool, whose interpreter start and preload
    /// happened before its run existed (CPU it uses idling in the pool still counts).
    pub fn exclude_cpu_so_far(&mut self) {
        let of = |pid| cpu_ticks_of(pid).map_or(0, |(own, reaped)| own + reaped);
        // The init reaps the program: its rusage will count the program's time too.
        let mut ticks = of(self.pid);
        if let Some(program) = self.program_pid().filter(|&p| p != self.pid) {
            ticks += of(program);
        }
        self.cpu_before = CpuBefore {
            cgroup: self
                .cgroup
                .as_ref()
                .and_then(|cg| cg.usage().cpu_ns)
                .map(std::time::Duration::from_nanos),
            // What the init's rusage will count: its own time and its reaped children's.
            rusage: ticks_to_time(ticks),
        };
    }

    /// How the sandbox's init ended ("exit status N", "killed by signal N"), reaping it; `None`
    /// while it runs (waits up to `grace` for it to end).
    pub(crate) fn reap_within(&mut self, grace: std::time::Duration) -> Option<String> {
        let deadline = Instant::now() + grace;
        loop {
            if let Ok(Some((status, _))) = sys::wait4(self.pid, true) {
                self.reaped = true;
                return Some(if libc::WIFEXITED(status) {
                    format!("exit status {}", libc::WEXITSTATUS(status))
                } else {
                    format!("killed by signal {}", libc::WTERMSIG(status))
                });
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Whether the sandbox's init has already exited (it has not been reaped yet).
    pub fn has_exited(&self) -> bool {
        matches!(sys::readable_now(self.pidfd.as_raw_fd()), Ok(true))
    }

    /// Reads the sandbox's cgroup usage from another thread; `None` without a cgroup.
    pub fn meter(&self) -> Option<crate::cgroup::Meter> {
        self.cgroup.as_ref().map(Cgroup::meter)
    }

    /// A handle that kills this sandbox from any thread (cancellation), even while another
    /// thread waits on it. Killing a sandbox that already ended does nothing.
    pub fn killer(&self) -> Killer {
        Killer {
            target: KillTarget::Pidfd(std::sync::Arc::clone(&self.pidfd)),
            asked: std::sync::Arc::clone(&self.killed),
        }
    }

    /// Kills every process of the sandbox now.
    pub fn kill(&self) {
        let _ = sys::pidfd_send_signal(self.pidfd.as_raw_fd(), libc::SIGKILL);
        if let Some(cg) = &self.cgroup
            && !cg.kill()
        {
            for pid in cg.pids() {
                let _ = sys::kill(pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            let _ = sys::wait4(self.pid, false);
        }
        if let Some(cg) = self.cgroup.take()
            && let Err(e) = cg.destroy()
        {
            tracing::warn!("removing the sandbox cgroup: {e}");
        }
    }
}

/// Kills one sandbox: SIGKILL to its init, whose pid namespace takes every other process with
/// it; for a zygote's child, every process of its cgroup.
#[derive(Clone, Debug)]
pub struct Killer {
    target: KillTarget,
    /// Tells the run's supervisor that its init was killed on purpose, not from outside.
    asked: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Clone, Debug)]
enum KillTarget {
    Pidfd(std::sync::Arc<OwnedFd>),
    /// Weak: a killer kept after its run must not keep the run's cgroup alive.
    Cgroup(std::sync::Weak<Cgroup>),
}

impl Killer {
    pub(crate) fn of_cgroup(
        cg: Option<&std::sync::Arc<Cgroup>>,
        asked: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Killer {
        Killer {
            target: KillTarget::Cgroup(
                cg.map_or_else(std::sync::Weak::new, std::sync::Arc::downgrade),
            ),
            asked: std::sync::Arc::clone(asked),
        }
    }

    /// Whether the sandbox's init has not been reaped yet (a zombie counts): while it has not,
    /// its pid is its own, so what `/proc/<pid>` said was about it.
    pub fn not_reaped(&self) -> bool {
        match &self.target {
            KillTarget::Pidfd(fd) => sys::pidfd_send_signal(fd.as_raw_fd(), 0).is_ok(),
            KillTarget::Cgroup(cg) => cg.strong_count() > 0,
        }
    }

    pub fn kill(&self) {
        self.asked.store(true, std::sync::atomic::Ordering::SeqCst);
        match &self.target {
            // The pidfd names exactly that process, so a reused pid is never hit.
            KillTarget::Pidfd(fd) => {
                let _ = sys::pidfd_send_signal(fd.as_raw_fd(), libc::SIGKILL);
            }
            KillTarget::Cgroup(cg) => {
                if let Some(cg) = cg.upgrade() {
                    crate::zygote::kill_cgroup(&cg);
                }
            }
        }
    }
}

struct IdMaps {
    setgroups: Option<&'static str>,
    uid_map: String,
    gid_map: String,
}

/// The namespaces layer cannot be set up: a limit or a policy of the host's.
fn namespaces_unavailable(why: String) -> JailError {
    JailError::Unavailable {
        layer: "namespaces",
        why,
        fix: "enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, \
              user.max_user_namespaces > 0, and on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0), \
              and allow network namespaces (user.max_net_namespaces > 0); run `airlock doctor`"
            .into(),
    }
}

fn identity_maps(id: &HostIdentity) -> IdMaps {
    IdMaps {
        // An unprivileged writer may map only its own ids, and only after giving up setgroups.
        setgroups: if id.privileged { None } else { Some("deny") },
        uid_map: format!("{SANDBOX_UID} {} 1\n", id.uid),
        gid_map: format!("{SANDBOX_GID} {} 1\n", id.gid),
    }
}

/// Whether the process `pidfd` refers to has exited (its pidfd is readable).
fn exited(pidfd: &OwnedFd) -> bool {
    !matches!(sys::readable_now(pidfd.as_raw_fd()), Ok(false))
}

/// Whether any thread of the host process `pid` has a child (live or not yet reaped); true when
/// that cannot be read.
fn has_children(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("children")).map_or(true, |c| !c.trim().is_empty())
    })
}

/// A process's user and system CPU time so far, and that of its reaped children, in clock
/// ticks, as the kernel counts them in `/proc/<pid>/stat`.
fn cpu_ticks_of(pid: i32) -> io::Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesized name: state is field 3, utime 14 and stime 15, the
    // reaped children's cutime 16 and cstime 17.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok());
    match (ticks(14), ticks(15), ticks(16), ticks(17)) {
        (Some(u), Some(s), Some(cu), Some(cs)) => Ok((u + s, cu + cs)),
        _ => Err(io::Error::other(format!("unreadable stat {stat:?}"))),
    }
}

/// CPU time counted in clock ticks, as a duration.
fn ticks_to_time(ticks: u64) -> std::time::Duration {
    std::time::Duration::from_nanos(ticks * 1_000_000_000 / sys::clock_ticks())
}

/// What the kernel counts for the host process `pid` so far: its CPU time and that of its
/// reaped children, and its peak resident memory (`VmHWM`). For a long-lived sandbox's init
/// (a session), read from outside, so that the code inside cannot misreport it.
pub fn process_usage(pid: i32) -> io::Result<crate::Usage> {
    let (own, reaped) = cpu_ticks_of(pid)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    Ok(crate::Usage {
        cpu: ticks_to_time(own + reaped),
        memory_peak_bytes: hwm_kib * 1024,
    })
}

/// Sends `data` (not empty) with the descriptors `fds` in one message over the UNIX socket
/// `sock` (SCM_RIGHTS): how a long-lived sandbox is given fresh pipes for each of its calls.
/// Returns how many bytes went: on a stream socket, perhaps fewer than `data` (the
/// descriptors travel with the first), the rest being the caller's to send.
pub fn send_with_fds(
    sock: std::os::fd::BorrowedFd<'_>,
    data: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> io::Result<usize> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    sys::send_fds(sock.as_raw_fd(), data, &raw).map_err(io::Error::from_raw_os_error)
}

/// Descriptors one SCM_RIGHTS message may carry (the kernel's `SCM_MAX_FD`).
const SCM_MAX_FD: u64 = 253;

/// Whether a send failed because the sender's user has too many descriptors in flight
/// (`ETOOMANYREFS`; see [`prepare_descriptor_passing`]): nothing of the message went.
pub fn too_many_in_flight(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ETOOMANYREFS)
}

/// Makes this process's descriptor passing (a zygote's runs, a session's calls, a sandbox's
/// listener handed back at setup) harder for sandboxes of at most `most_open_files` to stop;
/// call once before the first. The kernel refuses to send a descriptor while the sender's
/// user has more in flight (sent, not yet received) than the sender's soft RLIMIT_NOFILE,
/// unless it holds CAP_SYS_RESOURCE or CAP_SYS_ADMIN. Sandboxes that share a host user (every
/// one, run as an ordinary user; installers, as root) can park descriptors in a socket they
/// never read: one sender at a time, about their own limit plus 253 per concurrent sender,
/// which with the usual soft limit of 1024 stops every other sandbox's descriptors. So the
/// soft limit is raised above that bound (not further: it is process-wide, and programs this
/// process starts inherit it). It is not a guarantee: the kernel counts a message only after
/// copying its data, which may sleep on a page fault, so many threads sending at once all
/// pass the check, and there is no limit an ordinary user could raise to that stays above
/// them (docs/security.md, "Descriptors in flight"). `Err` says when the hard limit does not
/// allow even the bound. The allowance is the host user's, shared with everything else that
/// user runs; running as root (each sandbox its own uid) or as a dedicated user keeps
/// sandboxes from spending another's.
pub fn prepare_descriptor_passing(most_open_files: u64) -> io::Result<()> {
    // The kernel checks before it counts, so each concurrent sender gets one more message in.
    let senders = crate::probe::cores() as u64 + 1;
    let bound = most_open_files + SCM_MAX_FD * senders;
    // Room above the bound for this process's own descriptors in flight.
    let soft = sys::raise_nofile_soft(bound + 1024).map_err(io::Error::from_raw_os_error)?;
    if soft <= bound {
        return Err(io::Error::other(format!(
            "this process may open {soft} files at most (RLIMIT_NOFILE): sandboxes that park \
             descriptors in flight can then stop descriptors from reaching other sandboxes \
             (their runs and session calls fail); raise the hard limit above {bound} \
             (`ulimit -Hn`, or LimitNOFILE= for a service)"
        )));
    }
    Ok(())
}

/// A fresh name for a run's cgroup, `run-<supervisor pid>-<counter>` (what `cleanup_stale`
/// recognizes).
pub(crate) fn run_cgroup_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "run-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn create_cgroup(l: &Limits, mode: CgroupMode) -> Result<Option<Cgroup>> {
    let name = run_cgroup_name();
    let limits = CgroupLimits {
        memory_bytes: l.memory_bytes,
        // The sandbox's init is one of them: the program may still start `pids`.
        pids: l.pids + 1,
        cpu_millis: l.cpu_millis,
    };
    match Cgroup::create(&name, &limits) {
        Ok(cg) => Ok(Some(cg)),
        Err(e @ JailError::Unavailable { .. }) if mode == CgroupMode::BestEffort => {
            tracing::warn!("running without cgroup limits (weak-limits opt-in): {e}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = sys::pipe()
        .map_err(|e| JailError::host("creating a pipe", io::Error::from_raw_os_error(e)))?;
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(r), OwnedFd::from_raw_fd(w)) };
    Ok((above_passed(r)?, above_passed(w)?))
}

pub(crate) fn socketpair() -> Result<(OwnedFd, OwnedFd)> {
    let (a, b) = sys::socketpair()
        .map_err(|e| JailError::host("creating a socket pair", io::Error::from_raw_os_error(e)))?;
    // SAFETY: socketpair returned two fresh descriptors that nothing else owns.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(a), OwnedFd::from_raw_fd(b)) };
    Ok((above_passed(a)?, above_passed(b)?))
}

/// Descriptors the child places at 3, 4, … for the program (`Command::pass_fd`); every other
/// descriptor of the plan lives at or above this, so placing stdio and passed descriptors
/// cannot clobber it (a supervisor started with closed stdio hands out low numbers).
pub(crate) const MAX_PASSED_FDS: usize = 7;
const PLAN_FD_MIN: RawFd = 3 + MAX_PASSED_FDS as RawFd;

fn above_passed(fd: OwnedFd) -> Result<OwnedFd> {
    if fd.as_raw_fd() >= PLAN_FD_MIN {
        return Ok(fd);
    }
    let moved = sys::dup_at_least(fd.as_raw_fd(), PLAN_FD_MIN).map_err(|e| {
        JailError::host(
            "moving a descriptor above stdio",
            io::Error::from_raw_os_error(e),
        )
    })?;
    // SAFETY: dup_at_least returned a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

fn cstr(bytes: impl AsRef<[u8]>, what: &str) -> Result<CString> {
    CString::new(bytes.as_ref().to_vec()).map_err(|_| JailError::Policy {
        field: what.into(),
        why: "contains a NUL byte".into(),
    })
}

fn in_newroot(p: &Path) -> Result<CString> {
    let mut v = NEWROOT.to_bytes().to_vec();
    v.extend_from_slice(p.as_os_str().as_bytes());
    cstr(v, "path")
}

/// Ordered construction of the steps, creating parent directories once.
struct Steps {
    steps: Vec<Step>,
    /// Whether the supervisor may clone mount trees itself (it is root).
    privileged: bool,
    made: BTreeSet<PathBuf>,
    mounted: Vec<PathBuf>,
}

impl Steps {
    fn parents(&mut self, target: &Path) -> Result<()> {
        let mut ancestors: Vec<&Path> = target
            .ancestors()
            .skip(1)
            .filter(|a| *a != Path::new("/"))
            .collect();
        ancestors.reverse();
        for a in ancestors {
            // Below a bind, the directory comes from the bound source: never create it there.
            if self.mounted.iter().any(|m| a.starts_with(m)) {
                continue;
            }
            if self.made.insert(a.to_path_buf()) {
                self.steps.push(Step::Mkdir {
                    path: in_newroot(a)?,
                    mode: 0o755,
                });
            }
        }
        Ok(())
    }
    fn dir(&mut self, target: &Path) -> Result<()> {
        self.parents(target)?;
        if self.made.insert(target.to_path_buf()) {
            self.steps.push(Step::Mkdir {
                path: in_newroot(target)?,
                mode: 0o755,
            });
        }
        Ok(())
    }
    fn file(&mut self, target: &Path, contents: Vec<u8>, mode: u32) -> Result<()> {
        self.parents(target)?;
        self.steps.push(Step::File {
            path: in_newroot(target)?,
            contents,
            mode,
        });
        Ok(())
    }
    /// A read-only or writable bind; a host symlink is reproduced as a symlink instead.
    fn bind(&mut self, source: &Path, target: &Path, attrs: u64) -> Result<()> {
        let meta = match std::fs::symlink_metadata(source) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(JailError::host(
                    format!("inspecting {}", source.display()),
                    e,
                ));
            }
        };
        self.parents(target)?;
        if meta.file_type().is_symlink() {
            let dest = std::fs::read_link(source)
                .map_err(|e| JailError::host(format!("reading symlink {}", source.display()), e))?;
            self.steps.push(Step::Symlink {
                target: cstr(dest.as_os_str().as_bytes(), "symlink")?,
                link: in_newroot(target)?,
            });
            return Ok(());
        }
        let source = if self.privileged {
            // Cloned here, by the supervisor: the child is already an unprivileged host uid and
            // could not traverse, say, a private home to an interpreter prefix. Attributes set
            // now, by host root, are locked for the sandbox.
            let path = cstr(source.as_os_str().as_bytes(), "mount source")?;
            let fd = sys::open_tree_clone(&path)
                .and_then(|fd| {
                    // SAFETY: open_tree returned a fresh descriptor we own.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    sys::mount_setattr_fd(fd.as_raw_fd(), attrs).map(|()| fd)
                })
                .map_err(|e| {
                    JailError::host(
                        format!("cloning bind source {}", source.display()),
                        io::Error::from_raw_os_error(e),
                    )
                })?;
            BindSource::Tree(above_passed(fd)?)
        } else {
            let mut v = OLDROOT.to_bytes().to_vec();
            v.extend_from_slice(source.as_os_str().as_bytes());
            BindSource::Path(cstr(v, "mount source")?)
        };
        self.steps.push(Step::Bind {
            source,
            target: in_newroot(target)?,
            attrs,
            file: !meta.is_dir(),
        });
        self.mounted.push(target.to_path_buf());
        Ok(())
    }
    fn tmpfs(&mut self, target: &Path, bytes: u64, mode: u32, flags: libc::c_ulong) -> Result<()> {
        self.parents(target)?;
        self.made.insert(target.to_path_buf());
        self.steps.push(Step::Tmpfs {
            target: in_newroot(target)?,
            options: cstr(format!("size={bytes},mode={mode:o}"), "tmpfs")?,
            flags,
        });
        Ok(())
    }
}

const RO: u64 = sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
const RW: u64 = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// Host files that a synthesized `/etc` borrows, read-only. Never the whole host `/etc`.
const ETC_FROM_HOST: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/ca-certificates.conf",
    "/etc/alternatives",
    "/etc/protocols",
    "/etc/services",
    "/etc/mime.types",
];

const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom"];

/// /proc entries hidden (masked) or made read-only, as container runtimes do.
const PROC_MASK_FILES: &[&str] = &[
    "kcore",
    "keys",
    "timer_list",
    "sched_debug",
    "latency_stats",
    "kallsyms",
    "kmsg",
];
const PROC_MASK_DIRS: &[&str] = &["acpi", "asound", "scsi", "driver"];
const PROC_READ_ONLY: &[&str] = &["sys", "sysrq-trigger", "bus", "fs", "irq"];

/// The Landlock rules of a run under `policy` (None when the kernel has no Landlock): read and
/// execute everywhere, write only where the sandbox is writable.
pub(crate) fn landlock_rules(policy: &Policy) -> Option<LandlockRules> {
    landlock::abi_version().map(|abi| {
        let mut rw: Vec<&Path> = ["/tmp", "/workspace", "/dev/shm"]
            .iter()
            .map(Path::new)
            .collect();
        let devs: Vec<PathBuf> = DEVICES
            .iter()
            .map(|d| PathBuf::from(format!("/dev/{d}")))
            .collect();
        rw.extend(devs.iter().map(PathBuf::as_path));
        rw.extend(
            policy
                .mounts
                .iter()
                .filter(|m| m.writable)
                .map(|m| m.target.as_path()),
        );
        LandlockRules::new(abi, &[Path::new("/")], &rw)
    })
}

/// Where a zygote's sandbox has an unmasked procfs for its children to mount their own from.
pub(crate) const ZYGOTE_PROC: &str = "/airlock/.proc";

/// A fresh /proc at `root`/proc, with the sensitive entries masked or read-only.
pub(crate) fn proc_steps(root: &CStr, null: &'static CStr) -> Result<Vec<Step>> {
    let at = |entry: &str| {
        let mut v = root.to_bytes().to_vec();
        v.extend_from_slice(b"/proc");
        if !entry.is_empty() {
            v.push(b'/');
            v.extend_from_slice(entry.as_bytes());
        }
        cstr(v, "path")
    };
    let mut steps = vec![Step::Proc { target: at("")? }];
    for f in PROC_MASK_FILES {
        steps.push(Step::MaskFile {
            target: at(f)?,
            null,
        });
    }
    for d in PROC_MASK_DIRS {
        steps.push(Step::MaskDir { target: at(d)? });
    }
    for p in PROC_READ_ONLY {
        steps.push(Step::ReadOnly { target: at(p)? });
    }
    Ok(steps)
}

pub(crate) fn build_plan(
    policy: &Policy,
    cmd: &Command,
    id: &HostIdentity,
    has_cgroup: bool,
    profile: Profile,
) -> Result<Plan> {
    let zygote = profile == Profile::Zygote;
    let l = &policy.limits;
    let mut s = Steps {
        steps: Vec::new(),
        privileged: id.privileged,
        made: BTreeSet::new(),
        mounted: Vec::new(),
    };
    let nosuid_nodev = (libc::MS_NOSUID | libc::MS_NODEV) as libc::c_ulong;

    // /etc first: user mounts may add files below it.
    s.dir(Path::new("/etc"))?;
    let h = &policy.hostname;
    let passwd =
        format!("{SANDBOX_USER}:x:{SANDBOX_UID}:{SANDBOX_GID}:{SANDBOX_USER}:/workspace:/bin/sh\n");
    s.file(Path::new("/etc/passwd"), passwd.into_bytes(), 0o644)?;
    s.file(
        Path::new("/etc/group"),
        format!("{SANDBOX_USER}:x:{SANDBOX_GID}:\n").into_bytes(),
        0o644,
    )?;
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{h}\n"
    );
    s.file(Path::new("/etc/hosts"), hosts.into_bytes(), 0o644)?;
    s.file(
        Path::new("/etc/hostname"),
        format!("{h}\n").into_bytes(),
        0o644,
    )?;
    let resolv = match policy.network {
        Network::Host => std::fs::read("/etc/resolv.conf").unwrap_or_default(),
        Network::None => b"# no network in this sandbox\n".to_vec(),
    };
    s.file(Path::new("/etc/resolv.conf"), resolv, 0o644)?;
    s.file(
        Path::new("/etc/nsswitch.conf"),
        b"passwd: files\ngroup: files\nhosts: files dns\n".to_vec(),
        0o644,
    )?;
    for etc in ETC_FROM_HOST {
        s.bind(Path::new(etc), Path::new(etc), RO)?;
    }

    let mut mounts: Vec<_> = policy.mounts.iter().collect();
    mounts.sort_by_key(|m| m.target.components().count());
    for m in mounts {
        s.bind(&m.source, &m.target, if m.writable { RW } else { RO })?;
    }
    // Files for the read-only root now; those for /tmp and /workspace once those exist.
    let in_tmpfs =
        |f: &&crate::File| f.target.starts_with("/tmp") || f.target.starts_with("/workspace");
    let mut root_bytes: u64 = 1 << 20;
    for f in policy.files.iter().filter(|f| !in_tmpfs(f)) {
        root_bytes += f.contents.len() as u64 + 4096;
        s.file(&f.target, f.contents.clone(), f.mode)?;
    }

    // /dev: a small tmpfs holding binds of a few harmless host devices.
    // Not nodev: the device binds below need device access (each bind carries its own flags).
    s.tmpfs(
        Path::new("/dev"),
        65536,
        0o755,
        (libc::MS_NOSUID | libc::MS_NOEXEC) as libc::c_ulong,
    )?;
    for d in DEVICES {
        let p = PathBuf::from(format!("/dev/{d}"));
        s.bind(&p, &p, sys::MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)?;
    }
    for (link, dest) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        s.steps.push(Step::Symlink {
            target: cstr(dest, "symlink")?,
            link: in_newroot(&Path::new("/dev").join(link))?,
        });
    }
    s.tmpfs(Path::new("/dev/shm"), l.shm_bytes, 0o1777, nosuid_nodev)?;
    s.steps.push(Step::RemountReadOnly {
        target: in_newroot(Path::new("/dev"))?,
    });

    s.tmpfs(Path::new("/tmp"), l.tmp_bytes, 0o1777, nosuid_nodev)?;
    match &policy.workspace {
        Some(host_dir) => s.bind(host_dir, Path::new("/workspace"), RW)?,
        None => s.tmpfs(
            Path::new("/workspace"),
            l.workspace_bytes,
            0o755,
            nosuid_nodev,
        )?,
    }

    for f in policy.files.iter().filter(in_tmpfs) {
        s.file(&f.target, f.contents.clone(), f.mode)?;
    }

    s.parents(Path::new("/proc"))?;
    s.steps.extend(proc_steps(NEWROOT, c"/newroot/dev/null")?);
    if zygote {
        // The kernel lets a user namespace mount a new procfs only where one is fully
        // visible already (`mount_too_revealing`); /proc has masks over it. Each child of the
        // zygote mounts its own /proc, then covers this one before anything else runs.
        s.parents(Path::new(ZYGOTE_PROC))?;
        s.steps.push(Step::Proc {
            target: in_newroot(Path::new(ZYGOTE_PROC))?,
        });
    }
    // Every sandbox has it, a zygote's too: its children execute it as theirs. Execute-only,
    // so the kernel makes it non-dumpable from its exec on: the program (the same uid) cannot
    // open its /proc/1/mem, nor anything else of it.
    s.file(Path::new("/init"), child::INIT.to_vec(), 0o111)?;
    s.steps.push(Step::RemountReadOnly {
        target: NEWROOT.to_owned(),
    });

    // The zygote lives across many runs; each of its children sets the run's own CPU limit.
    let cpu_seconds = if zygote {
        libc::RLIM_INFINITY
    } else {
        l.cpu_rlimit()
    };
    let mut rlimits = vec![
        (libc::RLIMIT_NOFILE, l.open_files),
        (libc::RLIMIT_FSIZE, l.file_size_bytes),
        (libc::RLIMIT_CORE, 0),
        (libc::RLIMIT_CPU, cpu_seconds),
    ];
    match (l.data_bytes, has_cgroup) {
        (Some(d), _) => rlimits.push((libc::RLIMIT_DATA, d)),
        (None, false) => rlimits.push((libc::RLIMIT_DATA, l.memory_bytes)),
        (None, true) => {}
    }
    if id.unique && !zygote {
        // The host uid is this run's alone, so RLIMIT_NPROC counts exactly its processes.
        rlimits.push((libc::RLIMIT_NPROC, l.pids + 1)); // and the init
    }

    // The zygote's children apply Landlock themselves, after their own mounts (a Landlocked
    // process may not mount).
    let landlock = if zygote { None } else { landlock_rules(policy) };

    let argv: Vec<CString> = std::iter::once(cmd.program.as_os_str())
        .chain(cmd.args.iter().map(OsString::as_os_str))
        .map(|a| cstr(a.as_bytes(), "argv"))
        .collect::<Result<_>>()?;
    let envp: Vec<CString> = policy
        .env
        .iter()
        .map(|(k, v)| cstr(format!("{k}={v}"), "env"))
        .collect::<Result<_>>()?;
    let ptrs = |v: &[CString]| {
        v.iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };

    Ok(Plan {
        argv_ptrs: ptrs(&argv),
        envp_ptrs: ptrs(&envp),
        steps: s.steps,
        root_options: cstr(format!("size={root_bytes},mode=755"), "root")?,
        hostname: policy.hostname.as_bytes().to_vec(),
        own_network: policy.network == Network::None,
        listen_port: policy.loopback_listener.unwrap_or(0),
        clear_groups: id.privileged,
        cap_inotify: profile != Profile::Zygote,
        init: profile != Profile::Zygote,
        init_argv: [child::INIT_PATH.as_ptr(), std::ptr::null()],
        init_envp: [std::ptr::null()],
        rlimits,
        cwd: cstr(policy.cwd.as_os_str().as_bytes(), "cwd")?,
        program: cstr(cmd.program.as_os_str().as_bytes(), "program")?,
        _argv: argv,
        _envp: envp,
        landlock,
        seccomp: seccomp::compiled(profile)?,
        stdio: [-1; 3],
        passed: Vec::new(),
        keep_fds: Vec::new(),
        sync: -1,
        error_write: -1,
    })
}

struct CloneRequest {
    plan: *const Plan,
    args: CloneArgs,
    reply: mpsc::SyncSender<sys::SysResult<libc::pid_t>>,
}

// SAFETY: the plan pointer is only dereferenced by the spawner thread while the requesting
// thread blocks on the reply, so the plan outlives every use; the child gets its own copy.
unsafe impl Send for CloneRequest {}

/// Clones on one long-lived thread: the child's parent-death signal fires when the *thread*
/// that created it exits, and runtime worker threads come and go.
fn clone_on_spawner(plan: &Plan, args: CloneArgs) -> sys::SysResult<libc::pid_t> {
    static SPAWNER: OnceLock<Option<Mutex<mpsc::Sender<CloneRequest>>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<CloneRequest>();
        let started = std::thread::Builder::new()
            .name("airlock-spawner".into())
            .spawn(move || {
                for req in rx {
                    let mut args = req.args;
                    // SAFETY: in the child only `child::run` executes, which is async-signal-safe
                    // and never returns; the plan pointer is valid (see CloneRequest).
                    match unsafe { sys::clone3(&mut args) } {
                        Ok(0) => child::run(unsafe { &*req.plan }),
                        r => {
                            let _ = req.reply.send(r);
                        }
                    }
                }
            });
        started.ok().map(|_| Mutex::new(tx))
    });
    let Some(tx) = tx else {
        return Err(libc::EAGAIN);
    };
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    let req = CloneRequest {
        plan,
        args,
        reply: reply_tx,
    };
    let sent = tx.lock().map(|tx| tx.send(req).is_ok()).unwrap_or(false);
    if !sent {
        return Err(libc::EAGAIN);
    }
    reply_rx.recv().unwrap_or(Err(libc::EAGAIN))
}
