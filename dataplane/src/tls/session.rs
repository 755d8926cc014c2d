//! TLS stage, session: one server-side TLS connection as a sans-IO state
//! machine (STYLE §1). Ciphertext in via [`TlsSession::feed`], plaintext out
//! via [`TlsSession::read_plaintext`]; plaintext in via
//! [`TlsSession::write_plaintext`], ciphertext out via
//! [`TlsSession::take_ciphertext`]. No file descriptors, no clock reads of
//! our own (certificate validity uses rustls' time provider).
//!
//! Failure contract: when `feed` returns an error, rustls has queued a fatal
//! alert; the caller should `take_ciphertext` once, send it, and close. Every
//! later `feed` returns an error of the same kind.

use std::io::{self, BufRead, Write};

use rustls::{CertificateError, PeerIncompatible, ProtocolVersion, ServerConnection};

use super::{PeerIdentity, ServerTls};

/// A server-side TLS session over byte buffers.
pub struct TlsSession {
    conn: ServerConnection,
    /// close_notify received (nothing after it is processed).
    peer_closed: bool,
    /// close_notify queued by us; no more application data may be written.
    close_sent: bool,
    /// The peer identity, read once when the handshake completes.
    identity: Option<PeerIdentity>,
    identity_read: bool,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("handshaking", &self.conn.is_handshaking())
            .field("peer_closed", &self.peer_closed)
            .field("close_sent", &self.close_sent)
            .finish_non_exhaustive()
    }
}

impl TlsSession {
    /// A new session awaiting the client's ClientHello.
    pub fn new(tls: &ServerTls) -> Result<TlsSession, TlsError> {
        let mut conn =
            ServerConnection::new(tls.config.clone()).map_err(|e| TlsError::Internal(Cause(e)))?;
        // Backpressure is the caller's: it drains `take_ciphertext` and stops
        // writing while `wants_write`. A rustls-side limit would make
        // `write_plaintext` accept only part of its input.
        conn.set_buffer_limit(None);
        Ok(TlsSession {
            conn,
            peer_closed: false,
            close_sent: false,
            identity: None,
            identity_read: false,
        })
    }

    /// Feeds ciphertext received from the peer and processes every complete
    /// record in it. Returns the bytes consumed: fewer than `ciphertext.len()`
    /// when rustls' received-plaintext buffer (16 KiB) is full — drain it with
    /// [`read_plaintext`](Self::read_plaintext) and feed the rest again.
    /// Bytes after the peer's close_notify are discarded (and counted as
    /// consumed).
    pub fn feed(&mut self, ciphertext: &[u8]) -> Result<usize, TlsError> {
        let mut rest = ciphertext;
        // Never hand rustls an empty reader: it takes a 0-byte read as EOF.
        while !rest.is_empty() {
            if self.peer_closed {
                rest = &[];
                break;
            }
            let handshaking = self.conn.is_handshaking();
            match self.conn.read_tls(&mut rest) {
                Ok(0) => break,
                Ok(_) => {}
                // rustls' backpressure ("received plaintext buffer full"):
                // the caller drains plaintext and feeds the rest again.
                Err(e) if e.kind() == io::ErrorKind::Other => break,
                // The peer's records do not fit the deframer (an oversized
                // handshake message): its fault, not ours.
                Err(e) => {
                    let cause = Cause(rustls::Error::General(format!("record buffer: {e}")));
                    return Err(if handshaking {
                        TlsError::Handshake(cause)
                    } else {
                        TlsError::Protocol(cause)
                    });
                }
            }
            let state = self
                .conn
                .process_new_packets()
                .map_err(|e| TlsError::from_rustls(e, handshaking))?;
            if state.peer_has_closed() {
                self.peer_closed = true;
            }
        }
        self.read_identity_once();
        Ok(ciphertext.len() - rest.len())
    }

    /// Tells the session the transport reached EOF. If close_notify was not
    /// received, the next [`read_plaintext`](Self::read_plaintext) without
    /// pending data returns [`TlsError::UncleanEof`] (a truncation signal).
    pub fn feed_eof(&mut self) {
        // A 0-byte read is how rustls learns of EOF.
        let _ = self.conn.read_tls(&mut io::empty());
    }

