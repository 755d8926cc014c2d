//! One request to an HTTP/2 upstream, as the byte stream the HTTP/1.1
//! try writes its request to and reads its response from
//! ([`UpstreamStream`]): the mirror of the downstream `exchange`.
//!
//! Writing parses the HTTP/1.1 request the try sends and opens a stream
//! with it ([`translate::request_of`]): HEADERS (ending the stream when
//! there is no body), then DATA within the upstream's flow-control window
//! (a chunked body is de-chunked, its trailers become HTTP/2 trailers).
//! Reading gives the HTTP/1.1 head for the upstream's response
//! ([`translate::write_response_head`]), then its DATA (chunked when the
//! response has no `content-length`, with the trailers — gRPC's
//! `grpc-status` — in the last chunk). A dropped or aborted request resets
//! the stream (`CANCEL`).
//!
//! Full duplex: when the caller is itself an HTTP/2 stream, its body can be
//! handed over ([`UpstreamStream::relay_body`]) and flows on a task of its
//! own, DATA to DATA, while the response is read — a gRPC bidirectional
//! stream whose caller waits for a reply before sending more works.

use std::future::{Future, poll_fn};
use std::io;

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{Reason, RecvStream, SendStream};

use super::client::{H2Conn, StreamSlot};
use super::exchange::{Framing, push_chunk, push_last_chunk, send_body, send_data};
use crate::http::translate::{self, ResponseBody};
use crate::http::{self, BodyKind, Dechunker, Limits, Parse};
use crate::net::ByteStream;
use crate::runtime;
use crate::runtime::BufPool;

/// A request head parsed and translated (`None`: not whole yet).
struct Opened {
    request: ::http::Request<()>,
    framing: Option<Framing>,
    head_len: usize,
    is_head: bool,
}

/// Parses the HTTP/1.1 request head at the front of `head` and translates
/// it. A plain function, so the parsed head (its field array is large)
/// never lives in an `async` state.
fn open_request(head: &[u8], scheme: &'static str) -> io::Result<Option<Opened>> {
    let limits = Limits {
        max_head_bytes: usize::MAX,
    };
    let parsed = match http::parse_request(head, &limits) {
        Ok(Parse::Partial) => return Ok(None),
        Ok(Parse::Complete(h)) => h,
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidInput, e)),
    };
    let request = translate::request_of(&parsed, scheme)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let framing = match parsed.body {
        BodyKind::None | BodyKind::Length(0) | BodyKind::CloseDelimited => None,
        BodyKind::Length(n) => Some(Framing::Length(n)),
        BodyKind::Chunked => Some(Framing::Chunked(Dechunker::default())),
    };
    Ok(Some(Opened {
        request,
        framing,
        head_len: parsed.head_len,
        is_head: parsed.method == "HEAD",
    }))
}

/// Where the request stands.
enum Request {
    /// The head's bytes so far.
    AwaitingHead(Vec<u8>),
    SendingBody {
        send: SendStream<Bytes>,
        framing: Framing,
    },
    /// Sent whole.
    Sent,
}

/// Where the response stands.
enum Response {
    /// The request has not been opened yet.
    NotOpened,
    Awaiting(ResponseFuture),
    Body {
        recv: RecvStream,
        chunked: bool,
    },
    /// Read whole: reads return 0.
    Done,
}

/// One request/response on an HTTP/2 upstream connection.
pub(crate) struct UpstreamStream {
    send_request: SendRequest<Bytes>,
    scheme: &'static str,
    request: Request,
    response: Response,
    is_head: bool,
    /// Why the stream failed, when `h2` said the upstream never processed
    /// it (REFUSED_STREAM, or above a graceful GOAWAY's last stream id):
    /// safe to send again on another connection, whatever the method.
    unprocessed: bool,
    /// The response's `grpc-status` (head or trailers), once read.
    grpc_status: Option<u32>,
    /// The task relaying the caller's HTTP/2 body, if it was handed over
    /// (stopped when this request ends).
    body_relay: Option<runtime::JoinHandle<()>>,
    /// Counts this request on its connection.
    _slot: StreamSlot,
}

