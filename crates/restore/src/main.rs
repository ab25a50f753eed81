//! The restorer: the program of a sandbox that resumes a frozen interpreter instead of starting
//! one (docs/security.md, "restore, not fork"). The jail executes it as the sandbox's program,
//! fully confined already, with the image (`image.rs`, written by the jail's `freeze`) on the
//! descriptor its first argument names. It clears its own address space but for itself, moves
//! the kernel's vDSO to where the image had it, maps every region of the image at its address
//! (anonymous memory, the image's own pages copy-on-write, the interpreter's files again),
//! restores the signal state, the thread's registrations and registers, and jumps to where
//! `freeze` was called, which returns 1 there.
//!
//! Freestanding (no std, no libc), static, and linked at an address interpreters never use
//! (see the jail's build script), so that nothing of it is in the way of the image's maps. It
//! stays mapped in the restored process: a few pages of code that nothing calls.
//!
//! A failure exits with status 120 + the step, after a line on descriptor 2 naming the step and
//! the errno. It is never a partly restored process: nothing of the image runs before the
//! last step.

#![no_std]
#![no_main]

mod image;

use image::{Header, Map, PAGE, kind};

#[cfg(not(target_arch = "x86_64"))]
compile_error!("the restorer is written for x86_64 only");

mod sys {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const OPEN: usize = 2;
    pub const CLOSE: usize = 3;
    pub const FSTAT: usize = 5;
    pub const MMAP: usize = 9;
    pub const MUNMAP: usize = 11;
    pub const RT_SIGACTION: usize = 13;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const PREAD64: usize = 17;
    pub const MREMAP: usize = 25;
    pub const PRCTL: usize = 157;
    pub const ARCH_PRCTL: usize = 158;
    pub const EXIT_GROUP: usize = 231;
    pub const SET_ROBUST_LIST: usize = 273;
    pub const RSEQ: usize = 334;

    /// # Safety
    /// A raw system call: the arguments must be valid for `n`.
    pub unsafe fn call6(
        n: usize,
        a: usize,
        b: usize,
        c: usize,
        d: usize,
        e: usize,
        f: usize,
    ) -> isize {
        let ret: isize;
        // SAFETY: the Linux x86_64 syscall convention; rcx and r11 are clobbered by `syscall`.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d, in("r8") e, in("r9") f,
                lateout("rcx") _, lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    /// # Safety
    /// As [`call6`].
    pub unsafe fn call4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
        // SAFETY: as the caller's.
        unsafe { call6(n, a, b, c, d, 0, 0) }
    }
}

const STACK_SIZE: usize = 256 * 1024;
/// This process's own stack: the kernel's goes with everything else that is not this binary.
#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);
#[unsafe(no_mangle)]
static mut RESTORE_STACK: Stack = Stack([0; STACK_SIZE]);

core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "lea rsp, [rip + RESTORE_STACK + {size}]",
    "call {main}",
    "ud2",
    size = const STACK_SIZE,
    main = sym main,
);

unsafe extern "C" {
    /// The first byte of this binary's image, and the end of its bss (the linker's symbols).
    static __ehdr_start: u8;
    static _end: u8;
}

/// Steps, reported in the exit status as 120 + step.
mod step {
    pub const ARGS: u8 = 0;
    pub const HEADER: u8 = 1;
    pub const MAPS: u8 = 2;
    pub const OWN_MAPS: u8 = 3;
    pub const VDSO: u8 = 4;
    pub const MAP: u8 = 5;
    pub const LAYOUT: u8 = 6;
    pub const SIGNALS: u8 = 7;
    pub const THREAD: u8 = 8;
}

const META: usize = 4 << 20;
/// The image's header, maps and strings.
static mut META_BUF: [u64; META / 8] = [0; META / 8];
const OWN: usize = 64 * 1024;
static mut OWN_MAPS: [u8; OWN] = [0; OWN];

fn fail(step: u8, err: isize) -> ! {
    let mut line = *b"airlock-restore: step N failed: errno NNNN\n";
    line[22] = b'0' + step;
    let e = (-err).clamp(0, 9999) as u32;
    for (i, d) in [1000, 100, 10, 1].iter().enumerate() {
        line[38 + i] = b'0' + ((e / d) % 10) as u8;
    }
    // SAFETY: write(2, line, len): `line` is valid for its length.
    unsafe { sys::call4(sys::WRITE, 2, line.as_ptr() as usize, line.len(), 0) };
    exit(120 + step as usize)
}

