//! TLS stage, session: one server-side TLS connection as a sans-IO state
//! machine (STYLE §1). Ciphertext in via [`TlsSession::feed`], plaintext out
//! via [`TlsSession::read_plaintext`]; plaintext in via
//! [`TlsSession::write_plaintext`], ciphertext out via
//! [`TlsSession::take_ciphertext`]. No file descriptors, no clock reads of
//! our own (certificate validity uses rustls' time provider).
//!
//! Two phases. During the handshake rustls' unbuffered API drives the
//! protocol. Once it completes, rustls hands over the traffic keys
//! (`dangerous_into_kernel_connection`, the kTLS entry point) and keeps
//! only the key schedule; application records are then sealed straight
//! into our send buffer and opened in place in our receive buffer by
//! `record.rs`. Post-handshake messages are ours to handle: TLS 1.3
//! KeyUpdate (answered, keys rotated through rustls), alerts, and a TLS 1.2
//! renegotiation attempt (refused with a `no_renegotiation` warning). We
//! rotate our own sending key before the suite's confidentiality limit.
//!
//! Failure contract: when `feed` returns an error, a fatal alert is queued
//! (when the protocol calls for one); the caller should `take_ciphertext`
//! once, send it, and close. Every later `feed` returns an error of the same
//! kind.

use rustls::kernel::KernelConnection;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncodeTlsData};
use rustls::{
    AlertDescription, CertificateError, ConnectionTrafficSecrets, PeerIncompatible,
    ProtocolVersion, SupportedCipherSuite,
};

use super::record::{
    ALERT, APPLICATION_DATA, Format, HANDSHAKE, MAX_PLAINTEXT, Opener, RecordError, Sealer,
};
use super::{PeerIdentity, ServerTls, sni};

/// TLS 1.3 handshake message type of KeyUpdate (RFC 8446 §4.6.3).
const KEY_UPDATE: u8 = 24;
/// Rotate our sending key this many records before the suite's limit.
const REKEY_MARGIN: u64 = 1 << 16;

/// A server-side TLS session over byte buffers.
pub struct TlsSession {
    phase: Phase,
    /// Received ciphertext not processed yet (a partial record).
    incoming: Vec<u8>,
    /// Decrypted application data not read yet.
    plaintext: Vec<u8>,
    /// Ciphertext ready to send.
    outgoing: Vec<u8>,
    /// Application data written before the handshake completed.
    early_writes: Vec<u8>,
    /// close_notify received (nothing after it is processed).
    peer_closed: bool,
    /// The transport reached EOF.
    eof: bool,
    /// close_notify queued by us; no more application data may be written.
    close_sent: bool,
    /// The error every later `feed` returns.
    failed: Option<TlsError>,
    /// The server name the ClientHello asked for (`None`: its record has
    /// not arrived whole yet), read before rustls takes the record.
    client_hello_sni: Option<Option<String>>,
    /// What the handshake settled, read once it completes.
    facts: Facts,
}

enum Phase {
    Handshake(Box<UnbufferedServerConnection>),
    Established(Box<Established>),
    /// Between the two, or after a failure to hand the keys over.
    Gone,
}

/// Record protection and the key schedule after the handshake.
struct Established {
    keys: KernelConnection<ServerConnectionData>,
    format: Format,
    sealer: Sealer,
    opener: Opener,
    /// Our sequence number at which the sending key is rotated.
    rekey_at: u64,
    tempers: Tempers,
}

/// How many records that cost us work but carry no data a peer may send
/// in a row (reset by application data), as rustls counts them: warning
/// alerts, KeyUpdate requests (each answered), renegotiation attempts.
#[derive(Debug, Default)]
struct Tempers {
    warnings: u8,
    key_update_requests: u8,
    renegotiations: u8,
}

impl Tempers {
    const MAX_WARNINGS: u8 = 4;
    const MAX_KEY_UPDATE_REQUESTS: u8 = 32;
    const MAX_RENEGOTIATIONS: u8 = 1;

    fn bump(count: &mut u8, max: u8) -> Result<(), RecordError> {
        *count = count.saturating_add(1);
        if *count > max {
            Err(RecordError::Unexpected)
        } else {
            Ok(())
        }
    }

    fn warning(&mut self) -> Result<(), RecordError> {
        Tempers::bump(&mut self.warnings, Tempers::MAX_WARNINGS)
    }

    fn key_update_request(&mut self) -> Result<(), RecordError> {
        Tempers::bump(
            &mut self.key_update_requests,
            Tempers::MAX_KEY_UPDATE_REQUESTS,
        )
    }

