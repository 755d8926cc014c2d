//! Typed values shared by the tables of `meshgate.toml`: socket
//! addresses, header-name tokens, TLS versions, and lists whose element
//! errors name the element.

use std::fmt;
use std::net::SocketAddr;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// `listeners.tls.min_version` and `clusters.tls.min_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum MinVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// Parses `IP:port`, saying what is wrong in operator terms.
pub(super) fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let is_ip = |h: &str| {
        h.trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
    };
    let hint = match s.rsplit_once(':') {
        None => "expected IP:port",
        Some((host, _)) if host.contains(':') && !host.starts_with('[') => {
            "IPv6 addresses need brackets, e.g. [::1]:8443"
        }
        Some((host, port)) if port.parse::<u16>().is_err() && is_ip(host) => {
            "the port must be an integer in 0..=65535"
        }
        Some((host, _)) if is_ip(host) || host.is_empty() => "expected IP:port",
        Some((host, _)) if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
            "invalid IPv4 address"
        }
        Some((host, _)) if host.starts_with('[') => "invalid IPv6 address",
        Some(_) => "host names are not supported yet; use an IP address",
    };
    Err(format!("invalid socket address \"{s}\": {hint}"))
}

pub(super) fn de_socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    parse_socket_addr(&s).map_err(de::Error::custom)
}

/// Element errors inside arrays start with this marker and the element's
/// index (`"[3] message"`): the TOML deserializer positions them at the
/// array, and the loader moves them to the element (`mod.rs`).
pub(super) const ELEMENT_MARKER: char = '[';

/// A list of strings each parsed by `parse`; an error names the element.
pub(super) fn de_each<'de, D: Deserializer<'de>, T>(
    d: D,
    what: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, D::Error> {
    struct V<T> {
        what: &'static str,
        parse: fn(&str) -> Result<T, String>,
    }
    impl<'de, T> Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an array of {}", self.what)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                let v = (self.parse)(&s).map_err(|msg| {
                    de::Error::custom(format!("{ELEMENT_MARKER}{}] \"{s}\": {msg}", out.len()))
                })?;
                out.push(v);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V { what, parse })
}

pub(super) fn de_endpoints<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<SocketAddr>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of \"IP:port\" strings")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(s) = seq.next_element::<String>()? {
                let addr = parse_socket_addr(&s).map_err(|msg| {
                    de::Error::custom(format!("{ELEMENT_MARKER}{}] {msg}", out.len()))
                })?;
                out.push(addr);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V)
}

/// A non-empty RFC 9110 token (header names, cookie names, methods).
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// RFC 9110 §5.6.2 `tchar`.
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
