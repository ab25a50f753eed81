//! The seccomp-bpf layer: a deny-list filter, compiled once per process and installed last in
//! the child, right before exec.
//!
//! It is a deny-list (default Allow) because the programs we run are arbitrary interpreters and
//! their native extensions: an allow-list would break them in ways that are hard to diagnose,
//! while the namespaces, dropped capabilities and Landlock already carry the confinement. What
//! this filter removes is kernel attack surface and the few escape hatches that those layers do
//! not close by themselves. Denied calls fail with EPERM rather than killing the process, so a
//! program sees an ordinary error it can report.
//!
//! The filter is built in the supervisor (which may allocate and fail with a [`JailError`]) and
//! installed in the child by one raw `seccomp(2)` call on the already-compiled instructions,
//! because the child is cloned from a multithreaded process and may only do async-signal-safe
//! work.

use crate::error::JailError;
use std::sync::OnceLock;

/// A compiled filter, ready to be installed without allocating.
pub(crate) struct SeccompProgram {
    /// The complete program: our own architecture preamble followed by seccompiler's output.
    insns: Vec<libc::sock_filter>,
}

/// The filter of this process. A `Result` is cached so a build error is not retried (and not
/// reported differently) on every run: it can only come from a bug, not from the host.
static PROGRAM: OnceLock<Result<SeccompProgram, String>> = OnceLock::new();
static ZYGOTE_PROGRAM: OnceLock<Result<SeccompProgram, String>> = OnceLock::new();
static ZYGOTE_RUN_PROGRAM: OnceLock<Result<SeccompProgram, String>> = OnceLock::new();

/// Which filter: every run's, the zygote's, or what a zygote's child adds to the zygote's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Profile {
    /// The filter every program runs under.
    Run,
    /// The zygote's: the same, except that each of its children may make its own user
    /// namespace, the run's namespaces in it and its mounts there (`unshare`, `mount`,
    /// `mount_setattr`); the zygote itself holds no capability to use them with. Its children
    /// install `ZygoteRun` on top before any user code runs.
    Zygote,
    /// A zygote child's, stacked on the `Zygote` filter it inherits: it denies only what that
    /// filter allows beyond `Run`'s. Filters stack (the stricter answer wins), so the two are
    /// exactly `Run`, while the child attaches a program of a dozen instructions rather than a
    /// second copy of the whole one.
    ZygoteRun,
}

/// The filter of `profile`, compiled once; error only if it cannot be built.
pub(crate) fn compiled(profile: Profile) -> Result<&'static SeccompProgram, JailError> {
    let cell = match profile {
        Profile::Run => &PROGRAM,
        Profile::Zygote => &ZYGOTE_PROGRAM,
        Profile::ZygoteRun => &ZYGOTE_RUN_PROGRAM,
    };
    match cell.get_or_init(|| imp::build(profile)) {
        Ok(program) => Ok(program),
        Err(why) => Err(JailError::Unavailable {
            layer: "seccomp",
            why: why.clone(),
            fix: imp::BUILD_FIX.to_owned(),
        }),
    }
}

impl SeccompProgram {
    /// Installs the filter on the calling thread: raw `seccomp(SECCOMP_SET_MODE_FILTER, 0, &fprog)`
    /// syscall (no_new_privs is already set by the caller). Async-signal-safe. Returns Err(errno).
    ///
    /// No `SECCOMP_FILTER_FLAG_TSYNC`: the child is single-threaded, and syncing would only add a
    /// way to fail.
    ///
    /// # Safety
    ///
    /// Irreversibly restricts the calling thread (and everything it execs or forks). Call it only
    /// in the sandboxed child, after `PR_SET_NO_NEW_PRIVS` (the kernel refuses with EACCES
    /// otherwise unless the thread has CAP_SYS_ADMIN), as the last step before exec.
    pub(crate) unsafe fn install(&self) -> Result<(), i32> {
        let fprog = libc::sock_fprog {
            // `build` guarantees at most BPF_MAXINSNS (4096) instructions, which fits in u16.
            len: self.len() as libc::c_ushort,
            // The kernel only reads through this pointer (it copies the program in).
            filter: self.insns.as_ptr().cast_mut(),
        };
        // SAFETY: `fprog` points at `self.insns`, which lives as long as `self` and outlives the
        // call; the kernel copies the program before returning. The arguments are passed as
        // `c_ulong` so the variadic `syscall` sees full-width register values.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
                0 as libc::c_ulong,
                &fprog as *const libc::sock_fprog as libc::c_ulong,
            )
        };
        if rc == 0 { Ok(()) } else { Err(errno()) }
    }

    /// Number of BPF instructions; the kernel's limit is 4096 (`airlock doctor` shows it).
    pub(crate) fn len(&self) -> usize {
        self.insns.len()
    }
}

