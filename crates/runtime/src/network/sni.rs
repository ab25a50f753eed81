//! The server name (SNI) of a TLS ClientHello, read from the first bytes a client sends
//! through a CONNECT tunnel, so the proxy can check that the TLS session is for the host the
//! tunnel was allowed to. Hand-written over byte slices: every read is bounds-checked, and any
//! input yields an answer or an error, never a panic.

/// A ClientHello (handshake message, possibly split over several records) larger than this is
/// refused. Real ones are well under 2 KiB, post-quantum key shares included.
pub const MAX_HELLO_BYTES: usize = 64 * 1024;

/// Why the first bytes of a tunnel are not an acceptable ClientHello.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SniError {
    #[error("the tunnel did not start with a TLS handshake")]
    NotTls,
    #[error("the TLS handshake did not start with a ClientHello")]
    NotClientHello,
    #[error("the TLS ClientHello names no server (SNI)")]
    NoSni,
    #[error("the TLS ClientHello is malformed: {0}")]
    Malformed(&'static str),
    #[error("the TLS ClientHello is larger than {MAX_HELLO_BYTES} bytes")]
    TooLarge,
}

/// The SNI host name in `buf`, the first bytes of a TLS connection. `Ok(None)` means more bytes
/// are needed. The name is returned as sent (the caller compares case-insensitively).
pub fn client_hello_sni(buf: &[u8]) -> Result<Option<String>, SniError> {
    // Reassemble the handshake layer from as many records as are complete.
    let mut handshake: Vec<u8> = Vec::new();
    let mut rest = buf;
    loop {
        if rest.is_empty() {
            break;
        }
        if rest[0] != 22 {
            return Err(if handshake.is_empty() {
                SniError::NotTls
            } else {
                SniError::Malformed("a non-handshake record inside the ClientHello")
            });
        }
        if rest.len() < 5 {
            break;
        }
        if rest[1] != 3 {
            return Err(SniError::NotTls);
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 || len > (1 << 14) + 2048 {
            return Err(SniError::Malformed("record length"));
        }
        if rest.len() < 5 + len {
            break;
        }
        handshake.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        if handshake.len() >= 4 {
            break_if_complete(&handshake)?;
            if hello_len(&handshake) + 4 <= handshake.len() {
                break;
            }
        }
    }
    if !handshake.is_empty() && handshake[0] != 1 {
        return Err(SniError::NotClientHello);
    }
    if handshake.len() < 4 {
        return if buf.len() > MAX_HELLO_BYTES {
            Err(SniError::TooLarge)
        } else {
            Ok(None)
        };
    }
    let len = hello_len(&handshake);
    if len > MAX_HELLO_BYTES {
        return Err(SniError::TooLarge);
    }
    if handshake.len() < 4 + len {
        return Ok(None);
    }
    parse_hello(&handshake[4..4 + len]).map(Some)
}

fn hello_len(h: &[u8]) -> usize {
    (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3])
}

