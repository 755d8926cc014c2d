//! HTTP/1.1 codec, sans-IO: bytes in, parsed heads and byte counts out.
//!
//! This module owns the HTTP/1.1 wire format at the gateway:
//!
//! * parsing request and response heads in place ([`parse_request`],
//!   [`parse_response`]) over [`httparse`], with the rules httparse leaves to
//!   its caller: size limit, strict CRLF, request-target forms, Host, and
//!   message framing (RFC 9112 §6) hardened against request smuggling;
//! * body framing ([`BodyDecoder`]): how many bytes belong to the current
//!   body, validated incrementally; body bytes are forwarded verbatim;
//! * de-chunking ([`Dechunker`]): a chunked body's payload and trailers,
//!   for a downstream that frames bodies itself (HTTP/2);
//! * HTTP/2 ↔ HTTP/1.1 translation ([`translate`]): the HTTP/1.1 head an
//!   HTTP/2 request is served as, and the HTTP/2 form of a response;
//! * writing heads: the rewritten upstream request, the downstream response
//!   and the gateway's own small responses ([`write_upstream_request`],
//!   [`write_downstream_response`], [`write_local_response`]).
//!
//! It never touches a socket or a clock, never allocates while parsing
//! (header lines are stored inline in the head, borrowing from the receive
//! buffer), and never panics on any input: every rejection is an
//! [`HttpError`] that knows its status code.
//!
//! References: RFC 9110 (HTTP semantics), RFC 9112 (HTTP/1.1 message
//! syntax: §2.2 line endings, §3.2 request-target and Host, §6 framing,
//! §7.1 chunked, §9.3 persistence).

pub mod body;
mod dechunk;
mod edits;
mod error;
mod fields;
mod head;
pub mod path;
mod scan;
pub mod translate;
mod write;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod write_tests;

pub use body::{BodyDecoder, MAX_CHUNK_LINE_BYTES, MAX_TRAILER_BYTES};
pub use dechunk::{DechunkError, Dechunker, Step};
pub use edits::HeaderEdits;
pub use error::HttpError;
pub use fields::MAX_CONNECTION_OPTIONS;
pub use head::{RequestHead, ResponseHead, parse_request, parse_response};
pub use path::{PathError, PathRules};
pub use scan::HeadScanner;
pub use write::{
    CONTINUE_RESPONSE, ForwardInfo, OriginForm, RequestEdits, TraceFields, origin_form,
    reason_phrase, write_downstream_response, write_downstream_response_edited,
    write_downstream_response_for, write_local_response, write_upstream_request,
    write_upstream_request_edited,
};

/// Most header field lines accepted in one head; more is
/// [`HttpError::TooManyHeaders`] (431).
pub const MAX_HEADERS: usize = 128;

/// Size limits for heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A head that has not ended within this many bytes is
    /// [`HttpError::HeadTooLarge`] (431).
    pub max_head_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 64 * 1024,
        }
    }
}

/// Result of parsing a head from the bytes received so far.
#[derive(Debug, Clone, PartialEq)]
pub enum Parse<T> {
    /// The head is complete.
    Complete(T),
    /// More bytes are needed (the buffer is still within the head limit).
    Partial,
}

/// How the body of a message is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body.
    None,
    /// Exactly this many bytes (never 0: that is `None`).
    Length(u64),
    /// Transfer-Encoding: chunked.
    Chunked,
    /// Everything until the peer closes (responses only).
    CloseDelimited,
}
