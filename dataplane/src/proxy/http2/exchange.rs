//! One HTTP/2 stream served by the HTTP/1.1 request path: [`Exchange`] is
//! the [`ByteStream`] that path reads its request from and writes its
//! response to.
//!
//! Reading gives the translated request head
//! ([`crate::http::translate::write_request_head`]), then the stream's
//! DATA (chunked when no `content-length` was sent, with the trailers in
//! the last chunk), then end of stream. Writing parses the HTTP/1.1
//! response the path produces and sends it as HTTP/2: a HEADERS frame
//! (interim 1xx heads skipped), DATA within the stream's flow-control
//! window (so a client that stops reading stalls only its own stream,
//! until the path's idle timeout gives up on it), and trailers. An abort
//! resets the stream, so a cut-off response never looks complete.

use std::future::poll_fn;
use std::io;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};

use crate::http::translate::{self, RequestBody};
use crate::http::{self, BodyKind, Dechunker, Limits, Parse, Step};
use crate::net::ByteStream;
use crate::runtime::BufPool;

/// How a body is framed in the HTTP/1.1 bytes written.
pub(super) enum Framing {
    /// This many bytes still to come.
    Length(u64),
    Chunked(Dechunker),
    /// Until the path closes its side.
    UntilClose,
}

/// Where the response stands.
enum Response {
    /// Waiting for the head: the bytes of it so far.
    AwaitingHead {
        respond: SendResponse<Bytes>,
        head: Vec<u8>,
    },
    SendingBody {
        send: SendStream<Bytes>,
        framing: Framing,
    },
    /// Sent whole (or reset): anything more written is dropped.
    Finished,
}

/// One stream's request and response, as a byte stream.
pub(super) struct Exchange {
    /// Bytes for the HTTP/1.1 side to read next (the head, then framing).
    pending: Vec<u8>,
    /// The request body still to read; `None` once it ended.
    body: Option<RecvStream>,
    chunked: bool,
    is_head: bool,
    /// A gRPC request: the gateway's own answers become gRPC statuses.
    grpc: bool,
    response: Response,
}

impl Exchange {
    /// The exchange for `request` (its head translated now); the
    /// translation's refusal hands `respond` back for an answer.
    pub(super) fn new(
        request: ::http::Request<RecvStream>,
        respond: SendResponse<Bytes>,
    ) -> Result<Exchange, (translate::TranslateError, SendResponse<Bytes>)> {
        let end_of_stream = request.body().is_end_stream();
        let mut pending = BufPool::take();
        let framing = match translate::write_request_head(&request, end_of_stream, &mut pending) {
            Ok(f) => f,
            Err(e) => {
                BufPool::give(pending);
                return Err((e, respond));
            }
        };
        let is_head = request.method() == ::http::Method::HEAD;
        let grpc = crate::proxy::grpc::is_grpc(request.headers());
        let body = request.into_body();
        Ok(Exchange {
            pending,
            body: (framing != RequestBody::None).then_some(body),
            chunked: framing == RequestBody::Chunked,
            is_head,
            grpc,
            response: Response::AwaitingHead {
                respond,
                head: Vec::new(),
            },
        })
    }

