//! API-key authentication, shared by REST and gRPC: `Authorization: Bearer <key>` (the scheme
//! case-insensitive), compared in constant time. Health endpoints never require it.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use flowpipe_core::{Detail, Error};

/// The configured API key, kept as its SHA-256: comparing digests of equal length in constant
/// time reveals neither the key nor its length through timing. Its `Debug` never shows it.
#[derive(Clone)]
pub struct ApiKey([u8; 32]);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Authentication is enabled but no (non-blank) key is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingApiKey;

impl ApiKey {
    /// `None` for an empty key: enabling authentication without a key is a startup error.
    pub fn new(key: &str) -> Option<Self> {
        let key = key.trim();
        (!key.is_empty()).then(|| ApiKey(Sha256::digest(key.as_bytes()).into()))
    }

    /// The key to enforce, from `FLOW_AUTH_ENABLED` and `FLOW_API_KEY` (the local server's flags
    /// and the Lambda function's variables alike): none when authentication is off, and
    /// [`MissingApiKey`] when it is on without a key, which must refuse to serve rather than
    /// serve open. Each entry point words the refusal for its own configuration surface.
    pub fn when_enabled(enabled: bool, key: Option<&str>) -> Result<Option<Self>, MissingApiKey> {
        match (enabled, key.and_then(ApiKey::new)) {
            (true, None) => Err(MissingApiKey),
            (true, key) => Ok(key),
            (false, _) => Ok(None),
        }
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<(), Error> {
        let Some(value) = authorization else {
            return Err(unauthenticated(
                "missing Authorization header; send `Authorization: Bearer <api key>`",
            ));
        };
        let value = std::str::from_utf8(value).unwrap_or("").trim();
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauthenticated("Authorization must use the Bearer scheme"));
        }
        let presented: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        if bool::from(presented.ct_eq(&self.0)) {
            Ok(())
        } else {
            Err(unauthenticated("invalid API key"))
        }
    }
}

fn unauthenticated(message: &str) -> Error {
    Error::Unauthenticated(Detail::new("UNAUTHENTICATED", message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let k = ApiKey::new("s3cret").unwrap();
        assert!(k.check(Some(b"Bearer s3cret")).is_ok());
        assert!(k.check(Some(b"bearer s3cret")).is_ok());
        assert!(k.check(Some(b"BEARER   s3cret ")).is_ok());
        assert!(k.check(Some(b"Bearer s3cre")).is_err());
        assert!(k.check(Some(b"Basic s3cret")).is_err());
        assert!(k.check(Some(b"s3cret")).is_err());
        assert!(k.check(None).is_err());
        assert!(ApiKey::new("  ").is_none());
        assert!(ApiKey::when_enabled(false, Some("k")).unwrap().is_none());
        assert!(ApiKey::when_enabled(true, Some("k")).unwrap().is_some());
        assert!(ApiKey::when_enabled(true, Some(" ")).is_err());
        assert!(ApiKey::when_enabled(true, None).is_err());
        assert_eq!(format!("{k:?}"), "ApiKey(<redacted>)");
    }
}
