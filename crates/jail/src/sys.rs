//! Thin wrappers over the raw syscalls the jail uses. They never allocate, lock or format, so the
//! child may call them between `clone` and `execve` (async-signal-safe). Each returns the errno
//! on failure.

use std::ffi::CStr;
use std::os::fd::RawFd;
use std::ptr;

pub(crate) type SysResult<T = ()> = Result<T, i32>;

/// The calling thread's errno, after a libc call that failed.
pub(crate) fn errno() -> i32 {
    // SAFETY: __errno_location returns a valid pointer to the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

fn check(ret: libc::c_long) -> SysResult<libc::c_long> {
    if ret < 0 { Err(errno()) } else { Ok(ret) }
}

fn check_int(ret: libc::c_int) -> SysResult<libc::c_int> {
    if ret < 0 { Err(errno()) } else { Ok(ret) }
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(ptr::null(), |s| s.as_ptr())
}

pub(crate) fn mount(
    src: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> SysResult {
    // SAFETY: every pointer is either null or a NUL-terminated string that outlives the call.
    let r = unsafe {
        libc::mount(
            opt_ptr(src),
            target.as_ptr(),
            opt_ptr(fstype),
            flags,
            opt_ptr(data).cast(),
        )
    };
    check_int(r).map(drop)
}

pub(crate) fn umount2(target: &CStr, flags: libc::c_int) -> SysResult {
    // SAFETY: target is a valid C string.
    check_int(unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
}

/// `struct mount_attr` of <linux/mount.h>.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;

/// Sets mount attributes on `path` and, unlike `MS_REMOUNT|MS_BIND`, on every mount below it.
pub(crate) fn mount_setattr_recursive(path: &CStr, set: u64) -> SysResult {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: path is a valid C string; attr is a valid mount_attr of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE | libc::AT_NO_AUTOMOUNT,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(r).map(drop)
}

/// Clones the mount tree at `path` into a detached mount (as a bind would) and returns its fd.
/// Done by the supervisor, so paths resolve with its full host permissions.
pub(crate) fn open_tree_clone(path: &CStr) -> SysResult<RawFd> {
    let fd = open_no_symlinks(path)?;
    let tree = open_tree_of(fd);
    close(fd);
    tree
}

/// `struct open_how` of <linux/openat2.h>.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Opens `path` as O_PATH, refusing it if any component is a symlink: a bind source must be
/// exactly the directory that was asked for, never somewhere a planted link points.
pub(crate) fn open_no_symlinks(path: &CStr) -> SysResult<RawFd> {
    const RESOLVE_NO_SYMLINKS: u64 = 0x04;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_NO_SYMLINKS,
    };
    // SAFETY: path is a valid C string; how is a valid open_how of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    check(r).map(|fd| fd as RawFd)
}

/// Clones the mount tree at the opened `fd` into a detached mount and returns its fd.
pub(crate) fn open_tree_of(fd: RawFd) -> SysResult<RawFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let flags = OPEN_TREE_CLONE
        | libc::O_CLOEXEC as libc::c_uint
        | libc::AT_RECURSIVE as libc::c_uint
        | libc::AT_EMPTY_PATH as libc::c_uint;
    // SAFETY: fd is an open descriptor; the empty path names it; the result is ours.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, fd, c"".as_ptr(), flags) };
    check(r).map(|fd| fd as RawFd)
}

/// Applies mount attributes to a detached mount tree and everything below it.
pub(crate) fn mount_setattr_fd(fd: RawFd, set: u64) -> SysResult {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: fd is a mount fd we own; attr is a valid mount_attr of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(r).map(drop)
}

/// Attaches a detached mount tree at `target`.
pub(crate) fn move_mount(fd: RawFd, target: &CStr) -> SysResult {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    // SAFETY: fd is a detached mount fd; target is a valid C string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    check(r).map(drop)
}

pub(crate) fn pivot_root(new_root: &CStr, put_old: &CStr) -> SysResult {
    // SAFETY: both are valid C strings.
    let r = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    check(r).map(drop)
}

pub(crate) fn mkdir(path: &CStr, mode: u32) -> SysResult {
    // SAFETY: path is a valid C string.
    match check_int(unsafe { libc::mkdir(path.as_ptr(), mode) }) {
        Err(libc::EEXIST) => Ok(()),
        r => r.map(drop),
    }
}

pub(crate) fn chdir(path: &CStr) -> SysResult {
    // SAFETY: path is a valid C string.
    check_int(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

pub(crate) fn symlink(target: &CStr, link: &CStr) -> SysResult {
    // SAFETY: both are valid C strings.
    check_int(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }).map(drop)
}

pub(crate) fn open(path: &CStr, flags: libc::c_int, mode: u32) -> SysResult<RawFd> {
    // SAFETY: path is a valid C string; the returned fd is owned by the caller.
    check_int(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode) })
}

