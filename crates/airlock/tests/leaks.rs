//! Run around the whole suite (`scripts/test.sh` does): nothing of ours may remain on the host —
//! no sandbox process, no cgroup, no mount, no temporary directory.
//!
//! `baseline_before_the_suite` runs first and records what is already there (say, a cgroup
//! left in another hierarchy by a supervisor killed before the suite started, which this
//! suite's engines cannot see to sweep); the final check fails only on what the suite added.

use std::path::{Path, PathBuf};

const HOST_ID_BASE: u32 = 1_500_000_000;
const HOST_ID_SLOTS: u32 = 65_536;

fn status_uid(pid_dir: &Path) -> Option<u32> {
    let s = std::fs::read_to_string(pid_dir.join("status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn find_run_cgroups(dir: &Path, depth: usize, found: &mut Vec<String>) {
    if depth > 8 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if !p.is_dir() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("run-")
            && p.parent()
                .is_some_and(|par| par.to_string_lossy().contains("airlock"))
        {
            found.push(p.display().to_string());
        }
        find_run_cgroups(&p, depth + 1, found);
    }
}

/// What of ours is on the host now, one list per kind.
struct Remains {
    procs: Vec<String>,
    cgroups: Vec<String>,
    mounts: Vec<String>,
    temps: Vec<String>,
}

impl Remains {
    fn now() -> Self {
        let mut procs = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Some(uid) = status_uid(&e.path())
                && (HOST_ID_BASE..HOST_ID_BASE + HOST_ID_SLOTS).contains(&uid)
            {
                let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                procs.push(format!(
                    "{} uid {uid}: {}",
                    e.file_name().to_string_lossy(),
                    String::from_utf8_lossy(&cmd)
                ));
            }
        }
        let mut cgroups = Vec::new();
        find_run_cgroups(Path::new("/sys/fs/cgroup"), 0, &mut cgroups);
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains("newroot") || l.contains("oldroot") || l.contains("airlock"))
            .map(str::to_owned)
            .collect();
        let temps = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("airlock"))
            .filter(|n| n != "airlock-host-marker")
            .collect();
        Remains {
            procs,
            cgroups,
            mounts,
            temps,
        }
    }

    fn all(&self) -> impl Iterator<Item = &String> {
        self.procs
            .iter()
            .chain(&self.cgroups)
            .chain(&self.mounts)
            .chain(&self.temps)
    }
}

fn baseline_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("leaks-baseline.txt")
}

#[test]
#[ignore = "run first, before the whole suite: scripts/test.sh"]
fn baseline_before_the_suite() {
    let now = Remains::now();
    let lines: Vec<&str> = now.all().map(String::as_str).collect();
    for l in &lines {
        eprintln!("present before the suite (not counted as its leak): {l}");
    }
    std::fs::write(baseline_path(), lines.join("\n")).unwrap();
}

#[test]
#[ignore = "run last, after the whole suite: scripts/test.sh"]
fn nothing_remains_after_the_suite() {
    // Without a baseline (the check run on its own) everything counts.
    let before = std::fs::read_to_string(baseline_path()).unwrap_or_default();
    let before: std::collections::HashSet<&str> = before.lines().collect();
    let new = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .filter(|x| !before.contains(x.as_str()))
            .collect()
    };
    let now = Remains::now();
    let procs = new(now.procs);
    assert!(procs.is_empty(), "sandbox processes remain: {procs:#?}");
    let cgroups = new(now.cgroups);
    assert!(cgroups.is_empty(), "sandbox cgroups remain: {cgroups:#?}");
    let mounts = new(now.mounts);
    assert!(
        mounts.is_empty(),
        "sandbox mounts remain on the host: {mounts:#?}"
    );
    let temps = new(now.temps);
    assert!(
        temps.is_empty(),
        "temporary directories remain in /tmp: {temps:?}"
    );
}
