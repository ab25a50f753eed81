//! For build scripts that build another crate of this repository with a nested cargo (a
//! cdylib, or a binary with flags of its own), which cargo cannot express as a dependency.
//! Included by path (`#[path = ...] mod nested_cargo;`), since a build script has no library
//! to share.

use std::path::Path;
use std::process::Command;

/// `cargo <args> --manifest-path <manifest> --target-dir <target_dir> --release --offline
/// --quiet`, without what the outer build set for its own crates (clippy's wrapper, the outer
/// target dir, its flags), which must not leak into this one.
pub fn command(args: &[&str], manifest: &Path, target_dir: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(args)
        .args(["--release", "--offline", "--quiet"])
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir);
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
    build
}

/// Runs `build`, panicking with `what` if it fails, then copies `built` to `dest`.
pub fn run_and_copy(mut build: Command, what: &str, built: &Path, dest: &Path) {
    let status = build
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build {what}: {e}"));
    assert!(status.success(), "building {what} failed");
    std::fs::copy(built, dest)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", built.display(), dest.display()));
}
