//! Sans-IO peers (STYLE §11b): a rustls client pumped against
//! [`TlsSession`] on byte buffers.

use std::io::Write;

use rustls::crypto::aws_lc_rs::kx_group;
use rustls::{HandshakeKind, NamedGroup};

use super::*;
use crate::tls::record::MAX_PLAINTEXT;
use crate::tls::testutil::{
    ClientSpec, Fixture, PumpError, SPIFFE_ID, client_for, client_wire, handshake, pump,
};
use crate::tls::{ClientAuth, ServerTls, TlsVersion};

fn server_reason(
    result: Result<(rustls::ClientConnection, TlsSession), PumpError>,
) -> &'static str {
    match result {
        Err(PumpError::Server(e)) => e.reason(),
        Err(PumpError::Client(e)) => panic!("client failed first: {e}"),
        Ok(_) => panic!("handshake unexpectedly succeeded"),
    }
}

static TLS12_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

fn sha256_hex(der: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn mtls_with_uri_only_spiffe_cert() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    let (client, server) = handshake(&tls, &ClientSpec::new(&f.ca, Some(&leaf))).unwrap();
    assert!(!server.is_handshaking() && !client.is_handshaking());
    assert_eq!(server.protocol_version(), Some("TLSv1.3"));
    // The name the client asked for, read from its ClientHello.
    assert_eq!(server.server_name(), Some("localhost"));
    let id = server.peer_identity().expect("client identity");
    assert_eq!(id.spiffe_id.as_deref(), Some(SPIFFE_ID));
    assert_eq!(id.principal(), Some(SPIFFE_ID));
    assert!(id.dns_names.is_empty() && id.subject.is_none());
    assert_eq!(
        id.xfcc(),
        format!("Hash={};URI={SPIFFE_ID}", sha256_hex(&leaf.der))
    );
}

#[test]
fn require_without_client_cert_fails() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let reason = server_reason(handshake(&tls, &ClientSpec::new(&f.ca, None)));
    assert_eq!(reason, "no_client_cert");
}

#[test]
fn client_cert_from_other_ca_fails() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let other = crate::tls::testutil::Ca::new("other CA");
    let leaf = other.spiffe_client();
    let reason = server_reason(handshake(&tls, &ClientSpec::new(&f.ca, Some(&leaf))));
    assert_eq!(reason, "unknown_ca");
}

#[test]
fn expired_client_cert_fails() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.expired_client();
    let reason = server_reason(handshake(&tls, &ClientSpec::new(&f.ca, Some(&leaf))));
    assert_eq!(reason, "expired");
}

#[test]
fn optional_client_auth() {
    let mut f = Fixture::new();
    f.settings.client_auth = ClientAuth::Optional;
    let tls = ServerTls::from_settings(&f.settings).unwrap();

    let (_, server) = handshake(&tls, &ClientSpec::new(&f.ca, None)).unwrap();
    assert!(!server.is_handshaking());
    assert_eq!(server.peer_identity(), None);

    let leaf = f.ca.spiffe_client();
    let (_, server) = handshake(&tls, &ClientSpec::new(&f.ca, Some(&leaf))).unwrap();
    assert_eq!(
        server.peer_identity().unwrap().spiffe_id.as_deref(),
        Some(SPIFFE_ID)
    );

    // An offered certificate is still verified.
    let other = crate::tls::testutil::Ca::new("other CA");
    let bad = other.spiffe_client();
    let reason = server_reason(handshake(&tls, &ClientSpec::new(&f.ca, Some(&bad))));
    assert_eq!(reason, "unknown_ca");
}

#[test]
fn no_client_auth_requests_no_certificate() {
    let mut f = Fixture::new();
    f.settings.client_auth = ClientAuth::None;
    f.settings.client_ca = None;
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    let (_, server) = handshake(&tls, &ClientSpec::new(&f.ca, Some(&leaf))).unwrap();
    assert!(!server.is_handshaking());
    assert_eq!(server.peer_identity(), None);
}

