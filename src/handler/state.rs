//! What every transport shares: the core over the process's one store, and the settings of the
//! HTTP surface. Built once per process, cloned (cheaply) into every request.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::core::{Environment, FlowRegistry, SchemaRegistry};
use crate::store::Store;

use super::auth::ApiKey;

/// The real environment: system clock, random UUIDs, tokio timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn new_uid(&self) -> String {
        uuid::Uuid::new_v4().to_string()
    }

    fn random(&self) -> u64 {
        rand::random()
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await
    }
}

/// A duration as written in flags and environment variables: `500ms`, `15s`, `1m`, or a number of
/// seconds. Shared by the local server's and the Lambda function's configuration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (e.g. 500ms, 15s, 1m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("invalid duration {s:?} (units: ms, s, m)")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A boolean as written in flags and environment variables (`true`/`false`, `1`/`0`, `yes`/`no`,
/// `on`/`off`; empty is false).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "f" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true or false, got {s:?}")),
    }
}

/// Settings of the HTTP surface (REST and the Lambda function).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted; larger gets 413.
    pub body_limit: usize,
    /// A request running longer than this gets 504.
    pub request_timeout: Duration,
    /// Origins allowed by CORS; empty disables CORS, `*` allows any.
    pub cors_origins: Vec<String>,
    /// `FLOW_ENV`, shown in `/readyz`.
    pub env: Option<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(15),
            cors_origins: Vec::new(),
            env: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_booleans() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        for bad in ["0s", "5h", "", "x", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_bool("TRUE").unwrap() && parse_bool(" on ").unwrap());
        assert!(!parse_bool("").unwrap() && !parse_bool("0").unwrap());
        assert!(parse_bool("maybe").is_err());
    }
}

/// Shared by every request of every transport.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    flows: FlowRegistry<Store, SystemEnvironment>,
    schemas: SchemaRegistry<Store>,
    store: Store,
    http: HttpSettings,
    api_key: Option<ApiKey>,
    draining: std::sync::atomic::AtomicBool,
}

impl AppState {
    pub fn new(store: Store, http: HttpSettings, api_key: Option<ApiKey>) -> Self {
        AppState {
            inner: Arc::new(Inner {
                flows: FlowRegistry::new(store.clone(), SystemEnvironment),
                schemas: SchemaRegistry::new(store.clone()),
                store,
                http,
                api_key,
                draining: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Marks the process as shutting down: readiness probes fail from now on.
    pub fn set_draining(&self) {
        self.inner
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.inner
            .draining
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn flows(&self) -> &FlowRegistry<Store, SystemEnvironment> {
        &self.inner.flows
    }

    pub fn schemas(&self) -> &SchemaRegistry<Store> {
        &self.inner.schemas
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn http(&self) -> &HttpSettings {
        &self.inner.http
    }

    /// The API key requests must carry, when authentication is enabled.
    pub fn api_key(&self) -> Option<&ApiKey> {
        self.inner.api_key.as_ref()
    }
}
