//! Field-value rules the framing depends on: Content-Length, Transfer-Encoding,
//! Connection, Host, Expect. One pass over the parsed header lines
//! ([`scan`]) collects what the head parsers need, without allocating.
//!
//! Everything here works on values httparse has already checked for control
//! bytes (no CR, LF, NUL; only HTAB, SP, VCHAR, obs-text) and trimmed of
//! surrounding whitespace.

use super::HttpError;

/// Connection options remembered per head (names of extra hop-by-hop
/// fields). Real clients send one or two; more is rejected so that stripping
/// them while forwarding stays O(headers × this).
pub const MAX_CONNECTION_OPTIONS: usize = 16;

/// `tchar` (RFC 9110 §5.6.2).
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `token = 1*tchar`.
pub(crate) fn is_token(v: &[u8]) -> bool {
    !v.is_empty() && v.iter().all(|&b| is_tchar(b))
}

/// Strips optional whitespace (SP / HTAB, RFC 9110 §5.6.3) from both ends.
pub(crate) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The members of a `#element` list (RFC 9110 §5.6.1), OWS trimmed, empty
/// members included (callers decide whether to ignore them).
pub(crate) fn list_members(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim_ows)
}

/// The largest Content-Length accepted: below 2^53, where a parser using
/// doubles (JavaScript, some JSON stacks) starts to lose integers. Larger
/// values are refused, never forwarded to an upstream that may read them
/// differently.
pub const MAX_CONTENT_LENGTH: u64 = (1 << 53) - 1;

/// Parses one Content-Length field value.
///
/// RFC 9110 §8.6: `Content-Length = 1*DIGIT`. RFC 9112 §6.3 point 5: a value
/// that is a list of identical valid values (`5, 5`) may be accepted as that
/// one value; anything else is unrecoverable framing error. Signs, hex,
/// inner spaces, empty members and u64 overflow are all rejected.
pub(crate) fn parse_content_length(v: &[u8]) -> Result<u64, HttpError> {
    let mut value = None;
    for member in list_members(v) {
        let n = parse_digits(member)
            .filter(|n| *n <= MAX_CONTENT_LENGTH)
            .ok_or(HttpError::InvalidContentLength)?;
        match value {
            None => value = Some(n),
            Some(prev) if prev == n => {}
            Some(_) => return Err(HttpError::ConflictingContentLength),
        }
    }
    value.ok_or(HttpError::InvalidContentLength)
}