    fn renegotiation(&mut self) -> Result<(), RecordError> {
        Tempers::bump(&mut self.renegotiations, Tempers::MAX_RENEGOTIATIONS)
    }
}

#[derive(Default)]
struct Facts {
    identity: Option<PeerIdentity>,
    chain: Option<super::PeerChain>,
    alpn: Option<Vec<u8>>,
    version: Option<ProtocolVersion>,
    group: Option<&'static str>,
    cipher: Option<&'static str>,
    sni: Option<String>,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("handshaking", &self.is_handshaking())
            .field("peer_closed", &self.peer_closed)
            .field("close_sent", &self.close_sent)
            .finish_non_exhaustive()
    }
}

impl TlsSession {
    /// A new session awaiting the client's ClientHello.
    pub fn new(tls: &ServerTls) -> Result<TlsSession, TlsError> {
        let conn = UnbufferedServerConnection::new(tls.config.clone())
            .map_err(|e| TlsError::Internal(Cause(e)))?;
        Ok(TlsSession {
            phase: Phase::Handshake(Box::new(conn)),
            incoming: Vec::new(),
            plaintext: Vec::new(),
            outgoing: Vec::new(),
            early_writes: Vec::new(),
            peer_closed: false,
            eof: false,
            close_sent: false,
            failed: None,
            client_hello_sni: None,
            facts: Facts::default(),
        })
    }

    /// Feeds ciphertext received from the peer and processes every complete
    /// record in it; a partial record is kept for the next call. Returns the
    /// bytes consumed: always all of them (bytes after the peer's
    /// close_notify are discarded). Decrypted data waits for
    /// [`read_plaintext`](Self::read_plaintext).
    pub fn feed(&mut self, ciphertext: &[u8]) -> Result<usize, TlsError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.peer_closed {
            return Ok(ciphertext.len());
        }
        self.incoming.extend_from_slice(ciphertext);
        let result = match self.phase {
            Phase::Handshake(_) => self.drive_handshake(),
            Phase::Established(_) => self.open_records(),
            Phase::Gone => Err(TlsError::Closed),
        };
        match result {
            Ok(()) => Ok(ciphertext.len()),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Tells the session the transport reached EOF. If close_notify was not
    /// received, the next [`read_plaintext`](Self::read_plaintext) without
    /// pending data returns [`TlsError::UncleanEof`] (a truncation signal).
    pub fn feed_eof(&mut self) {
        self.eof = true;
    }

    /// Moves all decrypted application data out, appending to `dst`. Returns
    /// the bytes moved; 0 when nothing is pending (or after a clean close —
    /// see [`peer_closed`](Self::peer_closed)).
    pub fn read_plaintext(&mut self, dst: &mut Vec<u8>) -> Result<usize, TlsError> {
        hand_over(&mut self.plaintext, dst, self.eof && !self.peer_closed)
    }

    /// Encrypts application data; the records are queued for
    /// [`take_ciphertext`](Self::take_ciphertext). Before the handshake
    /// completes the plaintext is buffered and sent once it does.
    pub fn write_plaintext(&mut self, src: &[u8]) -> Result<(), TlsError> {
        // Nothing follows a fatal alert (RFC 8446 §6.2) or our close_notify.
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.close_sent {
            return Err(TlsError::Closed);
        }
        match &mut self.phase {
            Phase::Handshake(_) => {
                self.early_writes.extend_from_slice(src);
                Ok(())
            }
            Phase::Established(est) => {
                let r = est.seal_app_data(src, &mut self.outgoing, &mut self.close_sent);
                if let Err(e) = &r {
                    self.failed = Some(e.clone());
                }
                r
            }
            Phase::Gone => Err(TlsError::Closed),
        }
    }

    /// Moves queued ciphertext (handshake messages, records, alerts) out,
    /// appending to `dst`. Returns the bytes moved.
    pub fn take_ciphertext(&mut self, dst: &mut Vec<u8>) -> usize {
        let n = self.outgoing.len();
        if dst.is_empty() {
            std::mem::swap(dst, &mut self.outgoing);
        } else {
            dst.extend_from_slice(&self.outgoing);
            self.outgoing.clear();
        }
        n
    }

    /// Ciphertext is queued for [`take_ciphertext`](Self::take_ciphertext).
    pub fn wants_write(&self) -> bool {
        !self.outgoing.is_empty()
    }

    pub fn is_handshaking(&self) -> bool {
        matches!(self.phase, Phase::Handshake(_))
    }

    /// The peer sent close_notify: it will send no more application data.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Queues a close_notify alert; later writes fail with
    /// [`TlsError::Closed`]. Before the handshake completes there is no
    /// session to close: nothing is queued and the transport's close says it.
    pub fn send_close_notify(&mut self) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        // After a fatal alert nothing more is sent.
        if self.failed.is_some() {
            return;
        }
        if let Phase::Established(est) = &mut self.phase {
            est.sealer.seal(ALERT, &[1, 0], &mut self.outgoing);
        }
    }