pub(crate) fn close(fd: RawFd) {
    // SAFETY: closing an fd we own; errors are irrelevant here.
    unsafe { libc::close(fd) };
}

pub(crate) fn write_all(fd: RawFd, mut buf: &[u8]) -> SysResult {
    while !buf.is_empty() {
        // SAFETY: buf is a valid slice for its length.
        match check(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) } as libc::c_long) {
            Ok(n) => buf = &buf[n as usize..],
            Err(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads into `buf` until it is full or EOF; returns the bytes read.
pub(crate) fn read_full(fd: RawFd, buf: &mut [u8]) -> SysResult<usize> {
    let mut n = 0;
    while n < buf.len() {
        // SAFETY: the destination is the unfilled tail of buf.
        let r = unsafe { libc::read(fd, buf[n..].as_mut_ptr().cast(), buf.len() - n) };
        match check(r as libc::c_long) {
            Ok(0) => break,
            Ok(k) => n += k as usize,
            Err(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Creates (or truncates) `path` and writes `data` to it.
pub(crate) fn write_file(path: &CStr, data: &[u8], mode: u32) -> SysResult {
    let fd = open(
        path,
        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW,
        mode,
    )?;
    let r = write_all(fd, data);
    close(fd);
    r
}

/// Writes `data` to the existing file `path` (a sysctl, say).
pub(crate) fn write_existing(path: &CStr, data: &[u8]) -> SysResult {
    let fd = open(path, libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW, 0)?;
    let r = write_all(fd, data);
    close(fd);
    r
}

/// Duplicates `fd` onto the lowest free descriptor >= `min`, close-on-exec.
pub(crate) fn dup_at_least(fd: RawFd, min: RawFd) -> SysResult<RawFd> {
    // SAFETY: F_DUPFD_CLOEXEC only creates a new descriptor.
    check_int(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) })
}

pub(crate) fn dup2(old: RawFd, new: RawFd) -> SysResult {
    // SAFETY: plain fd duplication.
    check_int(unsafe { libc::dup2(old, new) }).map(drop)
}

pub(crate) fn prctl(option: libc::c_int, arg: libc::c_ulong) -> SysResult {
    // SAFETY: the prctl options used take integer arguments only.
    check_int(unsafe {
        libc::prctl(
            option,
            arg,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })
    .map(drop)
}

pub(crate) fn setrlimit(resource: libc::__rlimit_resource_t, value: u64) -> SysResult {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: lim is a valid rlimit.
    check_int(unsafe { libc::setrlimit(resource, &lim) }).map(drop)
}

fn nofile_limits() -> SysResult<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid, writable rlimit.
    check_int(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }).map(|_| lim)
}

/// This process's hard RLIMIT_NOFILE: the most a sandbox it starts may be given.
pub(crate) fn nofile_hard() -> u64 {
    nofile_limits().map_or(1024, |lim| lim.rlim_max)
}

/// Raises this process's soft RLIMIT_NOFILE to `target` (at most the hard limit; never
/// lowers it); returns the soft limit now.
pub(crate) fn raise_nofile_soft(target: u64) -> SysResult<u64> {
    let mut lim = nofile_limits()?;
    let wanted = target.min(lim.rlim_max);
    if lim.rlim_cur < wanted {
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: raised is a valid rlimit; raising a soft limit up to the hard one needs no
        // privilege.
        check_int(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) })?;
        lim.rlim_cur = wanted;
    }
    Ok(lim.rlim_cur)
}

/// Sets another process's RLIMIT_CPU (soft and hard) to `seconds`.
pub(crate) fn prlimit_cpu(pid: i32, seconds: u64) -> SysResult {
    let lim = libc::rlimit64 {
        rlim_cur: seconds,
        rlim_max: seconds,
    };
    // SAFETY: lim is a valid rlimit64 and the old-limit pointer may be null.
    check_int(unsafe { libc::prlimit64(pid, libc::RLIMIT_CPU, &lim, std::ptr::null_mut()) })
        .map(drop)
}

/// The calling thread's seccomp mode (`PR_GET_SECCOMP`): 2 under a filter.
#[cfg_attr(not(feature = "zygote-lib"), allow(dead_code))]
pub(crate) fn seccomp_mode() -> i32 {
    // SAFETY: PR_GET_SECCOMP takes no argument and only returns the mode.
    unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) }
}