fn exit(code: usize) -> ! {
    loop {
        // SAFETY: exit_group takes one integer and does not return.
        unsafe { sys::call4(sys::EXIT_GROUP, code, 0, 0, 0) };
    }
}

fn check(step: u8, r: isize) -> usize {
    if r < 0 { fail(step, r) } else { r as usize }
}

fn pread_all(fd: usize, buf: *mut u8, len: usize, off: usize) -> isize {
    let mut got = 0;
    while got < len {
        // SAFETY: `buf..buf+len` is ours to write.
        let n = unsafe { sys::call4(sys::PREAD64, fd, buf as usize + got, len - got, off + got) };
        if n == -4 {
            continue;
        }
        if n <= 0 {
            return if n == 0 { -5 } else { n };
        }
        got += n as usize;
    }
    got as isize
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

struct Own {
    range: (u64, u64),
    /// This process's vDSO-like mappings: (start, end, name).
    special: [(u64, u64, [u8; 16]); 4],
    specials: usize,
}

extern "C" fn main(sp: *const usize) -> ! {
    // argv[1]: the image's descriptor.
    // SAFETY: the kernel's initial stack: argc, then argv pointers.
    let (argc, arg1) = unsafe { (*sp, *sp.add(2) as *const u8) };
    if argc < 2 {
        fail(step::ARGS, -22);
    }
    let mut fd = 0usize;
    let mut p = arg1;
    // SAFETY: argv[1] is a NUL-terminated string.
    while let c @ b'0'..=b'9' = unsafe { *p } {
        fd = fd * 10 + (c - b'0') as usize;
        // SAFETY: still within the string (it has not ended yet).
        p = unsafe { p.add(1) };
    }

    // SAFETY: this process is single-threaded and nothing else refers to META_BUF.
    let meta = unsafe { &mut *core::ptr::addr_of_mut!(META_BUF) };
    let meta_bytes = meta.as_mut_ptr().cast::<u8>();
    check(
        step::HEADER,
        pread_all(fd, meta_bytes, size_of::<Header>(), 0),
    );
    // SAFETY: META_BUF is 8-aligned and holds a whole Header, plain data.
    let h = unsafe { &*meta_bytes.cast::<Header>() };
    if h.magic != image::MAGIC || h.maps_at != size_of::<Header>() as u64 {
        fail(step::HEADER, -22);
    }
    let meta_len = h.strings_at.saturating_add(h.strings_len);
    let maps_len = h.maps.saturating_mul(size_of::<Map>() as u64);
    if meta_len > META as u64
        || h.maps_at.saturating_add(maps_len) > h.strings_at
        || h.strings_len == 0
    {
        fail(step::MAPS, -7);
    }
    let rest = (meta_len - h.maps_at) as usize;
    // SAFETY: the bytes after the header, within META_BUF (checked above).
    check(
        step::MAPS,
        pread_all(
            fd,
            unsafe { meta_bytes.add(h.maps_at as usize) },
            rest,
            h.maps_at as usize,
        ),
    );
    // SAFETY: within META_BUF, 8-aligned (a Header is a multiple of 8), plain data.
    let maps = unsafe {
        core::slice::from_raw_parts(
            meta_bytes.add(h.maps_at as usize).cast::<Map>(),
            h.maps as usize,
        )
    };
    // SAFETY: within META_BUF (checked above); NUL-terminated by the writer (checked below).
    let strings = unsafe {
        core::slice::from_raw_parts(
            meta_bytes.add(h.strings_at as usize),
            h.strings_len as usize,
        )
    };
    if strings[strings.len() - 1] != 0 {
        fail(step::MAPS, -22);
    }

    let mut own = own_maps();
    for m in maps {
        let bad = m.start >= m.end
            || m.start % PAGE != 0
            || m.end % PAGE != 0
            || m.end > 0x7fff_ffff_f000
            || m.path >= h.strings_len
            || overlaps((m.start, m.end), own.range);
        if bad {
            fail(step::MAPS, -22);
        }
    }
    move_specials(&mut own, maps, strings);
    map_all(fd, h, maps, strings);
    resume(h)
}

/// Reads this process's maps, unmaps all of them but this binary and the kernel's vDSO-like
/// mappings, and returns those.
fn own_maps() -> Own {
    // The linker's symbols; only their addresses are taken.
    let range = {
        (
            core::ptr::addr_of!(__ehdr_start) as u64 & !(PAGE - 1),
            (core::ptr::addr_of!(_end) as u64).div_ceil(PAGE) * PAGE,
        )
    };
    let mut own = Own {
        range,
        special: [(0, 0, [0; 16]); 4],
        specials: 0,
    };
    // SAFETY: single-threaded; nothing else refers to OWN_MAPS.
    let buf = unsafe { &mut *core::ptr::addr_of_mut!(OWN_MAPS) };
    // SAFETY: a NUL-terminated path.
    let mfd = check(step::OWN_MAPS, unsafe {
        sys::call4(
            sys::OPEN,
            c"/proc/self/maps".as_ptr() as usize,
            0o2000000,
            0,
            0,
        )
    });
    let mut len = 0;
    loop {
        // SAFETY: the unfilled rest of `buf`.
        let n = unsafe {
            sys::call4(
                sys::READ,
                mfd,
                buf.as_mut_ptr() as usize + len,
                OWN - len,
                0,
            )
        };
        if n == -4 {
            continue;
        }
        let n = check(step::OWN_MAPS, n);
        if n == 0 {
            break;
        }
        len += n;
        if len == OWN {
            fail(step::OWN_MAPS, -7);
        }
    }
    // SAFETY: ours.
    unsafe { sys::call4(sys::CLOSE, mfd, 0, 0, 0) };
    for line in buf[..len].split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let dash = line.iter().position(|&b| b == b'-').unwrap_or(0);
        let space = line.iter().position(|&b| b == b' ').unwrap_or(0);
        let start = hex(&line[..dash]);
        let end = hex(&line[dash + 1..space]);
        let name = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
        if overlaps((start, end), own.range) {
            continue;
        }
        if matches!(name, b"[vdso]" | b"[vvar]" | b"[vvar_vclock]") {
            if own.specials == own.special.len() {
                fail(step::OWN_MAPS, -7);
            }
            let mut n = [0u8; 16];
            n[..name.len()].copy_from_slice(name);
            own.special[own.specials] = (start, end, n);
            own.specials += 1;
            continue;
        }
        if name == b"[vsyscall]" {
            continue;
        }
        // The kernel's stack for us, and anything else: the image's maps go there.
        // SAFETY: nothing of this binary lives there (we run on RESTORE_STACK).
        check(step::OWN_MAPS, unsafe {
            sys::call4(sys::MUNMAP, start as usize, (end - start) as usize, 0, 0)
        });
    }
    own
}

