//! The API's instruments: built once per process, cloned into every layer and store handle.
//!
//! Three modes, decided once at startup:
//! - **off** (observability disabled): every method returns at its first branch, before any
//!   attribute is built: the cost is one `Option` check;
//! - **OTLP**: OpenTelemetry instruments from the SDK meter provider, exported by its periodic
//!   reader (cumulative temporality unless `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`
//!   says otherwise);
//! - **EMF** (Lambda without a collector): the two HTTP metrics as one CloudWatch EMF JSON line
//!   per request on stdout; the other metrics are not written (CloudWatch bills per metric).
//!
//! Names, kinds, units and attribute keys are the contract with dashboards and alert rules:
//! they are the constants in [`names`] and [`attr`], asserted by the receiver tests and listed
//! in the README.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, UpDownCounter};

use super::emf::EmfWriter;

/// Metric names (the `flow_api_` family).
pub mod names {
    /// Counter: REST requests answered.
    pub const HTTP_REQUESTS: &str = "flow_api_http_requests_total";
    /// Histogram (ms): REST request latency.
    pub const HTTP_LATENCY: &str = "flow_api_http_latency_ms";
    /// Counter: gRPC calls answered.
    pub const GRPC_REQUESTS: &str = "flow_api_grpc_requests_total";
    /// Histogram (ms): gRPC call latency.
    pub const GRPC_LATENCY: &str = "flow_api_grpc_latency_ms";
    /// Up-down counter: requests being served.
    pub const REQUESTS_IN_FLIGHT: &str = "flow_api_requests_in_flight";
    /// Counter: store round trips.
    pub const STORE_ROUND_TRIPS: &str = "flow_api_store_round_trips_total";
    /// Histogram (ms): store round-trip latency.
    pub const STORE_LATENCY: &str = "flow_api_store_latency_ms";
    /// Counter: store round trips that failed because the store was unavailable.
    pub const STORE_UNAVAILABLE: &str = "flow_api_store_unavailable_total";
    /// Counter: compare-and-swap writes tried again after losing a race.
    pub const CAS_RETRIES: &str = "flow_api_cas_retries_total";
    /// Counter: compare-and-swap writes abandoned (the client got ABORTED).
    pub const CAS_GIVE_UPS: &str = "flow_api_cas_give_ups_total";
}

/// Attribute keys.
pub mod attr {
    /// REST: the request method (`GET`, ..., `_OTHER`).
    pub const HTTP_METHOD: &str = "http.method";
    /// REST: the route template (`/v1/flows/{name}`), or `unmatched`.
    pub const HTTP_ROUTE: &str = "http.route";
    /// REST: the response status, an integer.
    pub const HTTP_STATUS_CODE: &str = "http.status_code";
    /// gRPC: the full method (`/flowpipe.v1.FlowService/CreateFlow`), or `_OTHER`.
    pub const RPC_METHOD: &str = "rpc.method";
    /// gRPC: the numeric status code.
    pub const RPC_GRPC_STATUS_CODE: &str = "rpc.grpc.status_code";
    /// `http` or `grpc`, on [`super::names::REQUESTS_IN_FLIGHT`].
    pub const PROTOCOL: &str = "protocol";
    /// The store's wire operation: `range` or `txn`.
    pub const STORE_OPERATION: &str = "store.operation";
    /// `read` (a range, or a transaction of reads only) or `write`.
    pub const STORE_ACCESS: &str = "store.access";
    /// The write a compare-and-swap loop ran: `create_flow`, `update_flow`, `rollback_flow`,
    /// `delete_flow`, `create_schema`, `delete_schema`.
    pub const WRITE: &str = "write";
    /// Why a compare-and-swap write tried again: `raced` (another writer committed first) or
    /// `stale` (the attempt decided from a hint that turned out stale, such as a create whose
    /// name was taken: an expected second attempt, not contention).
    pub const REASON: &str = "reason";
}

