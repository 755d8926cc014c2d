//! Request and response heads: [`parse_request`], [`parse_response`] and the
//! borrowed views they return.
//!
//! httparse does the line and field syntax; this module adds what it leaves
//! to the caller: the size limit, strict CRLF line endings, request-target
//! forms, Host rules and message framing (RFC 9112 §6). Parsing borrows from
//! the input, stores the header lines inline and never allocates.

use super::fields::{self, ConnectionOptions, Scan};
use super::{BodyKind, HttpError, Limits, MAX_HEADERS, Parse};

/// Header lines of a head, inline (no heap).
#[derive(Clone)]
pub(crate) struct Fields<'b> {
    lines: [httparse::Header<'b>; MAX_HEADERS],
    len: usize,
    /// The agreed Content-Length value, if any line carried one.
    pub content_length: Option<u64>,
    pub connection: ConnectionOptions<'b>,
}

impl<'b> Fields<'b> {
    pub fn lines(&self) -> &[httparse::Header<'b>] {
        &self.lines[..self.len]
    }

    fn iter(&self) -> impl Iterator<Item = (&'b str, &'b [u8])> + '_ {
        self.lines().iter().map(|h| (h.name, h.value))
    }

    fn get(&self, name: &str) -> Option<&'b [u8]> {
        self.lines()
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

impl PartialEq for Fields<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.lines() == other.lines()
            && self.content_length == other.content_length
            && self.connection == other.connection
    }
}

impl std::fmt::Debug for Fields<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.lines()).finish()
    }
}

/// A parsed request head borrowing from the receive buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestHead<'b> {
    /// Method token, case-sensitive as sent.
    pub method: &'b str,
    /// request-target as sent.
    pub target: &'b str,
    /// Path of the target without query: origin-form up to `?`; absolute-form
    /// its path (`/` when empty); `*` for asterisk-form; empty for the
    /// authority-form of CONNECT.
    pub path: &'b str,
    /// 0 or 1.
    pub minor_version: u8,
    /// Bytes of the head including the final CRLFCRLF (and any empty lines
    /// before the request line, which RFC 9112 §2.2 says to ignore).
    pub head_len: usize,
    /// Body framing; `Length(0)` is normalised to `None`.
    pub body: BodyKind,
    /// RFC 9112 §9.3: 1.1 persistent unless "close"; 1.0 only with
    /// "keep-alive".
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (RFC 9110 §10.1.1: a
    /// server MUST ignore it in HTTP/1.0).
    pub expect_continue: bool,
    /// Host header value as sent, or the authority of an absolute-form or
    /// authority-form target (which RFC 9112 §3.2.2 says wins).
    pub host: Option<&'b str>,
    pub(crate) fields: Fields<'b>,
}

impl<'b> RequestHead<'b> {
    /// Header lines in order, names as sent, values trimmed of OWS.
    pub fn headers(&self) -> impl Iterator<Item = (&'b str, &'b [u8])> {
        self.fields.iter()
    }

    /// First value of `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.fields.get(name)
    }

    /// The Content-Length the request carried (normalised), if any.
    pub fn content_length(&self) -> Option<u64> {
        self.fields.content_length
    }
}

/// A parsed response head borrowing from the receive buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseHead<'b> {
    /// 100..=599.
    pub status: u16,
    /// reason-phrase as sent (empty if absent or not ASCII).
    pub reason: &'b str,
    /// 0 or 1.
    pub minor_version: u8,
    /// Bytes of the head including the final CRLFCRLF.
    pub head_len: usize,
    /// Body framing (RFC 9112 §6.3).
    pub body: BodyKind,
    /// RFC 9112 §9.3 rules, and false when the body is close-delimited.
    pub keep_alive: bool,
    pub(crate) fields: Fields<'b>,
}

impl<'b> ResponseHead<'b> {
    /// Header lines in order, names as sent, values trimmed of OWS.
    pub fn headers(&self) -> impl Iterator<Item = (&'b str, &'b [u8])> {
        self.fields.iter()
    }

    /// First value of `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.fields.get(name)
    }

    /// The Content-Length the response carried (normalised), if any.
    pub fn content_length(&self) -> Option<u64> {
        self.fields.content_length
    }
}

/// Every line must end in exactly CRLF (RFC 9112 §2.2).
///
/// httparse accepts a bare LF as a line terminator anywhere (request line,
/// status line, field lines, final empty line). RFC 9112 §2.2 only *allows*
/// a recipient to do that, and an intermediary that does while the next hop
/// does not is a smuggling vector, so we reject. httparse already rejects a
/// bare CR; this pass checks it again for free.
fn check_line_endings(head: &[u8]) -> Result<(), HttpError> {
    let mut prev = 0u8;
    for (i, &b) in head.iter().enumerate() {
        let bad = match b {
            b'\n' => prev != b'\r',
            b'\r' => head.get(i + 1) != Some(&b'\n'),
            _ => false,
        };
        if bad {
            return Err(HttpError::InvalidLineEnding);
        }
        prev = b;
    }
    Ok(())
}

