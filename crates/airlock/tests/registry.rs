//! REGISTRY TESTS — this group reaches the real public package registries (the Python index
//! and the npm registry), unlike `packages.rs`, which is offline. `scripts/test.sh` (and so
//! `.ci/run`) runs them because this project's machines reach the registries; on a host that
//! cannot, each one skips with the installer's network error as the reason (DESIGN §11),
//! never passing vacuously on any other failure. One test per package, a fresh store each,
//! so every test shows a cold install and then a warm hit.

mod common;
use common::*;

use std::fs;
use std::path::PathBuf;

use serde_json::Value;

struct Store(PathBuf);

impl Store {
    fn new(who: &Who, tag: &str) -> Store {
        let dir = store_dir(who, "registry", tag);
        Store(dir)
    }

    /// `airlock run --json ARGS` against the real registries; `None` (skip) when the installer
    /// could not reach them.
    fn run(&self, who: &Who, args: &[&str]) -> Option<Value> {
        let out = airlock(who)
            .env("AIRLOCK_HOME", &self.0)
            .args(["run", "--json", "--timeout", "120", "--memory", "1024"])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "airlock printed no JSON ({e}): {text:?} {:?}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        if v["error"]["type"] == "DependencyInstallError" {
            let msg = v["error"]["message"].as_str().unwrap_or_default();
            const NETWORK: &[&str] = &[
                "dns error",
                "error sending request",
                "Failed to fetch",
                "Could not connect",
                "Connection refused",
                "ENOTFOUND",
                "EAI_AGAIN",
                "ECONNREFUSED",
                "ETIMEDOUT",
                "ECONNRESET",
                "network",
            ];
            if NETWORK.iter().any(|n| msg.contains(n)) {
                eprintln!("skipped: the package registry is unreachable from this host: {msg}");
                return None;
            }
        }
        Some(v)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn ok(v: &Value) -> String {
    assert_eq!(v["status"], "ok", "run failed: {v}");
    v["stdout"].as_str().unwrap_or_default().trim().to_owned()
}

/// Runs `args` cold, then again: the second must be a hit on the same environment.
fn cold_then_warm(store: &Store, who: &Who, args: &[&str]) -> Option<(Value, Value)> {
    let cold = store.run(who, args)?;
    assert_eq!(cold["environment_cached"], false, "{cold}");
    let warm = store.run(who, args)?;
    assert_eq!(warm["environment_cached"], true, "{warm}");
    // A hit did no install work (`environment_cached`); how long the lookup took is for
    // `airlock bench` and the notes, never an assertion.
    assert_eq!(warm["environment"], cold["environment"]);
    eprintln!(
        "{args:?}: cold install {} ms, warm lookup {} ms",
        cold["timing"]["install_ms"], warm["timing"]["install_ms"]
    );
    Some((cold, warm))
}

both!(registry_requests_two_versions_side_by_side, |who| {
    let store = Store::new(who, "requests");
    let code = "import requests; print(requests.__version__)";
    let Some((old, _)) = cold_then_warm(&store, who, &["-p", "requests==2.31.0", "-c", code])
    else {
        return;
    };
    assert_eq!(ok(&old), "2.31.0");
    let Some(new) = store.run(who, &["-p", "requests==2.32.3", "-c", code]) else {
        return;
    };
    assert_eq!(ok(&new), "2.32.3");
    assert_ne!(new["environment"], old["environment"]);
    let again = store
        .run(who, &["-p", "requests==2.31.0", "-c", code])
        .unwrap();
    assert_eq!(ok(&again), "2.31.0");
});

#[test]
fn registry_numpy() {
    let Some(who) = identity(true) else { return };
    let store = Store::new(&who, "numpy");
    let code = "import numpy; print(int(numpy.arange(4).sum()))";
    if let Some((cold, warm)) = cold_then_warm(&store, &who, &["-p", "numpy", "-c", code]) {
        assert_eq!(ok(&cold), "6");
        assert_eq!(ok(&warm), "6");
    }
}

#[test]
fn registry_pandas() {
    let Some(who) = identity(true) else { return };
    let store = Store::new(&who, "pandas");
    let code = "import pandas as pd; print(int(pd.DataFrame({'a': [1, 2, 3]})['a'].sum()))";
    if let Some((cold, warm)) = cold_then_warm(&store, &who, &["-p", "pandas", "-c", code]) {
        assert_eq!(ok(&cold), "6");
        assert_eq!(ok(&warm), "6");
    }
}

both!(registry_npm_is_number, |who| {
    let store = Store::new(who, "npm");
    let code = "const isNumber = require('is-number'); console.log(isNumber(5), isNumber('x'))";
    if let Some((cold, _)) = cold_then_warm(
        &store,
        who,
        &["--lang", "javascript", "-p", "is-number@7.0.0", "-c", code],
    ) {
        assert_eq!(ok(&cold), "true false");
    }
});