/// Clock ticks per second, the unit of /proc/<pid>/stat's times.
pub(crate) fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a constant of the C library.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        t if t > 0 => t as u64,
        _ => 100,
    }
}

pub(crate) fn setresuid(uid: u32) -> SysResult {
    // SAFETY: raw syscall (not the glibc wrapper, which would signal every thread of the process).
    check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) }).map(drop)
}

pub(crate) fn setresgid(gid: u32) -> SysResult {
    // SAFETY: raw syscall, as above.
    check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) }).map(drop)
}

pub(crate) fn clear_groups() -> SysResult {
    // SAFETY: raw syscall with an empty list.
    check(unsafe { libc::syscall(libc::SYS_setgroups, 0, ptr::null::<libc::gid_t>()) }).map(drop)
}

pub(crate) fn setsid() -> SysResult {
    // SAFETY: no arguments.
    check_int(unsafe { libc::setsid() }).map(drop)
}

pub(crate) fn sethostname(name: &[u8]) -> SysResult {
    // SAFETY: name is a valid slice of the given length.
    check_int(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

pub(crate) fn unshare(flags: libc::c_int) -> SysResult {
    // SAFETY: plain flags.
    check_int(unsafe { libc::unshare(flags) }).map(drop)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn capset(data: &[CapData; 2]) -> SysResult {
    let hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: header and two data structs as the v3 ABI requires.
    check(unsafe { libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) })
        .map(drop)
}

/// This process's capability sets (the v3 ABI's two 32-bit halves).
fn capget() -> SysResult<[CapData; 2]> {
    let mut data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    let hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: header and two data structs as the v3 ABI requires; capget fills them.
    check(unsafe {
        libc::syscall(
            libc::SYS_capget,
            &hdr as *const CapHeader,
            data.as_mut_ptr(),
        )
    })?;
    Ok(data)
}

/// Makes every permitted capability effective again (after `setresuid` cleared the effective set).
pub(crate) fn raise_all_caps() -> SysResult {
    let all = CapData {
        effective: u32::MAX,
        permitted: u32::MAX,
        inheritable: 0,
    };
    // The kernel masks the request to what is permitted; asking for all is the simple way.
    capset(&[all; 2]).or_else(|_| {
        let mut data = capget()?;
        for d in &mut data {
            d.effective = d.permitted;
        }
        capset(&data)
    })
}

/// Drops every capability: bounding set, ambient set, then effective/permitted/inheritable.
pub(crate) fn drop_all_caps() -> SysResult {
    for cap in 0..64 {
        match prctl(libc::PR_CAPBSET_DROP, cap) {
            Ok(()) => {}
            Err(libc::EINVAL) => break, // past the last capability this kernel knows
            Err(e) => return Err(e),
        }
    }
    // SAFETY: integer-only prctl.
    check_int(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    })?;
    capset(
        &[CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2],
    )
}

/// Brings the loopback interface of the current network namespace up.
pub(crate) fn loopback_up() -> SysResult {
    // SAFETY: plain socket creation.
    let fd = check_int(unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass.
    let r = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            -1
        } else {
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr)
        }
    };
    let r = check_int(r).map(drop);
    close(fd);
    r
}

