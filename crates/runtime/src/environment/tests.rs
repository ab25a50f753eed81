//! The store protocol with a fake installer: keys, locking, publish by rename, failures and
//! debris never used, prune. The real installers are covered by the CLI's integration tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

/// A scratch store root, removed on drop. Not named `airlock*`: the leak check looks for those.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!(
            "envstore-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        Scratch(p)
    }
    fn store(&self) -> Store {
        Store::open(&self.0).unwrap()
    }
    fn config(&self) -> PackageConfig {
        PackageConfig {
            home: Some(self.0.clone()),
            ..PackageConfig::default()
        }
    }
    fn entries(&self, dir: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.0.join(dir))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        remove_tree(&self.0);
    }
}

fn target() -> Target {
    Target {
        interpreter: "cpython-311 3.11.7 /usr/bin/python3".into(),
        platform: "linux-x86_64 glibc-2.36".into(),
        installer: "uv 0.13.9".into(),
    }
}

fn record(specs: &[&str]) -> Record {
    Record {
        language: Language::Python,
        specs: specs.iter().map(|s| s.to_string()).collect(),
        target: target(),
    }
}

fn specs(list: &[&str]) -> Vec<spec::Spec> {
    let owned: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    spec::parse_all(Language::Python, &owned, false).unwrap()
}

fn writes(name: &'static str, body: &'static str) -> Box<Installer<'static>> {
    Box::new(move |tmp: &Path, _: &mut dyn FnMut(&Progress)| {
        fs::create_dir_all(tmp.join("site-packages")).unwrap();
        fs::write(tmp.join("site-packages").join(name), body).unwrap();
        Ok(())
    })
}

#[test]
fn keys_are_stable_order_independent_and_cover_the_target() {
    let t = target();
    let a = key_of(Language::Python, &specs(&["requests==2.31.0", "numpy"]), &t);
    let b = key_of(
        Language::Python,
        &specs(&["NumPy", " Requests == 2.31.0 "]),
        &t,
    );
    assert_eq!(a, b);
    assert_eq!(a.len(), 20);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    // Stable across releases: a changed key silently orphans every stored environment.
    assert_eq!(
        key_of(Language::Python, &specs(&["requests==2.31.0"]), &t),
        key_of(Language::Python, &specs(&["requests==2.31.0"]), &target())
    );
    let other = key_of(Language::Python, &specs(&["requests==2.32.3", "numpy"]), &t);
    assert_ne!(a, other);
    for changed in [
        Target {
            interpreter: "cpython-312 3.12.1 /usr/bin/python3".into(),
            ..t.clone()
        },
        Target {
            platform: "linux-aarch64 glibc-2.36".into(),
            ..t.clone()
        },
        Target {
            installer: "uv 0.14.0".into(),
            ..t.clone()
        },
    ] {
        assert_ne!(
            a,
            key_of(
                Language::Python,
                &specs(&["requests==2.31.0", "numpy"]),
                &changed
            )
        );
    }
    assert_ne!(
        key_of(Language::Python, &specs(&["x"]), &t),
        key_of(Language::JavaScript, &specs(&["x"]), &t)
    );
}

