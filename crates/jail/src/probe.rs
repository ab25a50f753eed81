//! What this host offers each isolation layer, for `airlock doctor`. Describes; never fails.

use std::path::Path;

use crate::{Command, Policy, Sandbox, cgroup, landlock, sys};

/// This process's effective uid.
pub fn effective_uid() -> u32 {
    sys::geteuid()
}

/// The cores this process may use (`std::thread::available_parallelism`, at least 1), found
/// once per process: the standard library reads the cgroup's CPU quota from its files on every
/// call, which a cold start would otherwise pay more than once. A later change of the process's
/// affinity or quota is not seen.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// The layer works.
    Ok,
    /// Works, with a caveat worth knowing.
    Warn,
    /// Missing: runs are refused (or the layer is skipped, where the contract allows).
    Missing,
}

#[derive(Clone, Debug)]
pub struct Check {
    pub layer: &'static str,
    pub level: Level,
    pub detail: String,
    pub fix: Option<String>,
}

fn check(layer: &'static str, level: Level, detail: impl Into<String>, fix: Option<&str>) -> Check {
    Check {
        layer,
        level,
        detail: detail.into(),
        fix: fix.map(str::to_owned),
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Every layer, in the order a sandbox is built.
pub fn host_checks() -> Vec<Check> {
    let mut out = Vec::new();
    let root = sys::geteuid() == 0;
    out.push(check(
        "identity",
        Level::Ok,
        if root {
            "running as root: each sandbox maps to its own unprivileged host uid".to_owned()
        } else {
            format!(
                "running as uid {}: sandboxes map to this uid inside a user namespace",
                sys::geteuid()
            )
        },
        None,
    ));

    let max_userns = read("/proc/sys/user/max_user_namespaces").and_then(|s| s.parse::<u64>().ok());
    let restricted =
        read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1");
    let clone_off = read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0");
    out.push(match max_userns {
        Some(0) | None => check(
            "user namespaces",
            Level::Missing,
            "user.max_user_namespaces is 0 or unreadable",
            Some("sysctl -w user.max_user_namespaces=65536"),
        ),
        Some(n) if !root && (restricted || clone_off) => check(
            "user namespaces",
            Level::Missing,
            format!("limit {n}, but unprivileged creation is restricted"),
            Some("sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (or kernel.unprivileged_userns_clone=1)"),
        ),
        Some(n) => check("user namespaces", Level::Ok, format!("available (limit {n})"), None),
    });
    // Each sandbox with network `none` or `allowlist` makes one in its user namespace.
    out.push(
        match read("/proc/sys/user/max_net_namespaces").and_then(|s| s.parse::<u64>().ok()) {
            Some(0) | None => check(
                "net namespaces",
                Level::Missing,
                "user.max_net_namespaces is 0 or unreadable",
                Some("sysctl -w user.max_net_namespaces=65536"),
            ),
            Some(n) => check(
                "net namespaces",
                Level::Ok,
                format!("available (limit {n})"),
                None,
            ),
        },
    );

    let cg = cgroup::probe();
    out.push(match &cg.usable {
        Ok(()) => check("cgroups", Level::Ok, cg.describe(), None),
        Err(why) => Check {
            layer: "cgroups",
            level: Level::Missing,
            detail: cg.describe(),
            fix: Some(why.clone()),
        },
    });

    if cg.version == Some(cgroup::Version::V1) && cg.usable.is_ok() {
        out.push(v1_migration_cost(cg.v2_mount.as_deref()));
    }

    let seccomp = read("/proc/self/status").and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("Seccomp:"))
            .map(str::to_owned)
    });
    out.push(match seccomp {
        Some(_) => check("seccomp", Level::Ok, "seccomp-bpf filters available", None),
        None => check(
            "seccomp",
            Level::Missing,
            "kernel without CONFIG_SECCOMP_FILTER",
            Some("use a kernel with seccomp filter support"),
        ),
    });

    out.push(match landlock::abi_version() {
        Some(abi) => check("landlock", Level::Ok, format!("ABI version {abi}"), None),
        None => check(
            "landlock",
            Level::Warn,
            "not available: runs continue without this defense-in-depth layer",
            Some("boot with `lsm=landlock,...` on a kernel >= 5.13 with CONFIG_SECURITY_LANDLOCK"),
        ),
    });

    out.push(kvm());

    let trial = Sandbox::spawn(&Policy::default_for_probe(), &Command::new("/bin/true"))
        .and_then(|s| s.wait(|_, _| {}));
    out.push(match trial {
        Ok(o) if o.exit_code == Some(0) => check(
            "trial sandbox",
            Level::Ok,
            format!(
                "/bin/true ran fully isolated in {:.1} ms",
                o.timing.total.as_secs_f64() * 1e3
            ),
            None,
        ),
        Ok(o) => check(
            "trial sandbox",
            Level::Missing,
            format!("/bin/true ended with {:?}/{:?}", o.exit_code, o.signal),
            None,
        ),
        Err(e) => check("trial sandbox", Level::Missing, e.to_string(), None),
    });
    out
}