impl UpstreamStream {
    /// A request to open on `send_request`'s connection to `addr`.
    pub(crate) fn new(conn: &H2Conn, scheme: &'static str) -> UpstreamStream {
        UpstreamStream {
            send_request: conn.send.clone(),
            _slot: conn.stream_slot(),
            scheme,
            request: Request::AwaitingHead(Vec::new()),
            response: Response::NotOpened,
            is_head: false,
            unprocessed: false,
            grpc_status: None,
            body_relay: None,
        }
    }

    /// The response's `grpc-status`, once its head or trailers were read.
    pub(crate) fn grpc_status(&self) -> Option<u32> {
        self.grpc_status
    }

    /// Hands the request body over as the caller's HTTP/2 receive stream:
    /// it flows to this stream on a task of its own. The head must have
    /// been written (the stream is open, its body not ended); `false` (the
    /// body given back unused) otherwise.
    pub(crate) fn relay_body(&mut self, body: RecvStream) -> Result<(), RecvStream> {
        match std::mem::replace(&mut self.request, Request::Sent) {
            Request::SendingBody { send, .. } => {
                self.body_relay = Some(runtime::spawn(relay(body, send)));
                Ok(())
            }
            other => {
                self.request = other;
                Err(body)
            }
        }
    }

    /// The upstream refused the stream without processing it.
    pub(crate) fn unprocessed(&self) -> bool {
        self.unprocessed
    }

    /// Maps an `h2` error of this stream to an I/O error, noting whether
    /// the upstream never processed the request.
    fn stream_error(&mut self, e: h2::Error) -> io::Error {
        let refused = e.reason() == Some(Reason::REFUSED_STREAM);
        let above_goaway = e.is_go_away() && e.is_remote() && e.reason() == Some(Reason::NO_ERROR);
        if refused || above_goaway {
            self.unprocessed = true;
        }
        let kind = if e.is_io() {
            io::ErrorKind::BrokenPipe
        } else {
            io::ErrorKind::ConnectionReset
        };
        io::Error::new(kind, e)
    }

    /// Takes request bytes written by the HTTP/1.1 try.
    async fn deliver(&mut self, bytes: &[u8]) -> io::Result<()> {
        match std::mem::replace(&mut self.request, Request::Sent) {
            Request::Sent => Ok(()),
            Request::SendingBody {
                mut send,
                mut framing,
            } => {
                let r = send_body(&mut send, &mut framing, bytes).await;
                self.body_sent(r, send, framing)
            }
            Request::AwaitingHead(mut head) => {
                head.extend_from_slice(bytes);
                let Some(Opened {
                    request,
                    framing,
                    head_len,
                    is_head,
                }) = open_request(&head, self.scheme)?
                else {
                    self.request = Request::AwaitingHead(head);
                    return Ok(());
                };
                self.is_head = is_head;
                poll_fn(|cx| self.send_request.poll_ready(cx))
                    .await
                    .map_err(|e| self.stream_error(e))?;
                let (response, send) = self
                    .send_request
                    .send_request(request, framing.is_none())
                    .map_err(|e| self.stream_error(e))?;
                self.response = Response::Awaiting(response);
                match framing {
                    None => Ok(()),
                    Some(mut framing) => {
                        let mut send = send;
                        let r = send_body(&mut send, &mut framing, &head[head_len..]).await;
                        self.body_sent(r, send, framing)
                    }
                }
            }
        }
    }

    /// Keeps the request stream for more body bytes unless it ended.
    fn body_sent(
        &mut self,
        sent: io::Result<bool>,
        send: SendStream<Bytes>,
        framing: Framing,
    ) -> io::Result<()> {
        match sent {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.request = Request::SendingBody { send, framing };
                Ok(())
            }
            Err(e) => {
                let mut send = send;
                send.send_reset(Reason::CANCEL);
                Err(e)
            }
        }
    }

    /// Writes the HTTP/1.1 head for the upstream's response into `dst`.
    fn response_head(&mut self, response: ::http::Response<RecvStream>, dst: &mut Vec<u8>) {
        let end = response.body().is_end_stream();
        self.grpc_status = response
            .headers()
            .get("grpc-status")
            .and_then(|v| crate::proxy::grpc::status(v.as_bytes()));
        let body = translate::write_response_head(&response, end, self.is_head, dst);
        self.response = match body {
            ResponseBody::None => Response::Done,
            ResponseBody::Length => Response::Body {
                recv: response.into_body(),
                chunked: false,
            },
            ResponseBody::Chunked => Response::Body {
                recv: response.into_body(),
                chunked: true,
            },
        };
    }
}

