//! A TLS stream: drives a sans-IO session over a [`Stream`], and is itself
//! a [`ByteStream`] for the proxy. The server side ([`TlsSession`], the
//! listeners) and the client side ([`TlsClientSession`], connections to
//! upstreams) share this driver through [`SessionIo`].
//!
//! Received ciphertext is fed to the session straight from the transport's
//! chunk (a provided ring buffer); the session decrypts it in its own buffer
//! and hands the plaintext over (moved when the caller's buffer is empty,
//! appended otherwise); ciphertext for the peer is collected in one reusable
//! vector whose ownership passes to the transport per send.

use std::io;
use std::time::Duration;

use super::{ClientTls, PeerIdentity, ServerTls, TlsClientSession, TlsError, TlsSession};
use crate::net::{ByteStream, Duplex, Sender, Stream};
use crate::runtime::{BufPool, timeout};

/// Why a TLS handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake: {0}")]
    Tls(#[from] TlsError),
    #[error("TLS handshake: {0}")]
    Io(#[from] io::Error),
    #[error("TLS handshake: peer closed the connection")]
    Eof,
    #[error("TLS handshake: timed out")]
    Timeout,
}

impl HandshakeError {
    /// A short label for counters (`handshake_failures{reason=…}`).
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::Tls(e) => e.reason(),
            HandshakeError::Io(_) => "io",
            HandshakeError::Eof => "eof",
            HandshakeError::Timeout => "timeout",
        }
    }
}

/// What the stream driver needs of a sans-IO TLS session: ciphertext in,
/// plaintext out and back (see [`TlsSession`] for the contract of each).
pub trait SessionIo {
    /// Processes received ciphertext (all of it is taken).
    fn feed(&mut self, ciphertext: &[u8]) -> Result<usize, TlsError>;
    /// The transport reached EOF.
    fn feed_eof(&mut self);
    /// Moves decrypted application data out, appending to `dst`.
    fn read_plaintext(&mut self, dst: &mut Vec<u8>) -> Result<usize, TlsError>;
    /// Encrypts application data (queued before the handshake completes).
    fn write_plaintext(&mut self, src: &[u8]) -> Result<(), TlsError>;
    /// Moves queued ciphertext out, appending to `dst`.
    fn take_ciphertext(&mut self, dst: &mut Vec<u8>) -> usize;
    fn wants_write(&self) -> bool;
    fn is_handshaking(&self) -> bool;
    /// close_notify received.
    fn peer_closed(&self) -> bool;
    fn send_close_notify(&mut self);
    /// Hands empty buffers to a pool while idle.
    fn reclaim_buffers(&mut self, give: impl FnMut(Vec<u8>));
    fn lend_for_reading(&mut self, take: impl FnMut() -> Vec<u8>);
    fn lend_for_writing(&mut self, take: impl FnMut() -> Vec<u8>);
}

impl SessionIo for TlsSession {
    fn feed(&mut self, ciphertext: &[u8]) -> Result<usize, TlsError> {
        TlsSession::feed(self, ciphertext)
    }
    fn feed_eof(&mut self) {
        TlsSession::feed_eof(self)
    }
    fn read_plaintext(&mut self, dst: &mut Vec<u8>) -> Result<usize, TlsError> {
        TlsSession::read_plaintext(self, dst)
    }
    fn write_plaintext(&mut self, src: &[u8]) -> Result<(), TlsError> {
        TlsSession::write_plaintext(self, src)
    }
    fn take_ciphertext(&mut self, dst: &mut Vec<u8>) -> usize {
        TlsSession::take_ciphertext(self, dst)
    }
    fn wants_write(&self) -> bool {
        TlsSession::wants_write(self)
    }
    fn is_handshaking(&self) -> bool {
        TlsSession::is_handshaking(self)
    }
    fn peer_closed(&self) -> bool {
        TlsSession::peer_closed(self)
    }
    fn send_close_notify(&mut self) {
        TlsSession::send_close_notify(self)
    }
    fn reclaim_buffers(&mut self, give: impl FnMut(Vec<u8>)) {
        TlsSession::reclaim_buffers(self, give)
    }
    fn lend_for_reading(&mut self, take: impl FnMut() -> Vec<u8>) {
        TlsSession::lend_for_reading(self, take)
    }
    fn lend_for_writing(&mut self, take: impl FnMut() -> Vec<u8>) {
        TlsSession::lend_for_writing(self, take)
    }
}

