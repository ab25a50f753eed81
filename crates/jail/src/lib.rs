//! airlock's jail: turns a [`Policy`] and an argv into an isolated child and reports how it ended.
//!
//! It knows nothing of languages or packages. Linux only, synchronous, and the only crate of
//! airlock that contains `unsafe` (in the syscall modules `sys`, `child`, `seccomp`, `landlock`, and the
//! freezing side of `zygote`).

#![cfg(target_os = "linux")]

pub mod cgroup;
mod child;
mod error;
pub mod image;
mod landlock;
mod policy;
pub mod probe;
mod seccomp;
mod spawn;
mod supervise;
mod sys;
mod uid;
mod zygote;

pub use error::{JailError, Result};
pub use policy::{
    CgroupMode, File, Limits, Mount, Network, Policy, SANDBOX_GID, SANDBOX_UID, SANDBOX_USER,
};
pub use spawn::{
    Command, Killer, Sandbox, prepare_descriptor_passing, process_usage, send_with_fds,
    too_many_in_flight,
};
pub use supervise::{Outcome, OutputCap, Stream, Timing, Usage};
#[cfg(feature = "zygote-lib")]
pub use zygote::ffi;
pub use zygote::{Zygote, ZygoteChild};
