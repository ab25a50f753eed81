//! The child's side: from `clone3` to `execve`.
//!
//! The child is a copy of one thread of a multithreaded supervisor, so everything here is
//! async-signal-safe: raw syscalls on the [`Plan`] the parent prepared. No allocation, no locks,
//! no formatting. A failure is reported to the parent as `(stage, errno)` on the error pipe.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, RawFd};

use crate::landlock::LandlockRules;
use crate::seccomp::SeccompProgram;
use crate::sys;

/// Where the staging tmpfs goes (only inside the child's private mount namespace).
pub(crate) const STAGE: &CStr = c"/tmp";
pub(crate) const STAGE_NEWROOT: &CStr = c"/tmp/newroot";
pub(crate) const STAGE_OLDROOT: &CStr = c"/tmp/oldroot";
pub(crate) const NEWROOT: &CStr = c"/newroot";
pub(crate) const OLDROOT: &CStr = c"/oldroot";

/// The sandbox's init (`crates/init`), written into every sandbox's root at [`INIT_PATH`].
pub(crate) const INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/airlock-init"));
pub(crate) const INIT_PATH: &CStr = c"/init";

/// One filesystem step of building the new root; paths are already prefixed with
/// `/newroot` (targets) and `/oldroot` (host sources).
#[derive(Debug)]
pub(crate) enum Step {
    Mkdir {
        path: CString,
        mode: u32,
    },
    Tmpfs {
        target: CString,
        options: CString,
        flags: libc::c_ulong,
    },
    /// `attrs` are MOUNT_ATTR_* flags applied recursively after the bind.
    Bind {
        source: BindSource,
        target: CString,
        attrs: u64,
        file: bool,
    },
    File {
        path: CString,
        contents: Vec<u8>,
        mode: u32,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    Proc {
        target: CString,
    },
    /// Hide a /proc file by binding `null` (the sandbox's /dev/null) over it (skipped when
    /// the file is absent).
    MaskFile {
        target: CString,
        null: &'static CStr,
    },
    /// Hide a /proc directory under an empty read-only tmpfs (skipped when absent).
    MaskDir {
        target: CString,
    },
    /// Make a /proc file or directory read-only (skipped when absent).
    ReadOnly {
        target: CString,
    },
    RemountReadOnly {
        target: CString,
    },
}

impl Step {
    /// A path that names the step in an error message.
    pub(crate) fn path(&self) -> &CStr {
        match self {
            Step::Mkdir { path, .. } | Step::File { path, .. } => path,
            Step::Tmpfs { target, .. }
            | Step::Bind { target, .. }
            | Step::Proc { target }
            | Step::MaskFile { target, .. }
            | Step::MaskDir { target }
            | Step::ReadOnly { target }
            | Step::RemountReadOnly { target } => target,
            Step::Symlink { link, .. } => link,
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Step::Mkdir { .. } => "mkdir",
            Step::Tmpfs { .. } => "mount tmpfs",
            Step::Bind { .. } => "bind mount",
            Step::File { .. } => "write file",
            Step::Symlink { .. } => "symlink",
            Step::Proc { .. } => "mount /proc",
            Step::MaskFile { .. } => "mask /proc file",
            Step::MaskDir { .. } => "mask /proc directory",
            Step::ReadOnly { .. } => "make /proc entry read-only",
            Step::RemountReadOnly { .. } => "remount read-only",
        }
    }
}

/// Where a bind comes from.
#[derive(Debug)]
pub(crate) enum BindSource {
    /// A detached mount tree the privileged supervisor cloned (attributes already applied).
    Tree(std::os::fd::OwnedFd),
    /// A host path under `/oldroot`, bound by the child (unprivileged supervisors).
    Path(CString),
}

/// Everything the child needs, prepared by the parent before `clone3`.
pub(crate) struct Plan {
    pub steps: Vec<Step>,
    pub root_options: CString,
    pub hostname: Vec<u8>,
    /// Make a network namespace of our own (in the sandbox's user namespace) holding only
    /// loopback, brought up.
    pub own_network: bool,
    /// Port of the loopback listener handed to the parent (0: none).
    pub listen_port: u16,
    pub clear_groups: bool,
    /// Cap the inotify counters of the sandbox's user namespace (not for a zygote, whose runs
    /// each cap their own).
    pub cap_inotify: bool,
    /// Fork the program off as pid 2 and execute [`INIT_PATH`] as pid 1 (not for a zygote,
    /// which is its namespace's init itself).
    pub init: bool,
    /// `INIT_PATH`'s argv and (empty) environment.
    pub init_argv: [*const libc::c_char; 2],
    pub init_envp: [*const libc::c_char; 1],
    pub rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
    pub cwd: CString,
    pub program: CString,
    /// Owns the strings `argv_ptrs` points into.
    pub _argv: Vec<CString>,
    pub argv_ptrs: Vec<*const libc::c_char>,
    /// Owns the strings `envp_ptrs` points into.
    pub _envp: Vec<CString>,
    pub envp_ptrs: Vec<*const libc::c_char>,
    pub landlock: Option<LandlockRules>,
    pub seccomp: &'static SeccompProgram,
    /// The child's stdio, placed on 0, 1, 2 (each fd >= 3).
    pub stdio: [RawFd; 3],
    /// Descriptors for the program, placed at 3, 4, … (each above the placed range).
    pub passed: Vec<RawFd>,
    /// The only descriptors the child keeps from the clone (sorted); it closes all others.
    pub keep_fds: Vec<RawFd>,
    /// The child's end of the socket the parent releases it through (twice).
    pub sync: RawFd,
    pub error_write: RawFd,
}

/// Stages that are not filesystem steps. Steps are reported as `STEP_BASE + index`.
pub(crate) mod stage {
    pub const WAIT_PARENT: u32 = 1;
    pub const GROUPS: u32 = 2;
    pub const IDS: u32 = 3;
    pub const CAPS_RAISE: u32 = 4;
    pub const SETSID: u32 = 5;
    pub const CGROUP_NS: u32 = 6;
    pub const HOSTNAME: u32 = 7;
    pub const PRIVATE_ROOT: u32 = 8;
    pub const STAGE_TMPFS: u32 = 9;
    pub const PIVOT_STAGE: u32 = 10;
    pub const ROOT_TMPFS: u32 = 11;
    pub const DETACH_OLDROOT: u32 = 12;
    pub const PIVOT_ROOT: u32 = 13;
    pub const CWD: u32 = 14;
    pub const LOOPBACK: u32 = 15;
    pub const RLIMIT: u32 = 16;
    pub const STDIO: u32 = 17;
    pub const CLOSE_FDS: u32 = 18;
    pub const LANDLOCK: u32 = 19;
    pub const CAPS_DROP: u32 = 20;
    pub const NO_NEW_PRIVS: u32 = 21;
    pub const SECCOMP: u32 = 22;
    pub const EXEC: u32 = 23;
    pub const PDEATHSIG: u32 = 24;
    pub const LISTENER: u32 = 25;
    pub const INIT: u32 = 26;
    pub const NET_NS: u32 = 27;
    pub const STEP_BASE: u32 = 1000;

