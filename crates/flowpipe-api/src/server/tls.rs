//! TLS of the local server's listeners (rustls with the ring provider): a certificate and key
//! read and checked once at startup ([`TlsIdentity`]), then handed to each listener in the form
//! its server takes.

use std::sync::Arc;

/// A listener's certificate chain and private key, parsed and checked once: building it builds
/// the rustls configuration REST serves with, so a key that is not the certificate's fails at
/// startup, naming the files, never at the first handshake.
#[derive(Clone)]
pub struct TlsIdentity {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    rustls: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsIdentity(<pem>)")
    }
}

impl TlsIdentity {
    /// A PEM certificate chain and its private key; the error says what is wrong with them.
    pub fn from_pem(cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Result<Self, String> {
        let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("certificate PEM: {e}"))?;
        if certs.is_empty() {
            return Err("no certificate found in the certificate file".into());
        }
        let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
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
        Ok(TlsIdentity {
            cert_pem,
            key_pem,
            rustls: Arc::new(config),
        })
    }

    /// The rustls configuration the REST listener serves with.
    pub fn rustls_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.rustls)
    }

    /// The identity the gRPC listener (tonic, which builds its own rustls configuration from
    /// PEM) serves with.
    pub fn tonic_identity(&self) -> tonic::transport::Identity {
        tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}