/// Marks every descriptor from `first` upwards close-on-exec.
pub(crate) fn cloexec_from(first: u32) -> SysResult {
    // SAFETY: close_range with the CLOEXEC flag only changes descriptor flags.
    check(unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    })
    .map(drop)
}

/// Closes every descriptor in `first..=last` (errors are irrelevant: nothing may stay open).
pub(crate) fn close_range(first: u32, last: u32) {
    if first <= last {
        // SAFETY: closing descriptors this process owns; no memory is touched.
        unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
    }
}

/// The kernel's `struct sigaction` for rt_sigaction (not libc's, which differs in layout).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Every signal back to its default action and unblocked, as a freshly started program
/// expects. Raw syscalls: libc refuses to touch the signals it reserves for itself (32, 33),
/// which a supervisor may still have inherited as ignored.
pub(crate) fn reset_signals() {
    let dfl = KernelSigaction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: a valid kernel sigaction with SIG_DFL; no old action is read back.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null::<u8>(),
                8,
            )
        };
    }
    set_signal_mask(0);
}

/// Sets the signal mask (one 64-bit set, as the kernel takes it) and returns the previous one.
pub(crate) fn set_signal_mask(mask: u64) -> u64 {
    let mut old: u64 = 0;
    // SAFETY: 8-byte signal sets passed by pointer; the kernel ignores SIGKILL and SIGSTOP.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &mask as *const u64,
            &mut old as *mut u64,
            8,
        )
    };
    old
}

pub(crate) fn execve(
    path: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> i32 {
    // SAFETY: argv and envp are NULL-terminated arrays of pointers to C strings that live in the
    // parent-prepared plan, which this process holds a copy of.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    errno()
}

pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and runs no atexit handlers or destructors.
    unsafe { libc::_exit(code) }
}

// ---- parent-side helpers (may run on any thread) ----

/// `struct clone_args` of <linux/sched.h>.
#[repr(C)]
#[derive(Default)]
pub(crate) struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

pub(crate) const CLONE_PIDFD: u64 = 0x1000;
pub(crate) const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `clone3` with fork semantics (no new stack): returns 0 in the child, the pid in the parent.
///
/// # Safety
/// The caller must only perform async-signal-safe work in the child until it execs or exits:
/// the child is a copy of this one thread of a possibly multithreaded process.
pub(crate) unsafe fn clone3(args: &mut CloneArgs) -> SysResult<libc::pid_t> {
    // SAFETY: args is a valid clone_args of the size passed; the caller upholds the child contract.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    check(r).map(|p| p as libc::pid_t)
}

#[cfg_attr(not(feature = "zygote-lib"), allow(dead_code))]
/// A pidfd for process `pid` (close-on-exec): readable once it has exited.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> SysResult<RawFd> {
    // SAFETY: integer-only syscall.
    check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) }).map(|fd| fd as RawFd)
}

pub(crate) fn pidfd_send_signal(pidfd: RawFd, sig: i32) -> SysResult {
    // SAFETY: pidfd is an fd we own; no siginfo.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            sig,
            ptr::null::<u8>(),
            0,
        )
    })
    .map(drop)
}

pub(crate) fn kill(pid: i32, sig: i32) -> SysResult {
    // SAFETY: plain signal delivery.
    check_int(unsafe { libc::kill(pid, sig) }).map(drop)
}

