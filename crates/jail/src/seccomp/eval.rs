//! Runs compiled filters in user space, over every syscall number and the argument values the
//! filters test, so that claims about them hold for every call rather than for the few that a
//! child can be made to try. It interprets what the kernel does (`kernel/seccomp.c`): each
//! filter of a stack is run, the answer of highest precedence wins, and among equal ones the
//! most recently installed filter's.

use super::{Profile, SeccompProgram, compiled, imp};

/// `struct seccomp_data` as the kernel lays it out.
#[derive(Clone, Copy, Debug)]
struct Data {
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}

impl Data {
    /// The 32-bit word at byte `offset`, in the machine's byte order (what `BPF_LD|BPF_ABS`
    /// reads); `None` outside the structure or unaligned, which the kernel refuses to load.
    fn word(&self, offset: u32) -> Option<u32> {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&self.nr.to_ne_bytes());
        bytes.extend_from_slice(&self.arch.to_ne_bytes());
        bytes.extend_from_slice(&self.ip.to_ne_bytes());
        for a in self.args {
            bytes.extend_from_slice(&a.to_ne_bytes());
        }
        let o = offset as usize;
        if !o.is_multiple_of(4) || o + 4 > bytes.len() {
            return None;
        }
        Some(u32::from_ne_bytes(bytes[o..o + 4].try_into().ok()?))
    }
}

/// What one filter answers for `data`. Panics on an instruction the kernel would refuse or
/// that this evaluator does not know: the test then says so instead of guessing.
fn run(insns: &[libc::sock_filter], data: &Data) -> u32 {
    run_counted(insns, data).0
}

