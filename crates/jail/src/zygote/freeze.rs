//! Freezing an interpreter into an image (`crates/restore/src/image.rs`), from inside it: the
//! "restore, not fork" path of docs/security.md. The interpreter, single-threaded after its
//! imports, calls [`airlock_freeze`] with a descriptor to write the image to. The call saves the
//! registers a call preserves, writes the process's memory map, the changed memory, its signal
//! state and thread registrations, and returns 0. A process the restorer rebuilds from the image
//! resumes at the same place, the call returning 1 there.
//!
//! Nothing here allocates: the process's heap is copied as it stands, so whatever this code
//! held on it during the copy would be held for ever in every restored process. Its working
//! memory is a mapping of its own, left out of the image.

use std::os::raw::c_int;
use std::ptr;

#[path = "../../../restore/src/image.rs"]
pub(crate) mod image;

use image::{Action, Header, Layout, Map, PAGE, Regs, kind};

/// Where [`airlock_freeze`] saves its caller's registers; read back by [`dump`].
struct Context(std::cell::UnsafeCell<Regs>);
// SAFETY: written only by `airlock_freeze` and read by `dump`, on the one thread of a process
// that freezes (it refuses with more than one).
unsafe impl Sync for Context {}
static CONTEXT: Context = Context(std::cell::UnsafeCell::new(Regs {
    rbx: 0,
    rbp: 0,
    r12: 0,
    r13: 0,
    r14: 0,
    r15: 0,
    rsp: 0,
    rip: 0,
    fs: 0,
    mxcsr: 0,
    fpucw: 0,
}));

/// Freezes this process into `fd`: 0 when frozen, 1 in a restored process, -errno on failure.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn airlock_freeze(fd: c_int) -> c_int {
    // Saved as setjmp does: callee-saved registers, the stack pointer and return address as
    // they are once this call returns, the FPU control words. Then `dump` returns for us.
    core::arch::naked_asm!(
        "lea rax, [rip + {ctx}]",
        "mov [rax], rbx",
        "mov [rax + 8], rbp",
        "mov [rax + 16], r12",
        "mov [rax + 24], r13",
        "mov [rax + 32], r14",
        "mov [rax + 40], r15",
        "lea rcx, [rsp + 8]",
        "mov [rax + 48], rcx",
        "mov rcx, [rsp]",
        "mov [rax + 56], rcx",
        "stmxcsr [rax + 72]",
        "fnstcw [rax + 80]",
        "jmp {dump}",
        ctx = sym CONTEXT,
        dump = sym dump,
    )
}

const SCRATCH: usize = 16 << 20;
const MAPS_TEXT: usize = 4 << 20;
const MAX_MAPS: usize = 32 * 1024;
const STRINGS: usize = 1 << 20;
const PAGEMAP_PAGES: usize = 64 * 1024;
const RSEQ_SIG: u64 = 0x5305_3053;
const ARCH_GET_FS: i64 = 0x1003;

/// The working memory: one anonymous mapping, carved into fixed parts.
struct Scratch {
    base: *mut u8,
    text: &'static mut [u8],
    maps: &'static mut [Map],
    strings: &'static mut [u8],
    pagemap: &'static mut [u64],
}

impl Scratch {
    fn new() -> Result<Self, c_int> {
        // SAFETY: a fresh private anonymous mapping, owned by this value alone.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                SCRATCH,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(-errno());
        }
        let base = base.cast::<u8>();
        let maps_bytes = MAX_MAPS * size_of::<Map>();
        let pagemap_bytes = PAGEMAP_PAGES * 8;
        assert!(MAPS_TEXT + maps_bytes + STRINGS + pagemap_bytes <= SCRATCH);
        // SAFETY: disjoint parts of the mapping above, each aligned for its type (the parts
        // start at multiples of 8), alive until `Drop` unmaps it after their last use.
        unsafe {
            Ok(Scratch {
                base,
                text: std::slice::from_raw_parts_mut(base, MAPS_TEXT),
                maps: std::slice::from_raw_parts_mut(base.add(MAPS_TEXT).cast(), MAX_MAPS),
                strings: std::slice::from_raw_parts_mut(base.add(MAPS_TEXT + maps_bytes), STRINGS),
                pagemap: std::slice::from_raw_parts_mut(
                    base.add(MAPS_TEXT + maps_bytes + STRINGS).cast(),
                    PAGEMAP_PAGES,
                ),
            })
        }
    }

    fn range(&self) -> (u64, u64) {
        (self.base as u64, self.base as u64 + SCRATCH as u64)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: the mapping `new` made; nothing refers to it after this.
        unsafe { libc::munmap(self.base.cast(), SCRATCH) };
    }
}

