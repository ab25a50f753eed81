//! Builds the zygote library: the jail crate as a C-ABI shared object (its `zygote-lib`
//! feature), which the runtime embeds and every Python zygote loads. A nested cargo build into
//! its own target directory, since cargo cannot depend on another crate's cdylib.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let jail = manifest_dir.join("../jail");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed={}", jail.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        jail.join("Cargo.toml").display()
    );

    let target_dir = out.join("zygote-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["rustc", "--lib", "--release", "--offline", "--quiet"])
        .args(["--features", "zygote-lib", "--crate-type", "cdylib"])
        .arg("--manifest-path")
        .arg(jail.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // What the outer build set for its own crates must not leak into this one (clippy's
    // wrapper, the outer target dir, its flags).
    for var in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        build.env_remove(var);
    }
    let status = build
        .status()
        .expect("running cargo to build the zygote library");
    assert!(
        status.success(),
        "building the zygote library (airlock-jail --features zygote-lib as a cdylib) failed"
    );
    let built = target_dir.join("release/libairlock_jail.so");
    let dest = out.join("libairlock_zygote.so");
    std::fs::copy(&built, &dest)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", built.display(), dest.display()));
}
