use proptest::prelude::*;
use rcgen::string::BmpString;
use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, SanType};

use super::*;
use crate::tls::testutil::{Ca, SPIFFE_ID};

fn sha256_of(der: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn cert(dn: &[(DnType, DnValue)], sans: &[SanType]) -> rustls::pki_types::CertificateDer<'static> {
    let ca = Ca::new("identity test CA");
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    for (ty, value) in dn {
        params.distinguished_name.push(ty.clone(), value.clone());
    }
    params.subject_alt_names = sans.to_vec();
    ca.sign(params).der
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

fn dns(s: &str) -> SanType {
    SanType::DnsName(s.try_into().unwrap())
}

#[test]
fn spiffe_uri_only_certificate() {
    let der = cert(&[], &[uri(SPIFFE_ID)]);
    let id = PeerIdentity::from_der(&der).unwrap();
    assert_eq!(id.spiffe_id.as_deref(), Some(SPIFFE_ID));
    assert_eq!(id.uris, vec![SPIFFE_ID.to_owned()]);
    assert!(id.dns_names.is_empty());
    assert_eq!(id.subject, None);
    assert_eq!(id.common_name, None);
    assert_eq!(id.principal(), Some(SPIFFE_ID));
    assert_eq!(id.cert_sha256_hex, sha256_of(&der));
    assert_eq!(
        id.xfcc(),
        format!("Hash={};URI={SPIFFE_ID}", sha256_of(&der))
    );
}

#[test]
fn subject_sans_and_xfcc() {
    let der = cert(
        &[
            (DnType::OrganizationName, "Example Org".into()),
            (DnType::CommonName, "client-1".into()),
        ],
        &[
            dns("a.example.com"),
            uri(SPIFFE_ID),
            dns("b.example.com"),
            SanType::IpAddress([127, 0, 0, 1].into()),
        ],
    );
    let id = PeerIdentity::from_der(&der).unwrap();
    assert_eq!(id.subject.as_deref(), Some("CN=client-1,O=Example Org"));
    assert_eq!(id.common_name.as_deref(), Some("client-1"));
    assert_eq!(id.dns_names, ["a.example.com", "b.example.com"]);
    assert_eq!(id.principal(), Some(SPIFFE_ID));
    assert_eq!(
        id.xfcc(),
        format!(
            "Hash={};Subject=\"CN=client-1,O=Example Org\";URI={SPIFFE_ID};DNS=a.example.com;DNS=b.example.com",
            sha256_of(&der)
        )
    );
}

#[test]
fn principal_falls_back_to_dns_then_common_name() {
    let der = cert(
        &[(DnType::CommonName, "cn-only".into())],
        &[uri("https://not-spiffe.example/x"), dns("svc.example")],
    );
    let id = PeerIdentity::from_der(&der).unwrap();
    assert_eq!(id.spiffe_id, None);
    assert_eq!(id.principal(), Some("svc.example"));
    assert!(id.xfcc().contains(";URI=https://not-spiffe.example/x;"));

    let der = cert(&[(DnType::CommonName, "cn-only".into())], &[]);
    let id = PeerIdentity::from_der(&der).unwrap();
    assert_eq!(id.principal(), Some("cn-only"));

    let der = cert(&[], &[]);
    assert_eq!(PeerIdentity::from_der(&der).unwrap().principal(), None);
}

#[test]
fn two_spiffe_ids_are_ambiguous() {
    let der = cert(
        &[],
        &[uri(SPIFFE_ID), uri("spiffe://meshgate.local/ns/x/sa/y")],
    );
    let id = PeerIdentity::from_der(&der).unwrap();
    assert_eq!(id.spiffe_id, None);
    assert_eq!(id.uris.len(), 2);
    assert_eq!(id.principal(), None);
}

#[test]
fn subject_is_escaped_per_rfc4514_and_quoted_in_xfcc() {
    let der = cert(&[(DnType::CommonName, "#a,b+\"c\"\\ ".into())], &[]);
    let id = PeerIdentity::from_der(&der).unwrap();
    assert_eq!(id.common_name.as_deref(), Some("#a,b+\"c\"\\ "));
    let subject = r#"CN=\#a\,b\+\"c\"\\\ "#;
    assert_eq!(id.subject.as_deref(), Some(subject));
    assert!(
        id.xfcc()
            .ends_with(r#";Subject="CN=\\#a\\,b\\+\\\"c\\\"\\\\\\ ""#)
    );
}

#[test]
fn non_ascii_and_control_bytes_are_hex_escaped() {
    let der = cert(
        &[
            (
                DnType::LocalityName,
                DnValue::BmpString(BmpString::try_from("Zürich").unwrap()),
            ),
            (DnType::CommonName, "a\r\nb".into()),
        ],
        &[],
    );
    let id = PeerIdentity::from_der(&der).unwrap();
    assert_eq!(id.subject.as_deref(), Some(r"CN=a\0D\0Ab,L=Z\C3\BCrich"));
    assert!(id.xfcc().is_ascii());
    assert!(!id.xfcc().contains(['\r', '\n']));
}

#[test]
fn unknown_attribute_renders_as_dotted_oid() {
    let der = cert(
        &[(
            DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
            "x@example.com".into(),
        )],
        &[],
    );
    let id = PeerIdentity::from_der(&der).unwrap();
    assert_eq!(
        id.subject.as_deref(),
        Some("1.2.840.113549.1.9.1=x@example.com")
    );
}

#[test]
fn xfcc_values_with_separators_are_quoted() {
    let id = PeerIdentity {
        spiffe_id: None,
        uris: vec!["urn:a;b=c".into()],
        dns_names: vec![],
        subject: None,
        common_name: None,
        cert_sha256_hex: "00".into(),
    };
    assert_eq!(id.xfcc(), "Hash=00;URI=\"urn:a;b=c\"");
}

#[test]
fn rejects_non_certificates() {
    assert_eq!(PeerIdentity::from_der(&[]), Err(IdentityError::Truncated));
    assert_eq!(
        PeerIdentity::from_der(&[0x30]),
        Err(IdentityError::Truncated)
    );
    assert_eq!(
        PeerIdentity::from_der(&[0x30, 0x05, 0x02]),
        Err(IdentityError::Truncated)
    );
    assert!(PeerIdentity::from_der(&[0x30, 0x80, 0x00, 0x00]).is_err());
    assert!(PeerIdentity::from_der(&[0x1f, 0x01, 0x00]).is_err());
    assert!(PeerIdentity::from_der(&[0x30, 0x00]).is_err());
    assert!(PeerIdentity::from_der(b"-----BEGIN CERTIFICATE-----").is_err());
    // Trailing data after a valid certificate.
    let mut der = cert(&[], &[uri(SPIFFE_ID)]).to_vec();
    der.push(0);
    assert!(PeerIdentity::from_der(&der).is_err());
}

#[test]
fn dotted_oid_edge_cases() {
    let render = |oid: &[u8]| {
        let mut s = String::new();
        push_dotted_oid(&mut s, oid);
        s
    };
    assert_eq!(render(&[0x55, 0x04, 0x03]), "2.5.4.3");
    assert_eq!(render(&[0x2a, 0x86, 0x48]), "1.2.840");
    assert_eq!(render(&[]), "?");
    assert_eq!(render(&[0x86]), "?");
    assert_eq!(render(&[0xff; 20]), "?");
}

fn sample_certs() -> &'static [Vec<u8>] {
    static CERTS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    CERTS.get_or_init(|| {
        vec![
            cert(&[], &[uri(SPIFFE_ID)]).to_vec(),
            cert(
                &[
                    (DnType::OrganizationName, "Example Org".into()),
                    (DnType::CommonName, "client-1".into()),
                ],
                &[dns("a.example.com"), uri(SPIFFE_ID)],
            )
            .to_vec(),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = PeerIdentity::from_der(&bytes);
    }

    #[test]
    fn never_panics_on_mutated_certificates(
        which in 0usize..2,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut der = sample_certs()[which].clone();
        for (at, byte, op) in edits {
            if der.is_empty() {
                break;
            }
            let i = at.index(der.len());
            match op {
                0 => der[i] = byte,
                1 => der[i] ^= 1 << (byte % 8),
                2 => der.insert(i, byte),
                _ => { der.remove(i); }
            }
        }
        if truncate && !der.is_empty() {
            der.truncate(cut.index(der.len()));
        }
        let _ = PeerIdentity::from_der(&der);
    }

    #[test]
    fn every_prefix_of_a_certificate_is_rejected_cleanly(
        which in 0usize..2,
        cut in any::<prop::sample::Index>(),
    ) {
        let der = &sample_certs()[which];
        let len = cut.index(der.len());
        prop_assert!(PeerIdentity::from_der(&der[..len]).is_err());
    }
}

#[test]
fn not_after_reads_both_time_forms() {
    assert_eq!(super::parse_time(0x17, b"700101000000Z"), Some(0));
    assert_eq!(
        super::parse_time(0x17, b"491231235959Z"),
        Some(2_524_607_999)
    );
    assert_eq!(
        super::parse_time(0x18, b"20380119031408Z"),
        Some(2_147_483_648)
    );
    assert_eq!(
        super::parse_time(0x18, b"20240229120000Z"),
        Some(1_709_208_000)
    );
    for bad in [
        &b"700101000000"[..],
        b"7001010000Z",
        b"701301000000Z",
        b"7001010a0000Z",
    ] {
        assert_eq!(super::parse_time(0x17, bad), None, "{bad:?}");
    }
    let ca = crate::tls::testutil::Ca::new("t");
    let leaf = ca.server();
    let t = super::not_after(leaf.der.as_ref()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(t > now, "rcgen's default validity lies ahead");
    assert!(super::not_after(b"not DER").is_err());
}