    /// Hands the session's empty buffers to `give` (a pool), so an idle
    /// connection holds none; [`lend_for_reading`](Self::lend_for_reading)
    /// and [`lend_for_writing`](Self::lend_for_writing) give them back
    /// before bytes flow. (Without them the session allocates as it goes.)
    pub fn reclaim_buffers(&mut self, mut give: impl FnMut(Vec<u8>)) {
        for buf in [&mut self.incoming, &mut self.plaintext, &mut self.outgoing] {
            if buf.is_empty() && buf.capacity() > 0 {
                give(std::mem::take(buf));
            }
        }
    }

    /// Before [`feed`](Self::feed): receive buffers from `take` where the
    /// session has none.
    pub fn lend_for_reading(&mut self, mut take: impl FnMut() -> Vec<u8>) {
        for buf in [&mut self.incoming, &mut self.plaintext] {
            if buf.capacity() == 0 {
                *buf = take();
            }
        }
    }

    /// Before [`write_plaintext`](Self::write_plaintext): a send buffer
    /// from `take` if the session has none.
    pub fn lend_for_writing(&mut self, mut take: impl FnMut() -> Vec<u8>) {
        if self.outgoing.capacity() == 0 {
            self.outgoing = take();
        }
    }

    /// The negotiated ALPN protocol.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.facts.alpn.as_deref()
    }

    /// `"TLSv1.3"` or `"TLSv1.2"` once negotiated.
    pub fn protocol_version(&self) -> Option<&'static str> {
        match self.facts.version? {
            ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
            ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
            _ => None,
        }
    }

    /// The negotiated key-exchange group by its config name (see
    /// [`known_group_names`](super::known_group_names)).
    pub fn key_exchange_group(&self) -> Option<&'static str> {
        self.facts.group
    }

    /// The negotiated cipher suite by its IANA name, e.g.
    /// `TLS13_AES_128_GCM_SHA256`.
    pub fn cipher_suite(&self) -> Option<&'static str> {
        self.facts.cipher
    }

    /// The server name (SNI) the client asked for, lower-cased, once the
    /// handshake completed; `None` when it sent none (or an IP address).
    pub fn server_name(&self) -> Option<&str> {
        self.facts.sni.as_deref()
    }

    /// The identity in the verified client certificate, once the handshake
    /// is complete; `None` without a certificate. (A verified certificate
    /// whose names cannot be read is logged and also yields `None`, i.e. the
    /// caller is treated as anonymous.)
    pub fn peer_identity(&self) -> Option<PeerIdentity> {
        self.facts.identity.clone()
    }

    /// The verified client certificate chain, once the handshake
    /// completed, if the client presented one.
    pub fn peer_chain(&self) -> Option<super::PeerChain> {
        self.facts.chain.clone()
    }

    /// Runs rustls over `incoming` until it needs more bytes or the
    /// handshake is done; then hands over to the record layer.
    fn drive_handshake(&mut self) -> Result<(), TlsError> {
        enum Next {
            Again,
            NeedInput,
            Writable,
            Failed(rustls::Error),
        }
        loop {
            let Phase::Handshake(conn) = &mut self.phase else {
                return Ok(());
            };
            if self.client_hello_sni.is_none()
                && let sni::FirstRecord::Read(name) = sni::server_name(&self.incoming)
            {
                self.client_hello_sni = Some(name);
            }
            let status = conn.process_tls_records(&mut self.incoming);
            let discard = status.discard;
            let next = match status.state {
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode(&mut data, &mut self.outgoing);
                    Next::Again
                }
                // The encoded bytes wait in `outgoing` for the caller.
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    data.done();
                    Next::Again
                }
                Ok(ConnectionState::ReadTraffic(mut data)) => {
                    let mut next = Next::Again;
                    while let Some(record) = data.next_record() {
                        match record {
                            Ok(record) => self.plaintext.extend_from_slice(record.payload),
                            Err(e) => {
                                next = Next::Failed(e);
                                break;
                            }
                        }
                    }
                    next
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    Next::Again
                }
                Ok(ConnectionState::BlockedHandshake | ConnectionState::Closed) => Next::NeedInput,
                Ok(ConnectionState::WriteTraffic(_)) => Next::Writable,
                Ok(_) => Next::Failed(rustls::Error::General(
                    "early data received but not enabled".into(),
                )),
                Err(e) => Next::Failed(e),
            };
            self.incoming.drain(..discard);
            match next {
                Next::Again => {}
                Next::NeedInput => return Ok(()),
                // TLS 1.3 lets the server write before the client's Finished.
                Next::Writable if conn.is_handshaking() => return Ok(()),
                Next::Writable => return self.establish(),
                Next::Failed(e) => {
                    let handshaking = conn.is_handshaking();
                    queue_alerts(conn, &mut self.incoming, &mut self.outgoing);
                    return Err(TlsError::from_rustls(e, handshaking));
                }
            }
        }
    }

    /// The handshake is complete: read what it settled, take the keys from
    /// rustls and process whatever records already arrived.
    fn establish(&mut self) -> Result<(), TlsError> {
        let Phase::Handshake(conn) = std::mem::replace(&mut self.phase, Phase::Gone) else {
            return Ok(());
        };
        self.facts = Facts {
            identity: read_identity(conn.peer_certificates()),
            chain: conn
                .peer_certificates()
                .filter(|c| !c.is_empty())
                .map(|c| super::PeerChain(c.to_vec().into())),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            version: conn.protocol_version(),
            group: conn
                .negotiated_key_exchange_group()
                .and_then(|g| super::config::group_config_name(g.name())),
            cipher: conn
                .negotiated_cipher_suite()
                .and_then(|c| c.suite().as_str()),
            sni: self.client_hello_sni.take().flatten(),
        };
        let (secrets, keys) = conn
            .dangerous_into_kernel_connection()
            .map_err(|e| TlsError::Internal(Cause(e)))?;
        let format = match (keys.protocol_version(), &secrets.tx.1) {
            (ProtocolVersion::TLSv1_3, _) => Format::Tls13,
            (_, ConnectionTrafficSecrets::Chacha20Poly1305 { .. }) => Format::Tls12Chacha,
            _ => Format::Tls12Gcm,
        };
        let limit = match keys.negotiated_cipher_suite() {
            SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
            SupportedCipherSuite::Tls12(s) => s.common.confidentiality_limit,
        };
        let (tx_seq, tx) = secrets.tx;
        let (rx_seq, rx) = secrets.rx;
        let unsupported = |e: super::record::UnsupportedAead| {
            TlsError::Internal(Cause(rustls::Error::General(e.to_string())))
        };
        let mut est = Established {
            keys,
            format,
            sealer: Sealer::new(format, tx, tx_seq).map_err(unsupported)?,
            opener: Opener::new(format, rx, rx_seq).map_err(unsupported)?,
            rekey_at: limit.saturating_sub(REKEY_MARGIN),
            tempers: Tempers::default(),
        };
        let early = std::mem::take(&mut self.early_writes);
        let sealed = est.seal_app_data(&early, &mut self.outgoing, &mut self.close_sent);
        self.phase = Phase::Established(Box::new(est));
        sealed?;
        self.open_records()
    }

    /// Opens every complete record in `incoming`.
    fn open_records(&mut self) -> Result<(), TlsError> {
        let Phase::Established(est) = &mut self.phase else {
            return Ok(());
        };
        let mut at = 0;
        let result = loop {
            if self.peer_closed {
                at = self.incoming.len();
                break Ok(());
            }
            let rest = &mut self.incoming[at..];
            let len = match est.opener.complete_record(rest) {
                Ok(Some(len)) => len,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            let record = &mut rest[..len];
            at += len;
            let (typ, range) = match est.opener.open(record) {
                Ok(opened) => opened,
                Err(e) => break Err(e),
            };
            let payload = &record[range];
            let tls13 = est.format == Format::Tls13;
            let handled = match typ {
                APPLICATION_DATA => {
                    est.tempers = Tempers::default();
                    self.plaintext.extend_from_slice(payload);
                    Ok(())
                }
                ALERT => match payload {
                    // close_notify: at warning level in TLS 1.2, any level
                    // in 1.3 (where the level is ignored).
                    [1, 0] => {
                        self.peer_closed = true;
                        Ok(())
                    }
                    [_, 0] if tls13 => {
                        self.peer_closed = true;
                        Ok(())
                    }
                    // Warnings (user_canceled in 1.3, any warning in 1.2)
                    // are notes, a few at a time (as rustls allows).
                    [_, 90] if tls13 => est.tempers.warning(),
                    [1, _] if !tls13 => est.tempers.warning(),
                    [_, desc] => {
                        let e = rustls::Error::AlertReceived(AlertDescription::from(*desc));
                        self.incoming.clear();
                        return Err(TlsError::PeerAlert(Cause(e)));
                    }
                    _ => Err(RecordError::Decode),
                },
                HANDSHAKE => est.handshake_messages(payload, self.close_sent, &mut self.outgoing),
                _ => Err(RecordError::Unexpected),
            };
            if let Err(e) = handled {
                break Err(e);
            }
        };
        self.incoming.drain(..at);
        let close_sent = self.close_sent;
        result.map_err(|e| {
            if !close_sent {
                est.sealer.seal(ALERT, &[2, e.alert()], &mut self.outgoing);
            }
            match e {
                RecordError::BadRecordMac => TlsError::Decrypt,
                e => TlsError::Protocol(Cause(rustls::Error::General(e.to_string()))),
            }
        })
    }
}

