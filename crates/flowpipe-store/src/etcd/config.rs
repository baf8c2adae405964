//! [`EtcdConfig`]: how to reach and authenticate to etcd, and the one place its rules are
//! checked ([`EtcdConfig::validate`]). The local server (flags and files) and the Lambda function
//! (environment and a Secrets Manager secret, [`EtcdConfig::from_secret_json`]) build one each and
//! word the typed [`EtcdConfigError`] in their own terms (a flag, a variable, a secret's field).

use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// How to reach and authenticate to etcd.
#[derive(Clone, Default)]
pub struct EtcdConfig {
    /// `http://host:port`, `https://host:port` or `host:port`, one per member.
    pub endpoints: Vec<String>,
    /// etcd user, for password authentication (with `password`).
    pub username: Option<String>,
    /// The user's password. Never printed.
    pub password: Option<String>,
    /// PEM CA bundle to verify the members' certificates (https endpoints).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate, for etcd's client-certificate auth (with `key_pem`).
    pub cert_pem: Option<Vec<u8>>,
    /// PEM private key of `cert_pem`. Never printed.
    pub key_pem: Option<Vec<u8>>,
    /// Longest wait to connect to a member (TCP and TLS). A member that does not answer is
    /// given up for this long before the client tries again; meanwhile requests go to the others.
    pub connect_timeout: Duration,
    /// Longest a request waits for etcd: each call, retries included, and in all an API request
    /// from its arrival (see [`crate::deadline`]). Past it the answer is UNAVAILABLE.
    pub request_timeout: Duration,
    /// While a request is open on a connection, an HTTP/2 ping is sent after this long without
    /// traffic...
    pub keepalive_interval: Duration,
    /// ...and the connection is closed (its requests fail, the next ones go to other members)
    /// when the ping is not answered within this. A member cut off silently therefore holds a
    /// request for at most about interval + timeout.
    pub keepalive_timeout: Duration,
    /// Sends etcd's `hasleader` metadata with every request: a member that has lost its leader
    /// answers "no leader" at once (and the call is tried on another member) instead of holding
    /// the request until the timeout. On by default ([`EtcdConfig::new`]).
    pub require_leader: bool,
    /// A prefix put in front of every key, as etcd's `--namespace` proxy option does. Tests use
    /// it to give each test its own keyspace in one etcd. Components that read the keys (the
    /// controller) must use the same namespace; leave it empty in production.
    pub namespace: Vec<u8>,
}

/// Which PEM value of an [`EtcdConfig`] an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemField {
    /// [`EtcdConfig::ca_pem`].
    Ca,
    /// [`EtcdConfig::cert_pem`].
    Cert,
    /// [`EtcdConfig::key_pem`].
    Key,
}

/// What is wrong with an [`EtcdConfig`]. `Display` says it in the config's own terms; front ends
/// that know which flag, variable or field a value came from say it in theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdConfigError {
    /// No endpoint at all.
    NoEndpoints,
    /// An endpoint that is not `http(s)://host:port` or `host:port`.
    BadEndpoint(String),
    /// An endpoint with `user:password@` in it (it would end up in logs).
    CredentialsInEndpoint,
    /// A username without a password, or the reverse.
    UserWithoutPassword,
    /// A client certificate without its key, or the reverse.
    CertWithoutKey,
    /// https endpoints, and no CA to verify them (no public roots are compiled in).
    HttpsWithoutCa,
    /// A PEM value that holds no certificate (CA, client certificate) or no private key.
    BadPem(PemField),
    /// A Secrets Manager secret that is not the JSON object [`EtcdConfig::from_secret_json`]
    /// reads; the message names the field, never a value.
    Secret(String),
}

