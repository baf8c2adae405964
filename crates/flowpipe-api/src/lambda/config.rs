//! The function's configuration, from environment variables only: Lambda bills its init phase,
//! so reading it does no I/O (the secret, if any, is read at the first invocation).

use flowpipe_store::{EtcdConfig, EtcdConfigError};

use super::{ENDPOINTS_VAR, SECRET_VAR};
use crate::ApiKey;
use crate::settings::{
    self, API_KEY_VAR, AUTH_ENABLED_VAR, HttpSettings, TelemetrySettings, parse_bool,
};

/// Where the function finds etcd.
#[derive(Debug, Clone)]
pub enum EtcdSource {
    /// `ETCD_ENDPOINTS`: an etcd that needs no credentials.
    Endpoints(Vec<String>),
    /// `FLOW_ETCD_SECRET_ARN`: endpoints and credentials in a Secrets Manager secret, read at the
    /// first invocation. `endpoints` (from `ETCD_ENDPOINTS`) are used when the secret has none.
    Secret {
        /// The secret's ARN or name.
        id: String,
        /// `ETCD_ENDPOINTS`, if set.
        endpoints: Vec<String>,
    },
}

/// The function's configuration, from environment variables only (no I/O).
#[derive(Debug, Clone)]
pub struct LambdaConfig {
    /// Where etcd is.
    pub etcd: EtcdSource,
    /// As on the local server.
    pub http: HttpSettings,
    /// The key every API call must carry, when authentication is enabled.
    pub api_key: Option<ApiKey>,
    /// Prefix of every etcd key (tests); empty in production.
    pub namespace: Vec<u8>,
    /// As on the local server (`FLOW_OBSERVABILITY_ENABLED`, `FLOW_LOG_LEVEL`, `OTEL_*`).
    pub telemetry: TelemetrySettings,
}

impl LambdaConfig {
    /// A configuration on `etcd` with the default HTTP settings and no authentication.
    pub fn new(etcd: EtcdSource) -> Self {
        LambdaConfig {
            etcd,
            http: HttpSettings::default(),
            api_key: None,
            namespace: Vec::new(),
            telemetry: TelemetrySettings::default(),
        }
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `var` (the environment, or a table in tests). The error is one
    /// line naming the variable.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let endpoints = match get(ENDPOINTS_VAR) {
            Some(list) => {
                EtcdConfig::parse_endpoints(&list).map_err(|e| format!("{ENDPOINTS_VAR}: {e}"))?
            }
            None => Vec::new(),
        };
        let etcd = match get(SECRET_VAR) {
            Some(id) => EtcdSource::Secret { id, endpoints },
            None if endpoints.is_empty() => {
                return Err(format!(
                    "no etcd configured: set {ENDPOINTS_VAR} (comma-separated endpoints) or \
                     {SECRET_VAR} (a Secrets Manager secret holding them)"
                ));
            }
            None => match EtcdConfig::new(endpoints.clone()).validate() {
                Err(EtcdConfigError::HttpsWithoutCa) => {
                    return Err(format!(
                        "{ENDPOINTS_VAR} has https endpoints but no CA to verify them: put the \
                         endpoints and the PEM `ca` in the secret named by {SECRET_VAR}"
                    ));
                }
                Err(e) => return Err(format!("{ENDPOINTS_VAR}: {e}")),
                Ok(()) => EtcdSource::Endpoints(endpoints),
            },
        };

        let auth_enabled = match get(AUTH_ENABLED_VAR) {
            None => false,
            Some(v) => parse_bool(&v).map_err(|e| format!("{AUTH_ENABLED_VAR}: {e}"))?,
        };
        let api_key = settings::api_key(auth_enabled, get(API_KEY_VAR).as_deref(), "")?;
        let http = HttpSettings::from_env(&var)?;
        let telemetry = TelemetrySettings::from_env(&var)?;
        Ok(LambdaConfig {
            etcd,
            http,
            api_key,
            namespace: Vec::new(),
            telemetry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(vars: &[(&str, &str)]) -> Result<LambdaConfig, String> {
        LambdaConfig::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn etcd_comes_from_endpoints_or_a_secret() {
        let c = config(&[(
            "ETCD_ENDPOINTS",
            "http://10.0.0.1:2379, http://10.0.0.2:2379",
        )])
        .unwrap();
        assert!(matches!(c.etcd, EtcdSource::Endpoints(ref e) if e.len() == 2));
        let c = config(&[(
            "FLOW_ETCD_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:1:secret:x",
        )])
        .unwrap();
        assert!(matches!(c.etcd, EtcdSource::Secret { ref endpoints, .. } if endpoints.is_empty()));
        let e = config(&[]).unwrap_err();
        assert!(
            e.contains("ETCD_ENDPOINTS") && e.contains("FLOW_ETCD_SECRET_ARN"),
            "{e}"
        );
        let e = config(&[("ETCD_ENDPOINTS", "etcd")]).unwrap_err();
        assert!(
            e.starts_with("ETCD_ENDPOINTS: invalid etcd endpoint"),
            "{e}"
        );
        let e = config(&[("ETCD_ENDPOINTS", "https://etcd:2379")]).unwrap_err();
        assert!(e.contains("CA"), "{e}");
    }

    #[test]
    fn auth_and_http_settings_as_on_the_local_server() {
        let base = ("ETCD_ENDPOINTS", "127.0.0.1:2379");
        let e = config(&[base, ("FLOW_AUTH_ENABLED", "true")]).unwrap_err();
        assert!(e.contains("FLOW_API_KEY"), "{e}");
        let c = config(&[base, ("FLOW_AUTH_ENABLED", "1"), ("FLOW_API_KEY", "k")]).unwrap();
        assert!(c.api_key.is_some());
        let c = config(&[base, ("FLOW_API_KEY", "k")]).unwrap();
        assert!(
            c.api_key.is_none(),
            "a key without FLOW_AUTH_ENABLED does not enable auth"
        );
        assert!(config(&[base, ("FLOW_AUTH_ENABLED", "maybe")]).is_err());
        let c = config(&[
            base,
            ("FLOW_REQUEST_TIMEOUT", "500ms"),
            ("FLOW_HTTP_BODY_LIMIT", "2048"),
            ("FLOW_CORS_ORIGINS", "https://a, https://b"),
            ("FLOW_ENV", "prod"),
        ])
        .unwrap();
        assert_eq!(c.http.request_timeout, Duration::from_millis(500));
        assert_eq!(c.http.body_limit, 2048);
        assert_eq!(c.http.cors_origins, ["https://a", "https://b"]);
        assert_eq!(c.http.env.as_deref(), Some("prod"));
        assert!(config(&[base, ("FLOW_REQUEST_TIMEOUT", "5h")]).is_err());
        assert!(config(&[base, ("FLOW_HTTP_BODY_LIMIT", "0")]).is_err());
        let c = config(&[
            base,
            ("FLOW_OBSERVABILITY_ENABLED", "true"),
            ("FLOW_LOG_LEVEL", "Error"),
        ])
        .unwrap();
        assert!(c.telemetry.enabled);
        assert_eq!(c.telemetry.log_level, settings::LogLevel::Error);
        let e = config(&[base, ("FLOW_LOG_LEVEL", "chatty")]).unwrap_err();
        assert!(e.starts_with("FLOW_LOG_LEVEL: "), "{e}");
    }
}