#[test]
fn min_version_tls13_rejects_tls12_client() {
    let mut f = Fixture::new();
    f.settings.min_version = TlsVersion::Tls13;
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    let mut spec = ClientSpec::new(&f.ca, Some(&leaf));
    spec.versions = TLS12_ONLY;
    assert_eq!(server_reason(handshake(&tls, &spec)), "protocol_version");
}

#[test]
fn tls12_client_with_mtls() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    let mut spec = ClientSpec::new(&f.ca, Some(&leaf));
    spec.versions = TLS12_ONLY;
    let (_, server) = handshake(&tls, &spec).unwrap();
    assert_eq!(server.protocol_version(), Some("TLSv1.2"));
    assert_eq!(
        server.peer_identity().unwrap().spiffe_id.as_deref(),
        Some(SPIFFE_ID)
    );
}

/// Two connections with one client config; returns the second's kind and
/// the identity the server saw on it.
fn reconnect(
    tls: &ServerTls,
    spec: &ClientSpec<'_>,
) -> (HandshakeKind, Option<crate::tls::PeerIdentity>) {
    let config = spec.config();
    for round in 0..2 {
        let mut client = client_for(config.clone());
        let mut server = TlsSession::new(tls).unwrap();
        pump(&mut client, &mut server, &mut Vec::new(), &mut Vec::new()).unwrap();
        if round == 1 {
            return (client.handshake_kind().unwrap(), server.peer_identity());
        }
    }
    unreachable!()
}

#[test]
fn session_tickets_resume_and_keep_the_client_identity() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    assert!(tls.config.ticketer.enabled());
    let leaf = f.ca.spiffe_client();
    for versions in [TLS13_ONLY, TLS12_ONLY] {
        let mut spec = ClientSpec::new(&f.ca, Some(&leaf));
        spec.versions = versions;
        let (kind, id) = reconnect(&tls, &spec);
        assert_eq!(kind, HandshakeKind::Resumed, "{versions:?}");
        assert_eq!(id.unwrap().spiffe_id.as_deref(), Some(SPIFFE_ID));
    }
}

#[test]
fn no_session_tickets_means_full_handshakes() {
    let mut f = Fixture::new();
    f.settings.session_tickets = false;
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    assert_eq!(tls.config.send_tls13_tickets, 0);
    assert!(!tls.config.ticketer.enabled());
    let leaf = f.ca.spiffe_client();
    for versions in [TLS13_ONLY, TLS12_ONLY] {
        let mut spec = ClientSpec::new(&f.ca, Some(&leaf));
        spec.versions = versions;
        let (kind, id) = reconnect(&tls, &spec);
        assert_eq!(kind, HandshakeKind::Full, "{versions:?}");
        assert!(id.is_some());
    }
}

#[test]
fn configured_groups_restrict_negotiation() {
    let mut f = Fixture::new();
    f.settings.groups = vec!["secp256r1".into()];
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    let mut spec = ClientSpec::new(&f.ca, Some(&leaf));
    spec.groups = Some(vec![kx_group::X25519, kx_group::SECP256R1]);
    let (client, server) = handshake(&tls, &spec).unwrap();
    assert_eq!(server.key_exchange_group(), Some("secp256r1"));
    assert_eq!(
        client.negotiated_key_exchange_group().unwrap().name(),
        NamedGroup::secp256r1
    );
    // The client's x25519 key share was useless: a HelloRetryRequest round trip.
    assert_eq!(
        client.handshake_kind(),
        Some(HandshakeKind::FullWithHelloRetryRequest)
    );
}

/// rustls 0.23 servers pick the *client's* most preferred group among the
/// configured ones; the configured order is not a server preference.
#[test]
fn group_choice_follows_client_order() {
    let mut f = Fixture::new();
    f.settings.groups = vec!["secp256r1".into(), "x25519".into()];
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    let mut spec = ClientSpec::new(&f.ca, Some(&leaf));
    spec.groups = Some(vec![kx_group::X25519, kx_group::SECP256R1]);
    let (_, server) = handshake(&tls, &spec).unwrap();
    assert_eq!(server.key_exchange_group(), Some("x25519"));
}

