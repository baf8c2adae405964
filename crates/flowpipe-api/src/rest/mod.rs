//! The REST surface: grpc-gateway-compatible routes (contract A.1, B.2, B.4's HTTP extras) over
//! the core, plus `/healthz` and `/readyz`. [`router`] is the one HTTP seam: the local server
//! serves it with `axum::serve`, the Lambda function with `lambda_http::run`, tests with `oneshot`.
//!
//! Every failure, including those axum would answer itself (unknown route, wrong method, body too
//! large, malformed path), comes back in the contract's error format.

use std::time::Duration;

mod csrf;
mod extract;

use axum::Router;
use axum::extract::{DefaultBodyLimit, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use flowpipe_core::json;
use flowpipe_core::proto::v1::{CreateFlowRequest, Flow, SchemaDefinition, UpdateFlowRequest};
use flowpipe_core::{Detail, Error, FieldViolation};

use crate::error::RestError;
use crate::telemetry::HttpTelemetryLayer;

use crate::state::AppState;

/// What a handler answers: a response, or the contract's error.
type Result<T, E = RestError> = std::result::Result<T, E>;

use extract::{
    JsonBody, PAGE_SIZE, PAGE_TOKEN, PathParams, Query, VALIDATE_ONLY, version_param,
    with_precondition,
};

/// The whole HTTP API over `state`.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/flows", post(create_flow).get(list_flows))
        .route(
            "/v1/flows/{name}",
            get(get_flow).put(update_flow).delete(delete_flow),
        )
        .route("/v1/flows/{name}/status", get(get_flow_status))
        .route("/v1/flows/{name}/rollback/{version}", post(rollback_flow))
        .route("/v1/flows/{name}/versions", get(list_flow_versions))
        .route("/v1/flows/{name}/versions/{version}", get(get_flow_version))
        .route("/v1/schemas", post(create_schema))
        .route(
            "/v1/schemas/{schema_id}",
            axum::routing::delete(delete_schema),
        )
        .route(
            "/v1/schemas/{schema_id}/versions",
            get(list_schema_versions),
        )
        .route(
            "/v1/schemas/{schema_id}/versions/{version}",
            get(get_schema),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ))
        // Outermost, so a forged write is refused before anything else looks at it.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            csrf::refuse_cross_site_writes,
        ));

    let operational = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));

    let http = state.http().clone();
    let mut router = api
        .merge(operational)
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are read into memory by the handlers, which turn a too-large one into 413.
        .layer(DefaultBodyLimit::max(http.body_limit))
        .layer(CompressionLayer::new())
        .layer(middleware::from_fn_with_state(
            http.request_timeout,
            request_timeout,
        ));
    if let Some(cors) = cors(&http.cors_origins) {
        router = router.layer(cors);
    }
    router
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                // The server span, access log and request metrics (crate::telemetry::http).
                .layer(HttpTelemetryLayer::new(state.telemetry()))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(CatchPanicLayer::custom(panic_response)),
        )
        .with_state(state)
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::IF_MATCH,
                header::HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([
                header::ETAG,
                header::HeaderName::from_static("x-request-id"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    RestError(Error::internal(
        "the server hit a bug handling this request",
    ))
    .into_response()
}

async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => RestError(Error::DeadlineExceeded(Detail::new(
            "REQUEST_TIMEOUT",
            format!("the request took longer than {limit:?}"),
        )))
        .into_response(),
    }
}

async fn require_api_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = state.api_key()
        && let Err(e) = key.check(
            req.headers()
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
        )
    {
        return RestError(e).into_response();
    }
    next.run(req).await
}

async fn route_not_found(method: Method, uri: Uri) -> RestError {
    RestError(Error::NotFound(
        Detail::new(
            "ROUTE_NOT_FOUND",
            format!("no route for {method} {}", uri.path()),
        )
        .with("path", uri.path()),
    ))
}

/// A known route with a method it does not serve. grpc-gateway answers UNIMPLEMENTED, which the
/// contract's table (A.3) maps to 501.
async fn method_not_allowed(method: Method, uri: Uri) -> RestError {
    RestError(Error::Unimplemented(
        Detail::new(
            "METHOD_NOT_ALLOWED",
            format!("{method} is not supported on {}", uri.path()),
        )
        .with("method", &method)
        .with("path", uri.path()),
    ))
}

// ---- responses ------------------------------------------------------------------------------

fn json_response<T: Serialize + prost::Name>(msg: &T) -> Result<Response> {
    Ok(json_ok(json::encode(msg)?))
}

fn json_ok(body: impl Into<axum::body::Body>) -> Response {
    let content_type = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )];
    (StatusCode::OK, content_type, body.into()).into_response()
}

/// A `Flow`, with `ETag: "<active version>"` (contract B.4) when there is an active version to
/// name: a `validate_only` answer describes nothing stored, so it has none.
fn flow_response(flow: Flow, active: Option<u64>) -> Result<Response> {
    let mut resp = json_response(&flow)?;
    if let Some(etag) = active.and_then(|v| HeaderValue::from_str(&format!("\"{v}\"")).ok()) {
        resp.headers_mut().insert(header::ETAG, etag);
    }
    Ok(resp)
}

