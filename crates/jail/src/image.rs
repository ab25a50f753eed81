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
    /// gone with every process in it), and reopens it read-only. Refused if it is larger than
    /// `most` bytes or has holes: a sandbox reading a hole through its private mapping would
    /// make the kernel fill it, with memory charged to nobody that outlives the run.
    pub fn seal(self, most: u64) -> Result<Image> {
        sys::seal_for_good(self.0.as_raw_fd())
            .map_err(|e| host("sealing an interpreter image", e))?;
        let meta = std::fs::File::from(self.writer()?)
            .metadata()
            .map_err(|e| JailError::host("measuring an interpreter image", e))?;
        let size = meta.len();
        let held = std::os::unix::fs::MetadataExt::blocks(&meta).saturating_mul(512);
        if size > most || held < size {
            return Err(JailError::host(
                "sealing an interpreter image",
                std::io::Error::other(format!(
                    "{size} bytes, {held} of them held (at most {most} and no holes): not an image the freezer wrote"
                )),
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_sealed_image_can_never_be_written_again() {
        let file = ImageFile::create().unwrap();
        let mut writer = std::fs::File::from(file.writer().unwrap());
        writer.write_all(b"image").unwrap();
        let image = file.seal(1 << 20).unwrap();
        assert_eq!(image.size(), 5);
        // Not through a descriptor the freezer could have kept, nor by growing or shrinking.
        let e = writer.write_all(b"more").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
        assert!(writer.set_len(0).is_err());
        assert!(writer.set_len(1 << 20).is_err());
        // What a restoring sandbox gets is read-only, and reads what was sealed.
        let mut reader = std::fs::File::from(image.reader().unwrap());
        assert!(reader.write_all(b"x").is_err());
        let mut got = String::new();
        reader.rewind().unwrap();
        reader.read_to_string(&mut got).unwrap();
        assert_eq!(got, "image");
    }

    #[test]
    fn an_image_with_holes_or_too_large_is_refused() {
        // A hole would be filled by the kernel when a restored run reads it.
        let file = ImageFile::create().unwrap();
        let writer = std::fs::File::from(file.writer().unwrap());
        writer.set_len(64 << 20).unwrap();
        assert!(file.seal(1 << 30).is_err(), "an image with holes");
        let file = ImageFile::create().unwrap();
        let mut writer = std::fs::File::from(file.writer().unwrap());
        writer.write_all(&[1u8; 8192]).unwrap();
        assert!(file.seal(4096).is_err(), "an image over the limit");
    }

    /// The restorer, run on an image it must refuse, exits with 120 + the step that refused
    /// and says so, having mapped nothing of it.
    fn restorer_refuses(image: &[u8]) -> (i32, String) {
        let dir = std::env::temp_dir().join(format!("airlock-restorer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("restore");
        let img = dir.join("image");
        std::fs::write(&bin, RESTORER).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(&img, image).unwrap();
        let out = std::process::Command::new(&bin)
            .arg("0")
            .stdin(std::fs::File::open(&img).unwrap())
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A header (`image::Header`, 2320 bytes) with one map entry.
    fn one_map(start: u64, end: u64) -> Vec<u8> {
        let header = 2320u64;
        let map = 56u64;
        let mut h = vec![0u8; header as usize];
        let put =
            |h: &mut Vec<u8>, at: usize, v: u64| h[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        put(&mut h, 0, u64::from_le_bytes(*b"AIRLKIM1"));
        put(&mut h, 8, header + map + 1);
        put(&mut h, 2288, 1); // maps
        put(&mut h, 2296, header); // maps_at
        put(&mut h, 2304, header + map); // strings_at
        put(&mut h, 2312, 1); // strings_len
        let mut m = vec![0u8; map as usize];
        m[..8].copy_from_slice(&start.to_ne_bytes());
        m[8..16].copy_from_slice(&end.to_ne_bytes());
        m[16..20].copy_from_slice(&1u32.to_ne_bytes()); // PROT_READ, ANON
        h.extend(m);
        h.push(0);
        h
    }

    #[test]
    fn the_restorer_refuses_an_image_it_cannot_trust_to_map() {
        if !supported() {
            eprintln!("skipped: this architecture has no restorer (x86_64 only)");
            return;
        }
        let (code, err) = restorer_refuses(b"");
        assert_eq!(code, 121, "an empty image: {err}");
        assert!(err.contains("step 1 failed"), "{err}");
        let mut bad = one_map(0x10_0000, 0x20_0000);
        bad[0] ^= 1;
        assert_eq!(restorer_refuses(&bad).0, 121, "a wrong magic number");
        // A map over the restorer itself, one not page-aligned, one past user space, one empty.
        for (start, end) in [
            (0x1000_0000_0000, 0x1000_0000_1000),
            (0x10_0001, 0x20_0000),
            (0x7fff_ffff_f000, 0x8000_0000_0000),
            (0x20_0000, 0x20_0000),
        ] {
            let (code, err) = restorer_refuses(&one_map(start, end));
            assert_eq!(code, 122, "map {start:#x}-{end:#x}: {err}");
            assert!(err.contains("step 2 failed"), "{err}");
        }
        // Counts and offsets past what the image holds.
        let mut huge = one_map(0x10_0000, 0x20_0000);
        huge[2288..2296].copy_from_slice(&u64::MAX.to_ne_bytes());
        assert_eq!(restorer_refuses(&huge).0, 122, "a map count past the image");
    }
}