fn hex(v: &[u8]) -> u64 {
    v.iter()
        .map_while(|b| (*b as char).to_digit(16))
        .fold(0, |n, d| n * 16 + d as u64)
}

fn name_at(strings: &[u8], at: u64) -> &[u8] {
    let s = &strings[at as usize..];
    &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
}

const MREMAP_MAYMOVE: usize = 1;
const MREMAP_FIXED: usize = 2;

/// Moves the kernel's vDSO and its data pages to where the image had them: the interpreter's
/// C library calls into the vDSO at the addresses it found at its start.
fn move_specials(own: &mut Own, maps: &[Map], strings: &[u8]) {
    let mut matched = 0;
    for m in maps.iter().filter(|m| m.kind == kind::SPECIAL) {
        let name = name_at(strings, m.path);
        let Some(i) = (0..own.specials).find(|&i| {
            let (s, e, n) = own.special[i];
            &n[..name.len()] == name && n.get(name.len()) == Some(&0) && e - s == m.end - m.start
        }) else {
            fail(step::VDSO, -22);
        };
        let (s, e, _) = own.special[i];
        if s != m.start {
            // Where it is now may be where another of them goes: park it first, past this
            // binary, where no map of the image is (checked: nothing overlaps our range's
            // neighbourhood is not assumed, so check the parking place too).
            let park = own.range.1 + PAGE * (16 + 64 * i as u64);
            let parked = (park, park + (e - s));
            if maps.iter().any(|o| overlaps((o.start, o.end), parked)) {
                fail(step::VDSO, -17);
            }
            // SAFETY: moves a kernel mapping of ours to an address nothing is mapped at.
            check(step::VDSO, unsafe {
                sys::call6(
                    sys::MREMAP,
                    s as usize,
                    (e - s) as usize,
                    (e - s) as usize,
                    MREMAP_MAYMOVE | MREMAP_FIXED,
                    park as usize,
                    0,
                )
            });
            own.special[i].0 = park;
            own.special[i].1 = parked.1;
        }
        matched += 1;
    }
    if matched != own.specials {
        fail(step::VDSO, -22);
    }
    for m in maps.iter().filter(|m| m.kind == kind::SPECIAL) {
        let name = name_at(strings, m.path);
        let i = (0..own.specials)
            .find(|&i| {
                let n = own.special[i].2;
                &n[..name.len()] == name && n.get(name.len()) == Some(&0)
            })
            .unwrap_or_else(|| fail(step::VDSO, -22));
        let (s, e, _) = own.special[i];
        if s != m.start {
            // SAFETY: the target is free: only this binary and the parked mappings are left.
            check(step::VDSO, unsafe {
                sys::call6(
                    sys::MREMAP,
                    s as usize,
                    (e - s) as usize,
                    (e - s) as usize,
                    MREMAP_MAYMOVE | MREMAP_FIXED,
                    m.start as usize,
                    0,
                )
            });
        }
    }
}

