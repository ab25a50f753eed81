//! Builds the sandbox's init (`crates/init`): a freestanding static binary the jail writes into
//! every sandbox and executes as its pid 1. A nested cargo build into its own target directory,
//! with the flags a binary without libc needs, which the outer build must not get.

use std::env;
use std::path::PathBuf;

#[path = "../../build-support/nested_cargo.rs"]
mod nested_cargo;

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
    let mut build = nested_cargo::command(
        &["build", "--target", &target],
        &init.join("Cargo.toml"),
        &target_dir,
    );
    // No C runtime and no libc: its own `_start`, linked static at a fixed address.
    let flags = [
        "-Clink-arg=-nostartfiles",
        "-Clink-arg=-nostdlib",
        "-Clink-arg=-static",
        "-Crelocation-model=static",
    ];
    build.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    nested_cargo::run_and_copy(
        build,
        "the sandbox's init (crates/init, a static binary without libc)",
        &target_dir.join(&target).join("release/airlock-init"),
        &out.join("airlock-init"),
    );
    build_restorer(&manifest_dir, &out, &target);
}

/// The restorer (`crates/restore`), x86_64 only: static and freestanding like the init, but
/// position-independent code linked at 16 TiB, an address no interpreter's maps use, so that
/// the image it maps around itself never overlaps it. Elsewhere an empty file: restore is then
/// never offered.
fn build_restorer(manifest_dir: &std::path::Path, out: &std::path::Path, target: &str) {
    let restore = manifest_dir.join("../restore");
    println!("cargo:rerun-if-changed={}", restore.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        restore.join("Cargo.toml").display()
    );
    let dest = out.join("airlock-restore");
    if !target.starts_with("x86_64-") {
        std::fs::write(&dest, b"").expect("writing the empty restorer");
        return;
    }
    let target_dir = out.join("restore-target");
    let mut build = nested_cargo::command(
        &["build", "--target", target],
        &restore.join("Cargo.toml"),
        &target_dir,
    );
    let flags = [
        "-Clink-arg=-nostartfiles",
        "-Clink-arg=-nostdlib",
        "-Clink-arg=-static",
        "-Clink-arg=-no-pie",
        "-Crelocation-model=pic",
        "-Clink-arg=-Wl,--image-base=0x100000000000",
    ];
    build.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    nested_cargo::run_and_copy(
        build,
        "the restorer (crates/restore, a static binary without libc)",
        &target_dir.join(target).join("release/airlock-restore"),
        &dest,
    );
}