    pub fn name(code: u32) -> &'static str {
        match code {
            WAIT_PARENT => "wait for the supervisor",
            GROUPS => "clear supplementary groups",
            IDS => "switch to the sandbox uid/gid",
            CAPS_RAISE => "raise namespace capabilities",
            SETSID => "new session",
            CGROUP_NS => "cgroup namespace",
            HOSTNAME => "set hostname",
            PRIVATE_ROOT => "make mounts private",
            STAGE_TMPFS => "mount staging tmpfs",
            PIVOT_STAGE => "pivot into staging root",
            ROOT_TMPFS => "mount root tmpfs",
            DETACH_OLDROOT => "detach host root",
            PIVOT_ROOT => "pivot into new root",
            CWD => "enter working directory",
            LOOPBACK => "bring loopback up",
            RLIMIT => "set rlimits",
            STDIO => "set up stdio",
            CLOSE_FDS => "close inherited descriptors",
            LANDLOCK => "Landlock",
            CAPS_DROP => "drop capabilities",
            NO_NEW_PRIVS => "no_new_privs",
            SECCOMP => "install seccomp filter",
            EXEC => "execve",
            PDEATHSIG => "parent death signal",
            LISTENER => "loopback listener",
            INIT => "start the sandbox's init",
            NET_NS => "new network namespace",
            _ => "setup step",
        }
    }
}

