//! The local server's configuration: flags win over environment variables, which win over
//! defaults. Loaded and checked once at startup; anything wrong is one clear line and a non-zero
//! exit, before anything listens.
//!
//! Go-style single-dash flags of the original API (`-http-addr`, `-grpc-addr`, `-etcd`) are
//! accepted as well as `--http-addr` and friends.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use flowpipe_store::{EtcdConfig, EtcdConfigError, StoreConfig};

use super::tls::TlsIdentity;
use crate::ApiKey;
use crate::settings::{
    self, GRPC_TLS_SERVER_NAME_VAR, HttpSettings, LOG_LEVEL_VAR, OBSERVABILITY_ENABLED_VAR,
    OTLP_ENDPOINT_VAR, RESOURCE_ATTRIBUTES_VAR, SDK_DISABLED_VAR, TelemetrySettings,
    parse_body_limit, parse_bool, parse_duration,
};

/// The embedded store's file name inside the data directory.
pub const EMBEDDED_FILE: &str = "flowpipe.redb";
const DEFAULT_ETCD: &str = "http://127.0.0.1:2379";

#[derive(Parser, Debug)]
#[command(
    name = "flow-api",
    version,
    about = "flow-pipe control-plane API: REST and gRPC over etcd or an embedded store"
)]
struct Args {
    /// REST listen address, [host]:port (":8080" is every interface).
    #[arg(long = "http-addr", env = "FLOW_HTTP_ADDR", default_value = ":8080")]
    http_addr: String,
    /// gRPC listen address, [host]:port.
    #[arg(long = "grpc-addr", env = "FLOW_GRPC_ADDR", default_value = ":9090")]
    grpc_addr: String,
    /// Comma-separated etcd endpoints (default http://127.0.0.1:2379 when the store is etcd).
    #[arg(
        long = "etcd",
        env = "ETCD_ENDPOINTS",
        global = true,
        value_delimiter = ','
    )]
    etcd: Vec<String>,
    /// "etcd" or "embedded" (default: etcd if endpoints are given, else embedded).
    #[arg(long = "store", env = "FLOW_STORE", global = true)]
    store: Option<String>,
    /// Directory of the embedded store's file.
    #[arg(
        long = "data-dir",
        env = "FLOW_DATA_DIR",
        global = true,
        default_value = "./flowpipe-data"
    )]
    data_dir: PathBuf,
    /// Environment label (informational: logs and /readyz).
    #[arg(long = "env", env = "FLOW_ENV")]
    env: Option<String>,

    /// etcd user (with --etcd-password).
    #[arg(long = "etcd-username", env = "FLOW_ETCD_USERNAME", global = true)]
    etcd_username: Option<String>,
    /// etcd password.
    #[arg(
        long = "etcd-password",
        env = "FLOW_ETCD_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    etcd_password: Option<String>,
    /// PEM CA bundle for https etcd endpoints.
    #[arg(long = "etcd-ca", env = "FLOW_ETCD_CA", global = true)]
    etcd_ca: Option<PathBuf>,
    /// PEM client certificate for etcd (with --etcd-key).
    #[arg(long = "etcd-cert", env = "FLOW_ETCD_CERT", global = true)]
    etcd_cert: Option<PathBuf>,
    /// PEM client key for etcd.
    #[arg(long = "etcd-key", env = "FLOW_ETCD_KEY", global = true)]
    etcd_key: Option<PathBuf>,
    /// Time to connect to an etcd member, e.g. "3s".
    #[arg(long = "etcd-dial-timeout", env = "FLOW_ETCD_DIAL_TIMEOUT", global = true, default_value = "3s", value_parser = parse_duration)]
    etcd_dial_timeout: Duration,
    /// Time for one etcd request, e.g. "5s".
    #[arg(long = "etcd-request-timeout", env = "FLOW_ETCD_REQUEST_TIMEOUT", global = true, default_value = "5s", value_parser = parse_duration)]
    etcd_request_timeout: Duration,

    /// Largest REST request body in bytes (larger gets 413).
    #[arg(long = "http-body-limit", env = "FLOW_HTTP_BODY_LIMIT", default_value = "1048576", value_parser = parse_body_limit)]
    http_body_limit: usize,
    /// Longest a request may run, e.g. "15s" (REST 504, gRPC DEADLINE_EXCEEDED).
    #[arg(long = "request-timeout", env = "FLOW_REQUEST_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Comma-separated origins allowed by CORS ("*" for any); CORS is off when empty.
    #[arg(
        long = "cors-origins",
        env = "FLOW_CORS_ORIGINS",
        value_delimiter = ','
    )]
    cors_origins: Vec<String>,
    /// Log format: "text" or "json".
    #[arg(
        long = "log-format",
        env = "FLOW_LOG_FORMAT",
        global = true,
        default_value = "text"
    )]
    log_format: String,

    /// Require `Authorization: Bearer <key>` on every API call (REST and gRPC).
    #[arg(long = "auth-enabled", env = "FLOW_AUTH_ENABLED", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    auth_enabled: bool,
    /// The API key (required when auth is enabled). Never logged.
    #[arg(long = "api-key", env = "FLOW_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Serve REST over TLS.
    #[arg(long = "http-tls-enabled", env = "FLOW_HTTP_TLS_ENABLED", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    http_tls_enabled: bool,
    #[arg(long = "http-tls-cert", env = "FLOW_HTTP_TLS_CERT")]
    http_tls_cert: Option<PathBuf>,
    #[arg(long = "http-tls-key", env = "FLOW_HTTP_TLS_KEY")]
    http_tls_key: Option<PathBuf>,
    /// Serve gRPC over TLS.
    #[arg(long = "grpc-tls-enabled", env = "FLOW_GRPC_TLS_ENABLED", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    grpc_tls_enabled: bool,
    #[arg(long = "grpc-tls-cert", env = "FLOW_GRPC_TLS_CERT")]
    grpc_tls_cert: Option<PathBuf>,
    #[arg(long = "grpc-tls-key", env = "FLOW_GRPC_TLS_KEY")]
    grpc_tls_key: Option<PathBuf>,
    /// Accepted for compatibility with the original API's helm chart, where it named the gRPC
    /// server for an internal REST-to-gRPC hop this API does not have: checked, no effect.
    #[arg(long = "grpc-tls-server-name", env = "FLOW_GRPC_TLS_SERVER_NAME")]
    grpc_tls_server_name: Option<String>,

    /// Export metrics and traces over OTLP/gRPC (README, "Observability").
    #[arg(long = "observability-enabled", env = "FLOW_OBSERVABILITY_ENABLED", num_args = 0..=1, default_missing_value = "true")]
    observability_enabled: Option<String>,
    /// Log level: debug, info, warn or error (RUST_LOG, when set, wins) [default: info].
    #[arg(long = "log-level", env = "FLOW_LOG_LEVEL", global = true)]
    log_level: Option<String>,
    /// The resource's service.name [default: flow-api].
    #[arg(long = "service-name", env = "OTEL_SERVICE_NAME")]
    service_name: Option<String>,
    /// The OTLP/gRPC collector: host:port (plaintext) or http(s)://host:port
    /// [default: http://localhost:4317].
    #[arg(long = "otel-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otel_endpoint: Option<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