/// `1*DIGIT` as u64, `None` on any other byte or overflow.
fn parse_digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Accumulates Transfer-Encoding field lines in order (several lines form
/// one list, RFC 9110 §5.3).
#[derive(Debug, Default)]
pub(crate) struct TransferEncoding {
    pub present: bool,
    chunked_seen: bool,
    last_is_chunked: bool,
    unknown: bool,
    members: usize,
    /// First 400-class error, reported before any 501.
    malformed: Option<HttpError>,
}

impl TransferEncoding {
    fn add(&mut self, v: &[u8]) {
        self.present = true;
        for member in list_members(v) {
            if member.is_empty() {
                continue; // RFC 9110 §5.6.1: ignore empty list elements
            }
            self.members += 1;
            let (name, params) = match member.iter().position(|&b| b == b';') {
                Some(i) => (trim_ows(&member[..i]), true),
                None => (member, false),
            };
            if !is_token(name) {
                self.malformed
                    .get_or_insert(HttpError::InvalidTransferEncoding);
            } else if name.eq_ignore_ascii_case(b"chunked") {
                if params {
                    // chunked has no parameters (RFC 9112 §7).
                    self.malformed
                        .get_or_insert(HttpError::InvalidTransferEncoding);
                } else if self.chunked_seen {
                    self.malformed.get_or_insert(HttpError::ChunkedAppliedTwice);
                }
                self.chunked_seen = true;
                self.last_is_chunked = true;
            } else {
                self.unknown = true;
                self.last_is_chunked = false;
            }
        }
    }

    /// Ok when the codings are exactly `chunked` (the only framing we
    /// forward verbatim).
    ///
    /// RFC 9112 §6.3 point 4: "If a Transfer-Encoding header field is
    /// present in a request and the chunked transfer coding is not the final
    /// encoding, the message body length cannot be determined reliably; the
    /// server MUST respond with the 400 (Bad Request) status code and then
    /// close the connection." RFC 9112 §6.1: "A server that receives a
    /// request message with a transfer coding it does not understand SHOULD
    /// respond with 501 (Not Implemented)." So `chunked, gzip` is 400 and
    /// `gzip` / `gzip, chunked` are 501 (we strip Transfer-Encoding as
    /// hop-by-hop and could not re-label such a body).
    pub fn finish(&self) -> Result<(), HttpError> {
        if let Some(e) = self.malformed {
            return Err(e);
        }
        if self.members == 0 {
            return Err(HttpError::InvalidTransferEncoding);
        }
        if self.chunked_seen && !self.last_is_chunked {
            return Err(HttpError::ChunkedNotFinal);
        }
        if self.unknown {
            return Err(HttpError::UnsupportedTransferCoding);
        }
        Ok(())
    }
}

/// The Connection options of a head, stored inline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ConnectionOptions<'b> {
    opts: [&'b [u8]; MAX_CONNECTION_OPTIONS],
    len: usize,
    pub close: bool,
    pub keep_alive: bool,
}

impl<'b> ConnectionOptions<'b> {
    fn add(&mut self, v: &'b [u8]) -> Result<(), HttpError> {
        for opt in list_members(v) {
            if opt.is_empty() {
                continue;
            }
            if opt.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if opt.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            }
            let slot = self
                .opts
                .get_mut(self.len)
                .ok_or(HttpError::TooManyConnectionOptions)?;
            *slot = opt;
            self.len += 1;
        }
        Ok(())
    }

    /// Whether Connection names the field `name` (case-insensitive).
    pub fn names(&self, name: &str) -> bool {
        self.opts[..self.len]
            .iter()
            .any(|o| o.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): reg-name,
/// IPv4 or IP-literal characters only. No userinfo (`@`), no path, no
/// whitespace, ASCII only. Empty is allowed (RFC 9112 §3.2: a client sends
/// an empty Host when the target has no authority).
pub(crate) fn is_valid_host(v: &[u8]) -> bool {
    v.iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:[]".contains(&b))
}

/// What one pass over the header lines found.
#[derive(Debug, Default)]
pub(crate) struct Scan<'b> {
    pub content_length: Option<u64>,
    pub transfer_encoding: TransferEncoding,
    pub connection: ConnectionOptions<'b>,
    pub host: Option<&'b [u8]>,
    pub host_count: usize,
    pub expect_continue: bool,
}

/// Walks the header lines once, classifying the fields framing depends on.
/// Content-Length errors are reported here; Transfer-Encoding errors are
/// deferred to [`TransferEncoding::finish`] so the caller can first apply
/// the "both CL and TE" rule.
pub(crate) fn scan<'b>(headers: &[httparse::Header<'b>]) -> Result<Scan<'b>, HttpError> {
    let mut s = Scan::default();
    for h in headers {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(h.value)?;
            match s.content_length {
                Some(prev) if prev != n => return Err(HttpError::ConflictingContentLength),
                _ => s.content_length = Some(n),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            s.transfer_encoding.add(h.value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            s.connection.add(h.value)?;
        } else if name.eq_ignore_ascii_case(b"host") {
            s.host_count += 1;
            s.host.get_or_insert(h.value);
        } else if name.eq_ignore_ascii_case(b"expect")
            && trim_ows(h.value).eq_ignore_ascii_case(b"100-continue")
        {
            s.expect_continue = true;
        }
    }
    Ok(s)
}