fn errno() -> c_int {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

extern "C" fn dump(fd: c_int) -> c_int {
    match dump_to(fd) {
        Ok(()) => 0,
        Err(e) => e,
    }
}

fn dump_to(fd: c_int) -> Result<(), c_int> {
    let mut s = Scratch::new()?;
    if threads(&mut s)? != 1 {
        return Err(-libc::EBUSY);
    }
    // SAFETY: CONTEXT was written by `airlock_freeze` just before this call, on this thread.
    let mut regs = unsafe { *CONTEXT.0.get() };
    // SAFETY: arch_prctl(ARCH_GET_FS) writes one u64 to the address given.
    if unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_GET_FS, &mut regs.fs as *mut u64) } != 0 {
        return Err(-errno());
    }
    let mut h = Header {
        magic: image::MAGIC,
        size: 0,
        regs,
        sigmask: 0,
        actions: [Action::default(); 64],
        layout: layout(&mut s)?,
        rseq: rseq(regs.fs),
        robust: [0; 2],
        maps: 0,
        maps_at: 0,
        strings_at: 0,
        strings_len: 0,
    };
    for (i, a) in h.actions.iter_mut().enumerate() {
        // SAFETY: rt_sigaction(sig, NULL, &old, 8) writes one kernel sigaction.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                i as i64 + 1,
                ptr::null::<Action>(),
                a as *mut Action,
                8,
            )
        };
    }
    // SAFETY: rt_sigprocmask(SIG_BLOCK, NULL, &old, 8) writes the 8-byte mask.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            ptr::null::<u64>(),
            &mut h.sigmask as *mut u64,
            8,
        )
    };
    let (mut head, mut len) = (0u64, 0u64);
    // SAFETY: get_robust_list(0, &head, &len) writes a pointer and a length.
    if unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0,
            &mut head as *mut u64,
            &mut len as *mut u64,
        )
    } == 0
    {
        h.robust = [head, len];
    }

    let (count, strings_len, data_len) = plan_maps(&mut s)?;
    let maps_at = size_of::<Header>() as u64;
    let strings_at = maps_at + (count * size_of::<Map>()) as u64;
    let data_at = align_up(strings_at + strings_len as u64);
    for m in s.maps[..count].iter_mut() {
        if m.kind == kind::DATA {
            m.offset += data_at;
        }
    }
    // The memory first: what the process holds does not change while it is written.
    for m in &s.maps[..count] {
        if m.kind == kind::DATA {
            write_at(
                fd,
                m.start as *const u8,
                (m.end - m.start) as usize,
                m.offset,
            )?;
        }
    }
    h.size = data_at + data_len;
    h.maps = count as u64;
    h.maps_at = maps_at;
    h.strings_at = strings_at;
    h.strings_len = strings_len as u64;
    // SAFETY: `s.maps[..count]` is initialized `Map`s, plain data.
    let maps_bytes = unsafe {
        std::slice::from_raw_parts(s.maps.as_ptr().cast::<u8>(), count * size_of::<Map>())
    };
    write_at(fd, maps_bytes.as_ptr(), maps_bytes.len(), maps_at)?;
    write_at(fd, s.strings.as_ptr(), strings_len, strings_at)?;
    // SAFETY: a `Header` is plain data.
    let head_bytes = unsafe {
        std::slice::from_raw_parts((&h as *const Header).cast::<u8>(), size_of::<Header>())
    };
    write_at(fd, head_bytes.as_ptr(), head_bytes.len(), 0)?;
    // SAFETY: ftruncate on the caller's descriptor.
    if unsafe { libc::ftruncate(fd, h.size as i64) } != 0 {
        return Err(-errno());
    }
    Ok(())
}

