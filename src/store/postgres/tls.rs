//! TLS to PostgreSQL with rustls: the connector each `sslmode` needs. `prefer` and `require` encrypt without
//! checking the certificate (as libpq does: they guard against eavesdropping, not against impersonation);
//! `verify-ca` checks the chain against `sslrootcert`; `verify-full` the chain and the host name. Refusals say
//! which check failed and against what, in words an operator can act on.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as DriverMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::settings::{PostgresUrl, RootCerts, SslMode};

/// The driver's mode and the connector for a store URL; fails when `sslrootcert` cannot be read or holds no
/// certificate.
pub fn connector(url: &PostgresUrl) -> anyhow::Result<(DriverMode, MakeRustlsConnect)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = match (&url.root, url.ssl_mode.verifies()) {
        (Some(root), true) => Some(Chain {
            webpki: WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots(root)?),
                provider.clone(),
            )
            .build()?,
            check_name: url.ssl_mode == SslMode::VerifyFull,
            roots: describe(root),
        }),
        _ => None,
    };
    let verifier = Arc::new(Verifier {
        provider: provider.clone(),
        chain,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let mode = match url.ssl_mode {
        SslMode::Disable => DriverMode::Disable,
        SslMode::Prefer => DriverMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverMode::Require,
    };
    Ok((mode, MakeRustlsConnect::new(config)))
}

fn roots(root: &RootCerts) -> anyhow::Result<RootCertStore> {
    let path = match root {
        RootCerts::System => {
            return Ok(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            });
        }
        RootCerts::File(path) => path,
    };
    let read = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "store.url: sslrootcert {} cannot be read: {e}",
            path.display()
        )
    };
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| read(&e))? {
        store
            .add(cert.map_err(|e| read(&e))?)
            .map_err(|e| read(&e))?;
    }
    if store.is_empty() {
        return Err(read(&"it holds no PEM certificate"));
    }
    Ok(store)
}

fn describe(root: &RootCerts) -> String {
    match root {
        RootCerts::System => "the public web roots (sslrootcert=system)".into(),
        RootCerts::File(path) => format!("sslrootcert {}", path.display()),
    }
}

/// Every mode's check of the server. The handshake's signatures are always checked, so the session is
/// encrypted to whoever holds the certificate's key; `prefer` and `require` stop there (no `chain`).
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    chain: Option<Chain>,
}

/// `verify-ca` and `verify-full`: rustls' WebPKI checks, with the host name check skipped for `verify-ca`.
#[derive(Debug)]
struct Chain {
    webpki: Arc<WebPkiServerVerifier>,
    check_name: bool,
    /// The roots in words, for refusals.
    roots: String,
}

impl Chain {
    /// WebPKI's verdict, with the two refusals operators meet rewritten to say what was checked.
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let verdict = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let refused = |why: String| {
            Err(Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(Refused(why))),
            )))
        };
        match verdict {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => refused(format!(
                "the server's certificate is not for host `{}` (sslmode=verify-full checks the host name; connect by the name the certificate carries)",
                server_name.to_str()
            )),
            Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => refused(format!(
                "the server's certificate is not signed by a CA in {}",
                self.roots
            )),
            verdict => verdict,
        }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match &self.chain {
            Some(chain) => chain.verify(end_entity, intermediates, server_name, ocsp_response, now),
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why a certificate was refused, in words; rustls prints it with `Debug`, so that is the plain text too.
struct Refused(String);

impl std::fmt::Debug for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}