/// `http.route` of a request no route matched: one shared value, so scanners probing random
/// paths cannot create a time series per path.
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// `http.method` / `rpc.method` / `write` for a value outside the known set (semconv's
/// `_OTHER`).
pub const OTHER: &str = "_OTHER";

/// Latency bucket boundaries in milliseconds. The SDK default (0, 5, 10, 25, ...) would put
/// nearly every request of this API (well under a millisecond on the embedded store, a few ms on
/// etcd) in its first two buckets, which makes a p95 meaningless.
pub const LATENCY_BOUNDARIES_MS: &[f64] = &[
    0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
    10000.0,
];

/// Which server a request in flight arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// REST.
    Http,
    /// gRPC.
    Grpc,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

/// What a store round trip was, for [`Metrics::store_round_trip`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOp {
    /// `range` or `txn`.
    pub operation: &'static str,
    /// `read` or `write`.
    pub access: &'static str,
}

/// The process's instruments. Cloning is one `Arc` increment (or nothing when off).
#[derive(Clone, Default)]
pub struct Metrics {
    sink: Option<Arc<Sink>>,
}

enum Sink {
    Otel(Box<Instruments>),
    Emf(EmfWriter),
}

struct Instruments {
    http_requests: Counter<u64>,
    http_latency: Histogram<f64>,
    grpc_requests: Counter<u64>,
    grpc_latency: Histogram<f64>,
    in_flight: UpDownCounter<i64>,
    store_round_trips: Counter<u64>,
    store_latency: Histogram<f64>,
    store_unavailable: Counter<u64>,
    cas_retries: Counter<u64>,
    cas_give_ups: Counter<u64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.sink.as_deref() {
            None => "off",
            Some(Sink::Otel(_)) => "otlp",
            Some(Sink::Emf(_)) => "emf",
        };
        f.debug_struct("Metrics").field("mode", &mode).finish()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Metrics {
    /// Records nothing.
    pub fn disabled() -> Self {
        Metrics { sink: None }
    }

    /// Instruments on `meter` (from the SDK meter provider [`super::init`] builds).
    pub fn otel(meter: &Meter) -> Self {
        let latency = |name: &'static str, what: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("ms")
                .with_description(what)
                .with_boundaries(LATENCY_BOUNDARIES_MS.to_vec())
                .build()
        };
        let counter = |name: &'static str, what: &'static str| {
            meter.u64_counter(name).with_description(what).build()
        };
        let instruments = Instruments {
            http_requests: counter(names::HTTP_REQUESTS, "REST requests answered"),
            http_latency: latency(names::HTTP_LATENCY, "REST request latency"),
            grpc_requests: counter(names::GRPC_REQUESTS, "gRPC calls answered"),
            grpc_latency: latency(names::GRPC_LATENCY, "gRPC call latency"),
            in_flight: meter
                .i64_up_down_counter(names::REQUESTS_IN_FLIGHT)
                .with_description("Requests being served")
                .build(),
            store_round_trips: counter(names::STORE_ROUND_TRIPS, "Store round trips"),
            store_latency: latency(names::STORE_LATENCY, "Store round-trip latency"),
            store_unavailable: counter(
                names::STORE_UNAVAILABLE,
                "Store round trips that failed because the store was unavailable",
            ),
            cas_retries: counter(
                names::CAS_RETRIES,
                "Compare-and-swap transactions that failed and were tried again",
            ),
            cas_give_ups: counter(
                names::CAS_GIVE_UPS,
                "Compare-and-swap writes abandoned after their last attempt lost (ABORTED)",
            ),
        };
        Metrics {
            sink: Some(Arc::new(Sink::Otel(Box::new(instruments)))),
        }
    }

    /// The two HTTP metrics as CloudWatch EMF lines; nothing else is recorded.
    pub fn emf(writer: EmfWriter) -> Self {
        Metrics {
            sink: Some(Arc::new(Sink::Emf(writer))),
        }
    }

