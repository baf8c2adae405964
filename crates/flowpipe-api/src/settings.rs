//! The settings the local server and the Lambda function share, each parsed by one function.
//! The server reads them as flags or environment variables (clap, `server::config`), the
//! function as environment variables ([`HttpSettings::from_env`]); both call the parsers here, so
//! a value means the same thing, and is refused with the same words, in both.

use std::time::Duration;

use crate::auth::ApiKey;

/// `FLOW_HTTP_BODY_LIMIT`: largest request body, in bytes.
pub const BODY_LIMIT_VAR: &str = "FLOW_HTTP_BODY_LIMIT";
/// `FLOW_REQUEST_TIMEOUT`: longest a request may run.
pub const REQUEST_TIMEOUT_VAR: &str = "FLOW_REQUEST_TIMEOUT";
/// `FLOW_CORS_ORIGINS`: comma-separated origins CORS allows.
pub const CORS_ORIGINS_VAR: &str = "FLOW_CORS_ORIGINS";
/// `FLOW_ENV`: an informational environment label.
pub const ENV_VAR: &str = "FLOW_ENV";
/// `FLOW_AUTH_ENABLED`: require the API key.
pub const AUTH_ENABLED_VAR: &str = "FLOW_AUTH_ENABLED";
/// `FLOW_API_KEY`: the API key.
pub const API_KEY_VAR: &str = "FLOW_API_KEY";

/// Settings of the HTTP surface (REST and the Lambda function).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted; larger gets 413.
    pub body_limit: usize,
    /// A request running longer than this gets 504.
    pub request_timeout: Duration,
    /// Origins allowed by CORS; empty disables CORS, `*` allows any.
    pub cors_origins: Vec<String>,
    /// `FLOW_ENV`, shown in logs and `/readyz`.
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

impl HttpSettings {
    /// The HTTP settings from environment variables read through `var` (the process's, or a
    /// table in tests); unset or blank variables keep their defaults. The error is one line
    /// naming the variable.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let mut http = HttpSettings {
            env: get(ENV_VAR).map(|v| v.trim().to_string()),
            ..HttpSettings::default()
        };
        if let Some(v) = get(CORS_ORIGINS_VAR) {
            http.cors_origins = parse_origins(&v);
        }
        if let Some(v) = get(BODY_LIMIT_VAR) {
            http.body_limit = parse_body_limit(&v).map_err(|e| format!("{BODY_LIMIT_VAR}: {e}"))?;
        }
        if let Some(v) = get(REQUEST_TIMEOUT_VAR) {
            http.request_timeout =
                parse_duration(&v).map_err(|e| format!("{REQUEST_TIMEOUT_VAR}: {e}"))?;
        }
        Ok(http)
    }
}

/// The API key to enforce, from `FLOW_AUTH_ENABLED` and `FLOW_API_KEY`: none when
/// authentication is off; an error when it is on without a key, which must refuse to serve
/// rather than serve open. `key_flag` names where the key comes from, for the message.
pub fn api_key(enabled: bool, key: Option<&str>, key_flag: &str) -> Result<Option<ApiKey>, String> {
    ApiKey::when_enabled(enabled, key).map_err(|_| {
        format!(
            "{AUTH_ENABLED_VAR} is set but {API_KEY_VAR}{key_flag} is empty; refusing to serve without a key"
        )
    })
}

/// A duration as written in flags and environment variables: `500ms`, `15s`, `1m`, or a number
/// of seconds.
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

/// A boolean as written in flags and environment variables (`true`/`false`, `1`/`0`,
/// `yes`/`no`, `on`/`off`; empty is false).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "f" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true or false, got {s:?}")),
    }
}

/// A body limit: a positive number of bytes.
pub fn parse_body_limit(s: &str) -> Result<usize, String> {
    s.trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("must be a positive number of bytes, got {s:?}"))
}

/// Comma-separated CORS origins (`*` for any); blanks are dropped.
pub fn parse_origins(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(String::from)
        .collect()
}

/// `FLOW_ETCD_DIAL_TIMEOUT`: longest wait to connect to an etcd member.
pub const ETCD_DIAL_TIMEOUT_VAR: &str = "FLOW_ETCD_DIAL_TIMEOUT";
/// `FLOW_ETCD_REQUEST_TIMEOUT`: longest a request waits for etcd.
pub const ETCD_REQUEST_TIMEOUT_VAR: &str = "FLOW_ETCD_REQUEST_TIMEOUT";
/// `FLOW_ETCD_KEEPALIVE_INTERVAL`: silence on a busy etcd connection before it is pinged.
pub const ETCD_KEEPALIVE_INTERVAL_VAR: &str = "FLOW_ETCD_KEEPALIVE_INTERVAL";
/// `FLOW_ETCD_KEEPALIVE_TIMEOUT`: how long a ping may go unanswered before the connection is
/// closed.
pub const ETCD_KEEPALIVE_TIMEOUT_VAR: &str = "FLOW_ETCD_KEEPALIVE_TIMEOUT";