/// What `flow-api` does besides serving (the default).
#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The name index that serves ListFlows (contract B.6).
    #[command(subcommand)]
    Index(IndexCommand),
}

/// `flow-api index ...`
#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexCommand {
    /// Builds the name index from the flows in the store and marks it ready: an index key for
    /// every live flow, none for any other. Run it after the original API wrote flows (the
    /// server runs it once by itself when the index is not ready). Prints what it did; exits 1
    /// on failure.
    Rebuild,
}

/// The checked configuration of the local server.
#[derive(Debug, Clone)]
pub struct Config {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub store: StoreConfig,
    pub http: HttpSettings,
    pub api_key: Option<ApiKey>,
    pub http_tls: Option<TlsIdentity>,
    pub grpc_tls: Option<TlsIdentity>,
    pub json_logs: bool,
    /// Serve (`None`), or the command to run instead.
    pub command: Option<Command>,
    pub telemetry: TelemetrySettings,
}

/// A configuration problem: one line, for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `-http-addr` → `--http-addr` (also `-http-addr=x`), for the original API's flag spelling.
fn normalize_go_flags(args: impl IntoIterator<Item = String>) -> Vec<String> {
    const GO_FLAGS: [&str; 3] = ["http-addr", "grpc-addr", "etcd"];
    args.into_iter()
        .map(|a| {
            let name = a
                .strip_prefix('-')
                .filter(|rest| !rest.starts_with('-'))
                .map(|rest| rest.split('=').next().unwrap_or(rest));
            match name {
                Some(n) if GO_FLAGS.contains(&n) => format!("-{a}"),
                _ => a,
            }
        })
        .collect()
}

