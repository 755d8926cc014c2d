//! The server name (SNI, RFC 6066 §3) a client asked for, read from the
//! first TLS record of a connection — its ClientHello — before rustls takes
//! the bytes. rustls's unbuffered server connection does not expose the
//! name, and a resumed session skips the certificate resolver that sees it.
//!
//! The bytes are untrusted: every length is checked against what is there,
//! nothing panics, and anything unexpected (another record type, a
//! malformed hello, a name that is not a DNS host name) reads as "no name".
//! The name is for the access log only; routing never trusts it.

/// What the bytes received so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstRecord {
    /// The first record has not arrived whole yet.
    Incomplete,
    /// The first record is here: the host name it asks for, lower-cased.
    Read(Option<String>),
}

const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const SERVER_NAME: u16 = 0;
const HOST_NAME: u8 = 0;

/// Reads the server name from the start of a connection's bytes.
pub fn server_name(bytes: &[u8]) -> FirstRecord {
    let Some(header) = bytes.get(..5) else {
        return FirstRecord::Incomplete;
    };
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if header[0] != HANDSHAKE {
        return FirstRecord::Read(None);
    }
    match bytes.get(5..5 + len) {
        None => FirstRecord::Incomplete,
        Some(record) => FirstRecord::Read(from_handshake(record)),
    }
}

/// A cursor over untrusted bytes; `None` once anything is short.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }

    /// A vector with a `width`-byte length prefix.
    fn vector(&mut self, width: usize) -> Option<Reader<'a>> {
        let n = match width {
            1 => usize::from(self.u8()?),
            _ => usize::from(self.u16()?),
        };
        self.take(n).map(Reader)
    }
}

/// The ClientHello in one record. A hello split across records (rare:
/// they fit in 16 KiB) is read as far as the first record goes.
fn from_handshake(record: &[u8]) -> Option<String> {
    let mut r = Reader(record);
    if r.u8()? != CLIENT_HELLO {
        return None;
    }
    let len = r.u24()?;
    let mut hello = Reader(r.0.get(..len).unwrap_or(r.0));
    hello.take(2 + 32)?; // legacy_version, random
    hello.vector(1)?; // legacy_session_id
    hello.vector(2)?; // cipher_suites
    hello.vector(1)?; // legacy_compression_methods
    let mut extensions = hello.vector(2)?;
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let mut data = extensions.vector(2)?;
        if kind != SERVER_NAME {
            continue;
        }
        let mut names = data.vector(2)?;
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let name = names.vector(2)?.0;
            if name_type == HOST_NAME {
                return host_name(name);
            }
        }
        return None;
    }
    None
}

/// A DNS host name (letters, digits, `-`, `.`; at most 253 bytes),
/// lower-cased; anything else is refused.
fn host_name(bytes: &[u8]) -> Option<String> {
    let ok = !bytes.is_empty()
        && bytes.len() <= 253
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.');
    ok.then(|| String::from_utf8_lossy(bytes).to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::ServerName;

    use super::*;

    /// The first bytes a real rustls client sends for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let mut roots = rustls::RootCertStore::empty();
        let ca = crate::tls::testutil::Ca::new("test ca");
        roots.add(ca.der()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut client = rustls::ClientConnection::new(
            Arc::new(config),
            ServerName::try_from(name.to_owned()).unwrap(),
        )
        .unwrap();
        crate::tls::testutil::client_wire(&mut client)
    }

    #[test]
    fn a_real_client_hello_names_its_server_once_whole() {
        let hello = client_hello("API.Mesh.Local");
        assert_eq!(
            server_name(&hello),
            FirstRecord::Read(Some("api.mesh.local".into()))
        );
        let record_len = 5 + usize::from(u16::from_be_bytes([hello[3], hello[4]]));
        for cut in [0, 1, 4, 5, 40, record_len - 1] {
            assert_eq!(server_name(&hello[..cut]), FirstRecord::Incomplete, "{cut}");
        }
        // Bytes after the first record do not matter.
        let mut more = hello.clone();
        more.extend_from_slice(b"\x17\x03\x03\x00\x01x");
        assert_eq!(server_name(&more), server_name(&hello));
    }

    #[test]
    fn an_ip_address_sends_no_name_and_other_records_have_none() {
        assert_eq!(
            server_name(&client_hello("127.0.0.1")),
            FirstRecord::Read(None)
        );
        assert_eq!(
            server_name(b"GET / HTTP/1.1\r\n\r\n"),
            FirstRecord::Read(None)
        );
        // A handshake record that is not a ClientHello.
        assert_eq!(
            server_name(b"\x16\x03\x01\x00\x04\x02\x00\x00\x00"),
            FirstRecord::Read(None)
        );
    }

    #[test]
    fn names_that_are_not_host_names_are_refused() {
        assert_eq!(host_name(b"a.b-c.D9"), Some("a.b-c.d9".into()));
        for bad in [&b""[..], b"a b", b"a\x00b", b"caf\xc3\xa9", &[b'a'; 254]] {
            assert_eq!(host_name(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = server_name(&bytes);
            let mut framed = vec![HANDSHAKE, 3, 1, (bytes.len() >> 8) as u8, bytes.len() as u8];
            framed.extend_from_slice(&bytes);
            proptest::prop_assert!(matches!(server_name(&framed), FirstRecord::Read(_)));
        }

        #[test]
        fn a_corrupted_hello_never_panics(at in 5usize..300, byte in proptest::num::u8::ANY, cut in 0usize..400) {
            let mut hello = client_hello("svc.mesh.local");
            if at < hello.len() {
                hello[at] = byte;
            }
            let cut = cut.min(hello.len());
            let _ = server_name(&hello[..cut]);
            let _ = server_name(&hello);
        }
    }
}
