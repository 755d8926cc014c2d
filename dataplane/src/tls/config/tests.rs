use super::*;
use crate::tls::testutil::{Ca, Fixture, write};

fn err(s: &ServerTlsSettings) -> String {
    ServerTls::from_settings(s).unwrap_err().to_string()
}

#[test]
fn builds_with_aead_suites_and_configured_versions() {
    let mut f = Fixture::new();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    let config = &tls.config;
    let provider = config.crypto_provider();
    assert_eq!(provider.cipher_suites.len(), 9);
    for suite in &provider.cipher_suites {
        let name = format!("{:?}", suite.suite());
        assert!(
            name.contains("GCM") || name.contains("CHACHA20_POLY1305"),
            "non-AEAD suite {name}"
        );
        assert!(
            name.starts_with("TLS13_") || name.contains("ECDHE"),
            "{name}"
        );
    }
    let groups: Vec<_> = provider.kx_groups.iter().map(|g| g.name()).collect();
    assert_eq!(
        groups,
        [rustls::NamedGroup::X25519, rustls::NamedGroup::secp256r1]
    );
    assert_eq!(
        config.alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    // Version limits are exercised end to end in the session tests.
    f.settings.min_version = TlsVersion::Tls13;
    ServerTls::from_settings(&f.settings).unwrap();
}

#[test]
fn empty_groups_mean_rustls_defaults() {
    let mut f = Fixture::new();
    f.settings.groups.clear();
    let tls = ServerTls::from_settings(&f.settings).unwrap();
    assert_eq!(tls.config.crypto_provider().kx_groups.len(), 4);
}

#[test]
fn missing_files_name_field_and_path() {
    let mut f = Fixture::new();
    let missing = f.dir.join("nope.pem");
    f.settings.cert = missing.clone();
    assert_eq!(
        err(&f.settings),
        format!("listeners.tls.cert: {}: file not found", missing.display())
    );

    let mut f = Fixture::new();
    f.settings.key = f.dir.join("nope.key");
    assert!(err(&f.settings).starts_with("listeners.tls.key: "));

    let mut f = Fixture::new();
    f.settings.client_ca = Some(f.dir.join("nope-ca.pem"));
    let msg = err(&f.settings);
    assert!(
        msg.starts_with("listeners.tls.client_ca: ") && msg.contains("nope-ca.pem"),
        "{msg}"
    );
}

#[test]
fn unreadable_file() {
    let mut f = Fixture::new();
    f.settings.cert = f.dir.clone(); // a directory
    let msg = err(&f.settings);
    assert!(
        msg.starts_with(&format!(
            "listeners.tls.cert: {}: cannot read",
            f.dir.display()
        )),
        "{msg}"
    );
}

#[test]
fn bad_pem_and_missing_items() {
    let mut f = Fixture::new();
    let path = write(
        &f.dir,
        "bad.pem",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    f.settings.cert = path.clone();
    let msg = err(&f.settings);
    assert!(
        msg.starts_with(&format!("listeners.tls.cert: {}: bad PEM", path.display())),
        "{msg}"
    );

    let mut f = Fixture::new();
    let path = write(&f.dir, "empty.pem", "just text\n");
    f.settings.cert = path.clone();
    assert_eq!(
        err(&f.settings),
        format!(
            "listeners.tls.cert: {}: no certificate found",
            path.display()
        )
    );

    let mut f = Fixture::new();
    let path = write(&f.dir, "cert-as-key.pem", &f.server.cert_pem.clone());
    f.settings.key = path.clone();
    let msg = err(&f.settings);
    assert!(
        msg.starts_with(&format!(
            "listeners.tls.key: {}: no private key found",
            path.display()
        )),
        "{msg}"
    );

    let mut f = Fixture::new();
    let path = write(
        &f.dir,
        "junk-cert.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    f.settings.cert = path.clone();
    let msg = err(&f.settings);
    assert!(
        msg.starts_with(&format!(
            "listeners.tls.cert: {}: certificate is not valid",
            path.display()
        )),
        "{msg}"
    );
}

#[test]
fn key_mismatch_names_both_files() {
    let mut f = Fixture::new();
    let other = f.ca.spiffe_client();
    let path = write(&f.dir, "other.key", &other.key_pem);
    f.settings.key = path.clone();
    assert_eq!(
        err(&f.settings),
        format!(
            "listeners.tls.key: {}: private key does not match the certificate in listeners.tls.cert {}",
            path.display(),
            f.settings.cert.display()
        )
    );
}

#[test]
fn client_ca_rules() {
    let mut f = Fixture::new();
    let path = write(&f.dir, "empty-ca.pem", "");
    f.settings.client_ca = Some(path.clone());
    assert_eq!(
        err(&f.settings),
        format!(
            "listeners.tls.client_ca: {}: no CA certificates found",
            path.display()
        )
    );

    for (mode, name) in [
        (ClientAuth::Require, "require"),
        (ClientAuth::Optional, "optional"),
    ] {
        let mut f = Fixture::new();
        f.settings.client_ca = None;
        f.settings.client_auth = mode;
        let msg = err(&f.settings);
        assert!(
            msg.starts_with(&format!(
                "listeners.tls.client_auth: client_auth = {name} needs listeners.tls.client_ca"
            )),
            "{msg}"
        );
    }

    // A multi-CA bundle is fine.
    let mut f = Fixture::new();
    let bundle = format!("{}{}", f.ca.pem(), Ca::new("second").pem());
    f.settings.client_ca = Some(write(&f.dir, "bundle.pem", &bundle));
    ServerTls::from_settings(&f.settings).unwrap();
}

#[test]
fn group_and_alpn_validation() {
    let mut f = Fixture::new();
    f.settings.groups = vec!["x25519".into(), "ffdhe2048".into()];
    assert_eq!(
        err(&f.settings),
        "listeners.tls.groups: unknown group \"ffdhe2048\" (known: x25519mlkem768, x25519, secp256r1, secp384r1)"
    );
    f.settings.groups = vec!["x25519".into(), "X25519".into()];
    assert!(err(&f.settings).contains("listed twice"));
    f.settings.groups = vec!["X25519MLKEM768".into(), "secp384r1".into()];
    ServerTls::from_settings(&f.settings).unwrap();

    // TLS 1.2 cannot use the hybrid group alone; TLS 1.3-only can.
    f.settings.groups = vec!["x25519mlkem768".into()];
    f.settings.min_version = TlsVersion::Tls13;
    ServerTls::from_settings(&f.settings).unwrap();

    f.settings.alpn = vec!["h2".into(), String::new()];
    assert_eq!(
        err(&f.settings),
        "listeners.tls.alpn: protocol #2 must be 1 to 255 bytes long"
    );
}

#[test]
fn known_group_names_all_resolve() {
    for name in known_group_names() {
        assert!(resolve_groups(&[(*name).to_owned()]).is_ok(), "{name}");
        let group = resolve_groups(&[(*name).to_owned()]).unwrap()[0];
        assert_eq!(group_config_name(group.name()), Some(*name));
    }
}
