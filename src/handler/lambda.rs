//! The AWS Lambda entry (binary `bootstrap`): the REST router ([`super::router`]) behind API
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
//! - a broken etcd connection is rebuilt on the next invocation by [`crate::store::EtcdStore`].
//!
//! Configuration (environment variables):
//! - `ETCD_ENDPOINTS`: comma-separated etcd endpoints, for an etcd without credentials;
//! - `FLOW_ETCD_SECRET_ARN`: a Secrets Manager secret (ARN or name) whose JSON holds `endpoints`
//!   (a list or a comma-separated string; optional when `ETCD_ENDPOINTS` is set), optional
//!   `username`/`password` and PEM `ca`/`cert`/`key`. The SDK honours `AWS_ENDPOINT_URL`;
//! - `FLOW_AUTH_ENABLED` + `FLOW_API_KEY`, `FLOW_ENV`, `FLOW_CORS_ORIGINS`,
//!   `FLOW_HTTP_BODY_LIMIT`, `FLOW_REQUEST_TIMEOUT`: as on the local server.
//!
//! Paths: API Gateway puts a named stage in the path of HTTP API events (`/prod/v1/flows`), and
//! `lambda_http` adds it to REST API events unless `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is set.
//! The entry removes the stage either way, so routes match with or without that variable.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use axum::Router;
use axum::body::{Body, HttpBody};
use axum::http::{HeaderValue, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use serde_json::Value;
use tokio::sync::{Mutex, OnceCell};
use tower::{Service, ServiceExt};

use crate::core::Error;
use crate::store::{EtcdConfig, Store, StoreConfig};

use super::state::{parse_bool as boolean, parse_duration as duration};
use super::{ApiKey, AppState, HttpSettings};

/// After a failed configuration attempt, requests within this time get the same 503 without
/// asking Secrets Manager again (a broken secret must not turn every request into an API call).
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The longest the first invocation waits for Secrets Manager. A function in a VPC without a
/// route to Secrets Manager would otherwise hang until the Lambda timeout.
pub const SECRET_TIMEOUT: Duration = Duration::from_secs(5);

const ENDPOINTS_VAR: &str = "ETCD_ENDPOINTS";
const SECRET_VAR: &str = "FLOW_ETCD_SECRET_ARN";

// ---- configuration --------------------------------------------------------------------------

/// Where the function finds etcd.
#[derive(Debug, Clone)]
pub enum EtcdSource {
    /// `ETCD_ENDPOINTS`: an etcd that needs no credentials.
    Endpoints(Vec<String>),
    /// `FLOW_ETCD_SECRET_ARN`: endpoints and credentials in a Secrets Manager secret, read at the
    /// first invocation. `endpoints` (from `ETCD_ENDPOINTS`) are used when the secret has none.
    Secret { id: String, endpoints: Vec<String> },
}

/// The function's configuration, from environment variables only (no I/O).
#[derive(Debug, Clone)]
pub struct LambdaConfig {
    pub etcd: EtcdSource,
    pub http: HttpSettings,
    pub api_key: Option<ApiKey>,
    /// Prefix of every etcd key (tests); empty in production.
    pub namespace: Vec<u8>,
}

impl LambdaConfig {
    /// A configuration on `etcd` with the default HTTP settings and no authentication.
    pub fn new(etcd: EtcdSource) -> Self {
        LambdaConfig {
            etcd,
            http: HttpSettings::default(),
            api_key: None,
            namespace: Vec::new(),
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
            Some(list) => endpoint_list(&list).map_err(|e| format!("{ENDPOINTS_VAR}: {e}"))?,
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
            None => {
                if endpoints.iter().any(|e| e.starts_with("https://")) {
                    return Err(format!(
                        "{ENDPOINTS_VAR} has https endpoints but no CA to verify them: put the \
                         endpoints and the PEM `ca` in the secret named by {SECRET_VAR}"
                    ));
                }
                EtcdSource::Endpoints(endpoints)
            }
        };

        let auth_enabled = match get("FLOW_AUTH_ENABLED") {
            None => false,
            Some(v) => boolean(&v).map_err(|e| format!("FLOW_AUTH_ENABLED: {e}"))?,
        };
        let api_key =
            ApiKey::when_enabled(auth_enabled, get("FLOW_API_KEY").as_deref()).map_err(|_| {
                "FLOW_AUTH_ENABLED is set but FLOW_API_KEY is empty; refusing to serve \
                 without a key"
                    .to_string()
            })?;

        let mut http = HttpSettings {
            env: get("FLOW_ENV"),
            ..HttpSettings::default()
        };
        if let Some(v) = get("FLOW_CORS_ORIGINS") {
            http.cors_origins = v
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(String::from)
                .collect();
        }
        if let Some(v) = get("FLOW_HTTP_BODY_LIMIT") {
            http.body_limit = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("FLOW_HTTP_BODY_LIMIT must be a positive number of bytes, got {v:?}")
            })?;
        }
        if let Some(v) = get("FLOW_REQUEST_TIMEOUT") {
            http.request_timeout =
                duration(&v).map_err(|e| format!("FLOW_REQUEST_TIMEOUT: {e}"))?;
        }
        Ok(LambdaConfig {
            etcd,
            http,
            api_key,
            namespace: Vec::new(),
        })
    }
}

