//! TLS stage, client session: one TLS connection we open to an upstream,
//! as a sans-IO state machine with the same surface as the server's
//! [`super::TlsSession`] (bytes in / bytes out, see [`super::SessionIo`]).
//!
//! rustls' buffered client connection does the whole job here, records
//! included: upstream TLS carries a fraction of the bytes the listeners
//! do, and the buffered API gives resumption tickets, KeyUpdate and
//! close_notify handling for free. If profiles ever show its record copies
//! on an upstream-heavy path, the server's kTLS-style record layer
//! (`record.rs`) can take over after the handshake as it does there.

use std::io::{self, Read, Write};

use rustls::ClientConnection;
use rustls::HandshakeKind;

use super::session::{Cause, TlsError};
use super::stream::SessionIo;
use super::{ClientTls, PeerIdentity};

/// Bytes of plaintext taken out of rustls per read.
const READ_STEP: usize = 16 * 1024;

/// A client-side TLS session over byte buffers.
pub struct TlsClientSession {
    conn: ClientConnection,
    /// Decrypted application data not read yet (moved out of rustls as it
    /// arrives, so rustls' own 16 KiB receive limit never stalls a feed).
    plaintext: Vec<u8>,
    failed: Option<TlsError>,
    peer_closed: bool,
    eof: bool,
    close_sent: bool,
}

impl std::fmt::Debug for TlsClientSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClientSession")
            .field("handshaking", &self.conn.is_handshaking())
            .field("peer_closed", &self.peer_closed)
            .finish_non_exhaustive()
    }
}

impl TlsClientSession {
    /// A new session to `endpoint`; its ClientHello is ready to take.
    pub fn new(tls: &ClientTls, endpoint: std::net::SocketAddr) -> Result<Self, TlsError> {
        let mut conn = ClientConnection::new(tls.config.clone(), tls.server_name(endpoint))
            .map_err(|e| TlsError::Internal(Cause(e)))?;
        // Ciphertext is taken after every write: no need for a cap.
        conn.set_buffer_limit(None);
        Ok(TlsClientSession {
            conn,
            plaintext: Vec::new(),
            failed: None,
            peer_closed: false,
            eof: false,
            close_sent: false,
        })
    }

    fn fail(&mut self, e: TlsError) -> TlsError {
        self.failed = Some(e.clone());
        e
    }

    /// Moves what rustls decrypted into `self.plaintext`.
    fn drain_plaintext(&mut self) -> Result<(), TlsError> {
        loop {
            let start = self.plaintext.len();
            self.plaintext.resize(start + READ_STEP, 0);
            match self.conn.reader().read(&mut self.plaintext[start..]) {
                Ok(0) => {
                    self.plaintext.truncate(start);
                    self.peer_closed = true;
                    return Ok(());
                }
                Ok(n) => self.plaintext.truncate(start + n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.plaintext.truncate(start);
                    return Ok(());
                }
                Err(e) => {
                    self.plaintext.truncate(start);
                    return Err(TlsError::Internal(Cause(rustls::Error::General(
                        e.to_string(),
                    ))));
                }
            }
        }
    }

    /// The negotiated ALPN protocol.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// The handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    /// The upstream's identity from its verified certificate.
    pub fn peer_identity(&self) -> Option<PeerIdentity> {
        let leaf = self.conn.peer_certificates()?.first()?;
        PeerIdentity::from_der(leaf.as_ref()).ok()
    }
}

/// Classifies a rustls error of a session we opened: certificate problems
/// are the upstream's, not a client's.
fn client_error(e: rustls::Error, handshaking: bool) -> TlsError {
    if let Some(why) = super::client::spiffe_mismatch(&e) {
        return TlsError::UpstreamIdentity(why);
    }
    match e {
        rustls::Error::InvalidCertificate(_) => TlsError::UpstreamCert(Cause(e)),
        e => TlsError::from_rustls(e, handshaking),
    }
}

impl SessionIo for TlsClientSession {
    fn feed(&mut self, ciphertext: &[u8]) -> Result<usize, TlsError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut rest = ciphertext;
        while !rest.is_empty() && !self.peer_closed {
            match self.conn.read_tls(&mut rest) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    let e = TlsError::Protocol(Cause(rustls::Error::General(e.to_string())));
                    return Err(self.fail(e));
                }
            }
            let handshaking = self.conn.is_handshaking();
            if let Err(e) = self.conn.process_new_packets() {
                return Err(self.fail(client_error(e, handshaking)));
            }
            if let Err(e) = self.drain_plaintext() {
                return Err(self.fail(e));
            }
        }
        Ok(ciphertext.len())
    }

    fn feed_eof(&mut self) {
        self.eof = true;
    }

    fn read_plaintext(&mut self, dst: &mut Vec<u8>) -> Result<usize, TlsError> {
        super::session::hand_over(&mut self.plaintext, dst, self.eof && !self.peer_closed)
    }

    fn write_plaintext(&mut self, src: &[u8]) -> Result<(), TlsError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.close_sent {
            return Err(TlsError::Closed);
        }
        // Unbounded buffer: `write_all` cannot fall short. Before the
        // handshake completes rustls keeps the bytes and sends them after.
        self.conn
            .writer()
            .write_all(src)
            .map_err(|e| TlsError::Internal(Cause(rustls::Error::General(e.to_string()))))
    }

    fn take_ciphertext(&mut self, dst: &mut Vec<u8>) -> usize {
        let before = dst.len();
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            if self.conn.write_tls(dst).is_err() {
                break;
            }
        }
        dst.len() - before
    }

    fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    fn send_close_notify(&mut self) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        if self.failed.is_none() {
            self.conn.send_close_notify();
        }
    }

    fn reclaim_buffers(&mut self, mut give: impl FnMut(Vec<u8>)) {
        if self.plaintext.is_empty() && self.plaintext.capacity() > 0 {
            give(std::mem::take(&mut self.plaintext));
        }
    }

    fn lend_for_reading(&mut self, mut take: impl FnMut() -> Vec<u8>) {
        if self.plaintext.capacity() == 0 {
            self.plaintext = take();
        }
    }

    fn lend_for_writing(&mut self, _take: impl FnMut() -> Vec<u8>) {}
}