impl fmt::Display for EtcdConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtcdConfigError::NoEndpoints => f.write_str("no etcd endpoints configured"),
            EtcdConfigError::BadEndpoint(e) => write!(
                f,
                "invalid etcd endpoint {e:?}: expected http://host:port or https://host:port"
            ),
            EtcdConfigError::CredentialsInEndpoint => f.write_str(
                "invalid etcd endpoint: credentials in the URL are not supported (they would be logged); give a username and password instead",
            ),
            EtcdConfigError::UserWithoutPassword => {
                f.write_str("etcd username and password must be given together")
            }
            EtcdConfigError::CertWithoutKey => {
                f.write_str("etcd client certificate and key must be given together")
            }
            EtcdConfigError::HttpsWithoutCa => {
                f.write_str("https etcd endpoints need the CA that signed their certificates")
            }
            EtcdConfigError::BadPem(PemField::Ca) => {
                f.write_str("the etcd CA holds no PEM certificate")
            }
            EtcdConfigError::BadPem(PemField::Cert) => {
                f.write_str("the etcd client certificate holds no PEM certificate")
            }
            EtcdConfigError::BadPem(PemField::Key) => {
                f.write_str("the etcd client key holds no PEM private key")
            }
            EtcdConfigError::Secret(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for EtcdConfigError {}

impl EtcdConfig {
    /// The default [`EtcdConfig::connect_timeout`]: 1 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// The default [`EtcdConfig::request_timeout`]: 5 s.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
    /// The default [`EtcdConfig::keepalive_interval`]: 2 s.
    pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
    /// The default [`EtcdConfig::keepalive_timeout`]: 1 s.
    pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(1);
    /// The default [`EtcdConfig::require_leader`]: on.
    pub const DEFAULT_REQUIRE_LEADER: bool = true;

    /// A configuration for `endpoints` with the default timeouts: connect 1 s, request 5 s,
    /// keep-alive pings after 2 s of silence on a connection with a request open, answered
    /// within 1 s. RELIABILITY.md has the measurements behind them.
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            keepalive_interval: Self::DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: Self::DEFAULT_KEEPALIVE_TIMEOUT,
            require_leader: Self::DEFAULT_REQUIRE_LEADER,
            ..Default::default()
        }
    }

    /// Endpoints from a comma-separated list (`ETCD_ENDPOINTS`), each checked.
    pub fn parse_endpoints(list: &str) -> Result<Vec<String>, EtcdConfigError> {
        let endpoints: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(String::from)
            .collect();
        endpoints.iter().try_for_each(|e| check_endpoint(e))?;
        Ok(endpoints)
    }

    /// Checks every rule before anything connects: endpoints well-formed and without
    /// credentials, user and password together, certificate and key together, a CA for https,
    /// PEM values that hold what they should.
    pub fn validate(&self) -> Result<(), EtcdConfigError> {
        if self.endpoints.is_empty() {
            return Err(EtcdConfigError::NoEndpoints);
        }
        for e in &self.endpoints {
            check_endpoint(e)?;
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(EtcdConfigError::UserWithoutPassword);
        }
        if self.cert_pem.is_some() != self.key_pem.is_some() {
            return Err(EtcdConfigError::CertWithoutKey);
        }
        for (field, pem) in [
            (PemField::Ca, &self.ca_pem),
            (PemField::Cert, &self.cert_pem),
        ] {
            if let Some(pem) = pem
                && !has_certificate(pem)
            {
                return Err(EtcdConfigError::BadPem(field));
            }
        }
        if let Some(key) = &self.key_pem
            && !matches!(
                rustls_pemfile::private_key(&mut key.as_slice()),
                Ok(Some(_))
            )
        {
            return Err(EtcdConfigError::BadPem(PemField::Key));
        }
        if self.ca_pem.is_none() && self.endpoints.iter().any(|e| e.starts_with("https://")) {
            return Err(EtcdConfigError::HttpsWithoutCa);
        }
        Ok(())
    }

    /// The configuration held by a Secrets Manager secret's JSON text (the Lambda function's
    /// `FLOW_ETCD_SECRET_ARN`): an object with `endpoints` (a list, or a comma-separated string;
    /// `fallback`, from `ETCD_ENDPOINTS`, when it has none), optional `username`/`password` and
    /// PEM `ca`/`cert`/`key`. Checked as [`EtcdConfig::validate`] checks; errors name the field,
    /// never its value.
    pub fn from_secret_json(text: &str, fallback: &[String]) -> Result<Self, EtcdConfigError> {
        let secret = |m: String| EtcdConfigError::Secret(m);
        // serde_json's syntax errors give a position, never the text.
        let v: Value =
            serde_json::from_str(text).map_err(|e| secret(format!("is not valid JSON ({e})")))?;
        let Value::Object(map) = v else {
            return Err(secret(
                "must be a JSON object with `endpoints` (and optional `username`, `password`, \
                 `ca`, `cert`, `key`)"
                    .into(),
            ));
        };
        let string = |field: &str| -> Result<Option<String>, EtcdConfigError> {
            match map.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(secret(format!("field `{field}` must be a string"))),
            }
        };
        let in_endpoints = |e: EtcdConfigError| secret(format!("field `endpoints`: {e}"));
        let endpoints = match map.get("endpoints") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => Self::parse_endpoints(s).map_err(in_endpoints)?,
            Some(Value::Array(items)) => {
                let mut list = Vec::new();
                for item in items {
                    let Value::String(s) = item else {
                        return Err(secret("field `endpoints` must be a list of strings".into()));
                    };
                    list.extend(Self::parse_endpoints(s).map_err(in_endpoints)?);
                }
                list
            }
            Some(_) => {
                return Err(secret(
                    "field `endpoints` must be a list of strings or a comma-separated string"
                        .into(),
                ));
            }
        };
        let endpoints = match (endpoints.is_empty(), fallback.is_empty()) {
            (false, _) => endpoints,
            (true, false) => fallback.to_vec(),
            (true, true) => {
                return Err(secret(
                    "has no `endpoints` (and ETCD_ENDPOINTS is not set): add e.g. \
                     \"endpoints\": [\"https://etcd-0.internal:2379\"]"
                        .into(),
                ));
            }
        };
        let config = EtcdConfig {
            username: string("username")?,
            password: string("password")?,
            ca_pem: string("ca")?.map(String::into_bytes),
            cert_pem: string("cert")?.map(String::into_bytes),
            key_pem: string("key")?.map(String::into_bytes),
            ..EtcdConfig::new(endpoints)
        };
        config.validate().map_err(|e| match e {
            EtcdConfigError::UserWithoutPassword => {
                secret("fields `username` and `password` must be given together".into())
            }
            EtcdConfigError::CertWithoutKey => secret(
                "fields `cert` and `key` (the client certificate) must be given together".into(),
            ),
            EtcdConfigError::BadPem(PemField::Ca) => secret(
                "field `ca` holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)".into(),
            ),
            EtcdConfigError::BadPem(PemField::Cert) => secret(
                "field `cert` holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)"
                    .into(),
            ),
            EtcdConfigError::BadPem(PemField::Key) => {
                secret("field `key` holds no PEM private key".into())
            }
            EtcdConfigError::HttpsWithoutCa => secret(
                "has https endpoints but no `ca`: add the PEM CA bundle that signed etcd's \
                 certificates"
                    .into(),
            ),
            other => other,
        })?;
        Ok(config)
    }
}