#[test]
fn post_quantum_hybrid_group() {
    let mut f = Fixture::new();
    f.settings.groups = vec!["x25519mlkem768".into(), "x25519".into()];
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    let mut spec = ClientSpec::new(&f.ca, Some(&leaf));
    spec.groups = Some(vec![kx_group::X25519MLKEM768, kx_group::X25519]);
    let (_, server) = handshake(&tls, &spec).unwrap();
    assert_eq!(server.key_exchange_group(), Some("x25519mlkem768"));
}

#[test]
fn alpn_negotiation() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    let (client, server) = handshake(&tls, &ClientSpec::new(&f.ca, Some(&leaf))).unwrap();
    assert_eq!(server.alpn(), Some(&b"http/1.1"[..]));
    assert_eq!(client.alpn_protocol(), Some(&b"http/1.1"[..]));

    let mut spec = ClientSpec::new(&f.ca, Some(&leaf));
    spec.alpn = vec![b"h3".to_vec()];
    assert_eq!(server_reason(handshake(&tls, &spec)), "no_alpn");
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn one_mebibyte_round_trips_both_ways() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    let (mut client, mut server) = handshake(&tls, &ClientSpec::new(&f.ca, Some(&leaf))).unwrap();
    client.set_buffer_limit(None);

    let up = pattern(1 << 20, 7);
    let down = pattern(1 << 20, 99);
    client.writer().write_all(&up).unwrap();
    server.write_plaintext(&down).unwrap();
    let (mut client_rx, mut server_rx) = (Vec::new(), Vec::new());
    pump(&mut client, &mut server, &mut client_rx, &mut server_rx).unwrap();
    assert!(server_rx == up, "client → server data differs");
    assert!(client_rx == down, "server → client data differs");
}

#[test]
fn feed_takes_any_split_of_the_wire_and_keeps_partial_records() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    let (mut client, mut server) = handshake(&tls, &ClientSpec::new(&f.ca, Some(&leaf))).unwrap();
    client.set_buffer_limit(None);
    let up = pattern(100 * 1024 + 17, 3);
    client.writer().write_all(&up).unwrap();
    let wire = client_wire(&mut client);

    let mut got = Vec::new();
    let mut rest = &wire[..];
    for size in [1, 4, 5, 6, 700, 16 * 1024 + 21, 3].into_iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let piece = &rest[..size.min(rest.len())];
        assert_eq!(server.feed(piece).unwrap(), piece.len());
        server.read_plaintext(&mut got).unwrap();
        rest = &rest[piece.len()..];
    }
    assert!(got == up);
}

/// The server's sending sequence number (records under the current key).
fn server_tx_seq(server: &TlsSession) -> u64 {
    match &server.phase {
        Phase::Established(est) => est.sealer.seq(),
        _ => panic!("not established"),
    }
}

#[test]
fn every_enabled_cipher_suite_carries_data_both_ways() {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    for suite in [
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ] {
        let mut spec = ClientSpec::new(&f.ca, Some(&leaf));
        spec.suites = Some(vec![suite]);
        let (mut client, mut server) = handshake(&tls, &spec).unwrap();
        assert_eq!(client.negotiated_cipher_suite(), Some(suite));
        client.set_buffer_limit(None);
        let up = pattern(40_000, 1);
        let down = pattern(70_000, 2);
        client.writer().write_all(&up).unwrap();
        server.write_plaintext(&down).unwrap();
        let (mut client_rx, mut server_rx) = (Vec::new(), Vec::new());
        pump(&mut client, &mut server, &mut client_rx, &mut server_rx).unwrap();
        assert!(server_rx == up, "{suite:?}: client → server differs");
        assert!(client_rx == down, "{suite:?}: server → client differs");
    }
}

#[test]
fn client_key_update_is_answered_and_traffic_continues() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    let (mut client, mut server) = handshake(&tls, &ClientSpec::new(&f.ca, Some(&leaf))).unwrap();
    server.write_plaintext(b"before").unwrap();
    let mut client_rx = Vec::new();
    pump(&mut client, &mut server, &mut client_rx, &mut Vec::new()).unwrap();
    assert!(server_tx_seq(&server) > 0);

    // KeyUpdate(update_requested) from the client, then data under its new key.
    client.refresh_traffic_keys().unwrap();
    client.writer().write_all(b"after").unwrap();
    let mut server_rx = Vec::new();
    pump(&mut client, &mut server, &mut client_rx, &mut server_rx).unwrap();
    assert_eq!(server_rx, b"after");
    // We answered with our own KeyUpdate and switched keys: the counter restarted.
    assert_eq!(server_tx_seq(&server), 0);
    server.write_plaintext(b" and more").unwrap();
    pump(&mut client, &mut server, &mut client_rx, &mut server_rx).unwrap();
    assert_eq!(client_rx, b"before and more");
}