/// Whether moving a process into a cgroup skips the RCU grace period it otherwise waits for:
/// a cgroup2 mount with `favordynmods`, or `rcu_expedited`. (This reports the options; a 6.18
/// kernel was seen to keep the faster path until reboot after the option was removed again.)
pub fn cgroup_moves_fast() -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let favored = mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[2] == "cgroup2" && f[3].split(',').any(|o| o == "favordynmods")
    });
    favored || read("/sys/kernel/rcu_expedited").as_deref() == Some("1")
}

/// Moving a process into a cgroup v1 waits for an RCU grace period unless the cgroup2 root is
/// mounted with `favordynmods` (or RCU is expedited): about 10 ms on every cold run.
fn v1_migration_cost(v2_mount: Option<&Path>) -> Check {
    if cgroup_moves_fast() {
        return check(
            "cgroup v1 attach",
            Level::Ok,
            "fast: favordynmods or rcu_expedited is set",
            None,
        );
    }
    let fix = match v2_mount {
        Some(m) => format!(
            "mount -o remount,favordynmods {} (kernel >= 6.1; scripts/setup.sh does it as root), or echo 1 > /sys/kernel/rcu_expedited; or move to cgroup v2",
            m.display()
        ),
        None => "echo 1 > /sys/kernel/rcu_expedited, or move the host to cgroup v2".to_owned(),
    };
    Check {
        layer: "cgroup v1 attach",
        level: Level::Warn,
        detail: "each run's move into its v1 cgroups waits for an RCU grace period (about 10 ms per cold run)".into(),
        fix: Some(fix),
    }
}

fn kvm() -> Check {
    if !Path::new("/dev/kvm").exists() {
        return check(
            "kvm",
            Level::Warn,
            "/dev/kvm absent (airlock does not need it)",
            None,
        );
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hw = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    let pvm = Path::new("/sys/module/kvm_pvm").exists();
    let detail = match (hw, pvm) {
        (true, _) => "/dev/kvm present with hardware virtualization (vmx/svm)",
        (false, true) => {
            "/dev/kvm present but backed by the PVM module, not hardware virtualization: stock guest kernels do not boot"
        }
        (false, false) => "/dev/kvm present without vmx/svm: not hardware virtualization",
    };
    check(
        "kvm",
        if hw { Level::Ok } else { Level::Warn },
        detail,
        None,
    )
}

impl Policy {
    /// The smallest useful policy: system directories only.
    fn default_for_probe() -> Policy {
        let mounts = ["/usr", "/bin", "/lib", "/lib64"]
            .iter()
            .filter(|p| Path::new(p).exists())
            .map(|p| crate::Mount::same(*p))
            .collect();
        Policy {
            mounts,
            ..Policy::default()
        }
    }
}
