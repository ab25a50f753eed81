//! The host's side of "restore, not fork" (docs/security.md): the memory file a freezing
//! interpreter writes its image into from inside its sandbox, sealed once that sandbox is gone,
//! and handed read-only to the sandboxes that restore it. The host never reads the image: it is
//! the sandboxed interpreter's data, interpreted only by the restorer, inside each run's own
//! sandbox (`crates/restore`).

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::error::{JailError, Result};
use crate::sys;

/// The restorer (`crates/restore`), built by this crate's build script; empty where restore is
/// not supported (anything but x86_64).
pub const RESTORER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/airlock-restore"));

/// Whether this build can restore images at all.
pub fn supported() -> bool {
    !RESTORER.is_empty()
}

/// A memory file an image is being written into.
pub struct ImageFile(OwnedFd);

impl ImageFile {
    pub fn create() -> Result<ImageFile> {
        sys::memfd_sealable(c"airlock-image")
            .map(ImageFile)
            .map_err(|e| host("creating a memory file for an interpreter image", e))
    }

    /// A descriptor for the freezing sandbox to write through.
    pub fn writer(&self) -> Result<OwnedFd> {
        self.0
            .try_clone()
            .map_err(|e| JailError::host("duplicating an image's descriptor", e))
    }

    /// Seals the image for good, once nothing can write it any more (the freezing sandbox is
    /// gone with every process in it), and reopens it read-only.
    pub fn seal(self) -> Result<Image> {
        sys::seal_for_good(self.0.as_raw_fd())
            .map_err(|e| host("sealing an interpreter image", e))?;
        let size = std::fs::File::from(self.writer()?)
            .metadata()
            .map_err(|e| JailError::host("measuring an interpreter image", e))?
            .len();
        let path = CString::new(format!("/proc/self/fd/{}", self.0.as_raw_fd()))
            .expect("no NUL in a number");
        let fd = sys::open_owned(&path, libc::O_RDONLY)
            .map_err(|e| host("reopening an interpreter image read-only", e))?;
        Ok(Image { fd, size })
    }
}

/// A sealed image, read-only.
pub struct Image {
    fd: OwnedFd,
    size: u64,
}

impl Image {
    /// A read-only descriptor of it, for a sandbox that restores it.
    pub fn reader(&self) -> Result<OwnedFd> {
        self.fd
            .try_clone()
            .map_err(|e| JailError::host("duplicating an image's descriptor", e))
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

fn host(what: &str, errno: i32) -> JailError {
    JailError::host(what, std::io::Error::from_raw_os_error(errno))
}
