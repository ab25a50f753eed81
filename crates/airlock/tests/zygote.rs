//! A zygote's child (`airlock run --pool`, Python) attacked from inside, as root and as an
//! unprivileged user: it must be as isolated as a cold run, and nothing of the zygote (its
//! capabilities, its namespaces, its /proc, its descriptors) may be within reach.

mod common;
use common::*;

fn pooled(who: &Who, code: &str) -> serde_json::Value {
    py_with(who, &["--pool"], code)
}

both!(a_zygote_child_holds_no_privilege_of_its_zygote, |who| {
    let code = r#"
import ctypes, os, sys
status = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
libc = ctypes.CDLL(None, use_errno=True)
def errno_of(rc):
    return ctypes.get_errno() if rc != 0 else 0
print("zygote", "json" in sys.modules and "ctypes" in sys.modules)
print("pid", os.getpid(), os.getppid())
print("procs", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
print("ids", os.getuid(), os.geteuid(), os.getgid())
print("caps", status["CapEff"].strip(), status["CapPrm"].strip(), status["CapBnd"].strip(), status["CapAmb"].strip(), status["CapInh"].strip())
print("nnp", status["NoNewPrivs"].strip(), "seccomp", status["Seccomp"].strip())
print("fds", sorted(int(f) for f in os.listdir("/proc/self/fd")))
print("unshare", errno_of(libc.unshare(0x00020000)), errno_of(libc.unshare(0x10000000)))
print("mount", errno_of(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)))
print("umount", errno_of(libc.umount2(b"/proc", 2)))
# mount_setattr (442 on x86_64 and aarch64) and a netlink socket: one from each filter of the stack.
print("mount_setattr", errno_of(libc.syscall(442, -1, b"", 0, None, 0)))
fd = libc.socket(16, 3, 0)
print("netlink", ctypes.get_errno() if fd < 0 else "opened")
# EPERM, or EINVAL where uid 0 is not even mapped in the user namespace.
print("setuid refused", errno_of(libc.setuid(0)) in (1, 22), os.getuid())
print("zygote-proc", os.listdir("/airlock/.proc") if os.path.isdir("/airlock/.proc") else None)
print("kcore", os.stat("/proc/kcore").st_size if os.path.exists("/proc/kcore") else None)
for name in ("/proc/1/root/airlock/zygote.py", "/proc/1/mem", "/proc/3/status", "/init"):
    try:
        open(name).read(1)
        print("reached", name)
    except OSError as e:
        print("refused", name)
"#;
    let v = pooled(who, code);
    assert_eq!(v["pool"], "warm", "{v}");
    let out = ok_stdout(&v);
    let lines: Vec<&str> = out.lines().collect();
    for want in [
        "zygote True",
        "pid 2 1",
        "procs [1, 2]",
        "ids 1000 1000 1000",
        "caps 0000000000000000 0000000000000000 0000000000000000 0000000000000000 0000000000000000",
        "nnp 1 seccomp 2",
        "unshare 1 1",
        "mount 1",
        "umount 1",
        "mount_setattr 1",
        "netlink 1",
        "setuid refused True 1000",
        "zygote-proc []",
        "refused /proc/1/root/airlock/zygote.py",
        "refused /proc/1/mem",
        "refused /proc/3/status",
        "refused /init",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{out}");
    }
    // Only stdio and the descriptor listing /proc/self/fd: nothing of the zygote's.
    let fds = lines.iter().find(|l| l.starts_with("fds ")).unwrap();
    assert_eq!(*fds, "fds [0, 1, 2, 3]", "{out}");
});

both!(a_zygote_child_cannot_write_outside_its_own_tmpfs, |who| {
    let code = r#"
import os
for p in ["/", "/usr", "/etc", "/airlock", "/opt", "/proc/sys/kernel"]:
    try:
        with open(os.path.join(p, "planted"), "w") as f:
            f.write("x")
        print("WROTE", p)
    except OSError as e:
        print("denied", p)
open("/tmp/mine", "w").write("ok")
open("/workspace/mine", "w").write("ok")
print("own", open("/tmp/mine").read(), open("/workspace/mine").read())
"#;
    let out = ok_stdout(&pooled(who, code));
    assert!(!out.contains("WROTE"), "{out}");
    assert!(out.contains("own ok ok"), "{out}");
});

both!(a_zygote_child_meets_its_limits, |who| {
    let (v, _) = run_json(who, &["--pool", "--timeout", "1", "-c", "while True: pass"]);
    assert_eq!(v["status"], "timeout", "{v}");
    let (v, _) = run_json(
        who,
        &[
            "--pool",
            "--memory",
            "128",
            "-c",
            "b = bytearray(400 * 1024 * 1024)",
        ],
    );
    assert_eq!(v["error"]["type"], "MemoryError", "{v}");
});

// A zygote child's run process is a fork of a `CLONE_VM` clone, which the kernel gives no rseq
// area: unless it is registered again, glibc's `sched_getcpu` reads a stale CPU. Pinned to each
// CPU in turn, the program must be told that CPU, and its thread's area must be registered
// (registering another one is refused).
both!(a_zygote_child_knows_which_cpu_it_is_on, |who| {
    let code = r#"
import ctypes, os, platform
libc = ctypes.CDLL(None, use_errno=True)
seen = []
for cpu in sorted(os.sched_getaffinity(0)):
    os.sched_setaffinity(0, {cpu})
    seen.append((cpu, libc.sched_getcpu()))
print("cpus", all(a == b for a, b in seen), seen)
nr = {"x86_64": 334, "aarch64": 293}[platform.machine()]
sig = {"x86_64": 0x53053053, "aarch64": 0xd428bc00}[platform.machine()]
buf = ctypes.create_string_buffer(96)
area = (ctypes.addressof(buf) + 31) & ~31
rc = libc.syscall(ctypes.c_long(nr), ctypes.c_void_p(area), ctypes.c_uint32(32), 0, ctypes.c_uint32(sig))
# EBUSY, or EINVAL for a length other than the registered area's: either way one is there.
print("rseq", "registered already" if rc != 0 and ctypes.get_errno() in (16, 22) else (rc, ctypes.get_errno()))
"#;
    for args in [&["--pool"][..], &[][..]] {
        let v = py_with(who, args, code);
        let out = ok_stdout(&v);
        assert!(out.contains("cpus True"), "{args:?}: {out}");
        assert!(out.contains("rseq registered already"), "{args:?}: {out}");
    }
});

// pid 1 of a zygote run starts from the interpreter's process, which ignores SIGPIPE and
// SIGXFSZ and holds a full bounding set in its namespace: the init must still start as a cold
// run's does, with every signal at its default, none blocked, and no capability at all.
both!(a_zygote_childs_init_starts_like_a_cold_one, |who| {
    let code = r#"
keys = ("SigBlk", "SigIgn", "SigCgt", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
print({l.split(":")[0]: l.split()[1] for l in open("/proc/1/status") if l.startswith(keys)})
"#;
    let cold = ok_stdout(&py_with(who, &[], code));
    let pooled = ok_stdout(&py_with(who, &["--pool"], code));
    assert!(cold.contains("'SigIgn': '0000000000000000'"), "{cold}");
    assert!(cold.contains("'CapBnd': '0000000000000000'"), "{cold}");
    assert_eq!(
        pooled, cold,
        "the pooled run's init differs from the cold one's"
    );
});
