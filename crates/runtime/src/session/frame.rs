//! The control channel's frames: a kind byte, an 8-byte big-endian length, the payload. What
//! the agent sends is untrusted: every length is checked before anything is allocated.

use std::os::fd::AsFd;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Why a frame could not be sent.
pub(super) enum SendError {
    /// The kernel refused the frame's descriptors before any of it went: too many descriptors
    /// are in flight for the host user (`ETOOMANYREFS`, see `jail::prepare_descriptor_passing`).
    /// The protocol is intact, and the session may go on.
    TooManyInFlight(std::io::Error),
    /// The socket failed, possibly part-way through the frame.
    Failed(String),
}

/// Sends a frame: its kind, its length (8 bytes, big-endian), then the payload; `fds` travel
/// with the header.
pub(super) async fn send_frame(
    control: &mut UnixStream,
    kind: u8,
    payload: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> Result<(), SendError> {
    let failed = |e: std::io::Error| SendError::Failed(format!("the agent's socket: {e}"));
    let mut head = [0u8; 9];
    head[0] = kind;
    head[1..].copy_from_slice(&(payload.len() as u64).to_be_bytes());
    let sent = loop {
        control.writable().await.map_err(failed)?;
        match control.try_io(tokio::io::Interest::WRITABLE, || {
            jail::send_with_fds(control.as_fd(), &head, fds)
        }) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if jail::too_many_in_flight(&e) => {
                return Err(SendError::TooManyInFlight(e));
            }
            Err(e) => return Err(failed(e)),
        }
    };
    control.write_all(&head[sent..]).await.map_err(failed)?;
    control.write_all(payload).await.map_err(failed)
}

/// Why no frame could be read.
pub(super) enum FrameError {
    /// The socket failed or closed: the agent is gone.
    Closed(String),
    /// The agent broke the protocol.
    Bad(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Closed(why) | FrameError::Bad(why) => f.write_str(why),
        }
    }
}

/// Reads one frame the agent sent, refusing one longer than `limit` allows for its kind (0 for
/// a kind not expected at all, so that only its header is ever read).
pub(super) async fn read_frame(
    control: &mut UnixStream,
    limit: impl Fn(u8) -> usize,
) -> Result<(u8, Vec<u8>), FrameError> {
    let closed = |e: std::io::Error| FrameError::Closed(format!("the agent's socket: {e}"));
    let mut head = [0u8; 9];
    control.read_exact(&mut head).await.map_err(closed)?;
    let len = u64::from_be_bytes(head[1..].try_into().expect("8 bytes"));
    let limit = limit(head[0]);
    if len > limit as u64 {
        return Err(FrameError::Bad(format!(
            "the session's agent sent a frame ({}) of {len} bytes, more than the {limit} \
             allowed: its code wrote to the session's control channel",
            head[0].escape_ascii()
        )));
    }
    let mut payload = vec![0u8; len as usize];
    control.read_exact(&mut payload).await.map_err(closed)?;
    Ok((head[0], payload))
}
