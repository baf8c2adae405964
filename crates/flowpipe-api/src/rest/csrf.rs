//! The guard against cross-site request forgery (contract B.4). REST bodies are read as JSON
//! whatever their `Content-Type`, as grpc-gateway does, so that `curl -d '{...}'` works. That
//! would let any web page make a visitor's browser write to an API it can reach (a local server
//! without authentication, say) with a "simple" form or `fetch` request, which browsers send to
//! other sites without asking CORS first. So a write that a browser sends from another site with
//! a `Content-Type` other than JSON is refused with PERMISSION_DENIED and writes nothing. A JSON
//! write from another site is left to CORS: browsers preflight it, and the CORS setting decides.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use flowpipe_core::{Detail, Error};

use crate::error::RestError;
use crate::state::AppState;

/// Refuses a cross-site browser write whose body is not declared JSON.
pub(super) async fn refuse_cross_site_writes(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let write = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::DELETE | Method::PATCH
    );
    if write
        && !declares_json(req.headers())
        && let Some(why) = from_another_site(req.headers(), &state.http().cors_origins)
    {
        let e = Error::PermissionDenied(
            Detail::new(
                "CROSS_SITE_WRITE",
                format!(
                    "refusing a cross-site write ({why}) whose Content-Type is not application/json: send it with Content-Type: application/json"
                ),
            )
            .with("method", req.method()),
        );
        return RestError(e).into_response();
    }
    next.run(req).await
}

/// `application/json` or `application/<something>+json`, parameters aside.
fn declares_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Why the request comes from a browser on another site, if it does: the browser says so
/// (`Sec-Fetch-Site: cross-site`), or it names an `Origin` that is neither this server's own nor
/// allowed by the CORS setting. Requests without either header (curl, flowctl, scripts) are not
/// a browser's cross-site requests.
fn from_another_site(headers: &HeaderMap, cors_origins: &[String]) -> Option<&'static str> {
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if fetch_site.is_some_and(|s| s.eq_ignore_ascii_case("cross-site")) {
        return Some("Sec-Fetch-Site: cross-site");
    }
    let origin = headers
        .get(header::ORIGIN)?
        .to_str()
        .unwrap_or("null")
        .trim();
    let allowed = cors_origins
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(origin));
    let same_origin = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .zip(origin.split_once("://").map(|(_, authority)| authority))
        .is_some_and(|(host, authority)| host.eq_ignore_ascii_case(authority));
    (!allowed && !same_origin).then_some("its Origin is not allowed by the CORS setting")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn json_is_recognised_with_parameters_and_suffixes() {
        for ct in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(declares_json(&headers(&[("content-type", ct)])), "{ct}");
        }
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "application/jsonx",
        ] {
            assert!(!declares_json(&headers(&[("content-type", ct)])), "{ct}");
        }
        assert!(!declares_json(&HeaderMap::new()));
    }

    #[test]
    fn another_site_is_told_by_fetch_metadata_or_origin() {
        let allowed = vec!["https://ui.example".to_string()];
        assert!(
            from_another_site(&HeaderMap::new(), &allowed).is_none(),
            "curl"
        );
        assert!(
            from_another_site(&headers(&[("sec-fetch-site", "cross-site")]), &allowed).is_some()
        );
        assert!(
            from_another_site(&headers(&[("sec-fetch-site", "same-origin")]), &allowed).is_none()
        );
        assert!(
            from_another_site(&headers(&[("origin", "https://evil.example")]), &allowed).is_some()
        );
        assert!(from_another_site(&headers(&[("origin", "null")]), &allowed).is_some());
        assert!(
            from_another_site(&headers(&[("origin", "https://ui.example")]), &allowed).is_none()
        );
        assert!(
            from_another_site(
                &headers(&[("origin", "https://evil.example")]),
                &["*".into()]
            )
            .is_none()
        );
        // The server's own page (same origin) is not another site, whatever CORS says.
        let own = headers(&[
            ("origin", "http://localhost:8080"),
            ("host", "localhost:8080"),
        ]);
        assert!(from_another_site(&own, &[]).is_none());
        let other_port = headers(&[
            ("origin", "http://localhost:3000"),
            ("host", "localhost:8080"),
        ]);
        assert!(from_another_site(&other_port, &[]).is_some());
    }
}
