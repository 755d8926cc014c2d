//! Sans-IO de-chunking: the payload and the trailer fields of an HTTP/1.1
//! chunked body (RFC 9112 §7.1), for a downstream protocol that frames
//! bodies itself (HTTP/2 DATA frames and a trailing HEADERS frame).
//!
//! [`super::BodyDecoder`] validates and counts bytes that go on verbatim;
//! this one takes the framing off. The bytes it reads have usually passed
//! a `BodyDecoder` already (the HTTP/1 side of the gateway checked them),
//! but it relies on nothing: it checks what it uses, bounds what it keeps
//! (a size line, the trailer section) and never panics on any input.
//! Input may be split at any byte.

use super::body::{MAX_CHUNK_LINE_BYTES, MAX_CHUNK_SIZE, MAX_TRAILER_BYTES};

/// Why a chunked body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DechunkError {
    #[error("invalid chunk-size line")]
    SizeLine,
    #[error("chunk data not followed by CRLF")]
    DataEnd,
    #[error("trailer section too large or malformed")]
    Trailers,
}

/// What [`Dechunker::step`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// Payload bytes (borrowed from the input).
    Data(&'a [u8]),
    /// The input is used up; more is needed.
    NeedMore,
    /// The body ended (its trailers are in [`Dechunker::trailers`]).
    End,
}

/// What the decoder waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    SizeLine,
    /// This many payload bytes.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// A trailer field line, or the empty line that ends the body.
    TrailerLine,
    Done,
}

/// Takes the chunked framing off a body.
#[derive(Debug)]
pub struct Dechunker {
    awaiting: Awaiting,
    /// The line being read (size line, CRLF, trailer line).
    line: Vec<u8>,
    /// Trailer field lines seen, each with its CRLF.
    trailers: Vec<u8>,
}

impl Default for Dechunker {
    fn default() -> Self {
        Dechunker {
            awaiting: Awaiting::SizeLine,
            line: Vec::new(),
            trailers: Vec::new(),
        }
    }
}

impl Dechunker {
    /// Reads from the front of `input`: returns how many bytes were used
    /// and what they held. Call again with the rest until [`Step::NeedMore`]
    /// (all used) or [`Step::End`] (what follows is not this body's).
    pub fn step<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Step<'a>), DechunkError> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match self.awaiting {
                Awaiting::Done => return Ok((at, Step::End)),
                Awaiting::Data(n) => {
                    if rest.is_empty() {
                        return Ok((at, Step::NeedMore));
                    }
                    let take = n.min(rest.len() as u64) as usize;
                    self.awaiting = match n - take as u64 {
                        0 => Awaiting::DataEnd,
                        left => Awaiting::Data(left),
                    };
                    return Ok((at + take, Step::Data(&rest[..take])));
                }
                Awaiting::DataEnd => {
                    // Exactly CRLF, possibly split.
                    let have = self.line.len();
                    let take = rest.len().min(2 - have);
                    if rest[..take] != b"\r\n"[have..have + take] {
                        return Err(DechunkError::DataEnd);
                    }
                    self.line.extend_from_slice(&rest[..take]);
                    at += take;
                    if self.line.len() < 2 {
                        return Ok((at, Step::NeedMore));
                    }
                    self.line.clear();
                    self.awaiting = Awaiting::SizeLine;
                }
                Awaiting::SizeLine | Awaiting::TrailerLine => {
                    let limit = match self.awaiting {
                        Awaiting::TrailerLine => MAX_TRAILER_BYTES,
                        _ => MAX_CHUNK_LINE_BYTES,
                    };
                    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                        if self.line.len() + rest.len() > limit {
                            return Err(self.error());
                        }
                        self.line.extend_from_slice(rest);
                        return Ok((input.len(), Step::NeedMore));
                    };
                    if self.line.len() + nl + 1 > limit {
                        return Err(self.error());
                    }
                    self.line.extend_from_slice(&rest[..=nl]);
                    at += nl + 1;
                    self.line_done()?;
                    self.line.clear();
                }
            }
        }
    }

    /// The trailer fields, once [`Step::End`] was seen: names as sent,
    /// values trimmed of whitespace.
    pub fn trailers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.trailers
            .split(|&b| b == b'\n')
            .filter_map(|line| {
                let line = line.strip_suffix(b"\r")?;
                let colon = line.iter().position(|&b| b == b':')?;
                Some((&line[..colon], trim(&line[colon + 1..])))
            })
            .filter(|(name, _)| !name.is_empty())
    }

    fn error(&self) -> DechunkError {
        match self.awaiting {
            Awaiting::TrailerLine => DechunkError::Trailers,
            Awaiting::DataEnd => DechunkError::DataEnd,
            _ => DechunkError::SizeLine,
        }
    }

    /// A whole line (with its LF) is in `self.line`.
    fn line_done(&mut self) -> Result<(), DechunkError> {
        let Some(line) = self.line.strip_suffix(b"\r\n") else {
            return Err(self.error());
        };
        match self.awaiting {
            Awaiting::SizeLine => {
                let size = chunk_size(line).ok_or(DechunkError::SizeLine)?;
                self.awaiting = if size == 0 {
                    Awaiting::TrailerLine
                } else {
                    Awaiting::Data(size)
                };
            }
            Awaiting::TrailerLine if line.is_empty() => self.awaiting = Awaiting::Done,
            Awaiting::TrailerLine => {
                if self.trailers.len() + self.line.len() > MAX_TRAILER_BYTES
                    || !line.contains(&b':')
                {
                    return Err(DechunkError::Trailers);
                }
                self.trailers.extend_from_slice(&self.line);
            }
            Awaiting::Data(_) | Awaiting::DataEnd | Awaiting::Done => {}
        }
        Ok(())
    }
}