/// Pages without data that a DATA entry may span between two with (see `data_runs`).
const DATA_GAP: u64 = 8;

fn align_up(n: u64) -> u64 {
    n.div_ceil(PAGE) * PAGE
}

fn write_at(fd: c_int, mut p: *const u8, mut len: usize, mut off: u64) -> Result<(), c_int> {
    while len > 0 {
        // SAFETY: `p..p+len` is readable memory of this process (a readable mapping, or our
        // own buffers).
        let n = unsafe { libc::pwrite(fd, p.cast(), len, off as i64) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(-e);
        }
        if n == 0 {
            return Err(-libc::EIO);
        }
        let n = n as usize;
        // SAFETY: still within the range above.
        p = unsafe { p.add(n) };
        len -= n;
        off += n as u64;
    }
    Ok(())
}

/// Reads the file at `path` (NUL-terminated) into `buf`; returns the length read.
fn read_file(path: &[u8], buf: &mut [u8]) -> Result<usize, c_int> {
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(-errno());
    }
    let mut got = 0;
    let r = loop {
        if got == buf.len() {
            break Err(-libc::EFBIG);
        }
        // SAFETY: the unfilled rest of `buf`.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            break Err(-errno());
        }
        if n == 0 {
            break Ok(got);
        }
        got += n as usize;
    };
    // SAFETY: ours.
    unsafe { libc::close(fd) };
    r
}

fn threads(s: &mut Scratch) -> Result<usize, c_int> {
    let n = read_file(b"/proc/self/status\0", s.text)?;
    let text = &s.text[..n];
    for line in text.split(|&b| b == b'\n') {
        if let Some(v) = line.strip_prefix(b"Threads:") {
            return Ok(parse_dec(v.trim_ascii()) as usize);
        }
    }
    Err(-libc::EINVAL)
}

fn parse_dec(v: &[u8]) -> u64 {
    v.iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0, |n, b| n * 10 + u64::from(b - b'0'))
}

fn parse_hex(v: &[u8]) -> u64 {
    v.iter()
        .map_while(|b| (*b as char).to_digit(16))
        .fold(0, |n, d| n * 16 + u64::from(d))
}

/// The address-space fields of `/proc/self/stat` that `PR_SET_MM_MAP` takes.
fn layout(s: &mut Scratch) -> Result<Layout, c_int> {
    let n = read_file(b"/proc/self/stat\0", s.text)?;
    let text = &s.text[..n];
    // Fields after the command name, which may hold anything but ends at the last ')'.
    let close = text.iter().rposition(|&b| b == b')').ok_or(-libc::EINVAL)?;
    let mut f = [0u64; 52];
    // Field 3 (state) is the first after the name.
    for (i, v) in text[close + 1..]
        .split(|&b| b == b' ')
        .filter(|v| !v.is_empty())
        .enumerate()
    {
        if 3 + i < f.len() {
            f[3 + i] = parse_dec(v);
        }
    }
    // SAFETY: brk(0) only reports the current break.
    let brk = unsafe { libc::syscall(libc::SYS_brk, 0) } as u64;
    Ok(Layout {
        start_code: f[26],
        end_code: f[27],
        start_stack: f[28],
        start_data: f[45],
        end_data: f[46],
        start_brk: f[47],
        brk,
        arg_start: f[48],
        arg_end: f[49],
        env_start: f[50],
        env_end: f[51],
    })
}

