//! TLS for AMQPS and the management API's HTTPS, with rustls: a server config from PEM files
//! (certificate chain, private key, and optionally the CAs that client certificates must chain
//! to, as RabbitMQ's ssl_options cacertfile/verify/fail_if_no_peer_cert), and the common name
//! of a verified client certificate for SASL EXTERNAL.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// What `--tls-cert`, `--tls-key`, `--tls-ca`, `--tls-verify-peer` and
/// `--tls-fail-if-no-peer-cert` say.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CAs for client certificates; with `verify_peer`, clients are asked for one.
    pub ca: Option<PathBuf>,
    /// RabbitMQ's verify_peer (default verify_none).
    pub verify_peer: bool,
    /// Refuse clients without a certificate (only with `verify_peer`).
    pub fail_if_no_peer_cert: bool,
}

fn bad(what: &str, path: &std::path::Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what} {}: {e}", path.display()),
    )
}

/// A rustls server config (TLS 1.2 and 1.3) for these files.
pub fn server_config(files: &TlsFiles) -> io::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| bad("cannot read TLS certificate", &files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("cannot parse TLS certificate", &files.cert, e))?;
    if certs.is_empty() {
        return Err(bad("no certificate in", &files.cert, "empty"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| bad("cannot read TLS private key", &files.key, e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(format!("TLS versions: {e}")))?;
    let builder = match (&files.ca, files.verify_peer) {
        (Some(ca), true) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| bad("cannot read CA", ca, e))? {
                let c = c.map_err(|e| bad("cannot parse CA", ca, e))?;
                roots
                    .add(c)
                    .map_err(|e| bad("bad CA certificate in", ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if files.fail_if_no_peer_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|e| bad("cannot use CA", ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        (None, true) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--tls-verify-peer needs --tls-ca",
            ))
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| bad("TLS certificate and key do not fit", &files.cert, e))?;
    config.alpn_protocols = Vec::new();
    Ok(Arc::new(config))
}

/// The common name of the client's (verified) certificate.
pub fn peer_common_name(conn: &rustls::ServerConnection) -> Option<String> {
    let cert = conn.peer_certificates()?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}