/// Endpoints from a comma-separated list, each `http(s)://host:port` or `host:port`.
fn endpoint_list(list: &str) -> Result<Vec<String>, String> {
    let endpoints: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(String::from)
        .collect();
    check_endpoints(&endpoints)?;
    Ok(endpoints)
}

fn check_endpoints(endpoints: &[String]) -> Result<(), String> {
    endpoints
        .iter()
        .try_for_each(|e| EtcdConfig::check_endpoint(e))
}

/// The etcd settings held by a secret's JSON text. `fallback` endpoints (from `ETCD_ENDPOINTS`)
/// are used when the secret has none. Messages never quote the secret's values.
pub fn etcd_config_from_secret(text: &str, fallback: &[String]) -> Result<EtcdConfig, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        // serde_json's syntax errors give a position, never the text.
        format!("is not valid JSON ({e})")
    })?;
    let Value::Object(map) = v else {
        return Err(
            "must be a JSON object with `endpoints` (and optional `username`, \
                    `password`, `ca`, `cert`, `key`)"
                .into(),
        );
    };
    let string = |field: &str| -> Result<Option<String>, String> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("field `{field}` must be a string")),
        }
    };
    let endpoints = match map.get("endpoints") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => {
            endpoint_list(s).map_err(|e| format!("field `endpoints`: {e}"))?
        }
        Some(Value::Array(items)) => {
            let mut list = Vec::new();
            for item in items {
                let Value::String(s) = item else {
                    return Err("field `endpoints` must be a list of strings".into());
                };
                list.extend(endpoint_list(s).map_err(|e| format!("field `endpoints`: {e}"))?);
            }
            list
        }
        Some(_) => {
            return Err(
                "field `endpoints` must be a list of strings or a comma-separated string".into(),
            );
        }
    };
    let endpoints = if endpoints.is_empty() {
        if fallback.is_empty() {
            return Err(format!(
                "has no `endpoints` (and {ENDPOINTS_VAR} is not set): add e.g. \
                 \"endpoints\": [\"https://etcd-0.internal:2379\"]"
            ));
        }
        fallback.to_vec()
    } else {
        endpoints
    };

    let mut config = EtcdConfig::new(endpoints);
    config.username = string("username")?;
    config.password = string("password")?;
    if config.username.is_some() != config.password.is_some() {
        return Err("fields `username` and `password` must be given together".into());
    }
    let ca = string("ca")?;
    let cert = string("cert")?;
    let key = string("key")?;
    if cert.is_some() != key.is_some() {
        return Err(
            "fields `cert` and `key` (the client certificate) must be given together".into(),
        );
    }
    if let Some(ca) = &ca {
        pem_certificates("ca", ca)?;
    }
    if let Some(cert) = &cert {
        pem_certificates("cert", cert)?;
    }
    if let Some(key) = &key {
        let mut reader = key.as_bytes();
        match rustls_pemfile::private_key(&mut reader) {
            Ok(Some(_)) => {}
            _ => return Err("field `key` holds no PEM private key".into()),
        }
    }
    if ca.is_none() && config.endpoints.iter().any(|e| e.starts_with("https://")) {
        return Err(
            "has https endpoints but no `ca`: add the PEM CA bundle that signed etcd's \
             certificates"
                .into(),
        );
    }
    config.ca_pem = ca.map(String::into_bytes);
    config.cert_pem = cert.map(String::into_bytes);
    config.key_pem = key.map(String::into_bytes);
    Ok(config)
}