/// The calling thread's errno, read without anything that could allocate or lock.
fn errno() -> i32 {
    // SAFETY: `__errno_location` always returns a valid pointer to the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod imp {
    use super::{Profile, SeccompProgram};
    use seccompiler::{
        BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op,
        SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
    };
    use std::collections::BTreeMap;

    /// Builds a BPF statement (the C `BPF_STMT` macro) without libc's `unsafe fn`.
    const fn stmt(code: u32, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }

    /// Builds a BPF conditional jump (the C `BPF_JUMP` macro); offsets are relative to the next
    /// instruction.
    const fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        }
    }

    /// Offsets in `struct seccomp_data { int nr; __u32 arch; __u64 ip; __u64 args[6]; }`.
    const DATA_NR: u32 = 0;
    const DATA_ARCH: u32 = 4;

    pub(super) const BUILD_FIX: &str = "this is a bug in airlock; please report it with the \
                                        output of `airlock doctor`";

    /// Not in libc 0.2.191. These come from the unified syscall table (numbers from 424 on are
    /// the same on every architecture), so one value serves x86_64 and aarch64.
    const SYS_LSM_SET_SELF_ATTR: i64 = 460;
    const SYS_OPEN_TREE_ATTR: i64 = 467;

    /// Denied whatever their arguments: debugging other processes, the mount API (it would
    /// let a program reshape the tree that Landlock and the read-only binds describe),
    /// namespaces, the kernel keyring, eBPF, perf, userfaultfd (a classic exploit helper),
    /// io_uring (bypasses seccomp for the operations it performs, and a large attack surface),
    /// and everything that administers the host: modules, kexec, reboot, swap, accounting,
    /// quotas, clocks, file handles (open_by_handle_at escapes bind mounts), syslog, LSM
    /// attributes, fanotify, and reaching into other processes' memory or fds.
    const DENIED: &[i64] = &[
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        SYS_OPEN_TREE_ATTR,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_quotactl_fd,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_lookup_dcookie,
        libc::SYS_nfsservctl,
        libc::SYS_vhangup,
        libc::SYS_syslog,
        libc::SYS_pidfd_getfd,
        libc::SYS_kcmp,
        libc::SYS_fanotify_init,
        libc::SYS_migrate_pages,
        libc::SYS_move_pages,
        SYS_LSM_SET_SELF_ATTR,
    ];

    /// What each of the zygote's children needs to make its own user namespace, the run's
    /// other namespaces and its mounts in them (see [`Profile::Zygote`]).
    const ZYGOTE_ALLOWED: &[i64] = &[libc::SYS_mount, libc::SYS_mount_setattr, libc::SYS_unshare];

    /// Legacy or port-I/O calls that only exist on x86_64.
    #[cfg(target_arch = "x86_64")]
    const DENIED_ARCH: &[i64] = &[
        libc::SYS_iopl,
        libc::SYS_ioperm,
        libc::SYS_uselib,
        libc::SYS_ustat,
        libc::SYS_sysfs,
        libc::SYS__sysctl,
    ];
    #[cfg(not(target_arch = "x86_64"))]
    const DENIED_ARCH: &[i64] = &[];

    #[cfg(target_arch = "x86_64")]
    const TARGET: TargetArch = TargetArch::x86_64;
    #[cfg(target_arch = "aarch64")]
    const TARGET: TargetArch = TargetArch::aarch64;

    /// `AUDIT_ARCH_*` from <linux/audit.h>: `EM_* | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;

    /// `__X32_SYSCALL_BIT`: x32 calls arrive with AUDIT_ARCH_X86_64 and this bit in `nr`.
    #[cfg(target_arch = "x86_64")]
    pub(super) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

    /// Namespace flags a `clone` may not carry. CLONE_NEWTIME (0x80) shares its bit with the
    /// exit-signal byte of legacy clone, where only signals below 65 are valid, so denying it
    /// cannot refuse a legitimate call.
    pub(super) const NAMESPACE_FLAGS: [libc::c_int; 8] = [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWTIME,
    ];

    /// Runs in the supervisor; every failure becomes a message for [`super::program`].
    pub(super) fn build(profile: Profile) -> Result<SeccompProgram, String> {
        // A zygote child's delta has three rules: a search would only make it longer.
        build_with(profile, profile != Profile::ZygoteRun)
    }

    /// The syscall numbers that have a rule in `profile`'s filter.
    #[cfg(test)]
    pub(super) fn ruled(profile: Profile) -> Vec<i64> {
        compile_body(profile).expect("the filter builds").1
    }

    /// [`build`], with or without the [`dispatch`] (the tests compare the two).
    pub(super) fn build_with(profile: Profile, dispatched: bool) -> Result<SeccompProgram, String> {
        let (body, ruled) =
            compile_body(profile).map_err(|e| format!("cannot compile the seccomp filter: {e}"))?;
        let mut insns = preamble();
        if dispatched {
            insns.extend(dispatch(&ruled)?);
        }
        insns.extend(body.iter().map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        }));
        // The kernel refuses longer programs; `install` also relies on this to fit `len` in u16.
        let max = libc::BPF_MAXINSNS as usize;
        if insns.len() > max {
            return Err(format!(
                "the seccomp filter has {} instructions, more than the kernel's {max}",
                insns.len()
            ));
        }
        tracing::debug!(instructions = insns.len(), "seccomp filter compiled");
        Ok(SeccompProgram { insns })
    }

    /// Hand-written checks that run before seccompiler's program, for what a single-action
    /// seccompiler filter cannot express. seccompiler's own program starts by killing on any
    /// audit arch other than the target's (it covers i386 via `int 0x80` on x86_64, and AArch32
    /// on aarch64); we repeat that check first because the x32 test below is only meaningful
    /// once the arch is known. Its jumps are relative, so prepending is safe.
    fn preamble() -> Vec<libc::sock_filter> {
        use libc::{
            BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, SECCOMP_RET_DATA,
            SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS,
        };
        let mut p = vec![
            stmt(BPF_LD | BPF_W | BPF_ABS, DATA_ARCH),
            jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 1, 0),
            stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
            stmt(BPF_LD | BPF_W | BPF_ABS, DATA_NR),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            // x32 shares AUDIT_ARCH_X86_64 but is a separate syscall table, which our numbers
            // do not describe: kill. nr == -1 is exempt, as libseccomp does: it is what a
            // tracer uses to skip a call, and the kernel answers it with ENOSYS anyway.
            p.extend([
                jump(BPF_JMP | libc::BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 2),
                jump(BPF_JMP | BPF_JEQ | BPF_K, u32::MAX, 1, 0),
                stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
            ]);
        }
        // clone3 passes its flags in memory, which a filter cannot read, so namespace flags
        // could not be refused. ENOSYS (not EPERM) makes glibc and others fall back to clone,
        // whose flags we do check; Docker made the same choice.
        p.extend([
            jump(BPF_JMP | BPF_JEQ | BPF_K, libc::SYS_clone3 as u32, 0, 1),
            stmt(
                BPF_RET | BPF_K,
                SECCOMP_RET_ERRNO | (libc::ENOSYS as u32 & SECCOMP_RET_DATA),
            ),
        ]);
        p
    }

    /// A binary search over the syscall numbers that have a rule (`ruled`), run with the
    /// number in A: any other call is allowed here, within a dozen instructions, and only a
    /// ruled one goes on to seccompiler's program, which tests the numbers one after another.
    ///
    /// It answers every call as that program alone does (the tests check it for every number
    /// and every argument value a rule tests). What it saves is the kernel's work when the
    /// filter is attached: to build its cache of calls that are always allowed, the kernel
    /// emulates the filter for every syscall number, and through the linear program that took
    /// about 250 µs of every sandbox's start.
    fn dispatch(ruled: &[i64]) -> Result<Vec<libc::sock_filter>, String> {
        use libc::{BPF_JA, BPF_JGE, BPF_JGT, BPF_JMP, BPF_K, BPF_RET, SECCOMP_RET_ALLOW};
        let mut nrs: Vec<u32> = ruled.iter().map(|&nr| nr as u32).collect();
        nrs.sort_unstable();
        nrs.dedup();
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for nr in nrs {
            match ranges.last_mut() {
                Some((_, hi)) if *hi + 1 == nr => *hi = nr,
                _ => ranges.push((nr, nr)),
            }
        }
        // Each `ja` to the program's start is patched once the search's length is known.
        fn search(
            ranges: &[(u32, u32)],
            out: &mut Vec<libc::sock_filter>,
            to_body: &mut Vec<usize>,
        ) -> Result<(), String> {
            match ranges {
                [] => out.push(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)),
                [(lo, hi)] => {
                    out.push(jump(BPF_JMP | BPF_JGT | BPF_K, *hi, 2, 0));
                    out.push(jump(BPF_JMP | BPF_JGE | BPF_K, *lo, 0, 1));
                    to_body.push(out.len());
                    out.push(stmt(BPF_JMP | BPF_JA, 0));
                    out.push(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
                }
                _ => {
                    let (left, right) = ranges.split_at(ranges.len() / 2);
                    let node = out.len();
                    out.push(jump(BPF_JMP | BPF_JGE | BPF_K, right[0].0, 0, 0));
                    search(left, out, to_body)?;
                    // Past the left half when the number is at least the right half's first.
                    out[node].jt = u8::try_from(out.len() - node - 1).map_err(|_| {
                        format!(
                            "the syscall search's left half ({} ranges) is too long for a jump",
                            left.len()
                        )
                    })?;
                    search(right, out, to_body)?;
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        let mut to_body = Vec::new();
        search(&ranges, &mut out, &mut to_body)?;
        let end = out.len();
        for at in to_body {
            out[at].k = (end - at - 1) as u32;
        }
        Ok(out)
    }

    fn cond(arg: u8, op: Op, value: u64) -> Result<SeccompCondition, BackendError> {
        // Dword: every argument we inspect is an `int`/`unsigned int` in the kernel, which
        // ignores the upper half; comparing it would let garbage there dodge the rule.
        SeccompCondition::new(arg, Len::Dword, op, value)
    }

    /// The seccompiler part: one action for every match (EPERM), Allow otherwise; with the
    /// numbers that have a rule.
    fn compile_body(profile: Profile) -> Result<(BpfProgram, Vec<i64>), BackendError> {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        if profile == Profile::ZygoteRun {
            rules.extend(ZYGOTE_ALLOWED.iter().map(|&nr| (nr, Vec::new())));
            return to_program(rules);
        }
        for &nr in DENIED.iter().chain(DENIED_ARCH) {
            // An empty rule list matches the call whatever its arguments.
            rules.insert(nr, Vec::new());
        }
        if profile == Profile::Zygote {
            for nr in ZYGOTE_ALLOWED {
                rules.remove(nr);
            }
        }

        // personality: only PER_LINUX and the 0xffffffff query. Other personalities change
        // the ABI (READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE, ...) in ways that weaken the process.
        rules.insert(
            libc::SYS_personality,
            vec![SeccompRule::new(vec![
                cond(0, Op::Ne, 0)?,
                cond(0, Op::Ne, 0xffff_ffff)?,
            ])?],
        );

        // socket/socketpair: only UNIX, INET and INET6. Netlink, packet, vsock, alg, ...
        // are large, frequently vulnerable kernel surfaces that interpreters do not need.
        let other_family = || -> Result<Vec<SeccompRule>, BackendError> {
            Ok(vec![SeccompRule::new(vec![
                cond(0, Op::Ne, libc::AF_UNIX as u64)?,
                cond(0, Op::Ne, libc::AF_INET as u64)?,
                cond(0, Op::Ne, libc::AF_INET6 as u64)?,
            ])?])
        };
        rules.insert(libc::SYS_socket, other_family()?);
        rules.insert(libc::SYS_socketpair, other_family()?);

        // clone: seccompiler only has MaskedEq, so one rule (OR) per flag.
        let clone_rules = NAMESPACE_FLAGS
            .iter()
            .map(|&flag| {
                let flag = flag as u64;
                SeccompRule::new(vec![cond(0, Op::MaskedEq(flag), flag)?])
            })
            .collect::<Result<Vec<_>, _>>()?;
        rules.insert(libc::SYS_clone, clone_rules);

        // ioctl: TIOCSTI pushes input into a terminal, TIOCLINUX can read the console. The
        // child has no controlling terminal, but it may have inherited a tty fd.
        rules.insert(
            libc::SYS_ioctl,
            vec![
                SeccompRule::new(vec![cond(1, Op::Eq, libc::TIOCSTI)?])?,
                SeccompRule::new(vec![cond(1, Op::Eq, libc::TIOCLINUX)?])?,
            ],
        );

        to_program(rules)
    }

    fn to_program(
        rules: BTreeMap<i64, Vec<SeccompRule>>,
    ) -> Result<(BpfProgram, Vec<i64>), BackendError> {
        let ruled = rules.keys().copied().collect();
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            TARGET,
        )?;
        Ok((filter.try_into()?, ruled))
    }
}

/// Other architectures: no syscall tables were written for them, so seccomp cannot be set up and
/// the run is refused (fail closed).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod imp {
    use super::{Profile, SeccompProgram};

    pub(super) const BUILD_FIX: &str = "run airlock on x86_64 or aarch64";

    pub(super) fn build(_: Profile) -> Result<SeccompProgram, String> {
        Err(format!(
            "airlock has no seccomp filter for the {} architecture",
            std::env::consts::ARCH
        ))
    }
}

