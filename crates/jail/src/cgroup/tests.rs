//! Tests of the cgroup module.
//!
//! Host-independent: the parsers and the resolution logic, on fixture text of hybrid, pure v2,
//! co-mounted and container hosts, and on fake cgroup trees built from plain files under /tmp.
//! As root on a v1 (hybrid) host: real runs with limits, attach, kill, OOM, pids, CPU quota,
//! removal. As root with a cgroup2 mount (even one without controllers): the v2 backend's
//! directory handling, fd, cgroup.kill and cpu.stat. Anything the host lacks is skipped with
//! the reason printed, never passed silently.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

const MIB: u64 = 1 << 20;

const HYBRID_MOUNTINFO: &str = "\
24 1 259:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/3b19d39784dac63e3bc90e114329abeb
2:cpuacct:/
1:cpu:/
0::/
";

const PURE_V2_MOUNTINFO: &str = "\
22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

const PURE_V2_CGROUP: &str =
    "0::/user.slice/user-1000.slice/user@1000.service/app.slice/run-u7.scope\n";

/// Older distributions: cpu and cpuacct co-mounted, with symlinks beside them.
const COMOUNTED_MOUNTINFO: &str = "\
25 24 0:22 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
27 24 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
28 24 0:25 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
29 24 0:26 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,pids
";

const COMOUNTED_CGROUP: &str = "\
5:pids:/user.slice/user-1000.slice
4:memory:/user.slice
3:cpu,cpuacct:/user.slice
1:name=systemd:/user.slice/user-1000.slice/session-2.scope
";

/// A container without a cgroup namespace: the mount shows only its own sub-tree, read-only.
const CONTAINER_MOUNTINFO: &str = "\
600 590 0:26 /docker/abc /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw
601 590 0:40 / /mnt/my\\040cg rw,relatime - cgroup2 cgroup2 rw
";

fn limits(memory_bytes: u64, pids: u64, cpu_millis: u64) -> CgroupLimits {
    CgroupLimits {
        memory_bytes,
        pids,
        cpu_millis,
    }
}

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "run-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn euid() -> Option<u32> {
    parse::effective_uid(&fs::read_to_string("/proc/self/status").unwrap())
}

/// True when this test can use real v1 cgroups; otherwise prints why it is skipped.
fn root_v1(test: &str) -> bool {
    if euid() != Some(0) {
        println!("SKIPPED {test}: needs root (cgroup v1 is writable only by root)");
        return false;
    }
    let host = probe();
    if host.version != Some(Version::V1) {
        println!(
            "SKIPPED {test}: this host does not use cgroup v1 (version {:?})",
            host.version
        );
        return false;
    }
    if let Err(why) = host.usable {
        panic!("{test}: root on a v1 host, yet cgroups are unusable: {why}");
    }
    true
}

/// `sh -c SCRIPT` that waits for a line on stdin before running `script`, so that it can be
/// attached to a cgroup before it does anything.
fn gated(script: &str) -> Child {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("read _ignored; {script}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn /bin/sh")
}

fn release(child: &mut Child) {
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
}