/// `[host]:port`; an empty host (":8080") means every interface.
fn socket_addr(what: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    let bad = |why: &str| ConfigError(format!("invalid {what} {value:?}: {why}"));
    let v = value.trim();
    let with_host = match v.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => v.to_string(),
    };
    let (_, port) = with_host
        .rsplit_once(':')
        .ok_or_else(|| bad("expected [host]:port, e.g. :8080 or 127.0.0.1:8080"))?;
    port.parse::<u16>()
        .map_err(|_| bad("the port must be a number from 0 to 65535"))?;
    with_host
        .to_socket_addrs()
        .map_err(|e| bad(&e.to_string()))?
        .next()
        .ok_or_else(|| bad("the host does not resolve"))
}

fn read_file(what: &str, path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError(format!("cannot read {what} {}: {e}", path.display())))
}

fn tls_identity(
    which: &str,
    enabled: bool,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<TlsIdentity>, ConfigError> {
    if !enabled {
        return Ok(None);
    }
    let upper = which.to_ascii_uppercase();
    let cert = cert.ok_or_else(|| {
        ConfigError(format!(
            "FLOW_{upper}_TLS_ENABLED is set but FLOW_{upper}_TLS_CERT (--{which}-tls-cert) is not"
        ))
    })?;
    let key = key.ok_or_else(|| {
        ConfigError(format!(
            "FLOW_{upper}_TLS_ENABLED is set but FLOW_{upper}_TLS_KEY (--{which}-tls-key) is not"
        ))
    })?;
    let cert_pem = read_file(&format!("{which} TLS certificate"), &cert)?;
    let key_pem = read_file(&format!("{which} TLS key"), &key)?;
    TlsIdentity::from_pem(cert_pem, key_pem)
        .map(Some)
        .map_err(|e| {
            ConfigError(format!(
                "{which} TLS certificate {} / key {} are not usable: {e}",
                cert.display(),
                key.display()
            ))
        })
}

/// An etcd configuration rule, in the terms of the server's flags and variables.
fn etcd_error(e: EtcdConfigError) -> ConfigError {
    ConfigError(match e {
        EtcdConfigError::UserWithoutPassword => {
            "FLOW_ETCD_USERNAME and FLOW_ETCD_PASSWORD must be set together".into()
        }
        EtcdConfigError::CertWithoutKey => {
            "FLOW_ETCD_CERT and FLOW_ETCD_KEY must be set together".into()
        }
        EtcdConfigError::HttpsWithoutCa => format!("{e}: set FLOW_ETCD_CA (--etcd-ca)"),
        other => other.to_string(),
    })
}

/// The observability settings from their flags (or variables, which clap has read into them) and
/// the two standard variables without a flag. Values are checked here, not by clap, so that a
/// bad one is the same one line as every other configuration problem.
fn telemetry_settings(
    enabled: Option<String>,
    log_level: Option<String>,
    service_name: Option<String>,
    endpoint: Option<String>,
    grpc_tls_server_name: Option<String>,
) -> Result<TelemetrySettings, ConfigError> {
    let given = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let bad = |var: &str, e: String| ConfigError(format!("invalid {var}: {e}"));
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let enabled = match given(enabled) {
        Some(v) => parse_bool(&v).map_err(|e| bad(OBSERVABILITY_ENABLED_VAR, e))?,
        None => false,
    };
    Ok(TelemetrySettings {
        enabled: enabled && !settings::sdk_disabled(env(SDK_DISABLED_VAR).as_deref()),
        log_level: given(log_level)
            .map(|v| settings::parse_log_level(&v).map_err(|e| bad(LOG_LEVEL_VAR, e)))
            .transpose()?
            .unwrap_or_default(),
        service_name: settings::service_name(service_name, env(RESOURCE_ATTRIBUTES_VAR)),
        endpoint: given(endpoint)
            .map(|v| settings::parse_otlp_endpoint(&v).map_err(|e| bad(OTLP_ENDPOINT_VAR, e)))
            .transpose()?,
        grpc_tls_server_name: given(grpc_tls_server_name)
            .map(|v| settings::parse_server_name(&v).map_err(|e| bad(GRPC_TLS_SERVER_NAME_VAR, e)))
            .transpose()?,
    })
}

fn data_dir_ready(dir: &std::path::Path) -> Result<(), ConfigError> {
    let bad = |e: std::io::Error| {
        ConfigError(format!(
            "data directory {} is not usable: {e}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(bad)?;
    // Readable and writable: the embedded store needs both.
    std::fs::read_dir(dir).map_err(bad)?;
    let probe = dir.join(".flowpipe-write-test");
    std::fs::write(&probe, b"").map_err(bad)?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

impl Config {
    /// Loads the configuration from `args` (the process arguments, program name first) and the
    /// environment. `Err(clap::Error)` for a usage error (clap prints it), `Ok(Err(..))` for a
    /// configuration problem.
    pub fn load(
        args: impl IntoIterator<Item = String>,
    ) -> Result<Result<Config, ConfigError>, clap::Error> {
        let args = Args::try_parse_from(normalize_go_flags(args))?;
        Ok(Config::from_args(args))
    }

    fn from_args(a: Args) -> Result<Config, ConfigError> {
        let http_addr = socket_addr("FLOW_HTTP_ADDR", &a.http_addr)?;
        let grpc_addr = socket_addr("FLOW_GRPC_ADDR", &a.grpc_addr)?;
        let endpoints: Vec<String> = a
            .etcd
            .iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        let store_kind = match a.store.as_deref().map(str::trim) {
            None | Some("") if endpoints.is_empty() => "embedded",
            None | Some("") => "etcd",
            Some("etcd") => "etcd",
            Some("embedded") => "embedded",
            Some(other) => {
                return Err(ConfigError(format!(
                    "invalid FLOW_STORE {other:?}: expected \"etcd\" or \"embedded\""
                )));
            }
        };
        let store = if store_kind == "etcd" {
            let endpoints = if endpoints.is_empty() {
                vec![DEFAULT_ETCD.to_string()]
            } else {
                endpoints
            };
            let c = EtcdConfig {
                username: a.etcd_username.filter(|u| !u.is_empty()),
                password: a.etcd_password.filter(|p| !p.is_empty()),
                ca_pem: a.etcd_ca.map(|p| read_file("etcd CA", &p)).transpose()?,
                cert_pem: a
                    .etcd_cert
                    .map(|p| read_file("etcd client certificate", &p))
                    .transpose()?,
                key_pem: a
                    .etcd_key
                    .map(|p| read_file("etcd client key", &p))
                    .transpose()?,
                connect_timeout: a.etcd_dial_timeout,
                request_timeout: a.etcd_request_timeout,
                ..EtcdConfig::new(endpoints)
            };
            c.validate().map_err(etcd_error)?;
            StoreConfig::Etcd(Box::new(c))
        } else {
            data_dir_ready(&a.data_dir)?;
            StoreConfig::Embedded(a.data_dir.join(EMBEDDED_FILE))
        };

        let api_key: Option<ApiKey> =
            settings::api_key(a.auth_enabled, a.api_key.as_deref(), " (--api-key)")
                .map_err(ConfigError)?;
        let json_logs = match a.log_format.as_str() {
            "json" => true,
            "text" => false,
            other => {
                return Err(ConfigError(format!(
                    "invalid FLOW_LOG_FORMAT {other:?}: expected \"text\" or \"json\""
                )));
            }
        };
        let telemetry = telemetry_settings(
            a.observability_enabled,
            a.log_level,
            a.service_name,
            a.otel_endpoint,
            a.grpc_tls_server_name,
        )?;
        Ok(Config {
            http_addr,
            grpc_addr,
            store,
            http: HttpSettings {
                body_limit: a.http_body_limit,
                request_timeout: a.request_timeout,
                cors_origins: settings::parse_origins(&a.cors_origins.join(",")),
                env: a.env.filter(|e| !e.is_empty()),
            },
            api_key,
            http_tls: tls_identity("http", a.http_tls_enabled, a.http_tls_cert, a.http_tls_key)?,
            grpc_tls: tls_identity("grpc", a.grpc_tls_enabled, a.grpc_tls_cert, a.grpc_tls_key)?,
            json_logs,
            command: a.command,
            telemetry,
        })
    }

    /// A configuration for tests: both listeners on 127.0.0.1, port 0, on `store`.
    pub fn for_tests(store: StoreConfig) -> Config {
        Config {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            store,
            http: HttpSettings::default(),
            api_key: None,
            http_tls: None,
            grpc_tls: None,
            json_logs: false,
            command: None,
            telemetry: TelemetrySettings::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str]) -> Result<Config, ConfigError> {
        let mut all = vec!["flow-api".to_string()];
        all.extend(args.iter().map(std::string::ToString::to_string));
        Config::load(all).expect("usage")
    }

    #[test]
    fn go_style_flags_are_accepted() {
        let n = normalize_go_flags(
            [
                "flow-api",
                "-http-addr",
                ":1",
                "-etcd=http://x:1",
                "--grpc-addr",
                ":2",
                "-h",
            ]
            .map(String::from),
        );
        assert_eq!(
            n,
            [
                "flow-api",
                "--http-addr",
                ":1",
                "--etcd=http://x:1",
                "--grpc-addr",
                ":2",
                "-h"
            ]
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(
            socket_addr("x", ":8080").unwrap().to_string(),
            "0.0.0.0:8080"
        );
        assert_eq!(
            socket_addr("x", "127.0.0.1:9").unwrap().to_string(),
            "127.0.0.1:9"
        );
        assert!(socket_addr("x", "[::1]:9").unwrap().is_ipv6());
        for bad in ["8080", ":http", "host:99999", "", ":"] {
            let e = socket_addr("FLOW_HTTP_ADDR", bad).unwrap_err();
            assert!(e.0.starts_with("invalid FLOW_HTTP_ADDR"), "{e}");
            assert!(!e.0.contains('\n'));
        }
    }

    #[test]
    fn store_selection() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let c = load(&["--data-dir", d]).unwrap();
        assert!(matches!(c.store, StoreConfig::Embedded(ref p) if p.ends_with(EMBEDDED_FILE)));
        let c = load(&["-etcd", "http://10.0.0.1:2379,http://10.0.0.2:2379"]).unwrap();
        match c.store {
            StoreConfig::Etcd(e) => assert_eq!(e.endpoints.len(), 2),
            other => panic!("{other:?}"),
        }
        let c = load(&["--store", "etcd"]).unwrap();
        match c.store {
            StoreConfig::Etcd(e) => assert_eq!(e.endpoints, [DEFAULT_ETCD]),
            other => panic!("{other:?}"),
        }
        let e = load(&["--store", "mysql"]).unwrap_err();
        assert_eq!(
            e.0,
            "invalid FLOW_STORE \"mysql\": expected \"etcd\" or \"embedded\""
        );
    }

    #[test]
    fn unusable_data_dir_is_one_line() {
        let e = load(&["--data-dir", "/proc/flowpipe-cannot-exist"]).unwrap_err();
        assert!(e.0.starts_with("data directory /proc/flowpipe-cannot-exist is not usable"));
    }

    #[test]
    fn auth_without_a_key_refuses_to_start() {
        let e = load(&["--store", "etcd", "--auth-enabled", "true"]).unwrap_err();
        assert!(e.0.contains("FLOW_API_KEY"), "{e}");
        let c = load(&[
            "--store",
            "etcd",
            "--auth-enabled",
            "true",
            "--api-key",
            "k",
        ])
        .unwrap();
        assert!(c.api_key.is_some());
    }

    #[test]
    fn tls_files_are_checked_and_named() {
        let e = load(&["--store", "etcd", "--http-tls-enabled", "true"]).unwrap_err();
        assert!(e.0.contains("FLOW_HTTP_TLS_CERT"), "{e}");
        let e = load(&[
            "--store",
            "etcd",
            "--grpc-tls-enabled",
            "true",
            "--grpc-tls-cert",
            "/nonexistent/cert.pem",
            "--grpc-tls-key",
            "/nonexistent/key.pem",
        ])
        .unwrap_err();
        assert!(e.0.contains("/nonexistent/cert.pem"), "{e}");
    }

    #[test]
    fn observability_flags_and_their_errors() {
        let c = load(&["--store", "etcd"]).unwrap();
        assert_eq!(c.telemetry, TelemetrySettings::default());
        let c = load(&[
            "--store",
            "etcd",
            "--observability-enabled",
            "--log-level",
            "DEBUG",
            "--service-name",
            "flow-api-staging",
            "--otel-endpoint",
            "collector:4317",
            "--grpc-tls-server-name",
            "flow-api.flowpipe.svc",
        ])
        .unwrap();
        assert!(c.telemetry.enabled);
        assert_eq!(c.telemetry.log_level, settings::LogLevel::Debug);
        assert_eq!(c.telemetry.service_name, "flow-api-staging");
        assert_eq!(
            c.telemetry.endpoint.as_deref(),
            Some("http://collector:4317")
        );
        assert_eq!(
            c.telemetry.grpc_tls_server_name.as_deref(),
            Some("flow-api.flowpipe.svc")
        );
        for (flag, value, var) in [
            ("--log-level", "loud", "FLOW_LOG_LEVEL"),
            (
                "--otel-endpoint",
                "ftp://x:1",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                "--observability-enabled",
                "sometimes",
                "FLOW_OBSERVABILITY_ENABLED",
            ),
            ("--grpc-tls-server-name", "a b", "FLOW_GRPC_TLS_SERVER_NAME"),
        ] {
            let e = load(&["--store", "etcd", flag, value]).unwrap_err();
            assert!(e.0.starts_with(&format!("invalid {var}: ")), "{e}");
        }
    }

    #[test]
    fn endpoints_with_credentials_or_without_ports_are_refused() {
        for bad in ["http://u:p@h:2379", "etcd", "ftp://h:1", "http://:2379"] {
            let e = load(&["--etcd", bad]).unwrap_err();
            assert!(e.0.starts_with("invalid etcd endpoint"), "{bad}: {e}");
        }
        let e = load(&["--etcd", "https://h:2379"]).unwrap_err();
        assert!(e.0.contains("FLOW_ETCD_CA"), "{e}");
    }
}