/// [`run`], and how many instructions it took to answer.
fn run_counted(insns: &[libc::sock_filter], data: &Data) -> (u32, usize) {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; 16];
    let mut pc = 0usize;
    let mut steps = 0;
    loop {
        steps += 1;
        let i = insns
            .get(pc)
            .unwrap_or_else(|| panic!("filter ran off its end at {pc}"));
        let code = u32::from(i.code);
        pc += 1;
        let src = if code & 0x08 == libc::BPF_X { x } else { i.k };
        match code & 0x07 {
            libc::BPF_LD => {
                a = match (code & 0x18, code & 0xe0) {
                    (libc::BPF_W, libc::BPF_ABS) => data
                        .word(i.k)
                        .unwrap_or_else(|| panic!("bad load offset {} at {}", i.k, pc - 1)),
                    (_, libc::BPF_IMM) => i.k,
                    (_, libc::BPF_MEM) => mem[i.k as usize],
                    _ => panic!("unsupported load {code:#x} at {}", pc - 1),
                }
            }
            libc::BPF_LDX => {
                x = match code & 0xe0 {
                    libc::BPF_IMM => i.k,
                    libc::BPF_MEM => mem[i.k as usize],
                    _ => panic!("unsupported ldx {code:#x} at {}", pc - 1),
                }
            }
            libc::BPF_ST => mem[i.k as usize] = a,
            libc::BPF_STX => mem[i.k as usize] = x,
            libc::BPF_ALU => {
                a = match code & 0xf0 {
                    libc::BPF_ADD => a.wrapping_add(src),
                    libc::BPF_SUB => a.wrapping_sub(src),
                    libc::BPF_MUL => a.wrapping_mul(src),
                    libc::BPF_AND => a & src,
                    libc::BPF_OR => a | src,
                    libc::BPF_LSH => a.wrapping_shl(src),
                    libc::BPF_RSH => a.wrapping_shr(src),
                    libc::BPF_NEG => a.wrapping_neg(),
                    _ => panic!("unsupported alu {code:#x} at {}", pc - 1),
                }
            }
            libc::BPF_JMP => {
                let taken = match code & 0xf0 {
                    libc::BPF_JA => {
                        pc += i.k as usize;
                        continue;
                    }
                    libc::BPF_JEQ => a == src,
                    libc::BPF_JGT => a > src,
                    libc::BPF_JGE => a >= src,
                    libc::BPF_JSET => a & src != 0,
                    _ => panic!("unsupported jump {code:#x} at {}", pc - 1),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            libc::BPF_RET => {
                let ret = match code & 0x18 {
                    libc::BPF_K => i.k,
                    0x10 => a, // BPF_A
                    _ => panic!("unsupported ret {code:#x} at {}", pc - 1),
                };
                return (ret, steps);
            }
            libc::BPF_MISC => match code & 0xf8 {
                0x00 => x = a, // BPF_TAX
                0x80 => a = x, // BPF_TXA
                _ => panic!("unsupported misc {code:#x} at {}", pc - 1),
            },
            _ => panic!("unknown class {code:#x} at {}", pc - 1),
        }
    }
}

/// The kernel's precedence: the smaller `SECCOMP_RET_ACTION_FULL` as a signed number wins
/// (KILL_PROCESS, KILL_THREAD, TRAP, ERRNO, USER_NOTIF, TRACE, LOG, ALLOW).
fn precedence(ret: u32) -> i32 {
    (ret & libc::SECCOMP_RET_ACTION_FULL) as i32
}

/// What a stack answers, `stack[0]` installed first: every filter runs, newest first, and
/// one replaces the answer only with a strictly higher-precedence one.
fn answer(stack: &[&SeccompProgram], data: &Data) -> u32 {
    let mut best: Option<u32> = None;
    for program in stack.iter().rev() {
        let ret = run(&program.insns, data);
        if best.is_none_or(|b| precedence(ret) < precedence(b)) {
            best = Some(ret);
        }
    }
    best.expect("an empty stack")
}

const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;

/// Every call the tests put to the filters: each syscall number (and its x32 alias) on both
/// architectures, with each argument value any rule tests, alone and with garbage in the
/// upper half (which the kernel ignores for `int` arguments and so must the filter).
fn calls() -> Vec<Data> {
    let mut values: Vec<u64> = vec![0, 1, u64::from(u32::MAX), u64::MAX];
    let int = |v: libc::c_int| v as u32 as u64;
    values.extend(imp::NAMESPACE_FLAGS.map(int));
    values.extend(
        [
            libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::SIGCHLD,
            libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND,
            libc::SIGCHLD,
            libc::AF_UNIX,
            libc::AF_INET,
            libc::AF_INET6,
            libc::AF_NETLINK,
            libc::AF_PACKET,
            libc::AF_VSOCK,
            0x0000,      // PER_LINUX
            0x0006,      // PER_BSD
            0x0040_0000, // READ_IMPLIES_EXEC
        ]
        .map(int),
    );
    values.extend([libc::TIOCSTI, libc::TIOCLINUX, libc::FIONREAD]);
    let with_garbage: Vec<u64> = values
        .iter()
        .flat_map(|&v| [v, v | 0xdead_beef_0000_0000])
        .collect();
    let mut out = Vec::new();
    let mut nrs: Vec<i32> = (0..1024).collect();
    nrs.extend((0..1024).map(|n| n | imp::X32_SYSCALL_BIT as i32));
    nrs.extend([-1, i32::MAX, i32::MIN]);
    for arch in [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, 0] {
        for &nr in &nrs {
            let base = Data {
                nr,
                arch,
                ip: 0,
                args: [0; 6],
            };
            out.push(base);
            for &v in &with_garbage {
                for slot in [0, 1] {
                    let mut d = base;
                    d.args[slot] = v;
                    out.push(d);
                }
            }
        }
    }
    out
}

fn program(p: Profile) -> &'static SeccompProgram {
    compiled(p).expect("the filter builds")
}

/// The evaluator agrees with what the in-kernel tests of `mod tests` observe, so that an
/// equivalence it finds is the kernel's.
#[test]
fn the_evaluator_answers_as_the_kernel_does() {
    let run = [program(Profile::Run)];
    let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let allow = libc::SECCOMP_RET_ALLOW;
    let cases: &[(i64, &[u64], u32)] = &[
        (libc::SYS_getpid, &[], allow),
        (libc::SYS_ptrace, &[], eperm),
        (libc::SYS_unshare, &[0], eperm),
        (
            libc::SYS_clone3,
            &[],
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        ),
        (libc::SYS_socket, &[libc::AF_NETLINK as u64], eperm),
        (libc::SYS_socket, &[libc::AF_INET as u64], allow),
        (
            libc::SYS_ioctl,
            &[0, libc::TIOCSTI | 0xdead_beef_0000_0000],
            eperm,
        ),
        (libc::SYS_clone, &[libc::CLONE_NEWNET as u64], eperm),
        (libc::SYS_clone, &[libc::SIGCHLD as u64], allow),
        (
            libc::SYS_getpid | imp::X32_SYSCALL_BIT as i64,
            &[],
            libc::SECCOMP_RET_KILL_PROCESS,
        ),
    ];
    for &(nr, args, want) in cases {
        let mut d = Data {
            nr: nr as i32,
            arch: AUDIT_ARCH_X86_64,
            ip: 0,
            args: [0; 6],
        };
        d.args[..args.len()].copy_from_slice(args);
        assert_eq!(answer(&run, &d), want, "{d:?}");
    }
    let mut i386 = Data {
        nr: 20,
        arch: AUDIT_ARCH_I386,
        ip: 0,
        args: [0; 6],
    };
    assert_eq!(answer(&run, &i386), libc::SECCOMP_RET_KILL_PROCESS);
    i386.nr = -1;
    assert_eq!(answer(&run, &i386), libc::SECCOMP_RET_KILL_PROCESS);
}