#[test]
fn sending_key_rotates_before_the_confidentiality_limit() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    let (mut client, mut server) = handshake(&tls, &ClientSpec::new(&f.ca, Some(&leaf))).unwrap();
    let Phase::Established(est) = &mut server.phase else {
        panic!("not established")
    };
    est.rekey_at = est.sealer.seq() + 2;
    let down = pattern(5 * MAX_PLAINTEXT, 9);
    server.write_plaintext(&down).unwrap();
    // Two records under the old key, KeyUpdate, then three under the new one.
    assert_eq!(server_tx_seq(&server), 3);
    let mut client_rx = Vec::new();
    pump(&mut client, &mut server, &mut client_rx, &mut Vec::new()).unwrap();
    assert!(client_rx == down);
}

#[test]
fn tls12_renegotiation_is_refused_and_the_session_goes_on() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    let mut spec = ClientSpec::new(&f.ca, Some(&leaf));
    spec.versions = TLS12_ONLY;
    let (mut client, mut server) = handshake(&tls, &spec).unwrap();
    // rustls clients never renegotiate; hand the post-handshake handler a
    // ClientHello-typed message as if it had arrived in a record.
    let Phase::Established(est) = &mut server.phase else {
        panic!("not established")
    };
    let mut out = Vec::new();
    assert!(
        est.handshake_messages(&[], false, &mut out).is_err(),
        "empty"
    );
    est.handshake_messages(&[1, 0, 0, 0], false, &mut out)
        .unwrap();
    assert_eq!(out[..3], [21, 3, 3], "a warning alert went out");
    server.outgoing.extend_from_slice(&out);
    server.write_plaintext(b"still here").unwrap();
    let mut client_rx = Vec::new();
    pump(&mut client, &mut server, &mut client_rx, &mut Vec::new()).unwrap();
    assert_eq!(client_rx, b"still here");
}

#[test]
fn write_before_handshake_completes_is_sent_after_it() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    let mut client = ClientSpec::new(&f.ca, Some(&leaf)).connect();
    let mut server = TlsSession::new(&tls).unwrap();
    server.write_plaintext(b"early hello").unwrap();
    assert!(!server.wants_write());
    let mut client_rx = Vec::new();
    pump(&mut client, &mut server, &mut client_rx, &mut Vec::new()).unwrap();
    assert_eq!(client_rx, b"early hello");
}

#[test]
fn close_notify_both_ways() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    let (mut client, mut server) = handshake(&tls, &ClientSpec::new(&f.ca, Some(&leaf))).unwrap();

    client.writer().write_all(b"last words").unwrap();
    client.send_close_notify();
    let mut server_rx = Vec::new();
    pump(&mut client, &mut server, &mut Vec::new(), &mut server_rx).unwrap();
    assert_eq!(server_rx, b"last words");
    assert!(server.peer_closed());
    // Anything after close_notify is discarded, not an error.
    assert_eq!(server.feed(b"junk").unwrap(), 4);
    assert_eq!(server.read_plaintext(&mut server_rx).unwrap(), 0);

    server.send_close_notify();
    assert!(server.wants_write());
    assert_eq!(server.write_plaintext(b"x").unwrap_err().reason(), "closed");
    pump(&mut client, &mut server, &mut Vec::new(), &mut Vec::new()).unwrap();
}

#[test]
fn eof_without_close_notify_is_unclean() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    let (_, mut server) = handshake(&tls, &ClientSpec::new(&f.ca, Some(&leaf))).unwrap();
    server.feed_eof();
    let err = server.read_plaintext(&mut Vec::new()).unwrap_err();
    assert_eq!(err.reason(), "unclean_eof");
    assert!(!server.peer_closed());
}

