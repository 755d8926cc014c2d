//! TLS stage, trust domains: a client certificate verifier that holds one
//! CA bundle per SPIFFE trust domain and lets a certificate chain only to
//! the bundle of its own ID's trust domain. A partner CA trusted for
//! `spiffe://partner.example/…` cannot vouch for `spiffe://mesh.local/…`,
//! which one combined bundle would allow.
//!
//! Each domain's checks (chain, validity, revocation lists) are webpki's,
//! through that domain's own verifier; this file only picks the verifier.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::PeerIdentity;

/// Routes a client certificate to the verifier of its trust domain.
#[derive(Debug)]
pub(crate) struct TrustDomainVerifier {
    domains: Vec<(String, Arc<dyn ClientCertVerifier>)>,
    hints: Vec<DistinguishedName>,
    mandatory: bool,
}

impl TrustDomainVerifier {
    /// `domains` must not be empty (validation sees to it).
    pub(crate) fn new(
        domains: Vec<(String, Arc<dyn ClientCertVerifier>)>,
        mandatory: bool,
    ) -> TrustDomainVerifier {
        let hints = domains
            .iter()
            .flat_map(|(_, v)| v.root_hint_subjects().iter().cloned())
            .collect();
        TrustDomainVerifier {
            domains,
            hints,
            mandatory,
        }
    }

    /// The verifier for `leaf`'s SPIFFE trust domain, if it has an ID in a
    /// configured domain.
    fn for_leaf(&self, leaf: &CertificateDer<'_>) -> Option<&Arc<dyn ClientCertVerifier>> {
        let id = PeerIdentity::from_der(leaf.as_ref()).ok()?.spiffe_id?;
        let rest = id.strip_prefix("spiffe://")?;
        let domain = rest.split('/').next()?;
        self.domains
            .iter()
            .find(|(name, _)| name == domain)
            .map(|(_, v)| v)
    }

    fn any(&self) -> &Arc<dyn ClientCertVerifier> {
        &self.domains[0].1
    }
}

impl ClientCertVerifier for TrustDomainVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        // No SPIFFE ID, or one in a domain without a bundle here: no CA of
        // this listener may vouch for it (TLS alert unknown_ca).
        let verifier = self
            .for_leaf(end_entity)
            .ok_or(Error::InvalidCertificate(CertificateError::UnknownIssuer))?;
        verifier.verify_client_cert(end_entity, intermediates, now)
    }

    // Signatures depend on the algorithms, not on the trust anchors: any
    // domain's verifier checks them the same way.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.any().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.any().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.any().supported_verify_schemes()
    }
}
