//! The REST surface: grpc-gateway-compatible routes (contract A.1, B.2, B.4's HTTP extras) over
//! the core, plus `/healthz` and `/readyz`. [`router`] is the one HTTP seam: the local server
//! serves it with `axum::serve`, the Lambda function with `lambda_http::run`, tests with `oneshot`.
//!
//! Every failure, including those axum would answer itself (unknown route, wrong method, body too
//! large, malformed path), comes back in the contract's error format.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, Path, RawQuery, Request, State,
};
use axum::http::request::Parts;
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
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::core::json;
use crate::core::{Detail, Error, FieldViolation, Result, VersionNumber};
use crate::proto::v1::{CreateFlowRequest, Flow, SchemaDefinition, UpdateFlowRequest};

use super::state::AppState;

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
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request| {
                            let id = req
                                .headers()
                                .get("x-request-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("");
                            tracing::info_span!(
                                "http",
                                method = %req.method(),
                                path = %req.uri().path(),
                                request_id = %id,
                            )
                        })
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
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
    Error::internal("the server hit a bug handling this request").into_response()
}

async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => Error::DeadlineExceeded(Detail::new(
            "REQUEST_TIMEOUT",
            format!("the request took longer than {limit:?}"),
        ))
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
        return e.into_response();
    }
    next.run(req).await
}

async fn route_not_found(method: Method, uri: Uri) -> Error {
    Error::NotFound(
        Detail::new(
            "ROUTE_NOT_FOUND",
            format!("no route for {method} {}", uri.path()),
        )
        .with("path", uri.path()),
    )
}

/// A known route with a method it does not serve. grpc-gateway answers UNIMPLEMENTED, which the
/// contract's table (A.3) maps to 501.
async fn method_not_allowed(method: Method, uri: Uri) -> Error {
    Error::Unimplemented(
        Detail::new(
            "METHOD_NOT_ALLOWED",
            format!("{method} is not supported on {}", uri.path()),
        )
        .with("method", &method)
        .with("path", uri.path()),
    )
}

// ---- request parsing ------------------------------------------------------------------------

/// A query parameter, by its snake_case and lowerCamelCase names (both accepted, A.1).
type Param = (&'static str, &'static str);
const PAGE_SIZE: Param = ("page_size", "pageSize");
const PAGE_TOKEN: Param = ("page_token", "pageToken");
const VALIDATE_ONLY: Param = ("validate_only", "validateOnly");

/// The query parameters of a request, restricted to `allowed`: an unknown or repeated parameter
/// is an error naming it.
struct Query(Vec<(&'static str, String)>);

impl Query {
    fn parse(raw: Option<String>, allowed: &[Param]) -> Result<Self> {
        let mut out: Vec<(&'static str, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let Some((snake, _)) = allowed.iter().find(|(s, c)| k == *s || k == *c) else {
                let known: Vec<&str> = allowed.iter().map(|(s, _)| *s).collect();
                return Err(Error::invalid_field(
                    "UNKNOWN_QUERY_PARAMETER",
                    k.to_string(),
                    if known.is_empty() {
                        "this route takes no query parameters".to_string()
                    } else {
                        format!("unknown query parameter; known: {}", known.join(", "))
                    },
                ));
            };
            if out.iter().any(|(s, _)| s == snake) {
                return Err(Error::invalid_field(
                    "INVALID_QUERY_PARAMETER",
                    *snake,
                    "given more than once",
                ));
            }
            out.push((snake, v.into_owned()));
        }
        Ok(Query(out))
    }

    fn get(&self, p: Param) -> Option<&str> {
        self.0
            .iter()
            .find(|(s, _)| *s == p.0)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean, spelled as Go's `strconv.ParseBool` accepts (grpc-gateway's parser).
    fn bool(&self, p: Param) -> Result<bool> {
        match self.get(p) {
            None => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(v) => Err(Error::invalid_field(
                "INVALID_QUERY_PARAMETER",
                p.0,
                format!("must be true or false, got {v:?}"),
            )),
        }
    }

    fn i32(&self, p: Param) -> Result<i32> {
        match self.get(p) {
            None => Ok(0),
            Some(v) => v.parse().map_err(|_| {
                Error::invalid_field(
                    "INVALID_QUERY_PARAMETER",
                    p.0,
                    format!("must be a 32-bit integer, got {v:?}"),
                )
            }),
        }
    }

    fn string(&self, p: Param) -> String {
        self.get(p).unwrap_or_default().to_string()
    }
}

/// Path parameters, with axum's rejection turned into the contract's error.
struct PathParams<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(PathParams(v)),
            Err(rejection) => Err(Error::invalid_field(
                "INVALID_PATH",
                "path",
                format!("malformed path: {}", rejection.body_text()),
            )),
        }
    }
}

/// A JSON request body, as an extractor: the content type must be JSON (or absent), the body
/// within the limit. The content type is checked first, so a body of the wrong type is never read.
struct JsonBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or("").trim();
            let json = essence == "application/json"
                || (essence.starts_with("application/") && essence.ends_with("+json"));
            if !json {
                return Err(Error::invalid_field(
                    "UNSUPPORTED_MEDIA_TYPE",
                    "Content-Type",
                    format!("must be application/json, got {essence:?}"),
                ));
            }
        }
        Bytes::from_request(req, state)
            .await
            .map(JsonBody)
            .map_err(|rejection: BytesRejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Error::TooLarge(Detail::new(
                        "REQUEST_TOO_LARGE",
                        "request body is larger than the server accepts",
                    ))
                } else {
                    Error::invalid_field(
                        "UNREADABLE_BODY",
                        "body",
                        format!("cannot read the request body: {}", rejection.body_text()),
                    )
                }
            })
    }
}

fn version_param(v: &str) -> Result<u64> {
    VersionNumber::parse_request(v)
        .map(VersionNumber::get)
        .map_err(|e| Error::invalid_field("INVALID_VERSION", "version", e))
}

/// `If-Match: "<v>"` (also `W/"<v>"`; `*` means any version).
fn if_match(headers: &HeaderMap) -> Result<Option<u64>> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let bad = || {
        Error::invalid_field(
            "INVALID_IF_MATCH",
            "If-Match",
            "must be a version in quotes, e.g. If-Match: \"3\"",
        )
    };
    let s = value.to_str().map_err(|_| bad())?.trim();
    if s == "*" {
        return Ok(None);
    }
    let s = s.strip_prefix("W/").unwrap_or(s);
    let inner = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .ok_or_else(bad)?;
    VersionNumber::parse_request(inner)
        .map(|v| Some(v.get()))
        .map_err(|_| bad())
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
        .list(q.i32(PAGE_SIZE)?, &q.string(PAGE_TOKEN))
        .await?;
    json_response(&page)
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
    let expected = if_match(&headers)?;
    let spec = json::decode_flow_spec(&body)?;
    let flow = s
        .flows()
        .update(
            UpdateFlowRequest {
                name,
                spec: Some(spec),
                validate_only,
            },
            expected,
        )
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
        return Err(Error::unavailable("not ready: shutting down"));
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
        Ok(Err(e)) => Err(Error::unavailable(format!(
            "not ready: {store}: {}",
            e.message()
        ))),
        Err(_) => Err(Error::unavailable(format!(
            "not ready: {store} did not answer within 3s"
        ))),
    }
}
