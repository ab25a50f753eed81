//! The zygote's own side, inside its sandbox. This code is compiled into the library the
//! zygote's interpreter loads (`ffi`); the supervisor never calls it.
//!
//! The zygote is a single-threaded interpreter that has imported the run's packages and never
//! runs user code. For each run, [`next`] receives the run's descriptors and [`spawn`] clones
//! a child that shares the zygote's memory (nothing copied): it unshares a user namespace of
//! its own and, in it, fresh mount, pid and uts namespaces, and starts the namespace's pid 1,
//! which joins the run's cgroup, forks the run's process as pid 2 (the one copy of the
//! interpreter) and then executes the sandbox's init (`vfork`). The child tells the zygote the
//! init's pid and exits. The init is re-parented to the zygote (pid 1 of its sandbox), which
//! adopts it: it waits on its pidfd (inside [`next`], between requests) and writes its wait
//! status on the status pipe, after the init's own frame for the run's process. The run's
//! process mounts a fresh /tmp, /workspace, /dev/shm and /proc, enters its own cgroup, ipc
//! (and network) namespaces, sets its limits, places its descriptors, applies Landlock, drops
//! every capability, completes the run filter (see `Profile::ZygoteRun`) and closes the status
//! pipe. Only then does [`spawn`] return, in it alone and with 0, to the interpreter, which
//! reads the code.

use std::os::fd::RawFd;
use std::sync::Mutex;

use super::spec::Spec;
use super::{FORK_REQUEST, vfork, zstage};
use crate::child::{INIT_PATH, Step, run_step, stage};
use crate::landlock::LandlockRules;
use crate::seccomp::{self, Profile, SeccompProgram};
use crate::supervise::report;
use crate::sys;

/// Descriptors of one run, as the supervisor sent them.
struct Pending {
    /// Write end of the status pipe: only the run's init and the zygote keep it.
    status: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    /// The run's control socket (code in, readiness out): descriptor 3 of the run.
    control: RawFd,
    /// The result channel's write end: descriptor 4 of the run, when there is one.
    result: Option<RawFd>,
    /// Open `cgroup.procs` of each directory of the run's cgroup (opened by the supervisor).
    procs: Vec<RawFd>,
    /// The forked child writes the init's pid here for the zygote.
    handoff: (RawFd, RawFd),
}

impl Pending {
    /// Everything but the status pipe, which the zygote keeps until the run ends.
    fn run_fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        [self.stdout, self.stderr, self.control]
            .into_iter()
            .chain(self.result)
            .chain(self.procs.iter().copied())
    }

    fn close_all(self) {
        self.run_fds().for_each(sys::close);
        sys::close(self.handoff.0);
        sys::close(self.handoff.1);
        sys::close(self.status);
    }
}

/// A forked child (it exits once it has told) that has not yet said which process is its
/// run's.
struct Handoff {
    /// Read end of the pipe it tells on.
    pipe: RawFd,
    status: RawFd,
    /// The forked child itself.
    child: libc::pid_t,
}

/// A run's process the zygote waits for.
struct Running {
    pid: libc::pid_t,
    /// Readable once it exits: what wakes the zygote's poll.
    pidfd: RawFd,
    status: RawFd,
    /// Its mount namespace, held so that tearing it down (every mount of the tree) happens
    /// after its status is reported, not in its exit before that.
    mnt: Option<RawFd>,
}