#[test]
fn a_build_is_published_sealed_and_then_hit() {
    let s = Scratch::new("publish");
    let store = s.store();
    let mut install = |tmp: &Path, _: &mut dyn FnMut(&Progress)| {
        let d = tmp.join("site-packages");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("m.py"), "x = 1").unwrap();
        fs::set_permissions(d.join("m.py"), fs::Permissions::from_mode(0o4777)).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", d.join("link")).unwrap();
        Ok(())
    };
    let mut events = Vec::new();
    let env = ensure_key(
        &store,
        "k1",
        &record(&["m"]),
        &mut |p| events.push(format!("{p:?}")),
        &mut install,
    )
    .unwrap();
    assert!(!env.cached);
    assert!(events[0].starts_with("Installing"), "{events:?}");
    assert!(
        events.last().unwrap().starts_with("Installed"),
        "{events:?}"
    );
    let m = fs::metadata(env.path.join("site-packages/m.py")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o755, "setuid and world-write are gone");
    let d = fs::metadata(env.path.join("site-packages")).unwrap();
    assert_eq!(d.mode() & 0o7777, 0o755);
    if store.privileged {
        assert_eq!((m.uid(), m.gid()), (0, 0));
    }
    // The planted symlink was not followed.
    let shadow = fs::metadata("/etc/shadow").map(|m| m.mode() & 0o7777).ok();
    assert_ne!(shadow, Some(0o755));
    let info = store.read_meta("k1").unwrap();
    assert_eq!(info.specs, vec!["m".to_string()]);
    assert!(info.size_bytes > 0);
    drop(env);
    let mut never = |_: &Path, _: &mut dyn FnMut(&Progress)| -> Result<(), RuntimeError> {
        panic!("a hit must not install")
    };
    let env = ensure_key(&store, "k1", &record(&["m"]), &mut |_| {}, &mut never).unwrap();
    assert!(env.cached);
    assert_eq!(s.entries("envs"), vec!["k1".to_string()]);
}

#[test]
fn ten_concurrent_first_uses_install_once() {
    let s = Scratch::new("concurrent");
    let installs = Arc::new(AtomicUsize::new(0));
    let root = s.0.clone();
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let installs = Arc::clone(&installs);
            let root = root.clone();
            std::thread::spawn(move || {
                let store = Store::open(&root).unwrap();
                let mut install = |tmp: &Path, _: &mut dyn FnMut(&Progress)| {
                    installs.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(300));
                    fs::write(tmp.join("done"), "yes").unwrap();
                    Ok(())
                };
                let env =
                    ensure_key(&store, "kc", &record(&["c"]), &mut |_| {}, &mut install).unwrap();
                assert_eq!(fs::read_to_string(env.path.join("done")).unwrap(), "yes");
                env.cached
            })
        })
        .collect();
    let cached: Vec<bool> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(installs.load(Ordering::SeqCst), 1);
    assert_eq!(cached.iter().filter(|c| !**c).count(), 1, "{cached:?}");
    assert_eq!(s.entries("envs"), vec!["kc".to_string()]);
}

#[test]
fn a_failed_install_is_never_used_and_the_retry_is_clean() {
    let s = Scratch::new("failed");
    let store = s.store();
    let mut failing = |tmp: &Path, _: &mut dyn FnMut(&Progress)| {
        fs::write(tmp.join("half"), "partial").unwrap();
        Err(RuntimeError::Install {
            installer: "uv",
            specs: "f".into(),
            message: "error: no version of f".into(),
        })
    };
    let e = ensure_key(&store, "kf", &record(&["f"]), &mut |_| {}, &mut failing).unwrap_err();
    assert!(matches!(e, RuntimeError::Install { .. }), "{e:?}");
    assert!(s.entries("envs").is_empty(), "{:?}", s.entries("envs"));
    assert!(s.entries("meta").is_empty());
    let env = ensure_key(
        &store,
        "kf",
        &record(&["f"]),
        &mut |_| {},
        &mut writes("ok.py", "1"),
    )
    .unwrap();
    assert!(!env.cached);
    assert!(env.path.join("site-packages/ok.py").is_file());
    assert!(!env.path.join("half").exists());
}

#[test]
fn debris_of_an_interrupted_install_is_removed_not_used() {
    let s = Scratch::new("debris");
    let store = s.store();
    // What a builder killed mid-install leaves: a temporary directory nobody holds.
    let dead = store.root.join("envs/.tmp-kd-4242-dead");
    fs::create_dir_all(dead.join("site-packages")).unwrap();
    fs::write(dead.join("site-packages/stale.py"), "bad").unwrap();
    let env = ensure_key(
        &store,
        "kd",
        &record(&["d"]),
        &mut |_| {},
        &mut writes("fresh.py", "1"),
    )
    .unwrap();
    assert!(!env.cached);
    assert!(!env.path.join("site-packages/stale.py").exists());
    assert!(!dead.exists());
    assert_eq!(s.entries("envs"), vec!["kd".to_string()]);
}

