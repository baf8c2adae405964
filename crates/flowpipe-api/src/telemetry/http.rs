//! The REST side: one server span, one access-log line and the request metrics per request.
//!
//! Added with `Router::layer` (inside `SetRequestIdLayer`, so the request id exists), never
//! around the router as a service: axum inserts [`MatchedPath`] while routing, so only
//! middleware that runs after routing sees the route template.
//!
//! - `http.route` is the template (`/v1/flows/{name}`); a request no route matched (the
//!   fallback's 404) gets [`UNMATCHED_ROUTE`], one value for every unknown path;
//! - `http.method` is one of the standard methods or `_OTHER`;
//! - the span continues the W3C `traceparent` of the request, if any, and carries the request
//!   id (`x-request-id`);
//! - a response rendered from the contract's error carries an [`ErrorCode`] extension
//!   (`crate::error`), so the span records the contract's code and reason, not only the HTTP
//!   status; 5xx responses mark the span as an error (a 4xx is the client's).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use http::{Method, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::field::Empty;

use super::Telemetry;
use super::metrics::{InFlight, Metrics, OTHER, Protocol, UNMATCHED_ROUTE};

/// Response extension: the contract's error a response renders (gRPC code and
/// `ErrorInfo.reason`), for the span.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode {
    /// The gRPC code of the contract, e.g. 5 for NOT_FOUND.
    pub code: i32,
    /// The `ErrorInfo.reason`, e.g. `FLOW_NOT_FOUND`.
    pub reason: &'static str,
}

/// See the module documentation.
#[derive(Clone)]
pub struct HttpTelemetryLayer {
    metrics: Metrics,
    propagate: bool,
}

impl HttpTelemetryLayer {
    /// The layer recording into `telemetry`.
    pub fn new(telemetry: &Telemetry) -> Self {
        HttpTelemetryLayer {
            metrics: telemetry.metrics().clone(),
            // A remote parent only matters when spans are exported.
            propagate: telemetry.exports_otlp(),
        }
    }
}

impl<S> Layer<S> for HttpTelemetryLayer {
    type Service = HttpTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpTelemetry {
            inner,
            metrics: self.metrics.clone(),
            propagate: self.propagate,
        }
    }
}

/// The service of [`HttpTelemetryLayer`].
#[derive(Clone)]
pub struct HttpTelemetry<S> {
    inner: S,
    metrics: Metrics,
    propagate: bool,
}

/// The method as a bounded set of values: anything else would let clients mint series.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => OTHER,
    }
}

impl<S, B, ResB> Service<Request<B>> for HttpTelemetry<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = HttpFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let method = method_label(req.method());
        let route = req.extensions().get::<MatchedPath>().cloned();
        let route_str = route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // Field values are evaluated only when a subscriber wants the span.
        let span = tracing::info_span!(
            "http",
            otel.name = %format_args!("{method} {route_str}"),
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = method,
            http.route = route_str,
            url.path = req.uri().path(),
            request_id = request_id,
            http.response.status_code = Empty,
            error.type = Empty,
            flow.error.reason = Empty,
        );
        if self.propagate {
            // Before the span is first entered: an OpenTelemetry span's parent is fixed when it
            // starts.
            super::continue_trace(&span, req.headers());
        }
        let in_flight = self.metrics.in_flight(Protocol::Http);
        let future = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        HttpFuture {
            future,
            recorder: Some(Recorder {
                metrics: self.metrics.clone(),
                method,
                route,
                start,
                span,
                _in_flight: in_flight,
                done: false,
            }),
        }
    }
}

pin_project! {
    /// The response future of [`HttpTelemetry`].
    pub struct HttpFuture<F> {
        #[pin]
        future: F,
        recorder: Option<Recorder>,
    }
}

impl<F, ResB, E> Future for HttpFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.recorder.as_ref().map(|r| r.span.enter());
            std::task::ready!(this.future.poll(cx))
        };
        if let Some(recorder) = this.recorder.take() {
            match &result {
                Ok(resp) => recorder.finish(resp.status().as_u16(), resp.extensions().get()),
                // axum's router is infallible; a failing inner service is the server's fault.
                Err(_) => recorder.finish(500, None),
            }
        }
        Poll::Ready(result)
    }
}

/// Everything needed to record the request once its outcome is known. Dropped unfinished when
/// the request's future is dropped (the client went away): recorded as 499, the status
/// grpc-gateway and this API give a cancelled request.
struct Recorder {
    metrics: Metrics,
    method: &'static str,
    route: Option<MatchedPath>,
    start: Instant,
    span: tracing::Span,
    _in_flight: InFlight,
    done: bool,
}

impl Recorder {
    fn finish(mut self, status: u16, error: Option<&ErrorCode>) {
        self.done = true;
        self.record(status, error);
    }

    fn record(&self, status: u16, error: Option<&ErrorCode>) {
        let elapsed = self.start.elapsed();
        let route = self
            .route
            .as_ref()
            .map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
        self.metrics
            .http_request(self.method, route, status, elapsed);

        let span = &self.span;
        span.record("http.response.status_code", i64::from(status));
        if let Some(e) = error {
            span.record("error.type", super::code_name(e.code));
            span.record("flow.error.reason", e.reason);
        } else if status >= 500 {
            span.record("error.type", status.to_string());
        }
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
        // The access log (the line tower-http's TraceLayer wrote before).
        tracing::info!(
            parent: span,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request finished"
        );
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if !self.done {
            self.span.record("error.type", "CANCELLED");
            self.record(499, None);
        }
    }
}
