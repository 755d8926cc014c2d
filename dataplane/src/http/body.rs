//! Sans-IO message body framing: [`BodyDecoder`] tells the proxy how many of
//! the bytes it holds belong to the current body. Body bytes are forwarded
//! verbatim (chunk-size lines, extensions and trailers included), so the
//! decoder only *validates* and *counts*; it never copies or rewrites.
//!
//! Chunked framing (RFC 9112 §7.1) is checked strictly, one state per thing
//! awaited, so input may be split at any byte:
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! chunk-ext-val  = token / quoted-string
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! Lenient chunked parsing is a known request-smuggling vector (a proxy and
//! its upstream disagreeing on where a body ends), so anything outside the
//! grammar is an error: whitespace after the size that is not followed by
//! `;`, bare CR or LF, NUL, a size longer than 16 hex digits, data not
//! followed by CRLF, obs-fold in trailers.

use super::fields::is_tchar;
use super::{BodyKind, HttpError};

/// Longest chunk-size line (size, extensions, CRLF) accepted.
pub const MAX_CHUNK_LINE_BYTES: usize = 4096;
/// Largest trailer section (all field lines and the final CRLF) accepted.
pub const MAX_TRAILER_BYTES: usize = 64 * 1024;
/// 16 hex digits fill a u64; a 17th would overflow.
const MAX_CHUNK_SIZE_DIGITS: u8 = 16;
/// The largest chunk accepted: below 2^31 bytes, as HAProxy. A larger size
/// is refused rather than forwarded to an upstream that may parse it into
/// 32 bits and so read a different body.
pub const MAX_CHUNK_SIZE: u64 = (1 << 31) - 1;

/// Counts and validates the bytes of one message body.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
}

#[derive(Debug, Clone)]
enum State {
    /// Whole body seen.
    Done,
    /// Content-Length: this many bytes still to come.
    Length(u64),
    /// Everything until the peer closes.
    CloseDelimited,
    Chunked(Chunked),
}

#[derive(Debug, Clone)]
struct Chunked {
    awaiting: Awaiting,
    /// Size of the current chunk; while in `Data`, the bytes still to come.
    size: u64,
    digits: u8,
    line_bytes: usize,
    trailer_bytes: usize,
    /// Refuse trailer fields the gateway owns (request bodies).
    guard_trailers: bool,
    /// The trailer field name being read, lowercased, `_` as `-` (only
    /// as long as the longest guarded name; longer names are not guarded).
    name: [u8; GUARDED_NAME_MAX],
    name_len: usize,
}

/// Fields a client may not send in a request's trailer section: framing,
/// routing and what the gateway itself writes upstream. A trailer is merged
/// into the header section by some upstreams, so one of these there would
/// undo what the gateway guarantees about the head (its `x-forwarded-*`,
/// `x-request-id`, the caller identity it vouches for).
const GUARDED_TRAILERS: [&str; 16] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "expect",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-client-cert",
    "x-request-id",
];
const GUARDED_NAME_MAX: usize = 24;

/// Whether a trailer field name (lowercased, `_` read as `-`, as CGI-style
/// upstreams read it) is one the gateway owns.
fn guarded(name: &[u8]) -> bool {
    GUARDED_TRAILERS.iter().any(|g| g.as_bytes() == name) || name.starts_with(b"x-meshgate-")
}

