//! Request framing for the control socket: splits a byte stream into
//! lines no longer than a maximum, checking the length *before* buffering
//! more, so a connection never holds more than `max + 1` bytes of request.
//! Sans-IO and panic-free on any input; the protocol on top is in
//! [`protocol`](super::protocol).

use std::fmt;

/// A line longer than the decoder's maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// The maximum that was exceeded.
    pub max: usize,
}

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request line longer than {} bytes", self.max)
    }
}

/// Splits a byte stream into lines of at most `max` bytes (not counting
/// the `\n`), holding at most `max + 1` bytes.
///
/// Feed it with [`push`](Self::push), which takes bytes only up to the end
/// of the next line (or until the buffer would exceed `max + 1`) and says
/// how many it took; then drain [`next_line`](Self::next_line) and push
/// the rest:
///
/// ```
/// # use control::socket::framing::LineDecoder;
/// let mut dec = LineDecoder::new(64);
/// let mut input: &[u8] = b"{\"command\":\"status\"}\n{\"comm";
/// let mut lines = Vec::new();
/// while !input.is_empty() {
///     let used = dec.push(input);
///     input = &input[used..];
///     while let Some(line) = dec.next_line() {
///         lines.push(line.unwrap());
///     }
/// }
/// assert_eq!(lines, vec![b"{\"command\":\"status\"}".to_vec()]);
/// ```
///
/// An oversize line is reported once as `Err(TooLarge)`; the decoder then
/// discards bytes up to the next `\n` and carries on (a server may instead
/// close the connection).
#[derive(Debug)]
pub struct LineDecoder {
    max: usize,
    buf: Vec<u8>,
    state: DecoderState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecoderState {
    /// Collecting a line into `buf`.
    ExpectLineEnd,
    /// `buf` holds a complete line (its `\n` dropped), not yet taken.
    LineReady,
    /// The current line passed `max`; the error is not yet taken.
    TooLargeReady,
    /// The error was taken; dropping bytes until the next `\n`.
    Discarding,
}

impl LineDecoder {
    /// A decoder for lines of at most `max` bytes.
    pub fn new(max: usize) -> LineDecoder {
        LineDecoder {
            max,
            buf: Vec::new(),
            state: DecoderState::ExpectLineEnd,
        }
    }

    /// The maximum line length.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes currently held (at most `max + 1`).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes bytes from `bytes`, up to and including the end of the next
    /// line, and returns how many it took. Takes nothing (returns 0) while
    /// a line or an error waits in [`next_line`](Self::next_line).
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        match self.state {
            DecoderState::LineReady | DecoderState::TooLargeReady => 0,
            DecoderState::Discarding => match memchr(bytes) {
                Some(i) => {
                    self.state = DecoderState::ExpectLineEnd;
                    i + 1
                }
                None => bytes.len(),
            },
            DecoderState::ExpectLineEnd => {
                // Room for `max` bytes of line plus its `\n`.
                let room = (self.max + 1).saturating_sub(self.buf.len());
                let window = &bytes[..bytes.len().min(room)];
                match memchr(window) {
                    Some(i) => {
                        self.buf.extend_from_slice(&window[..i]);
                        self.state = DecoderState::LineReady;
                        i + 1
                    }
                    None => {
                        self.buf.extend_from_slice(window);
                        if self.buf.len() > self.max {
                            self.buf = Vec::new();
                            self.state = DecoderState::TooLargeReady;
                        }
                        window.len()
                    }
                }
            }
        }
    }

    /// The next complete line (without `\n` and a `\r` before it), an
    /// oversize-line error, or `None` when more bytes are needed.
    pub fn next_line(&mut self) -> Option<Result<Vec<u8>, TooLarge>> {
        match self.state {
            DecoderState::LineReady => {
                self.state = DecoderState::ExpectLineEnd;
                let mut line = std::mem::take(&mut self.buf);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Some(Ok(line))
            }
            DecoderState::TooLargeReady => {
                self.state = DecoderState::Discarding;
                Some(Err(TooLarge { max: self.max }))
            }
            DecoderState::ExpectLineEnd | DecoderState::Discarding => None,
        }
    }