#[cfg_attr(not(feature = "zygote-lib"), allow(dead_code))]
/// Reaps any exited child without waiting: (pid, wait status), or `None` when none has exited
/// (or there are no children).
pub(crate) fn reap_any() -> Option<(libc::pid_t, i32)> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid destination.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) };
        match check_int(r) {
            Ok(0) => return None,
            Ok(pid) => return Some((pid, status)),
            Err(libc::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

/// Reaps `pid` (which must have exited or be about to) and returns its wait status and usage.
pub(crate) fn wait4(pid: libc::pid_t, nohang: bool) -> SysResult<Option<(i32, libc::rusage)>> {
    let mut status = 0;
    // SAFETY: rusage is plain old data.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let flags = if nohang { libc::WNOHANG } else { 0 } | libc::__WALL;
        // SAFETY: status and ru are valid destinations.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
        match check_int(r) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some((status, ru))),
            Err(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Takes an OFD lock on one byte of `fd`: per open file description, so it works between threads
/// of one process as well as between processes, and is released when the descriptor closes.
pub(crate) fn try_lock_byte(fd: RawFd, offset: u64) -> SysResult<bool> {
    // SAFETY: flock is plain old data.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = offset as i64;
    fl.l_len = 1;
    // SAFETY: fl is a valid flock; F_OFD_SETLK does not block.
    match check_int(unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &fl) }) {
        Ok(_) => Ok(true),
        Err(libc::EAGAIN) | Err(libc::EACCES) => Ok(false),
        Err(e) => Err(e),
    }
}

pub(crate) fn geteuid() -> u32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::geteuid() }
}

pub(crate) fn getegid() -> u32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getegid() }
}

pub(crate) fn pipe() -> SysResult<(RawFd, RawFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    check_int(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((fds[0], fds[1]))
}

pub(crate) fn socketpair() -> SysResult<(RawFd, RawFd)> {
    socketpair_of(libc::SOCK_STREAM)
}

/// A close-on-exec UNIX socket pair of `kind` (SOCK_STREAM, SOCK_SEQPACKET).
pub(crate) fn socketpair_of(kind: libc::c_int) -> SysResult<(RawFd, RawFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    check_int(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    Ok((fds[0], fds[1]))
}

/// Sends without raising SIGPIPE when the peer is gone (the embedding process may not ignore it).
pub(crate) fn send_nosignal(fd: RawFd, buf: &[u8]) -> SysResult {
    // SAFETY: buf is a valid slice for its length.
    let r = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    check(r as libc::c_long).map(drop)
}

/// A TCP listener on 127.0.0.1:`port` (close-on-exec).
pub(crate) fn listen_loopback(port: u16) -> SysResult<RawFd> {
    // SAFETY: plain socket creation.
    let fd = check_int(unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)
    })?;
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: addr is a valid sockaddr_in of the size passed.
    let r = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
    };
    // SAFETY: listen on the socket we own.
    let r = check_int(r).and_then(|_| check_int(unsafe { libc::listen(fd, 1024) }));
    if let Err(e) = r {
        close(fd);
        return Err(e);
    }
    Ok(fd)
}

/// Most descriptors one message carries (`send_fds`/`recv_fds`).
pub(crate) const MAX_FDS_PER_MESSAGE: usize = 16;

/// Control-message buffer for up to [`MAX_FDS_PER_MESSAGE`] descriptors, aligned as `cmsghdr`
/// requires: CMSG_SPACE(16 * 4) = 16 + 64.
#[repr(C, align(8))]
struct FdCmsg([u8; 80]);

/// Sends `data` (not empty) and the descriptors `fds` in one message over a UNIX socket
/// (SCM_RIGHTS); returns how many bytes went. Never raises SIGPIPE.
pub(crate) fn send_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> SysResult<usize> {
    if data.is_empty() || fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(libc::EINVAL);
    }
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    let mut buf = FdCmsg([0; 80]);
    let fd_bytes = std::mem::size_of_val(fds) as u32;
    // SAFETY: msghdr is plain old data; zeroed is valid, and every pointer set below outlives
    // the sendmsg call (the kernel only reads through `iov_base`). CMSG_* compute offsets inside
    // `buf`, which has room for MAX_FDS_PER_MESSAGE descriptors.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            msg.msg_control = buf.0.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(fd_bytes) as usize;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes) as usize;
            let dst = libc::CMSG_DATA(cmsg).cast::<RawFd>();
            for (i, &fd) in fds.iter().enumerate() {
                std::ptr::write_unaligned(dst.add(i), fd);
            }
        }
        loop {
            match check(libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) as libc::c_long) {
                Err(libc::EINTR) => continue,
                r => return r.map(|n| n as usize),
            }
        }
    }
}

