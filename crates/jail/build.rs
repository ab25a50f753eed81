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
}