    /// Moves all decrypted application data out, appending to `dst`. Returns
    /// the bytes moved; 0 when nothing is pending (or after a clean close —
    /// see [`peer_closed`](Self::peer_closed)).
    pub fn read_plaintext(&mut self, dst: &mut Vec<u8>) -> Result<usize, TlsError> {
        let mut moved = 0;
        let mut reader = self.conn.reader();
        loop {
            let n = match reader.fill_buf() {
                Ok(chunk) => {
                    dst.extend_from_slice(chunk);
                    chunk.len()
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return if moved > 0 {
                        Ok(moved)
                    } else {
                        Err(TlsError::UncleanEof)
                    };
                }
                Err(e) => {
                    return Err(TlsError::Internal(Cause(rustls::Error::General(
                        e.to_string(),
                    ))));
                }
            };
            if n == 0 {
                return Ok(moved);
            }
            reader.consume(n);
            moved += n;
        }
    }

    /// Encrypts application data; the records are queued for
    /// [`take_ciphertext`](Self::take_ciphertext). Before the handshake
    /// completes the plaintext is buffered and sent once it does.
    pub fn write_plaintext(&mut self, src: &[u8]) -> Result<(), TlsError> {
        if self.close_sent {
            return Err(TlsError::Closed);
        }
        self.conn
            .writer()
            .write_all(src)
            .map_err(|e| TlsError::Internal(Cause(rustls::Error::General(e.to_string()))))
    }

    /// Moves queued ciphertext (handshake messages, records, alerts) out,
    /// appending to `dst`. Returns the bytes moved.
    pub fn take_ciphertext(&mut self, dst: &mut Vec<u8>) -> usize {
        let before = dst.len();
        while self.conn.wants_write() {
            match self.conn.write_tls(dst) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        dst.len() - before
    }

    /// Ciphertext is queued for [`take_ciphertext`](Self::take_ciphertext).
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The peer sent close_notify: it will send no more application data.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Queues a close_notify alert; later writes fail with
    /// [`TlsError::Closed`].
    pub fn send_close_notify(&mut self) {
        if !self.close_sent {
            self.conn.send_close_notify();
            self.close_sent = true;
        }
    }

    /// The negotiated ALPN protocol.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// `"TLSv1.3"` or `"TLSv1.2"` once negotiated.
    pub fn protocol_version(&self) -> Option<&'static str> {
        match self.conn.protocol_version()? {
            ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
            ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
            _ => None,
        }
    }

    /// The negotiated key-exchange group by its config name (see
    /// [`known_group_names`](super::known_group_names)).
    pub fn key_exchange_group(&self) -> Option<&'static str> {
        super::config::group_config_name(self.conn.negotiated_key_exchange_group()?.name())
    }

    /// The identity in the verified client certificate, once the handshake
    /// is complete; `None` without a certificate. (A verified certificate
    /// whose names cannot be read is logged and also yields `None`, i.e. the
    /// caller is treated as anonymous.)
    pub fn peer_identity(&self) -> Option<PeerIdentity> {
        self.identity.clone()
    }

    fn read_identity_once(&mut self) {
        if self.identity_read || self.conn.is_handshaking() {
            return;
        }
        self.identity_read = true;
        let Some(leaf) = self.conn.peer_certificates().and_then(|c| c.first()) else {
            return;
        };
        match PeerIdentity::from_der(leaf.as_ref()) {
            Ok(id) => self.identity = Some(id),
            Err(e) => log::warn!("verified client certificate has unreadable names: {e}"),
        }
    }
}

/// The rustls error behind a [`TlsError`], opaque so rustls types stay
/// inside this module; shown in `Display`.
#[derive(Debug)]
pub struct Cause(rustls::Error);

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {}

