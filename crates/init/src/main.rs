//! The init of a sandbox's pid namespace. The jail forks the program off as pid 2 and executes
//! this as pid 1, so that the program is an ordinary process: signals it sends itself act (the
//! kernel ignores them for a namespace's init), and orphans it leaves are reaped instead of
//! filling the pids limit. It reaps every child; when the program (pid 2) ends it writes the
//! program's wait status on descriptor 0, a frame of `S`, the status and 0 (native-endian i32s,
//! as `supervise::report`), and exits, which ends every other process of the namespace.
//!
//! Freestanding (no std, no libc): a few kilobytes, executed in a fraction of a millisecond,
//! with nothing of the supervisor's memory (the jail's forked child would carry a copy).

#![no_std]
#![no_main]

#[cfg(target_arch = "x86_64")]
mod sys {
    pub const WAIT4: usize = 61;
    pub const WRITE: usize = 1;
    pub const GETPID: usize = 39;
    pub const PRCTL: usize = 157;
    pub const EXIT_GROUP: usize = 231;

    /// # Safety
    /// A raw system call: the arguments must be valid for `n`.
    pub unsafe fn call4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
        let ret: isize;
        // SAFETY: the Linux x86_64 syscall convention; rcx and r11 are clobbered by `syscall`.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d,
                lateout("rcx") _, lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    core::arch::global_asm!(
        ".globl _start",
        "_start:",
        "xor ebp, ebp",
        "and rsp, -16",
        "call {main}",
        "ud2",
        main = sym super::main,
    );
}

#[cfg(target_arch = "aarch64")]
mod sys {
    pub const WAIT4: usize = 260;
    pub const WRITE: usize = 64;
    pub const GETPID: usize = 172;
    pub const PRCTL: usize = 167;
    pub const EXIT_GROUP: usize = 94;

    /// # Safety
    /// A raw system call: the arguments must be valid for `n`.
    pub unsafe fn call4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
        let ret: isize;
        // SAFETY: the Linux aarch64 syscall convention (number in x8, result in x0).
        unsafe {
            core::arch::asm!(
                "svc 0",
                in("x8") n,
                inlateout("x0") a as isize => ret,
                in("x1") b, in("x2") c, in("x3") d,
                options(nostack),
            );
        }
        ret
    }

    core::arch::global_asm!(
        ".globl _start",
        "_start:",
        "mov x29, xzr",
        "mov x30, xzr",
        "mov x0, sp",
        "and sp, x0, #-16",
        "bl {main}",
        "brk #0",
        main = sym super::main,
    );
}

const EINTR: isize = -4;
const PR_SET_DUMPABLE: usize = 4;
/// The program the jail forked: the first process after init in a fresh pid namespace.
const PROGRAM: isize = 2;

fn exit(code: usize) -> ! {
    loop {
        // SAFETY: exit_group takes one integer and does not return.
        unsafe { sys::call4(sys::EXIT_GROUP, code, 0, 0, 0) };
    }
}

extern "C" fn main() -> ! {
    // Non-dumpable already, since its file is execute-only; unless the host's
    // fs.suid_dumpable says otherwise, which this does not depend on.
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes two integers.
    unsafe { sys::call4(sys::PRCTL, PR_SET_DUMPABLE, 0, 0, 0) };
    // SAFETY: getpid takes no arguments.
    if unsafe { sys::call4(sys::GETPID, 0, 0, 0, 0) } != 1 {
        exit(127); // only ever a namespace's init
    }
    let mut status: i32 = 0;
    loop {
        // SAFETY: wait4(-1, &status, 0, NULL): `status` is a valid i32 to write to.
        let pid = unsafe {
            sys::call4(
                sys::WAIT4,
                usize::MAX,
                &mut status as *mut i32 as usize,
                0,
                0,
            )
        };
        if pid == PROGRAM {
            let s = status.to_ne_bytes();
            let frame = [b'S', s[0], s[1], s[2], s[3], 0, 0, 0, 0];
            // SAFETY: write(0, frame, 9): `frame` is valid for 9 bytes.
            unsafe { sys::call4(sys::WRITE, 0, frame.as_ptr() as usize, frame.len(), 0) };
            exit(0);
        }
        if pid < 0 && pid != EINTR {
            exit(1); // no child left: the program is gone without a status
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(126)
}