fn pem_certificates(field: &str, pem: &str) -> Result<(), String> {
    let mut reader = pem.as_bytes();
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut reader).collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(()),
        _ => Err(format!(
            "field `{field}` holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)"
        )),
    }
}

/// The secret's name for messages: what follows `:secret:` in an ARN (ARNs also carry the
/// account id, which API clients have no business seeing).
fn secret_label(id: &str) -> &str {
    id.split_once(":secret:").map_or(id, |(_, name)| name)
}

// ---- AWS ------------------------------------------------------------------------------------

/// The AWS config loader the function uses: the SDK's default chain (credentials and region
/// from the Lambda environment, `AWS_ENDPOINT_URL` honoured) over a rustls + ring HTTPS client,
/// so no second crypto library (aws-lc) is linked. Loading it does no network I/O in Lambda,
/// where the region and credentials are environment variables.
pub fn aws_config_loader() -> aws_config::ConfigLoader {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http)
}

async fn default_secrets_client() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&aws_config_loader().load().await)
}

/// The secret's text, or a one-line reason it cannot be had.
async fn fetch_secret(client: &aws_sdk_secretsmanager::Client, id: &str) -> Result<String, String> {
    let what = format!("secret {:?} ({SECRET_VAR})", secret_label(id));
    let call = client.get_secret_value().secret_id(id).send();
    let out = match tokio::time::timeout(SECRET_TIMEOUT, call).await {
        Err(_) => {
            return Err(format!(
                "Secrets Manager did not answer within {SECRET_TIMEOUT:?} reading {what}; a \
                 function in a VPC needs a Secrets Manager VPC endpoint or a NAT gateway"
            ));
        }
        Ok(Err(e)) => return Err(describe_secret_error(&e, &what)),
        Ok(Ok(out)) => out,
    };
    if let Some(s) = out.secret_string() {
        return Ok(s.to_string());
    }
    match out.secret_binary() {
        Some(b) => String::from_utf8(b.as_ref().to_vec())
            .map_err(|_| format!("{what} is binary, not JSON text")),
        None => Err(format!("{what} has no value")),
    }
}

fn describe_secret_error(e: &SdkError<GetSecretValueError>, what: &str) -> String {
    match e.as_service_error() {
        Some(GetSecretValueError::ResourceNotFoundException(_)) => {
            format!("{what} does not exist (or has no current version)")
        }
        Some(GetSecretValueError::DecryptionFailure(_)) => {
            format!("{what} cannot be decrypted: the function's role needs kms:Decrypt on its key")
        }
        Some(se) if se.code() == Some("AccessDeniedException") => format!(
            "the function's role may not read {what}: it needs secretsmanager:GetSecretValue on it"
        ),
        Some(se) => format!(
            "Secrets Manager refused to read {what}: {}",
            se.message().unwrap_or("no message")
        ),
        None => format!(
            "cannot read {what} from Secrets Manager: {}",
            DisplayErrorContext(e)
        ),
    }
}

// ---- the service ----------------------------------------------------------------------------

