//! Each test attempts an escape from inside the sandbox and asserts that it fails, as root and
//! as an unprivileged user.

mod common;
use common::*;

both!(host_secrets_are_unreadable, |who| {
    let code = format!(
        r#"
import os
for p in ["{root}", "{home}", "{home}/../{user}/.ssh/id_ed25519", "{tmp}", "/etc/shadow", "/etc/gshadow", "/root", "/home"]:
    try:
        with open(p) as f:
            print("READ", p, f.read()[:40])
    except OSError as e:
        print("denied", p, type(e).__name__)
print("shadow-exists", os.path.exists("/etc/shadow"))
"#,
        root = ROOT_MARKER,
        home = who.home_marker().display(),
        user = common::TEST_USER,
        tmp = TMP_MARKER,
    );
    let out = ok_stdout(&py(who, &code));
    assert!(!out.contains("READ"), "a host secret was read: {out}");
    assert!(!out.contains(SECRET), "{out}");
    assert!(out.contains("shadow-exists False"), "{out}");
});

both!(host_tmp_is_not_the_sandbox_tmp, |who| {
    let out = ok_stdout(&sh_in(
        who,
        &[],
        &format!("ls -A /tmp; test -e {TMP_MARKER} && echo VISIBLE; echo done"),
    ));
    assert_eq!(
        out.trim(),
        "done",
        "host /tmp leaked into the sandbox: {out}"
    );
});

both!(host_environment_does_not_leak, |who| {
    let out = ok_stdout(&py(
        who,
        "import os\nfor k, v in sorted(os.environ.items()): print(f'{k}={v}')",
    ));
    assert!(
        !out.contains(SECRET) && !out.contains(ENV_SECRET_NAME),
        "{out}"
    );
    let names: Vec<&str> = out.lines().filter_map(|l| l.split('=').next()).collect();
    for n in &names {
        assert!(
            [
                "PATH",
                "HOME",
                "LANG",
                "TMPDIR",
                "PYTHONUNBUFFERED",
                "PYTHONDONTWRITEBYTECODE",
                "LC_CTYPE"
            ]
            .contains(n),
            "unexpected variable {n} in {names:?}"
        );
    }
});

both!(other_processes_environ_is_unreadable, |who| {
    // The test process itself is a host process with the secret in its environment.
    let me = std::process::id();
    let code = format!(
        r#"
import os
for p in ["/proc/{me}/environ", "/proc/1/environ", "/proc/{me}/cmdline"]:
    try:
        data = open(p, "rb").read()
        print("READ", p, b"{secret}" in data)
    except OSError as e:
        print("denied", p, type(e).__name__)
"#,
        secret = SECRET
    );
    let out = ok_stdout(&py(who, &code));
    assert!(!out.contains("True"), "{out}");
    assert!(!out.contains(&format!("READ /proc/{me}/")), "{out}");
});

both!(writes_outside_workspace_and_tmp_fail, |who| {
    let code = r#"
import os
for d in ["/", "/usr", "/usr/lib", "/etc", "/bin", "/airlock", "/dev", "/proc", "/root"]:
    p = os.path.join(d, "airlock-escape-probe")
    try:
        open(p, "w").write("x")
        print("WROTE", p)
    except OSError as e:
        print("denied", p, e.errno)
for p in ["/etc/passwd", "/airlock/main.py"]:
    try:
        open(p, "a").write("x")
        print("WROTE", p)
    except OSError as e:
        print("denied", p, e.errno)
for d in ["/tmp", "/workspace", "/dev/shm"]:
    open(os.path.join(d, "ok"), "w").write("x")
    print("ok", d)
"#;
    let out = ok_stdout(&py(who, code));
    assert!(!out.contains("WROTE"), "{out}");
    assert_eq!(out.matches("ok /").count(), 3, "{out}");
});

both!(host_processes_are_invisible_and_unsignalable, |who| {
    let mut victim = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let pid = victim.id();
    let code = format!(
        r#"
import os, signal
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print("pids", pids)
for target in [{pid}, 1 if os.getpid() != 1 else 2, -1]:
    try:
        os.kill(target, signal.SIGKILL if target != -1 else 0)
        print("signalled", target)
    except OSError as e:
        print("refused", target, e.errno)
"#
    );
    let out = ok_stdout(&py(who, &code));
    let pids_line = out.lines().find(|l| l.starts_with("pids")).unwrap();
    assert!(
        pids_line.len() < 20,
        "the sandbox sees other processes: {pids_line}"
    );
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the host process was killed from the sandbox"
    );
    victim.kill().unwrap();
    let _ = victim.wait();
});