#[test]
fn prune_skips_environments_in_use_and_removes_debris() {
    let s = Scratch::new("prune");
    let store = s.store();
    let held = ensure_key(
        &store,
        "ka",
        &record(&["a"]),
        &mut |_| {},
        &mut writes("a.py", "1"),
    )
    .unwrap();
    drop(
        ensure_key(
            &store,
            "kb",
            &record(&["b"]),
            &mut |_| {},
            &mut writes("b.py", "1"),
        )
        .unwrap(),
    );
    fs::create_dir_all(store.root.join("envs/.tmp-kz-1-x")).unwrap();
    assert_eq!(list(&s.config()).unwrap().len(), 2);

    // Not old enough: only the debris goes.
    let p = prune(&s.config(), Some(Duration::from_secs(3600)), false).unwrap();
    assert!(p.removed.is_empty());
    assert_eq!(p.debris, 1);

    let p = prune(&s.config(), None, true).unwrap();
    assert_eq!(p.busy, vec!["ka".to_string()]);
    assert_eq!(
        p.removed.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
        vec!["kb"]
    );
    assert!(
        held.path.join("site-packages/a.py").is_file(),
        "an env in use stays whole"
    );
    drop(held);
    let p = prune(&s.config(), None, true).unwrap();
    assert_eq!(p.removed.len(), 1);
    assert!(list(&s.config()).unwrap().is_empty());
    assert!(s.entries("envs").is_empty());
    assert!(s.entries("meta").is_empty());
}

#[test]
fn prune_removes_old_probe_answers_and_interrupted_writes() {
    let s = Scratch::new("prune-probes");
    let probes = s.0.join("probes");
    fs::create_dir_all(&probes).unwrap();
    let old = SystemTime::now() - Duration::from_secs(2 * 3600);
    let aged = |name: &str| {
        let f = File::create(probes.join(name)).unwrap();
        f.set_modified(old).unwrap();
    };
    aged("stale");
    aged("stale-write.tmp1-0");
    fs::write(probes.join("fresh"), "x").unwrap();
    fs::write(probes.join("fresh-write.tmp1-1"), "x").unwrap();

    // No age asked: only the interrupted write goes, never an answer or a write in flight.
    assert_eq!(prune(&s.config(), None, false).unwrap().probes, 1);
    assert_eq!(
        s.entries("probes"),
        vec!["fresh", "fresh-write.tmp1-1", "stale"]
    );
    // By age, without an environment in the store.
    assert!(!s.0.join("envs").exists());
    let p = prune(&s.config(), Some(Duration::from_secs(3600)), false).unwrap();
    assert_eq!(p.probes, 1);
    assert_eq!(s.entries("probes"), vec!["fresh", "fresh-write.tmp1-1"]);
    // Every answer with `all`; the write in flight stays.
    assert_eq!(prune(&s.config(), None, true).unwrap().probes, 1);
    assert_eq!(s.entries("probes"), vec!["fresh-write.tmp1-1"]);
}

#[test]
fn config_falls_back_and_is_checked() {
    let s = Scratch::new("config");
    assert_eq!(s.config().store_root().unwrap(), s.0);
    let bad = PackageConfig {
        home: Some(s.0.clone()),
        index_url: Some("file:///etc".into()),
        ..PackageConfig::default()
    };
    assert!(
        matches!(bad.resolve(), Err(RuntimeError::InvalidInput { field, .. }) if field == "index_url")
    );
    let bad = PackageConfig {
        home: Some(s.0.clone()),
        find_links: vec![PathBuf::from("/nonexistent-wheelhouse")],
        ..PackageConfig::default()
    };
    assert!(
        matches!(bad.resolve(), Err(RuntimeError::InvalidInput { field, .. }) if field == "find_links")
    );
    let rel = PackageConfig {
        home: Some(PathBuf::from("relative")),
        ..PackageConfig::default()
    };
    assert!(rel.store_root().is_err());
}