/// Receives one message sent by [`send_fds`]: its bytes into `data` and its descriptors
/// (close-on-exec) into `fds`. Returns (bytes, descriptors); (0, 0) when the peer closed.
/// Descriptors beyond `fds.len()` are closed, never leaked.
pub(crate) fn recv_fds(
    sock: RawFd,
    data: &mut [u8],
    fds: &mut [RawFd],
) -> SysResult<(usize, usize)> {
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut buf = FdCmsg([0; 80]);
    // SAFETY: as in send_fds; the kernel writes at most msg_controllen bytes into `buf` and at
    // most `data.len()` into `data`, and descriptors are read only from a control message of the
    // expected level and type, within its length.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = buf.0.as_mut_ptr().cast();
        msg.msg_controllen = buf.0.len();
        let n = loop {
            match check(libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) as libc::c_long) {
                Err(libc::EINTR) => continue,
                r => break r? as usize,
            }
        };
        let mut got = 0;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let header = libc::CMSG_LEN(0) as usize;
                let count = ((*cmsg).cmsg_len as usize).saturating_sub(header)
                    / std::mem::size_of::<RawFd>();
                let src = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..count {
                    let fd = std::ptr::read_unaligned(src.add(i));
                    match fds.get_mut(got) {
                        Some(slot) => {
                            *slot = fd;
                            got += 1;
                        }
                        None => close(fd),
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        Ok((n, got))
    }
}

/// Sends one descriptor with a one-byte payload.
pub(crate) fn send_fd(sock: RawFd, fd: RawFd) -> SysResult {
    send_fds(sock, b"f", &[fd]).map(drop)
}

/// Receives one descriptor sent by `send_fd`; `None` when the peer closed without sending.
pub(crate) fn recv_fd(sock: RawFd) -> SysResult<Option<RawFd>> {
    let mut byte = [0u8];
    let mut fd = [-1];
    match recv_fds(sock, &mut byte, &mut fd)? {
        (_, 1) => Ok(Some(fd[0])),
        _ => Ok(None),
    }
}

/// What a [`clone_calling`] child runs. It must end its process (`execve` or `_exit`) without
/// returning, unless the caller's contract says what a return means.
pub(crate) type CloneChild = extern "C" fn(*mut libc::c_void) -> libc::c_int;