/// Checks an endpoint: `http://host:port`, `https://host:port` or `host:port`, without
/// credentials in it (they would end up in logs).
fn check_endpoint(e: &str) -> Result<(), EtcdConfigError> {
    let (scheme_ok, host_port) = match e.split_once("://") {
        Some((scheme, rest)) => (scheme == "http" || scheme == "https", rest),
        None => (true, e),
    };
    if host_port.contains('@') {
        return Err(EtcdConfigError::CredentialsInEndpoint);
    }
    if !scheme_ok || !host_port.contains(':') || host_port.starts_with(':') {
        return Err(EtcdConfigError::BadEndpoint(e.to_string()));
    }
    Ok(())
}

fn has_certificate(pem: &[u8]) -> bool {
    let mut reader = pem;
    rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .is_ok_and(|certs| !certs.is_empty())
}

impl fmt::Debug for EtcdConfig {
    // Never print the password or key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls_ca", &self.ca_pem.is_some())
            .field("client_cert", &self.cert_pem.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("keepalive_timeout", &self.keepalive_timeout)
            .field("require_leader", &self.require_leader)
            .field("namespace", &String::from_utf8_lossy(&self.namespace))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_checked_without_quoting_them() {
        let c = EtcdConfig::from_secret_json(
            r#"{"endpoints": ["http://a:2379", "b:2379"], "username": "u", "password": "p"}"#,
            &[],
        )
        .unwrap();
        assert_eq!(c.endpoints, ["http://a:2379", "b:2379"]);
        assert_eq!(c.username.as_deref(), Some("u"));
        let c =
            EtcdConfig::from_secret_json(r#"{"endpoints": "http://a:2379,http://b:2379"}"#, &[])
                .unwrap();
        assert_eq!(c.endpoints.len(), 2);
        let c =
            EtcdConfig::from_secret_json(r#"{"username": "u", "password": "p"}"#, &["x:1".into()])
                .unwrap();
        assert_eq!(c.endpoints, ["x:1"]);

        let cases = [
            ("not json", "is not valid JSON"),
            ("[1]", "must be a JSON object"),
            (
                r#"{"username": "u", "password": "p"}"#,
                "has no `endpoints`",
            ),
            (r#"{"endpoints": 5}"#, "field `endpoints` must be"),
            (
                r#"{"endpoints": ["a:1"], "password": 12345}"#,
                "field `password` must be a string",
            ),
            (
                r#"{"endpoints": ["a:1"], "username": "u"}"#,
                "must be given together",
            ),
            (
                r#"{"endpoints": ["a:1"], "cert": "x"}"#,
                "must be given together",
            ),
            (
                r#"{"endpoints": ["a:1"], "ca": "hunter2"}"#,
                "field `ca` holds no PEM certificate",
            ),
            (r#"{"endpoints": ["https://a:1"]}"#, "no `ca`"),
            (
                r#"{"endpoints": ["ftp://a:1"]}"#,
                "field `endpoints`: invalid etcd endpoint",
            ),
        ];
        for (text, expected) in cases {
            let e = EtcdConfig::from_secret_json(text, &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains(expected), "{text}: {e}");
            assert!(!e.contains("12345") && !e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn endpoints_are_checked() {
        assert_eq!(
            EtcdConfig::parse_endpoints(" http://a:1, b:2 ,").unwrap(),
            ["http://a:1", "b:2"]
        );
        assert_eq!(
            EtcdConfig::parse_endpoints("http://u:p@h:2379"),
            Err(EtcdConfigError::CredentialsInEndpoint)
        );
        for bad in ["etcd", "ftp://h:1", "http://:2379"] {
            assert_eq!(
                EtcdConfig::parse_endpoints(bad),
                Err(EtcdConfigError::BadEndpoint(bad.into()))
            );
        }
        let https = EtcdConfig::new(vec!["https://h:2379".into()]);
        assert_eq!(https.validate(), Err(EtcdConfigError::HttpsWithoutCa));
        assert_eq!(
            EtcdConfig::new(Vec::new()).validate(),
            Err(EtcdConfigError::NoEndpoints)
        );
    }
}