both!(identity_is_unprivileged, |who| {
    let code = r#"
import os, socket
print("uid", os.getuid(), os.geteuid(), os.getgid(), os.getgroups())
print("host", socket.gethostname())
try:
    os.setuid(0); print("SETUID-OK")
except OSError as e:
    print("setuid refused", e.errno)
try:
    os.setgid(0); print("SETGID-OK")
except OSError as e:
    print("setgid refused", e.errno)
open("/tmp/f", "w").close()
try:
    os.chown("/tmp/f", 0, 0); print("CHOWN-OK")
except OSError as e:
    print("chown refused", e.errno)
print("owner", os.stat("/tmp/f").st_uid)
for line in open("/proc/self/status"):
    if line.startswith(("Cap", "NoNewPrivs", "Seccomp:")):
        print(line.strip())
"#;
    let out = ok_stdout(&py(who, code));
    assert!(
        out.contains("uid 1000 1000 1000 [1000]") || out.contains("uid 1000 1000 1000 []"),
        "{out}"
    );
    assert!(out.contains("host sandbox"), "{out}");
    assert!(!out.contains("-OK"), "{out}");
    assert!(out.contains("owner 1000"), "{out}");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            out.contains(&format!("{cap}:\t0000000000000000")),
            "{cap} not empty: {out}"
        );
    }
    assert!(
        out.contains("NoNewPrivs:\t1") && out.contains("Seccomp:\t2"),
        "{out}"
    );
});

// Each dangerous syscall through ctypes; every one must fail with EPERM (clone3: ENOSYS).
both!(dangerous_syscalls_are_refused, |who| {
    let code = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(name, nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    print(name, "ALLOWED" if r >= 0 else "refused", ctypes.get_errno() if r < 0 else r)
sc("ptrace_traceme", 101, 0, 0, 0, 0)
sc("ptrace_attach_init", 101, 16, 1, 0, 0)
sc("mount", 165, 0, 0, 0, 0, 0)
sc("umount2", 166, 0, 0)
sc("pivot_root", 155, 0, 0)
sc("chroot", 161, 0)
sc("unshare_user", 272, 0x10000000)
sc("unshare_ns", 272, 0x00020000)
sc("unshare_net", 272, 0x40000000)
sc("setns", 308, 0, 0)
sc("keyctl", 250, 0, 0, 0, 0, 0)
sc("add_key", 248, 0, 0, 0, 0, 0)
sc("request_key", 249, 0, 0, 0, 0)
sc("bpf", 321, 0, 0, 0)
sc("io_uring_setup", 425, 8, 0)
sc("perf_event_open", 298, 0, 0, -1, -1, 0)
sc("userfaultfd", 323, 0)
sc("kexec_load", 246, 0, 0, 0, 0)
sc("init_module", 175, 0, 0, 0)
sc("finit_module", 313, -1, 0, 0)
sc("reboot", 169, 0, 0, 0, 0)
sc("swapon", 167, 0, 0)
sc("acct", 163, 0)
sc("open_by_handle_at", 304, -1, 0, 0)
sc("settimeofday", 164, 0, 0)
sc("clock_settime", 227, 0, 0)
sc("personality_bsd", 135, 6)
sc("process_vm_readv", 310, 1, 0, 0, 0, 0, 0)
sc("clone_newuser", 56, 0x10000000 | 17, 0, 0, 0, 0)
sc("clone3", 435, 0, 0)
sc("fsopen", 430, 0, 0)
sc("open_tree", 428, -100, 0, 0)
"#;
    let out = ok_stdout(&py(who, code));
    assert!(
        !out.contains("ALLOWED"),
        "a dangerous syscall went through:\n{out}"
    );
    for line in out.lines() {
        let errno = line.split_whitespace().last().unwrap();
        let expected = if line.starts_with("clone3") {
            "38"
        } else {
            "1"
        };
        assert_eq!(errno, expected, "wrong errno for {line}");
    }
});

both!(raw_socket_families_are_refused, |who| {
    let code = r#"
import socket
for name, fam, typ in [("AF_PACKET", 17, socket.SOCK_RAW), ("AF_NETLINK", 16, socket.SOCK_RAW),
                       ("AF_VSOCK", 40, socket.SOCK_STREAM), ("AF_BLUETOOTH", 31, socket.SOCK_RAW),
                       ("AF_ALG", 38, socket.SOCK_SEQPACKET), ("AF_KEY", 15, socket.SOCK_RAW)]:
    try:
        socket.socket(fam, typ); print(name, "ALLOWED")
    except OSError as e:
        print(name, "refused", e.errno)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); print("AF_INET ok")
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); print("AF_UNIX ok")
"#;
    let out = ok_stdout(&py(who, code));
    assert!(!out.contains("ALLOWED"), "{out}");
    assert!(
        out.contains("AF_INET ok") && out.contains("AF_UNIX ok"),
        "{out}"
    );
});