/// Persistence per RFC 9112 §9.3: "close" ends it; otherwise HTTP/1.1 is
/// persistent and HTTP/1.0 only with "keep-alive".
pub(crate) fn keep_alive(minor_version: u8, conn: &ConnectionOptions<'_>) -> bool {
    if conn.close {
        false
    } else if minor_version >= 1 {
        true
    } else {
        conn.keep_alive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_values() {
        assert_eq!(parse_content_length(b"0"), Ok(0));
        assert_eq!(parse_content_length(b"005"), Ok(5));
        assert_eq!(parse_content_length(b"5, 5"), Ok(5));
        assert_eq!(parse_content_length(b"5,5 ,\t5"), Ok(5));
        assert_eq!(
            parse_content_length(b"9007199254740991"),
            Ok(MAX_CONTENT_LENGTH)
        );
        assert_eq!(
            parse_content_length(b"9007199254740992"),
            Err(HttpError::InvalidContentLength),
            "2^53 is refused"
        );
        assert_eq!(
            parse_content_length(b"18446744073709551615"),
            Err(HttpError::InvalidContentLength)
        );
        for bad in [
            &b""[..],
            b"+5",
            b"-5",
            b"0x5",
            b"5 5",
            b"5,",
            b",5",
            b"5;",
            b"5.0",
            b"18446744073709551616",
            b"99999999999999999999999",
        ] {
            assert_eq!(
                parse_content_length(bad),
                Err(HttpError::InvalidContentLength),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse_content_length(b"5, 6"),
            Err(HttpError::ConflictingContentLength)
        );
    }

    fn te(values: &[&[u8]]) -> Result<(), HttpError> {
        let mut t = TransferEncoding::default();
        for v in values {
            t.add(v);
        }
        t.finish()
    }

    #[test]
    fn transfer_encoding_values() {
        assert_eq!(te(&[b"chunked"]), Ok(()));
        assert_eq!(te(&[b"Chunked"]), Ok(()));
        assert_eq!(te(&[b"CHUNKED"]), Ok(()));
        assert_eq!(te(&[b", chunked ,"]), Ok(()));
        assert_eq!(te(&[b"gzip"]), Err(HttpError::UnsupportedTransferCoding));
        assert_eq!(
            te(&[b"identity"]),
            Err(HttpError::UnsupportedTransferCoding)
        );
        assert_eq!(
            te(&[b"xchunked"]),
            Err(HttpError::UnsupportedTransferCoding)
        );
        assert_eq!(
            te(&[b"gzip, chunked"]),
            Err(HttpError::UnsupportedTransferCoding)
        );
        assert_eq!(
            te(&[b"gzip", b"chunked"]),
            Err(HttpError::UnsupportedTransferCoding)
        );
        assert_eq!(te(&[b"chunked, gzip"]), Err(HttpError::ChunkedNotFinal));
        assert_eq!(te(&[b"chunked", b"gzip"]), Err(HttpError::ChunkedNotFinal));
        assert_eq!(
            te(&[b"chunked, chunked"]),
            Err(HttpError::ChunkedAppliedTwice)
        );
        assert_eq!(
            te(&[b"chunked", b"chunked"]),
            Err(HttpError::ChunkedAppliedTwice)
        );
        assert_eq!(te(&[b""]), Err(HttpError::InvalidTransferEncoding));
        assert_eq!(te(&[b" , "]), Err(HttpError::InvalidTransferEncoding));
        assert_eq!(
            te(&[b"chunked;x=1"]),
            Err(HttpError::InvalidTransferEncoding)
        );
        assert_eq!(
            te(&[b"\"chunked\""]),
            Err(HttpError::InvalidTransferEncoding)
        );
        assert_eq!(te(&[b"chun ked"]), Err(HttpError::InvalidTransferEncoding));
        assert_eq!(
            te(&[b"chunked\x0b"]),
            Err(HttpError::InvalidTransferEncoding)
        );
        assert_eq!(
            te(&[b"gzip;q=1"]),
            Err(HttpError::UnsupportedTransferCoding)
        );
    }

    #[test]
    fn connection_options_and_keep_alive() {
        let mut c = ConnectionOptions::default();
        c.add(b"Keep-Alive, X-Foo,,").unwrap();
        assert!(c.keep_alive && !c.close);
        assert!(c.names("x-foo") && c.names("keep-alive") && !c.names("x-bar"));
        assert!(keep_alive(0, &c));
        assert!(keep_alive(1, &c));
        c.add(b"close").unwrap();
        assert!(!keep_alive(1, &c) && !keep_alive(0, &c));
        assert!(!keep_alive(0, &ConnectionOptions::default()));
        assert!(keep_alive(1, &ConnectionOptions::default()));
        let mut many = ConnectionOptions::default();
        let long = b"a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q";
        assert_eq!(many.add(long), Err(HttpError::TooManyConnectionOptions));
    }

    #[test]
    fn host_values() {
        for ok in [
            &b""[..],
            b"example.com",
            b"example.com:8443",
            b"[::1]:80",
            b"10.0.0.1",
        ] {
            assert!(is_valid_host(ok));
        }
        for bad in [
            &b"a b"[..],
            b"user@host",
            b"host/path",
            b"h\xc3\xa9",
            b"a\tb",
        ] {
            assert!(!is_valid_host(bad));
        }
    }
}
