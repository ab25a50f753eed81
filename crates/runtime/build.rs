//! Builds the zygote library: the jail crate as a C-ABI shared object (its `zygote-lib`
//! feature), which the runtime embeds and every Python zygote loads. A nested cargo build into
//! its own target directory, since cargo cannot depend on another crate's cdylib.

use std::env;
use std::path::PathBuf;

#[path = "../../build-support/nested_cargo.rs"]
mod nested_cargo;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let jail = manifest_dir.join("../jail");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed={}", jail.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        jail.join("Cargo.toml").display()
    );
    for dep in [
        "build.rs",
        "../init/src",
        "../init/Cargo.toml",
        "../../build-support",
    ] {
        println!("cargo:rerun-if-changed={}", jail.join(dep).display());
    }

    let target_dir = out.join("zygote-target");
    let build = nested_cargo::command(
        &[
            "rustc",
            "--lib",
            "--features",
            "zygote-lib",
            "--crate-type",
            "cdylib",
        ],
        &jail.join("Cargo.toml"),
        &target_dir,
    );
    nested_cargo::run_and_copy(
        build,
        "the zygote library (airlock-jail --features zygote-lib as a cdylib)",
        &target_dir.join("release/libairlock_jail.so"),
        &out.join("libairlock_zygote.so"),
    );
}
