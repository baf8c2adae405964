//! TLS for the local server's listeners (rustls with the ring provider).

use std::sync::Arc;

use super::config::TlsFiles;

/// A rustls server configuration from a PEM certificate chain and private key; errors say what
/// is wrong with the files.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut files.cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate found in the certificate file".into());
    }
    let key = rustls_pemfile::private_key(&mut files.key_pem.as_slice())
        .map_err(|e| format!("key PEM: {e}"))?
        .ok_or("no private key found in the key file")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