both!(host_loopback_and_dns_are_unreachable, |who| {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!(
        r#"
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2); print("CONNECTED")
except OSError as e:
    print("tcp refused", type(e).__name__)
try:
    print("RESOLVED", socket.getaddrinfo("example.com", 80))
except OSError as e:
    print("dns failed", type(e).__name__)
try:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(b"x", ("1.1.1.1", 53)); print("UDP-SENT")
except OSError as e:
    print("udp refused", e.errno)
# its own loopback works: a server and a client inside one sandbox
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
c = socket.create_connection(srv.getsockname()); a, _ = srv.accept(); c.sendall(b"ping"); print("loopback", a.recv(4))
"#
    );
    let out = ok_stdout(&py(who, &code));
    assert!(
        !out.contains("CONNECTED") && !out.contains("RESOLVED") && !out.contains("UDP-SENT"),
        "{out}"
    );
    assert!(out.contains("loopback b'ping'"), "{out}");
    assert!(
        listener.accept().is_err(),
        "the host listener received a connection"
    );
});

both!(proc_sys_and_sysrq_are_read_only, |who| {
    let code = r#"
for p, data in [("/proc/sys/kernel/hostname", "pwned"), ("/proc/sysrq-trigger", "h"), ("/proc/sys/vm/drop_caches", "3"),
                ("/proc/self/attr/current", "x")]:
    try:
        with open(p, "w") as f: f.write(data)
        print("WROTE", p)
    except OSError as e:
        print("denied", p, e.errno)
for p in ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/kallsyms"]:
    try:
        print(p, len(open(p, "rb").read(4096)))
    except OSError as e:
        print("denied", p, e.errno)
"#;
    let out = ok_stdout(&py(who, code));
    assert!(!out.contains("WROTE"), "{out}");
    for masked in [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/kallsyms",
    ] {
        assert!(
            out.contains(&format!("{masked} 0")) || out.contains(&format!("denied {masked}")),
            "{masked} not masked: {out}"
        );
    }
});

both!(mknod_and_tiocsti_are_refused, |who| {
    let code = r#"
import os, stat, fcntl, termios
try:
    os.mknod("/tmp/null2", stat.S_IFCHR | 0o666, os.makedev(1, 3)); print("MKNOD-OK")
except OSError as e:
    print("mknod refused", e.errno)
try:
    os.mknod("/tmp/sda", stat.S_IFBLK | 0o666, os.makedev(8, 0)); print("MKNOD-OK")
except OSError as e:
    print("mknod refused", e.errno)
for fd in (0, 1, 2):
    try:
        fcntl.ioctl(fd, termios.TIOCSTI, b"x"); print("TIOCSTI-OK")
    except OSError as e:
        print("tiocsti refused", e.errno)
try:
    os.open("/dev/tty", os.O_RDWR); print("TTY-OK")
except OSError as e:
    print("no controlling tty", e.errno)
print("sid", os.getsid(0) == os.getpid())
"#;
    let out = ok_stdout(&py(who, code));
    assert!(!out.contains("-OK"), "{out}");
    // EPERM from the seccomp filter, whatever the descriptor is.
    assert_eq!(out.matches("tiocsti refused 1").count(), 3, "{out}");
    assert!(out.contains("sid True"), "{out}");
});

