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

/// `FLOW_OBSERVABILITY_ENABLED`: export metrics and traces over OTLP.
pub const OBSERVABILITY_ENABLED_VAR: &str = "FLOW_OBSERVABILITY_ENABLED";
/// `FLOW_LOG_LEVEL`: `debug`, `info`, `warn` or `error`; `RUST_LOG` wins when set.
pub const LOG_LEVEL_VAR: &str = "FLOW_LOG_LEVEL";
/// `OTEL_SERVICE_NAME`: the resource's `service.name`.
pub const SERVICE_NAME_VAR: &str = "OTEL_SERVICE_NAME";
/// `OTEL_EXPORTER_OTLP_ENDPOINT`: the OTLP/gRPC collector.
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `OTEL_RESOURCE_ATTRIBUTES`: the second place the specification looks for `service.name`.
pub const RESOURCE_ATTRIBUTES_VAR: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// `OTEL_SDK_DISABLED`: the specification's kill switch (`true` turns observability off).
pub const SDK_DISABLED_VAR: &str = "OTEL_SDK_DISABLED";
/// `FLOW_GRPC_TLS_SERVER_NAME`: accepted for compatibility with the original API's helm chart,
/// where it named the gRPC server's TLS name for that API's internal REST-to-gRPC gateway hop.
/// This API serves REST itself (no such hop), so the value is checked and has no effect.
pub const GRPC_TLS_SERVER_NAME_VAR: &str = "FLOW_GRPC_TLS_SERVER_NAME";
/// The resource's `service.name` unless `OTEL_SERVICE_NAME` says otherwise.
pub const DEFAULT_SERVICE_NAME: &str = "flow-api";
/// Where OTLP goes unless `OTEL_EXPORTER_OTLP_ENDPOINT` says otherwise (the OTLP/gRPC default).
pub const DEFAULT_OTLP_ENDPOINT: &str = "http://localhost:4317";

/// The log level of `FLOW_LOG_LEVEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    /// Everything, including each store round trip that failed.
    Debug,
    /// One line per request, startup and shutdown (the default).
    #[default]
    Info,
    /// Problems only.
    Warn,
    /// Failures only.
    Error,
}

impl LogLevel {
    /// The level's name as `RUST_LOG` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Observability settings (README, "Observability"), shared by the server and the Lambda
/// function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// `FLOW_OBSERVABILITY_ENABLED` (and not `OTEL_SDK_DISABLED=true`): export over OTLP (on
    /// Lambda without an endpoint: CloudWatch EMF lines).
    pub enabled: bool,
    /// `FLOW_LOG_LEVEL`.
    pub log_level: LogLevel,
    /// `OTEL_SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else `flow-api`.
    pub service_name: String,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` as a URL (a bare `host:port` becomes `http://host:port`);
    /// `None` when not given, which means [`DEFAULT_OTLP_ENDPOINT`] on the server and EMF on
    /// Lambda.
    pub endpoint: Option<String>,
    /// `FLOW_GRPC_TLS_SERVER_NAME`: checked, logged, no effect (see [`GRPC_TLS_SERVER_NAME_VAR`]).
    pub grpc_tls_server_name: Option<String>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            enabled: false,
            log_level: LogLevel::Info,
            service_name: DEFAULT_SERVICE_NAME.to_string(),
            endpoint: None,
            grpc_tls_server_name: None,
        }
    }
}

impl TelemetrySettings {
    /// The observability settings from environment variables read through `var`; unset or
    /// blank variables keep their defaults. The error is one line naming the variable.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let named = |name: &str, e: String| format!("{name}: {e}");
        let enabled = match get(OBSERVABILITY_ENABLED_VAR) {
            Some(v) => parse_bool(&v).map_err(|e| named(OBSERVABILITY_ENABLED_VAR, e))?,
            None => false,
        };
        let log_level = match get(LOG_LEVEL_VAR) {
            Some(v) => parse_log_level(&v).map_err(|e| named(LOG_LEVEL_VAR, e))?,
            None => LogLevel::Info,
        };
        let endpoint = get(OTLP_ENDPOINT_VAR)
            .map(|v| parse_otlp_endpoint(&v).map_err(|e| named(OTLP_ENDPOINT_VAR, e)))
            .transpose()?;
        let grpc_tls_server_name = get(GRPC_TLS_SERVER_NAME_VAR)
            .map(|v| parse_server_name(&v).map_err(|e| named(GRPC_TLS_SERVER_NAME_VAR, e)))
            .transpose()?;
        Ok(TelemetrySettings {
            enabled: enabled && !sdk_disabled(get(SDK_DISABLED_VAR).as_deref()),
            log_level,
            service_name: service_name(get(SERVICE_NAME_VAR), get(RESOURCE_ATTRIBUTES_VAR)),
            endpoint,
            grpc_tls_server_name,
        })
    }
}

