//! The client side of HTTP/2 (RFC 9113) for the load generator, sans-IO:
//! bytes in ([`H2Client::feed`]), bytes out (appended to a caller's
//! buffer), events about streams. Header blocks are HPACK (RFC 7541) via
//! the `hpack` crate.
//!
//! What it does: the connection preface and SETTINGS (push off, our stream
//! window at the maximum so responses need no per-stream WINDOW_UPDATE);
//! requests as HEADERS (+ DATA within the peer's flow-control windows,
//! the rest when it opens them); responses read to their `:status`, body
//! bytes and END_STREAM (1xx heads skipped, trailers accepted); the
//! connection window kept open; PING answered; RST_STREAM and GOAWAY
//! turned into per-stream failures. Anything malformed is a connection
//! error ([`H2Error`]): a load generator reports it, it does not repair it.

use std::collections::HashMap;

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
/// Largest window (RFC 9113 §6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;
/// The window every connection starts with.
const INITIAL_WINDOW: u32 = 65_535;
/// Largest frame payload we accept (our SETTINGS_MAX_FRAME_SIZE).
const OUR_MAX_FRAME: usize = 1 << 20;
/// RST_STREAM error code: the stream was not processed.
const REFUSED_STREAM: u32 = 0x7;

mod frame {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// A connection error: the peer broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HTTP/2 protocol error: {0}")]
pub struct H2Error(pub &'static str);

/// What happened to a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete response: final status and body bytes.
    Response { stream: u32, status: u16, body: u64 },
    /// The server reset the stream (RST_STREAM).
    Reset { stream: u32 },
    /// The server did not process the stream (GOAWAY above it, or
    /// REFUSED_STREAM): safe to send again on another connection.
    Refused { stream: u32 },
}

/// A request stream waiting for its response.
#[derive(Debug, Default)]
struct Stream {
    status: Option<u16>,
    body: u64,
    /// Request body bytes not sent yet (flow control).
    pending: Vec<u8>,
    send_window: i64,
}

/// A header block being assembled over HEADERS and CONTINUATION frames.
#[derive(Debug)]
struct Block {
    stream: u32,
    end_stream: bool,
    bytes: Vec<u8>,
}

/// One client connection's HTTP/2 state.
pub struct H2Client {
    decoder: hpack::Decoder<'static>,
    streams: HashMap<u32, Stream>,
    next_stream: u32,
    /// Unparsed input (a partial frame).
    input: Vec<u8>,
    block: Option<Block>,
    /// The peer's settings.
    max_frame: usize,
    peer_initial_window: i64,
    max_streams: usize,
    /// Our send window on the connection.
    conn_send_window: i64,
    /// Bytes received on the connection since we last opened the window.
    conn_unacked: u32,
    /// GOAWAY received: no new streams.
    going_away: bool,
}

impl std::fmt::Debug for H2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Client")
            .field("streams", &self.streams.len())
            .field("next_stream", &self.next_stream)
            .field("going_away", &self.going_away)
            .finish_non_exhaustive()
    }
}

fn put_frame_header(out: &mut Vec<u8>, len: usize, typ: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(typ);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}

fn window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    put_frame_header(out, 4, frame::WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&increment.to_be_bytes());
}