/// A TLS connection over a stream: server side (the default) or client
/// side ([`TlsClientStream`]).
pub struct TlsStream<S = TlsSession> {
    io: Stream,
    session: S,
    /// Ciphertext waiting to be sent (reused between sends).
    out: Vec<u8>,
    eof: bool,
}

/// A TLS connection we opened to an upstream.
pub type TlsClientStream = TlsStream<TlsClientSession>;

impl<S> std::fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

fn tls_io_error(e: TlsError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsStream<TlsSession> {
    /// Runs the server handshake over `io` within `limit`. On failure the
    /// alert rustls queued is sent before the error is returned.
    pub async fn accept(
        io: Stream,
        tls: &ServerTls,
        limit: Duration,
    ) -> Result<TlsStream, HandshakeError> {
        TlsStream::establish(io, TlsSession::new(tls)?, limit).await
    }

    /// The verified client identity, if the client presented a certificate.
    pub fn peer_identity(&self) -> Option<PeerIdentity> {
        self.session.peer_identity()
    }

    /// The verified client certificate chain, if one was presented.
    pub fn peer_chain(&self) -> Option<super::PeerChain> {
        self.session.peer_chain()
    }

    /// The negotiated ALPN protocol.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.session.alpn()
    }

    /// The negotiated protocol version, e.g. `TLSv1.3`.
    pub fn protocol_version(&self) -> Option<&'static str> {
        self.session.protocol_version()
    }

    /// The negotiated key exchange group, e.g. `x25519`.
    pub fn key_exchange_group(&self) -> Option<&'static str> {
        self.session.key_exchange_group()
    }

    /// The server name (SNI) the client asked for.
    pub fn server_name(&self) -> Option<&str> {
        self.session.server_name()
    }

    /// The negotiated cipher suite, e.g. `TLS13_AES_128_GCM_SHA256`.
    pub fn cipher_suite(&self) -> Option<&'static str> {
        self.session.cipher_suite()
    }
}

impl TlsStream<TlsClientSession> {
    /// Opens TLS to upstream `endpoint` over `io` within `limit`. On
    /// failure the alert rustls queued is sent before the error is
    /// returned.
    pub async fn connect(
        io: Stream,
        tls: &ClientTls,
        endpoint: std::net::SocketAddr,
        limit: Duration,
    ) -> Result<TlsClientStream, HandshakeError> {
        TlsStream::establish(io, TlsClientSession::new(tls, endpoint)?, limit).await
    }

    /// The negotiated ALPN protocol.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.session.alpn()
    }

    /// The handshake resumed an earlier session with this upstream.
    pub fn resumed(&self) -> bool {
        self.session.resumed()
    }

    /// The upstream's identity from its verified certificate.
    pub fn peer_identity(&self) -> Option<PeerIdentity> {
        self.session.peer_identity()
    }

    /// Nothing arrived while the connection was idle in the pool, and the
    /// upstream did not close it: it can carry another request.
    pub fn is_reusable(&self) -> bool {
        self.io.is_reusable() && !self.session.peer_closed() && !self.eof
    }

    /// The upstream's address.
    pub fn peer_addr(&self) -> std::net::SocketAddr {
        self.io.peer_addr()
    }
}

