//! Starting a zygote run's pid namespace with one copy of the interpreter, not two.
//!
//! The run's process must be a fork of the interpreter and the child of the sandbox's init,
//! which is pid 1 of a fresh pid namespace and an executed image of its own. Only pid 1 (or a
//! child of it) can make its children: an orphan is re-parented to the reaper of its *parent's*
//! namespace, so a process forked beside the init by the namespace's creator would end up the
//! zygote's. Forking pid 1 off as the interpreter and forking again from it for the run copies
//! the interpreter's page tables twice. Instead pid 1 starts as a vfork-style clone that shares
//! this process's memory and stack (so nothing is copied), forks the run's process from there
//! (the one copy), and then executes the init, which ends the sharing.
//!
//! From the compiler's point of view [`start_init_and_fork`] returns once in each process: the
//! clone happens inside one `asm!` block, the shared child runs only below this stack's live
//! part and never returns into it, and the run's process, a copy made before that child wrote
//! anything but its own stack, leaves the block as from a fork.

use std::ffi::CStr;
use std::os::fd::RawFd;

use crate::sys;

unsafe extern "C" {
    /// glibc's fork without atfork handlers (2.34), async-signal-safe; unlike a raw `clone`
    /// it keeps the thread descriptor's tid and robust-mutex list right in the child.
    fn _Fork() -> libc::pid_t;
    /// Where glibc keeps each thread's rseq area, from the thread pointer, and its size (0 when
    /// glibc did not register one); both 2.35.
    static __rseq_offset: isize;
    static __rseq_size: u32;
}

/// The signature glibc registers rseq with (the kernel checks it at every abort).
#[cfg(target_arch = "x86_64")]
const RSEQ_SIG: u32 = 0x5305_3053;
#[cfg(target_arch = "aarch64")]
const RSEQ_SIG: u32 = 0xd428_bc00;
/// The smallest length the kernel accepts (the original `struct rseq`).
const RSEQ_MIN_LEN: u32 = 32;

/// Registers this thread's rseq area again, in the run's process. A `CLONE_VM` child starts
/// without one, and the run's process inherits that through `_Fork`, while glibc still takes
/// the area as registered: `sched_getcpu` would read a stale CPU and rseq critical sections
/// would lose their restarts.
pub(crate) fn register_rseq() -> sys::SysResult {
    // SAFETY: plain reads of two glibc variables that are written once, at its start.
    let (offset, size) = unsafe { (__rseq_offset, __rseq_size) };
    if size == 0 {
        return Ok(());
    }
    let area = thread_pointer().wrapping_offset(offset);
    // SAFETY: `area` is this thread's rseq area inside its glibc thread descriptor, which
    // lives as long as the thread; the kernel only writes within the length given.
    let ret = unsafe { libc::syscall(libc::SYS_rseq, area, size.max(RSEQ_MIN_LEN), 0, RSEQ_SIG) };
    match ret {
        0 => Ok(()),
        // Already registered (a kernel that kept it), or a kernel without rseq.
        _ if matches!(sys::errno(), libc::EBUSY | libc::ENOSYS) => Ok(()),
        _ => Err(sys::errno()),
    }
}

fn thread_pointer() -> *mut u8 {
    let tp: *mut u8;
    // SAFETY: reads the thread pointer: glibc's TCB starts with a pointer to itself (x86_64),
    // or the register holds it (aarch64).
    unsafe {
        #[cfg(target_arch = "x86_64")]
        core::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags));
        #[cfg(target_arch = "aarch64")]
        core::arch::asm!("mrs {}, tpidr_el0", out(reg) tp, options(nomem, nostack, preserves_flags));
    }
    tp
}

/// What pid 1 needs, prepared before it is cloned, and what it reports back in this memory.
#[repr(C)]
struct Plan {
    status: RawFd,
    procs: *const RawFd,
    procs_len: usize,
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// Set by pid 1 when it fails: where (one of `AT_*`) and the errno.
    failed_at: u32,
    errno: i32,
}

const AT_CGROUP: u32 = 1;
const AT_FORK: u32 = 2;
const AT_EXEC: u32 = 3;

/// Where it failed; nothing of the namespace is left.
pub(crate) enum Failed {
    /// pid 1 could not join the run's cgroup.
    Cgroup(i32),
    /// No pid 1 or no run's process.
    Fork(i32),
    /// The init could not be executed (the run's process was killed with the namespace).
    Init(i32),
}