/// The size of a chunk-size line (without its CRLF): hex digits, then
/// optional whitespace and extensions after `;`, which are ignored.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let rest = trim(&line[digits..]);
    if !rest.is_empty() && rest[0] != b';' {
        return None;
    }
    let text = std::str::from_utf8(&line[..digits]).ok()?;
    u64::from_str_radix(text, 16)
        .ok()
        .filter(|&n| n <= MAX_CHUNK_SIZE)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload, whether the body ended, and the trailers.
    type Decoded = (Vec<u8>, bool, Vec<(String, String)>);

    /// Runs the decoder over `parts` fed one after another.
    fn run(parts: &[&[u8]]) -> Result<Decoded, DechunkError> {
        let mut d = Dechunker::default();
        let mut data = Vec::new();
        let mut ended = false;
        for part in parts {
            let mut input = *part;
            loop {
                let (used, step) = d.step(input)?;
                input = &input[used..];
                match step {
                    Step::Data(bytes) => data.extend_from_slice(bytes),
                    Step::NeedMore => break,
                    Step::End => {
                        ended = true;
                        break;
                    }
                }
            }
        }
        let trailers = d
            .trailers()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        Ok((data, ended, trailers))
    }

    const BODY: &[u8] =
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\ngrpc-status: 0\r\nx-a:  b \r\n\r\n";

    #[test]
    fn payload_and_trailers_come_out_whole() {
        let (data, ended, trailers) = run(&[BODY]).unwrap();
        assert_eq!(data, b"hello world");
        assert!(ended);
        assert_eq!(
            trailers,
            [
                ("grpc-status".to_owned(), "0".to_owned()),
                ("x-a".to_owned(), "b".to_owned())
            ]
        );
    }

    #[test]
    fn any_split_gives_the_same_result() {
        let whole = run(&[BODY]).unwrap();
        for cut in 0..=BODY.len() {
            assert_eq!(
                run(&[&BODY[..cut], &BODY[cut..]]).unwrap(),
                whole,
                "cut {cut}"
            );
        }
        let bytes: Vec<&[u8]> = BODY.chunks(1).collect();
        assert_eq!(run(&bytes).unwrap(), whole);
    }

    #[test]
    fn what_follows_the_body_is_left_unused() {
        let mut d = Dechunker::default();
        let input = b"0\r\n\r\nNEXT";
        let (used, step) = d.step(input).unwrap();
        assert_eq!((used, step), (5, Step::End));
    }

    #[test]
    fn broken_framing_is_an_error() {
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloXX",
            b"5 x\r\nhello\r\n",
            b"11111111111111111\r\n",
            b"80000000\r\n",
            b"0\r\nno colon\r\n",
            b"5\nhello\r\n",
        ] {
            assert!(run(&[bad]).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn lines_and_trailers_are_bounded() {
        let long = vec![b'0'; MAX_CHUNK_LINE_BYTES + 1];
        assert_eq!(run(&[&long]), Err(DechunkError::SizeLine));
        let mut body = b"0\r\n".to_vec();
        for _ in 0..(MAX_TRAILER_BYTES / 10 + 1) {
            body.extend_from_slice(b"x-a: 123\r\n");
        }
        assert_eq!(run(&[&body]), Err(DechunkError::Trailers));
    }

    proptest::proptest! {
        /// Any bytes, split anywhere: an answer, never a panic; and a body
        /// built from arbitrary payload pieces decodes back to them.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), cut in 0usize..512) {
            let cut = cut.min(bytes.len());
            let _ = run(&[&bytes[..cut], &bytes[cut..]]);
        }

        #[test]
        fn round_trips(pieces in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 1..64), 0..8), cut in 0usize..1024) {
            let mut body = Vec::new();
            let mut payload = Vec::new();
            for p in &pieces {
                body.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
                body.extend_from_slice(p);
                body.extend_from_slice(b"\r\n");
                payload.extend_from_slice(p);
            }
            body.extend_from_slice(b"0\r\n\r\n");
            let cut = cut.min(body.len());
            let (data, ended, trailers) = run(&[&body[..cut], &body[cut..]]).unwrap();
            proptest::prop_assert_eq!(data, payload);
            proptest::prop_assert!(ended);
            proptest::prop_assert!(trailers.is_empty());
        }
    }
}
