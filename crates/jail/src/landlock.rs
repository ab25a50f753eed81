//! The Landlock layer: file access limited to the sandbox's own tree, as defense in depth behind
//! the mount namespace (if a mount trick ever exposed a host path, Landlock still refuses it).
//!
//! Raw syscalls rather than the `landlock` crate, because the rules are applied in a child
//! cloned from a multithreaded supervisor, where allocating is not allowed: everything that
//! allocates (path strings, access masks) is done in [`LandlockRules::new`] in the parent, and
//! [`LandlockRules::apply`] only issues syscalls on that data.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `struct landlock_ruleset_attr` (<linux/landlock.h>). The kernel accepts a prefix of it
/// (`size` tells which fields we know), so one layout serves every ABI.
#[repr(C)]
struct RulesetAttr {
    /// ABI 1.
    handled_access_fs: u64,
    /// ABI 4. Always 0: the network is the network namespace's business.
    handled_access_net: u64,
    /// ABI 6.
    scoped: u64,
}

/// `struct landlock_path_beneath_attr`, which the uapi declares `__attribute__((packed))`
/// (12 bytes, no trailing padding).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

const CREATE_RULESET_VERSION: u32 = 1 << 0;
const RULE_PATH_BENEATH: u32 = 1;

const ACCESS_FS_EXECUTE: u64 = 1 << 0;
const ACCESS_FS_WRITE_FILE: u64 = 1 << 1;
const ACCESS_FS_READ_FILE: u64 = 1 << 2;
const ACCESS_FS_READ_DIR: u64 = 1 << 3;
/// ABI 1 handles bits 0 (EXECUTE) to 12 (MAKE_SYM).
const ACCESS_FS_V1: u64 = (1 << 13) - 1;
/// ABI 2.
const ACCESS_FS_REFER: u64 = 1 << 13;
/// ABI 3.
const ACCESS_FS_TRUNCATE: u64 = 1 << 14;
/// ABI 5.
const ACCESS_FS_IOCTL_DEV: u64 = 1 << 15;

/// The only rights the kernel accepts in a rule whose inode is not a directory (EINVAL
/// otherwise): the others are about directory entries.
const ACCESS_FS_FILE: u64 = ACCESS_FS_EXECUTE
    | ACCESS_FS_WRITE_FILE
    | ACCESS_FS_READ_FILE
    | ACCESS_FS_TRUNCATE
    | ACCESS_FS_IOCTL_DEV;

/// What read-only paths get: enough to run programs and read files and directories, nothing
/// that changes the tree or file contents (not even truncate).
const ACCESS_FS_READ_ONLY: u64 = ACCESS_FS_EXECUTE | ACCESS_FS_READ_FILE | ACCESS_FS_READ_DIR;

/// ABI 6: no connecting to abstract UNIX sockets created outside the sandbox (the host's
/// abstract namespace is otherwise shared across mount namespaces — though not across network
/// namespaces), and no signals to processes outside it.
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

/// Every filesystem right this ABI version can enforce; newer rights are unknown to older
/// kernels, which refuse a ruleset that mentions them.
fn fs_rights(abi: u32) -> u64 {
    let mut rights = if abi >= 1 { ACCESS_FS_V1 } else { 0 };
    if abi >= 2 {
        rights |= ACCESS_FS_REFER;
    }
    if abi >= 3 {
        rights |= ACCESS_FS_TRUNCATE;
    }
    if abi >= 5 {
        rights |= ACCESS_FS_IOCTL_DEV;
    }
    rights
}

fn scopes(abi: u32) -> u64 {
    if abi >= 6 {
        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
    } else {
        0
    }
}

/// The kernel's Landlock ABI version, or None when Landlock is not available (ENOSYS/EOPNOTSUPP).
///
/// Any other error (e.g. a seccomp filter around airlock itself denying the call) is also None:
/// either way airlock cannot use Landlock here.
pub fn abi_version() -> Option<u32> {
    // SAFETY: with LANDLOCK_CREATE_RULESET_VERSION the kernel reads no attribute (NULL, size 0)
    // and only returns the version.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0 as libc::size_t,
            CREATE_RULESET_VERSION as libc::c_ulong,
        )
    };
    if rc >= 1 {
        u32::try_from(rc).ok()
    } else {
        None
    }
}

/// One path and the rights wanted beneath it, before they are masked for the inode type.
struct Rule {
    path: CString,
    access: u64,
}

/// A ruleset ready to be applied in the child without allocating.
pub(crate) struct LandlockRules {
    /// Rights the ruleset handles (denies unless a rule allows them); 0 when `abi` is 0.
    handled_fs: u64,
    scoped: u64,
    rules: Vec<Rule>,
}

