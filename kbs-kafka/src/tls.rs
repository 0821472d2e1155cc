//! rustls client configuration from [`TlsConfig`].

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls;

use crate::config::TlsConfig;
use crate::error::{Error, Result};

fn config_error(reason: String) -> Error {
    Error::Tls {
        broker: String::new(),
        reason,
    }
}

/// Builds the rustls configuration: trusted roots from the CA file (or the system store),
/// optional client certificate, ring crypto, TLS 1.2 and 1.3.
pub(crate) fn client_config(tls: &TlsConfig) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| config_error(format!("cannot read CA file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(config_error(format!("CA file {} holds no certificate", path.display())));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| config_error(format!("bad CA certificate in {}: {e}", path.display())))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(config_error(format!(
                    "no CA file configured and no usable system root certificates ({} errors loading them)",
                    native.errors.len()
                )));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(e.to_string()))?
        .with_root_certificates(roots);
    let config = match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert_path), Some(key_path)) => {
            let chain = CertificateDer::pem_file_iter(cert_path)
                .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| config_error(format!("cannot read client certificate {}: {e}", cert_path.display())))?;
            let key = PrivateKeyDer::from_pem_file(key_path)
                .map_err(|e| config_error(format!("cannot read client key {}: {e}", key_path.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| config_error(format!("client certificate rejected: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(config_error(
                "a client certificate needs both client_cert_file and client_key_file".into(),
            ));
        }
    };
    Ok(Arc::new(config))
}

/// The name to verify a broker's certificate against.
pub(crate) fn server_name(tls: &TlsConfig, host: &str) -> Result<ServerName<'static>> {
    let name = tls.server_name.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_owned())
        .map_err(|e| config_error(format!("{name:?} is not a valid TLS server name: {e}")))
}