/// `OTEL_SDK_DISABLED`: only `true` (any case) disables, as the specification says.
pub fn sdk_disabled(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// `FLOW_LOG_LEVEL`: `debug`, `info`, `warn` or `error`, in any case.
pub fn parse_log_level(s: &str) -> Result<LogLevel, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "debug" => Ok(LogLevel::Debug),
        "info" => Ok(LogLevel::Info),
        "warn" | "warning" => Ok(LogLevel::Warn),
        "error" => Ok(LogLevel::Error),
        _ => Err(format!("expected debug, info, warn or error, got {s:?}")),
    }
}

/// The service name: `explicit` (flag or `OTEL_SERVICE_NAME`), else `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES` (`key=value,...`, values percent-encoded), else `flow-api`.
pub fn service_name(explicit: Option<String>, resource_attributes: Option<String>) -> String {
    explicit
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            resource_attributes?.split(',').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                (k.trim() == "service.name")
                    .then(|| percent_decode(v.trim()))
                    .filter(|v| !v.is_empty())
            })
        })
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = s.get(i + 1..i + 3).filter(|_| bytes[i] == b'%');
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An OTLP/gRPC endpoint: `http://host:port`, `https://host:port`, or a bare `host:port` (what
/// the original API takes, for a plaintext in-cluster collector), which becomes
/// `http://host:port`. Returned as a URL with its scheme.
pub fn parse_otlp_endpoint(s: &str) -> Result<String, String> {
    let raw = s.trim();
    let url = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    let bad = |why: &str| format!("{why}: {raw:?} (expected host:port or http(s)://host:port)");
    let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad("the scheme must be http or https"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(bad(
            "credentials belong in OTEL_EXPORTER_OTLP_HEADERS, not the URL",
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// A TLS server name: a DNS name (labels of letters, digits and `-`, at most 253 characters)
/// or an IP address.
pub fn parse_server_name(s: &str) -> Result<String, String> {
    let name = s.trim();
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Ok(name.to_string());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.len() <= 253 && name.trim_end_matches('.').split('.').all(label_ok) {
        Ok(name.to_string())
    } else {
        Err(format!("not a DNS name or IP address: {s:?}"))
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
/// `FLOW_ETCD_REQUIRE_LEADER`: requests ask members that lost their leader to say so at once.
pub const ETCD_REQUIRE_LEADER_VAR: &str = "FLOW_ETCD_REQUIRE_LEADER";

/// How the API's etcd client waits and fails over; the defaults are [`flowpipe_store::EtcdConfig::new`]'s (see
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
    /// `FLOW_ETCD_REQUIRE_LEADER`.
    pub require_leader: bool,
}

impl Default for EtcdTimeouts {
    fn default() -> Self {
        use flowpipe_store::EtcdConfig;
        EtcdTimeouts {
            dial: EtcdConfig::DEFAULT_CONNECT_TIMEOUT,
            request: EtcdConfig::DEFAULT_REQUEST_TIMEOUT,
            keepalive_interval: EtcdConfig::DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: EtcdConfig::DEFAULT_KEEPALIVE_TIMEOUT,
            require_leader: EtcdConfig::DEFAULT_REQUIRE_LEADER,
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
        if let Some(v) = var(ETCD_REQUIRE_LEADER_VAR).filter(|v| !v.trim().is_empty()) {
            t.require_leader =
                parse_bool(&v).map_err(|e| format!("{ETCD_REQUIRE_LEADER_VAR}: {e}"))?;
        }
        Ok(t)
    }

    /// Sets these timeouts on `config`.
    pub fn apply(&self, config: &mut flowpipe_store::EtcdConfig) {
        config.connect_timeout = self.dial;
        config.request_timeout = self.request;
        config.keepalive_interval = self.keepalive_interval;
        config.keepalive_timeout = self.keepalive_timeout;
        config.require_leader = self.require_leader;
    }
}

/// An environment of `pairs` for the `from_env`-style constructors' tests, which take the
/// lookup as a function so that no test changes the process's real environment.
#[cfg(test)]
pub(crate) fn test_env(
    pairs: &'static [(&'static str, &'static str)],
) -> impl Fn(&str) -> Option<String> {
    move |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_string())
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

    fn telemetry(vars: &[(&str, &str)]) -> Result<TelemetrySettings, String> {
        TelemetrySettings::from_env(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_string())
        })
    }

    #[test]
    fn telemetry_defaults_export_nothing() {
        let t = telemetry(&[]).unwrap();
        assert_eq!(t, TelemetrySettings::default());
        assert!(!t.enabled);
        assert_eq!(t.log_level, LogLevel::Info);
        assert_eq!(t.service_name, "flow-api");
        assert_eq!(t.endpoint, None);
    }

    #[test]
    fn telemetry_from_the_helm_charts_variables() {
        let t = telemetry(&[
            ("FLOW_OBSERVABILITY_ENABLED", "true"),
            ("FLOW_LOG_LEVEL", "WARN"),
            ("OTEL_SERVICE_NAME", "flow-api-prod"),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "otel-collector.observability:4317",
            ),
            ("FLOW_GRPC_TLS_SERVER_NAME", "flow-api.flowpipe.svc"),
        ])
        .unwrap();
        assert!(t.enabled);
        assert_eq!(t.log_level, LogLevel::Warn);
        assert_eq!(t.service_name, "flow-api-prod");
        assert_eq!(
            t.endpoint.as_deref(),
            Some("http://otel-collector.observability:4317")
        );
        assert_eq!(
            t.grpc_tls_server_name.as_deref(),
            Some("flow-api.flowpipe.svc")
        );
        // The specification's kill switch wins.
        let t = telemetry(&[
            ("FLOW_OBSERVABILITY_ENABLED", "true"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ])
        .unwrap();
        assert!(!t.enabled);
    }

    #[test]
    fn telemetry_errors_name_the_variable() {
        for (var, bad) in [
            ("FLOW_OBSERVABILITY_ENABLED", "maybe"),
            ("FLOW_LOG_LEVEL", "verbose"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector:4317"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://:4317"),
            ("FLOW_GRPC_TLS_SERVER_NAME", "not a name"),
        ] {
            let e = telemetry(&[(var, bad)]).unwrap_err();
            assert!(e.starts_with(&format!("{var}: ")), "{e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn log_levels_endpoints_and_names() {
        for (v, l) in [
            ("debug", LogLevel::Debug),
            ("Info", LogLevel::Info),
            ("WARN", LogLevel::Warn),
            ("error", LogLevel::Error),
        ] {
            assert_eq!(parse_log_level(v).unwrap(), l);
        }
        for (v, want) in [
            ("localhost:4317", "http://localhost:4317"),
            ("[::1]:4317", "http://[::1]:4317"),
            ("http://127.0.0.1:4317/", "http://127.0.0.1:4317"),
            (
                "https://otel.example.com:4317",
                "https://otel.example.com:4317",
            ),
        ] {
            assert_eq!(parse_otlp_endpoint(v).unwrap(), want);
        }
        for bad in ["not a url", "ftp://x:1", "http://", "http://u:p@x:1"] {
            assert!(parse_otlp_endpoint(bad).is_err(), "{bad}");
        }
        for ok in [
            "flow-api",
            "flow-api.ns.svc.cluster.local",
            "10.0.0.1",
            "::1",
        ] {
            assert!(parse_server_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a b", "x_y"] {
            assert!(parse_server_name(bad).is_err(), "{bad}");
        }
        // OTEL_SERVICE_NAME beats service.name in OTEL_RESOURCE_ATTRIBUTES, which beats the
        // default.
        let attrs = Some("deployment.environment=prod,service.name=from%20attrs".to_string());
        assert_eq!(service_name(None, attrs.clone()), "from attrs");
        assert_eq!(service_name(Some("svc".into()), attrs), "svc");
        assert_eq!(service_name(None, Some("a=b".into())), "flow-api");
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
        let t = EtcdTimeouts::from_env(test_env(&[])).unwrap();
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
        let t = EtcdTimeouts::from_env(test_env(&[
            ("FLOW_ETCD_KEEPALIVE_INTERVAL", "500ms"),
            ("FLOW_ETCD_KEEPALIVE_TIMEOUT", " 3s "),
            ("FLOW_ETCD_REQUEST_TIMEOUT", ""),
        ]))
        .unwrap();
        assert_eq!(t.keepalive_interval, Duration::from_millis(500));
        assert_eq!(t.keepalive_timeout, Duration::from_secs(3));
        assert_eq!(t.request, Duration::from_secs(5));
        assert!(t.require_leader);
        let t = EtcdTimeouts::from_env(test_env(&[("FLOW_ETCD_REQUIRE_LEADER", "false")])).unwrap();
        assert!(!t.require_leader);
        let e =
            EtcdTimeouts::from_env(test_env(&[("FLOW_ETCD_REQUIRE_LEADER", "maybe")])).unwrap_err();
        assert!(e.starts_with("FLOW_ETCD_REQUIRE_LEADER: "), "{e}");
        let e = EtcdTimeouts::from_env(test_env(&[("FLOW_ETCD_KEEPALIVE_TIMEOUT", "soon")]))
            .unwrap_err();
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
