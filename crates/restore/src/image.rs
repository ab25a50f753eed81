//! The layout of a frozen interpreter's image, shared by the side that writes it (the jail's
//! `freeze`, inside the interpreter) and the restorer that reads it (this crate). All fields are
//! native-endian, the image is only ever read on the machine that wrote it.
//!
//! ```text
//! offset 0            Header
//! header.maps_at      [Map; header.maps]
//! header.strings_at   NUL-terminated paths and names, which maps name by offset
//! page-aligned        the memory: each DATA map's pages at its `offset`
//! ```
//!
//! The restorer maps the entries in order, each at its address with `MAP_FIXED`, so a later
//! entry overlays an earlier one: an anonymous region first, then the runs of its pages that
//! held data.

/// "AIRLKIM1".
pub const MAGIC: u64 = u64::from_le_bytes(*b"AIRLKIM1");

/// Pages are 4 KiB on every target airlock builds for (x86_64, aarch64 with 4 KiB pages).
pub const PAGE: u64 = 4096;

/// The registers a function call preserves, saved where the interpreter called `freeze`: the
/// restored process resumes there, as if that call had returned 1.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Regs {
    pub rbx: u64,
    pub rbp: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    /// The caller's stack pointer after the call returned (the return address popped).
    pub rsp: u64,
    /// The return address.
    pub rip: u64,
    /// The thread pointer (`ARCH_SET_FS`).
    pub fs: u64,
    pub mxcsr: u64,
    pub fpucw: u64,
}

/// The kernel's `struct sigaction` on x86_64 (what `rt_sigaction` reads and writes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Action {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// The address-space layout fields of `PR_SET_MM_MAP` (`struct prctl_mm_map` without the
/// auxiliary vector and the executable, which stay the restorer's).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Layout {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Header {
    pub magic: u64,
    /// The whole image's size in bytes.
    pub size: u64,
    pub regs: Regs,
    /// The blocked signals.
    pub sigmask: u64,
    /// Signals 1 to 64, at index `signal - 1`.
    pub actions: [Action; 64],
    pub layout: Layout,
    /// The thread's `rseq` area: address, length, signature (length 0: none registered).
    pub rseq: [u64; 3],
    /// The thread's robust futex list: head and length (0: none).
    pub robust: [u64; 2],
    pub maps: u64,
    pub maps_at: u64,
    pub strings_at: u64,
    pub strings_len: u64,
}

/// What a [`Map`] is and where its contents come from.
pub mod kind {
    /// Anonymous memory, zero-filled.
    pub const ANON: u32 = 0;
    /// The image's bytes at `offset`, mapped privately.
    pub const DATA: u32 = 1;
    /// The file at `path`, mapped privately from its `offset`; it must still be `dev`/`ino`.
    pub const FILE: u32 = 2;
    /// The same, mapped shared (read-only: only a read-only file's shared mapping is frozen).
    pub const FILE_SHARED: u32 = 3;
    /// The kernel's own mapping named `path` (`[vdso]`, `[vvar]`, …), moved here.
    pub const SPECIAL: u32 = 4;
    /// The main thread's stack: anonymous, growing down.
    pub const STACK: u32 = 5;
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Map {
    pub start: u64,
    pub end: u64,
    /// `PROT_*` bits.
    pub prot: u32,
    pub kind: u32,
    /// For DATA, the offset in the image; for FILE, the offset in the file.
    pub offset: u64,
    /// For FILE and SPECIAL, the offset of the name in the strings.
    pub path: u64,
    pub dev: u64,
    pub ino: u64,
}