/// What the chunked decoder waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// First hex digit of a chunk-size.
    SizeFirstDigit,
    /// More hex digits, `;`, BWS or CR.
    SizeDigitOrExt,
    /// BWS seen after the size or an extension: more BWS or `;`.
    ExtSemicolon,
    /// After `;`: BWS or the first byte of a chunk-ext-name.
    ExtNameStart,
    /// In a chunk-ext-name: tchar, BWS, `=`, `;` or CR.
    ExtName,
    /// BWS after a name: more BWS, `=` or `;`.
    ExtEquals,
    /// After `=`: BWS, DQUOTE or a tchar.
    ExtValueStart,
    /// In a token value: tchar, BWS, `;` or CR.
    ExtTokenValue,
    /// Inside a quoted-string.
    ExtQuoted,
    /// After a backslash inside a quoted-string.
    ExtQuotedPair,
    /// After the closing DQUOTE: BWS, `;` or CR.
    ExtAfterQuoted,
    /// LF ending the chunk-size line.
    SizeLineLf,
    /// chunk-data (`size` bytes left).
    Data,
    /// CR after chunk-data.
    DataCr,
    /// LF after chunk-data.
    DataLf,
    /// Start of a trailer field line, or CR of the final CRLF.
    TrailerLineStart,
    /// In a trailer field name: tchar or `:`.
    TrailerName,
    /// In a trailer field value: HTAB / SP / VCHAR / obs-text, or CR.
    TrailerValue,
    /// LF ending a trailer field line.
    TrailerLf,
    /// LF of the final CRLF.
    FinalLf,
    Done,
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `field-vchar / SP / HTAB` (RFC 9110 §5.5), obs-text included.
fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// `qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text`.
fn is_qdtext(b: u8) -> bool {
    b != b'"' && b != b'\\' && is_field_value_byte(b)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl Chunked {
    fn new() -> Self {
        Self {
            awaiting: Awaiting::SizeFirstDigit,
            size: 0,
            digits: 0,
            line_bytes: 0,
            trailer_bytes: 0,
            guard_trailers: false,
            name: [0; GUARDED_NAME_MAX],
            name_len: 0,
        }
    }

    /// Records one byte of a trailer field name.
    fn name_byte(&mut self, b: u8) {
        if self.name_len < GUARDED_NAME_MAX {
            self.name[self.name_len] = if b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            };
        }
        self.name_len += 1;
    }

    /// Consumes from `input` until the body ends or input runs out.
    fn advance(&mut self, input: &[u8]) -> Result<usize, HttpError> {
        let mut i = 0;
        while i < input.len() && self.awaiting != Awaiting::Done {
            if self.awaiting == Awaiting::Data {
                let avail = (input.len() - i) as u64;
                let take = self.size.min(avail);
                // `take <= avail`, which came from a usize.
                i += take as usize;
                self.size -= take;
                if self.size == 0 {
                    self.awaiting = Awaiting::DataCr;
                }
                continue;
            }
            self.step(input[i])?;
            i += 1;
        }
        Ok(i)
    }

    /// One byte outside chunk-data.
    fn step(&mut self, b: u8) -> Result<(), HttpError> {
        use Awaiting as A;
        let in_size_line = matches!(
            self.awaiting,
            A::SizeFirstDigit
                | A::SizeDigitOrExt
                | A::ExtSemicolon
                | A::ExtNameStart
                | A::ExtName
                | A::ExtEquals
                | A::ExtValueStart
                | A::ExtTokenValue
                | A::ExtQuoted
                | A::ExtQuotedPair
                | A::ExtAfterQuoted
                | A::SizeLineLf
        );
        if in_size_line {
            self.line_bytes += 1;
            if self.line_bytes > MAX_CHUNK_LINE_BYTES {
                return Err(HttpError::ChunkLineTooLong);
            }
        } else if matches!(
            self.awaiting,
            A::TrailerLineStart | A::TrailerName | A::TrailerValue | A::TrailerLf | A::FinalLf
        ) {
            self.trailer_bytes += 1;
            if self.trailer_bytes > MAX_TRAILER_BYTES {
                return Err(HttpError::TrailersTooLarge);
            }
        }

        const EXT: HttpError = HttpError::InvalidChunkExtension;
        self.awaiting = match (self.awaiting, b) {
            (A::SizeFirstDigit, _) => {
                let d = hex_value(b).ok_or(HttpError::InvalidChunkSize)?;
                self.size = u64::from(d);
                self.digits = 1;
                A::SizeDigitOrExt
            }
            (A::SizeDigitOrExt, b'\r') => A::SizeLineLf,
            (A::SizeDigitOrExt, b';') => A::ExtNameStart,
            (A::SizeDigitOrExt, b) if is_ws(b) => A::ExtSemicolon,
            (A::SizeDigitOrExt, _) => {
                let d = hex_value(b).ok_or(HttpError::InvalidChunkSize)?;
                if self.digits >= MAX_CHUNK_SIZE_DIGITS {
                    return Err(HttpError::ChunkSizeOverflow);
                }
                // At most 15 digits so far: fits in 60 bits, no overflow.
                self.size = (self.size << 4) | u64::from(d);
                self.digits += 1;
                if self.size > MAX_CHUNK_SIZE {
                    return Err(HttpError::ChunkSizeOverflow);
                }
                A::SizeDigitOrExt
            }
            // BWS is only allowed before ";" (not before CRLF).
            (A::ExtSemicolon, b';') => A::ExtNameStart,
            (A::ExtSemicolon, b) if is_ws(b) => A::ExtSemicolon,
            (A::ExtSemicolon, _) => return Err(EXT),
            (A::ExtNameStart, b) if is_ws(b) => A::ExtNameStart,
            (A::ExtNameStart, b) if is_tchar(b) => A::ExtName,
            (A::ExtNameStart, _) => return Err(EXT),
            (A::ExtName, b) if is_tchar(b) => A::ExtName,
            (A::ExtName, b'=') => A::ExtValueStart,
            (A::ExtName, b';') => A::ExtNameStart,
            (A::ExtName, b'\r') => A::SizeLineLf,
            (A::ExtName, b) if is_ws(b) => A::ExtEquals,
            (A::ExtName, _) => return Err(EXT),
            (A::ExtEquals, b) if is_ws(b) => A::ExtEquals,
            (A::ExtEquals, b'=') => A::ExtValueStart,
            (A::ExtEquals, b';') => A::ExtNameStart,
            (A::ExtEquals, _) => return Err(EXT),
            (A::ExtValueStart, b) if is_ws(b) => A::ExtValueStart,
            (A::ExtValueStart, b'"') => A::ExtQuoted,
            (A::ExtValueStart, b) if is_tchar(b) => A::ExtTokenValue,
            (A::ExtValueStart, _) => return Err(EXT),
            (A::ExtTokenValue, b) if is_tchar(b) => A::ExtTokenValue,
            (A::ExtTokenValue, b';') => A::ExtNameStart,
            (A::ExtTokenValue, b'\r') => A::SizeLineLf,
            (A::ExtTokenValue, b) if is_ws(b) => A::ExtSemicolon,
            (A::ExtTokenValue, _) => return Err(EXT),
            (A::ExtQuoted, b'"') => A::ExtAfterQuoted,
            (A::ExtQuoted, b'\\') => A::ExtQuotedPair,
            (A::ExtQuoted, b) if is_qdtext(b) => A::ExtQuoted,
            (A::ExtQuoted, _) => return Err(EXT),
            // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
            (A::ExtQuotedPair, b) if is_field_value_byte(b) => A::ExtQuoted,
            (A::ExtQuotedPair, _) => return Err(EXT),
            (A::ExtAfterQuoted, b';') => A::ExtNameStart,
            (A::ExtAfterQuoted, b'\r') => A::SizeLineLf,
            (A::ExtAfterQuoted, b) if is_ws(b) => A::ExtSemicolon,
            (A::ExtAfterQuoted, _) => return Err(EXT),
            (A::SizeLineLf, b'\n') => {
                self.line_bytes = 0;
                if self.size == 0 {
                    A::TrailerLineStart
                } else {
                    A::Data
                }
            }
            (A::SizeLineLf, _) => return Err(HttpError::InvalidChunkSize),
            (A::DataCr, b'\r') => A::DataLf,
            (A::DataLf, b'\n') => A::SizeFirstDigit,
            (A::DataCr | A::DataLf, _) => return Err(HttpError::MissingChunkDataCrlf),
            (A::TrailerLineStart, b'\r') => A::FinalLf,
            // A leading SP/HTAB would be obs-fold (RFC 9112 §5.2): not a tchar.
            (A::TrailerLineStart, b) if is_tchar(b) => {
                self.name_len = 0;
                self.name_byte(b);
                A::TrailerName
            }
            (A::TrailerName, b) if is_tchar(b) => {
                self.name_byte(b);
                A::TrailerName
            }
            (A::TrailerName, b':') => {
                if self.guard_trailers
                    && self.name_len <= GUARDED_NAME_MAX
                    && guarded(&self.name[..self.name_len])
                {
                    return Err(HttpError::ForbiddenTrailer);
                }
                A::TrailerValue
            }
            (A::TrailerValue, b'\r') => A::TrailerLf,
            (A::TrailerValue, b) if is_field_value_byte(b) => A::TrailerValue,
            (A::TrailerLf, b'\n') => A::TrailerLineStart,
            (A::TrailerLineStart | A::TrailerName | A::TrailerValue | A::TrailerLf, _) => {
                return Err(HttpError::InvalidTrailer);
            }
            (A::FinalLf, b'\n') => A::Done,
            (A::FinalLf, _) => return Err(HttpError::InvalidTrailer),
            // `advance` never steps in these states.
            (A::Data | A::Done, _) => self.awaiting,
        };
        Ok(())
    }
}

