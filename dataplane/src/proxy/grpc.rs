//! gRPC facts of a request and its answer (sans-IO): whether a request is
//! gRPC ([`is_grpc`]), the deadline it carries ([`timeout`]), and the
//! status an answer carries ([`status`]). gRPC over HTTP/2 is spelled out
//! in grpc/grpc `doc/PROTOCOL-HTTP2.md`.

use std::time::Duration;

use crate::route::authz::Headers;

/// Whether a request is gRPC: `content-type: application/grpc`, alone or
/// with a `+format` or `;parameters` suffix.
pub fn is_grpc(headers: &dyn Headers) -> bool {
    headers.header("content-type").is_some_and(|v| {
        let v = v.strip_prefix(b"application/grpc").unwrap_or(b"x");
        v.is_empty() || v[0] == b'+' || v[0] == b';'
    })
}

/// The caller's deadline from `grpc-timeout`: 1 to 8 digits and a unit
/// (`H` hours, `M` minutes, `S` seconds, `m` milliseconds, `u`
/// microseconds, `n` nanoseconds). `None` when absent or malformed (the
/// route's timeout then applies alone).
pub fn timeout(headers: &dyn Headers) -> Option<Duration> {
    let value = headers.header("grpc-timeout")?;
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A `grpc-status` value: a decimal code (0 OK … 16 UNAUTHENTICATED; other
/// numbers are kept, gRPC treats them as UNKNOWN).
pub fn status(value: &[u8]) -> Option<u32> {
    if value.is_empty() || value.len() > 3 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

/// The canonical name of a status code, as the metrics label it.
pub fn status_name(code: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(code as usize).copied().unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> ::http::HeaderMap {
        let mut h = ::http::HeaderMap::new();
        for (n, v) in pairs {
            h.insert(*n, ::http::HeaderValue::from_static(v));
        }
        h
    }

    struct NoHeaders;
    impl Headers for NoHeaders {
        fn header(&self, _: &str) -> Option<&[u8]> {
            None
        }
    }

    #[test]
    fn grpc_is_told_by_its_content_type() {
        let with = |v: &'static str| is_grpc(&headers(&[("content-type", v)]));
        assert!(with("application/grpc"));
        assert!(with("application/grpc+proto"));
        assert!(with("application/grpc;charset=utf-8"));
        assert!(!with("application/grpc-web"));
        assert!(!with("application/json"));
        assert!(!is_grpc(&NoHeaders));
    }

    #[test]
    fn grpc_timeouts_in_every_unit_and_malformed_ones_ignored() {
        let t = |v: &'static str| timeout(&headers(&[("grpc-timeout", v)]));
        assert_eq!(t("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(t("3M"), Some(Duration::from_secs(180)));
        assert_eq!(t("10S"), Some(Duration::from_secs(10)));
        assert_eq!(t("250m"), Some(Duration::from_millis(250)));
        assert_eq!(t("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(t("1n"), Some(Duration::from_nanos(1)));
        for bad in ["", "S", "123456789S", "10s", "1.5S", "-1S", "10 S", "10"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
        assert_eq!(timeout(&NoHeaders), None);
    }

    #[test]
    fn statuses_parse_and_name() {
        assert_eq!(status(b"0"), Some(0));
        assert_eq!(status(b"14"), Some(14));
        assert_eq!(status(b""), None);
        assert_eq!(status(b"1x"), None);
        assert_eq!(status(b"1000"), None);
        assert_eq!(status_name(14), "UNAVAILABLE");
        assert_eq!(status_name(99), "UNKNOWN");
    }

    proptest::proptest! {
        /// Any bytes: no panic, and a value is only ever the one written.
        #[test]
        fn timeout_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..16)) {
            struct One(Vec<u8>);
            impl Headers for One {
                fn header(&self, _: &str) -> Option<&[u8]> {
                    Some(&self.0)
                }
            }
            let _ = timeout(&One(bytes.clone()));
            let _ = status(&bytes);
        }
    }
}