both!(setuid_binaries_grant_nothing, |who| {
    let dir = HostDir::new("suid");
    let suid = dir.path().join("id-suid");
    std::fs::copy("/usr/bin/id", &suid).unwrap();
    if who.is_root() {
        // A setuid-root binary planted by the host, reached through a bind.
        std::process::Command::new("chmod")
            .arg("4755")
            .arg(&suid)
            .status()
            .unwrap();
    }
    let mount = format!("{}:/suid", dir.path().display());
    let code = r#"
import subprocess, os, glob
print("suid", subprocess.run(["/suid/id-suid", "-u"], capture_output=True, text=True).stdout.strip())
for b in ["/usr/bin/su", "/usr/bin/passwd", "/usr/bin/mount", "/usr/bin/newgrp", "/usr/bin/sudo"]:
    if os.path.exists(b):
        r = subprocess.run([b, "--help"] if b.endswith("mount") else [b], capture_output=True, text=True, input="")
        print(b, r.returncode)
r = subprocess.run(["/usr/bin/su", "-c", "id -u", "root"], capture_output=True, text=True, input="x\n")
print("su", r.returncode, r.stdout.strip())
"#;
    let out = ok_stdout(&py_with(who, &["--mount", &mount], code));
    assert!(out.contains("suid 1000"), "{out}");
    assert!(!out.lines().any(|l| l.starts_with("su 0")), "{out}");
});