/// glibc's registration of this thread's rseq area, from the symbols it exports for it.
fn rseq(fs: u64) -> [u64; 3] {
    // SAFETY: dlsym with a NUL-terminated name; the symbols, where present, are glibc's
    // `ptrdiff_t __rseq_offset` and `unsigned int __rseq_size`.
    unsafe {
        let off = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr());
        let size = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr());
        if off.is_null() || size.is_null() {
            return [0; 3];
        }
        let size = u64::from(*size.cast::<u32>());
        if size == 0 {
            return [0; 3];
        }
        let addr = fs.wrapping_add(*off.cast::<isize>() as u64);
        // glibc registers the area with the original 32-byte length even when it reports
        // the size of the fields it uses.
        [addr, size.max(32).div_ceil(32) * 32, RSEQ_SIG]
    }
}

/// Turns `/proc/self/smaps` into the image's map entries. Returns (entries, bytes of strings,
/// bytes of memory to write).
fn plan_maps(s: &mut Scratch) -> Result<(usize, usize, u64), c_int> {
    // smaps, not maps, for each map's flags: memory the kernel wipes on fork or may drop
    // (`wf`, `dp`: the state of a random generator, say) must not be copied into every run.
    let n = read_file(b"/proc/self/smaps\0", s.text)?;
    // SAFETY: a NUL-terminated path.
    let pagemap = unsafe {
        libc::open(
            c"/proc/self/pagemap".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    let (skip_lo, skip_hi) = s.range();
    let mut out = Planner {
        maps: &mut s.maps[..],
        count: 0,
        strings: &mut s.strings[..],
        strings_len: 1, // offset 0: no name
        data: 0,
        pagemap,
        buf: &mut s.pagemap[..],
        root_dev: root_dev(),
    };
    let r = (|| {
        let mut pending: Option<Line> = None;
        let mut take = |line: Option<Line>, wiped: bool| -> Result<(), c_int> {
            let Some(line) = line else { return Ok(()) };
            if line.end <= skip_lo || line.start >= skip_hi {
                out.add(&line, wiped)
            } else if line.start < skip_lo || line.end > skip_hi {
                Err(-libc::EINVAL) // merged with its neighbour: cannot leave it out
            } else {
                Ok(())
            }
        };
        for line in s.text[..n].split(|&b| b == b'\n') {
            match line.first() {
                // A map's first line begins with its address in lowercase hex; its fields'
                // lines with a capitalized name, `VmFlags` last.
                Some(b'0'..=b'9' | b'a'..=b'f') => {
                    take(pending.take(), false)?;
                    pending = Some(parse_line(line).ok_or(-libc::EINVAL)?);
                }
                _ => {
                    if let Some(flags) = line.strip_prefix(b"VmFlags:") {
                        let wiped = flags
                            .split(|&b| b == b' ')
                            .any(|f| f == b"wf" || f == b"dp");
                        take(pending.take(), wiped)?;
                    }
                }
            }
        }
        take(pending.take(), false)?;
        Ok((out.count, out.strings_len, out.data))
    })();
    if pagemap >= 0 {
        // SAFETY: ours.
        unsafe { libc::close(pagemap) };
    }
    r
}

fn root_dev() -> u64 {
    // SAFETY: a zeroed stat is a valid buffer; "/" is NUL-terminated.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::stat(c"/".as_ptr(), &mut st) == 0 {
            st.st_dev
        } else {
            u64::MAX
        }
    }
}

struct Line<'a> {
    start: u64,
    end: u64,
    prot: u32,
    shared: bool,
    offset: u64,
    dev: u64,
    ino: u64,
    path: &'a [u8],
}

fn parse_line(line: &[u8]) -> Option<Line<'_>> {
    let mut fields = line.splitn(6, |&b| b == b' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let offset = parse_hex(fields.next()?);
    let dev = fields.next()?;
    let ino = parse_dec(fields.next()?);
    let path = fields.next().unwrap_or_default().trim_ascii_start();
    let dash = range.iter().position(|&b| b == b'-')?;
    let colon = dev.iter().position(|&b| b == b':')?;
    if perms.len() < 4 {
        return None;
    }
    let mut prot = 0;
    if perms[0] == b'r' {
        prot |= libc::PROT_READ as u32;
    }
    if perms[1] == b'w' {
        prot |= libc::PROT_WRITE as u32;
    }
    if perms[2] == b'x' {
        prot |= libc::PROT_EXEC as u32;
    }
    Some(Line {
        start: parse_hex(&range[..dash]),
        end: parse_hex(&range[dash + 1..]),
        prot,
        shared: perms[3] == b's',
        offset,
        dev: libc::makedev(
            parse_hex(&dev[..colon]) as u32,
            parse_hex(&dev[colon + 1..]) as u32,
        ),
        ino,
        path,
    })
}

