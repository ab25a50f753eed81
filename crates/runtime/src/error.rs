//! Errors of a call (not results): bad input, a host that cannot isolate, a sandbox that failed
//! to start. Each message names the field or the layer and what to do.

use jail::JailError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The request is wrong; nothing was started.
    #[error("invalid `{field}`: {why}")]
    InvalidInput { field: String, why: String },

    /// The host cannot provide an isolation layer the run needs (fail closed).
    #[error("{0}")]
    Unavailable(JailError),

    /// The language's interpreter is not on this host.
    #[error("no {language} interpreter found: {why}")]
    Interpreter { language: &'static str, why: String },

    /// Too many runs are already waiting, or too many sessions are open: try again later
    /// (HTTP: 429 with Retry-After). `why` says which limit, and how to change it.
    #[error("busy: {why}; retry later")]
    Busy { why: String },

    /// The sandbox could not be started or supervised.
    #[error("{0}")]
    Sandbox(JailError),

    /// Installing the run's packages failed (DependencyInstallError): `message` is the
    /// installer's own account (the missing version, the build error).
    #[error("installing {specs} with {installer} failed:\n{message}")]
    Install {
        installer: &'static str,
        specs: String,
        message: String,
    },

    /// The dependency-environment store or an installer cannot be used on this host; `why`
    /// says what to do.
    #[error("{what}: {why}")]
    Environment { what: String, why: String },

    /// The session was closed (by its caller, its idle timeout or lifetime, or a call that ended
    /// it); `why` says which. Start a new session.
    #[error("the session is closed: {why}; start a new one")]
    SessionClosed { why: String },

    /// The network allowlist's proxy could not be set up for the sandbox.
    #[error("network allowlist: {0}")]
    Network(String),
}

impl RuntimeError {
    /// A stable name for the kind of failure, for faces that report it as data.
    pub fn kind(&self) -> &'static str {
        match self {
            RuntimeError::InvalidInput { .. } => "InvalidInput",
            RuntimeError::Unavailable(_) => "SandboxUnavailable",
            RuntimeError::Interpreter { .. } => "InterpreterNotFound",
            RuntimeError::Busy { .. } => "Busy",
            RuntimeError::Sandbox(_) => "SandboxError",
            RuntimeError::Install { .. } => "DependencyInstallError",
            RuntimeError::Environment { .. } => "EnvironmentError",
            RuntimeError::Network(_) => "NetworkError",
            RuntimeError::SessionClosed { .. } => "SessionClosed",
        }
    }

    /// The host side failed at `what` (a socket, a pipe, a worker thread).
    pub(crate) fn host(what: impl Into<String>, source: std::io::Error) -> RuntimeError {
        RuntimeError::Sandbox(JailError::Host {
            what: what.into(),
            source,
        })
    }

    pub(crate) fn invalid(field: &str, why: impl Into<String>) -> RuntimeError {
        RuntimeError::InvalidInput {
            field: field.into(),
            why: why.into(),
        }
    }
}

impl From<JailError> for RuntimeError {
    fn from(e: JailError) -> RuntimeError {
        match e {
            JailError::Policy { field, why } => RuntimeError::InvalidInput { field, why },
            e @ JailError::Unavailable { .. } => RuntimeError::Unavailable(e),
            e => RuntimeError::Sandbox(e),
        }
    }
}
