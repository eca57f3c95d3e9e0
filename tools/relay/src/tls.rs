//! The operator API's TLS (docs/relay.md, "Who may read what, and TLS"): rustls with the ring
//! provider, TLS 1.2 and 1.3 with rustls' safe defaults, the certificate chain and key from the
//! files `[http] tls_cert` and `tls_key` name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A PEM file could not be read or holds no item of the kind needed.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificate and key (a key that does not match, an unsupported key).
    #[error("the TLS certificate and key: {0}")]
    Rustls(#[from] rustls::Error),
}

fn pem(path: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> Error + '_ {
    move |e| Error::Pem {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// The server configuration for `cert` (a PEM chain, the server's own certificate first) and
/// `key` (PEM).
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, Error> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(pem(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem(cert))?;
    if chain.is_empty() {
        return Err(Error::Pem {
            path: cert.to_owned(),
            reason: "no CERTIFICATE in it".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem(key))?;
    // rustls marks the ring provider deprecated for lacking post-quantum key exchange; aws-lc-rs,
    // which has it, needs cmake and a C toolchain build this workspace does not carry.
    #[expect(deprecated, reason = "ring: no post-quantum key exchange, see above")]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?)
}
