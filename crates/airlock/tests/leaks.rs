//! Run after the whole suite (`scripts/test.sh` does): nothing of ours may remain on the host —
//! no sandbox process, no cgroup, no mount, no temporary directory.

use std::path::Path;

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

#[test]
#[ignore = "run last, after the whole suite: scripts/test.sh"]
fn nothing_remains_after_the_suite() {
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
    assert!(procs.is_empty(), "sandbox processes remain: {procs:#?}");

    let mut cgroups = Vec::new();
    find_run_cgroups(Path::new("/sys/fs/cgroup"), 0, &mut cgroups);
    assert!(cgroups.is_empty(), "sandbox cgroups remain: {cgroups:#?}");

    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let ours: Vec<&str> = mounts
        .lines()
        .filter(|l| l.contains("newroot") || l.contains("oldroot") || l.contains("airlock"))
        .collect();
    assert!(
        ours.is_empty(),
        "sandbox mounts remain on the host: {ours:#?}"
    );

    let temps: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("airlock"))
        .filter(|n| n != "airlock-host-marker")
        .collect();
    assert!(
        temps.is_empty(),
        "temporary directories remain in /tmp: {temps:?}"
    );
}
