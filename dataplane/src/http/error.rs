//! [`HttpError`]: every reason the HTTP/1.1 codec rejects bytes, and the
//! status code that goes on the wire for it.
//!
//! One variant per rejection reason, no strings: the proxy matches on the
//! variant for counters and access logs and asks [`HttpError::status`] what to
//! answer. The codec does not know which side sent the bytes; the proxy does:
//! a request-side error is answered with [`HttpError::status`], an error in an
//! upstream response head or body with [`HttpError::response_status`] (502).

use super::MAX_HEADERS;

/// Why the codec rejected a message head or body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    // ── size limits (431) ────────────────────────────────────────────────
    /// The head did not end within `Limits::max_head_bytes`.
    #[error("message head exceeds the size limit")]
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] header field lines.
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,

    // ── head syntax (400) ────────────────────────────────────────────────
    /// Bad method token or request-target (httparse `Token`), or bytes
    /// outside the request-target grammar.
    #[error("malformed request line")]
    InvalidRequestLine,
    /// Version is not exactly `HTTP/1.0` or `HTTP/1.1`.
    #[error("unsupported or malformed HTTP version")]
    InvalidVersion,
    /// Malformed status line (httparse `Status`).
    #[error("malformed status line")]
    InvalidStatusLine,
    /// Status code outside 100..=599 (RFC 9110 §15).
    #[error("status code outside 100..=599")]
    InvalidStatusCode,
    /// A 101 Switching Protocols response: the gateway strips `Upgrade`, so
    /// an upstream that switches protocols broke the exchange.
    #[error("unexpected 101 Switching Protocols")]
    UnexpectedUpgrade,
    /// A chunked response to a request that went upstream as HTTP/1.0 (an
    /// HTTP/1.0 client cannot read chunked framing, RFC 9112 §6.1).
    #[error("chunked response to an HTTP/1.0 request")]
    ChunkedToHttp10,
    /// A byte that is not a `tchar` in a field name, including whitespace
    /// before the colon and obs-fold continuation lines (RFC 9112 §5.1, §5.2).
    #[error("invalid byte in header field name")]
    InvalidHeaderName,
    /// A control byte (NUL, bare CR, ...) in a field value (RFC 9110 §5.5).
    #[error("invalid byte in header field value")]
    InvalidHeaderValue,
    /// A line not terminated by exactly CRLF: bare LF or bare CR
    /// (RFC 9112 §2.2).
    #[error("line not terminated by CRLF")]
    InvalidLineEnding,
    /// request-target in none of the four forms of RFC 9112 §3.2, or in a
    /// form the method does not allow.
    #[error("invalid request-target")]
    InvalidTarget,
    /// HTTP/1.1 request without Host (RFC 9112 §3.2).
    #[error("HTTP/1.1 request without Host")]
    MissingHost,
    /// More than one Host field line (RFC 9112 §3.2).
    #[error("more than one Host header")]
    MultipleHost,
    /// Host value is not `uri-host [":" port]` (RFC 9110 §7.2).
    #[error("invalid Host header value")]
    InvalidHost,
    /// More Connection options than the codec tracks.
    #[error("too many Connection options")]
    TooManyConnectionOptions,

    // ── framing / smuggling (400, 501) ───────────────────────────────────
    /// Both Transfer-Encoding and Content-Length (RFC 9112 §6.1, §6.3).
    #[error("both Transfer-Encoding and Content-Length")]
    ContentLengthWithTransferEncoding,
    /// Content-Length not `1*DIGIT`, empty, or 2^53 or more
    /// (`fields::MAX_CONTENT_LENGTH`; RFC 9110 §8.6).
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// Content-Length field lines or list members that disagree
    /// (RFC 9112 §6.3 point 5).
    #[error("conflicting Content-Length values")]
    ConflictingContentLength,
    /// Transfer-Encoding in an HTTP/1.0 message (RFC 9112 §6.1).
    #[error("Transfer-Encoding in an HTTP/1.0 message")]
    TransferEncodingInHttp10,
    /// Transfer-Encoding value is not a list of transfer-codings.
    #[error("malformed Transfer-Encoding")]
    InvalidTransferEncoding,
    /// chunked present but not the final coding (RFC 9112 §6.3 point 4).
    #[error("chunked is not the final transfer coding")]
    ChunkedNotFinal,
    /// chunked applied more than once (RFC 9112 §7).
    #[error("chunked transfer coding applied more than once")]
    ChunkedAppliedTwice,
    /// A transfer coding other than chunked (RFC 9112 §6.1: 501).
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,

    // ── chunked body (400) ───────────────────────────────────────────────
    /// chunk-size missing or not hex (RFC 9112 §7.1).
    #[error("invalid chunk size")]
    InvalidChunkSize,
    /// chunk-size of 2^31 or more (`body::MAX_CHUNK_SIZE`), or longer than
    /// 16 hex digits.
    #[error("chunk size too large")]
    ChunkSizeOverflow,
    /// chunk-ext not `*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`.
    #[error("invalid chunk extension")]
    InvalidChunkExtension,
    /// chunk-size line (with extensions) longer than the per-line limit.
    #[error("chunk size line too long")]
    ChunkLineTooLong,
    /// chunk-data not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    MissingChunkDataCrlf,
    /// Malformed trailer field line.
    #[error("invalid trailer field")]
    InvalidTrailer,
    /// A request trailer field the gateway owns (`x-forwarded-for`,
    /// `x-request-id`, framing fields…), `_` read as `-`.
    #[error("trailer field the gateway owns")]
    ForbiddenTrailer,
    /// A path the listener's normalisation refuses (see
    /// [`crate::http::path`]).
    #[error("invalid request path: {0}")]
    InvalidPath(crate::http::PathError),
    /// A header name with `_` on a listener with
    /// `headers_with_underscores = "reject"`.
    #[error("header name with an underscore")]
    UnderscoreInHeaderName,
    /// Trailer section larger than the limit.
    #[error("trailer section too large")]
    TrailersTooLarge,
    /// The peer closed the stream before the body ended.
    #[error("body truncated by end of stream")]
    Truncated,
}

impl HttpError {
    /// The status to answer a downstream client whose *request* caused this
    /// error: 431 for size limits, 501 for an unknown transfer coding, 400
    /// for everything else (malformed or smuggling attempt).
    pub fn status(&self) -> u16 {
        match self {
            Self::HeadTooLarge | Self::TooManyHeaders => 431,
            Self::UnsupportedTransferCoding => 501,
            _ => 400,
        }
    }

    /// The status to answer downstream when an *upstream response* (head or
    /// body) caused this error: always 502 Bad Gateway.
    pub fn response_status(&self) -> u16 {
        502
    }

    /// Whether this is a size-limit rejection (431 on the request side).
    pub fn is_too_large(&self) -> bool {
        matches!(self, Self::HeadTooLarge | Self::TooManyHeaders)
    }

    /// Maps an httparse error to ours.
    pub(crate) fn from_httparse(e: httparse::Error) -> Self {
        match e {
            httparse::Error::HeaderName => Self::InvalidHeaderName,
            httparse::Error::HeaderValue => Self::InvalidHeaderValue,
            httparse::Error::NewLine => Self::InvalidLineEnding,
            httparse::Error::Status => Self::InvalidStatusLine,
            httparse::Error::Token => Self::InvalidRequestLine,
            httparse::Error::TooManyHeaders => Self::TooManyHeaders,
            httparse::Error::Version => Self::InvalidVersion,
        }
    }
}