/// `clone(flags)` with `child(arg)` run in the child, on `stack` (its top) or, when `stack` is
/// null, on this stack below this frame's red zone: with `CLONE_VM | CLONE_VFORK` that is a
/// `vfork`, and this thread is suspended until the child executes or exits. No page table is
/// copied, which a fork of a large process pays for twice (the copy, then a copy-on-write
/// fault for each page either side writes). Returns the child's pid (or `-errno`) here; a
/// process that a shared-stack `child` forks and that returns from it (with 0) leaves this
/// function with 0, on the stack pointer of the clone.
///
/// # Safety
///
/// With `CLONE_VM` the child shares this memory: `child` may only make system calls and write
/// its own stack and what the caller gave it for that through `arg`. No signal handler may run
/// in it (every disposition is the default, or every signal is blocked). The caller must be
/// single-threaded, or the only thread that reads what the child writes. `stack`, when not
/// null, is the 16-byte aligned top of a mapping that outlives the child's use of it.
pub(crate) unsafe fn clone_calling(
    flags: usize,
    stack: *mut u8,
    child: CloneChild,
    arg: *mut libc::c_void,
) -> isize {
    let ret: isize;
    // SAFETY: the caller's contract. The child moves its stack pointer below the red zone of
    // the stack it runs on before the call; only a fork of a shared-stack child that returns
    // from `child` comes back here, and it restores the stack pointer of the clone. Every
    // register the block or the call may change is declared clobbered.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            // The child: below the red zone, 16-byte aligned for the call.
            "mov r12, rsp",
            "sub rsp, 512",
            "and rsp, -16",
            "mov rdi, r13",
            "call r14",
            // Only a fork of the child that returned from `child` gets here, with 0.
            "mov rsp, r12",
            "movsxd rax, eax",
            "2:",
            inlateout("rax") libc::SYS_clone as isize => ret,
            in("rdi") flags,
            in("rsi") stack,
            in("rdx") 0usize,
            in("r10") 0usize,
            in("r8") 0usize,
            in("r13") arg,
            in("r14") child,
            out("r12") _,
            clobber_abi("C"),
        );
    }
    // SAFETY: as for x86_64.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        core::arch::asm!(
            "svc 0",
            "cbnz x0, 2f",
            // The child: well below this frame, 16-byte aligned for the call.
            "mov x20, sp",
            "sub x9, x20, #512",
            "and sp, x9, #-16",
            "mov x0, x21",
            "blr x22",
            // Only a fork of the child that returned from `child` gets here, with 0.
            "mov sp, x20",
            "sxtw x0, w0",
            "2:",
            in("x8") libc::SYS_clone as usize,
            inlateout("x0") flags => ret,
            in("x1") stack,
            in("x2") 0usize,
            in("x3") 0usize,
            in("x4") 0usize,
            in("x21") arg,
            in("x22") child,
            out("x20") _,
            clobber_abi("C"),
        );
    }
    ret
}

#[cfg_attr(not(feature = "zygote-lib"), allow(dead_code))]
pub(crate) fn getppid() -> libc::pid_t {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getppid() }
}

#[cfg_attr(not(feature = "zygote-lib"), allow(dead_code))]
pub(crate) fn getpid() -> libc::pid_t {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getpid() }
}

pub(crate) fn set_nonblocking(fd: RawFd) -> SysResult {
    // SAFETY: fcntl on an fd we own.
    let fl = check_int(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    check_int(unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) }).map(drop)
}

/// Waits for readiness on `fds` for at most `timeout_ms` (-1: forever).
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> SysResult<usize> {
    // SAFETY: fds is a valid array of pollfd of the given length.
    match check_int(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) })
    {
        Ok(n) => Ok(n as usize),
        Err(libc::EINTR) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Whether `fd` is readable now (or at end of file, or hung up), without waiting.
pub(crate) fn readable_now(fd: RawFd) -> SysResult<bool> {
    let mut fds = [libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }];
    poll(&mut fds, 0).map(|n| n > 0)
}

pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: buf is a valid destination of its length.
    check(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } as libc::c_long)
        .map(|n| n as usize)
}

/// A memory file for an interpreter's image, sealable (`memfd_create(MFD_CLOEXEC |
/// MFD_ALLOW_SEALING)`).
pub(crate) fn memfd_sealable(name: &CStr) -> SysResult<std::os::fd::OwnedFd> {
    // SAFETY: `name` is a valid C string.
    let fd = check_int(unsafe {
        libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })?;
    // SAFETY: a fresh descriptor, owned by nothing else.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// `open`, owned.
pub(crate) fn open_owned(path: &CStr, flags: libc::c_int) -> SysResult<std::os::fd::OwnedFd> {
    let fd = open(path, flags, 0)?;
    // SAFETY: a fresh descriptor, owned by nothing else.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// Seals `fd` for good: no more writes (the kernel refuses while a writable shared mapping of
/// it exists), no growing or shrinking, no further seals or unseals.
pub(crate) fn seal_for_good(fd: RawFd) -> SysResult {
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: fcntl(F_ADD_SEALS) takes an integer.
    check_int(unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) }).map(drop)
}
