//! The TLS record layer after the handshake: a real TLS 1.3 session
//! (rustls client, our server session) is established per input, then the
//! input scripts what the client side sends — records it seals with its
//! real traffic keys (application data, alerts, handshake messages such as
//! KeyUpdate, any content type, any payload), raw bytes, flipped bits — and
//! how the stream is cut into `feed` calls, with reads and writes between.
//!
//! Checked: no panic; once `feed` fails it keeps failing; and an input that
//! only sends well-formed application data gets exactly that data back.
#![no_main]

use std::sync::{Arc, OnceLock};

use dataplane::tls::record::{APPLICATION_DATA, Format, MAX_PLAINTEXT, Sealer};
use dataplane::tls::{ServerTls, TlsSession};
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::{CertificateDer, ServerName};

struct World {
    server: ServerTls,
    client: Arc<rustls::ClientConfig>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        let dir = std::env::temp_dir().join(format!("meshgate-fuzz-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        let settings = dataplane::tls::ServerTlsSettings {
            cert: cert_path,
            key: key_path,
            client_ca: None,
            client_auth: dataplane::tls::ClientAuth::None,
            min_version: dataplane::tls::TlsVersion::Tls13,
            session_tickets: false,
            groups: vec!["x25519".to_owned()],
            alpn: Vec::new(),
            crls: Vec::new(),
            trust_domains: Vec::new(),
        };
        let server = ServerTls::from_settings(&settings).expect("server config");
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(cert.der().to_vec()))
            .expect("root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.enable_secret_extraction = true;
        World {
            server,
            client: Arc::new(client),
        }
    })
}

/// A client and server that finished the handshake, and the client's
/// sealer (its real sending key and sequence number).
fn established() -> (TlsSession, Sealer) {
    let w = world();
    let name = ServerName::try_from("localhost").expect("name");
    let mut client = rustls::ClientConnection::new(w.client.clone(), name).expect("client");
    let mut server = TlsSession::new(&w.server).expect("session");
    for _ in 0..16 {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).expect("client write");
        }
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let n = server.feed(rest).expect("handshake feed");
            rest = &rest[n..];
        }
        let mut back = Vec::new();
        server.take_ciphertext(&mut back);
        let mut rest = &back[..];
        while !rest.is_empty() {
            client.read_tls(&mut rest).expect("client read");
            client.process_new_packets().expect("client process");
        }
        if !server.is_handshaking() && !client.is_handshaking() && !client.wants_write() {
            break;
        }
    }
    assert!(!server.is_handshaking(), "handshake did not finish");
    let secrets = client.dangerous_extract_secrets().expect("client secrets");
    let (seq, tx) = secrets.tx;
    let sealer = Sealer::new(Format::Tls13, tx, seq).expect("sealer");
    (server, sealer)
}

/// Reads one byte of the script (0 when it ran out).
fn take(data: &mut &[u8]) -> u8 {
    let Some((&b, rest)) = data.split_first() else {
        return 0;
    };
    *data = rest;
    b
}

/// Reads up to `n` bytes of the script.
fn take_slice<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, rest) = data.split_at(n.min(data.len()));
    *data = rest;
    head
}

fuzz_target!(|input: &[u8]| {
    let (mut server, mut sealer) = established();
    let mut data = input;
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    // Only application data, well sealed: the data must come back whole.
    let mut clean = true;
    let mut ops = 0;
    while !data.is_empty() && ops < 64 {
        ops += 1;
        let op = take(&mut data);
        let len = usize::from(take(&mut data)) * 64 + usize::from(take(&mut data));
        match op % 6 {
            0 => {
                let payload = take_slice(&mut data, len.min(MAX_PLAINTEXT));
                sealer.seal(APPLICATION_DATA, payload, &mut stream);
                expected.extend_from_slice(payload);
            }
            // Alerts (level, description), handshake messages after the
            // handshake (KeyUpdate = 24, tickets, anything), and records
            // of any content type.
            1 => {
                let alert = [take(&mut data), take(&mut data)];
                sealer.seal(21, &alert, &mut stream);
                clean = false;
            }
            2 => {
                let payload = take_slice(&mut data, len.min(MAX_PLAINTEXT));
                sealer.seal(22, payload, &mut stream);
                clean = false;
            }
            3 => {
                let typ = take(&mut data);
                let payload = take_slice(&mut data, len.min(MAX_PLAINTEXT));
                sealer.seal(typ, payload, &mut stream);
                clean = false;
            }
            4 => {
                stream.extend_from_slice(take_slice(&mut data, len));
                clean = false;
            }
            _ => {
                if !stream.is_empty() {
                    let at = len % stream.len();
                    stream[at] ^= take(&mut data) | 1;
                    clean = false;
                }
            }
        }
    }
    // Fed in the pieces the script's tail says, reading and writing
    // between pieces.
    let mut plaintext = Vec::new();
    let mut failed = false;
    let mut rest = &stream[..];
    let mut cuts = data.iter().copied().cycle();
    while !rest.is_empty() {
        let piece = usize::from(cuts.next().unwrap_or(255)).max(1) * 17;
        let chunk = &rest[..piece.min(rest.len())];
        match server.feed(chunk) {
            Ok(n) => {
                assert!(!failed, "feed succeeded after a failure");
                assert_eq!(n, chunk.len(), "feed takes everything it is given");
            }
            Err(_) => failed = true,
        }
        rest = &rest[chunk.len()..];
        let _ = server.read_plaintext(&mut plaintext);
        if plaintext.len() % 3 == 1 {
            let _ = server.write_plaintext(b"pong");
        }
        let mut out = Vec::new();
        server.take_ciphertext(&mut out);
    }
    let _ = server.read_plaintext(&mut plaintext);
    if clean {
        assert!(!failed, "well-formed application data was refused");
        assert_eq!(plaintext, expected, "application data changed in transit");
    }
    server.feed_eof();
});