/// How the API waits for etcd; the defaults are [`flowpipe_store::EtcdConfig::new`]'s (see
/// RELIABILITY.md for how they were chosen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtcdTimeouts {
    /// `FLOW_ETCD_DIAL_TIMEOUT`.
    pub dial: Duration,
    /// `FLOW_ETCD_REQUEST_TIMEOUT`.
    pub request: Duration,
    /// `FLOW_ETCD_KEEPALIVE_INTERVAL`.
    pub keepalive_interval: Duration,
    /// `FLOW_ETCD_KEEPALIVE_TIMEOUT`.
    pub keepalive_timeout: Duration,
}

impl Default for EtcdTimeouts {
    fn default() -> Self {
        use flowpipe_store::EtcdConfig;
        EtcdTimeouts {
            dial: EtcdConfig::DEFAULT_CONNECT_TIMEOUT,
            request: EtcdConfig::DEFAULT_REQUEST_TIMEOUT,
            keepalive_interval: EtcdConfig::DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: EtcdConfig::DEFAULT_KEEPALIVE_TIMEOUT,
        }
    }
}

impl EtcdTimeouts {
    /// The timeouts from environment variables read through `var`; unset or blank ones keep
    /// their defaults. The error is one line naming the variable.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut t = EtcdTimeouts::default();
        for (name, field) in [
            (ETCD_DIAL_TIMEOUT_VAR, &mut t.dial),
            (ETCD_REQUEST_TIMEOUT_VAR, &mut t.request),
            (ETCD_KEEPALIVE_INTERVAL_VAR, &mut t.keepalive_interval),
            (ETCD_KEEPALIVE_TIMEOUT_VAR, &mut t.keepalive_timeout),
        ] {
            if let Some(v) = var(name).filter(|v| !v.trim().is_empty()) {
                *field = parse_duration(&v).map_err(|e| format!("{name}: {e}"))?;
            }
        }
        Ok(t)
    }

    /// Sets these timeouts on `config`.
    pub fn apply(&self, config: &mut flowpipe_store::EtcdConfig) {
        config.connect_timeout = self.dial;
        config.request_timeout = self.request;
        config.keepalive_interval = self.keepalive_interval;
        config.keepalive_timeout = self.keepalive_timeout;
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

    #[test]
    fn body_limits_and_origins() {
        assert_eq!(parse_body_limit(" 2048 ").unwrap(), 2048);
        for bad in ["0", "-1", "1kb", ""] {
            assert!(parse_body_limit(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_origins(" https://a, ,https://b "),
            ["https://a", "https://b"]
        );
    }

    #[test]
    fn etcd_timeouts_from_the_environment() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_string())
            }
        };
        let t = EtcdTimeouts::from_env(vars(&[])).unwrap();
        assert_eq!(t, EtcdTimeouts::default());
        assert_eq!(
            (t.dial, t.request, t.keepalive_interval, t.keepalive_timeout),
            (
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(2),
                Duration::from_secs(1)
            )
        );
        let t = EtcdTimeouts::from_env(vars(&[
            ("FLOW_ETCD_KEEPALIVE_INTERVAL", "500ms"),
            ("FLOW_ETCD_KEEPALIVE_TIMEOUT", " 3s "),
            ("FLOW_ETCD_REQUEST_TIMEOUT", ""),
        ]))
        .unwrap();
        assert_eq!(t.keepalive_interval, Duration::from_millis(500));
        assert_eq!(t.keepalive_timeout, Duration::from_secs(3));
        assert_eq!(t.request, Duration::from_secs(5));
        let e =
            EtcdTimeouts::from_env(vars(&[("FLOW_ETCD_KEEPALIVE_TIMEOUT", "soon")])).unwrap_err();
        assert!(
            e.starts_with("FLOW_ETCD_KEEPALIVE_TIMEOUT: invalid duration"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        let mut c = flowpipe_store::EtcdConfig::new(vec!["h:1".into()]);
        let t = EtcdTimeouts {
            dial: Duration::from_millis(1),
            ..EtcdTimeouts::default()
        };
        t.apply(&mut c);
        assert_eq!(c.connect_timeout, Duration::from_millis(1));
    }
}
