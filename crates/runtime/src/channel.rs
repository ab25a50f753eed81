//! The result channel: a pipe whose write end the program gets at a known descriptor
//! (`AIRLOCK_RESULT_FD`), drained on the host as it is written. The decorated-function face
//! sends its return value back this way, apart from the program's own stdout and stderr.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::thread::JoinHandle;

use jail::{Command, Policy};

use crate::error::RuntimeError;
use crate::request::RESULT_LIMIT;

/// The host's end of an open result channel.
pub(crate) struct ResultChannel {
    reader: JoinHandle<std::io::Result<Vec<u8>>>,
}

/// Opens a channel for the program of `command`: its write end becomes the next passed
/// descriptor, `fd_in_sandbox`, announced in the program's environment.
pub(crate) fn open(
    policy: &mut Policy,
    command: Command,
    fd_in_sandbox: i32,
) -> Result<(Command, ResultChannel), RuntimeError> {
    announce(policy, fd_in_sandbox);
    let (writer, channel) = pipe()?;
    Ok((command.pass_fd(writer), channel))
}

/// Tells the program of `policy` which descriptor its result channel is.
pub(crate) fn announce(policy: &mut Policy, fd_in_sandbox: i32) {
    policy
        .env
        .insert("AIRLOCK_RESULT_FD".into(), fd_in_sandbox.to_string());
}

/// A fresh channel: the write end to hand to the program, and the host's end.
pub(crate) fn pipe() -> Result<(OwnedFd, ResultChannel), RuntimeError> {
    let (reader, writer) =
        std::io::pipe().map_err(|e| RuntimeError::host("creating the result channel", e))?;
    // Drained from the start: a large result must not block the program on a full pipe.
    let reader = std::thread::Builder::new()
        .name("airlock-result".into())
        .spawn(move || {
            let mut buf = Vec::new();
            reader.take(RESULT_LIMIT as u64 + 1).read_to_end(&mut buf)?;
            Ok(buf)
        })
        .map_err(|e| RuntimeError::host("starting the result reader", e))?;
    Ok((OwnedFd::from(writer), ResultChannel { reader }))
}

impl ResultChannel {
    /// What the program sent, once every holder of the write end is gone (the sandbox is).
    /// More than `RESULT_LIMIT` bytes is an error of the call, not a truncated value.
    pub(crate) fn finish(self) -> Result<Vec<u8>, RuntimeError> {
        let bytes = self
            .reader
            .join()
            .map_err(|_| {
                RuntimeError::host(
                    "reading the result channel",
                    std::io::Error::other("reader panicked"),
                )
            })?
            .map_err(|e| RuntimeError::host("reading the result channel", e))?;
        if bytes.len() > RESULT_LIMIT {
            return Err(RuntimeError::invalid(
                "result",
                format!(
                    "more than {RESULT_LIMIT} bytes were returned; return less, or write a file"
                ),
            ));
        }
        Ok(bytes)
    }
}