impl Established {
    /// Seals `src` as application-data records into `out`, rotating our key
    /// first when it nears its confidentiality limit. TLS 1.2 has no key
    /// update: a write that would pass the limit is refused whole, and the
    /// session closed (close_notify, as rustls does).
    fn seal_app_data(
        &mut self,
        src: &[u8],
        out: &mut Vec<u8>,
        close_sent: &mut bool,
    ) -> Result<(), TlsError> {
        let records = src.len().div_ceil(MAX_PLAINTEXT);
        if self.format != Format::Tls13
            && self.sealer.seq().saturating_add(records as u64) > self.rekey_at
        {
            if !*close_sent {
                self.sealer.seal(ALERT, &[1, 0], out);
                *close_sent = true;
            }
            return Err(TlsError::Internal(Cause(rustls::Error::General(
                "TLS 1.2 session reached its cipher's confidentiality limit".into(),
            ))));
        }
        out.reserve(src.len() + records * self.format.overhead());
        for chunk in src.chunks(MAX_PLAINTEXT) {
            if self.sealer.seq() >= self.rekey_at {
                self.rotate_sending_key(out)?;
            }
            self.sealer.seal(APPLICATION_DATA, chunk, out);
        }
        Ok(())
    }

    /// Sends KeyUpdate(update_not_requested) under the current key and
    /// switches to the next one (TLS 1.3).
    fn rotate_sending_key(&mut self, out: &mut Vec<u8>) -> Result<(), TlsError> {
        self.sealer.seal(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0], out);
        let (seq, secrets) = self
            .keys
            .update_tx_secret()
            .map_err(|e| TlsError::Internal(Cause(e)))?;
        self.sealer = Sealer::new(self.format, secrets, seq)
            .map_err(|e| TlsError::Internal(Cause(rustls::Error::General(e.to_string()))))?;
        Ok(())
    }

    /// Handles the handshake messages of one post-handshake record.
    fn handshake_messages(
        &mut self,
        mut msgs: &[u8],
        close_sent: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        // Zero-length handshake records are forbidden (RFC 8446 §5.1).
        if msgs.is_empty() {
            return Err(RecordError::Unexpected);
        }
        if self.format != Format::Tls13 {
            // A TLS 1.2 renegotiation attempt: refused with a warning, once;
            // a second one ends the session (as rustls does).
            self.tempers.renegotiation()?;
            if !close_sent {
                self.sealer.seal(ALERT, &[1, 100], out);
            }
            return Ok(());
        }
        while !msgs.is_empty() {
            // A message split over records is legal but no peer does it for
            // KeyUpdate; it is refused as malformed. (One split across the
            // last handshake record rustls saw and our first would fail to
            // decrypt instead: only an authenticated client can do that, and
            // it only loses its own connection.)
            let &[typ, a, b, c, ref rest @ ..] = msgs else {
                return Err(RecordError::Decode);
            };
            let len = u32::from_be_bytes([0, a, b, c]) as usize;
            if rest.len() < len {
                return Err(RecordError::Decode);
            }
            let (body, tail) = rest.split_at(len);
            msgs = tail;
            let request_update = match (typ, body) {
                (KEY_UPDATE, [0]) => false,
                (KEY_UPDATE, [1]) => true,
                (KEY_UPDATE, [_]) => return Err(RecordError::IllegalParameter),
                (KEY_UPDATE, _) => return Err(RecordError::Decode),
                _ => return Err(RecordError::Unexpected),
            };
            // The key changes after this message: it must end the record
            // (RFC 8446 §5.1).
            if !msgs.is_empty() {
                return Err(RecordError::Unexpected);
            }
            if request_update {
                self.tempers.key_update_request()?;
            }
            let (seq, secrets) = self
                .keys
                .update_rx_secret()
                .map_err(|_| RecordError::Unexpected)?;
            self.opener =
                Opener::new(self.format, secrets, seq).map_err(|_| RecordError::Unexpected)?;
            if request_update && !close_sent {
                self.sealer.seal(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0], out);
                let (seq, secrets) = self
                    .keys
                    .update_tx_secret()
                    .map_err(|_| RecordError::Unexpected)?;
                self.sealer =
                    Sealer::new(self.format, secrets, seq).map_err(|_| RecordError::Unexpected)?;
            }
        }
        Ok(())
    }
}