    /// Whether anything is recorded.
    pub fn is_enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// Whether the OpenTelemetry instruments are recorded (OTLP mode).
    pub fn is_otel(&self) -> bool {
        matches!(self.sink.as_deref(), Some(Sink::Otel(_)))
    }

    /// One REST request: `route` is the route template (or [`UNMATCHED_ROUTE`]), never the path.
    pub fn http_request(&self, method: &'static str, route: &str, status: u16, elapsed: Duration) {
        let Some(sink) = self.sink.as_deref() else {
            return;
        };
        match sink {
            Sink::Otel(i) => {
                let attrs = [
                    KeyValue::new(attr::HTTP_METHOD, method),
                    KeyValue::new(attr::HTTP_ROUTE, route.to_owned()),
                    KeyValue::new(attr::HTTP_STATUS_CODE, i64::from(status)),
                ];
                i.http_requests.add(1, &attrs);
                i.http_latency.record(ms(elapsed), &attrs);
            }
            Sink::Emf(w) => w.http_request(method, route, status, ms(elapsed)),
        }
    }

    /// One gRPC call: `method` is the full method (`/flowpipe.v1.FlowService/CreateFlow`) or
    /// [`OTHER`]; `code` the numeric gRPC status.
    pub fn grpc_request(&self, method: &str, code: i32, elapsed: Duration) {
        let Some(Sink::Otel(i)) = self.sink.as_deref() else {
            return;
        };
        let attrs = [
            KeyValue::new(attr::RPC_METHOD, method.to_owned()),
            KeyValue::new(attr::RPC_GRPC_STATUS_CODE, i64::from(code)),
        ];
        i.grpc_requests.add(1, &attrs);
        i.grpc_latency.record(ms(elapsed), &attrs);
    }

    /// Counts a request in flight until the returned guard is dropped (also when the request's
    /// future is dropped because the client went away).
    pub fn in_flight(&self, protocol: Protocol) -> InFlight {
        if let Some(Sink::Otel(i)) = self.sink.as_deref() {
            i.in_flight
                .add(1, &[KeyValue::new(attr::PROTOCOL, protocol.as_str())]);
            InFlight {
                metrics: self.clone(),
                protocol,
            }
        } else {
            InFlight {
                metrics: Metrics::disabled(),
                protocol,
            }
        }
    }

    /// One store round trip, and whether it failed because the store was unavailable.
    pub fn store_round_trip(&self, op: StoreOp, elapsed: Duration, unavailable: bool) {
        let Some(Sink::Otel(i)) = self.sink.as_deref() else {
            return;
        };
        let attrs = [
            KeyValue::new(attr::STORE_OPERATION, op.operation),
            KeyValue::new(attr::STORE_ACCESS, op.access),
        ];
        i.store_round_trips.add(1, &attrs);
        i.store_latency.record(ms(elapsed), &attrs);
        if unavailable {
            i.store_unavailable.add(1, &attrs);
        }
    }

    /// A compare-and-swap `write` failed its transaction and will try again, for `reason`.
    pub fn cas_retry(&self, write: &'static str, reason: &'static str) {
        if let Some(Sink::Otel(i)) = self.sink.as_deref() {
            i.cas_retries.add(
                1,
                &[
                    KeyValue::new(attr::WRITE, write),
                    KeyValue::new(attr::REASON, reason),
                ],
            );
        }
    }

    /// A compare-and-swap `write` lost its last attempt (the client gets ABORTED).
    pub fn cas_give_up(&self, write: &'static str) {
        if let Some(Sink::Otel(i)) = self.sink.as_deref() {
            i.cas_give_ups.add(1, &[KeyValue::new(attr::WRITE, write)]);
        }
    }
}

/// See [`Metrics::in_flight`].
pub struct InFlight {
    metrics: Metrics,
    protocol: Protocol,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(Sink::Otel(i)) = self.metrics.sink.as_deref() {
            i.in_flight
                .add(-1, &[KeyValue::new(attr::PROTOCOL, self.protocol.as_str())]);
        }
    }
}