/// Limits httparse to `max_head_bytes` so work and the answer do not depend
/// on how the bytes were split: a head that has not ended within the limit
/// is 431 whether it arrives at once or piecemeal.
fn limited<'b>(buf: &'b [u8], limits: &Limits) -> &'b [u8] {
    &buf[..buf.len().min(limits.max_head_bytes)]
}

fn partial_or_too_large<T>(buf: &[u8], limits: &Limits) -> Result<Parse<T>, HttpError> {
    if buf.len() > limits.max_head_bytes {
        Err(HttpError::HeadTooLarge)
    } else {
        Ok(Parse::Partial)
    }
}

/// Parses a request head from the start of `buf`.
///
/// `Partial` means more bytes are needed (and `buf` is still within
/// `limits.max_head_bytes`). Never panics, never allocates.
pub fn parse_request<'b>(
    buf: &'b [u8],
    limits: &Limits,
) -> Result<Parse<RequestHead<'b>>, HttpError> {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (head_len, method, target, version, len) = {
        let mut req = httparse::Request::new(&mut lines);
        match req.parse(limited(buf, limits)) {
            Err(e) => return Err(HttpError::from_httparse(e)),
            Ok(httparse::Status::Partial) => return partial_or_too_large(buf, limits),
            Ok(httparse::Status::Complete(n)) => (
                n,
                req.method.unwrap_or_default(),
                req.path.unwrap_or_default(),
                req.version.unwrap_or_default(),
                req.headers.len(),
            ),
        }
    };
    check_line_endings(&buf[..head_len])?;
    let scan = fields::scan(&lines[..len])?;
    let target_form = classify_target(method, target)?;
    let body = request_body(version, &scan)?;

    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
    // code to any HTTP/1.1 request message that lacks a Host header field and
    // to any request message that contains more than one Host header field
    // line or a Host header field with an invalid field value."
    if scan.host_count > 1 {
        return Err(HttpError::MultipleHost);
    }
    let host_field = match scan.host {
        Some(v) if fields::is_valid_host(v) => std::str::from_utf8(v).ok(),
        Some(_) => return Err(HttpError::InvalidHost),
        None if version >= 1 => return Err(HttpError::MissingHost),
        None => None,
    };
    let (path, host) = match target_form {
        Target::Origin(path) => (path, host_field),
        Target::Absolute { authority, path } => (path, Some(authority)),
        Target::Authority(authority) => ("", Some(authority)),
        Target::Asterisk => ("*", host_field),
    };

    Ok(Parse::Complete(RequestHead {
        method,
        target,
        path,
        minor_version: version,
        head_len,
        body,
        keep_alive: fields::keep_alive(version, &scan.connection),
        expect_continue: scan.expect_continue && version >= 1,
        host,
        fields: Fields {
            lines,
            len,
            content_length: scan.content_length,
            connection: scan.connection,
        },
    }))
}

/// Request body framing, RFC 9112 §6.1 and §6.3.
fn request_body(version: u8, scan: &Scan<'_>) -> Result<BodyKind, HttpError> {
    match message_body(version, scan)? {
        Some(kind) => Ok(kind),
        // RFC 9112 §6.3 point 6: "If this is a request message and none of
        // the above are true, then the message body length is zero".
        None => Ok(BodyKind::None),
    }
}

/// Framing shared by requests and responses; `None` when neither
/// Transfer-Encoding nor Content-Length is present.
fn message_body(version: u8, scan: &Scan<'_>) -> Result<Option<BodyKind>, HttpError> {
    let te = &scan.transfer_encoding;
    if te.present {
        // RFC 9112 §6.1: "A server MAY reject a request that contains both
        // Content-Length and Transfer-Encoding or process such a request in
        // accordance with the Transfer-Encoding alone. Regardless, the server
        // MUST close the connection after responding to such a request to
        // avoid the potential attacks." RFC 9112 §6.3 point 3: "Such a
        // message might indicate an attempt to perform request smuggling
        // (Section 11.2) or response splitting (Section 11.1) and ought to be
        // handled as an error." We reject.
        if scan.content_length.is_some() {
            return Err(HttpError::ContentLengthWithTransferEncoding);
        }
        // RFC 9112 §6.1: "A server or client that receives an HTTP/1.0
        // message containing a Transfer-Encoding header field MUST treat the
        // message as if the framing is faulty, even if a Content-Length is
        // present, and close the connection after processing the message."
        if version == 0 {
            return Err(HttpError::TransferEncodingInHttp10);
        }
        te.finish()?;
        return Ok(Some(BodyKind::Chunked));
    }
    // RFC 9112 §6.3 point 5: "If a message is received without
    // Transfer-Encoding and with an invalid Content-Length header field, then
    // the message framing is invalid and the recipient MUST treat it as an
    // unrecoverable error" (checked in `fields::scan`).
    Ok(scan.content_length.map(|n| match n {
        0 => BodyKind::None,
        n => BodyKind::Length(n),
    }))
}

