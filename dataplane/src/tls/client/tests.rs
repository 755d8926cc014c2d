//! TLS origination against the listener's own server session, on byte
//! buffers: the upstream verifier (SPIFFE ID, DNS name, CA), mutual TLS,
//! ALPN and resumption.

use rcgen::{CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, SanType};

use super::super::stream::SessionIo;
use super::super::testutil::{Ca, Fixture, Leaf, write};
use super::super::{ServerTls, TlsClientSession, TlsError, TlsSession, TlsVersion};
use super::{ClientTls, ClientTlsSettings};

const UPSTREAM_ID: &str = "spiffe://mesh.local/ns/pay/sa/payments";

/// A server certificate whose only name is a SPIFFE ID (an X.509-SVID).
fn svid_server(ca: &Ca, id: &str) -> Leaf {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(id.try_into().expect("ia5"))];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    ca.sign(params)
}

/// A listener (the upstream here) serving `leaf`, requiring a client
/// certificate from the fixture's CA.
fn upstream(f: &Fixture, leaf: &Leaf) -> ServerTls {
    let mut settings = f.settings.clone();
    settings.cert = write(&f.dir, "up.pem", &leaf.cert_pem);
    settings.key = write(&f.dir, "up.key", &leaf.key_pem);
    ServerTls::from_settings(&settings).expect("upstream config")
}

fn settings(f: &Fixture, trust: &Ca) -> ClientTlsSettings {
    let client = f.ca.spiffe_client();
    ClientTlsSettings {
        ca: write(&f.dir, "trust.pem", &trust.pem()),
        client_cert: Some((
            write(&f.dir, "gw.pem", &client.cert_pem),
            write(&f.dir, "gw.key", &client.key_pem),
        )),
        sni: None,
        alpn: vec!["http/1.1".into()],
        verify_spiffe_id: vec![UPSTREAM_ID.into()],
        min_version: TlsVersion::Tls12,
        session_resumption: true,
    }
}

fn endpoint() -> std::net::SocketAddr {
    "127.0.0.1:50051".parse().expect("addr")
}

/// Moves bytes both ways until neither side has anything to send.
fn pump(
    client: &mut TlsClientSession,
    server: &mut TlsSession,
) -> Result<(), (&'static str, TlsError)> {
    for _ in 0..1000 {
        let mut wire = Vec::new();
        client.take_ciphertext(&mut wire);
        let mut progressed = !wire.is_empty();
        if !wire.is_empty()
            && let Err(e) = server.feed(&wire)
        {
            // The server's alert goes back before the error shows.
            let mut back = Vec::new();
            server.take_ciphertext(&mut back);
            let _ = SessionIo::feed(client, &back);
            return Err(("server", e));
        }
        let mut wire = Vec::new();
        server.take_ciphertext(&mut wire);
        if !wire.is_empty() {
            progressed = true;
            SessionIo::feed(client, &wire).map_err(|e| ("client", e))?;
        }
        if !progressed {
            return Ok(());
        }
    }
    panic!("pump did not settle");
}

fn connect(
    tls: &ClientTls,
    server: &ServerTls,
) -> Result<(TlsClientSession, TlsSession), (&'static str, TlsError)> {
    let mut client = TlsClientSession::new(tls, endpoint()).expect("client session");
    let mut server = TlsSession::new(server).expect("server session");
    pump(&mut client, &mut server)?;
    Ok((client, server))
}

#[test]
fn svid_with_only_a_uri_san_is_accepted_by_its_spiffe_id_and_carries_data() {
    let f = Fixture::new();
    let up = upstream(&f, &svid_server(&f.ca, UPSTREAM_ID));
    let tls = ClientTls::from_settings(&settings(&f, &f.ca)).expect("client config");
    let (mut client, mut server) = connect(&tls, &up).expect("handshake");
    assert!(!SessionIo::is_handshaking(&client));
    assert_eq!(
        client.peer_identity().and_then(|i| i.spiffe_id).as_deref(),
        Some(UPSTREAM_ID)
    );
    // Our certificate reached the upstream (mutual TLS).
    assert_eq!(
        server.peer_identity().and_then(|i| i.spiffe_id).as_deref(),
        Some(super::super::testutil::SPIFFE_ID)
    );
    SessionIo::write_plaintext(&mut client, b"GET / HTTP/1.1\r\n\r\n").expect("write");
    pump(&mut client, &mut server).expect("request");
    let mut got = Vec::new();
    server.read_plaintext(&mut got).expect("server read");
    assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n");
    server
        .write_plaintext(b"HTTP/1.1 204 No Content\r\n\r\n")
        .expect("server write");
    pump(&mut client, &mut server).expect("response");
    let mut got = Vec::new();
    SessionIo::read_plaintext(&mut client, &mut got).expect("client read");
    assert_eq!(got, b"HTTP/1.1 204 No Content\r\n\r\n");
}

