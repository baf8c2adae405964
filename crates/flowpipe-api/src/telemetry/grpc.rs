//! The gRPC side, a tower layer for the tonic server (`Server::builder().layer(..)`): one server
//! span, one access-log line and the call metrics per gRPC call.
//!
//! The status of a call is where gRPC puts it:
//! - in the response *headers* for a trailers-only response, which is how tonic answers every
//!   error a handler returns (`Err(Status)`), an unknown service or method, a failed decode, an
//!   interceptor's rejection: the call is recorded as soon as the headers come back;
//! - otherwise in the *trailers* at the end of the body (every success, and an error in the
//!   middle of a stream): the body is wrapped and the call is recorded when the trailers pass
//!   through. A body dropped before its end (client cancelled) is recorded as CANCELLED (1).
//!
//! `rpc.method` is the full method, `/flowpipe.v1.FlowService/CreateFlow`, taken from the
//! request path; a path that is not `/<package.Service>/<Method>`, or a service not in the
//! optional allow-list ([`GrpcTelemetryLayer::with_services`]), is `_OTHER`, so garbage paths
//! cannot mint series. The span continues the `traceparent` metadata entry and carries the
//! request id (`x-request-id` metadata, generated when absent and echoed in the response
//! headers, as the REST side does).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::field::Empty;

use super::metrics::{InFlight, Metrics, OTHER, Protocol};
use super::{Telemetry, code_name, is_server_error};

const REQUEST_ID: &str = "x-request-id";

/// `grpc-status` from headers or trailers; a missing or malformed one is UNKNOWN.
fn status_in(map: &HeaderMap) -> Option<i32> {
    map.get("grpc-status").map(|v| {
        v.to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .unwrap_or(2)
    })
}

/// See the module documentation.
#[derive(Clone)]
pub struct GrpcTelemetryLayer {
    metrics: Metrics,
    propagate: bool,
    services: Option<Arc<[String]>>,
}

impl GrpcTelemetryLayer {
    /// The layer recording into `telemetry`.
    pub fn new(telemetry: &Telemetry) -> Self {
        GrpcTelemetryLayer {
            metrics: telemetry.metrics().clone(),
            propagate: telemetry.exports_otlp(),
            services: None,
        }
    }

    /// Only methods of these services (`flowpipe.v1.FlowService`, `grpc.health.v1.Health`,
    /// ...: the `NamedService::NAME`s the server serves) keep their name in `rpc.method`.
    pub fn with_services<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        self.services = Some(names.into_iter().map(Into::into).collect());
        self
    }

    fn method_label(&self, path: &str) -> String {
        let Some((service, method)) = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .filter(|(s, m)| !s.is_empty() && !m.is_empty() && !m.contains('/'))
        else {
            return OTHER.to_string();
        };
        if let Some(known) = &self.services
            && !known.iter().any(|k| k == service)
        {
            return OTHER.to_string();
        }
        format!("/{service}/{method}")
    }
}

impl<S> Layer<S> for GrpcTelemetryLayer {
    type Service = GrpcTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTelemetry {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`GrpcTelemetryLayer`].
#[derive(Clone)]
pub struct GrpcTelemetry<S> {
    inner: S,
    layer: GrpcTelemetryLayer,
}

impl<S, B, ResB> Service<Request<B>> for GrpcTelemetry<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: Body,
{
    type Response = Response<GrpcBody<ResB>>;
    type Error = S::Error;
    type Future = GrpcFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let method = self.layer.method_label(req.uri().path());
        let request_id = match req.headers().get(REQUEST_ID) {
            Some(v) => v.clone(),
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                let id = HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("-"));
                req.headers_mut().insert(REQUEST_ID, id.clone());
                id
            }
        };
        let span = tracing::info_span!(
            "grpc",
            otel.name = method.trim_start_matches('/'),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.method = method.as_str(),
            request_id = request_id.to_str().unwrap_or(""),
            rpc.grpc.status_code = Empty,
            error.type = Empty,
        );
        if self.layer.propagate {
            super::continue_trace(&span, req.headers());
        }
        let in_flight = self.layer.metrics.in_flight(Protocol::Grpc);
        let future = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        GrpcFuture {
            future,
            request_id,
            recorder: Some(Recorder {
                metrics: self.layer.metrics.clone(),
                method,
                start,
                span,
                _in_flight: in_flight,
                done: false,
            }),
        }
    }
}

pin_project! {
    /// The response future of [`GrpcTelemetry`].
    pub struct GrpcFuture<F> {
        #[pin]
        future: F,
        request_id: HeaderValue,
        recorder: Option<Recorder>,
    }
}

impl<F, ResB, E> Future for GrpcFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    ResB: Body,
{
    type Output = Result<Response<GrpcBody<ResB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.recorder.as_ref().map(|r| r.span.enter());
            std::task::ready!(this.future.poll(cx))
        };
        let mut recorder = this.recorder.take();
        Poll::Ready(match result {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                parts
                    .headers
                    .entry(REQUEST_ID)
                    .or_insert_with(|| this.request_id.clone());
                // Trailers-only response: the status is already here.
                if let Some(code) = status_in(&parts.headers)
                    && let Some(r) = recorder.take()
                {
                    r.finish(code);
                }
                Ok(Response::from_parts(
                    parts,
                    GrpcBody {
                        inner: body,
                        recorder,
                    },
                ))
            }
            Err(e) => {
                // tonic's server stack is infallible; anything else is the server's fault.
                if let Some(r) = recorder {
                    r.finish(2);
                }
                Err(e)
            }
        })
    }
}

pin_project! {
    /// The response body, watched for the trailers that carry the call's status.
    pub struct GrpcBody<B> {
        #[pin]
        inner: B,
        recorder: Option<Recorder>,
    }
}

impl<B: Body> Body for GrpcBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(trailers) = f.trailers_ref()
                    && let Some(r) = this.recorder.take()
                {
                    r.finish(status_in(trailers).unwrap_or(2));
                }
            }
            // A body error ends the call without a status: UNKNOWN, as a client would see it.
            Some(Err(_)) => {
                if let Some(r) = this.recorder.take() {
                    r.finish(2);
                }
            }
            // The end without trailers: UNKNOWN (a well-formed gRPC response always has them).
            None => {
                if let Some(r) = this.recorder.take() {
                    r.finish(2);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Records the call once its status is known; dropped unfinished = CANCELLED.
struct Recorder {
    metrics: Metrics,
    method: String,
    start: Instant,
    span: tracing::Span,
    _in_flight: InFlight,
    done: bool,
}

impl Recorder {
    fn finish(mut self, code: i32) {
        self.done = true;
        self.record(code);
    }

    fn record(&self, code: i32) {
        let elapsed = self.start.elapsed();
        self.metrics.grpc_request(&self.method, code, elapsed);
        let span = &self.span;
        span.record("rpc.grpc.status_code", i64::from(code));
        if code != 0 {
            span.record("error.type", code_name(code));
        }
        if is_server_error(code) {
            span.record("otel.status_code", "ERROR");
        }
        tracing::info!(
            parent: span,
            grpc_status = code,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "call finished"
        );
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if !self.done {
            self.record(1);
        }
    }
}