struct Planner<'a> {
    maps: &'a mut [Map],
    count: usize,
    strings: &'a mut [u8],
    strings_len: usize,
    data: u64,
    pagemap: c_int,
    buf: &'a mut [u64],
    /// The device of this sandbox's root.
    root_dev: u64,
}

const PM_PRESENT: u64 = 1 << 63;
const PM_SWAPPED: u64 = 1 << 62;
const PM_FILE: u64 = 1 << 61;

impl Planner<'_> {
    fn push(&mut self, m: Map) -> Result<(), c_int> {
        if self.count == self.maps.len() {
            return Err(-libc::E2BIG);
        }
        self.maps[self.count] = m;
        self.count += 1;
        Ok(())
    }

    /// Stores `name` NUL-terminated; returns its offset.
    fn string(&mut self, name: &[u8]) -> Result<u64, c_int> {
        let at = self.strings_len;
        if at + name.len() + 1 > self.strings.len() {
            return Err(-libc::E2BIG);
        }
        self.strings[at..at + name.len()].copy_from_slice(name);
        self.strings[at + name.len()] = 0;
        self.strings_len += name.len() + 1;
        Ok(at as u64)
    }

    /// Adds the entries for one map; a `wiped` one (wipe-on-fork, droppable) as zeros.
    fn add(&mut self, l: &Line, wiped: bool) -> Result<(), c_int> {
        let readable = l.prot & libc::PROT_READ as u32 != 0;
        let writable = l.prot & libc::PROT_WRITE as u32 != 0;
        let base = Map {
            start: l.start,
            end: l.end,
            prot: l.prot,
            ..Map::default()
        };
        if l.path == b"[vsyscall]" {
            return Ok(()); // at the same fixed address in every process
        }
        if matches!(l.path, b"[vdso]" | b"[vvar]" | b"[vvar_vclock]") {
            let path = self.string(l.path)?;
            return self.push(Map {
                kind: kind::SPECIAL,
                path,
                ..base
            });
        }
        if wiped && !l.shared {
            return self.push(Map {
                kind: kind::ANON,
                ..base
            });
        }
        let file = l.ino != 0 && l.path.starts_with(b"/");
        let same = file && self.same_file(l)?;
        if l.shared {
            // Only a read-only file's shared mapping can be frozen: any other is memory that
            // the frozen process shares with some other, which a restored one must not.
            if !same || writable {
                return Err(-libc::ENOTSUP);
            }
            let path = self.string(l.path)?;
            return self.push(Map {
                kind: kind::FILE_SHARED,
                offset: l.offset,
                path,
                dev: l.dev,
                ino: l.ino,
                ..base
            });
        }
        if same {
            let path = self.string(l.path)?;
            self.push(Map {
                kind: kind::FILE,
                offset: l.offset,
                path,
                dev: l.dev,
                ino: l.ino,
                ..base
            })?;
            // Pages written since (relocations, a module's data) are anonymous now.
            return if readable {
                self.data_runs(
                    l,
                    |e| e & PM_SWAPPED != 0 || (e & PM_PRESENT != 0 && e & PM_FILE == 0),
                    false,
                )
            } else {
                Ok(())
            };
        }
        let kind = if l.path == b"[stack]" {
            kind::STACK
        } else {
            kind::ANON
        };
        self.push(Map { kind, ..base })?;
        if !readable {
            return Ok(());
        }
        if file {
            // A file that is not there any more, or another one now: all of it, as it reads.
            self.data_runs(l, |_| true, false)
        } else {
            self.data_runs(l, |e| e & (PM_PRESENT | PM_SWAPPED) != 0, true)
        }
    }

    /// Whether a restored process can map the file again by its path: the path still names
    /// the mapped file (not one replaced since), and it is on a read-only mount that is not
    /// this sandbox's own root (whose files, written at each sandbox's start, are other files
    /// in another sandbox). The environment's and the system's files are read-only binds of the
    /// host's, the same files in every sandbox.
    fn same_file(&mut self, l: &Line) -> Result<bool, c_int> {
        if l.path.ends_with(b" (deleted)") {
            return Ok(false);
        }
        let at = self.string(l.path)? as usize;
        let path = self.strings[at..].as_ptr().cast::<libc::c_char>();
        // SAFETY: zeroed stat and statvfs are valid buffers for the kernel to fill.
        let (mut st, mut vfs): (libc::stat, libc::statvfs) = unsafe { std::mem::zeroed() };
        // SAFETY: `path` begins a NUL-terminated copy of the path; the buffers are ours.
        let ok = unsafe { libc::stat(path, &mut st) == 0 && libc::statvfs(path, &mut vfs) == 0 };
        self.strings_len = at; // only a probe: the caller stores the name it keeps
        Ok(ok
            && st.st_dev == l.dev
            && st.st_ino == l.ino
            && vfs.f_flag & libc::ST_RDONLY != 0
            && st.st_dev != self.root_dev)
    }

    /// Adds a DATA entry for each run of pages whose pagemap entry `has_data`; with
    /// `skip_zero`, pages that read as zeros are left to the anonymous map below.
    fn data_runs(
        &mut self,
        l: &Line,
        has_data: impl Fn(u64) -> bool,
        skip_zero: bool,
    ) -> Result<(), c_int> {
        let pages = (l.end - l.start) / PAGE;
        let mut run: Option<u64> = None; // first page of the current run
        // The first page past the current run's data, while pages without any follow it: a
        // gap of up to `DATA_GAP` pages is written too, as one mapping costs a restore more
        // than copying a few pages into the image does.
        let mut gap: Option<u64> = None;
        let mut done = 0u64;
        while done < pages {
            let chunk = (pages - done).min(self.buf.len() as u64);
            let known = self.pagemap >= 0 && {
                let first = l.start / PAGE + done;
                // SAFETY: `buf` holds `chunk` u64s.
                let n = unsafe {
                    libc::pread(
                        self.pagemap,
                        self.buf.as_mut_ptr().cast(),
                        chunk as usize * 8,
                        (first * 8) as i64,
                    )
                };
                n == chunk as isize * 8
            };
            for i in 0..chunk {
                let page = done + i;
                let addr = l.start + page * PAGE;
                let mut keep = !known || has_data(self.buf[i as usize]);
                if keep && skip_zero {
                    // SAFETY: a page of a readable mapping of this process.
                    let bytes =
                        unsafe { std::slice::from_raw_parts(addr as *const u8, PAGE as usize) };
                    keep = bytes.iter().any(|&b| b != 0);
                }
                match (keep, run, gap) {
                    (true, None, _) => run = Some(page),
                    (true, Some(_), Some(_)) => gap = None,
                    (false, Some(_), None) => gap = Some(page),
                    (false, Some(first), Some(past)) if page - past >= DATA_GAP => {
                        self.data(l, first, past)?;
                        (run, gap) = (None, None);
                    }
                    _ => {}
                }
            }
            done += chunk;
        }
        if let Some(first) = run {
            self.data(l, first, gap.unwrap_or(pages))?;
        }
        Ok(())
    }

    fn data(&mut self, l: &Line, first: u64, past: u64) -> Result<(), c_int> {
        let len = (past - first) * PAGE;
        let offset = self.data;
        self.data += len;
        self.push(Map {
            start: l.start + first * PAGE,
            end: l.start + past * PAGE,
            prot: l.prot,
            kind: kind::DATA,
            offset,
            ..Map::default()
        })
    }
}