/// Why a TLS session failed. [`TlsError::reason`] is a short, stable label
/// for metrics (`tls_handshake_errors_total{reason=...}`).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("client presented no certificate")]
    NoClientCert,
    #[error("client certificate not issued by a trusted CA: {0}")]
    UnknownCa(Cause),
    #[error("client certificate expired: {0}")]
    Expired(Cause),
    #[error("client certificate not yet valid: {0}")]
    NotYetValid(Cause),
    #[error("client certificate revoked: {0}")]
    Revoked(Cause),
    #[error("client certificate rejected: {0}")]
    BadClientCert(Cause),
    #[error("no TLS version in common: {0}")]
    ProtocolVersion(Cause),
    #[error("no cipher suite, group or signature scheme in common: {0}")]
    Incompatible(Cause),
    #[error("no ALPN protocol in common")]
    NoAlpn,
    #[error("TLS handshake failed: {0}")]
    Handshake(Cause),
    #[error("peer sent a fatal alert: {0}")]
    PeerAlert(Cause),
    #[error("TLS record failed to decrypt")]
    Decrypt,
    #[error("TLS protocol violation: {0}")]
    Protocol(Cause),
    #[error("transport closed without TLS close_notify")]
    UncleanEof,
    #[error("TLS session closed for writing")]
    Closed,
    #[error("TLS internal error: {0}")]
    Internal(Cause),
}

impl TlsError {
    /// A short label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            TlsError::NoClientCert => "no_client_cert",
            TlsError::UnknownCa(_) => "unknown_ca",
            TlsError::Expired(_) => "expired",
            TlsError::NotYetValid(_) => "not_yet_valid",
            TlsError::Revoked(_) => "revoked",
            TlsError::BadClientCert(_) => "bad_client_cert",
            TlsError::ProtocolVersion(_) => "protocol_version",
            TlsError::Incompatible(_) => "incompatible",
            TlsError::NoAlpn => "no_alpn",
            TlsError::Handshake(_) => "handshake",
            TlsError::PeerAlert(_) => "peer_alert",
            TlsError::Decrypt => "decrypt",
            TlsError::Protocol(_) => "protocol",
            TlsError::UncleanEof => "unclean_eof",
            TlsError::Closed => "closed",
            TlsError::Internal(_) => "internal",
        }
    }

    /// Classifies a rustls error; `handshaking` tells a broken handshake
    /// from a protocol violation on an established session.
    fn from_rustls(e: rustls::Error, handshaking: bool) -> TlsError {
        use rustls::Error as E;
        match e {
            E::NoCertificatesPresented => TlsError::NoClientCert,
            E::InvalidCertificate(ref ce) => match ce {
                CertificateError::UnknownIssuer => TlsError::UnknownCa(Cause(e)),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    TlsError::Expired(Cause(e))
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    TlsError::NotYetValid(Cause(e))
                }
                CertificateError::Revoked => TlsError::Revoked(Cause(e)),
                _ => TlsError::BadClientCert(Cause(e)),
            },
            E::PeerIncompatible(ref p) => match p {
                PeerIncompatible::SupportedVersionsExtensionRequired
                | PeerIncompatible::Tls12NotOffered
                | PeerIncompatible::Tls12NotOfferedOrEnabled
                | PeerIncompatible::ServerDoesNotSupportTls12Or13
                | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig => {
                    TlsError::ProtocolVersion(Cause(e))
                }
                _ => TlsError::Incompatible(Cause(e)),
            },
            E::NoApplicationProtocol => TlsError::NoAlpn,
            E::AlertReceived(_) => TlsError::PeerAlert(Cause(e)),
            E::DecryptError => TlsError::Decrypt,
            E::General(_)
            | E::FailedToGetCurrentTime
            | E::FailedToGetRandomBytes
            | E::EncryptError
            | E::InconsistentKeys(_)
            | E::BadMaxFragmentSize
            | E::InvalidCertRevocationList(_)
            | E::Other(_) => TlsError::Internal(Cause(e)),
            _ if handshaking => TlsError::Handshake(Cause(e)),
            _ => TlsError::Protocol(Cause(e)),
        }
    }
}

#[cfg(test)]
mod tests;
