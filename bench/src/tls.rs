//! The client side of TLS for the load generator: the rustls
//! `ClientConfig` built from the command line (roots, mTLS identity,
//! versions, resumption) and [`TlsConn`], a small driver of rustls's
//! buffered `ClientConnection` over the runtime's [`TcpStream`].
//!
//! The data plane's TLS module only has a server session; a client lives
//! here because only the bench tool needs one. Failures become
//! [`ErrorKind::Tls`] with a short reason derived from the rustls error
//! (`unknown_issuer`, `alert_certificate_required`, ...), so reports can say
//! why handshakes fail.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use dataplane::runtime::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::args::RunArgs;
use crate::stats::{ErrorKind, classify_io};

/// Where roots come from without `--cacert` (Debian's bundle).
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Builds the client configuration and the server name to present.
pub fn client_config(args: &RunArgs) -> Result<(Arc<ClientConfig>, ServerName<'static>), String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if args.tls13 {
        &[&rustls::version::TLS13]
    } else if args.tls12 {
        &[&rustls::version::TLS12]
    } else {
        rustls::ALL_VERSIONS
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = if args.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let path = args.cacert.as_deref().unwrap_or(Path::new(SYSTEM_ROOTS));
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{}: {e} (use --cacert or --insecure)", path.display()))?
        {
            let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    if args.no_resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    if args.h2 {
        config.alpn_protocols = vec![b"h2".to_vec()];
    }
    let name = args.sni.clone().unwrap_or_else(|| args.url.host.clone());
    let name = ServerName::try_from(name).map_err(|e| format!("server name: {e}"))?;
    Ok((Arc::new(config), name))
}

/// `--insecure`: accepts any server certificate, but still checks that the
/// handshake signatures are made with its key.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A short, stable reason for a rustls error: the innermost variant name in
/// snake case (`InvalidCertificate(UnknownIssuer)` → `unknown_issuer`),
/// alerts prefixed with `alert_`.
pub fn reason(e: &rustls::Error) -> &'static str {
    let debug = format!("{e:?}");
    // Only the variant path: stop at struct fields or string payloads.
    let path = debug.split(['{', '"', ' ']).next().unwrap_or("");
    let last = path
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .rfind(|t| t.starts_with(|c: char| c.is_ascii_uppercase()))
        .unwrap_or("other");
    // `ExpiredContext` and friends only add detail to `Expired`.
    let last = last
        .strip_suffix("Context")
        .filter(|l| !l.is_empty())
        .unwrap_or(last);
    let mut name = String::new();
    if matches!(e, rustls::Error::AlertReceived(_)) {
        name.push_str("alert_");
    }
    for (i, c) in last.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_lowercase());
    }
    intern(name)
}

/// Reasons are few; each distinct one is leaked once so error kinds stay
/// `Copy` and cheap to count.
fn intern(s: String) -> &'static str {
    static SEEN: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let set = seen.get_or_insert_with(HashSet::new);
    if let Some(&known) = set.get(s.as_str()) {
        return known;
    }
    let leaked: &'static str = Box::leak(s.into_boxed_str());
    set.insert(leaked);
    leaked
}

/// A TLS client connection over a runtime TCP stream.
pub struct TlsConn {
    tcp: TcpStream,
    tls: ClientConnection,
    out: Vec<u8>,
    /// Plaintext that arrived with the server's last handshake flight (an
    /// HTTP/2 server's SETTINGS), returned by the first `recv_plain`.
    early: Vec<u8>,
}