/// Settings of [`LambdaApp`] that tests change.
#[derive(Clone, Default)]
pub struct Options {
    /// The Secrets Manager client; by default built from [`aws_config_loader`] at the first
    /// invocation that needs it.
    pub secrets_client: Option<aws_sdk_secretsmanager::Client>,
    /// Overrides [`RETRY_AFTER`].
    pub retry_after: Option<Duration>,
}

/// The function: a tower service from API Gateway requests (as `lambda_http` converts them) to
/// responses, building its [`AppState`] and router at the first request. Clone it freely:
/// clones share everything.
#[derive(Clone)]
pub struct LambdaApp {
    inner: Arc<Inner>,
}

struct Inner {
    config: Result<LambdaConfig, String>,
    secrets: OnceCell<aws_sdk_secretsmanager::Client>,
    retry_after: Duration,
    router: OnceCell<Router>,
    /// The last failed attempt; its lock also makes concurrent first requests build once.
    failure: Mutex<Option<(Instant, String)>>,
}

impl LambdaApp {
    /// The function as configured by the environment. Does no I/O; a bad variable is logged
    /// here and answered with 503 on every request.
    pub fn from_env() -> Self {
        let config = LambdaConfig::from_env();
        if let Err(e) = &config {
            tracing::error!("configuration error: {e}");
        }
        Self::from_config(config, Options::default())
    }

    pub fn new(config: LambdaConfig) -> Self {
        Self::from_config(Ok(config), Options::default())
    }

    /// The function on `config`; an `Err` (a configuration problem, one line) answers every
    /// request except `/healthz` with 503 and that line.
    pub fn from_config(config: Result<LambdaConfig, String>, options: Options) -> Self {
        LambdaApp {
            inner: Arc::new(Inner {
                config,
                secrets: OnceCell::new_with(options.secrets_client),
                retry_after: options.retry_after.unwrap_or(RETRY_AFTER),
                router: OnceCell::new(),
                failure: Mutex::new(None),
            }),
        }
    }

    /// The router, built at the first call; `Err` with the reason while it cannot be built.
    pub async fn router(&self) -> Result<Router, Error> {
        if let Some(r) = self.inner.router.get() {
            return Ok(r.clone());
        }
        let mut failure = self.inner.failure.lock().await;
        if let Some(r) = self.inner.router.get() {
            return Ok(r.clone());
        }
        if let Some((at, reason)) = failure.as_ref()
            && at.elapsed() < self.inner.retry_after
        {
            return Err(unavailable(reason));
        }
        match self.build_router().await {
            Ok(router) => {
                let _ = self.inner.router.set(router.clone());
                *failure = None;
                Ok(router)
            }
            Err(reason) => {
                tracing::error!(reason = %reason, "cannot configure the etcd store");
                *failure = Some((Instant::now(), reason.clone()));
                Err(unavailable(&reason))
            }
        }
    }

    async fn build_router(&self) -> Result<Router, String> {
        let config = self.inner.config.as_ref().map_err(Clone::clone)?;
        let mut etcd = match &config.etcd {
            EtcdSource::Endpoints(endpoints) => EtcdConfig::new(endpoints.clone()),
            EtcdSource::Secret { id, endpoints } => {
                let client = self.inner.secrets.get_or_init(default_secrets_client).await;
                let text = fetch_secret(client, id).await?;
                etcd_config_from_secret(&text, endpoints)
                    .map_err(|e| format!("secret {:?} ({SECRET_VAR}) {e}", secret_label(id)))?
            }
        };
        etcd.namespace = config.namespace.clone();
        let store = Store::open(StoreConfig::Etcd(Box::new(etcd)))
            .map_err(|e| format!("cannot open the etcd store: {}", e.message()))?;
        tracing::info!(
            store = %store.describe(),
            auth = config.api_key.is_some(),
            "store configured"
        );
        Ok(super::router(AppState::new(
            store,
            config.http.clone(),
            config.api_key.clone(),
        )))
    }