/// In a process that has unshared a pid namespace (and is single-threaded): starts pid 1 of
/// it, which joins the run's cgroup (a `"0"` written to each of `procs`, so that only it and
/// the run's process count there, not this one), forks the run's process as pid 2 and
/// executes `path` with `status` at descriptor 0 and nothing else open. Returns pid 1's pid
/// here once it has executed the init, and `Ok(0)` in the run's process. On failure pid 1 has
/// been reaped.
///
/// # Safety
///
/// The calling process must be single-threaded (both new processes copy this thread alone),
/// and `argv` and `envp` NULL-terminated arrays of pointers to C strings.
pub(crate) unsafe fn start_init_and_fork(
    status: RawFd,
    procs: &[RawFd],
    path: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> Result<libc::pid_t, Failed> {
    let mut plan = Plan {
        status,
        procs: procs.as_ptr(),
        procs_len: procs.len(),
        path: path.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        failed_at: 0,
        errno: 0,
    };
    let plan_ptr: *mut Plan = &mut plan;
    let flags = (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as usize;
    // As posix_spawn does: no signal handler of the interpreter may run in pid 1 while it
    // shares this memory; pid 1 resets every disposition before it unblocks them.
    let mask = sys::set_signal_mask(u64::MAX);
    // SAFETY: see the module comment. `clone` without a stack runs the child on this stack,
    // sharing memory, while this thread is suspended until the child executes or exits. The
    // child moves its stack pointer below this frame's red zone before calling `pid_one`,
    // which never returns in it; only the run's process returns from `pid_one` (with 0), and
    // it restores the stack pointer it had at the clone. Every register the block or the call
    // may change is declared clobbered.
    let ret = unsafe { sys::clone_calling(flags, std::ptr::null_mut(), pid_one, plan_ptr.cast()) };
    sys::set_signal_mask(mask);
    if ret == 0 {
        return Ok(0);
    }
    if ret < 0 {
        return Err(Failed::Fork(-(ret as i32)));
    }
    let pid = ret as libc::pid_t;
    // SAFETY: pid 1 has executed or exited (vfork), so nothing writes `plan` any more; the
    // reads are volatile because the writes came from another process's view of this memory.
    let (at, errno) = unsafe {
        (
            std::ptr::read_volatile(&raw const (*plan_ptr).failed_at),
            std::ptr::read_volatile(&raw const (*plan_ptr).errno),
        )
    };
    if at == 0 {
        return Ok(pid);
    }
    let _ = sys::wait4(pid, false);
    Err(match at {
        AT_CGROUP => Failed::Cgroup(errno),
        AT_FORK => Failed::Fork(errno),
        _ => Failed::Init(errno),
    })
}

/// pid 1 of the new namespace, on the shared stack: joins the run's cgroup, forks the run's
/// process (returning 0 in it) and executes the init, or reports in `plan` why not and exits.
/// Only system calls and writes to `plan`: everything else in this memory is the cloning
/// process's.
extern "C" fn pid_one(plan: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `plan` points at the cloning process's live `Plan` (this process shares its
    // memory until it executes the init or exits).
    let p = unsafe { &mut *plan.cast::<Plan>() };
    let fail = |p: &mut Plan, at: u32, errno: i32| -> ! {
        // SAFETY: volatile, since the cloning process reads them after this process is gone.
        unsafe {
            std::ptr::write_volatile(&raw mut p.errno, errno);
            std::ptr::write_volatile(&raw mut p.failed_at, at);
        }
        sys::exit_now(127)
    };
    // SAFETY: the caller's slice, alive in the cloning process's frame.
    let procs = unsafe { std::slice::from_raw_parts(p.procs, p.procs_len) };
    for &fd in procs {
        // "0" is the writer itself; the descriptor was opened by the supervisor, whose
        // credentials the kernel checks.
        if let Err(e) = sys::write_all(fd, b"0") {
            fail(p, AT_CGROUP, e);
        }
    }
    // SAFETY: _Fork is async-signal-safe and touches only the calling thread's descriptor,
    // whose tid it rewrites in the child's copy.
    let pid = unsafe { _Fork() };
    if pid == 0 {
        return 0;
    }
    if pid < 0 {
        fail(p, AT_FORK, sys::errno());
    }
    // The init starts as a cold run's does: every signal at its default, none blocked (the
    // interpreter ignores SIGPIPE and SIGXFSZ), and an empty bounding set.
    sys::reset_signals();
    if let Err(e) = sys::drop_all_caps() {
        fail(p, AT_EXEC, e);
    }
    if p.status != 0
        && let Err(e) = sys::dup2(p.status, 0)
    {
        fail(p, AT_EXEC, e);
    }
    sys::close_range(1, u32::MAX);
    // SAFETY: the caller of `start_init_and_fork` guarantees NULL-terminated arrays.
    unsafe { libc::execve(p.path, p.argv, p.envp) };
    fail(p, AT_EXEC, sys::errno())
}

/// Ends the run's process with `status` now, leaving the teardown of its memory to a process
/// of its own that shares it. A zygote child's exit otherwise spends most of a millisecond
/// unmapping its copy of the interpreter before its init can reap it and report the status,
/// and every warm run waits for that report. The holder gets no descriptor (they are closed
/// first, so its copy of the table is empty and the run's output ends with this exit), runs
/// with every signal blocked, and only waits: when the init has reported the status and exits,
/// the kernel kills it with the rest of the namespace, and its exit does the teardown. Without
/// a holder (a clone refused, as at the run's process limit) the exit is an ordinary one.
pub(crate) fn exit_leaving_memory(status: i32) -> ! {
    const STACK: usize = 16 * 1024;
    sys::close_range(0, u32::MAX);
    sys::set_signal_mask(u64::MAX);
    // SAFETY: a fresh private anonymous mapping, given to the holder alone and never unmapped.
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if stack != libc::MAP_FAILED {
        let top = stack.cast::<u8>().wrapping_add(STACK);
        // No exit signal: nobody waits for the holder; the init that inherits it exits first.
        let flags = libc::CLONE_VM as usize;
        // SAFETY: `hold` only makes system calls, on its own stack, and never returns; every
        // signal is blocked in it (the mask above is inherited).
        unsafe { sys::clone_calling(flags, top, hold, std::ptr::null_mut()) };
    }
    sys::exit_now(status)
}

/// The holder of a finished run's memory: waits to be killed.
extern "C" fn hold(_: *mut libc::c_void) -> libc::c_int {
    loop {
        // SAFETY: pause takes no arguments; with every signal blocked only SIGKILL ends it.
        unsafe { libc::syscall(libc::SYS_pause) };
    }
}