/// Moves the caller's body to the upstream stream, DATA by DATA within the
/// upstream's window (the caller's window opens as its bytes go on), then
/// its trailers or END_STREAM. A failure on either side resets the other.
async fn relay(mut body: RecvStream, mut send: SendStream<Bytes>) {
    loop {
        match poll_fn(|cx| body.poll_data(cx)).await {
            Some(Ok(data)) => {
                let n = data.len();
                if send_data(&mut send, &data, false).await.is_err() {
                    return;
                }
                let _ = body.flow_control().release_capacity(n);
            }
            Some(Err(_)) => {
                send.send_reset(Reason::CANCEL);
                return;
            }
            None => {
                let ended = match poll_fn(|cx| body.poll_trailers(cx)).await {
                    Ok(Some(trailers)) => send.send_trailers(trailers),
                    Ok(None) => send.send_data(Bytes::new(), true),
                    Err(_) => {
                        send.send_reset(Reason::CANCEL);
                        return;
                    }
                };
                let _ = ended;
                return;
            }
        }
    }
}

impl ByteStream for UpstreamStream {
    async fn read_into(&mut self, dst: &mut Vec<u8>) -> io::Result<usize> {
        BufPool::ensure(dst);
        let before = dst.len();
        loop {
            match &mut self.response {
                Response::NotOpened => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "read before the request was sent",
                    ));
                }
                Response::Done => return Ok(0),
                Response::Awaiting(future) => {
                    // Cancel-safe: polling a `ResponseFuture` again after a
                    // dropped read picks the response up.
                    let response = poll_fn(|cx| std::pin::Pin::new(&mut *future).poll(cx))
                        .await
                        .map_err(|e| self.stream_error(e))?;
                    self.response_head(response, dst);
                    return Ok(dst.len() - before);
                }
                Response::Body { recv, chunked } => {
                    let chunked = *chunked;
                    match poll_fn(|cx| recv.poll_data(cx)).await {
                        Some(Ok(data)) => {
                            let _ = recv.flow_control().release_capacity(data.len());
                            if data.is_empty() {
                                continue;
                            }
                            if chunked {
                                push_chunk(dst, &data);
                            } else {
                                dst.extend_from_slice(&data);
                            }
                            return Ok(dst.len() - before);
                        }
                        Some(Err(e)) => return Err(self.stream_error(e)),
                        None => {
                            if chunked {
                                let trailers = poll_fn(|cx| recv.poll_trailers(cx))
                                    .await
                                    .map_err(|e| self.stream_error(e))?;
                                if let Some(t) = &trailers {
                                    self.grpc_status = t
                                        .get("grpc-status")
                                        .and_then(|v| crate::proxy::grpc::status(v.as_bytes()));
                                }
                                push_last_chunk(dst, trailers.as_ref());
                            }
                            self.response = Response::Done;
                            return Ok(dst.len() - before);
                        }
                    }
                }
            }
        }
    }

    async fn write_owned(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let r = self.deliver(&buf).await;
        (r, buf)
    }

    async fn close_write(&mut self) -> io::Result<()> {
        // The request's framing ends its stream; nothing to half-close.
        Ok(())
    }

    fn abort(&mut self) {
        if let Request::SendingBody { send, .. } = &mut self.request {
            send.send_reset(Reason::CANCEL);
        }
        self.request = Request::Sent;
        self.response = Response::Done;
    }
}

impl Drop for UpstreamStream {
    fn drop(&mut self) {
        if let Some(task) = self.body_relay.take() {
            task.abort();
        }
        // A request whose body was cut off must not look complete.
        if let Request::SendingBody { send, .. } = &mut self.request {
            send.send_reset(Reason::CANCEL);
        }
        // Dropping the response side of an unfinished stream makes `h2`
        // reset it (CANCEL) once nothing refers to it.
    }
}