type StageResult = Result<(), (u32, i32)>;

fn at(stage: u32) -> impl Fn(i32) -> (u32, i32) {
    move |e| (stage, e)
}

/// Runs in the child; never returns.
pub(crate) fn run(plan: &Plan) -> ! {
    let err = match setup(plan) {
        Ok(()) if plan.init => become_init(plan),
        Ok(()) => exec_program(plan),
        Err(e) => e,
    };
    report_and_exit(plan, err)
}

/// Tells the parent which stage failed, with what errno, and leaves.
fn report_and_exit(plan: &Plan, err: (u32, i32)) -> ! {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&err.0.to_ne_bytes());
    msg[4..].copy_from_slice(&err.1.to_ne_bytes());
    let _ = sys::write_all(plan.error_write, &msg);
    sys::exit_now(127)
}

fn setup(plan: &Plan) -> StageResult {
    // Everything but our own descriptors goes now: the parent's ends of our pipes, and what
    // other supervisor threads had open at the clone (another run's pipes among them, whose
    // EOF must not wait for our exec).
    let mut next = 3;
    for &keep in &plan.keep_fds {
        if keep > next {
            sys::close_range(next as u32, keep as u32 - 1);
        }
        next = next.max(keep + 1);
    }
    sys::close_range(next as u32, u32::MAX);

    if plan.own_network {
        // Made here, not by the clone: the kernel's half millisecond of building a network
        // namespace then overlaps with the parent writing our id maps, instead of preceding
        // it. We are already in our user namespace, with every capability in it, so it is the
        // namespace's owner, as with the clone.
        sys::unshare(libc::CLONE_NEWNET).map_err(at(stage::NET_NS))?;
        sys::loopback_up().map_err(at(stage::LOOPBACK))?;
    }
    // The parent writes our uid/gid maps, then releases us.
    wait_for_parent(plan.sync)?;

    if plan.clear_groups {
        sys::clear_groups().map_err(at(stage::GROUPS))?;
    }
    sys::prctl(libc::PR_SET_KEEPCAPS, 1).map_err(at(stage::IDS))?;
    sys::setresgid(crate::SANDBOX_GID).map_err(at(stage::IDS))?;
    sys::setresuid(crate::SANDBOX_UID).map_err(at(stage::IDS))?;
    sys::raise_all_caps().map_err(at(stage::CAPS_RAISE))?;
    // Only now: changing credentials clears the parent-death signal. If the parent died before
    // this, the second release below reads EOF and we leave.
    sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong)
        .map_err(at(stage::PDEATHSIG))?;

    sys::setsid().map_err(at(stage::SETSID))?;
    sys::sethostname(&plan.hostname).map_err(at(stage::HOSTNAME))?;
    if plan.cap_inotify {
        // The host's /proc, still reachable: its /proc/sys/user is this namespace's.
        cap_kernel_counters(
            c"/proc/sys/user/max_inotify_instances",
            c"/proc/sys/user/max_inotify_watches",
        );
    }

    build_root(plan)?;

    // Meanwhile the parent moved us into our cgroup (on cgroup v1 that costs an RCU grace
    // period, so it overlaps with building the root). Unshared only now, so that cgroup is the
    // namespace's root, and before anything of the program runs.
    wait_for_parent(plan.sync)?;
    sys::unshare(libc::CLONE_NEWCGROUP).map_err(at(stage::CGROUP_NS))?;

    if plan.listen_port != 0 {
        // Sent before the run's rlimits below: the kernel weighs this send against our soft
        // RLIMIT_NOFILE, which is still the supervisor's (see `prepare_descriptor_passing`).
        let fd = sys::listen_loopback(plan.listen_port).map_err(at(stage::LISTENER))?;
        let sent = sys::send_fd(plan.sync, fd);
        sys::close(fd);
        sent.map_err(at(stage::LISTENER))?;
    }
    if !plan.init {
        sys::close(plan.sync);
    }
    for &(res, value) in &plan.rlimits {
        sys::setrlimit(res, value).map_err(at(stage::RLIMIT))?;
    }
    for (target, &fd) in plan.stdio.iter().enumerate() {
        sys::dup2(fd, target as RawFd).map_err(at(stage::STDIO))?;
    }
    for (i, &fd) in plan.passed.iter().enumerate() {
        sys::dup2(fd, 3 + i as RawFd).map_err(at(stage::STDIO))?;
    }
    // Anything a supervisor thread opened without O_CLOEXEC must not reach the program.
    sys::cloexec_from(3 + plan.passed.len() as u32).map_err(at(stage::CLOSE_FDS))?;

    sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map_err(at(stage::NO_NEW_PRIVS))?;
    if let Some(rules) = &plan.landlock {
        // SAFETY: the rules were prepared by the parent; apply only makes raw syscalls.
        unsafe { rules.apply() }.map_err(|(_, e)| (stage::LANDLOCK, e))?;
    }
    // Dispositions the supervisor ignores (Rust ignores SIGPIPE) would survive execve.
    sys::reset_signals();
    sys::drop_all_caps().map_err(at(stage::CAPS_DROP))?;
    sys::prctl(libc::PR_SET_DUMPABLE, 0).map_err(at(stage::CAPS_DROP))?;
    // SAFETY: the program was compiled before the fork; install only makes the seccomp syscall.
    unsafe { plan.seccomp.install() }.map_err(at(stage::SECCOMP))?;
    Ok(())
}

