//! TLS as libpq's `sslmode` means it, on the rustls (and ring) pingora already brings. The
//! driver knows only disable, prefer and require, so the URL's mode is read here first:
//!
//! | sslmode                 | driver  | certificate checked                               |
//! |-------------------------|---------|---------------------------------------------------|
//! | disable                 | disable | no TLS                                            |
//! | allow, prefer (default) | prefer  | no: encryption only, as libpq without a root file |
//! | require                 | require | no: encryption only, as libpq without a root file |
//! | verify-ca               | require | chain, against the system's roots                 |
//! | verify-full             | require | chain and host name                               |

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verify {
    Nothing,
    Chain,
    Full,
}

/// `url` in the form the driver parses, and what the URL's `sslmode` asks to verify.
pub(super) fn for_driver(url: &str) -> (String, Verify) {
    let mode = sslmode(url);
    let (driver, verify) = match mode {
        Some("verify-full") => ("require", Verify::Full),
        Some("verify-ca") => ("require", Verify::Chain),
        Some("allow") => ("prefer", Verify::Nothing),
        _ => return (url.to_string(), Verify::Nothing),
    };
    let from = format!("sslmode={}", mode.unwrap_or_default());
    (url.replacen(&from, &format!("sslmode={driver}"), 1), verify)
}

/// The value of the first `sslmode=` (URL query or `key=value` form).
fn sslmode(url: &str) -> Option<&str> {
    let at = url.find("sslmode=")? + "sslmode=".len();
    let rest = &url[at..];
    let end = rest
        .find(|c: char| c == '&' || c.is_whitespace())
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The connector for `verify`. The system's roots are read only when a mode verifies.
pub(super) fn connector(verify: Verify) -> Result<MakeRustlsConnect, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Backend(Box::new(e)))?;
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Nothing => Arc::new(EncryptionOnly(provider)),
        Verify::Chain => Arc::new(ChainOnly(webpki(provider)?)),
        Verify::Full => webpki(provider)?,
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn webpki(provider: Arc<CryptoProvider>) -> Result<Arc<WebPkiServerVerifier>, StoreError> {
    let lost = |what: String| StoreError::Unavailable {
        retryable: false,
        source: what.into(),
    };
    let certs = rustls_native_certs::load_native_certs()
        .map_err(|e| lost(format!("cannot read the system's TLS roots: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    // A root the platform has but rustls cannot parse is skipped: the others still verify.
    let _ = roots.add_parsable_certificates(certs);
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| {
            lost(format!(
                "no usable system TLS roots for sslmode verify-*: {e}"
            ))
        })
}

/// `prefer` and `require`: the session is encrypted, whoever the server is. The handshake's
/// signatures are still checked against the certificate presented.
#[derive(Debug)]
struct EncryptionOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptionOnly {
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
        verify_tls12_signature(
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
        verify_tls13_signature(
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

/// `verify-ca`: the chain must lead to a system root; the name is not checked. WebPKI checks
/// the chain before the name, so a name error means the chain passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_modes_become_the_drivers_and_a_verification() {
        assert_eq!(
            for_driver("postgres://h/d?sslmode=verify-full&application_name=x"),
            (
                "postgres://h/d?sslmode=require&application_name=x".into(),
                Verify::Full
            )
        );
        assert_eq!(
            for_driver("host=h sslmode=verify-ca dbname=d"),
            ("host=h sslmode=require dbname=d".into(), Verify::Chain)
        );
        assert_eq!(
            for_driver("postgres://h/d?sslmode=allow").0,
            "postgres://h/d?sslmode=prefer"
        );
        for url in ["postgres://h/d", "postgres://h/d?sslmode=require"] {
            assert_eq!(for_driver(url), (url.into(), Verify::Nothing));
        }
    }
}