/// Encodes one handshake flight chunk at the end of `out`.
fn encode(data: &mut EncodeTlsData<'_, ServerConnectionData>, out: &mut Vec<u8>) {
    let start = out.len();
    let mut room = 4096;
    loop {
        out.resize(start + room, 0);
        match data.encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return;
            }
            Err(EncodeError::InsufficientSize(e)) => room = e.required_size,
            // Already encoded: nothing more to add.
            Err(_) => {
                out.truncate(start);
                return;
            }
        }
    }
}

/// After a handshake failure: moves the alert rustls queued into `out`.
/// (rustls wants the same incoming buffer back, discards applied.)
fn queue_alerts(conn: &mut UnbufferedServerConnection, incoming: &mut [u8], out: &mut Vec<u8>) {
    // While rustls has records queued, `process_tls_records` returns them
    // without deframing again (which would re-process the bad input).
    while conn.wants_write() {
        match conn.process_tls_records(incoming).state {
            Ok(ConnectionState::EncodeTlsData(mut data)) => encode(&mut data, out),
            _ => return,
        }
    }
}

fn read_identity(
    certs: Option<&[rustls_pki_types::CertificateDer<'static>]>,
) -> Option<PeerIdentity> {
    let leaf = certs?.first()?;
    match PeerIdentity::from_der(leaf.as_ref()) {
        Ok(id) => Some(id),
        Err(e) => {
            log::warn!("verified client certificate has unreadable names: {e}");
            None
        }
    }
}

/// The rustls error behind a [`TlsError`], opaque so rustls types stay
/// inside this module; shown in `Display`.
#[derive(Debug, Clone)]
pub struct Cause(pub(crate) rustls::Error);

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {}

/// Moves decrypted data from a session's buffer to `dst` (the buffer
/// itself when `dst` is empty, a copy otherwise). With nothing pending:
/// `Ok(0)`, or [`TlsError::UncleanEof`] when the transport ended
/// without close_notify (`truncated`).
pub(crate) fn hand_over(
    plaintext: &mut Vec<u8>,
    dst: &mut Vec<u8>,
    truncated: bool,
) -> Result<usize, TlsError> {
    let n = plaintext.len();
    if n == 0 {
        return if truncated {
            Err(TlsError::UncleanEof)
        } else {
            Ok(0)
        };
    }
    if dst.is_empty() {
        std::mem::swap(dst, plaintext);
    } else {
        dst.extend_from_slice(plaintext);
        plaintext.clear();
    }
    Ok(n)
}

/// Why a TLS session failed. [`TlsError::reason`] is a short, stable label
/// for metrics (`tls_handshake_errors_total{reason=...}`).
#[derive(Debug, Clone, thiserror::Error)]
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
    #[error("upstream certificate rejected: {0}")]
    UpstreamCert(Cause),
    #[error("upstream identity rejected: {0}")]
    UpstreamIdentity(String),
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
            TlsError::UpstreamCert(_) => "upstream_cert",
            TlsError::UpstreamIdentity(_) => "upstream_spiffe_id",
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

    /// Classifies a certificate verification failure.
    pub(crate) fn from_handshake_error(e: rustls::Error) -> TlsError {
        TlsError::from_rustls(e, true)
    }

    /// Classifies a rustls error; `handshaking` tells a broken handshake
    /// from a protocol violation on an established session.
    pub(crate) fn from_rustls(e: rustls::Error, handshaking: bool) -> TlsError {
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