/// The four request-target forms of RFC 9112 §3.2.
enum Target<'b> {
    Origin(&'b str),
    Absolute { authority: &'b str, path: &'b str },
    Authority(&'b str),
    Asterisk,
}

/// Classifies the request-target and checks it fits the method.
///
/// httparse only guarantees the target is non-empty, has no SP/CTL/DEL and
/// is UTF-8; we additionally require ASCII and no fragment (`#` is not part
/// of any request-target form).
fn classify_target<'b>(method: &str, target: &'b str) -> Result<Target<'b>, HttpError> {
    if !target.is_ascii() || target.contains('#') {
        return Err(HttpError::InvalidTarget);
    }
    let is_connect = method == "CONNECT";
    // RFC 9112 §3.2.3: authority-form is only used for CONNECT, and CONNECT
    // only uses it.
    if is_connect {
        let ok =
            !target.is_empty() && !target.contains('@') && fields::is_valid_host(target.as_bytes());
        return if ok {
            Ok(Target::Authority(target))
        } else {
            Err(HttpError::InvalidTarget)
        };
    }
    if target.starts_with('/') {
        let path = target.split('?').next().unwrap_or(target);
        return Ok(Target::Origin(path));
    }
    // RFC 9112 §3.2.4: asterisk-form is only used for a server-wide OPTIONS.
    if target == "*" {
        return if method == "OPTIONS" {
            Ok(Target::Asterisk)
        } else {
            Err(HttpError::InvalidTarget)
        };
    }
    // RFC 9112 §3.2.2: absolute-form, http or https only (we are not a
    // forward proxy for other schemes).
    let rest = strip_prefix_ignore_case(target, "http://")
        .or_else(|| strip_prefix_ignore_case(target, "https://"))
        .ok_or(HttpError::InvalidTarget)?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // RFC 9110 §4.2.4: userinfo is not allowed in http(s) URIs.
    if authority.is_empty() || !fields::is_valid_host(authority.as_bytes()) {
        return Err(HttpError::InvalidTarget);
    }
    let path = tail.split('?').next().unwrap_or("");
    let path = if path.is_empty() { "/" } else { path };
    Ok(Target::Absolute { authority, path })
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// Parses a response head from the start of `buf`. `request_method` is the
/// method of the request it answers (it decides HEAD and CONNECT rules).
///
/// Body per RFC 9112 §6.3: responses to HEAD, 1xx, 204 and 304 have none,
/// and neither does a 2xx to CONNECT (the connection becomes a tunnel);
/// otherwise chunked or Content-Length; with neither the body runs until the
/// server closes (`CloseDelimited`). Never panics, never allocates.
pub fn parse_response<'b>(
    buf: &'b [u8],
    request_method: &str,
    limits: &Limits,
) -> Result<Parse<ResponseHead<'b>>, HttpError> {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (head_len, status, reason, version, len) = {
        let mut res = httparse::Response::new(&mut lines);
        match res.parse(limited(buf, limits)) {
            Err(e) => return Err(HttpError::from_httparse(e)),
            Ok(httparse::Status::Partial) => return partial_or_too_large(buf, limits),
            Ok(httparse::Status::Complete(n)) => (
                n,
                res.code.unwrap_or_default(),
                res.reason.unwrap_or_default(),
                res.version.unwrap_or_default(),
                res.headers.len(),
            ),
        }
    };
    check_line_endings(&buf[..head_len])?;
    // RFC 9110 §15: "All valid status codes are within the range of 100 to
    // 599, inclusive."
    if !(100..=599).contains(&status) {
        return Err(HttpError::InvalidStatusCode);
    }
    let scan = fields::scan(&lines[..len])?;
    let framed = message_body(version, &scan)?;
    // RFC 9112 §6.3 points 1 and 2.
    let no_body = request_method == "HEAD"
        || (100..200).contains(&status)
        || status == 204
        || status == 304
        || (request_method == "CONNECT" && (200..300).contains(&status));
    let body = if no_body {
        BodyKind::None
    } else {
        // RFC 9112 §6.3 point 8: "Otherwise, this is a response message
        // without a declared message body length, so the message body length
        // is determined by the number of octets received prior to the server
        // closing the connection."
        framed.unwrap_or(BodyKind::CloseDelimited)
    };
    let keep_alive =
        fields::keep_alive(version, &scan.connection) && body != BodyKind::CloseDelimited;
    Ok(Parse::Complete(ResponseHead {
        status,
        reason,
        minor_version: version,
        head_len,
        body,
        keep_alive,
        fields: Fields {
            lines,
            len,
            content_length: scan.content_length,
            connection: scan.connection,
        },
    }))
}