impl LandlockRules {
    /// Prepared in the parent. `read_only` paths get read+execute rights (READ_FILE, READ_DIR, EXECUTE),
    /// `read_write` paths get every handled right. Paths are paths INSIDE the sandbox (they are opened in
    /// the child after pivot_root).
    ///
    /// `abi` is what [`abi_version`] returned; whether to run without Landlock when it is None
    /// is the caller's decision. A version newer than this code knows is used for the rights
    /// it does know. A path containing a NUL byte cannot exist, so it is treated like any other
    /// missing path: skipped.
    pub(crate) fn new(abi: u32, read_only: &[&Path], read_write: &[&Path]) -> LandlockRules {
        let handled_fs = fs_rights(abi);
        let wanted = read_only
            .iter()
            .map(|p| (p, ACCESS_FS_READ_ONLY))
            .chain(read_write.iter().map(|p| (p, handled_fs)));
        let rules = wanted
            .filter_map(|(path, access)| {
                let path = CString::new(path.as_os_str().as_bytes()).ok()?;
                Some(Rule {
                    path,
                    access: access & handled_fs,
                })
            })
            .collect();
        LandlockRules {
            handled_fs,
            scoped: scopes(abi),
            rules,
        }
    }

    /// In the child, after pivot_root: create the ruleset handling every fs right the ABI knows (and the v6
    /// scopes ABSTRACT_UNIX_SOCKET|SIGNAL when abi >= 6), open each path with O_PATH|O_CLOEXEC (a path that
    /// does not exist is skipped), add a path_beneath rule masked to rights valid for that inode (files only
    /// accept EXECUTE|WRITE_FILE|READ_FILE|TRUNCATE|IOCTL_DEV: directories accept all), close fds, then
    /// landlock_restrict_self. Async-signal-safe; no allocation. Returns Err((stage: &'static str, errno)).
    ///
    /// It sets `PR_SET_NO_NEW_PRIVS` itself (the kernel requires it, or CAP_SYS_ADMIN, for
    /// `landlock_restrict_self`), which is idempotent and part of the sandbox contract anyway.
    /// Paths are resolved following symlinks (`/lib` -> `usr/lib` on merged-/usr systems), so a
    /// rule on a symlink covers its target.
    ///
    /// # Safety
    ///
    /// Irreversibly restricts the calling process and everything it execs or forks; call it only
    /// in the sandboxed child. Uses only async-signal-safe calls (open, fstat, close, prctl and
    /// raw syscalls) on data prepared by [`LandlockRules::new`].
    pub(crate) unsafe fn apply(&self) -> Result<(), (&'static str, i32)> {
        if self.handled_fs == 0 {
            // ABI 0: the caller built rules for a kernel without Landlock. Refuse rather than
            // pretend the layer is there.
            return Err(("landlock_create_ruleset", libc::ENOSYS));
        }
        let attr = RulesetAttr {
            handled_access_fs: self.handled_fs,
            handled_access_net: 0,
            scoped: self.scoped,
        };
        // Kernels before ABI 6 do not know `scoped`; they would accept a longer struct only if
        // the unknown tail is zero, so give them just the first field, as that is all we set.
        let size = if self.scoped != 0 {
            std::mem::size_of::<RulesetAttr>()
        } else {
            std::mem::size_of::<u64>()
        };
        // SAFETY: `attr` is a live, initialized `landlock_ruleset_attr` of at least `size` bytes.
        let ruleset = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                size as libc::size_t,
                0 as libc::c_ulong,
            )
        };
        if ruleset < 0 {
            return Err(("landlock_create_ruleset", errno()));
        }
        let ruleset = ruleset as libc::c_int;
        let result = self
            .add_rules(ruleset)
            .and_then(|()| restrict_self(ruleset));
        // SAFETY: `ruleset` is the fd we just got, closed exactly once; after
        // restrict_self the domain no longer depends on it.
        unsafe { libc::close(ruleset) };
        result
    }

    fn add_rules(&self, ruleset: libc::c_int) -> Result<(), (&'static str, i32)> {
        for rule in &self.rules {
            // SAFETY: `rule.path` is a NUL-terminated string owned by `self`.
            let fd = unsafe { libc::open(rule.path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
            if fd < 0 {
                match errno() {
                    libc::ENOENT | libc::ENOTDIR => continue,
                    e => return Err(("landlock: open rule path", e)),
                }
            }
            let result = add_rule(ruleset, fd, rule.access);
            // SAFETY: `fd` is the fd we just opened, closed exactly once.
            unsafe { libc::close(fd) };
            result?;
        }
        Ok(())
    }
}

/// Adds one path_beneath rule for the inode behind `fd`, keeping only the rights the kernel
/// accepts for its type.
fn add_rule(ruleset: libc::c_int, fd: libc::c_int, access: u64) -> Result<(), (&'static str, i32)> {
    // SAFETY: `stat` is plain data for which all-zero bytes are a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open (O_PATH fds support fstat) and `st` is writable.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(("landlock: fstat rule path", errno()));
    }
    let access = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        access
    } else {
        access & ACCESS_FS_FILE
    };
    if access == 0 {
        // The kernel refuses an empty rule (ENOMSG); a rule granting nothing is no rule.
        return Ok(());
    }
    let attr = PathBeneathAttr {
        allowed_access: access,
        parent_fd: fd,
    };
    // SAFETY: `attr` is a live `landlock_path_beneath_attr`; `ruleset` and `fd` are open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset as libc::c_long,
            RULE_PATH_BENEATH as libc::c_ulong,
            &attr as *const PathBeneathAttr,
            0 as libc::c_ulong,
        )
    };
    if rc != 0 {
        return Err(("landlock_add_rule", errno()));
    }
    Ok(())
}