    /// Takes the response bytes the HTTP/1.1 path wrote.
    async fn deliver(&mut self, bytes: &[u8]) -> io::Result<()> {
        match std::mem::replace(&mut self.response, Response::Finished) {
            Response::Finished => Ok(()),
            body @ Response::SendingBody { .. } => {
                self.response = body;
                self.body_bytes(bytes).await
            }
            Response::AwaitingHead {
                mut respond,
                mut head,
            } => {
                head.extend_from_slice(bytes);
                let method = if self.is_head { "HEAD" } else { "GET" };
                let (response, framing, head_len) = loop {
                    let interim = match http::parse_response(&head, method, &Limits::default()) {
                        Ok(Parse::Partial) => {
                            self.response = Response::AwaitingHead { respond, head };
                            return Ok(());
                        }
                        Err(e) => {
                            respond.send_reset(Reason::INTERNAL_ERROR);
                            return Err(io::Error::other(e));
                        }
                        // Interim responses (100 Continue) are not passed on.
                        Ok(Parse::Complete(h)) if (100..200).contains(&h.status) => h.head_len,
                        // The gateway's own answer to a gRPC request: a
                        // gRPC status, trailers-only, its body dropped.
                        Ok(Parse::Complete(h))
                            if self.grpc && h.header("x-meshgate-error").is_some() =>
                        {
                            let label = h.header("x-meshgate-error").unwrap_or_default();
                            let response = grpc_local_answer(h.status, label);
                            respond
                                .send_response(response, true)
                                .map_err(io::Error::other)?;
                            return Ok(());
                        }
                        Ok(Parse::Complete(h)) => {
                            let framing = match h.body {
                                BodyKind::None | BodyKind::Length(0) => None,
                                BodyKind::Length(n) => Some(Framing::Length(n)),
                                BodyKind::Chunked => Some(Framing::Chunked(Dechunker::default())),
                                BodyKind::CloseDelimited => Some(Framing::UntilClose),
                            };
                            match translate::response_of(&h) {
                                Ok(mut r) => {
                                    // A gRPC trailers-only answer carries
                                    // no length (HTTP/1.1 needed one).
                                    if self.grpc && framing.is_none() {
                                        r.headers_mut().remove(::http::header::CONTENT_LENGTH);
                                    }
                                    break (r, framing, h.head_len);
                                }
                                Err(e) => {
                                    respond.send_reset(Reason::INTERNAL_ERROR);
                                    return Err(io::Error::other(e));
                                }
                            }
                        }
                    };
                    head.drain(..interim);
                };
                let send = respond
                    .send_response(response, framing.is_none())
                    .map_err(io::Error::other)?;
                match framing {
                    None => Ok(()),
                    // Body bytes that came with the head.
                    Some(framing) => {
                        self.response = Response::SendingBody { send, framing };
                        self.body_bytes(&head[head_len..]).await
                    }
                }
            }
        }
    }