/// A classic-BPF evaluator for the tests: what the kernel would answer for any call.
#[cfg(all(test, target_arch = "x86_64"))]
mod eval;

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn builds_under_the_kernel_limit() {
        let p = compiled(Profile::Run).expect("the filter builds");
        assert!(p.len() > 50, "suspiciously short filter: {}", p.len());
        assert!(p.len() <= 4096, "filter too long: {}", p.len());
        // Compiled once: the same instance every time.
        assert!(std::ptr::eq(p, compiled(Profile::Run).unwrap()));
        eprintln!("seccomp filter: {} instructions", p.len());
    }

    /// Forks, runs `body` in the child under the filter, and returns the raw wait status.
    /// `body` must only make raw syscalls (another test thread may hold the allocator lock at
    /// fork time) and returns the child's exit code.
    fn in_filtered_child(body: fn() -> i32) -> libc::c_int {
        in_child_under(&[Profile::Run], body)
    }

    /// [`in_filtered_child`] under `profiles`, installed in order (stacked).
    fn in_child_under(profiles: &[Profile], body: fn() -> i32) -> libc::c_int {
        let programs: Vec<&SeccompProgram> = profiles
            .iter()
            .map(|&p| compiled(p).expect("the filter builds"))
            .collect();
        // SAFETY: the child only calls async-signal-safe functions (prctl, setrlimit, raw
        // syscalls in `body`, _exit) on memory prepared before the fork.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                // No core file when the filter kills us.
                let zero = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &zero);
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    libc::_exit(100);
                }
                for p in &programs {
                    if p.install().is_err() {
                        libc::_exit(101);
                    }
                }
                libc::_exit(body());
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            status
        }
    }

    /// What a raw syscall returned: Ok(value) or Err(errno).
    fn sys(rc: libc::c_long) -> Result<libc::c_long, i32> {
        if rc < 0 { Err(errno()) } else { Ok(rc) }
    }

    /// The checks of `denies_and_allows`, in order; a failing one is reported by its index.
    const CHECKS: &[&str] = &[
        "unshare(CLONE_NEWUSER) -> EPERM",
        "unshare(CLONE_NEWNS) -> EPERM",
        "setns -> EPERM",
        "socket(AF_NETLINK) -> EPERM",
        "socket(AF_PACKET) -> EPERM",
        "socket(AF_VSOCK) -> EPERM",
        "socketpair(AF_NETLINK) -> EPERM",
        "clone(CLONE_NEWNS) -> EPERM",
        "clone(CLONE_NEWUSER) -> EPERM",
        "clone(CLONE_NEWNET|CLONE_NEWPID) -> EPERM",
        "clone3 -> ENOSYS",
        "ptrace(PTRACE_TRACEME) -> EPERM",
        "io_uring_setup -> EPERM",
        "bpf -> EPERM",
        "keyctl -> EPERM",
        "mount -> EPERM",
        "perf_event_open -> EPERM",
        "personality(PER_BSD) -> EPERM",
        "ioctl(TIOCSTI) -> EPERM",
        "ioctl(TIOCSTI | garbage upper half) -> EPERM",
        "ioctl(TIOCLINUX) -> EPERM",
        "socket(AF_INET) works",
        "socket(AF_INET6) works or EAFNOSUPPORT",
        "socket(AF_UNIX) works",
        "socketpair(AF_UNIX) works",
        "getpid works",
        "personality(0xffffffff) works",
        "personality(PER_LINUX) works",
        "plain clone (fork) works",
        "ioctl(-1, FIONREAD) -> EBADF",
        "landlock_create_ruleset(version) works",
        "syscall(-1) -> ENOSYS, not killed",
    ];

    fn checks_in_child() -> i32 {
        use libc::*;
        let eperm = |rc: c_long| sys(rc) == Err(EPERM);
        let ok = |rc: c_long| match sys(rc) {
            Ok(fd) => {
                // SAFETY: closing an fd this child just got; a non-fd value just fails.
                unsafe { close(fd as c_int) };
                true
            }
            Err(_) => false,
        };
        // A clone that the filter wrongly let through must not run the rest of the test twice.
        let reap = |rc: c_long| {
            if rc == 0 {
                // SAFETY: we are the accidental grandchild; leave at once.
                unsafe { _exit(0) };
            }
            if rc > 0 {
                // SAFETY: waiting for our own child.
                unsafe { waitpid(rc as pid_t, std::ptr::null_mut(), 0) };
            }
            rc
        };
        let mut pair = [0 as c_int; 2];
        let mut uring_params = [0u8; 120];
        // SAFETY: raw syscalls on stack memory; denied ones never reach the kernel proper.
        let results: [bool; 32] = unsafe {
            [
                eperm(syscall(SYS_unshare, CLONE_NEWUSER as c_ulong)),
                eperm(syscall(SYS_unshare, CLONE_NEWNS as c_ulong)),
                eperm(syscall(SYS_setns, 0 as c_ulong, 0 as c_ulong)),
                eperm(syscall(
                    SYS_socket,
                    AF_NETLINK as c_ulong,
                    SOCK_RAW as c_ulong,
                    0 as c_ulong,
                )),
                eperm(syscall(
                    SYS_socket,
                    AF_PACKET as c_ulong,
                    SOCK_RAW as c_ulong,
                    0 as c_ulong,
                )),
                eperm(syscall(
                    SYS_socket,
                    AF_VSOCK as c_ulong,
                    SOCK_STREAM as c_ulong,
                    0 as c_ulong,
                )),
                eperm(syscall(
                    SYS_socketpair,
                    AF_NETLINK as c_ulong,
                    SOCK_RAW as c_ulong,
                    0 as c_ulong,
                    pair.as_mut_ptr() as c_ulong,
                )),
                eperm(reap(syscall(
                    SYS_clone,
                    (CLONE_NEWNS | SIGCHLD) as c_ulong,
                    0,
                    0,
                    0,
                    0,
                ))),
                eperm(reap(syscall(
                    SYS_clone,
                    (CLONE_NEWUSER | SIGCHLD) as c_ulong,
                    0,
                    0,
                    0,
                    0,
                ))),
                eperm(reap(syscall(
                    SYS_clone,
                    (CLONE_NEWNET | CLONE_NEWPID | SIGCHLD) as c_ulong,
                    0,
                    0,
                    0,
                    0,
                ))),
                // A null clone_args would be EFAULT/EINVAL without the filter: never a child.
                sys(syscall(SYS_clone3, 0 as c_ulong, 0 as c_ulong)) == Err(ENOSYS),
                eperm(syscall(SYS_ptrace, PTRACE_TRACEME as c_ulong, 0, 0, 0)),
                eperm(syscall(
                    SYS_io_uring_setup,
                    1 as c_ulong,
                    uring_params.as_mut_ptr() as c_ulong,
                )),
                eperm(syscall(SYS_bpf, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong)),
                eperm(syscall(SYS_keyctl, 0 as c_ulong, 0 as c_ulong)),
                eperm(syscall(
                    SYS_mount,
                    0 as c_ulong,
                    0 as c_ulong,
                    0 as c_ulong,
                    0 as c_ulong,
                    0 as c_ulong,
                )),
                eperm(syscall(
                    SYS_perf_event_open,
                    0 as c_ulong,
                    0,
                    -1 as c_long,
                    -1 as c_long,
                    0,
                )),
                eperm(syscall(SYS_personality, 0x0006 as c_ulong)),
                eperm(syscall(SYS_ioctl, -1 as c_long, TIOCSTI, 0 as c_ulong)),
                eperm(syscall(
                    SYS_ioctl,
                    -1 as c_long,
                    TIOCSTI | (1 << 32),
                    0 as c_ulong,
                )),
                eperm(syscall(SYS_ioctl, -1 as c_long, TIOCLINUX, 0 as c_ulong)),
                ok(syscall(
                    SYS_socket,
                    AF_INET as c_ulong,
                    SOCK_STREAM as c_ulong,
                    0 as c_ulong,
                )),
                {
                    let rc = syscall(
                        SYS_socket,
                        AF_INET6 as c_ulong,
                        SOCK_STREAM as c_ulong,
                        0 as c_ulong,
                    );
                    sys(rc) == Err(EAFNOSUPPORT) || ok(rc)
                },
                ok(syscall(
                    SYS_socket,
                    AF_UNIX as c_ulong,
                    SOCK_STREAM as c_ulong,
                    0 as c_ulong,
                )),
                sys(syscall(
                    SYS_socketpair,
                    AF_UNIX as c_ulong,
                    SOCK_STREAM as c_ulong,
                    0 as c_ulong,
                    pair.as_mut_ptr() as c_ulong,
                )) == Ok(0),
                sys(syscall(SYS_getpid)) == Ok(getpid() as c_long),
                sys(syscall(SYS_personality, 0xffff_ffff as c_ulong)).is_ok(),
                sys(syscall(SYS_personality, 0 as c_ulong)).is_ok(),
                reap(syscall(SYS_clone, SIGCHLD as c_ulong, 0, 0, 0, 0)) > 0,
                sys(syscall(SYS_ioctl, -1 as c_long, FIONREAD, 0 as c_ulong)) == Err(EBADF),
                sys(syscall(
                    SYS_landlock_create_ruleset,
                    0 as c_ulong,
                    0 as c_ulong,
                    1 as c_ulong,
                ))
                .is_ok(),
                sys(syscall(-1 as c_long)) == Err(ENOSYS),
            ]
        };
        match results.iter().position(|ok| !ok) {
            Some(i) => i as i32 + 1,
            None => 0,
        }
    }

    #[test]
    fn denies_and_allows() {
        assert_denies_and_allows(&[Profile::Run]);
    }

    /// A zygote's child gets the run filter as the rest of it over the zygote's: the stack
    /// must answer every check exactly as `Run` alone does.
    #[test]
    fn a_zygote_child_stack_denies_and_allows_as_the_run_filter() {
        assert_denies_and_allows(&[Profile::Zygote, Profile::ZygoteRun]);
        let delta = compiled(Profile::ZygoteRun).unwrap().len();
        assert!(
            delta < 32,
            "the zygote child's filter is not a delta: {delta}"
        );
    }

    /// The zygote's own filter alone lets its children make namespaces and mounts: the delta
    /// is what takes that away (the check above would pass vacuously if the zygote's denied it).
    #[test]
    fn the_zygote_filter_alone_allows_unshare() {
        fn unshare_not_filtered() -> i32 {
            // SAFETY: a raw syscall; unshare(0) changes nothing and succeeds unless filtered.
            let rc = unsafe { libc::syscall(libc::SYS_unshare, 0 as libc::c_ulong) };
            if rc == 0 { 0 } else { 1 }
        }
        let status = in_child_under(&[Profile::Zygote], unshare_not_filtered);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status:#x}"
        );
        let status = in_child_under(&[Profile::Zygote, Profile::ZygoteRun], unshare_not_filtered);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1,
            "{status:#x}"
        );
    }

    fn assert_denies_and_allows(profiles: &[Profile]) {
        assert_eq!(CHECKS.len(), 32);
        let status = in_child_under(profiles, checks_in_child);
        assert!(
            libc::WIFEXITED(status),
            "child did not exit normally: status {status:#x}"
        );
        match libc::WEXITSTATUS(status) {
            0 => {}
            100 => panic!("prctl(PR_SET_NO_NEW_PRIVS) failed in the child"),
            101 => panic!("installing the filter failed in the child"),
            n => panic!(
                "check failed in the filtered child: {}",
                CHECKS[n as usize - 1]
            ),
        }
    }

    #[test]
    fn x32_syscall_kills_with_sigsys() {
        fn x32_getpid() -> i32 {
            // SAFETY: a raw syscall with no arguments.
            unsafe { libc::syscall(libc::SYS_getpid | imp::X32_SYSCALL_BIT as libc::c_long) };
            0
        }
        let status = in_filtered_child(x32_getpid);
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
            "expected death by SIGSYS, got status {status:#x}"
        );
    }

    /// i386 `getpid` through `int 0x80` from a 64-bit process: AUDIT_ARCH_I386, killed by the
    /// arch check. Hosts without IA32 emulation answer `int 0x80` with SIGSEGV before seccomp
    /// runs; that is checked first without the filter, and the test then has nothing to prove.
    #[test]
    fn i386_syscall_kills_with_sigsys() {
        fn i386_getpid() -> i32 {
            let ret: i32;
            // SAFETY: i386 getpid (20) takes no arguments; the compat entry may clobber r8-r11.
            unsafe {
                std::arch::asm!(
                    "int 0x80",
                    inlateout("eax") 20 => ret,
                    lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
                );
            }
            if ret > 0 { 0 } else { 1 }
        }
        // SAFETY: the child only runs the asm above and _exit.
        let unfiltered = unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                let zero = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &zero);
                libc::_exit(i386_getpid());
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            status
        };
        if !(libc::WIFEXITED(unfiltered) && libc::WEXITSTATUS(unfiltered) == 0) {
            eprintln!("no IA32 emulation on this host (status {unfiltered:#x}): nothing to test");
            return;
        }
        let status = in_filtered_child(i386_getpid);
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
            "expected death by SIGSYS, got status {status:#x}"
        );
    }
}