impl<S: SessionIo> TlsStream<S> {
    /// Runs `session`'s handshake over `io` within `limit`. On failure the
    /// alert the session queued is sent (best effort: it tells the peer
    /// why) before the error is returned.
    async fn establish(io: Stream, session: S, limit: Duration) -> Result<Self, HandshakeError> {
        let mut stream = TlsStream {
            io,
            session,
            out: Vec::new(),
            eof: false,
        };
        match timeout(limit, stream.handshake()).await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(e)) => {
                let _ = stream.flush().await;
                Err(e)
            }
            Err(_) => Err(HandshakeError::Timeout),
        }
    }

    async fn handshake(&mut self) -> Result<(), HandshakeError> {
        loop {
            self.flush().await?;
            if !self.session.is_handshaking() {
                return Ok(());
            }
            let chunk = self.io.recv().await?;
            if chunk.is_empty() {
                return Err(HandshakeError::Eof);
            }
            self.session.feed(&chunk)?;
        }
    }

    /// Sends whatever ciphertext the session has queued.
    async fn flush(&mut self) -> io::Result<()> {
        if !self.session.wants_write() {
            return Ok(());
        }
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        self.session.take_ciphertext(&mut out);
        let (r, mut out) = self.io.send_owned(out).await;
        out.clear();
        self.out = out;
        r
    }

    /// Gives the idle send buffer back to the shard pool.
    pub fn release_buffers(&mut self) {
        BufPool::release_if_empty(&mut self.out);
        self.session.reclaim_buffers(BufPool::give);
    }
}

impl<S: SessionIo> Duplex for TlsStream<S> {
    fn sender(&self) -> Sender {
        self.io.sender()
    }

    fn wire_bytes(&mut self, plaintext: Vec<u8>) -> io::Result<Vec<u8>> {
        self.session.lend_for_writing(BufPool::take);
        self.session
            .write_plaintext(&plaintext)
            .map_err(tls_io_error)?;
        let mut wire = plaintext;
        wire.clear();
        // Records the session owed the peer (a KeyUpdate answer) come first.
        self.session.take_ciphertext(&mut wire);
        Ok(wire)
    }

    fn closing_bytes(&mut self) -> Vec<u8> {
        self.session.send_close_notify();
        let mut wire = Vec::new();
        self.session.take_ciphertext(&mut wire);
        wire
    }

    fn closed_cleanly(&self) -> bool {
        self.session.peer_closed()
    }
}

impl<S: SessionIo> ByteStream for TlsStream<S> {
    async fn read_into(&mut self, dst: &mut Vec<u8>) -> io::Result<usize> {
        loop {
            if self.eof {
                return Ok(0);
            }
            let before = dst.len();
            self.session.read_plaintext(dst).map_err(tls_io_error)?;
            if dst.len() > before {
                return Ok(dst.len() - before);
            }
            if self.session.peer_closed() {
                return Ok(0);
            }
            // Nothing buffered while we wait: an idle connection holds no
            // I/O buffer (they go back to the shard's pool).
            self.release_buffers();
            // The only wait: a dropped read loses nothing (cancel-safe).
            // Records the session queued in answer (a KeyUpdate) go out
            // with the next write, before any data, as TLS 1.3 requires.
            let chunk = self.io.recv().await?;
            if chunk.is_empty() {
                // EOF without close_notify: the HTTP framing decides whether
                // the message was complete.
                self.eof = true;
                self.session.feed_eof();
                return Ok(0);
            }
            // The session takes the whole chunk (a partial record stays in it).
            self.session.lend_for_reading(BufPool::take);
            self.session.feed(&chunk).map_err(tls_io_error)?;
        }
    }

    async fn write_owned(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.session.lend_for_writing(BufPool::take);
        if let Err(e) = self.session.write_plaintext(&buf) {
            return (Err(tls_io_error(e)), buf);
        }
        (self.flush().await, buf)
    }

    fn abort(&mut self) {
        self.io.set_reset_on_close();
    }

    async fn close_write(&mut self) -> io::Result<()> {
        self.session.send_close_notify();
        self.flush().await?;
        self.io.shutdown_write()
    }
}