impl BodyDecoder {
    /// A decoder for a request body framed as `kind`: like [`new`](Self::new),
    /// and a chunked body's trailer section may not carry a field the
    /// gateway owns ([`HttpError::ForbiddenTrailer`]). Request trailers are
    /// passed on, filtered this way (the rest go through verbatim).
    pub fn for_request(kind: BodyKind) -> Self {
        let mut d = Self::new(kind);
        if let State::Chunked(c) = &mut d.state {
            c.guard_trailers = true;
        }
        d
    }

    /// A decoder for a body framed as `kind`.
    pub fn new(kind: BodyKind) -> Self {
        let state = match kind {
            BodyKind::None | BodyKind::Length(0) => State::Done,
            BodyKind::Length(n) => State::Length(n),
            BodyKind::Chunked => State::Chunked(Chunked::new()),
            BodyKind::CloseDelimited => State::CloseDelimited,
        };
        Self { state }
    }

    /// Scans `input` (the bytes after the head or after the previous call)
    /// and returns how many leading bytes of it belong to this body; the
    /// caller forwards exactly those verbatim, the rest belongs to the next
    /// message. Works with input split at any byte. After an error the
    /// decoder's state is unspecified: close the connection.
    pub fn advance(&mut self, input: &[u8]) -> Result<usize, HttpError> {
        match &mut self.state {
            State::Done => Ok(0),
            State::CloseDelimited => Ok(input.len()),
            State::Length(remaining) => {
                let take = (*remaining).min(input.len() as u64);
                *remaining -= take;
                if *remaining == 0 {
                    self.state = State::Done;
                }
                // `take <= input.len()`.
                Ok(take as usize)
            }
            State::Chunked(c) => {
                let n = c.advance(input)?;
                if c.awaiting == Awaiting::Done {
                    self.state = State::Done;
                }
                Ok(n)
            }
        }
    }

