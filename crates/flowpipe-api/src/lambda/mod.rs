//! The AWS Lambda entry (binary `bootstrap`): the REST router ([`crate::router`]) behind API
//! Gateway (HTTP API payload v2 and REST API v1), over etcd only.
//!
//! Lambda freezes an execution environment between invocations and bills its init phase, so:
//! - init does no network I/O: [`LambdaApp::from_env`] only reads environment variables;
//! - the first invocation builds the store, the router and (with `FLOW_ETCD_SECRET_ARN`) the AWS
//!   config and the Secrets Manager client, once per execution environment; every later
//!   invocation clones them;
//! - a configuration that cannot be used (missing or malformed secret, bad variables) is never a
//!   crash: Lambda would re-run init for every request (a panic loop). Every request gets the
//!   contract's 503 (`UNAVAILABLE`, code 14) with the reason, which is also logged; a failed
//!   secret fetch is tried again on a later invocation (at most once per [`RETRY_AFTER`]), so a
//!   fixed secret starts working without a cold start;
//! - a broken etcd connection is rebuilt on the next invocation by [`flowpipe_store::EtcdStore`].
//!
//! Configuration (environment variables):
//! - `ETCD_ENDPOINTS`: comma-separated etcd endpoints, for an etcd without credentials;
//! - `FLOW_ETCD_SECRET_ARN`: a Secrets Manager secret (ARN or name) whose JSON holds `endpoints`
//!   (a list or a comma-separated string; optional when `ETCD_ENDPOINTS` is set), optional
//!   `username`/`password` and PEM `ca`/`cert`/`key`. The SDK honours `AWS_ENDPOINT_URL`;
//! - `FLOW_AUTH_ENABLED` + `FLOW_API_KEY`, `FLOW_ENV`, `FLOW_CORS_ORIGINS`,
//!   `FLOW_HTTP_BODY_LIMIT`, `FLOW_REQUEST_TIMEOUT`: as on the local server;
//! - `FLOW_OBSERVABILITY_ENABLED`, `FLOW_LOG_LEVEL`, `OTEL_*`: see [`init_telemetry`].
//!
//! Paths: API Gateway puts a named stage in the path of HTTP API events (`/prod/v1/flows`), and
//! `lambda_http` adds it to REST API events unless `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is set.
//! The entry removes the stage either way, so routes match with or without that variable.

mod app;
mod config;
mod secret;

use std::time::Duration;

pub use app::{LambdaApp, Options};
pub use config::{EtcdSource, LambdaConfig};
pub use secret::{aws_config_loader, secrets_client_from_env};

use crate::TelemetrySettings;
use crate::telemetry::{self, Host, Telemetry};

/// After a failed configuration attempt, requests within this time get the same 503 without
/// asking Secrets Manager again (a broken secret must not turn every request into an API call).
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The longest the first invocation waits for Secrets Manager. A function in a VPC without a
/// route to Secrets Manager would otherwise hang until the Lambda timeout.
pub const SECRET_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the function finds etcd without a secret.
pub const ENDPOINTS_VAR: &str = "ETCD_ENDPOINTS";
/// Where the function finds the secret that holds the etcd settings.
pub const SECRET_VAR: &str = "FLOW_ETCD_SECRET_ARN";

/// Logging and telemetry (`crate::telemetry::init`, as on the local server): JSON lines on
/// stdout (CloudWatch) at `RUST_LOG`, else `FLOW_LOG_LEVEL`, else `AWS_LAMBDA_LOG_LEVEL` (Lambda's
/// log-level control), else `info`; each line lists its spans (the runtime's carries
/// `requestId`, the router's `request_id`, the same id, see `app::prepare`). With
/// `FLOW_OBSERVABILITY_ENABLED`: OTLP when an endpoint is set (flushed before each response),
/// else the HTTP metrics as CloudWatch EMF lines. Never fails: a setting that cannot be used is
/// logged (and answered with 503 by [`LambdaApp`]) and telemetry stays off.
pub fn init_telemetry() -> Telemetry {
    let settings = TelemetrySettings::from_env(|n| std::env::var(n).ok());
    let wanted = settings.clone().unwrap_or_default();
    match telemetry::init(&wanted, Host::Lambda, true) {
        Ok(t) => t,
        Err(e) => {
            let off = TelemetrySettings {
                enabled: false,
                ..wanted
            };
            let t = telemetry::init(&off, Host::Lambda, true).unwrap_or_default();
            tracing::error!("{e}; telemetry is off");
            t
        }
    }
}

/// The `bootstrap` program: logging, the lazily configured app, then the Lambda runtime loop.
pub async fn run() -> Result<(), lambda_http::Error> {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        return Err(
            "bootstrap is the AWS Lambda function and needs the Lambda runtime API \
                    (AWS_LAMBDA_RUNTIME_API): run it on Lambda or under `cargo lambda watch`; \
                    the local server is `flow-api`"
                .into(),
        );
    }
    let telemetry = init_telemetry();
    lambda_http::run(LambdaApp::from_env_with(Options {
        telemetry,
        ..Options::default()
    }))
    .await
}