    /// At end of input: the unterminated last line, if any (call after
    /// [`next_line`](Self::next_line) returned `None`).
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if self.state == DecoderState::ExpectLineEnd && !self.buf.is_empty() {
            let mut line = std::mem::take(&mut self.buf);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            Some(line)
        } else {
            None
        }
    }
}

fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes `chunks` one after the other and collects what comes out.
    fn run(dec: &mut LineDecoder, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, TooLarge>> {
        let mut out = Vec::new();
        for chunk in chunks {
            let mut rest = *chunk;
            loop {
                let used = dec.push(rest);
                rest = &rest[used..];
                assert!(dec.buffered() <= dec.max() + 1);
                let mut progressed = used > 0;
                while let Some(line) = dec.next_line() {
                    out.push(line);
                    progressed = true;
                }
                if rest.is_empty() || !progressed {
                    break;
                }
            }
            assert!(rest.is_empty(), "decoder stalled");
        }
        out
    }

    fn lines(v: &[&str]) -> Vec<Result<Vec<u8>, TooLarge>> {
        v.iter().map(|s| Ok(s.as_bytes().to_vec())).collect()
    }

    #[test]
    fn multiple_lines_in_one_push() {
        let mut dec = LineDecoder::new(64);
        let out = run(&mut dec, &[b"a\nbb\r\n\nccc\n"]);
        assert_eq!(out, lines(&["a", "bb", "", "ccc"]));
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn line_split_across_pushes() {
        let mut dec = LineDecoder::new(64);
        let out = run(&mut dec, &[b"{\"comm", b"and\":", b"\"status\"}", b"\n{"]);
        assert_eq!(out, lines(&["{\"command\":\"status\"}"]));
        assert_eq!(dec.finish(), Some(b"{".to_vec()));
        assert_eq!(dec.finish(), None);
    }

    #[test]
    fn byte_by_byte() {
        let mut dec = LineDecoder::new(8);
        let input = b"12345678\nab\n";
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&mut dec, &chunks), lines(&["12345678", "ab"]));
    }

    #[test]
    fn line_of_exactly_max_is_accepted() {
        let mut dec = LineDecoder::new(4);
        assert_eq!(run(&mut dec, &[b"abcd\n"]), lines(&["abcd"]));
    }

    #[test]
    fn oversize_line_never_buffers_beyond_max_plus_one() {
        let mut dec = LineDecoder::new(4);
        // A 1 MiB push without a newline: the decoder takes max+1 bytes,
        // reports the error, then discards.
        let big = vec![b'x'; 1 << 20];
        let used = dec.push(&big);
        assert_eq!(used, 5);
        assert_eq!(dec.next_line(), Some(Err(TooLarge { max: 4 })));
        assert_eq!(dec.next_line(), None);
        assert_eq!(dec.buffered(), 0);
        assert_eq!(dec.push(&big[used..]), big.len() - used);
        assert_eq!(dec.buffered(), 0);
        // It resynchronises on the next newline.
        assert_eq!(run(&mut dec, &[b"xxx\nok\n"]), lines(&["ok"]));
    }

    #[test]
    fn oversize_split_across_pushes() {
        let mut dec = LineDecoder::new(4);
        let out = run(&mut dec, &[b"abc", b"de", b"f\nok\n"]);
        assert_eq!(out, vec![Err(TooLarge { max: 4 }), Ok(b"ok".to_vec())]);
    }

    #[test]
    fn push_takes_nothing_while_a_line_waits() {
        let mut dec = LineDecoder::new(64);
        assert_eq!(dec.push(b"a\nb\n"), 2);
        assert_eq!(dec.push(b"b\n"), 0);
        assert_eq!(dec.next_line(), Some(Ok(b"a".to_vec())));
        assert_eq!(dec.push(b"b\n"), 2);
        assert_eq!(dec.next_line(), Some(Ok(b"b".to_vec())));
    }
}