fn read_file(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn unavailable_why(e: JailError) -> (String, String) {
    match e {
        JailError::Unavailable { layer, why, fix } => {
            assert_eq!(layer, "cgroup");
            (why, fix)
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Parsers, on fixtures.

#[test]
fn mountinfo_of_hybrid_host() {
    let mounts = parse::mountinfo(HYBRID_MOUNTINFO);
    assert_eq!(
        mounts.len(),
        7,
        "tmpfs and ext4 are not cgroups: {mounts:?}"
    );
    let mem = mounts
        .iter()
        .find(|m| m.mount_point == Path::new("/sys/fs/cgroup/memory"))
        .unwrap();
    assert!(!mem.v2);
    assert_eq!(mem.controllers, ["memory"]);
    assert_eq!(mem.root, "/");
    let systemd = mounts
        .iter()
        .find(|m| m.mount_point.ends_with("systemd"))
        .unwrap();
    assert!(
        systemd.controllers.is_empty(),
        "name=systemd is not a controller"
    );
    let unified = mounts.iter().find(|m| m.v2).unwrap();
    assert_eq!(unified.mount_point, Path::new("/sys/fs/cgroup/unified"));

    let layout = Layout::from_text(HYBRID_MOUNTINFO, HYBRID_CGROUP);
    assert_eq!(
        layout.v1.len(),
        5,
        "named hierarchies are left out: {:?}",
        layout.v1
    );
    assert_eq!(
        layout.own_dir(layout.hierarchy("memory").unwrap()).unwrap(),
        Path::new("/sys/fs/cgroup/memory/process_api/3b19d39784dac63e3bc90e114329abeb")
    );
    assert_eq!(
        layout.own_dir(layout.hierarchy("pids").unwrap()).unwrap(),
        Path::new("/sys/fs/cgroup/pids")
    );
    assert_eq!(
        layout.own_dir(layout.v2.as_ref().unwrap()).unwrap(),
        Path::new("/sys/fs/cgroup/unified")
    );
    assert_eq!(
        choose(&layout, &[]),
        Some(Version::V1),
        "cgroup2 without controllers: v1"
    );
}

#[test]
fn mountinfo_of_pure_v2_host() {
    let layout = Layout::from_text(PURE_V2_MOUNTINFO, PURE_V2_CGROUP);
    assert!(layout.v1.is_empty());
    let m = layout.v2.as_ref().unwrap();
    assert_eq!(m.mount_point, Path::new("/sys/fs/cgroup"));
    assert!(!m.read_only);
    assert_eq!(
        layout.own_dir(m).unwrap(),
        Path::new(
            "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/run-u7.scope"
        )
    );
    let all: Vec<String> = [
        "cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(choose(&layout, &all), Some(Version::V2));
    assert_eq!(
        choose(&layout, &["cpu".to_string(), "memory".to_string()]),
        None,
        "no pids"
    );
    // A hybrid host whose cgroup2 has the controllers (systemd "unified_cgroup_hierarchy" in
    // transition) also prefers v2.
    let hybrid = Layout::from_text(HYBRID_MOUNTINFO, HYBRID_CGROUP);
    assert_eq!(choose(&hybrid, &all), Some(Version::V2));
}

#[test]
fn mountinfo_with_comounted_cpu_cpuacct() {
    let layout = Layout::from_text(COMOUNTED_MOUNTINFO, COMOUNTED_CGROUP);
    let cpu = layout.hierarchy("cpu").unwrap();
    assert_eq!(cpu.controllers, ["cpu", "cpuacct"]);
    assert_eq!(
        cpu,
        layout.hierarchy("cpuacct").unwrap(),
        "one hierarchy for both"
    );
    assert_eq!(cpu.mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
    assert_eq!(
        layout.own_dir(cpu).unwrap(),
        Path::new("/sys/fs/cgroup/cpu,cpuacct/user.slice")
    );
    assert_eq!(
        layout.own_dir(layout.hierarchy("pids").unwrap()).unwrap(),
        Path::new("/sys/fs/cgroup/pids/user.slice/user-1000.slice")
    );
    assert!(layout.v2.is_none());
    assert_eq!(choose(&layout, &[]), Some(Version::V1));
    // The v1 parent of a co-mounted hierarchy is one directory for cpu and cpuacct.
    let host = Host {
        layout,
        env: None,
        euid: Some(0),
        swap_active: false,
    };
    let parent = v1::resolve(&host, false).unwrap();
    assert_eq!(parent.cpu, parent.cpuacct);
    assert_eq!(
        parent.dirs().len(),
        3,
        "memory, pids, cpu,cpuacct: {:?}",
        parent.dirs()
    );
    assert_eq!(
        parent.memory,
        Path::new("/sys/fs/cgroup/memory/user.slice/airlock")
    );
}

#[test]
fn mountinfo_in_container_and_escapes() {
    let mounts = parse::mountinfo(CONTAINER_MOUNTINFO);
    assert_eq!(mounts[0].root, "/docker/abc");
    assert!(mounts[0].read_only);
    assert_eq!(
        mounts[1].mount_point,
        Path::new("/mnt/my cg"),
        "\\040 is a space"
    );
    let m = &mounts[0];
    assert_eq!(
        m.dir_of("/docker/abc").unwrap(),
        Path::new("/sys/fs/cgroup")
    );
    assert_eq!(
        m.dir_of("/docker/abc/sub/x").unwrap(),
        Path::new("/sys/fs/cgroup/sub/x")
    );
    assert_eq!(
        m.dir_of("/docker/abcd"),
        None,
        "a sibling is not below the mount's root"
    );
    assert_eq!(m.dir_of("/"), None);
    let layout = Layout::from_text(CONTAINER_MOUNTINFO, "0::/docker/abc\n");
    assert_eq!(
        layout.v2.as_ref().unwrap().mount_point,
        Path::new("/sys/fs/cgroup")
    );
    // Read-only: refused with the reason, before anything is written.
    let host = Host {
        layout,
        env: None,
        euid: Some(0),
        swap_active: false,
    };
    let mount = host.layout.v2.clone().unwrap();
    let r = v2::resolve(&host, &mount, &["memory".into(), "pids".into()], false).unwrap_err();
    assert!(r.why.contains("read-only"), "{r:?}");
}

#[test]
fn proc_self_cgroup_lines() {
    let lines = parse::proc_cgroup("12:cpu,cpuacct:/a:b\n0::/x/y\nbogus\n3:name=systemd:/s\n");
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0].controllers, ["cpu", "cpuacct"]);
    assert_eq!(lines[0].path, "/a:b", "a colon inside the path survives");
    assert_eq!(
        (
            lines[1].id,
            lines[1].controllers.len(),
            lines[1].path.as_str()
        ),
        (0, 0, "/x/y")
    );
    assert_eq!(lines[2].controllers, ["name=systemd"]);
}

#[test]
fn keyed_files_and_numbers() {
    let cpu_stat = "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\nnr_periods 3\n";
    assert_eq!(parse::keyed(cpu_stat, "usage_usec"), Some(1_234_567));
    assert_eq!(parse::keyed(cpu_stat, "user"), None, "whole keys only");
    let events = "low 0\nhigh 0\nmax 17\noom 1\noom_kill 1\noom_group_kill 1\n";
    assert_eq!(parse::keyed(events, "oom_kill"), Some(1));
    let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
    assert_eq!(parse::keyed(oom_control, "oom_kill"), Some(2));
    assert_eq!(
        parse::number("9223372036854771712\n"),
        Some(9_223_372_036_854_771_712)
    );
    assert_eq!(parse::number("max\n"), None);
    assert_eq!(parse::pids("12\n34\n\n"), [12, 34]);
    assert_eq!(
        parse::words("cpuset cpu io memory pids\n"),
        ["cpuset", "cpu", "io", "memory", "pids"]
    );
    let status = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1\t1\t1\t1\n";
    assert_eq!(
        parse::effective_uid(status),
        Some(0),
        "the effective uid is the second field"
    );
    assert!(!parse::swap_active(
        "Filename\tType\tSize\tUsed\tPriority\n"
    ));
    assert!(parse::swap_active("Filename Type\n/swap file 1024 0 -2\n"));
    assert_eq!(parse::run_owner("run-4242-7"), Some(4242));
    assert_eq!(parse::run_owner("run-x-7"), None);
    assert_eq!(parse::run_owner("other-1-2"), None);
}

#[test]
fn limits_translate_to_kernel_values() {
    assert_eq!(
        limits(MIB, 1, 1000).cpu_quota_us(),
        Some(100_000),
        "one core: full period"
    );
    assert_eq!(limits(MIB, 1, 2500).cpu_quota_us(), Some(250_000));
    assert_eq!(
        limits(MIB, 1, 1).cpu_quota_us(),
        Some(CPU_MIN_QUOTA_US),
        "kernel minimum"
    );
    assert_eq!(limits(MIB, 1, 0).cpu_quota_us(), None);
    assert_eq!(limits(MIB, 256, 1).pids_value(), "256");
    assert_eq!(limits(MIB, u64::MAX, 1).pids_value(), "max");
}

#[test]
fn names_are_single_components() {
    assert!(check_name("run-12-3").is_ok());
    for bad in ["", ".", "..", "a/b", "x y", "run\0"] {
        assert!(
            matches!(check_name(bad), Err(JailError::Policy { .. })),
            "{bad:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Resolution logic, on fixtures and on fake cgroup trees (plain files) under /tmp.

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(unique(&format!("airlock-cgtest-{tag}")));
        fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn file(&self, rel: &str, text: &str) {
        let p = self.0.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn fake_v2_mount(root: &Path) -> CgroupMount {
    CgroupMount {
        v2: true,
        controllers: vec![],
        root: "/".into(),
        mount_point: root.into(),
        read_only: false,
    }
}

#[test]
fn v1_unprivileged_without_parent_is_refused_with_the_fix() {
    let layout = Layout::from_text(HYBRID_MOUNTINFO, HYBRID_CGROUP);
    let host = Host {
        layout,
        env: None,
        euid: Some(1000),
        swap_active: false,
    };
    let r = resolve(&host, true).unwrap_err();
    assert!(
        r.why.contains("only by root") && r.why.contains("uid 1000"),
        "{}",
        r.why
    );
    for needle in [
        PARENT_ENV,
        "--weak-limits",
        "chown",
        "/sys/fs/cgroup/memory",
    ] {
        assert!(r.fix.contains(needle), "fix lacks {needle}: {}", r.fix);
    }
    let e = r.into_error().to_string();
    assert!(
        e.starts_with("cannot isolate: cgroup is unavailable"),
        "{e}"
    );
}

#[test]
fn parent_env_that_does_not_exist_is_named() {
    let s = Scratch::new("env");
    let mount = CgroupMount {
        v2: false,
        controllers: vec!["memory".into()],
        ..fake_v2_mount(&s.0)
    };
    let host = Host {
        layout: Layout::default(),
        env: Some("nope/deeper".into()),
        euid: Some(1000),
        swap_active: false,
    };
    let r = env_dir(&host, &mount, "nope/deeper").unwrap_err();
    assert!(
        r.why
            .contains(&s.0.join("nope/deeper").display().to_string()),
        "{}",
        r.why
    );
    assert!(r.why.contains("does not exist"), "{}", r.why);
    let r = env_dir(&host, &mount, "../etc").unwrap_err();
    assert!(r.why.contains(".."), "{}", r.why);
    // Exists, but belongs to root (this test runs as root or as its owner; claim another uid).
    fs::create_dir(s.0.join("theirs")).unwrap();
    let stranger = Host {
        euid: Some(4_000_000),
        ..host
    };
    let r = env_dir(&stranger, &mount, "theirs").unwrap_err();
    assert!(
        r.why.contains("cannot write") && r.why.contains("theirs"),
        "{}",
        r.why
    );
}

#[test]
fn v1_limits_on_a_tree_without_limit_files_are_unavailable_and_rolled_back() {
    // A fake v1 layout whose "hierarchies" are plain directories: mkdir works, the limit files
    // do not exist, exactly like a hierarchy whose controller is missing.
    let s = Scratch::new("v1fake");
    for c in ["memory", "pids"] {
        fs::create_dir_all(s.0.join(c).join("deleg")).unwrap();
    }
    let parent = v1::Parent {
        memory: s.0.join("memory/deleg"),
        pids: s.0.join("pids/deleg"),
        cpu: None,
        cpuacct: None,
        unified: None,
        swap_active: false,
    };
    let e = v1::V1Cgroup::create(&parent, "run-1-1", &limits(64 * MIB, 5, 100)).unwrap_err();
    let (why, _) = unavailable_why(e);
    assert!(why.contains("memory.limit_in_bytes"), "{why}");
    assert!(
        !s.0.join("memory/deleg/run-1-1").exists(),
        "half-made cgroup left behind"
    );
    assert!(
        !s.0.join("pids/deleg/run-1-1").exists(),
        "half-made cgroup left behind"
    );
}

#[test]
fn v2_walk_enables_top_down_and_reports_what_is_missing() {
    let s = Scratch::new("v2fake");
    let root = &s.0;
    let mount = fake_v2_mount(root);
    let all: Vec<String> = ["cpu", "memory", "pids"].map(String::from).to_vec();
    s.file("cgroup.controllers", "cpu memory pids\n");
    s.file("cgroup.subtree_control", "cpu memory pids\n");
    let host = Host {
        layout: Layout::default(),
        env: None,
        euid: Some(0),
        swap_active: false,
    };

    // Probing predicts, and creates nothing.
    let p = v2::resolve(&host, &mount, &all, false).unwrap();
    assert_eq!(p.dir, root.join("airlock"));
    assert!(!root.join("airlock").exists(), "probe must not write");

    // Applying creates /airlock; its subtree_control is a file we write (a real cgroup has it).
    let r = v2::resolve(&host, &mount, &all, true).unwrap_err();
    assert!(root.join("airlock").is_dir());
    assert!(r.why.contains("cannot enable memory pids"), "{}", r.why);

    s.file("airlock/cgroup.controllers", "cpu memory pids\n");
    s.file("airlock/cgroup.subtree_control", "");
    let p = v2::resolve(&host, &mount, &all, true).unwrap();
    assert!(p.memory && p.pids);
    // Both writes happened, in order: "+memory +pids", then "+cpu" on its own over it (a plain
    // file is not truncated by write_file, which is what cgroupfs wants).
    let written = read_file(&root.join("airlock/cgroup.subtree_control"));
    assert_eq!(written, "+cpuory +pids", "{written:?}");
    assert!(p.cpu);

    // A parent holding other processes (not us) cannot enable controllers: predicted busy.
    s.file("airlock/cgroup.subtree_control", "");
    s.file("airlock/cgroup.type", "domain\n");
    s.file("airlock/cgroup.procs", "1\n2\n");
    let r = v2::resolve(&host, &mount, &all, false).unwrap_err();
    assert!(r.why.contains("holds 2 process(es)"), "{}", r.why);
    assert!(r.fix.contains("leaf"), "{}", r.fix);

    // Already prepared: nothing to write, cpu present.
    s.file("airlock/cgroup.subtree_control", "cpu memory pids\n");
    let p = v2::resolve(&host, &mount, &all, true).unwrap();
    assert!(p.cpu);
    assert_eq!(
        read_file(&root.join("airlock/cgroup.subtree_control")),
        "cpu memory pids\n"
    );
}

#[test]
fn v2_unprivileged_uses_own_cgroup_only_when_delegated() {
    let s = Scratch::new("v2own");
    let root = &s.0;
    s.file("cgroup.controllers", "cpu memory pids\n");
    s.file("user/app.scope/cgroup.controllers", "pids\n");
    s.file("user/app.scope/cgroup.subtree_control", "");
    s.file(
        "user/app.scope/cgroup.procs",
        &format!("{}\n", std::process::id()),
    );
    let mount = fake_v2_mount(root);
    let mut layout = Layout::from_text("", "0::/user/app.scope\n");
    layout.v2 = Some(mount.clone());
    let me = fs::metadata(root).unwrap().uid();
    let all: Vec<String> = ["cpu", "memory", "pids"].map(String::from).to_vec();
    let host = Host {
        layout,
        env: None,
        euid: Some(me.max(1)),
        swap_active: false,
    };
    if me == 0 {
        // Running as root: pretend to be an ordinary user owning nothing.
        let r = v2::resolve(&host, &mount, &all, false).unwrap_err();
        assert!(
            r.why.contains("memory controller(s) are not delegated"),
            "{}",
            r.why
        );
        s.file("user/app.scope/cgroup.controllers", "memory pids\n");
        let r = v2::resolve(&host, &mount, &all, false).unwrap_err();
        assert!(r.why.contains("not delegated to uid 1"), "{}", r.why);
        assert!(
            r.fix.contains("systemd-run --user --scope -p Delegate=yes"),
            "{}",
            r.fix
        );
    } else {
        let r = v2::resolve(&host, &mount, &all, false).unwrap_err();
        assert!(r.why.contains("not delegated"), "{}", r.why);
        s.file("user/app.scope/cgroup.controllers", "memory pids\n");
        // Holding only us, it may be used: we would move ourselves into a leaf first.
        let p = v2::resolve(&host, &mount, &all, false).unwrap();
        assert_eq!(p.dir, root.join("user/app.scope/airlock"));
    }
}

#[test]
fn v2_root_uses_own_cgroup_only_when_it_passes_controllers_down() {
    let s = Scratch::new("v2root");
    let root = &s.0;
    s.file("cgroup.controllers", "cpu memory pids\n");
    s.file("cgroup.subtree_control", "cpu memory pids\n");
    s.file("system.slice/airlock.service/cgroup.subtree_control", "");
    let mount = fake_v2_mount(root);
    let all: Vec<String> = ["cpu", "memory", "pids"].map(String::from).to_vec();
    let host_in = |own: &str| {
        let mut layout = Layout::from_text("", &format!("0::{own}\n"));
        layout.v2 = Some(mount.clone());
        Host {
            layout,
            env: None,
            euid: Some(0),
            swap_active: false,
        }
    };
    // Our own cgroup holds us and enables nothing: the parent goes below the root.
    let p = v2::resolve(
        &host_in("/system.slice/airlock.service"),
        &mount,
        &all,
        false,
    )
    .unwrap();
    assert_eq!(p.dir, root.join("airlock"));
    // We sit in a leaf below a service cgroup that passes the controllers down: stay inside it.
    s.file(
        "system.slice/airlock.service/cgroup.subtree_control",
        "memory pids\n",
    );
    let own = "/system.slice/airlock.service/airlock-supervisor";
    let p = v2::resolve(&host_in(own), &mount, &all, false).unwrap();
    assert_eq!(p.dir, root.join("system.slice/airlock.service/airlock"));
    // At the root itself: /airlock.
    let p = v2::resolve(&host_in("/"), &mount, &all, false).unwrap();
    assert_eq!(p.dir, root.join("airlock"));
}

#[test]
fn empty_host_is_refused_with_the_fix() {
    let host = Host {
        layout: Layout::default(),
        env: None,
        euid: Some(0),
        swap_active: false,
    };
    let r = resolve(&host, false).unwrap_err();
    assert!(
        r.why.contains("no cgroup filesystem is mounted"),
        "{}",
        r.why
    );
    assert!(r.fix.contains("--weak-limits"), "{}", r.fix);
}

#[test]
fn cleanup_removes_only_dead_old_empty_runs() {
    let s = Scratch::new("stale");
    for d in [
        "run-999999999-1",
        "run-notapid",
        &format!("run-{}-9", std::process::id()),
        "other",
    ] {
        fs::create_dir(s.0.join(d)).unwrap();
    }
    fs::create_dir(s.0.join("run-999999999-2")).unwrap();
    fs::write(s.0.join("run-999999999-2/busy"), "").unwrap(); // not empty: rmdir fails
    assert_eq!(
        cleanup_in(std::slice::from_ref(&s.0), Duration::from_secs(3600)),
        0,
        "too young"
    );
    assert_eq!(cleanup_in(std::slice::from_ref(&s.0), Duration::ZERO), 2);
    assert!(!s.0.join("run-999999999-1").exists());
    assert!(!s.0.join("run-notapid").exists());
    assert!(
        s.0.join(format!("run-{}-9", std::process::id())).exists(),
        "live owner kept"
    );
    assert!(s.0.join("other").exists());
    assert!(s.0.join("run-999999999-2").exists(), "non-empty kept");
}

// ---------------------------------------------------------------------------------------------
// Real cgroups, as root on a v1 host.

#[test]
fn probe_describes_this_host() {
    let host = probe();
    println!("{host:#?}");
    assert_eq!(host.v2_mount.is_some(), Layout::read().v2.is_some());
    if !root_v1("probe_describes_this_host") {
        return;
    }
    let controllers: Vec<&str> = host.v1_mounts.iter().map(|(c, _)| c.as_str()).collect();
    for c in ["memory", "pids", "cpu", "cpuacct"] {
        assert!(controllers.contains(&c), "{c} missing from {controllers:?}");
    }
    assert!(host.usable.is_ok());
    let line = host.describe();
    assert!(
        line.starts_with("cgroup v1 (memory, pids, cpu, cpuacct)"),
        "{line}"
    );
    assert!(line.contains("runs under /sys/fs/cgroup/memory/"), "{line}");
    assert!(
        host.parents
            .iter()
            .any(|p| p.starts_with("/sys/fs/cgroup/memory")),
        "{:?}",
        host.parents
    );
}

#[test]
fn v1_limits_are_written_and_the_cgroup_removed() {
    if !root_v1("v1_limits_are_written_and_the_cgroup_removed") {
        return;
    }
    let name = unique("limits");
    let cg = Cgroup::create(&name, &limits(64 * MIB, 17, 500)).unwrap();
    assert_eq!(cg.version(), Version::V1);
    assert!(cg.dir_fd().is_none(), "no CLONE_INTO_CGROUP on v1");
    let paths = cg.paths();
    let find = |ctl: &str| {
        let m = Layout::read().hierarchy(ctl).unwrap().mount_point.clone();
        paths
            .iter()
            .find(|p| p.starts_with(&m))
            .unwrap_or_else(|| panic!("no {ctl} dir in {paths:?}"))
            .clone()
    };
    let (mem, pids, cpu) = (find("memory"), find("pids"), find("cpu"));
    assert!(
        mem.ends_with(format!("airlock/{name}")),
        "{}",
        mem.display()
    );
    let num = |p: PathBuf| read_file(&p).trim().to_string();
    assert_eq!(
        num(mem.join("memory.limit_in_bytes")),
        (64 * MIB).to_string()
    );
    if mem.join("memory.memsw.limit_in_bytes").exists() {
        assert_eq!(
            num(mem.join("memory.memsw.limit_in_bytes")),
            (64 * MIB).to_string(),
            "swap 0"
        );
    }
    assert!(read_file(&mem.join("memory.oom_control")).contains("oom_kill_disable 0"));
    assert_eq!(num(pids.join("pids.max")), "17");
    assert_eq!(num(cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(num(cpu.join("cpu.cfs_quota_us")), "50000");

    let mut child = Command::new("sleep").arg("5").spawn().unwrap();
    let pid = child.id() as i32;
    cg.attach(pid).unwrap();
    assert_eq!(cg.pids(), [pid]);
    let membership = read_file(Path::new(&format!("/proc/{pid}/cgroup")));
    let memory_line = membership.lines().find(|l| l.contains(":memory:")).unwrap();
    assert!(
        memory_line.ends_with(&format!("/airlock/{name}")),
        "{membership}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    cg.destroy().unwrap();
    for p in &paths {
        assert!(!p.exists(), "{} survived destroy", p.display());
    }
}

#[test]
fn v1_kill_and_drop_leave_nothing() {
    if !root_v1("v1_kill_and_drop_leave_nothing") {
        return;
    }
    let cg = Cgroup::create(&unique("kill"), &limits(64 * MIB, 32, 1000)).unwrap();
    // A small tree: the shell and two grandchildren, all must die.
    let mut child = gated("sleep 30 & sleep 30 & wait");
    cg.attach(child.id() as i32).unwrap();
    release(&mut child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while cg.pids().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the shell did not start its children: {:?}",
            cg.pids()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let paths = cg.paths();
    if !probe().kill_supported {
        println!("SKIPPED part of v1_kill_and_drop_leave_nothing: no cgroup.kill here");
        child.kill().unwrap();
        child.wait().unwrap();
        return;
    }
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/sys/fs/cgroup/unified")),
        "tracking cgroup: {paths:?}"
    );
    // Dropped while the tree runs and before the child is reaped: Drop kills and removes.
    drop(cg);
    for p in &paths {
        assert!(!p.exists(), "{} survived drop", p.display());
    }
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
}

#[test]
fn v1_memory_limit_oom_kills_and_is_reported() {
    if !root_v1("v1_memory_limit_oom_kills_and_is_reported") {
        return;
    }
    let cg = Cgroup::create(&unique("oom"), &limits(64 * MIB, 32, 1000)).unwrap();
    // tail keeps a newline-free line in memory: it grows until the limit.
    let mut child = gated("head -c 300M /dev/zero | tail");
    cg.attach(child.id() as i32).unwrap();
    release(&mut child);
    let status = child.wait().unwrap();
    assert!(!status.success(), "300 MiB fitted into 64 MiB? {status:?}");
    let usage = cg.usage();
    println!("{usage:?} {status:?}");
    assert!(usage.oom, "{usage:?}");
    let peak = usage.memory_peak_bytes.expect("memory.max_usage_in_bytes");
    assert!(peak > 32 * MIB && peak <= 64 * MIB, "peak {peak}");
    assert!(usage.cpu_ns.is_some_and(|ns| ns > 0), "{usage:?}");
    cg.destroy().unwrap();
}

#[test]
fn v1_pids_limit_makes_fork_fail() {
    if !root_v1("v1_pids_limit_makes_fork_fail") {
        return;
    }
    let cg = Cgroup::create(&unique("pids"), &limits(64 * MIB, 5, 1000)).unwrap();
    let mut child = gated(
        "i=0; while [ $i -lt 20 ]; do sleep 1 & i=$((i+1)); done; echo forked all 20 >&2; wait",
    );
    cg.attach(child.id() as i32).unwrap();
    release(&mut child);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    println!("{status:?}: {err}");
    assert!(
        err.to_lowercase().contains("fork"),
        "no fork failure reported: {err:?}"
    );
    assert!(!err.contains("forked all 20"), "{err}");
    let pids_dir = cg
        .paths()
        .into_iter()
        .find(|p| p.starts_with("/sys/fs/cgroup/pids"))
        .unwrap();
    if let Ok(events) = fs::read_to_string(pids_dir.join("pids.events")) {
        assert!(
            parse::keyed(&events, "max").is_some_and(|n| n > 0),
            "{events}"
        );
    }
    cg.destroy().unwrap();
}

#[test]
fn v1_cpu_quota_throttles() {
    if !root_v1("v1_cpu_quota_throttles") {
        return;
    }
    let cg = Cgroup::create(&unique("cpu"), &limits(64 * MIB, 8, 100)).unwrap();
    let Some(cpu) = cg
        .paths()
        .into_iter()
        .find(|p| p.starts_with("/sys/fs/cgroup/cpu/"))
    else {
        println!("SKIPPED v1_cpu_quota_throttles: no separate cpu hierarchy at /sys/fs/cgroup/cpu");
        return;
    };
    // About 50 ms of CPU at full speed; at 10 ms per 100 ms it must be throttled.
    let mut child = gated("i=0; while [ $i -lt 60000 ]; do i=$((i+1)); done");
    cg.attach(child.id() as i32).unwrap();
    release(&mut child);
    assert!(child.wait().unwrap().success());
    let stat = read_file(&cpu.join("cpu.stat"));
    assert!(
        parse::keyed(&stat, "nr_throttled").is_some_and(|n| n > 0),
        "{stat}"
    );
    let ns = cg.usage().cpu_ns.unwrap();
    assert!(ns > 1_000_000, "cpu {ns} ns");
    cg.destroy().unwrap();
}

#[test]
fn v1_cleanup_stale_removes_leftovers() {
    if !root_v1("v1_cleanup_stale_removes_leftovers") {
        return;
    }
    let parent = resolved_parent().unwrap();
    let dirs = parent.dirs();
    let dead = "run-999999999-stale";
    for d in &dirs {
        fs::create_dir(d.join(dead)).unwrap();
    }
    assert!(cleanup_in(&dirs, Duration::ZERO) >= 1);
    for d in &dirs {
        assert!(
            !d.join(dead).exists(),
            "{} not cleaned",
            d.join(dead).display()
        );
    }
    assert_eq!(
        cleanup_stale(),
        0,
        "nothing old is left over: the public call honours its grace"
    );
}

// ---------------------------------------------------------------------------------------------
// The v2 backend against the cgroup2 mount of this host, whatever its controllers.

#[test]
fn v2_backend_on_this_hosts_cgroup2_mount() {
    let test = "v2_backend_on_this_hosts_cgroup2_mount";
    if euid() != Some(0) {
        println!("SKIPPED {test}: needs root to create cgroups on the cgroup2 mount");
        return;
    }
    let layout = Layout::read();
    let Some(mount) = layout.v2.clone() else {
        println!("SKIPPED {test}: no cgroup2 mount on this host");
        return;
    };
    let host = Host::current();
    let available = host.v2_controllers();
    let has = |c: &str| available.iter().any(|a| a == c);
    if !(has("memory") && has("pids")) {
        // The real resolution refuses, naming the missing controller.
        let r = v2::resolve(&host, &mount, &available, false).unwrap_err();
        assert!(
            r.why.contains("no memory controller") || r.why.contains("no pids controller"),
            "{}",
            r.why
        );
    }
    // A parent of our own, with only the limits this mount supports.
    let parent_dir = mount.mount_point.join(unique("airlock-test"));
    fs::create_dir(&parent_dir).unwrap();
    let subtree = read_file(&parent_dir.join("cgroup.controllers"));
    let parent = v2::Parent {
        dir: parent_dir.clone(),
        memory: false,
        pids: false,
        cpu: false,
        swap_active: false,
    };
    let name = unique("v2");
    let cg = Cgroup {
        name: name.clone(),
        backend: Backend::V2(
            v2::V2Cgroup::create(&parent, &name, &limits(64 * MIB, 8, 500)).unwrap(),
        ),
        done: false,
    };
    let dir = parent_dir.join(&name);
    assert_eq!(cg.paths(), std::slice::from_ref(&dir));
    assert_eq!(cg.version(), Version::V2);
    let fd = cg.dir_fd().expect("v2 has a directory fd");
    let opened = fs::File::from(fd.try_clone_to_owned().unwrap())
        .metadata()
        .unwrap();
    let on_disk = fs::metadata(&dir).unwrap();
    assert!(opened.is_dir());
    assert_eq!(
        (opened.dev(), opened.ino()),
        (on_disk.dev(), on_disk.ino()),
        "fd is the cgroup"
    );

    let mut child = gated("sleep 30 & while :; do :; done");
    let pid = child.id() as i32;
    cg.attach(pid).unwrap();
    release(&mut child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while cg.pids().len() < 2 {
        assert!(Instant::now() < deadline, "{:?}", cg.pids());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(cg.pids().contains(&pid));
    assert!(
        read_file(Path::new(&format!("/proc/{pid}/cgroup"))).contains(&format!(
            "0::/{}/{name}",
            parent_dir.file_name().unwrap().to_string_lossy()
        ))
    );
    std::thread::sleep(Duration::from_millis(50));
    let usage = cg.usage();
    assert!(
        usage.cpu_ns.is_some_and(|ns| ns > 0),
        "cpu.stat usage_usec: {usage:?}"
    );
    if !subtree.contains("memory") {
        assert_eq!(
            usage.memory_peak_bytes, None,
            "no memory controller, no memory.peak"
        );
        assert!(!usage.oom);
    }
    if dir.join("cgroup.kill").exists() {
        assert!(cg.kill());
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    } else {
        println!("SKIPPED cgroup.kill part of {test}: kernel before 5.14");
        assert!(!cg.kill());
        child.kill().unwrap();
        child.wait().unwrap();
    }
    cg.destroy().unwrap();
    assert!(!dir.exists());
    fs::remove_dir(&parent_dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Unprivileged, for real: this test binary re-run as uid/gid 65534.

#[test]
fn unprivileged_user_is_refused_with_the_fix() {
    let test = "unprivileged_user_is_refused_with_the_fix";
    if euid() != Some(0) {
        println!("SKIPPED {test}: needs root to start the test binary as another user");
        return;
    }
    let host = probe();
    let Some(version) = host.version else {
        println!("SKIPPED {test}: no usable cgroup version here");
        return;
    };
    if version == Version::V2 {
        println!(
            "SKIPPED {test}: expectations are written for v1 (own cgroup may be delegated on v2)"
        );
        return;
    }
    let exe = std::env::current_exe().unwrap();
    // Two parents in every hierarchy (and on the cgroup2 mount): one belongs to root, the other is
    // delegated to uid 65534 the way the fix text says (mkdir + chown -R).
    let pid = std::process::id();
    let (theirs, delegated) = (
        format!("airlock-test-{pid}-theirs"),
        format!("airlock-test-{pid}-deleg"),
    );
    let layout = Layout::read();
    let mut made: Vec<PathBuf> = Vec::new();
    for m in layout.v1.iter().chain(layout.v2.as_ref()) {
        for (name, chown) in [(&theirs, false), (&delegated, true)] {
            let d = m.mount_point.join(name);
            fs::create_dir(&d).unwrap();
            made.push(d.clone());
            if chown {
                std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
                for f in fs::read_dir(&d).unwrap() {
                    std::os::unix::fs::chown(f.unwrap().path(), Some(65534), Some(65534)).unwrap();
                }
            }
        }
    }
    let cases = [
        (String::new(), "only by root"),
        ("airlock-does-not-exist".to_string(), "does not exist"),
        (theirs.clone(), "cannot write"),
        (delegated.clone(), "ok"),
    ];
    let result = std::panic::catch_unwind(|| {
        for (env, expect) in &cases {
            run_unprivileged_case(&exe, env, expect);
        }
    });
    for d in &made {
        if let Err(e) = fs::remove_dir(d) {
            println!("cannot remove test parent {}: {e}", d.display());
        }
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn run_unprivileged_case(exe: &Path, env: &str, expect: &str) {
    let out = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "cgroup::tests::unprivileged_child",
            "--nocapture",
        ])
        .env(PARENT_ENV, env)
        .env("AIRLOCK_CGROUP_TEST_EXPECT", expect)
        .uid(65534)
        .gid(65534)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            println!(
                "SKIPPED unprivileged case {env:?}: uid 65534 cannot execute {}: {e}",
                exe.display()
            );
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    println!("unprivileged case {env:?}:\n{text}");
    assert!(
        out.status.success() && text.contains("1 passed"),
        "case {env:?}:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run by [`unprivileged_user_is_refused_with_the_fix`] as uid 65534; not on its own.
#[test]
#[ignore = "helper: run as an ordinary user by unprivileged_user_is_refused_with_the_fix"]
fn unprivileged_child() {
    let expect = std::env::var("AIRLOCK_CGROUP_TEST_EXPECT").expect("run by the root test");
    assert_ne!(euid(), Some(0), "must run unprivileged");
    let probed = probe();
    if expect == "ok" {
        return delegated_v1_parent_works(probed);
    }
    let usable = probed.usable.expect_err("probe must predict the refusal");
    let why = usable.split(". Fix: ").next().unwrap();
    assert!(why.contains(&expect), "probe: {usable}");
    let e = Cgroup::create(&unique("unpriv"), &limits(64 * MIB, 8, 1000)).unwrap_err();
    let (why, fix) = unavailable_why(e);
    println!("why: {why}\nfix: {fix}");
    assert!(why.contains(&expect), "{why}");
    assert!(fix.contains("--weak-limits"), "{fix}");
    if let Ok(env) = std::env::var(PARENT_ENV)
        && !env.is_empty()
    {
        assert!(why.contains(&env), "the refusal names the path: {why}");
    }
}

/// The positive case, as uid 65534 with `AIRLOCK_CGROUP_PARENT` naming a delegated v1 parent.
fn delegated_v1_parent_works(probed: HostCgroups) {
    assert!(probed.usable.is_ok(), "{:?}", probed.usable);
    let env = std::env::var(PARENT_ENV).unwrap();
    assert!(!probed.parents.is_empty());
    assert!(
        probed.parents.iter().all(|p| p.ends_with(&env)),
        "{:?}",
        probed.parents
    );
    let cg = Cgroup::create(&unique("deleg"), &limits(64 * MIB, 8, 500)).unwrap();
    let paths = cg.paths();
    let mem = paths
        .iter()
        .find(|p| p.starts_with("/sys/fs/cgroup/memory"))
        .unwrap();
    assert_eq!(
        read_file(&mem.join("memory.limit_in_bytes")).trim(),
        (64 * MIB).to_string()
    );
    let mut child = Command::new("sleep").arg("5").spawn().unwrap();
    let pid = child.id() as i32;
    cg.attach(pid).unwrap();
    assert!(cg.pids().contains(&pid), "{:?}", cg.pids());
    let memory_line = read_file(Path::new(&format!("/proc/{pid}/cgroup")));
    assert!(
        memory_line.contains(&format!("{env}/{}", cg.name())),
        "{memory_line}"
    );
    // No tracking cgroup for an ordinary user (cgroup2 would refuse moving the process out of
    // the root-owned root cgroup): kill() says it cannot, and the caller kills the pids.
    assert!(!cg.kill(), "kill() claimed to cover the run");
    assert!(
        paths
            .iter()
            .all(|p| !p.starts_with("/sys/fs/cgroup/unified")),
        "{paths:?}"
    );
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    cg.destroy().unwrap();
    for p in &paths {
        assert!(!p.exists(), "{} survived destroy", p.display());
    }
}

#[test]
fn a_probe_stands_in_only_while_fresh_and_for_the_same_parent() {
    let none: Option<String> = None;
    let delegated = Some("airlock-me".to_string());
    assert!(Probed::usable(Duration::from_millis(5), &none, &none));
    assert!(Probed::usable(
        Duration::from_millis(5),
        &delegated,
        &delegated
    ));
    assert!(!Probed::usable(Duration::from_millis(5), &none, &delegated));
    assert!(!Probed::usable(Duration::from_millis(5), &delegated, &none));
    assert!(!Probed::usable(Probed::FRESH, &none, &none));
    assert!(!Probed::usable(Duration::from_secs(3600), &none, &none));
}

#[test]
fn a_probe_is_taken_once_and_only_by_its_own_thread() {
    let env = env_parent();
    Probed::keep(Host::with_env(env.clone()));
    let elsewhere = env.clone();
    let other = std::thread::spawn(move || Probed::take(&elsewhere).is_some());
    assert!(
        !other.join().unwrap(),
        "another thread took this thread's probe"
    );
    assert!(Probed::take(&env).is_some());
    assert!(Probed::take(&env).is_none(), "a probe was taken twice");
}