const PROT_WRITE: u32 = 2;
const MAP_SHARED: usize = 0x01;
const MAP_PRIVATE: usize = 0x02;
const MAP_FIXED: usize = 0x10;
const MAP_ANONYMOUS: usize = 0x20;
const MAP_GROWSDOWN: usize = 0x100;
const O_RDONLY_CLOEXEC: usize = 0o2000000;

#[repr(C)]
struct Stat {
    dev: u64,
    ino: u64,
    rest: [u64; 16],
}

fn map_all(fd: usize, h: &Header, maps: &[Map], strings: &[u8]) {
    let mut open: (u64, usize) = (0, usize::MAX); // (path offset, descriptor)
    for m in maps {
        let len = (m.end - m.start) as usize;
        let prot = m.prot as usize;
        let r = match m.kind {
            kind::SPECIAL => continue,
            kind::ANON | kind::STACK => {
                let grows = if m.kind == kind::STACK {
                    MAP_GROWSDOWN
                } else {
                    0
                };
                // SAFETY: replaces nothing of ours (checked against our range).
                unsafe {
                    sys::call6(
                        sys::MMAP,
                        m.start as usize,
                        len,
                        prot,
                        MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | grows,
                        usize::MAX,
                        0,
                    )
                }
            }
            kind::DATA => {
                if m.offset % PAGE != 0 || m.offset.saturating_add(len as u64) > h.size {
                    fail(step::MAP, -22);
                }
                // SAFETY: as above; the image's pages, copy-on-write.
                unsafe {
                    sys::call6(
                        sys::MMAP,
                        m.start as usize,
                        len,
                        prot,
                        MAP_PRIVATE | MAP_FIXED,
                        fd,
                        m.offset as usize,
                    )
                }
            }
            kind::FILE | kind::FILE_SHARED => {
                if open.0 != m.path {
                    if open.1 != usize::MAX {
                        // SAFETY: ours.
                        unsafe { sys::call4(sys::CLOSE, open.1, 0, 0, 0) };
                    }
                    let path = &strings[m.path as usize..];
                    // SAFETY: NUL-terminated (the strings end with NUL, checked).
                    let f = check(step::MAP, unsafe {
                        sys::call4(sys::OPEN, path.as_ptr() as usize, O_RDONLY_CLOEXEC, 0, 0)
                    });
                    let mut st = Stat {
                        dev: 0,
                        ino: 0,
                        rest: [0; 16],
                    };
                    // SAFETY: fstat fills a 144-byte struct stat, which `Stat` is.
                    check(step::MAP, unsafe {
                        sys::call4(sys::FSTAT, f, &mut st as *mut Stat as usize, 0, 0)
                    });
                    if st.dev != m.dev || st.ino != m.ino {
                        fail(step::MAP, -116); // ESTALE: not the file the image was made with
                    }
                    open = (m.path, f);
                }
                let share = if m.kind == kind::FILE_SHARED {
                    if m.prot & PROT_WRITE != 0 {
                        fail(step::MAP, -22);
                    }
                    MAP_SHARED
                } else {
                    MAP_PRIVATE
                };
                // SAFETY: as above; the file the image names, checked to be the same one.
                unsafe {
                    sys::call6(
                        sys::MMAP,
                        m.start as usize,
                        len,
                        prot,
                        share | MAP_FIXED,
                        open.1,
                        m.offset as usize,
                    )
                }
            }
            _ => fail(step::MAP, -22),
        };
        if r < 0 {
            fail(step::MAP, r);
        }
        if r as u64 != m.start {
            fail(step::MAP, -14);
        }
    }
    if open.1 != usize::MAX {
        // SAFETY: ours.
        unsafe { sys::call4(sys::CLOSE, open.1, 0, 0, 0) };
    }
    // SAFETY: ours; the maps keep what they need of it.
    unsafe { sys::call4(sys::CLOSE, fd, 0, 0, 0) };
}

