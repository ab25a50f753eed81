//! airlock's runtime: languages, run requests and results on top of the jail.
//!
//! The jail knows nothing of languages; this crate turns "run this Python code with these
//! limits" into a jail `Policy`, runs it, and reports the result in DESIGN §8's fields, with the
//! language's own error parsed into `error` and a hint for the common cases.

mod channel;
pub mod diagnose;
pub mod environment;
mod error;
pub mod language;
pub mod network;
mod request;
mod restore;
mod result;
mod run;
mod scheduler;
mod session;
mod shim;
mod warm;

pub use diagnose::{ErrorInfo, Language};
pub use environment::{EnvInfo, PackageConfig, Progress};
pub use error::RuntimeError;
pub use request::{MAX_CODE_BYTES, MountSpec, NetworkMode, RunRequest, resolve_host_path};
pub use result::{RunResult, Status, TimingMs, UsageInfo};
pub use run::{Stream, release_host_resources, run, run_with_progress};
pub use scheduler::{OnDone, OnOutput, RunHandle, Scheduler, SchedulerConfig};
pub use session::{SESSION_FILE_LIMIT, Session, SessionOptions};