fn restrict_self(ruleset: libc::c_int) -> Result<(), (&'static str, i32)> {
    // SAFETY: prctl with integer arguments only.
    if unsafe {
        libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    } != 0
    {
        return Err(("prctl(PR_SET_NO_NEW_PRIVS)", errno()));
    }
    // SAFETY: `ruleset` is an open Landlock ruleset fd; no pointers are passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_restrict_self,
            ruleset as libc::c_long,
            0 as libc::c_ulong,
        )
    };
    if rc != 0 {
        return Err(("landlock_restrict_self", errno()));
    }
    Ok(())
}

/// The calling thread's errno, read without anything that could allocate or lock.
fn errno() -> i32 {
    // SAFETY: `__errno_location` always returns a valid pointer to the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn abi_structs_match_the_kernel() {
        assert_eq!(std::mem::size_of::<PathBeneathAttr>(), 12);
        assert_eq!(std::mem::size_of::<RulesetAttr>(), 24);
    }

    #[test]
    fn rights_per_abi() {
        assert_eq!(fs_rights(0), 0);
        assert_eq!(fs_rights(1), 0x1fff);
        assert_eq!(fs_rights(2), 0x3fff);
        assert_eq!(fs_rights(4), 0x7fff);
        assert_eq!(fs_rights(5), 0xffff);
        assert_eq!(fs_rights(7), 0xffff);
        assert_eq!(scopes(5), 0);
        assert_eq!(scopes(6), 3);
        // Read-only paths never get more than the ABI handles.
        let r = LandlockRules::new(1, &[Path::new("/usr")], &[Path::new("/tmp")]);
        assert_eq!(r.rules[0].access, ACCESS_FS_READ_ONLY);
        assert_eq!(r.rules[1].access, 0x1fff);
        let r = LandlockRules::new(9, &[Path::new("a\0b")], &[]);
        assert!(r.rules.is_empty());
    }

    #[test]
    fn abi_is_available_on_this_kernel() {
        let abi = abi_version();
        eprintln!("Landlock ABI on this host: {abi:?}");
        assert!(abi.is_some_and(|v| v >= 1), "Landlock unavailable: {abi:?}");
    }

    /// A directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p =
                std::env::temp_dir().join(format!("airlock-landlock-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir(&p).unwrap();
            TempDir(p)
        }
        fn c(&self, name: &str) -> CString {
            CString::new(self.0.join(name).as_os_str().as_bytes()).unwrap()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const CHECKS: &[&str] = &[
        "apply succeeds",
        "create a file in the read-write dir",
        "write to it",
        "mkdir in the read-write dir",
        "create a file in another dir -> EACCES",
        "list another dir -> EACCES",
        "read a read-only file rule",
        "open the read-only file for writing -> EACCES",
        "truncate the read-only file -> EACCES",
        "list /usr (read-only dir)",
        "kill(parent, 0) -> EPERM (abi >= 6)",
        "connect to an outside abstract UNIX socket -> EPERM (abi >= 6)",
    ];

    /// All the data the child needs, prepared before fork.
    struct ChildData {
        rules: LandlockRules,
        abi: u32,
        rw_file: CString,
        rw_subdir: CString,
        other_file: CString,
        other_dir: CString,
        ro_file: CString,
        usr: CString,
        abstract_addr: libc::sockaddr_un,
        abstract_len: libc::socklen_t,
    }

    /// Runs in the forked child: only raw syscalls on `d`.
    fn child(d: &ChildData) -> i32 {
        use libc::*;
        let errno_is = |rc: c_long, e: i32| rc < 0 && errno() == e;
        // SAFETY: syscalls on prepared, NUL-terminated paths and stack buffers.
        let results: [bool; 12] = unsafe {
            let applied = d.rules.apply().is_ok();
            let fd = open(d.rw_file.as_ptr(), O_CREAT | O_WRONLY | O_CLOEXEC, 0o600);
            let wrote = fd >= 0 && write(fd, b"x".as_ptr().cast(), 1) == 1;
            let scoped = d.abi >= 6;
            let connect_denied = {
                let s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                let rc = connect(
                    s,
                    (&d.abstract_addr as *const sockaddr_un).cast(),
                    d.abstract_len,
                );
                s >= 0 && errno_is(rc as c_long, EPERM)
            };
            [
                applied,
                fd >= 0,
                wrote,
                mkdir(d.rw_subdir.as_ptr(), 0o700) == 0,
                errno_is(
                    open(d.other_file.as_ptr(), O_CREAT | O_WRONLY | O_CLOEXEC, 0o600) as c_long,
                    EACCES,
                ),
                errno_is(
                    open(d.other_dir.as_ptr(), O_RDONLY | O_DIRECTORY | O_CLOEXEC) as c_long,
                    EACCES,
                ),
                open(d.ro_file.as_ptr(), O_RDONLY | O_CLOEXEC) >= 0,
                errno_is(
                    open(d.ro_file.as_ptr(), O_WRONLY | O_CLOEXEC) as c_long,
                    EACCES,
                ),
                errno_is(truncate(d.ro_file.as_ptr(), 0) as c_long, EACCES),
                open(d.usr.as_ptr(), O_RDONLY | O_DIRECTORY | O_CLOEXEC) >= 0,
                !scoped || errno_is(kill(getppid(), 0) as c_long, EPERM),
                !scoped || connect_denied,
            ]
        };
        match results.iter().position(|ok| !ok) {
            Some(i) => i as i32 + 1,
            None => 0,
        }
    }

    #[test]
    fn confines_a_forked_child() {
        let abi = abi_version().expect("Landlock is available");
        let rw = TempDir::new("rw");
        let other = TempDir::new("other");
        std::fs::write(other.0.join("ro.txt"), b"data").unwrap();
        let ro_file = other.0.join("ro.txt");
        let missing = Path::new("/nonexistent-airlock-landlock-test");
        let read_only: Vec<&Path> = ["/usr", "/lib", "/lib64", "/bin", "/etc"]
            .iter()
            .map(Path::new)
            .chain([ro_file.as_path(), missing])
            .collect();

        // A listening abstract socket outside the sandbox.
        // SAFETY: plain socket calls on a zeroed sockaddr_un we fill in.
        let (listener, abstract_addr, abstract_len) = unsafe {
            let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(s >= 0);
            let mut addr: libc::sockaddr_un = std::mem::zeroed();
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            let name = format!("airlock-landlock-test-{}", std::process::id());
            for (dst, &b) in addr.sun_path[1..].iter_mut().zip(name.as_bytes()) {
                *dst = b as libc::c_char;
            }
            let len =
                (std::mem::size_of::<libc::sa_family_t>() + 1 + name.len()) as libc::socklen_t;
            assert_eq!(
                libc::bind(s, (&addr as *const libc::sockaddr_un).cast(), len),
                0
            );
            assert_eq!(libc::listen(s, 1), 0);
            (s, addr, len)
        };

        let d = ChildData {
            rules: LandlockRules::new(abi, &read_only, &[rw.0.as_path()]),
            abi,
            rw_file: rw.c("new.txt"),
            rw_subdir: rw.c("sub"),
            other_file: other.c("new.txt"),
            other_dir: CString::new(other.0.as_os_str().as_bytes()).unwrap(),
            ro_file: other.c("ro.txt"),
            usr: CString::new("/usr").unwrap(),
            abstract_addr,
            abstract_len,
        };
        // SAFETY: the child runs `child` (raw syscalls on `d`) and _exit.
        let status = unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                libc::_exit(child(&d));
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            libc::close(listener);
            status
        };
        assert!(
            libc::WIFEXITED(status),
            "child did not exit normally: {status:#x}"
        );
        match libc::WEXITSTATUS(status) {
            0 => {}
            n => panic!(
                "Landlock check failed (abi {abi}): {}",
                CHECKS[n as usize - 1]
            ),
        }
        assert!(rw.0.join("new.txt").exists());
        assert!(!other.0.join("new.txt").exists());
        assert_eq!(std::fs::read(other.0.join("ro.txt")).unwrap(), b"data");
    }
}