struct State {
    control: RawFd,
    zygote: libc::pid_t,
    spec: Spec,
    mounts: Vec<Step>,
    landlock: Option<LandlockRules>,
    seccomp: &'static SeccompProgram,
    /// What a run's child writes to enter its own user namespace.
    id_maps: [Vec<u8>; 3],
    pending: Option<Pending>,
    /// Forked children not yet reaped (their exits are no run's).
    forked: Vec<libc::pid_t>,
    handoffs: Vec<Handoff>,
    running: Vec<Running>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// The most a spec frame may be.
const SPEC_MAX: usize = 4096;

fn state() -> std::sync::MutexGuard<'static, Option<State>> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads the spec from the control socket `control` and prepares everything a child needs.
/// Returns 0, or an errno.
pub(crate) fn init(control: RawFd) -> i32 {
    match prepare(control) {
        Ok(s) => {
            *state() = Some(s);
            0
        }
        Err(e) => e,
    }
}

fn prepare(control: RawFd) -> Result<State, i32> {
    // One record (SOCK_SEQPACKET): the whole spec in one read.
    let mut bytes = vec![0u8; SPEC_MAX];
    let n = loop {
        match sys::read(control, &mut bytes) {
            Err(libc::EINTR) => continue,
            r => break r?,
        }
    };
    bytes.truncate(n);
    let spec = Spec::decode(&bytes).ok_or(libc::EINVAL)?;
    // Its children rely on it being their pid namespace's init: orphans come back to it, and
    // its death kills them all.
    if sys::getpid() != 1 {
        return Err(libc::ENOTSUP);
    }
    let mut mounts = Vec::new();
    let nosuid_nodev = (libc::MS_NOSUID | libc::MS_NODEV) as libc::c_ulong;
    for (target, bytes, mode) in [
        (c"/tmp", spec.tmp_bytes, 0o1777),
        (c"/workspace", spec.workspace_bytes, 0o755),
        (c"/dev/shm", spec.shm_bytes, 0o1777),
    ] {
        mounts.push(Step::Tmpfs {
            target: target.to_owned(),
            options: std::ffi::CString::new(format!("size={bytes},mode={mode:o}"))
                .map_err(|_| libc::EINVAL)?,
            flags: nosuid_nodev,
        });
    }
    mounts.extend(crate::spawn::proc_steps(c"", c"/dev/null").map_err(|_| libc::EINVAL)?);
    mounts.push(Step::MaskDir {
        target: std::ffi::CString::new(crate::spawn::ZYGOTE_PROC).map_err(|_| libc::EINVAL)?,
    });
    // The same rules as a cold run's: every path of this sandbox is the same, and the zygote's
    // children are refused writable binds (see `Zygote::start`).
    let landlock = crate::spawn::landlock_rules(&crate::Policy::default());
    // Children complete the run filter with a delta over the zygote's own: that one must be
    // there, below.
    if sys::seccomp_mode() != libc::SECCOMP_MODE_FILTER as i32 {
        return Err(libc::EPERM);
    }
    let seccomp = seccomp::compiled(Profile::ZygoteRun).map_err(|_| libc::EINVAL)?;
    Ok(State {
        control,
        zygote: sys::getpid(),
        spec,
        mounts,
        landlock,
        seccomp,
        id_maps: id_maps(),
        pending: None,
        forked: Vec::new(),
        handoffs: Vec::new(),
        running: Vec::new(),
    })
}

/// Waits for the next fork request, reporting the end of every run that ends meanwhile.
/// Returns 1 when a request is pending, 0 when the supervisor closed the control socket (the
/// zygote should exit), or a negative errno.
pub(crate) fn next() -> i32 {
    let mut guard = state();
    let Some(state) = guard.as_mut() else {
        return -libc::EINVAL;
    };
    if let Some(old) = state.pending.take() {
        old.close_all();
    }
    loop {
        let mut polls: Vec<libc::pollfd> = std::iter::once(state.control)
            .chain(state.handoffs.iter().map(|h| h.pipe))
            .chain(state.running.iter().map(|r| r.pidfd))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if let Err(e) = sys::poll(&mut polls, -1) {
            return -e;
        }
        // Handoffs before reaping: a run's process is tracked before its exit is looked for.
        let told = &polls[1..=state.handoffs.len()];
        for i in (0..told.len()).rev() {
            if told[i].revents != 0 {
                let h = state.handoffs.swap_remove(i);
                settle(state, h);
            }
        }
        reap(state);
        if polls[0].revents != 0
            && let Some(r) = receive(state)
        {
            return r;
        }
    }
}

/// In the zygote, when it could not fork for the pending run (`errno`): fails that run alone,
/// saying why on its status pipe, and lets go of its descriptors.
fn refuse(state: &mut State, errno: i32) {
    if let Some(p) = state.pending.take() {
        tell_error(p.status, zstage::FORK, errno);
        p.close_all();
    }
}

/// Reaps what has exited. Known processes by their pids; any other child of the zygote's (a
/// run's process whose forking child died before naming it, killed with the run's cgroup,
/// say: the zygote is its pid namespace's init) only while no handoff is pending, because an
/// unreaped process keeps its pid, and a pending handoff may name it: its pidfd must then be
/// that process's, never a later one's with the same pid.
fn reap(state: &mut State) {
    let exited = |pid| matches!(sys::wait4(pid, true), Ok(Some(_)));
    state.forked.retain(|&c| !exited(c));
    let mut i = 0;
    while i < state.running.len() {
        match sys::wait4(state.running[i].pid, true) {
            Ok(Some((wstatus, _))) => report_end(state.running.swap_remove(i), wstatus),
            // Not exited, or not yet ours (still its forking child's).
            _ => i += 1,
        }
    }
    if state.handoffs.is_empty() {
        while let Some((pid, wstatus)) = sys::reap_any() {
            if let Some(i) = state.running.iter().position(|r| r.pid == pid) {
                report_end(state.running.swap_remove(i), wstatus);
            }
            state.forked.retain(|&c| c != pid);
        }
    }
}

/// Writes the run's init's wait status for the supervisor (after the init's own frame for the
/// program, unless the init died first) and lets go of the run.
fn report_end(run: Running, wstatus: i32) {
    let _ = sys::write_all(run.status, &report::encode(report::INIT, wstatus, 0));
    sys::close(run.pidfd);
    sys::close(run.status);
    run.mnt.into_iter().for_each(sys::close);
}

/// Receives one fork request (the control socket is readable): `Some(1)` when it is pending,
/// `Some(0)` when the supervisor is gone, `Some(-errno)` when the socket failed. `None` when
/// this one request could not be taken (its descriptors did not all fit, say): that run is
/// failed, saying why when it can, and the zygote goes on serving the others.
fn receive(state: &mut State) -> Option<i32> {
    let mut header = [0u8; 3];
    let mut fds = [-1; sys::MAX_FDS_PER_MESSAGE];
    let (n, got) = match sys::recv_fds(state.control, &mut header, &mut fds) {
        Ok(r) => r,
        Err(libc::EINTR) => return None,
        Err(e) => return Some(-e),
    };
    if n == 0 {
        return Some(0);
    }
    let fds = &fds[..got];
    let procs = header[1] as usize;
    let has_result = header[2] == 1;
    let expected = 4 + usize::from(has_result) + procs;
    let fail = |errno: i32| {
        // The first descriptor of a request is its status pipe; with none at all, the
        // supervisor reads end of file there once the kernel drops what did not fit.
        if let Some(&status) = fds.first() {
            tell_error(status, zstage::RECEIVE, errno);
        }
        fds.iter().copied().for_each(sys::close);
        None
    };
    if n != 3 || header[0] != FORK_REQUEST || header[2] > 1 || procs == 0 {
        fds.iter().copied().for_each(sys::close);
        return Some(-libc::EPROTO);
    }
    if got != expected {
        // The kernel installs what fits in this process's descriptor table and drops the rest.
        return fail(libc::EMFILE);
    }
    let handoff = match sys::pipe() {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let rest = &fds[4..];
    let (result, procs) = match has_result {
        true => (Some(rest[0]), rest[1..].to_vec()),
        false => (None, rest.to_vec()),
    };
    state.pending = Some(Pending {
        status: fds[0],
        stdout: fds[1],
        stderr: fds[2],
        control: fds[3],
        result,
        procs,
        handoff,
    });
    Some(1)
}

/// In the zygote, once `child` has started the pending run: closes its copies of the run's
/// descriptors and, without waiting, expects the child's word on the run's process (in
/// [`next`], which then waits for the run).
fn adopt(state: &mut State, child: libc::pid_t) {
    let Some(p) = state.pending.take() else {
        return;
    };
    p.run_fds().for_each(sys::close);
    sys::close(p.handoff.1);
    state.forked.push(child);
    state.handoffs.push(Handoff {
        pipe: p.handoff.0,
        status: p.status,
        child,
    });
}

/// A handoff's pipe is readable: the init's pid, or end of file if its child failed before
/// starting it (it reported why on the status pipe itself).
fn settle(state: &mut State, h: Handoff) {
    let mut pid = [0u8; 4];
    let told = matches!(sys::read_full(h.pipe, &mut pid), Ok(4));
    sys::close(h.pipe);
    // It exits as soon as it has told (or failed): reaped now, so that its zombie does not
    // hold a pid of the zygote's (it never joins the run's cgroup; the init does).
    let _ = sys::wait4(h.child, false);
    state.forked.retain(|&c| c != h.child);
    if !told {
        sys::close(h.status);
        return;
    }
    let pid = i32::from_ne_bytes(pid);
    // Not reaped yet (see `reap`): the pid is still this run's process, alive or not.
    match sys::pidfd_open(pid) {
        Ok(pidfd) => state.running.push(Running {
            pid,
            pidfd,
            status: h.status,
            // Its network namespace is the run's process's own (`isolate`), held past that
            // process's exit by its memory's holder (`vfork::exit_leaving_memory`).
            mnt: std::ffi::CString::new(format!("/proc/{pid}/ns/mnt"))
                .ok()
                .and_then(|path| sys::open(&path, libc::O_RDONLY | libc::O_CLOEXEC, 0).ok()),
        }),
        Err(e) => {
            // Unwatched, it must not run: kill it (`next` reaps it) and say why.
            let _ = sys::kill(pid, libc::SIGKILL);
            tell_error(h.status, zstage::REAP, e);
            sys::close(h.status);
        }
    }
}

/// In the zygote, for the pending run: starts it, copying the interpreter once. Returns the
/// pid of the child that started it (it has exited by then) here, 0 in the run's process,
/// fully isolated, and -errno when there is no pending run or no child could be cloned (that
/// run is failed; the zygote goes on).
///
/// The child is a vfork-style clone that shares this memory (nothing is copied): it enters
/// the run's own user namespace and unshares the rest, and there pid 1 forks the run's process
/// (`vfork::start_init_and_fork`), the one copy. The run's process leaves this function as
/// from a fork. A fork of the interpreter here, and a second one for the run's process, would
/// copy (and each exit tear down) the page tables of all its memory twice.
pub(crate) fn spawn() -> i32 {
    let mut guard = state();
    let Some(state) = guard.as_mut() else {
        return -libc::EINVAL;
    };
    let Some(pending) = state.pending.as_ref() else {
        return -libc::EINVAL;
    };
    let mut entry = Entry {
        state: &raw const *state,
        pending: &raw const *pending,
    };
    let flags = (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as usize;
    // No handler of the interpreter's may run in the child while it shares this memory; the
    // run's process gets the mask back below, and the init resets every disposition.
    let mask = sys::set_signal_mask(u64::MAX);
    // SAFETY: see `sys::clone_calling`. This process is single-threaded and suspended until
    // the child exits; the child (`enter_shared`) only makes system calls and writes its own
    // stack and descriptor table, and never returns but in the run's process (a fork of pid 1,
    // which the child starts on this memory).
    let ret = unsafe {
        sys::clone_calling(
            flags,
            std::ptr::null_mut(),
            enter_shared,
            (&raw mut entry).cast(),
        )
    };
    sys::set_signal_mask(mask);
    if ret != 0 {
        // The child made this memory dumpable again to write its id maps, and may have
        // failed before making it non-dumpable: from its first run on, the zygote is not.
        let _ = sys::prctl(libc::PR_SET_DUMPABLE, 0);
    }
    match ret {
        0 => 0,
        ..0 => {
            refuse(state, -(ret as i32));
            ret as i32
        }
        _ => {
            adopt(state, ret as libc::pid_t);
            ret as i32
        }
    }
}

/// What the child [`spawn`] clones reads, in the zygote's memory (never writes).
struct Entry {
    state: *const State,
    pending: *const Pending,
}

/// The child [`spawn`] clones, on the zygote's stack below its live part.
extern "C" fn enter_shared(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Entry` in `spawn`'s frame, whose state and pending run stay put
    // while the zygote is suspended (vfork); this process only reads them.
    let entry = unsafe { &*arg.cast::<Entry>() };
    // SAFETY: as above.
    let (state, p) = unsafe { (&*entry.state, &*entry.pending) };
    enter(state, p)
}

/// In [`spawn`]'s child, sharing the zygote's memory: isolates the run. Returns 0 only in the
/// run's process, fully isolated; every other path ends this process (after reporting on the
/// status pipe when it can).
fn enter(state: &State, p: &Pending) -> i32 {
    let fail = |status: RawFd, (stage, errno): (u32, i32)| -> ! {
        tell_error(status, stage, errno);
        sys::exit_now(127)
    };
    // Die with the zygote; and if it is already gone, do not start.
    if sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong).is_err()
        || sys::getppid() != state.zygote
    {
        sys::exit_now(127);
    }
    sys::close(state.control);
    for r in &state.running {
        sys::close(r.pidfd);
        sys::close(r.status);
        r.mnt.into_iter().for_each(sys::close);
    }
    for h in &state.handoffs {
        sys::close(h.pipe);
        sys::close(h.status);
    }
    sys::close(p.handoff.0);
    if let Err(e) = own_user_namespace(&state.id_maps) {
        fail(p.status, (zstage::USER_NS, e));
    }
    // This run's own share of the zygote's user's counters (the zygote's namespace has none).
    crate::child::cap_kernel_counters(
        c"/airlock/.proc/sys/user/max_inotify_instances",
        c"/airlock/.proc/sys/user/max_inotify_watches",
    );
    // Only what pid 1 must be born in; the run's process makes the rest itself (`isolate`),
    // after the zygote has gone on.
    let flags = libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS;
    if let Err(e) = sys::unshare(flags) {
        fail(p.status, (zstage::UNSHARE, e));
    }
    // pid 1 shares this memory until it executes the init, with capabilities in the new user
    // namespace and outside the run's Landlock domain: nothing may open its /proc/<pid>/mem
    // meanwhile. The run's process becomes dumpable again for `isolate`, which ends it.
    // Dumpability belongs to the memory, so this leaves the zygote non-dumpable too, which
    // only narrows who may look into it.
    if let Err(e) = sys::prctl(libc::PR_SET_DUMPABLE, 0) {
        fail(p.status, (zstage::USER_NS, e));
    }
    let (argv, envp) = ([INIT_PATH.as_ptr(), std::ptr::null()], [std::ptr::null()]);
    // SAFETY: this process is single-threaded (a clone of the single-threaded zygote, which
    // is suspended until it exits), and the arrays are NULL-terminated.
    match unsafe { vfork::start_init_and_fork(p.status, &p.procs, INIT_PATH, &argv, &envp) } {
        Err(vfork::Failed::Cgroup(e)) => fail(p.status, (zstage::CGROUP_ATTACH, e)),
        Err(vfork::Failed::Fork(e)) => fail(p.status, (zstage::FORK, e)),
        Err(vfork::Failed::Init(e)) => fail(p.status, (stage::INIT, e)),
        Ok(0) => {
            // The run's process, pid 2, the init's child.
            sys::close(p.handoff.1);
            if let Err(e) =
                sys::prctl(libc::PR_SET_DUMPABLE, 1).and_then(|()| vfork::register_rseq())
            {
                fail(p.status, (zstage::FORK, e));
            }
            let mut status = p.status;
            if let Err(e) = isolate(state, p, &mut status) {
                fail(status, e)
            }
            // Only the init (and then the zygote, for the init) reports how the run ended.
            sys::close(status);
            0
        }
        Ok(init) => {
            let _ = sys::write_all(p.handoff.1, &init.to_ne_bytes());
            sys::exit_now(0)
        }
    }
}

/// Says on a run's status pipe that setting it up failed at `stage` with `errno`.
fn tell_error(status: RawFd, stage: u32, errno: i32) {
    let _ = sys::write_all(status, &report::encode(report::ERROR, stage as i32, errno));
}

/// Moves this process into a user namespace of its own, as the same uid and gid (`maps`, the
/// contents of its setgroups, uid_map and gid_map, made at init: this process shares the
/// zygote's memory and may not allocate). The zygote holds no capability: this namespace
/// gives the child the ones it needs for its namespaces and mounts, over nothing but what it
/// creates itself, and locks every mount it inherits (flags and all) against it.
fn own_user_namespace(maps: &[Vec<u8>; 3]) -> sys::SysResult {
    // The kernel lets a process write its own id maps only while its /proc entries are its
    // own, which they are not while it is non-dumpable; `isolate` makes it non-dumpable again.
    sys::prctl(libc::PR_SET_DUMPABLE, 1)?;
    sys::unshare(libc::CLONE_NEWUSER)?;
    let files = [
        c"/proc/self/setgroups",
        c"/proc/self/uid_map",
        c"/proc/self/gid_map",
    ];
    for (file, map) in files.into_iter().zip(maps) {
        let fd = sys::open(file, libc::O_WRONLY, 0)?;
        let written = sys::write_all(fd, map);
        sys::close(fd);
        written?;
    }
    Ok(())
}

/// What [`own_user_namespace`] writes.
fn id_maps() -> [Vec<u8>; 3] {
    let (uid, gid) = (crate::SANDBOX_UID, crate::SANDBOX_GID);
    [
        b"deny".to_vec(),
        format!("{uid} {uid} 1\n").into_bytes(),
        format!("{gid} {gid} 1\n").into_bytes(),
    ]
}

type StageResult = Result<(), (u32, i32)>;

fn at(stage: u32) -> impl Fn(i32) -> (u32, i32) {
    move |e| (stage, e)
}

/// The run's process, pid 2 of its pid namespace: everything a cold run's child does after
/// its root is built, in the same order, ending with the run filter.
///
/// No parent-death signal: its parent is its namespace's init, whose death kills it with the
/// whole namespace.
fn isolate(state: &State, p: &Pending, status: &mut RawFd) -> StageResult {
    sys::setsid().map_err(at(stage::SETSID))?;

    // Descriptors first, so that nothing of the zygote's stays: move ours high, then place
    // them at 0.. and close everything else.
    let null =
        sys::open(c"/dev/null", libc::O_RDWR | libc::O_CLOEXEC, 0).map_err(at(stage::STDIO))?;
    let mut placed = vec![null, p.stdout, p.stderr, p.control];
    placed.extend(p.result);
    let high = |fd| sys::dup_at_least(fd, 64).map_err(at(stage::STDIO));
    let moved: Vec<RawFd> = placed
        .iter()
        .map(|&fd| high(fd))
        .collect::<Result<_, _>>()?;
    *status = high(*status)?;
    for (target, &fd) in moved.iter().enumerate() {
        sys::dup2(fd, target as RawFd).map_err(at(stage::STDIO))?;
    }
    let keep = moved.len() as u32;
    sys::close_range(keep, *status as u32 - 1);
    sys::close_range(*status as u32 + 1, u32::MAX);

    // Mounts inherited from the zygote are locked to this namespace: they can be covered,
    // not removed. The fresh /proc covers the zygote's, and the unmasked procfs it needs to
    // mount one (see `Step::Proc`) is covered last.
    for step in &state.mounts {
        run_step(step).map_err(at(zstage::MOUNTS))?;
    }
    sys::unshare(libc::CLONE_NEWCGROUP).map_err(at(stage::CGROUP_NS))?;
    // Its own ipc and network namespaces, made here rather than before pid 1 (which never
    // uses either): setting up a network namespace is most of a millisecond, and the zygote
    // waits for pid 1's fork of this process, not for this.
    let mut flags = libc::CLONE_NEWIPC;
    if state.spec.own_network {
        flags |= libc::CLONE_NEWNET;
    }
    sys::unshare(flags).map_err(at(zstage::UNSHARE))?;
    if state.spec.own_network {
        sys::loopback_up().map_err(at(stage::LOOPBACK))?;
    }
    sys::setrlimit(libc::RLIMIT_CPU, state.spec.cpu_seconds).map_err(at(stage::RLIMIT))?;
    sys::setrlimit(libc::RLIMIT_NOFILE, state.spec.open_files).map_err(at(stage::RLIMIT))?;
    sys::chdir(c"/workspace").map_err(at(stage::CWD))?;

    sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map_err(at(stage::NO_NEW_PRIVS))?;
    if let Some(rules) = &state.landlock {
        // SAFETY: the rules were prepared at init; apply only makes raw syscalls.
        unsafe { rules.apply() }.map_err(|(_, e)| (stage::LANDLOCK, e))?;
    }
    sys::drop_all_caps().map_err(at(stage::CAPS_DROP))?;
    sys::prctl(libc::PR_SET_DUMPABLE, 0).map_err(at(stage::CAPS_DROP))?;
    // SAFETY: compiled at init; install only makes the seccomp syscall.
    unsafe { state.seccomp.install() }.map_err(at(stage::SECCOMP))?;
    Ok(())
}
