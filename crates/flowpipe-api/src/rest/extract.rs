//! The REST request extractors: query parameters, path parameters, JSON bodies and the
//! `If-Match` precondition, each turning what it cannot read into the contract's error.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use flowpipe_core::proto::v1::FlowSpec;
use flowpipe_core::{Detail, Error, Result, VersionNumber};

use crate::error::RestError;

/// A query parameter, by its snake_case and lowerCamelCase names (both accepted, A.1).
pub(super) type Param = (&'static str, &'static str);
pub(super) const PAGE_SIZE: Param = ("page_size", "pageSize");
pub(super) const PAGE_TOKEN: Param = ("page_token", "pageToken");
pub(super) const VALIDATE_ONLY: Param = ("validate_only", "validateOnly");

/// The query parameters of a request, restricted to `allowed`: an unknown or repeated parameter
/// is an error naming it.
pub(super) struct Query(Vec<(&'static str, String)>);

impl Query {
    pub(super) fn parse(raw: Option<String>, allowed: &[Param]) -> Result<Self> {
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
    pub(super) fn bool(&self, p: Param) -> Result<bool> {
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

    pub(super) fn i32(&self, p: Param) -> Result<i32> {
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

    pub(super) fn string(&self, p: Param) -> String {
        self.get(p).unwrap_or_default().to_string()
    }
}

/// Path parameters, with axum's rejection turned into the contract's error.
pub(super) struct PathParams<T>(pub(super) T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, RestError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(PathParams(v)),
            Err(rejection) => Err(Error::invalid_field(
                "INVALID_PATH",
                "path",
                format!("malformed path: {}", rejection.body_text()),
            )
            .into()),
        }
    }
}

/// A JSON request body, as an extractor, within the body limit. The body is read as JSON
/// whatever its `Content-Type` (missing, `text/plain`, form-encoded: grpc-gateway does the same,
/// so `curl -d '{...}'` works); the one exception, a cross-site browser write, is refused before
/// any handler runs (see `csrf`).
pub(super) struct JsonBody(pub(super) Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = RestError;

    async fn from_request(req: Request, state: &S) -> Result<Self, RestError> {
        Bytes::from_request(req, state)
            .await
            .map(JsonBody)
            .map_err(|rejection: BytesRejection| {
                RestError(if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Error::TooLarge(Detail::new(
                        "REQUEST_TOO_LARGE",
                        "request body is larger than the server accepts",
                    ))
                } else {
                    Error::invalid_field(
                        "UNREADABLE_BODY",
                        "request body",
                        format!("cannot read the request body: {}", rejection.body_text()),
                    )
                })
            })
    }
}

pub(super) fn version_param(v: &str) -> Result<u64> {
    VersionNumber::parse_request(v)
        .map(VersionNumber::get)
        .map_err(|e| Error::invalid_field("INVALID_VERSION", "version", e))
}

/// UpdateFlow's precondition over REST: the body's `version` and an `If-Match` header name the
/// same thing, the version the client expects to be active; the core reads it from
/// `spec.version`. Both given with different values is an error.
pub(super) fn with_precondition(mut spec: FlowSpec, headers: &HeaderMap) -> Result<FlowSpec> {
    match (spec.version, if_match(headers)?.unwrap_or(0)) {
        (_, 0) => {}
        (0, v) => spec.version = v,
        (a, b) if a == b => {}
        (a, b) => {
            return Err(Error::invalid_field(
                "CONFLICTING_PRECONDITIONS",
                "version",
                format!("spec.version {a} and If-Match {b} disagree; give one"),
            ));
        }
    }
    Ok(spec)
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