fn break_if_complete(h: &[u8]) -> Result<(), SniError> {
    if h[0] != 1 {
        return Err(SniError::NotClientHello);
    }
    if hello_len(h) > MAX_HELLO_BYTES {
        return Err(SniError::TooLarge);
    }
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SniError> {
        if self.0.len() < n {
            return Err(SniError::Malformed(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<usize, SniError> {
        Ok(usize::from(self.take(1, what)?[0]))
    }
    fn u16(&mut self, what: &'static str) -> Result<usize, SniError> {
        let b = self.take(2, what)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], SniError> {
        let n = self.u8(what)?;
        self.take(n, what)
    }
    fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], SniError> {
        let n = self.u16(what)?;
        self.take(n, what)
    }
}

fn parse_hello(body: &[u8]) -> Result<String, SniError> {
    let mut r = Reader(body);
    r.take(2, "version")?;
    r.take(32, "random")?;
    if r.vec8("session id")?.len() > 32 {
        return Err(SniError::Malformed("session id"));
    }
    let suites = r.vec16("cipher suites")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(SniError::Malformed("cipher suites"));
    }
    if r.vec8("compression methods")?.is_empty() {
        return Err(SniError::Malformed("compression methods"));
    }
    if r.0.is_empty() {
        return Err(SniError::NoSni); // no extensions at all
    }
    let mut exts = Reader(r.vec16("extensions")?);
    let mut sni: Option<String> = None;
    while !exts.0.is_empty() {
        let kind = exts.u16("extension type")?;
        let data = exts.vec16("extension")?;
        if kind != 0 {
            continue;
        }
        if sni.is_some() {
            return Err(SniError::Malformed("two server_name extensions"));
        }
        let mut list = Reader(data);
        let mut names = Reader(list.vec16("server name list")?);
        while !names.0.is_empty() {
            let name_type = names.u8("server name type")?;
            let name = names.vec16("server name")?;
            if name_type != 0 {
                continue;
            }
            if sni.is_some() {
                return Err(SniError::Malformed("two host names in server_name"));
            }
            if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
                return Err(SniError::Malformed("server name is not a host name"));
            }
            sni = Some(String::from_utf8_lossy(name).into_owned());
        }
    }
    sni.ok_or(SniError::NoSni)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;

    /// The real first flight of a rustls client for `name`.
    pub(crate) fn rustls_hello(name: &str) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }

    /// Re-frames the handshake bytes of `hello` into records of at most `size` bytes.
    fn fragment(hello: &[u8], size: usize) -> Vec<u8> {
        let len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
        let hs = &hello[5..5 + len];
        let mut out = Vec::new();
        for chunk in hs.chunks(size) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    #[test]
    fn reads_the_sni_of_a_real_client_hello() {
        let hello = rustls_hello("allowed.test");
        assert_eq!(
            client_hello_sni(&hello).unwrap().as_deref(),
            Some("allowed.test")
        );
        // Every prefix asks for more, never errs or guesses.
        for n in 0..hello.len() {
            assert_eq!(client_hello_sni(&hello[..n]), Ok(None), "prefix {n}");
        }
        // Bytes after the ClientHello (say, early data) change nothing.
        let mut more = hello.clone();
        more.extend_from_slice(&[23, 3, 3, 0, 1, 0]);
        assert_eq!(
            client_hello_sni(&more).unwrap().as_deref(),
            Some("allowed.test")
        );
    }

    #[test]
    fn reassembles_a_hello_split_over_records() {
        let hello = rustls_hello("files.index.example");
        let split = fragment(&hello, 7);
        assert_eq!(
            client_hello_sni(&split).unwrap().as_deref(),
            Some("files.index.example")
        );
        for n in 0..split.len() {
            assert_eq!(client_hello_sni(&split[..n]), Ok(None), "prefix {n}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_named_client_hello() {
        // rustls sends no SNI for an IP address.
        let by_ip = rustls_hello("127.0.0.1");
        assert_eq!(client_hello_sni(&by_ip), Err(SniError::NoSni));
        assert_eq!(
            client_hello_sni(b"GET / HTTP/1.1\r\n"),
            Err(SniError::NotTls)
        );
        assert_eq!(client_hello_sni(b"SSH-2.0-x"), Err(SniError::NotTls));
        assert_eq!(
            client_hello_sni(&[22, 3, 1, 0, 4, 2, 0, 0, 0]),
            Err(SniError::NotClientHello)
        );
        assert_eq!(
            client_hello_sni(&[22, 3, 1, 0, 4, 1, 0x10, 0, 0]),
            Err(SniError::TooLarge)
        );
        assert!(matches!(
            client_hello_sni(&[22, 3, 1, 0, 0]),
            Err(SniError::Malformed(_))
        ));
        // A truncated body claiming to be complete is malformed.
        assert!(matches!(
            client_hello_sni(&[22, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3]),
            Err(SniError::Malformed(_))
        ));
    }

    #[test]
    fn arbitrary_mutations_never_panic() {
        let hello = rustls_hello("allowed.test");
        let mut seed: u64 = 0x9e3779b97f4a7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut m = hello.clone();
            for _ in 0..(next() % 8 + 1) {
                let i = (next() as usize) % m.len();
                m[i] = next() as u8;
            }
            let cut = (next() as usize) % (m.len() + 1);
            let _ = client_hello_sni(&m[..cut]);
        }
    }
}