impl H2Client {
    /// A new connection; writes the preface and our SETTINGS to `out`.
    pub fn new(out: &mut Vec<u8>) -> H2Client {
        out.extend_from_slice(PREFACE);
        let settings: [(u16, u32); 3] = [
            (0x2, 0),                    // ENABLE_PUSH off
            (0x4, MAX_WINDOW),           // INITIAL_WINDOW_SIZE
            (0x5, OUR_MAX_FRAME as u32), // MAX_FRAME_SIZE
        ];
        put_frame_header(out, settings.len() * 6, frame::SETTINGS, 0, 0);
        for (id, value) in settings {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&value.to_be_bytes());
        }
        window_update(out, 0, MAX_WINDOW - INITIAL_WINDOW);
        H2Client {
            decoder: hpack::Decoder::new(),
            streams: HashMap::new(),
            next_stream: 1,
            input: Vec::new(),
            block: None,
            max_frame: 16_384,
            peer_initial_window: i64::from(INITIAL_WINDOW),
            max_streams: usize::MAX,
            conn_send_window: i64::from(INITIAL_WINDOW),
            conn_unacked: 0,
            going_away: false,
        }
    }

    /// Streams waiting for a response.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Whether another request may start now (the peer's
    /// MAX_CONCURRENT_STREAMS, GOAWAY, stream ids left).
    pub fn can_start(&self) -> bool {
        self.usable() && self.streams.len() < self.max_streams
    }

    /// Whether the connection may carry new streams at all (no GOAWAY, ids
    /// left); when not, it is replaced once its streams finish.
    pub fn usable(&self) -> bool {
        !self.going_away && self.next_stream < MAX_WINDOW
    }

    /// The streams waiting for a response.
    #[cfg(test)]
    pub fn open_stream_ids(&self) -> Vec<u32> {
        self.streams.keys().copied().collect()
    }

    /// Starts a request: `header_block` is its HPACK-encoded head (see
    /// [`encode_head`]); `body` goes out in DATA frames as the peer's windows
    /// allow. Returns the stream id.
    pub fn start_request(&mut self, header_block: &[u8], body: &[u8], out: &mut Vec<u8>) -> u32 {
        let id = self.next_stream;
        self.next_stream += 2;
        let mut rest = header_block;
        let first = rest.len().min(self.max_frame);
        let mut flags = if body.is_empty() { flag::END_STREAM } else { 0 };
        if first == rest.len() {
            flags |= flag::END_HEADERS;
        }
        put_frame_header(out, first, frame::HEADERS, flags, id);
        out.extend_from_slice(&rest[..first]);
        rest = &rest[first..];
        while !rest.is_empty() {
            let n = rest.len().min(self.max_frame);
            let flags = if n == rest.len() {
                flag::END_HEADERS
            } else {
                0
            };
            put_frame_header(out, n, frame::CONTINUATION, flags, id);
            out.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        let mut stream = Stream {
            send_window: self.peer_initial_window,
            pending: body.to_vec(),
            ..Stream::default()
        };
        self.send_pending(id, &mut stream, out);
        self.streams.insert(id, stream);
        id
    }

    /// Sends as much of the stream's pending body as the windows allow.
    fn send_pending(&mut self, id: u32, stream: &mut Stream, out: &mut Vec<u8>) {
        while !stream.pending.is_empty() {
            let room = stream.send_window.min(self.conn_send_window);
            if room <= 0 {
                return;
            }
            let n = stream.pending.len().min(self.max_frame).min(room as usize);
            let last = n == stream.pending.len();
            put_frame_header(
                out,
                n,
                frame::DATA,
                if last { flag::END_STREAM } else { 0 },
                id,
            );
            out.extend_from_slice(&stream.pending[..n]);
            stream.pending.drain(..n);
            stream.send_window -= n as i64;
            self.conn_send_window -= n as i64;
        }
    }

    /// Gives up on a stream (our timeout): RST_STREAM(CANCEL), forgotten.
    pub fn cancel(&mut self, id: u32, out: &mut Vec<u8>) {
        if self.streams.remove(&id).is_some() {
            put_frame_header(out, 4, frame::RST_STREAM, 0, id);
            out.extend_from_slice(&0x8u32.to_be_bytes());
        }
    }

    /// Feeds received bytes; frames the protocol answers (SETTINGS ack,
    /// PING ack, WINDOW_UPDATE, pending DATA) go to `out`, finished streams
    /// to `events`.
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        events: &mut Vec<Event>,
    ) -> Result<(), H2Error> {
        self.input.extend_from_slice(input);
        let mut at = 0;
        let result = loop {
            let buf = &self.input[at..];
            if buf.len() < FRAME_HEADER {
                break Ok(());
            }
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if len > OUR_MAX_FRAME {
                break Err(H2Error("frame larger than our MAX_FRAME_SIZE"));
            }
            if buf.len() < FRAME_HEADER + len {
                break Ok(());
            }
            let (typ, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & MAX_WINDOW;
            let payload = buf[FRAME_HEADER..FRAME_HEADER + len].to_vec();
            at += FRAME_HEADER + len;
            if let Err(e) = self.frame(typ, flags, stream, &payload, out, events) {
                break Err(e);
            }
        };
        self.input.drain(..at);
        result
    }

    fn frame(
        &mut self,
        typ: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
        out: &mut Vec<u8>,
        events: &mut Vec<Event>,
    ) -> Result<(), H2Error> {
        if self.block.is_some() && typ != frame::CONTINUATION {
            return Err(H2Error("header block interrupted"));
        }
        match typ {
            frame::DATA => {
                self.received(payload.len(), out);
                let body = unpad(flags, payload)?;
                if let Some(s) = self.streams.get_mut(&stream) {
                    if s.status.is_none() {
                        return Err(H2Error("DATA before the response head"));
                    }
                    s.body += body.len() as u64;
                }
                if flags & flag::END_STREAM != 0 {
                    self.finish(stream, events);
                }
            }
            frame::HEADERS => {
                if stream == 0 {
                    return Err(H2Error("HEADERS on stream 0"));
                }
                let mut block = unpad(flags, payload)?;
                if flags & flag::PRIORITY != 0 {
                    block = block.get(5..).ok_or(H2Error("short HEADERS priority"))?;
                }
                self.block = Some(Block {
                    stream,
                    end_stream: flags & flag::END_STREAM != 0,
                    bytes: block.to_vec(),
                });
                if flags & flag::END_HEADERS != 0 {
                    self.end_block(events)?;
                }
            }
            frame::CONTINUATION => {
                let Some(block) = self.block.as_mut() else {
                    return Err(H2Error("CONTINUATION without HEADERS"));
                };
                if block.stream != stream {
                    return Err(H2Error("CONTINUATION on another stream"));
                }
                block.bytes.extend_from_slice(payload);
                if flags & flag::END_HEADERS != 0 {
                    self.end_block(events)?;
                }
            }
            frame::PRIORITY => {}
            frame::RST_STREAM => {
                let code = payload
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or(H2Error("malformed RST_STREAM"))?;
                if self.streams.remove(&stream).is_some() {
                    events.push(if code == REFUSED_STREAM {
                        Event::Refused { stream }
                    } else {
                        Event::Reset { stream }
                    });
                }
            }
            frame::SETTINGS => {
                if stream != 0 || !payload.len().is_multiple_of(6) {
                    return Err(H2Error("malformed SETTINGS"));
                }
                if flags & flag::ACK == 0 {
                    self.settings(payload, out)?;
                    put_frame_header(out, 0, frame::SETTINGS, flag::ACK, 0);
                }
            }
            frame::PUSH_PROMISE => return Err(H2Error("PUSH_PROMISE with push disabled")),
            frame::PING => {
                if payload.len() != 8 {
                    return Err(H2Error("malformed PING"));
                }
                if flags & flag::ACK == 0 {
                    put_frame_header(out, 8, frame::PING, flag::ACK, 0);
                    out.extend_from_slice(payload);
                }
            }
            frame::GOAWAY => {
                let last = payload
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & MAX_WINDOW)
                    .ok_or(H2Error("malformed GOAWAY"))?;
                self.going_away = true;
                let unprocessed: Vec<u32> = self
                    .streams
                    .keys()
                    .copied()
                    .filter(|&id| id > last)
                    .collect();
                for id in unprocessed {
                    self.streams.remove(&id);
                    events.push(Event::Refused { stream: id });
                }
            }
            frame::WINDOW_UPDATE => {
                let inc = payload
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & MAX_WINDOW)
                    .ok_or(H2Error("malformed WINDOW_UPDATE"))?;
                if stream == 0 {
                    self.conn_send_window += i64::from(inc);
                    self.resume_all(out);
                } else if let Some(mut s) = self.streams.remove(&stream) {
                    s.send_window += i64::from(inc);
                    self.send_pending(stream, &mut s, out);
                    self.streams.insert(stream, s);
                }
            }
            // Unknown frame types are ignored (RFC 9113 §4.1).
            _ => {}
        }
        Ok(())
    }

    /// Applies the peer's SETTINGS.
    fn settings(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), H2Error> {
        for s in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            match id {
                0x1 => self.decoder.set_max_table_size(value as usize),
                0x3 => self.max_streams = value as usize,
                0x4 => {
                    if value > MAX_WINDOW {
                        return Err(H2Error("INITIAL_WINDOW_SIZE above 2^31-1"));
                    }
                    let delta = i64::from(value) - self.peer_initial_window;
                    self.peer_initial_window = i64::from(value);
                    for s in self.streams.values_mut() {
                        s.send_window += delta;
                    }
                    self.resume_all(out);
                }
                0x5 => {
                    if !(16_384..=16_777_215).contains(&value) {
                        return Err(H2Error("MAX_FRAME_SIZE out of range"));
                    }
                    self.max_frame = value as usize;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Sends pending request bodies after a window opened.
    fn resume_all(&mut self, out: &mut Vec<u8>) {
        let ids: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.pending.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(mut s) = self.streams.remove(&id) {
                self.send_pending(id, &mut s, out);
                self.streams.insert(id, s);
            }
        }
    }

    /// Counts received DATA against the connection window and reopens it
    /// once half is used (our stream windows are at the maximum).
    fn received(&mut self, len: usize, out: &mut Vec<u8>) {
        self.conn_unacked += len as u32;
        if self.conn_unacked >= MAX_WINDOW / 2 {
            window_update(out, 0, self.conn_unacked);
            self.conn_unacked = 0;
        }
    }

    /// A complete header block: decode it, take the status.
    fn end_block(&mut self, events: &mut Vec<Event>) -> Result<(), H2Error> {
        let block = self.block.take().expect("called with a block");
        let mut status = None;
        let mut bad = false;
        self.decoder
            .decode_with_cb(&block.bytes, |name, value| {
                if &name[..] == b":status" {
                    status = std::str::from_utf8(&value)
                        .ok()
                        .and_then(|v| v.parse::<u16>().ok())
                        .filter(|s| (100..600).contains(s));
                    bad |= status.is_none();
                }
            })
            .map_err(|_| H2Error("HPACK decoding failed"))?;
        if bad {
            return Err(H2Error("bad :status"));
        }
        let Some(s) = self.streams.get_mut(&block.stream) else {
            // A stream we cancelled: its head is decoded (HPACK state) and dropped.
            return Ok(());
        };
        match (s.status, status) {
            // Interim (1xx) heads are skipped.
            (None, Some(st)) if st < 200 => {}
            (None, Some(st)) => s.status = Some(st),
            (None, None) => return Err(H2Error("response head without :status")),
            // Trailers.
            (Some(_), None) => {}
            (Some(_), Some(_)) => return Err(H2Error("second response head")),
        }
        if block.end_stream {
            self.finish(block.stream, events);
        }
        Ok(())
    }

    fn finish(&mut self, stream: u32, events: &mut Vec<Event>) {
        if let Some(s) = self.streams.remove(&stream) {
            match s.status {
                Some(status) => events.push(Event::Response {
                    stream,
                    status,
                    body: s.body,
                }),
                None => events.push(Event::Reset { stream }),
            }
        }
    }
}

/// Strips the padding of a PADDED frame.
fn unpad(flags: u8, payload: &[u8]) -> Result<&[u8], H2Error> {
    if flags & flag::PADDED == 0 {
        return Ok(payload);
    }
    let (&pad, rest) = payload.split_first().ok_or(H2Error("short padded frame"))?;
    rest.len()
        .checked_sub(pad as usize)
        .map(|end| &rest[..end])
        .ok_or(H2Error("padding longer than the frame"))
}

/// HPACK-encodes a request head (the same bytes every time: encoded once
/// per run, without dynamic-table insertions, so any connection can send
/// them).
pub fn encode_head(
    method: &str,
    scheme: &str,
    authority: &str,
    path: &str,
    headers: &[(String, String)],
    body_len: usize,
) -> Vec<u8> {
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b":method".to_vec(), method.as_bytes().to_vec()),
        (b":scheme".to_vec(), scheme.as_bytes().to_vec()),
        (b":authority".to_vec(), authority.as_bytes().to_vec()),
        (b":path".to_vec(), path.as_bytes().to_vec()),
    ];
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        // Connection-specific fields are not allowed in HTTP/2; Host is :authority.
        if matches!(
            name.as_str(),
            "host" | "connection" | "keep-alive" | "transfer-encoding" | "upgrade"
        ) {
            continue;
        }
        fields.push((name.into_bytes(), value.as_bytes().to_vec()));
    }
    if body_len > 0 || method == "POST" || method == "PUT" {
        fields.push((
            b"content-length".to_vec(),
            body_len.to_string().into_bytes(),
        ));
    }
    let mut out = Vec::new();
    for (name, value) in &fields {
        encode_literal(&mut out, name, value);
    }
    out
}

/// A literal field without indexing, new name, no Huffman (RFC 7541 §6.2.2):
/// stateless, so the block never depends on an encoder's table.
fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    encode_string(out, name);
    encode_string(out, value);
}

fn encode_string(out: &mut Vec<u8>, s: &[u8]) {
    encode_int(out, s.len(), 7, 0x00);
    out.extend_from_slice(s);
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1).
fn encode_int(out: &mut Vec<u8>, mut value: usize, n: u8, first_bits: u8) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first_bits | value as u8);
        return;
    }
    out.push(first_bits | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests;
