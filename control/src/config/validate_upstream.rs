//! Validation of what the gateway speaks to a cluster's endpoints:
//! `protocol` (`http1`, `h2`, `h2c`) and `[clusters.tls]` (client
//! certificate pairs, SNI, ALPN against the protocol, SPIFFE IDs).

use super::problem::Problems;
use super::schema::{ClusterConfig, UpstreamProtocolConfig as Proto};
use super::tls_build;

/// Checks cluster `i`'s `protocol` and `[clusters.tls]`.
pub(super) fn check(p: &mut Problems, i: usize, c: &ClusterConfig) {
    let at = |field: &str| format!("clusters[{i}].{field}");
    match (c.protocol, &c.tls) {
        (Proto::H2, None) => p.push(
            at("protocol"),
            "\"h2\" is HTTP/2 over TLS and needs [clusters.tls]; use \"h2c\" for plaintext",
        ),
        (Proto::H2c, Some(_)) => p.push(
            at("protocol"),
            "\"h2c\" is HTTP/2 over plaintext; with [clusters.tls] use \"h2\"",
        ),
        _ => {}
    }
    let Some(tls) = &c.tls else { return };
    match (&tls.cert, &tls.key) {
        (Some(_), None) => p.push(
            at("tls.key"),
            "a client certificate (tls.cert) needs its key",
        ),
        (None, Some(_)) => p.push(
            at("tls.cert"),
            "a client key (tls.key) needs its certificate",
        ),
        _ => {}
    }
    if let Some(sni) = &tls.sni
        && !tls_build::is_server_name(sni)
    {
        p.push(
            at("tls.sni"),
            format!("{sni:?} is not a DNS name or IP address"),
        );
    }
    let alpn = tls.effective_alpn(c.protocol);
    for (k, proto) in alpn.iter().enumerate() {
        let field = at(&format!("tls.alpn[{k}]"));
        if proto.is_empty() || proto.len() > 255 {
            p.push(field, "must be 1 to 255 bytes long");
        } else if proto == "h2" && c.protocol != Proto::H2 {
            p.push(
                field,
                "\"h2\" would let the endpoint pick HTTP/2 on a connection the gateway speaks HTTP/1.1 on; set protocol = \"h2\"",
            );
        }
    }
    if c.protocol == Proto::H2 && !alpn.iter().any(|a| a == "h2") {
        p.push(at("tls.alpn"), "protocol = \"h2\" must offer \"h2\"");
    }
    for (k, id) in tls.verify_spiffe_id.iter().enumerate() {
        let field = at(&format!("tls.verify_spiffe_id[{k}]"));
        let domain = id
            .strip_prefix("spiffe://")
            .map(|rest| rest.split('/').next().unwrap_or(""));
        match domain {
            None => p.push(
                field,
                format!("{id:?} is not a SPIFFE ID (spiffe://trust-domain/path)"),
            ),
            Some("") => p.push(field, format!("{id:?} has no trust domain")),
            Some(_) if id.contains('*') => p.push(
                field,
                format!("{id:?}: wildcards are not accepted here, list each identity"),
            ),
            Some(_) => {}
        }
    }
}