/// A zygote child's stack (the zygote's filter, then its delta) answers every call exactly as
/// the run filter does: same action, same errno.
#[test]
fn a_zygote_child_stack_is_the_run_filter_for_every_call() {
    let run = [program(Profile::Run)];
    let stack = [program(Profile::Zygote), program(Profile::ZygoteRun)];
    let zygote = [program(Profile::Zygote)];
    let mut differs_alone = 0;
    for d in calls() {
        let want = answer(&run, &d);
        assert_eq!(
            answer(&stack, &d),
            want,
            "the zygote child's stack and the run filter differ for {d:?}"
        );
        if answer(&zygote, &d) != want {
            differs_alone += 1;
        }
    }
    // The comparison has teeth: without the delta, the zygote's filter answers differently
    // (it allows mount, mount_setattr and unshare).
    assert!(differs_alone > 0, "the zygote's filter alone is the run's");
}

/// The binary search in front of seccompiler's program changes no answer: with and without it,
/// each profile's filter answers every call the same.
#[test]
fn the_dispatch_changes_no_answer() {
    for profile in [Profile::Run, Profile::Zygote, Profile::ZygoteRun] {
        let with = imp::build_with(profile, true).expect("the filter builds");
        let without = imp::build_with(profile, false).expect("the filter builds");
        // Beyond `calls()` (every number below 1024): each edge of the search's ranges and the
        // extremes. The search compares the number with range edges only, so these cover every
        // number it can be given.
        let mut edges: Vec<i32> = vec![0, 1024, 4095, i32::MAX, i32::MIN, -1];
        edges.extend([imp::X32_SYSCALL_BIT as i32 - 1, imp::X32_SYSCALL_BIT as i32]);
        for nr in imp::ruled(profile) {
            edges.extend([nr as i32 - 1, nr as i32, nr as i32 + 1]);
        }
        let edge_calls = edges.into_iter().flat_map(|nr| {
            [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386].map(|arch| Data {
                nr,
                arch,
                ip: 0,
                args: [0; 6],
            })
        });
        for d in calls().into_iter().chain(edge_calls) {
            assert_eq!(
                run(&with.insns, &d),
                run(&without.insns, &d),
                "{profile:?} with and without the dispatch differ for {d:?}"
            );
        }
    }
}

/// What the dispatch is for: a call without a rule is allowed after a short search, not after
/// every rule's test, for each of the numbers the kernel emulates the filter for when it
/// attaches it (its cache of always-allowed calls).
#[test]
fn a_call_without_a_rule_is_answered_within_a_few_instructions() {
    let with = imp::build_with(Profile::Run, true).expect("the filter builds");
    let without = imp::build_with(Profile::Run, false).expect("the filter builds");
    let ruled = imp::ruled(Profile::Run);
    let (mut longest, mut longest_without) = (0, 0);
    // clone3 is answered ENOSYS before any of this.
    let unruled = (0..1024)
        .filter(|&nr| !ruled.contains(&i64::from(nr)) && i64::from(nr) != libc::SYS_clone3);
    for nr in unruled {
        let d = Data {
            nr,
            arch: AUDIT_ARCH_X86_64,
            ip: 0,
            args: [0; 6],
        };
        let (ret, steps) = run_counted(&with.insns, &d);
        assert_eq!(ret, libc::SECCOMP_RET_ALLOW, "{d:?}");
        longest = longest.max(steps);
        longest_without = longest_without.max(run_counted(&without.insns, &d).1);
    }
    assert!(longest <= 24, "an allowed call took {longest} instructions");
    // The comparison has teeth: through seccompiler's program alone it takes far longer.
    assert!(longest_without > 100, "{longest_without}");
}