#[test]
fn garbage_fails_the_handshake_and_queues_an_alert() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let mut server = TlsSession::new(&tls).unwrap();
    let err = server
        .feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap_err();
    assert_eq!(err.reason(), "handshake");
    let mut alert = Vec::new();
    assert!(server.take_ciphertext(&mut alert) > 0);
    assert_eq!(alert.first(), Some(&21), "an alert record");
    // The session stays failed.
    assert_eq!(server.feed(b"more").unwrap_err().reason(), "handshake");
}

#[test]
fn tampered_record_fails_to_decrypt() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    let (mut client, mut server) = handshake(&tls, &ClientSpec::new(&f.ca, Some(&leaf))).unwrap();
    client.writer().write_all(b"hello").unwrap();
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).unwrap();
    }
    if let Some(last) = wire.last_mut() {
        *last ^= 1;
    }
    assert_eq!(server.feed(&wire).unwrap_err().reason(), "decrypt");
}

#[test]
fn debug_does_not_leak_secrets() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let s = format!("{:?} {:?}", TlsSession::new(&tls).unwrap(), tls);
    assert!(s.contains("TlsSession") && s.contains("handshaking: true"));
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Untrusted bytes after the handshake: the session fails (with an
        /// alert queued) or waits for more, never panics, never yields data.
        #[test]
        fn garbage_after_the_handshake_never_panics(
            chunks in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..400), 1..4),
        ) {
            let f = Fixture::new();
            let tls = ServerTls::from_settings(&f.settings).unwrap();
            let leaf = f.ca.spiffe_client();
            let (_, mut server) =
                handshake(&tls, &ClientSpec::new(&f.ca, Some(&leaf))).unwrap();
            let mut got = Vec::new();
            for chunk in &chunks {
                if server.feed(chunk).is_err() {
                    prop_assert!(server.wants_write() || server.feed(b"x").is_err());
                    break;
                }
                server.read_plaintext(&mut got).unwrap();
            }
            prop_assert!(got.is_empty());
        }
    }
}

#[test]
fn nothing_is_written_after_a_fatal_alert() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    let (mut client, mut server) = handshake(&tls, &ClientSpec::new(&f.ca, Some(&leaf))).unwrap();
    client.writer().write_all(b"hello").unwrap();
    let mut wire = client_wire(&mut client);
    *wire.last_mut().unwrap() ^= 1;
    assert_eq!(server.feed(&wire).unwrap_err().reason(), "decrypt");
    let mut alert = Vec::new();
    server.take_ciphertext(&mut alert);
    assert!(!alert.is_empty(), "bad_record_mac queued");
    assert_eq!(
        server.write_plaintext(b"late").unwrap_err().reason(),
        "decrypt"
    );
    server.send_close_notify();
    assert!(!server.wants_write(), "nothing after the fatal alert");
}

#[test]
fn key_updates_must_end_their_record_and_are_rationed() {
    let f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let leaf = f.ca.spiffe_client();
    let (_, mut server) = handshake(&tls, &ClientSpec::new(&f.ca, Some(&leaf))).unwrap();
    let Phase::Established(est) = &mut server.phase else {
        panic!("not established")
    };
    let mut out = Vec::new();
    let request = [KEY_UPDATE, 0, 0, 1, 1];
    // Another message after a KeyUpdate in the same record.
    let two = [request, [KEY_UPDATE, 0, 0, 1, 0]].concat();
    assert_eq!(
        est.handshake_messages(&two, false, &mut out),
        Err(RecordError::Unexpected)
    );
    // An update_requested value other than 0 or 1.
    assert_eq!(
        est.handshake_messages(&[KEY_UPDATE, 0, 0, 1, 2], false, &mut out),
        Err(RecordError::IllegalParameter)
    );
    // 32 answered requests without application data in between, not 33.
    for _ in 0..32 {
        est.handshake_messages(&request, false, &mut out).unwrap();
    }
    assert_eq!(
        est.handshake_messages(&request, false, &mut out),
        Err(RecordError::Unexpected)
    );
}
