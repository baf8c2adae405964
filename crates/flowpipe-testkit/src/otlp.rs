//! [`Receiver`]: an in-test OTLP/gRPC collector. opentelemetry-proto's generated collector
//! services (`MetricsService`, `TraceService`) served by tonic on 127.0.0.1, keeping every
//! export request in memory ([`Collected`]). It runs on a tokio runtime of its own, so a test
//! can kill it the way a collector dies ([`Receiver::kill`]: the listener and every open
//! connection close at once) or start one that never answers (a hung collector).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;

/// An attribute value with its OTLP type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum V {
    S(String),
    I(i64),
    B(bool),
    /// A double, as text (keeps `V` orderable).
    F(String),
    Other,
}

/// Attributes as a sorted map of key to typed value.
pub fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, V> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => V::S(s.clone()),
                Some(any_value::Value::IntValue(i)) => V::I(*i),
                Some(any_value::Value::BoolValue(b)) => V::B(*b),
                Some(any_value::Value::DoubleValue(f)) => V::F(f.to_string()),
                _ => V::Other,
            };
            (kv.key.clone(), v)
        })
        .collect()
}

/// A string attribute value.
pub fn s(v: &str) -> V {
    V::S(v.to_string())
}

/// Everything a [`Receiver`] was sent. Clones share it.
#[derive(Clone, Default)]
pub struct Collected {
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    /// The request metadata of every export (headers from OTEL_EXPORTER_OTLP_HEADERS).
    metadata: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
    /// A hung collector: every export waits this long before answering.
    delay: Option<Duration>,
    /// Keep only counts, not the requests (long benchmark runs).
    counting_only: bool,
    spans_received: Arc<std::sync::atomic::AtomicU64>,
    metric_requests: Arc<std::sync::atomic::AtomicU64>,
    trace_requests: Arc<std::sync::atomic::AtomicU64>,
}

fn metadata_of<T>(req: &tonic::Request<T>) -> BTreeMap<String, String> {
    metadata_of_headers(&req.metadata().clone().into_headers())
}

fn metadata_of_headers(headers: &http::HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect()
}

#[tonic::async_trait]
impl MetricsService for Collected {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        self.metric_requests.fetch_add(1, Ordering::Relaxed);
        if !self.counting_only {
            self.metadata.lock().unwrap().push(metadata_of(&req));
            self.metrics.lock().unwrap().push(req.into_inner());
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Collected {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        let metadata = req.metadata().clone().into_headers();
        self.trace_requests.fetch_add(1, Ordering::Relaxed);
        let req = req.into_inner();
        let spans: usize = req
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        self.spans_received
            .fetch_add(spans as u64, Ordering::Relaxed);
        if !self.counting_only {
            self.metadata
                .lock()
                .unwrap()
                .push(metadata_of_headers(&metadata));
            self.traces.lock().unwrap().push(req);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collected {
    /// How many metrics export requests arrived.
    pub fn metric_exports(&self) -> u64 {
        self.metric_requests.load(Ordering::Relaxed)
    }

    /// How many trace export requests arrived.
    pub fn trace_exports(&self) -> u64 {
        self.trace_requests.load(Ordering::Relaxed)
    }

    /// How many spans arrived.
    pub fn spans_received(&self) -> u64 {
        self.spans_received.load(Ordering::Relaxed)
    }

    /// The gRPC metadata of every export request.
    pub fn metadata(&self) -> Vec<BTreeMap<String, String>> {
        self.metadata.lock().unwrap().clone()
    }

    /// The metric `name` as last exported (cumulative: the last export has the totals).
    pub fn metric(&self, name: &str) -> Option<Metric> {
        let exports = self.metrics.lock().unwrap();
        exports.iter().rev().find_map(|req| {
            req.resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .find(|m| m.name == name)
                .cloned()
        })
    }

    /// Resource attributes of the metrics exports.
    pub fn metrics_resource(&self) -> BTreeMap<String, V> {
        let exports = self.metrics.lock().unwrap();
        let rm = exports
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .next()
            .expect("a metrics export");
        attrs(&rm.resource.as_ref().expect("a resource").attributes)
    }

    /// Resource attributes of the trace exports.
    pub fn traces_resource(&self) -> BTreeMap<String, V> {
        let exports = self.traces.lock().unwrap();
        let rs = exports
            .iter()
            .flat_map(|r| &r.resource_spans)
            .next()
            .expect("a trace export");
        attrs(&rs.resource.as_ref().expect("a resource").attributes)
    }

    /// Every span received.
    pub fn spans(&self) -> Vec<Span> {
        self.traces
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| ss.spans.clone())
            .collect()
    }
}

/// An OTLP/gRPC receiver on 127.0.0.1; killed on drop.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it received.
    pub data: Collected,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Receiver {
    /// A receiver on 127.0.0.1:0.
    pub fn start() -> Receiver {
        Self::start_on("127.0.0.1:0".parse().unwrap(), None)
    }

    /// A receiver on 127.0.0.1:0 that keeps only counts ([`Collected::spans_received`], ...),
    /// for long runs.
    pub fn start_counting() -> Receiver {
        Self::start_with("127.0.0.1:0".parse().unwrap(), None, true)
    }

    /// A receiver on `addr` (SO_REUSEADDR, so a killed receiver's port can be taken again),
    /// answering every export after `delay` when given.
    pub fn start_on(addr: SocketAddr, delay: Option<Duration>) -> Receiver {
        Self::start_with(addr, delay, false)
    }

    fn start_with(addr: SocketAddr, delay: Option<Duration>, counting_only: bool) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-receiver")
            .enable_all()
            .build()
            .unwrap();
        let data = Collected {
            delay,
            counting_only,
            ..Collected::default()
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let service = data.clone();
        runtime.spawn(async move {
            // A receiver killed a moment ago may still hold the port: its runtime shuts down in
            // the background.
            let deadline = Instant::now() + Duration::from_secs(5);
            let listener = loop {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.set_reuseaddr(true).unwrap();
                match socket.bind(addr).and_then(|()| socket.listen(128)) {
                    Ok(l) => break l,
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("cannot bind the receiver on {addr}: {e}"),
                }
            };
            tx.send(listener.local_addr().unwrap()).unwrap();
            tonic::transport::Server::builder()
                .add_service(MetricsServiceServer::new(service.clone()))
                .add_service(TraceServiceServer::new(service))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await
                .unwrap();
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("receiver bound");
        Receiver {
            addr,
            data,
            runtime: Some(runtime),
        }
    }

    /// Kills the receiver like a crashed collector: listener and connections closed at once.
    pub fn kill(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Waits (bounded by `limit`) until `check` holds; panics naming `what` otherwise.
pub async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Lower-case hex, as trace and span ids are written in `traceparent`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