fn empty_response() -> Result<Response> {
    Ok(json_ok("{}"))
}

// ---- handlers -------------------------------------------------------------------------------

async fn create_flow(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let q = Query::parse(q, &[VALIDATE_ONLY])?;
    let validate_only = q.bool(VALIDATE_ONLY)?;
    let spec = json::decode_flow_spec(&body)?;
    let flow = s
        .flows()
        .create(CreateFlowRequest {
            spec: Some(spec),
            validate_only,
        })
        .await?;
    let etag = (!validate_only).then_some(flow.version);
    flow_response(flow, etag)
}

async fn list_flows(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Response> {
    let q = Query::parse(q, &[PAGE_SIZE, PAGE_TOKEN])?;
    let page = s
        .flows()
        .list_page(q.i32(PAGE_SIZE)?, &q.string(PAGE_TOKEN))
        .await?;
    if !page.from_index {
        s.index_missing().await;
    }
    json_response(&page.response)
}

async fn get_flow(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    PathParams(name): PathParams<String>,
) -> Result<Response> {
    Query::parse(q, &[])?;
    let flow = s.flows().get(&name).await?;
    let etag = Some(flow.version);
    flow_response(flow, etag)
}

async fn update_flow(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    PathParams(name): PathParams<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let q = Query::parse(q, &[VALIDATE_ONLY])?;
    let validate_only = q.bool(VALIDATE_ONLY)?;
    let spec = with_precondition(json::decode_flow_spec(&body)?, &headers)?;
    let flow = s
        .flows()
        .update(UpdateFlowRequest {
            name,
            spec: Some(spec),
            validate_only,
        })
        .await?;
    let etag = (!validate_only).then_some(flow.version);
    flow_response(flow, etag)
}

async fn delete_flow(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    PathParams(name): PathParams<String>,
) -> Result<Response> {
    Query::parse(q, &[])?;
    s.flows().delete(&name).await?;
    empty_response()
}

async fn get_flow_status(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    PathParams(name): PathParams<String>,
) -> Result<Response> {
    Query::parse(q, &[])?;
    json_response(&s.flows().status(&name).await?)
}

async fn rollback_flow(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    PathParams(params): PathParams<(String, String)>,
) -> Result<Response> {
    Query::parse(q, &[])?;
    let (name, version) = params;
    let version = version_param(&version)?;
    let flow = s.flows().rollback(&name, version).await?;
    let etag = Some(flow.version);
    flow_response(flow, etag)
}

async fn list_flow_versions(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    PathParams(name): PathParams<String>,
) -> Result<Response> {
    let q = Query::parse(q, &[PAGE_SIZE, PAGE_TOKEN])?;
    let page = s
        .flows()
        .list_versions(&name, q.i32(PAGE_SIZE)?, &q.string(PAGE_TOKEN))
        .await?;
    json_response(&page)
}

async fn get_flow_version(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    PathParams(params): PathParams<(String, String)>,
) -> Result<Response> {
    Query::parse(q, &[])?;
    let (name, version) = params;
    let version = version_param(&version)?;
    let (flow, active) = s.flows().get_version(&name, version).await?;
    flow_response(flow, Some(active.get()))
}

async fn create_schema(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    Query::parse(q, &[])?;
    let def: SchemaDefinition = json::decode(&body, "SchemaDefinition")?;
    json_response(&s.schemas().create(Some(def)).await?)
}

async fn get_schema(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    PathParams(params): PathParams<(String, String)>,
) -> Result<Response> {
    Query::parse(q, &[])?;
    let (id, version) = params;
    let version: u32 = version.parse().map_err(|_| {
        Error::invalid(
            "INVALID_VERSION",
            vec![FieldViolation::new(
                "version",
                format!("must be a schema version number (0 for the newest), got {version:?}"),
            )],
        )
    })?;
    json_response(&s.schemas().get(&id, version).await?)
}

async fn list_schema_versions(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    PathParams(id): PathParams<String>,
) -> Result<Response> {
    Query::parse(q, &[])?;
    json_response(&s.schemas().list_versions(&id).await?)
}

async fn delete_schema(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    PathParams(id): PathParams<String>,
) -> Result<Response> {
    Query::parse(q, &[])?;
    s.schemas().delete(&id).await?;
    empty_response()
}

/// Liveness: the process answers. Never touches the store.
async fn healthz() -> Response {
    json_ok(r#"{"status":"ok"}"#)
}

/// Readiness: the store answers within 3 s, else 503 in the error format. Unauthenticated, so it
/// names the kind of store, not where it is.
async fn readyz(State(s): State<AppState>) -> Result<Response> {
    let store = s.store().kind();
    if s.is_draining() {
        return Err(Error::unavailable("not ready: shutting down").into());
    }
    match tokio::time::timeout(Duration::from_secs(3), s.store().ping()).await {
        Ok(Ok(())) => Ok(json_ok(
            serde_json::json!({
                "status": "ready",
                "store": store,
                "env": s.http().env,
            })
            .to_string(),
        )),
        Ok(Err(e)) => Err(Error::unavailable(format!("not ready: {store}: {e}")).into()),
        Err(_) => {
            Err(Error::unavailable(format!("not ready: {store} did not answer within 3s")).into())
        }
    }
}