both!(symlinks_in_a_writable_bind_lead_nowhere, |who| {
    let dir = HostDir::new("symlink");
    let victim = HostDir::new("victim");
    let target = victim.write("host-file", "original");
    let code = format!(
        r#"
import os
os.symlink("{target}", "/workspace/to-host-file")
os.symlink("/etc/shadow", "/workspace/to-shadow")
os.symlink("../../../../../../{target}", "/workspace/relative")
for l in ["to-host-file", "to-shadow", "relative"]:
    p = "/workspace/" + l
    try:
        print("READ", l, open(p).read())
    except OSError as e:
        print("denied", l, e.errno)
    try:
        open(p, "w").write("pwned"); print("WROTE", l)
    except OSError as e:
        print("denied-write", l, e.errno)
"#,
        target = target.display()
    );
    let out = py_with(who, &["--workdir", dir.path().to_str().unwrap()], &code);
    let out = ok_stdout(&out);
    assert!(!out.contains("READ"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "original",
        "the host file was changed through a symlink"
    );
    assert!(
        !std::path::Path::new("/etc/shadow")
            .metadata()
            .map(|m| m.len() == 5)
            .unwrap_or(false)
    );
    // The links exist on the host as links only.
    assert!(
        std::fs::symlink_metadata(dir.path().join("to-shadow"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
});

both!(no_host_sockets_or_sys, |who| {
    let out = ok_stdout(&sh_in(
        who,
        &[],
        "ls -A / ; ls /run /sys /home /var 2>&1 | head -5; ls -A /dev",
    ));
    for absent in ["run\n", "sys\n", "home\n", "var\n", "boot\n", "mnt\n"] {
        assert!(
            !out.starts_with(absent) && !out.contains(&format!("\n{absent}")),
            "{absent:?} exists: {out}"
        );
    }
    assert!(
        !out.contains("kvm") && !out.contains("vda") && !out.contains("mem\n"),
        "{out}"
    );
});

both!(cgroup_and_mounts_are_private, |who| {
    let out = ok_stdout(&sh_in(
        who,
        &[],
        "cat /proc/self/cgroup; echo ---; cat /proc/self/mountinfo | wc -l; grep -c ' /oldroot\\| /newroot' /proc/self/mountinfo || true",
    ));
    // Inside its cgroup namespace the sandbox's cgroup is its root.
    for line in out.split("---").next().unwrap().lines() {
        assert!(
            line.ends_with(":/"),
            "cgroup path leaks the host layout: {line}"
        );
    }
    assert!(
        out.trim_end().ends_with('0'),
        "staging mounts remain visible: {out}"
    );
});

// Each sandbox must get a network namespace of its own, owned by its own user namespace (so
// that what it may do there it may do nowhere else), with loopback up and nothing else. The
// runs overlap in time, since a freed namespace's inode number can be reused.
both!(
    concurrent_sandboxes_each_get_a_network_namespace_of_their_own,
    |who| {
        let code = r#"
import fcntl, os, socket, struct, time
ns = os.open("/proc/self/ns/net", os.O_RDONLY)
owner = fcntl.ioctl(ns, 0xb701)  # NS_GET_USERNS
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH", b"lo", 0)))[1]  # SIOCGIFFLAGS
ifaces = [l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]]
print("net", os.fstat(ns).st_ino, "owner", os.fstat(owner).st_ino,
      "user", os.stat("/proc/self/ns/user").st_ino, "up", flags & 1, "ifaces", ",".join(ifaces))
time.sleep(1.5)
"#;
        use std::os::unix::fs::MetadataExt;
        let host = std::fs::metadata("/proc/self/ns/net")
            .unwrap()
            .ino()
            .to_string();
        let outs: Vec<String> = std::thread::scope(|s| {
            let runs: Vec<_> = (0..6)
                .map(|_| s.spawn(|| ok_stdout(&py(who, code))))
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let mut nets = std::collections::BTreeSet::new();
        for out in &outs {
            let w: Vec<&str> = out.split_whitespace().collect();
            assert_eq!(
                (w[0], w[2], w[4], w[6], w[8]),
                ("net", "owner", "user", "up", "ifaces"),
                "{out}"
            );
            assert_ne!(
                w[1], host,
                "a sandbox is in the host's network namespace: {out}"
            );
            assert_eq!(
                w[3], w[5],
                "its network namespace is not its user namespace's: {out}"
            );
            assert_eq!((w[7], w[9]), ("1", "lo"), "not loopback alone, up: {out}");
            nets.insert(w[1].to_string());
        }
        assert_eq!(
            nets.len(),
            outs.len(),
            "sandboxes share a network namespace: {outs:?}"
        );
    }
);

#[test]
fn concurrent_runs_as_root_get_distinct_unprivileged_host_uids() {
    let Some(who) = identity(true) else { return };
    let marker = format!(
        "{}.{}",
        6000 + std::process::id() % 1000,
        std::process::id()
    );
    let code = format!("sleep {marker} & sleep {marker} & wait");
    let runs: Vec<_> = (0..3)
        .map(|_| {
            airlock(&who)
                .args(["run", "--timeout", "3", "--lang", "shell", "-c", &code])
                .spawn()
                .unwrap()
        })
        .collect();
    let mut uids = std::collections::BTreeSet::new();
    let mut seen = 0;
    for _ in 0..200 {
        uids.clear();
        seen = 0;
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).replace('\0', " ").trim() == format!("sleep {marker}")
            {
                let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
                if let Some(uid) = status.lines().find(|l| l.starts_with("Uid:")) {
                    let uid: u32 = uid.split_whitespace().nth(1).unwrap().parse().unwrap();
                    uids.insert(uid);
                    seen += 1;
                }
            }
        }
        if seen == 6 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for mut r in runs {
        let _ = r.wait();
    }
    assert_eq!(seen, 6, "did not see all sandboxed processes");
    assert_eq!(uids.len(), 3, "concurrent runs share host uids: {uids:?}");
    assert!(
        uids.iter().all(|u| *u >= 1_500_000_000),
        "a sandbox runs as a privileged host uid: {uids:?}"
    );
}

both!(only_the_interpreter_prefix_of_a_home_is_visible, |who| {
    let out = ok_stdout(&py(
        who,
        "import os, sys\nprint(sys.executable)\nfor d in ['/root', '/home']:\n    print(d, sorted(os.listdir(d)) if os.path.isdir(d) else None)",
    ));
    let mut lines = out.lines();
    let exe = lines.next().unwrap();
    let root_line = lines.next().unwrap();
    if exe.starts_with("/root/") {
        // The interpreter lives in root's home: exactly its prefix is bound, nothing else.
        assert_eq!(root_line, "/root ['.pyenv']", "{out}");
    } else {
        assert_eq!(root_line, "/root None", "{out}");
    }
    assert_eq!(lines.next().unwrap(), "/home None", "{out}");
});

both!(signals_start_at_their_defaults, |who| {
    // The supervisor ignores SIGPIPE (Rust does); the program must not inherit that.
    let out = ok_stdout(&sh_in(
        who,
        &[],
        "yes | head -c 1 >/dev/null; echo ${PIPESTATUS[0]}; grep -E '^Sig(Ign|Blk)' /proc/self/status",
    ));
    assert!(
        out.starts_with("141\n"),
        "SIGPIPE did not kill the writer: {out}"
    );
    assert!(
        out.contains("SigIgn:\t0000000000000000") && out.contains("SigBlk:\t0000000000000000"),
        "{out}"
    );
});

#[test]
fn host_mounts_do_not_propagate_into_a_running_sandbox() {
    let Some(who) = identity(true) else { return };
    let _ = who;
    let src = HostDir::new("propagation");
    std::fs::create_dir_all(src.path().join("sub")).unwrap();
    // In a private copy of the host's mount namespace made shared (as systemd hosts are), mount
    // something under the bound source while the sandbox runs.
    let script = format!(
        "mount --make-rshared / && {{ {bin} run --json --timeout 20 --mount {src}:/data --lang shell -c 'sleep 2; grep -c \" /data/sub \" /proc/self/mountinfo || true; ls /data/sub' & sleep 1; mount -t tmpfs none {src}/sub && touch {src}/sub/leaked; wait; }}",
        bin = bin().display(),
        src = src.path().display()
    );
    let out = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("{text} {:?}", out));
    let seen = stdout(&v);
    assert!(
        seen.starts_with("0\n"),
        "a host mount propagated into the sandbox: {v}"
    );
    assert!(!seen.contains("leaked"), "{v}");
}

both!(a_planted_symlink_cannot_redirect_a_later_bind, |who| {
    let work = HostDir::new("planted");
    let victim = HostDir::new("victim-home");
    std::fs::create_dir_all(victim.path().join(".ssh")).unwrap();
    std::fs::write(victim.path().join(".ssh/id_rsa"), SECRET).unwrap();
    // Run 1 plants a symlink in its read-write workspace, pointing at the victim directory.
    let plant = format!(
        "import os\nos.symlink('{}', '/workspace/sub')",
        victim.path().display()
    );
    ok_stdout(&py_with(
        who,
        &["--workdir", work.path().to_str().unwrap()],
        &plant,
    ));
    assert!(
        std::fs::symlink_metadata(work.path().join("sub"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // Run 2 is asked to bind a path through that link: refused, nothing read or written.
    let through = work.path().join("sub/.ssh");
    for flag in ["--workdir", "--mount"] {
        let arg = if flag == "--mount" {
            format!("{}:/data:rw", through.display())
        } else {
            through.display().to_string()
        };
        let (v, code) = run_json(
            who,
            &[
                flag,
                &arg,
                "--lang",
                "shell",
                "-c",
                "cat /workspace/id_rsa /data/id_rsa; echo PWNED > /workspace/authorized_keys",
            ],
        );
        assert_eq!(code, 125, "{flag}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("symlink"),
            "{v}"
        );
    }
    assert!(!victim.path().join(".ssh/authorized_keys").exists());
});

// The program is pid 2 under a tiny init of airlock's own (pid 1), which it cannot reach: not
// its memory, its files or its root, and no signal of its own namespace reaches an init (a
// zygote's run may not even send one: its init is outside the run's Landlock domain).
both!(the_sandboxs_init_is_out_of_reach, |who| {
    let code = r#"
import os, signal, time
for name in ("/proc/1/mem", "/proc/1/environ", "/proc/1/root/etc/passwd", "/init"):
    try:
        open(name, "rb").read(1)
        print("reached", name)
    except OSError:
        print("refused", name)
for sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM):
    try:
        os.kill(1, sig)  # ignored, or refused where the init is outside its Landlock domain
    except PermissionError:
        pass
time.sleep(0.3)
print("pid", os.getpid(), os.getppid(), "alive")
"#;
    for args in [&[][..], &["--pool"][..]] {
        let v = py_with(who, args, code);
        let out = ok_stdout(&v);
        assert!(!out.contains("reached"), "{args:?}: {out}");
        assert_eq!(out.matches("refused").count(), 4, "{args:?}: {out}");
        assert!(out.contains("pid 2 1 alive"), "{args:?}: {out}");
    }
});

// Because the program is not its namespace's init, it behaves as it would outside: a signal it
// sends itself acts (the kernel ignores those for an init), and the orphans it leaves are
// reaped instead of filling its pids limit.
both!(signals_and_orphans_behave_as_outside_a_sandbox, |who| {
    for args in [&[][..], &["--pool"][..]] {
        let v = py_with(
            who,
            args,
            "import os, signal, time\nos.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(5)\nprint('ignored')",
        );
        assert_eq!(v["status"], "killed", "{args:?}: {v}");
        assert_eq!(v["signal"], 15, "{args:?}: {v}");
        let orphans = "import subprocess, time\nfor i in range(150):\n    subprocess.run('sleep 0 &', shell=True, check=True)\ntime.sleep(0.3)\nzombies = [p for p in __import__('os').listdir('/proc') if p.isdigit() and open(f'/proc/{p}/stat').read().split(') ')[1].startswith('Z')]\nprint('zombies', len(zombies))";
        let mut with = args.to_vec();
        with.extend(["--pids", "32"]);
        let v = py_with(who, &with, orphans);
        assert_eq!(ok_stdout(&v).trim(), "zombies 0", "{args:?}: {v}");
    }
});
