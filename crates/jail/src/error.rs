//! Errors of the jail. Each says what failed, on what, and what to do about it.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// The policy itself is wrong; nothing was started.
    #[error("invalid policy field `{field}`: {why}")]
    Policy { field: String, why: String },

    /// An isolation layer is missing on this host; the run was refused (fail closed).
    #[error("cannot isolate: {layer} is unavailable: {why}. Fix: {fix}")]
    Unavailable {
        layer: &'static str,
        why: String,
        fix: String,
    },

    /// The child failed while building its sandbox, before the program started.
    #[error("sandbox setup failed at `{stage}`{detail}: {source}")]
    Setup {
        stage: &'static str,
        detail: String,
        source: io::Error,
    },

    /// The program could not be executed inside the sandbox.
    #[error("cannot execute `{program}` inside the sandbox: {source}")]
    Exec { program: String, source: io::Error },

    /// A host-side operation of the supervisor failed.
    #[error("{what}: {source}")]
    Host { what: String, source: io::Error },
}

impl JailError {
    pub(crate) fn host(what: impl Into<String>, source: io::Error) -> JailError {
        JailError::Host {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, JailError>;
