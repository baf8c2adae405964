//! Every API request's deadline for the store, set when it arrives (REST: [`store_deadline`];
//! gRPC: [`StoreDeadline`]): [`flowpipe_store::Store::request_timeout`] (etcd's
//! `FLOW_ETCD_REQUEST_TIMEOUT`) from then on. Every etcd call the request makes, the retries of
//! calls that never took effect, and its wait behind other writes of the same flow all end by it,
//! so a request answers 503 UNAVAILABLE within that time when etcd cannot be reached, however
//! many requests queue up meanwhile (see `flowpipe_store::deadline`). The embedded store has no
//! such deadline.

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// REST middleware: runs the rest of the request within its store deadline.
pub async fn store_deadline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let deadline = state.store().request_timeout().map(|t| Instant::now() + t);
    flowpipe_store::deadline::within(deadline, next.run(req)).await
}

/// A gRPC service whose every call runs within its store deadline.
#[derive(Clone)]
pub struct StoreDeadline<S> {
    inner: S,
    timeout: Option<Duration>,
}

impl<S> StoreDeadline<S> {
    /// `inner`, each call within `timeout` (none: no deadline).
    pub fn new(inner: S, timeout: Option<Duration>) -> Self {
        StoreDeadline { inner, timeout }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for StoreDeadline<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for StoreDeadline<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let deadline = self.timeout.map(|t| Instant::now() + t);
        Box::pin(flowpipe_store::deadline::within(
            deadline,
            self.inner.call(req),
        ))
    }
}