    /// Serves one request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let req = prepare(req.map(Body::new));
        match self.router().await {
            Ok(router) => match router.oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            },
            // Liveness holds even without a store, as on the local server.
            Err(_) if req.uri().path() == "/healthz" => healthz(),
            Err(e) => {
                let id = req.headers().get("x-request-id").cloned();
                let mut resp = e.into_response();
                if let Some(id) = id {
                    resp.headers_mut().insert("x-request-id", id);
                }
                resp
            }
        }
    }
}

fn unavailable(reason: &str) -> Error {
    Error::unavailable(format!("the API cannot reach its etcd store: {reason}"))
}

fn healthz() -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

/// Fits an API Gateway request to the router: the stage out of the path, the Lambda request id
/// as `x-request-id` (so logs and the response carry it), and no response compression for REST
/// API events (REST APIs return a base64 body as text unless binary media types are set up).
fn prepare(mut req: Request<Body>) -> Request<Body> {
    if !req.headers().contains_key("x-request-id")
        && let Some(id) = req
            .lambda_context_ref()
            .and_then(|c| HeaderValue::from_str(&c.request_id).ok())
    {
        req.headers_mut().insert("x-request-id", id);
    }
    let (stage, rest_api) = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(c)) => (c.stage.clone(), true),
        Some(RequestContext::ApiGatewayV2(c)) => (c.stage.clone(), false),
        _ => (None, false),
    };
    if rest_api {
        req.headers_mut().remove(header::ACCEPT_ENCODING);
    }
    let Some(stage) = stage.filter(|s| !s.is_empty() && s != "$default") else {
        return req;
    };
    let prefix = format!("/{stage}");
    let under_stage = |path: &str| {
        path.strip_prefix(&prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    // HTTP API events carry the stage in `rawPath`. REST API events do not: there it is
    // lambda_http's addition, unless the resource path itself starts like the stage.
    if rest_api && under_stage(req.raw_http_path()) {
        return req;
    }
    let path = req.uri().path();
    if !under_stage(path) {
        return req;
    }
    let rest = &path[prefix.len()..];
    let rest = if rest.is_empty() { "/" } else { rest };
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

impl<B> Service<Request<B>> for LambdaApp
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let app = self.clone();
        Box::pin(async move { Ok(app.handle(req).await) })
    }
}

// ---- the binary -----------------------------------------------------------------------------

/// JSON lines on stdout (CloudWatch), at `AWS_LAMBDA_LOG_LEVEL` (Lambda's log-level control),
/// else `RUST_LOG`, else `info`. Each line lists its spans: the runtime's carries `requestId`,
/// the router's `request_id` (the same id, see [`prepare`]).
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .and_then(|l| EnvFilter::try_new(l.to_ascii_lowercase()).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(true)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
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
    init_logging();
    lambda_http::run(LambdaApp::from_env()).await
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn secrets_are_checked_without_quoting_them() {
        let c = etcd_config_from_secret(
            r#"{"endpoints": ["http://a:2379", "b:2379"], "username": "u", "password": "p"}"#,
            &[],
        )
        .unwrap();
        assert_eq!(c.endpoints, ["http://a:2379", "b:2379"]);
        assert_eq!(c.username.as_deref(), Some("u"));
        let c = etcd_config_from_secret(r#"{"endpoints": "http://a:2379,http://b:2379"}"#, &[])
            .unwrap();
        assert_eq!(c.endpoints.len(), 2);
        let c = etcd_config_from_secret(r#"{"username": "u", "password": "p"}"#, &["x:1".into()])
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
        ];
        for (text, expected) in cases {
            let e = etcd_config_from_secret(text, &[]).unwrap_err();
            assert!(e.contains(expected), "{text}: {e}");
            assert!(!e.contains("12345") && !e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn secret_labels_hide_the_account() {
        assert_eq!(
            secret_label(
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:flowpipe/etcd-AbCdEf"
            ),
            "flowpipe/etcd-AbCdEf"
        );
        assert_eq!(secret_label("flowpipe/etcd"), "flowpipe/etcd");
    }
}
