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

    /// The sandbox could not be started or supervised.
    #[error("{0}")]
    Sandbox(JailError),
}

impl RuntimeError {
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