    /// Sends body bytes; the stream is reset when they cannot be sent.
    /// The stream stays in `self.response` while its bytes wait for the
    /// client's window, so a write cancelled by a timeout leaves it there
    /// for [`ByteStream::abort`] to reset.
    async fn body_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Response::SendingBody { send, framing } = &mut self.response else {
            return Ok(());
        };
        match send_body(send, framing, bytes).await {
            Ok(true) => {
                self.response = Response::Finished;
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Resets the stream (the client must not take a cut-off or broken
    /// response for a whole one); returns `e`.
    fn fail(&mut self, e: io::Error) -> io::Error {
        match std::mem::replace(&mut self.response, Response::Finished) {
            Response::AwaitingHead { mut respond, .. } => {
                respond.send_reset(Reason::INTERNAL_ERROR)
            }
            Response::SendingBody { mut send, .. } => send.send_reset(Reason::INTERNAL_ERROR),
            Response::Finished => {}
        }
        e
    }
}

/// The trailers-only response (one HEADERS frame ending the stream,
/// gRPC's form for an error without a message) standing for the
/// gateway's local answer `status` labelled `label`: `:status 200`,
/// `grpc-status` mapped from them, `grpc-message` and `x-meshgate-error`
/// naming the label.
fn grpc_local_answer(status: u16, label: &[u8]) -> ::http::Response<()> {
    use ::http::HeaderValue;
    let label = std::str::from_utf8(label).unwrap_or("error");
    let code = crate::proxy::error::grpc_status(label, status);
    let mut response = ::http::Response::new(());
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(code));
    // Labels are lowercase ASCII words: nothing to percent-encode.
    if let Ok(message) = HeaderValue::from_str(&format!("meshgate: {label}")) {
        headers.insert("grpc-message", message);
    }
    if let Ok(label) = HeaderValue::from_str(label) {
        headers.insert("x-meshgate-error", label);
    }
    response
}

/// Sends body bytes as the framing says; `Ok(true)` once the body ended.
pub(super) async fn send_body(
    send: &mut SendStream<Bytes>,
    framing: &mut Framing,
    mut bytes: &[u8],
) -> io::Result<bool> {
    match framing {
        Framing::UntilClose => {
            send_data(send, bytes, false).await?;
            Ok(false)
        }
        Framing::Length(left) => {
            let take = (*left).min(bytes.len() as u64) as usize;
            *left -= take as u64;
            send_data(send, &bytes[..take], *left == 0).await?;
            Ok(*left == 0)
        }
        Framing::Chunked(dechunker) => loop {
            let (used, step) = dechunker.step(bytes).map_err(io::Error::other)?;
            match step {
                Step::Data(data) => send_data(send, data, false).await?,
                Step::NeedMore => return Ok(false),
                Step::End => {
                    let trailers =
                        translate::trailers_of(dechunker.trailers()).map_err(io::Error::other)?;
                    if trailers.is_empty() {
                        send.send_data(Bytes::new(), true)
                    } else {
                        send.send_trailers(trailers)
                    }
                    .map_err(io::Error::other)?;
                    return Ok(true);
                }
            }
            bytes = &bytes[used..];
        },
    }
}

/// Sends `data` within the stream's flow-control window, waiting for the
/// client to open it; `end` ends the stream with the last byte.
pub(super) async fn send_data(
    send: &mut SendStream<Bytes>,
    mut data: &[u8],
    end: bool,
) -> io::Result<()> {
    if data.is_empty() {
        if end {
            send.send_data(Bytes::new(), true)
                .map_err(io::Error::other)?;
        }
        return Ok(());
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let granted = match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            Some(Err(e)) => return Err(io::Error::other(e)),
            None => return Err(io::ErrorKind::ConnectionReset.into()),
        };
        let n = granted.min(data.len());
        if n == 0 {
            continue;
        }
        let last = end && n == data.len();
        send.send_data(Bytes::copy_from_slice(&data[..n]), last)
            .map_err(io::Error::other)?;
        data = &data[n..];
    }
    Ok(())
}

/// Appends the last chunk of a chunked body, with `trailers` (HTTP/2
/// trailer fields) in its trailer section.
pub(super) fn push_last_chunk(dst: &mut Vec<u8>, trailers: Option<&::http::HeaderMap>) {
    dst.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
}

/// Appends `data` with its chunk framing.
pub(super) fn push_chunk(dst: &mut Vec<u8>, data: &[u8]) {
    let digits = (usize::BITS - data.len().leading_zeros())
        .div_ceil(4)
        .max(1);
    for i in (0..digits).rev() {
        dst.push(b"0123456789abcdef"[(data.len() >> (4 * i)) & 0xf]);
    }
    dst.extend_from_slice(b"\r\n");
    dst.extend_from_slice(data);
    dst.extend_from_slice(b"\r\n");
}

impl ByteStream for Exchange {
    async fn read_into(&mut self, dst: &mut Vec<u8>) -> io::Result<usize> {
        BufPool::ensure(dst);
        let before = dst.len();
        if !self.pending.is_empty() {
            dst.extend_from_slice(&self.pending);
            self.pending.clear();
            BufPool::release_if_empty(&mut self.pending);
            return Ok(dst.len() - before);
        }
        let Some(body) = self.body.as_mut() else {
            return Ok(0);
        };
        // Cancel-safe: data is taken only inside a poll that completes.
        while let Some(data) = poll_fn(|cx| body.poll_data(cx)).await {
            let data = data.map_err(|e| io::Error::new(io::ErrorKind::ConnectionReset, e))?;
            // The window opens as the HTTP/1.1 side takes the bytes: it
            // reads the next ones only once these went upstream.
            let _ = body.flow_control().release_capacity(data.len());
            if data.is_empty() {
                continue;
            }
            if self.chunked {
                push_chunk(dst, &data);
            } else {
                dst.extend_from_slice(&data);
            }
            return Ok(dst.len() - before);
        }
        if self.chunked {
            let trailers = poll_fn(|cx| body.poll_trailers(cx))
                .await
                .map_err(|e| io::Error::new(io::ErrorKind::ConnectionReset, e))?;
            push_last_chunk(dst, trailers.as_ref());
        }
        self.body = None;
        Ok(dst.len() - before)
    }

    async fn write_owned(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let r = self.deliver(&buf).await;
        (r, buf)
    }

    async fn close_write(&mut self) -> io::Result<()> {
        match std::mem::replace(&mut self.response, Response::Finished) {
            Response::Finished => Ok(()),
            // A body that ends with the connection ends with the stream.
            Response::SendingBody {
                mut send,
                framing: Framing::UntilClose,
            } => send.send_data(Bytes::new(), true).map_err(io::Error::other),
            other => {
                // No response, or a cut-off one.
                self.response = other;
                Err(self.fail(io::ErrorKind::UnexpectedEof.into()))
            }
        }
    }

    fn abort(&mut self) {
        let _ = self.fail(io::ErrorKind::ConnectionAborted.into());
    }
}

impl crate::proxy::downstream::Downstream for Exchange {
    fn take_h2_body(&mut self) -> Option<RecvStream> {
        self.body.take()
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        BufPool::give(std::mem::take(&mut self.pending));
    }
}
