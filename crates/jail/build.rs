//! Builds the sandbox's init (`crates/init`): a freestanding static binary the jail writes into
//! every sandbox and executes as its pid 1. A nested cargo build into its own target directory,
//! with the flags a binary without libc needs, which the outer build must not get.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let init = manifest_dir.join("../init");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed={}", init.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        init.join("Cargo.toml").display()
    );

    let target = env::var("TARGET").expect("set by cargo");
    let target_dir = out.join("init-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args([
            "build",
            "--release",
            "--offline",
            "--quiet",
            "--target",
            &target,
        ])
        .arg("--manifest-path")
        .arg(init.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // What the outer build set for its own crates must not leak into this one (clippy's
    // wrapper, the outer target dir, its flags).
    for var in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        build.env_remove(var);
    }
    // No C runtime and no libc: its own `_start`, linked static at a fixed address.
    let flags = [
        "-Clink-arg=-nostartfiles",
        "-Clink-arg=-nostdlib",
        "-Clink-arg=-static",
        "-Crelocation-model=static",
    ];
    build.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    let status = build
        .status()
        .expect("running cargo to build the sandbox's init");
    assert!(
        status.success(),
        "building the sandbox's init (crates/init, a static binary without libc) failed"
    );
    let built = target_dir.join(&target).join("release/airlock-init");
    let dest = out.join("airlock-init");
    std::fs::copy(&built, &dest)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", built.display(), dest.display()));
}
