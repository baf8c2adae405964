//! [`LambdaApp`]: the function as a tower service from API Gateway requests (as `lambda_http`
//! converts them) to responses. It builds its store and router at the first request and keeps
//! them for the execution environment's life; a configuration that cannot work answers 503.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::http::{HeaderValue, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flowpipe_core::Error;
use flowpipe_store::{EtcdConfig, Store};
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use tokio::sync::{Mutex, OnceCell};
use tower::{Service, ServiceExt};

use super::config::{EtcdSource, LambdaConfig};
use super::secret::{fetch_secret, secret_label, secrets_client_from_env};
use super::{RETRY_AFTER, SECRET_VAR};
use crate::error::RestError;
use crate::state::IndexBackfill;
use crate::telemetry::Telemetry;
use crate::{AppState, router};

/// Settings of [`LambdaApp`] that tests change.
#[derive(Clone, Default)]
pub struct Options {
    /// The Secrets Manager client; by default built from the environment
    /// ([`super::secrets_client_from_env`]) at the first
    /// invocation that needs it.
    pub secrets_client: Option<aws_sdk_secretsmanager::Client>,
    /// Overrides [`RETRY_AFTER`].
    pub retry_after: Option<Duration>,
    /// What the function records into and flushes before each response
    /// ([`super::init_telemetry`]); disabled by default.
    pub telemetry: Telemetry,
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
    telemetry: Telemetry,
    /// The last failed attempt; its lock also makes concurrent first requests build once.
    failure: Mutex<Option<(Instant, String)>>,
}

impl LambdaApp {
    /// The function as configured by the environment. Does no I/O; a bad variable is logged
    /// here and answered with 503 on every request.
    pub fn from_env() -> Self {
        Self::from_env_with(Options::default())
    }

    /// As [`LambdaApp::from_env`], with `options`.
    pub fn from_env_with(options: Options) -> Self {
        let config = LambdaConfig::from_env();
        if let Err(e) = &config {
            tracing::error!("configuration error: {e}");
        }
        Self::from_config(config, options)
    }

    /// The function on `config`.
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
                telemetry: options.telemetry,
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
                let client = self
                    .inner
                    .secrets
                    .get_or_init(|| async { secrets_client_from_env() })
                    .await;
                let text = fetch_secret(client, id).await?;
                EtcdConfig::from_secret_json(&text, endpoints)
                    .map_err(|e| format!("secret {:?} ({SECRET_VAR}) {e}", secret_label(id)))?
            }
        };
        etcd.namespace.clone_from(&config.namespace);
        // Store::etcd, not Store::open: the function never opens (or links) the embedded store.
        let store = Store::etcd(etcd).map_err(|e| format!("cannot open the etcd store: {e}"))?;
        tracing::info!(
            store = %store.describe(),
            auth = config.api_key.is_some(),
            "store configured"
        );
        // Frozen between invocations, an execution environment builds a missing name index on
        // its first ListFlows, not in the background.
        let telemetry = self.inner.telemetry.clone();
        Ok(router(AppState::with(
            telemetry.instrument(store),
            config.http.clone(),
            config.api_key.clone(),
            telemetry,
            IndexBackfill::OnFirstUnindexedList,
        )))
    }

    /// Serves one request, then flushes its telemetry when exporting OTLP: Lambda may freeze
    /// the environment as soon as the response is returned.
    pub async fn handle<B>(&self, req: Request<B>) -> Response
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let resp = self.serve(req).await;
        self.inner.telemetry.flush_invocation().await;
        resp
    }

    async fn serve<B>(&self, req: Request<B>) -> Response
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
                let mut resp = RestError(e).into_response();
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