/// Per-user kernel counters are charged up the chain of user namespaces to each one's owner,
/// which for a root supervisor is host root: a sandbox holding every inotify instance (128 by
/// default) would leave none for the host's own services. Capped in the sandbox's own user
/// namespace, one sandbox holds at most [`INOTIFY_INSTANCES`]. Best effort (defense in depth):
/// a host whose /proc/sys is read-only, or a kernel without these files, keeps the host's
/// limits alone.
pub(crate) fn cap_kernel_counters(instances: &CStr, watches: &CStr) {
    let _ = sys::write_existing(instances, INOTIFY_INSTANCES);
    let _ = sys::write_existing(watches, INOTIFY_WATCHES);
}

/// Inotify instances and watches one sandbox may hold (see [`cap_kernel_counters`]).
pub(crate) const INOTIFY_INSTANCES: &[u8] = b"16";
pub(crate) const INOTIFY_WATCHES: &[u8] = b"8192";

fn exec_program(plan: &Plan) -> (u32, i32) {
    (
        stage::EXEC,
        sys::execve(&plan.program, &plan.argv_ptrs, &plan.envp_ptrs),
    )
}

/// Forks the program off as pid 2 and executes the sandbox's init as pid 1, fully confined
/// already (both are past every step of `setup`). The init keeps only the report channel, at
/// descriptor 0, on which it writes the program's wait status; it is an image of its own, so
/// nothing of the supervisor's memory (which this clone still carries) outlives the exec.
///
/// The program starts as a vfork-style child, sharing this memory until its `execve`: a fork
/// would copy the page tables of the whole supervisor this process is a clone of.
fn become_init(plan: &Plan) -> (u32, i32) {
    let flags = (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as usize;
    let arg = plan as *const Plan as *mut libc::c_void;
    // SAFETY: `start_program` only makes system calls on the plan and never returns: it
    // executes the program or exits. Every disposition is the default already (`setup`), so
    // no handler runs in it, and this process is single-threaded.
    let pid = unsafe { sys::clone_calling(flags, std::ptr::null_mut(), start_program, arg) };
    if pid < 0 {
        return (stage::INIT, -(pid as i32));
    }
    if let Err(e) = sys::dup2(plan.sync, 0) {
        return (stage::INIT, e);
    }
    // The program's stdio and descriptors are its own; the error pipe closes on exec.
    let report = plan.error_write as u32;
    sys::close_range(1, report - 1);
    sys::close_range(report + 1, u32::MAX);
    (
        stage::INIT,
        sys::execve(INIT_PATH, &plan.init_argv, &plan.init_envp),
    )
}

/// The program's process, pid 2, on its parent's stack (see [`become_init`]).
extern "C" fn start_program(plan: *mut libc::c_void) -> libc::c_int {
    // SAFETY: the init-to-be's live plan, shared with it until this process executes or exits.
    let plan = unsafe { &*plan.cast::<Plan>() };
    // Its own descriptor table (no CLONE_FILES): this closes only the program's copy.
    sys::close(plan.sync);
    // A session of its own, led by it, as a program started in a terminal would be.
    let err = match sys::setsid() {
        Err(e) => (stage::SETSID, e),
        Ok(()) => exec_program(plan),
    };
    report_and_exit(plan, err)
}

/// Waits for the parent's go-ahead. EOF means it gave up (or died): leave quietly.
fn wait_for_parent(sync: RawFd) -> StageResult {
    let mut go = [0u8; 1];
    match sys::read_full(sync, &mut go) {
        Ok(1) => Ok(()),
        Ok(_) => sys::exit_now(127),
        Err(e) => Err((stage::WAIT_PARENT, e)),
    }
}

/// Builds the new root in a tmpfs and pivots into it, the way bubblewrap does: pivot first into
/// a staging tmpfs so the host root is reachable at `/oldroot` for binds (even of sources under
/// the host's `/tmp`), then pivot into `/newroot` and detach everything else.
fn build_root(plan: &Plan) -> StageResult {
    let rec_private = (libc::MS_REC | libc::MS_PRIVATE) as libc::c_ulong;
    sys::mount(None, c"/", None, rec_private, None).map_err(at(stage::PRIVATE_ROOT))?;
    let nosuid_nodev = (libc::MS_NOSUID | libc::MS_NODEV) as libc::c_ulong;
    sys::mount(
        Some(c"tmpfs"),
        STAGE,
        Some(c"tmpfs"),
        nosuid_nodev,
        Some(c"size=65536,mode=0755"),
    )
    .map_err(at(stage::STAGE_TMPFS))?;
    sys::mkdir(STAGE_NEWROOT, 0o755).map_err(at(stage::STAGE_TMPFS))?;
    sys::mkdir(STAGE_OLDROOT, 0o755).map_err(at(stage::STAGE_TMPFS))?;
    sys::pivot_root(STAGE, STAGE_OLDROOT).map_err(at(stage::PIVOT_STAGE))?;
    sys::chdir(c"/").map_err(at(stage::PIVOT_STAGE))?;
    sys::mount(
        Some(c"tmpfs"),
        NEWROOT,
        Some(c"tmpfs"),
        nosuid_nodev,
        Some(&plan.root_options),
    )
    .map_err(at(stage::ROOT_TMPFS))?;

    for (i, step) in plan.steps.iter().enumerate() {
        run_step(step).map_err(|e| (stage::STEP_BASE + i as u32, e))?;
    }

    // Binds cloned from the host keep its propagation (a systemd host's `/` is shared): cut
    // every mount of the new root off, both ways.
    let rec_private_root = (libc::MS_REC | libc::MS_PRIVATE) as libc::c_ulong;
    sys::mount(None, NEWROOT, None, rec_private_root, None).map_err(at(stage::PRIVATE_ROOT))?;
    sys::chdir(NEWROOT).map_err(at(stage::PIVOT_ROOT))?;
    sys::pivot_root(c".", c".").map_err(at(stage::PIVOT_ROOT))?;
    // The staging root now sits on top of the new one, with the host's tree under its
    // `/oldroot`: one lazy unmount detaches both (one RCU grace period, not two).
    sys::umount2(c".", libc::MNT_DETACH).map_err(at(stage::DETACH_OLDROOT))?;
    sys::chdir(c"/").map_err(at(stage::PIVOT_ROOT))?;
    sys::chdir(&plan.cwd).map_err(at(stage::CWD))?;
    Ok(())
}

pub(crate) fn run_step(step: &Step) -> sys::SysResult {
    use sys::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
    let bind = (libc::MS_BIND | libc::MS_REC) as libc::c_ulong;
    match step {
        Step::Mkdir { path, mode } => sys::mkdir(path, *mode),
        Step::Tmpfs {
            target,
            options,
            flags,
        } => {
            sys::mkdir(target, 0o755)?;
            sys::mount(
                Some(c"tmpfs"),
                target,
                Some(c"tmpfs"),
                *flags,
                Some(options),
            )
        }
        Step::Bind {
            source,
            target,
            attrs,
            file,
        } => {
            if *file {
                sys::write_file(target, b"", 0o644)?;
            } else {
                sys::mkdir(target, 0o755)?;
            }
            match source {
                BindSource::Tree(fd) => sys::move_mount(fd.as_raw_fd(), target),
                // The same as the supervisor does when it is root, from inside: no symlink on
                // the way, a private clone with the attributes, attached.
                BindSource::Path(path) => {
                    let tree = sys::open_tree_clone(path)?;
                    let r = sys::mount_setattr_fd(tree, *attrs)
                        .and_then(|()| sys::move_mount(tree, target));
                    sys::close(tree);
                    r
                }
            }
        }
        Step::File {
            path,
            contents,
            mode,
        } => sys::write_file(path, contents, *mode),
        Step::Symlink { target, link } => sys::symlink(target, link),
        Step::Proc { target } => {
            sys::mkdir(target, 0o555)?;
            let flags = (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC) as libc::c_ulong;
            sys::mount(Some(c"proc"), target, Some(c"proc"), flags, None)
        }
        Step::MaskFile { target, null } => match sys::mount(Some(null), target, None, bind, None) {
            Err(libc::ENOENT) => Ok(()),
            r => r,
        },
        Step::MaskDir { target } => {
            let flags = (libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC)
                as libc::c_ulong;
            match sys::mount(
                Some(c"tmpfs"),
                target,
                Some(c"tmpfs"),
                flags,
                Some(c"size=0,mode=0555"),
            ) {
                Err(libc::ENOENT) => Ok(()),
                r => r,
            }
        }
        Step::ReadOnly { target } => match sys::mount(Some(target), target, None, bind, None) {
            Err(libc::ENOENT) => Ok(()),
            Err(e) => Err(e),
            Ok(()) => sys::mount_setattr_recursive(
                target,
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            ),
        },
        Step::RemountReadOnly { target } => {
            let flags = (libc::MS_REMOUNT
                | libc::MS_BIND
                | libc::MS_RDONLY
                | libc::MS_NOSUID
                | libc::MS_NODEV) as libc::c_ulong;
            sys::mount(None, target, None, flags, None)
        }
    }
}
