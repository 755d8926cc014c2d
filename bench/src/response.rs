//! Reading one HTTP/1.1 response, sans-IO: received bytes in, "need more" or
//! "complete (status, keep-alive)" out. Used by the load generator's
//! connections over plain TCP and TLS alike.
//!
//! Only the head is buffered (and parsed with the data plane's hardened
//! [`parse_response`]); body bytes are counted through a [`BodyDecoder`] and
//! dropped, so a 1 MiB response costs no copy. Interim 1xx responses are
//! skipped. Never panics on any input.

use dataplane::http::{
    BodyDecoder, BodyKind, HeadScanner, HttpError, Limits, Parse, parse_response,
};

/// Result of feeding bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// The response is not complete yet; all input was consumed.
    NeedMore,
    /// The response is complete after `consumed` bytes of this input.
    Complete(Done),
}

/// A complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// Status code.
    pub status: u16,
    /// The server keeps the connection open.
    pub keep_alive: bool,
    /// Bytes of the last input that belonged to this response.
    pub consumed: usize,
}

/// What the reader awaits.
#[derive(Debug)]
enum State {
    ExpectHead,
    StreamingBody {
        status: u16,
        keep_alive: bool,
        decoder: BodyDecoder,
    },
}

/// Reads one response at a time; [`ResponseReader::reset`] before the next.
#[derive(Debug)]
pub struct ResponseReader {
    head: Vec<u8>,
    scanner: HeadScanner,
    limits: Limits,
    state: State,
    method_is_head: bool,
}

impl ResponseReader {
    /// A reader for responses to requests with `method`.
    pub fn new(method: &str) -> Self {
        ResponseReader {
            head: Vec::with_capacity(1024),
            scanner: HeadScanner::default(),
            limits: Limits::default(),
            state: State::ExpectHead,
            method_is_head: method.eq_ignore_ascii_case("HEAD"),
        }
    }

    /// Forgets the previous response.
    pub fn reset(&mut self) {
        self.head.clear();
        self.scanner = HeadScanner::default();
        self.state = State::ExpectHead;
    }

    /// Feeds received bytes.
    pub fn feed(&mut self, input: &[u8]) -> Result<Feed, HttpError> {
        let mut used = 0;
        loop {
            match &mut self.state {
                State::ExpectHead => {
                    let before = self.head.len();
                    self.head.extend_from_slice(&input[used..]);
                    if !self.scanner.should_parse(&self.head, &self.limits) {
                        return Ok(Feed::NeedMore);
                    }
                    let method = if self.method_is_head { "HEAD" } else { "GET" };
                    let (status, keep_alive, body, head_len) =
                        match parse_response(&self.head, method, &self.limits)? {
                            Parse::Partial => return Ok(Feed::NeedMore),
                            Parse::Complete(h) => (h.status, h.keep_alive, h.body, h.head_len),
                        };
                    // Bytes of `input` after the head.
                    used += head_len - before;
                    self.head.clear();
                    self.scanner = HeadScanner::default();
                    if (100..200).contains(&status) {
                        if status == 101 {
                            return Err(HttpError::InvalidStatusCode);
                        }
                        continue; // interim response: the real one follows
                    }
                    self.state = State::StreamingBody {
                        status,
                        keep_alive,
                        decoder: BodyDecoder::new(body),
                    };
                    if body == BodyKind::None {
                        continue;
                    }
                }
                State::StreamingBody {
                    status,
                    keep_alive,
                    decoder,
                } => {
                    used += decoder.advance(&input[used..])?;
                    if decoder.is_done() {
                        return Ok(Feed::Complete(Done {
                            status: *status,
                            keep_alive: *keep_alive,
                            consumed: used,
                        }));
                    }
                    return Ok(Feed::NeedMore);
                }
            }
        }
    }

    /// The server closed the connection: a close-delimited body ends here.
    pub fn feed_eof(&mut self) -> Result<Done, HttpError> {
        match &self.state {
            State::StreamingBody {
                status, decoder, ..
            } => {
                decoder.finish_eof()?;
                Ok(Done {
                    status: *status,
                    keep_alive: false,
                    consumed: 0,
                })
            }
            State::ExpectHead => Err(HttpError::Truncated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(r: &mut ResponseReader, input: &[u8], step: usize) -> Option<Done> {
        let mut i = 0;
        while i < input.len() {
            let end = (i + step).min(input.len());
            if let Feed::Complete(d) = r.feed(&input[i..end]).unwrap() {
                return Some(Done {
                    consumed: i + d.consumed,
                    ..d
                });
            }
            i = end;
        }
        None
    }

    #[test]
    fn content_length_any_split() {
        let msg = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-upstream: a\r\n\r\nhello";
        for step in 1..=msg.len() {
            let mut r = ResponseReader::new("GET");
            let d = feed_all(&mut r, msg, step).expect("complete");
            assert_eq!((d.status, d.keep_alive, d.consumed), (200, true, msg.len()));
        }
    }

    #[test]
    fn chunked_and_trailing_bytes() {
        let msg =
            b"HTTP/1.1 503 Busy\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nEXTRA";
        let mut r = ResponseReader::new("GET");
        let Feed::Complete(d) = r.feed(msg).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(d.status, 503);
        assert_eq!(d.consumed, msg.len() - 5);
    }

    #[test]
    fn no_body_statuses_and_head() {
        let mut r = ResponseReader::new("GET");
        let msg = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert!(matches!(r.feed(msg).unwrap(), Feed::Complete(d) if d.status == 204));
        let mut r = ResponseReader::new("HEAD");
        let msg = b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n";
        assert!(matches!(r.feed(msg).unwrap(), Feed::Complete(d) if d.consumed == msg.len()));
    }

    #[test]
    fn interim_responses_are_skipped() {
        let msg = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n";
        for step in [1, 7, msg.len()] {
            let mut r = ResponseReader::new("POST");
            let d = feed_all(&mut r, msg, step).expect("complete");
            assert_eq!((d.status, d.consumed), (201, msg.len()));
        }
    }

    #[test]
    fn close_delimited_and_truncation() {
        let mut r = ResponseReader::new("GET");
        assert_eq!(
            r.feed(b"HTTP/1.0 200 OK\r\n\r\nbody").unwrap(),
            Feed::NeedMore
        );
        let d = r.feed_eof().unwrap();
        assert_eq!((d.status, d.keep_alive), (200, false));

        let mut r = ResponseReader::new("GET");
        r.feed(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
            .unwrap();
        assert!(r.feed_eof().is_err());
        r.reset();
        assert!(
            r.feed_eof().is_err(),
            "EOF before any byte is not a response"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"HTTP/1.1 999 What\r\n\r\n"[..],
            b"\x00\x01\x02\r\n\r\n",
            b"SSH-2.0-x\r\n\r\n",
        ] {
            let mut r = ResponseReader::new("GET");
            assert!(r.feed(bad).is_err(), "{bad:?}");
        }
        let mut r = ResponseReader::new("GET");
        assert!(r.feed(b"HTTP/1.1 101 Switching\r\n\r\n").is_err());
    }
}