impl TlsConn {
    /// Runs the handshake over `tcp`.
    pub async fn handshake(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<TlsConn, ErrorKind> {
        let tls = ClientConnection::new(config, name).map_err(|e| ErrorKind::Tls(reason(&e)))?;
        let mut conn = TlsConn {
            tcp,
            tls,
            out: Vec::with_capacity(4096),
            early: Vec::new(),
        };
        let mut early = Vec::new();
        while conn.tls.is_handshaking() {
            conn.flush().await?;
            if !conn.pump(&mut early).await? {
                return Err(ErrorKind::Tls("eof_in_handshake"));
            }
        }
        conn.flush().await?;
        conn.early = early;
        Ok(conn)
    }

    /// Sends TLS records rustls has queued.
    async fn flush(&mut self) -> Result<(), ErrorKind> {
        while self.tls.wants_write() {
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            while self.tls.wants_write() {
                // Writing into a Vec cannot fail.
                let _ = self.tls.write_tls(&mut out);
            }
            let (res, back) = self.tcp.send_owned(out).await;
            self.out = back;
            res.map_err(|e| classify_io(&e))?;
        }
        Ok(())
    }

    /// Encrypts and sends `plaintext`.
    pub async fn send(&mut self, plaintext: &[u8]) -> Result<(), ErrorKind> {
        // The writer buffers without limit (none set): never short.
        let _ = self.tls.writer().write_all(plaintext);
        self.flush().await
    }

    /// Waits for plaintext and appends it to `dst`. Returns the count; 0 is
    /// the end of the stream (close_notify or TCP EOF).
    ///
    /// Cancel-safe (the HTTP/2 driver races it against a timer): its only
    /// wait is the TCP receive, and a received chunk is processed without
    /// another wait. Records rustls wants to send in answer (a key update)
    /// go out with the next [`send`](Self::send).
    pub async fn recv_plain(&mut self, dst: &mut Vec<u8>) -> Result<usize, ErrorKind> {
        if !self.early.is_empty() {
            dst.extend_from_slice(&self.early);
            let n = self.early.len();
            self.early.clear();
            return Ok(n);
        }
        let start = dst.len();
        loop {
            let closed = self.drain(dst)?;
            if dst.len() > start {
                return Ok(dst.len() - start);
            }
            if closed || !self.pump(dst).await? {
                return Ok(0);
            }
        }
    }

    /// Receives one TCP chunk, feeds it to rustls and moves the plaintext
    /// into `dst`. Returns false at TCP end of stream.
    async fn pump(&mut self, dst: &mut Vec<u8>) -> Result<bool, ErrorKind> {
        let chunk = self.tcp.recv().await.map_err(|e| classify_io(&e))?;
        if chunk.is_empty() {
            return Ok(false);
        }
        let mut input: &[u8] = &chunk;
        while !input.is_empty() {
            match self.tls.read_tls(&mut input) {
                Ok(0) => break, // after close_notify the rest is ignored
                Ok(_) => {}
                // Backpressure (a buffer is full): processing and draining
                // below empty it, then reading goes on.
                Err(e) if e.kind() == io::ErrorKind::Other => {}
                Err(e) => return Err(classify_io(&e)),
            }
            if let Err(e) = self.tls.process_new_packets() {
                // (The alert rustls queued is not sent: the connection is
                // dropped at once.)
                return Err(ErrorKind::Tls(reason(&e)));
            }
            self.drain(dst)?;
        }
        Ok(true)
    }

    /// Moves decrypted plaintext into `dst`. Returns whether the peer's
    /// close_notify has been read.
    fn drain(&mut self, dst: &mut Vec<u8>) -> Result<bool, ErrorKind> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.tls.reader().read(&mut buf) {
                Ok(0) => return Ok(true),
                Ok(n) => dst.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                // EOF without close_notify: the response reader decides
                // whether the response was complete.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(true),
                Err(e) => return Err(classify_io(&e)),
            }
        }
    }

    /// The protocol the server chose by ALPN.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.tls.alpn_protocol()
    }

    /// Gives up on the connection: the close is a reset.
    pub fn abort(&mut self) {
        self.tcp.set_reset_on_close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{AlertDescription, CertificateError, Error};

    #[test]
    fn reasons() {
        assert_eq!(
            reason(&Error::InvalidCertificate(CertificateError::UnknownIssuer)),
            "unknown_issuer"
        );
        assert_eq!(
            reason(&Error::AlertReceived(AlertDescription::CertificateRequired)),
            "alert_certificate_required"
        );
        assert_eq!(
            reason(&Error::General("boom with spaces".into())),
            "general"
        );
        assert_eq!(reason(&Error::DecryptError), "decrypt_error");
        let expired = CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(2)),
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1)),
        };
        assert_eq!(reason(&Error::InvalidCertificate(expired)), "expired");
        let a = reason(&Error::InvalidCertificate(CertificateError::Expired));
        let b = reason(&Error::InvalidCertificate(CertificateError::Expired));
        assert!(std::ptr::eq(a, b), "interned once");
    }
}