    /// Whether the whole body (for chunked: up to and including the final
    /// CRLF after the trailers) has been seen. Never true for a
    /// close-delimited body.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The peer closed the stream: Ok if the body may end here
    /// (close-delimited, or already done), else [`HttpError::Truncated`].
    pub fn finish_eof(&self) -> Result<(), HttpError> {
        match self.state {
            State::Done | State::CloseDelimited => Ok(()),
            _ => Err(HttpError::Truncated),
        }
    }

    /// Bytes still expected for a Content-Length body (`None` for other
    /// framings): lets the proxy size its next read.
    pub fn remaining_len(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` whole; returns (consumed, done) or the error.
    fn whole(input: &[u8]) -> Result<(usize, bool), HttpError> {
        let mut d = BodyDecoder::new(BodyKind::Chunked);
        let n = d.advance(input)?;
        Ok((n, d.is_done()))
    }

    /// Feeds `input` one byte at a time.
    fn bytewise(input: &[u8]) -> Result<(usize, bool), HttpError> {
        let mut d = BodyDecoder::new(BodyKind::Chunked);
        let mut total = 0;
        for i in 0..input.len() {
            total += d.advance(&input[i..=i])?;
        }
        Ok((total, d.is_done()))
    }

    fn both(input: &[u8]) -> Result<(usize, bool), HttpError> {
        let a = whole(input);
        assert_eq!(a, bytewise(input), "{:?}", String::from_utf8_lossy(input));
        a
    }

    #[test]
    fn length_body() {
        let mut d = BodyDecoder::new(BodyKind::Length(5));
        assert_eq!(d.advance(b"ab"), Ok(2));
        assert!(!d.is_done());
        assert_eq!(d.finish_eof(), Err(HttpError::Truncated));
        assert_eq!(d.remaining_len(), Some(3));
        assert_eq!(d.advance(b"cdeGET /"), Ok(3));
        assert!(d.is_done());
        assert_eq!(d.advance(b"more"), Ok(0));
        assert_eq!(d.finish_eof(), Ok(()));
    }

    #[test]
    fn none_and_zero_length_are_done() {
        for kind in [BodyKind::None, BodyKind::Length(0)] {
            let mut d = BodyDecoder::new(kind);
            assert!(d.is_done());
            assert_eq!(d.advance(b"GET"), Ok(0));
            assert_eq!(d.finish_eof(), Ok(()));
        }
    }

    #[test]
    fn close_delimited_takes_everything() {
        let mut d = BodyDecoder::new(BodyKind::CloseDelimited);
        assert_eq!(d.advance(b"abc"), Ok(3));
        assert!(!d.is_done());
        assert_eq!(d.finish_eof(), Ok(()));
    }

    #[test]
    fn chunked_simple() {
        let body = b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n";
        assert_eq!(both(body), Ok((body.len(), true)));
        let mut next = body.to_vec();
        next.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(both(&next), Ok((body.len(), true)));
    }

    #[test]
    fn chunked_uppercase_hex_leading_zeros_and_multi_zero_last_chunk() {
        let body = b"00A\r\n0123456789\r\n000\r\n\r\n";
        assert_eq!(both(body), Ok((body.len(), true)));
    }

    #[test]
    fn chunked_incomplete_is_not_done() {
        let body = b"4\r\nWiki\r\n0\r\n\r";
        assert_eq!(both(body), Ok((body.len(), false)));
        let mut d = BodyDecoder::new(BodyKind::Chunked);
        d.advance(body).unwrap();
        assert_eq!(d.finish_eof(), Err(HttpError::Truncated));
    }

    #[test]
    fn chunked_extensions_valid() {
        for body in [
            &b"4;a\r\nWiki\r\n0\r\n\r\n"[..],
            b"4;a=b\r\nWiki\r\n0\r\n\r\n",
            b"4 ;a=b\r\nWiki\r\n0\r\n\r\n",
            b"4\t; a = b ;c\r\nWiki\r\n0\r\n\r\n",
            b"4;a=\"q \\\" ;=\"\r\nWiki\r\n0;last\r\n\r\n",
            b"4;a=\"x\" ;b\r\nWiki\r\n0\r\n\r\n",
        ] {
            assert_eq!(
                both(body),
                Ok((body.len(), true)),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn chunked_extensions_invalid() {
        for body in [
            &b"4;\r\nWiki\r\n0\r\n\r\n"[..],
            b"4;=b\r\nWiki\r\n0\r\n\r\n",
            b"4;a=\r\nWiki\r\n0\r\n\r\n",
            b"4;a=b c\r\nWiki\r\n0\r\n\r\n",
            b"4;a\x00\r\nWiki\r\n0\r\n\r\n",
            b"4;a\nWiki\r\n0\r\n\r\n",
            b"4;a=b\rx\nWiki\r\n0\r\n\r\n",
            b"4;a=\"unterminated\r\nWiki\r\n0\r\n\r\n",
            b"4;a=\"x\"y\r\nWiki\r\n0\r\n\r\n",
            b"4;a=\"\x01\"\r\nWiki\r\n0\r\n\r\n",
            b"4 \r\nWiki\r\n0\r\n\r\n",
            b"4;a \r\nWiki\r\n0\r\n\r\n",
        ] {
            let r = both(body);
            assert!(
                matches!(
                    r,
                    Err(HttpError::InvalidChunkExtension | HttpError::InvalidChunkSize)
                ),
                "{:?}: {r:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn chunk_size_invalid() {
        for body in [
            &b"\r\nWiki\r\n0\r\n\r\n"[..],
            b"g\r\n",
            b"-4\r\n",
            b"+4\r\n",
            b"0x4\r\n",
            b" 4\r\n",
            b"4\n",
            b"4\r\r\n",
            b"4\rWiki",
        ] {
            assert_eq!(
                both(body),
                Err(HttpError::InvalidChunkSize),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn chunk_size_overflow() {
        assert_eq!(
            both(b"10000000000000000\r\n"),
            Err(HttpError::ChunkSizeOverflow)
        );
        assert_eq!(
            both(b"00000000000000001\r\n"),
            Err(HttpError::ChunkSizeOverflow)
        );
        // Below 2^31 is accepted (leading zeros or not); 2^31 is not.
        let mut d = BodyDecoder::new(BodyKind::Chunked);
        assert_eq!(d.advance(b"7fffffff\r\nab"), Ok(12));
        assert!(!d.is_done());
        let mut d = BodyDecoder::new(BodyKind::Chunked);
        assert_eq!(d.advance(b"000000007fffffff\r\n"), Ok(18));
        assert_eq!(both(b"80000000\r\n"), Err(HttpError::ChunkSizeOverflow));
        assert_eq!(
            both(b"ffffffffffffffff\r\n"),
            Err(HttpError::ChunkSizeOverflow)
        );
    }

    #[test]
    fn request_trailers_may_not_carry_fields_the_gateway_owns() {
        let body = |trailer: &str| format!("5\r\nhello\r\n0\r\n{trailer}\r\n\r\n");
        for owned in [
            "X-Forwarded-For: 1.2.3.4",
            "x-request-id: mine",
            "x_forwarded_client_cert: By=spiffe://evil",
            "Content-Length: 5",
            "X-Meshgate-Error: no",
        ] {
            let mut d = BodyDecoder::for_request(BodyKind::Chunked);
            assert_eq!(
                d.advance(body(owned).as_bytes()),
                Err(HttpError::ForbiddenTrailer),
                "{owned}"
            );
            // Responses are not guarded.
            let mut d = BodyDecoder::new(BodyKind::Chunked);
            assert!(d.advance(body(owned).as_bytes()).is_ok(), "{owned}");
        }
        for fine in [
            "x-checksum: abc",
            "x-forwarded-for-real-long-name-here: 1",
            "server-timing: x",
        ] {
            let mut d = BodyDecoder::for_request(BodyKind::Chunked);
            let b = body(fine);
            assert_eq!(d.advance(b.as_bytes()), Ok(b.len()), "{fine}");
            assert!(d.is_done());
        }
        // Split at every byte: the same verdict.
        let b = body("x-request-id: mine");
        let mut d = BodyDecoder::for_request(BodyKind::Chunked);
        let refused = b
            .as_bytes()
            .iter()
            .any(|byte| d.advance(std::slice::from_ref(byte)).is_err());
        assert!(refused);
    }

    #[test]
    fn chunk_data_without_crlf() {
        assert_eq!(
            both(b"4\r\nWikiX\r\n0\r\n\r\n"),
            Err(HttpError::MissingChunkDataCrlf)
        );
        assert_eq!(
            both(b"4\r\nWiki\n0\r\n\r\n"),
            Err(HttpError::MissingChunkDataCrlf)
        );
        assert_eq!(both(b"4\r\nWiki\rX"), Err(HttpError::MissingChunkDataCrlf));
    }

    #[test]
    fn chunk_line_too_long() {
        let mut body = b"4;a=".to_vec();
        body.resize(MAX_CHUNK_LINE_BYTES + 10, b'x');
        assert_eq!(both(&body), Err(HttpError::ChunkLineTooLong));
        let mut ok = b"4;a=".to_vec();
        ok.resize(MAX_CHUNK_LINE_BYTES - 2, b'x');
        ok.extend_from_slice(b"\r\nWiki\r\n0\r\n\r\n");
        assert_eq!(both(&ok), Ok((ok.len(), true)));
    }

    #[test]
    fn trailers_valid() {
        let body = b"4\r\nWiki\r\n0\r\nX-Sum: abc\r\nX-Empty:\r\nX-Tab:\ta b\xff\r\n\r\n";
        assert_eq!(both(body), Ok((body.len(), true)));
    }

    #[test]
    fn trailers_invalid() {
        for body in [
            &b"0\r\nX-Sum : abc\r\n\r\n"[..],
            b"0\r\n X-Sum: abc\r\n\r\n",
            b"0\r\nX-Sum: abc\r\n folded\r\n\r\n",
            b"0\r\nX-Sum: a\x00c\r\n\r\n",
            b"0\r\nX-Sum: abc\n\r\n",
            b"0\r\nX-Sum: a\rc\r\n\r\n",
            b"0\r\nNoColon\r\n\r\n",
            b"0\r\n:novalue\r\n\r\n",
            b"0\r\n\rX",
            b"0\r\n\n",
        ] {
            assert_eq!(
                both(body),
                Err(HttpError::InvalidTrailer),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn trailers_too_large() {
        let mut body = b"0\r\nX-Big: ".to_vec();
        body.resize(MAX_TRAILER_BYTES + 16, b'a');
        assert_eq!(both(&body), Err(HttpError::TrailersTooLarge));
    }
}