const PR_SET_MM: usize = 35;
const PR_SET_MM_MAP: usize = 14;
const ARCH_SET_FS: usize = 0x1002;
const SIG_SETMASK: usize = 2;

#[repr(C)]
struct MmMap {
    layout: image::Layout,
    auxv: u64,
    auxv_size: u32,
    exe_fd: u32,
}

fn resume(h: &Header) -> ! {
    let mm = MmMap {
        layout: h.layout,
        auxv: 0,
        auxv_size: 0,
        exe_fd: u32::MAX,
    };
    // SAFETY: prctl(PR_SET_MM, PR_SET_MM_MAP, &map, size): the kernel reads `mm`.
    check(step::LAYOUT, unsafe {
        sys::call6(
            sys::PRCTL,
            PR_SET_MM,
            PR_SET_MM_MAP,
            &mm as *const MmMap as usize,
            size_of::<MmMap>(),
            0,
            0,
        )
    });
    for (i, a) in h.actions.iter().enumerate() {
        let sig = i + 1;
        if sig == 9 || sig == 19 {
            continue;
        }
        // SAFETY: rt_sigaction(sig, &act, NULL, 8): the kernel reads one sigaction.
        let r = unsafe {
            sys::call4(
                sys::RT_SIGACTION,
                sig,
                a as *const image::Action as usize,
                0,
                8,
            )
        };
        if r < 0 {
            fail(step::SIGNALS, r);
        }
    }
    // SAFETY: rt_sigprocmask(SIG_SETMASK, &mask, NULL, 8).
    check(step::SIGNALS, unsafe {
        sys::call4(
            sys::RT_SIGPROCMASK,
            SIG_SETMASK,
            &h.sigmask as *const u64 as usize,
            0,
            8,
        )
    });
    if h.robust[1] != 0 {
        // SAFETY: registers the restored thread's own list head; the kernel only stores it.
        check(step::THREAD, unsafe {
            sys::call4(
                sys::SET_ROBUST_LIST,
                h.robust[0] as usize,
                h.robust[1] as usize,
                0,
                0,
            )
        });
    }
    if h.rseq[1] != 0 {
        // SAFETY: registers the restored thread's rseq area, mapped above.
        check(step::THREAD, unsafe {
            sys::call4(
                sys::RSEQ,
                h.rseq[0] as usize,
                h.rseq[1] as usize,
                0,
                h.rseq[2] as usize,
            )
        });
    }
    // SAFETY: sets the thread pointer to the restored thread's; nothing here uses it.
    check(step::THREAD, unsafe {
        sys::call4(sys::ARCH_PRCTL, ARCH_SET_FS, h.regs.fs as usize, 0, 0)
    });
    let regs = &h.regs as *const image::Regs;
    // SAFETY: every map of the image is in place; these are the registers `freeze` saved, so
    // this continues the frozen process where its call to `freeze` returns, with 1.
    unsafe {
        core::arch::asm!(
            "ldmxcsr [rdi + 72]",
            "fldcw [rdi + 80]",
            "mov rbx, [rdi]",
            "mov rbp, [rdi + 8]",
            "mov r12, [rdi + 16]",
            "mov r13, [rdi + 24]",
            "mov r14, [rdi + 32]",
            "mov r15, [rdi + 40]",
            "mov rsp, [rdi + 48]",
            "mov rcx, [rdi + 56]",
            "mov eax, 1",
            "jmp rcx",
            in("rdi") regs,
            options(noreturn),
        )
    }
}

/// Slice comparisons compile to `bcmp`, which a program without libc must bring itself.
/// Byte by byte: the restorer compares a few short names.
///
/// # Safety
/// `a` and `b` must be readable for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: within the `n` bytes the caller vouches for.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// As [`bcmp`], for copies.
///
/// # Safety
/// `src` readable and `dst` writable for `n` bytes, not overlapping.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: within the `n` bytes the caller vouches for.
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
    }
    dst
}

/// As [`bcmp`], for fills.
///
/// # Safety
/// `dst` writable for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: within the `n` bytes the caller vouches for.
        unsafe { dst.add(i).write_volatile(c as u8) };
    }
    dst
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(119)
}