#[test]
fn another_spiffe_id_fails_the_handshake_naming_both() {
    let f = Fixture::new();
    let up = upstream(
        &f,
        &svid_server(&f.ca, "spiffe://mesh.local/ns/pay/sa/impostor"),
    );
    let tls = ClientTls::from_settings(&settings(&f, &f.ca)).expect("client config");
    let (side, e) = connect(&tls, &up).expect_err("refused");
    assert_eq!(side, "client");
    assert_eq!(e.reason(), "upstream_spiffe_id");
    let text = e.to_string();
    assert!(
        text.contains("spiffe://mesh.local/ns/pay/sa/impostor"),
        "{text}"
    );
    assert!(text.contains("verify_spiffe_id"), "{text}");
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let f = Fixture::new();
    let other = Ca::new("someone else");
    let up = upstream(&f, &svid_server(&other, UPSTREAM_ID));
    let tls = ClientTls::from_settings(&settings(&f, &f.ca)).expect("client config");
    let (_, e) = connect(&tls, &up).expect_err("refused");
    assert_eq!(e.reason(), "upstream_cert");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
}

#[test]
fn without_spiffe_ids_the_sni_name_is_verified() {
    let f = Fixture::new();
    let up = upstream(&f, &f.ca.server()); // DNS name "localhost"
    let mut s = settings(&f, &f.ca);
    s.verify_spiffe_id.clear();
    s.sni = Some("localhost".into());
    let tls = ClientTls::from_settings(&s).expect("client config");
    let (mut client, mut server) = connect(&tls, &up).expect("localhost matches");
    assert_eq!(server.server_name(), Some("localhost"));
    SessionIo::write_plaintext(&mut client, b"x").expect("write");
    pump(&mut client, &mut server).expect("data");

    s.sni = Some("payments.mesh.local".into());
    let tls = ClientTls::from_settings(&s).expect("client config");
    let (_, e) = connect(&tls, &up).expect_err("name mismatch");
    assert_eq!(e.reason(), "upstream_cert");

    // No SNI: the endpoint's IP address must be in the certificate.
    s.sni = None;
    let tls = ClientTls::from_settings(&s).expect("client config");
    assert!(connect(&tls, &up).is_err());
}

#[test]
fn without_our_certificate_an_upstream_requiring_one_refuses() {
    let f = Fixture::new();
    let up = upstream(&f, &svid_server(&f.ca, UPSTREAM_ID));
    let mut s = settings(&f, &f.ca);
    s.client_cert = None;
    let tls = ClientTls::from_settings(&s).expect("client config");
    let (side, e) = connect(&tls, &up).expect_err("refused");
    assert_eq!((side, e.reason()), ("server", "no_client_cert"));
}

#[test]
fn alpn_h2_is_negotiated_when_offered() {
    let f = Fixture::new();
    let up = upstream(&f, &svid_server(&f.ca, UPSTREAM_ID));
    let mut s = settings(&f, &f.ca);
    s.alpn = vec!["h2".into()];
    let tls = ClientTls::from_settings(&s).expect("client config");
    let (client, server) = connect(&tls, &up).expect("handshake");
    assert_eq!(client.alpn(), Some(&b"h2"[..]));
    assert_eq!(server.alpn(), Some(&b"h2"[..]));
}

#[test]
fn a_second_connection_resumes_unless_resumption_is_off() {
    let f = Fixture::new();
    let up = upstream(&f, &svid_server(&f.ca, UPSTREAM_ID));
    let tls = ClientTls::from_settings(&settings(&f, &f.ca)).expect("client config");
    let (first, _) = connect(&tls, &up).expect("first");
    assert!(!first.resumed());
    let (second, server) = connect(&tls, &up).expect("second");
    assert!(
        second.resumed(),
        "the ticket from the first handshake is used"
    );
    // The resumed session still knows the upstream's identity.
    assert_eq!(
        second.peer_identity().and_then(|i| i.spiffe_id).as_deref(),
        Some(UPSTREAM_ID)
    );
    assert!(server.peer_identity().is_some());

    let mut s = settings(&f, &f.ca);
    s.session_resumption = false;
    let tls = ClientTls::from_settings(&s).expect("client config");
    connect(&tls, &up).expect("first");
    let (again, _) = connect(&tls, &up).expect("second");
    assert!(!again.resumed());
}

#[test]
fn config_errors_name_the_cluster_field() {
    let f = Fixture::new();
    let mut s = settings(&f, &f.ca);
    s.ca = f.dir.join("missing.pem");
    let e = ClientTls::from_settings(&s)
        .expect_err("missing CA")
        .to_string();
    assert!(e.starts_with("clusters.tls.ca:"), "{e}");

    let mut s = settings(&f, &f.ca);
    let other = f.ca.spiffe_client();
    s.client_cert = Some((
        s.client_cert.clone().expect("cert").0,
        write(&f.dir, "other.key", &other.key_pem),
    ));
    let e = ClientTls::from_settings(&s)
        .expect_err("mismatched key")
        .to_string();
    assert!(e.starts_with("clusters.tls.key:"), "{e}");
    assert!(e.contains("clusters.tls.cert"), "{e}");
}
