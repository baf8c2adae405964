//! Observability (README, "Observability"): OTLP/gRPC metrics and traces, the log, and on
//! Lambda without a collector CloudWatch EMF lines.
//!
//! - [`init`] installs the process's `tracing` subscriber (the log, filtered by `RUST_LOG` else
//!   `FLOW_LOG_LEVEL`; the OpenTelemetry span layer; the CAS counter layer, each with a filter of
//!   its own) and, when observability is on, builds the OTLP exporters, once per process, inside
//!   the tokio runtime. It returns the [`Telemetry`] handle: the instruments ([`Metrics`]) that
//!   every layer clones, and the providers to flush and shut down.
//! - [`http`] and [`grpc`]: the server span, access-log line and request metrics of each REST
//!   request and gRPC call; [`store`]: a child span and the store metrics per round trip;
//!   [`cas`]: compare-and-swap retries and give-ups; [`emf`]: the Lambda's EMF lines.
//!
//! Off by default: with `FLOW_OBSERVABILITY_ENABLED` unset nothing is built, dialled or
//! exported, and the layers cost one branch. On, nothing a request does waits on the
//! collector: spans go to the SDK's batch queue with a non-blocking send (dropped, and counted
//! by the SDK's `otel.sdk.processor.span.processed{error.type="queue_full"}`, when it is full)
//! and metrics are in-memory aggregations exported by the SDK's own threads.
//!
//! The standard `OTEL_*` variables are left to the SDK, which reads them itself (code
//! configuration wins over them in this SDK, so nothing they cover is set here):
//! `OTEL_EXPORTER_OTLP_{,TRACES_,METRICS_}HEADERS|TIMEOUT|COMPRESSION`,
//! `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`, `OTEL_METRIC_EXPORT_INTERVAL`,
//! `OTEL_BSP_SCHEDULE_DELAY|MAX_QUEUE_SIZE|MAX_EXPORT_BATCH_SIZE`, `OTEL_TRACES_SAMPLER(_ARG)`,
//! `OTEL_SPAN_*_LIMIT`, `OTEL_RESOURCE_ATTRIBUTES`. Set here: the endpoint of each signal
//! (`OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT`, else `--otel-endpoint` /
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, else `http://localhost:4317`, a bare `host:port` being
//! plaintext as in the original API), the OS trust roots for `https://` endpoints (the SDK's
//! automatic TLS trusts none), `service.name` (`OTEL_SERVICE_NAME` wins over `service.name` in
//! `OTEL_RESOURCE_ATTRIBUTES`, as the specification says), a random `service.instance.id`, and
//! `OTEL_SDK_DISABLED=true`, which the SDK does not read.

pub mod cas;
pub mod emf;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use ::http::HeaderMap;
use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::tonic_types::transport::ClientTlsConfig;
use opentelemetry_otlp::{RetryPolicy, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

pub use cas::CasMetricsLayer;
pub use emf::EmfWriter;
pub use grpc::GrpcTelemetryLayer;
pub use http::{ErrorCode, HttpTelemetryLayer};
pub use metrics::Metrics;
pub use store::InstrumentedKv;

use crate::settings::{
    DEFAULT_OTLP_ENDPOINT, GRPC_TLS_SERVER_NAME_VAR, LOG_LEVEL_VAR, TelemetrySettings,
    parse_otlp_endpoint,
};

/// The instrumentation scope of the API's metrics and spans.
pub const SCOPE: &str = "flowpipe-api";

/// On Lambda a flush runs before every response: one export attempt, bounded by this unless
/// `OTEL_EXPORTER_OTLP_TIMEOUT` (or the signal's own variable) says otherwise.
pub const LAMBDA_EXPORT_TIMEOUT: Duration = Duration::from_millis(1000);
/// The longest a Lambda invocation waits for its flush (both signals, in parallel).
pub const LAMBDA_FLUSH_BUDGET: Duration = Duration::from_millis(1500);

/// Where the process runs: decides the log's shape, the metrics sink and the flush discipline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Host {
    /// `flow-api`: logs on stderr, exports in the background, flushes at shutdown.
    #[default]
    Server,
    /// `bootstrap`: JSON logs on stdout; OTLP only to an endpoint given explicitly (flushed
    /// before each invocation's response), else the HTTP metrics as CloudWatch EMF lines.
    Lambda,
}

/// What a process exports, decided once from its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    /// Nothing exported, nothing dialled (the default).
    Off,
    /// OTLP/gRPC traces and metrics.
    Otlp,
    /// The two HTTP metrics as EMF lines on stdout; no traces.
    Emf,
}

/// What `settings` export on `host`.
pub fn export(settings: &TelemetrySettings, host: Host) -> Export {
    let explicit_endpoint = settings.endpoint.is_some()
        || env_set(opentelemetry_otlp::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
        || env_set(opentelemetry_otlp::OTEL_EXPORTER_OTLP_METRICS_ENDPOINT);
    match (settings.enabled, host) {
        (false, _) => Export::Off,
        (true, Host::Server) => Export::Otlp,
        (true, Host::Lambda) if explicit_endpoint => Export::Otlp,
        (true, Host::Lambda) => Export::Emf,
    }
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// The running telemetry: the instruments and, when exporting OTLP, the providers to flush and
/// shut down. Cheap to clone.
#[derive(Clone, Default)]
pub struct Telemetry {
    metrics: Metrics,
    providers: Option<Arc<Providers>>,
    host: Host,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("metrics", &self.metrics)
            .field("otlp", &self.providers.is_some())
            .field("host", &self.host)
            .finish()
    }
}

struct Providers {
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
}

/// Installs the process's `tracing` subscriber (once; a second call keeps the first) and, when
/// `settings` export OTLP, builds the exporters: call it inside the tokio runtime that serves
/// requests (the exporters' connections live on it). Builds nothing and dials nothing when
/// observability is off. `json_logs` picks JSON lines over text (the Lambda always logs JSON).
pub fn init(
    settings: &TelemetrySettings,
    host: Host,
    json_logs: bool,
) -> Result<Telemetry, String> {
    let (metrics, providers, tracer) = match export(settings, host) {
        Export::Off => (Metrics::disabled(), None, None),
        Export::Emf => (
            Metrics::emf(EmfWriter::stdout(settings.service_name.as_str())),
            None,
            None,
        ),
        Export::Otlp => {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(
                    "observability: the OTLP exporters must be built inside the tokio runtime"
                        .into(),
                );
            }
            let providers = build_providers(settings, host)?;
            let metrics = Metrics::otel(&providers.meter.meter(SCOPE));
            let tracer = providers.tracer.tracer(SCOPE);
            (metrics, Some(Arc::new(providers)), Some(tracer))
        }
    };
    install_subscriber(settings, host, json_logs, tracer, &metrics);
    match export(settings, host) {
        Export::Off => tracing::debug!("observability off"),
        Export::Emf => tracing::info!(
            namespace = %settings.service_name,
            "observability: HTTP metrics as CloudWatch EMF lines (no OTLP endpoint set)"
        ),
        Export::Otlp => tracing::info!(
            service = %settings.service_name,
            traces = %signal_endpoint(settings, opentelemetry_otlp::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)?,
            metrics = %signal_endpoint(settings, opentelemetry_otlp::OTEL_EXPORTER_OTLP_METRICS_ENDPOINT)?,
            "observability: exporting OTLP/gRPC"
        ),
    }
    if let Some(name) = &settings.grpc_tls_server_name {
        tracing::info!(
            "{GRPC_TLS_SERVER_NAME_VAR}={name} is accepted for compatibility and has no effect: \
             it named the gRPC server for the original API's internal REST-to-gRPC hop, and \
             this API serves REST itself"
        );
    }
    Ok(Telemetry {
        metrics,
        providers,
        host,
    })
}

/// The endpoint one signal is exported to: its own variable
/// (`OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT`), else the flag or
/// `OTEL_EXPORTER_OTLP_ENDPOINT`, else the default; always a URL (`host:port` is plaintext).
fn signal_endpoint(settings: &TelemetrySettings, signal_var: &str) -> Result<String, String> {
    match std::env::var(signal_var)
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        Some(v) => parse_otlp_endpoint(&v).map_err(|e| format!("{signal_var}: {e}")),
        None => Ok(settings
            .endpoint
            .clone()
            .unwrap_or_else(|| DEFAULT_OTLP_ENDPOINT.to_string())),
    }
}

fn resource(settings: &TelemetrySettings) -> Resource {
    Resource::builder()
        // Each process is a series of its own: with cumulative counters, two replicas (or two
        // Lambda environments) writing the same series would make them jump back and forth.
        .with_attribute(KeyValue::new(
            "service.instance.id",
            uuid::Uuid::new_v4().to_string(),
        ))
        // Last, so that it wins over `service.name` in OTEL_RESOURCE_ATTRIBUTES.
        .with_service_name(settings.service_name.clone())
        .build()
}

fn build_providers(settings: &TelemetrySettings, host: Host) -> Result<Providers, String> {
    let lambda = host == Host::Lambda;
    let err = |what: &str, e: &dyn std::fmt::Display| {
        format!("observability: cannot build the OTLP {what} exporter: {e}")
    };
    macro_rules! configure {
        ($builder:expr, $endpoint_var:expr, $timeout_var:expr) => {{
            let endpoint = signal_endpoint(settings, $endpoint_var)?;
            let mut b = $builder;
            if endpoint.starts_with("https://") {
                b = b.with_tls_config(ClientTlsConfig::new().with_enabled_roots());
            }
            b = b.with_endpoint(endpoint);
            if lambda {
                // The flush holds the invocation's response: one attempt, short deadline.
                b = b.with_retry_policy(RetryPolicy::disabled());
                if !env_set($timeout_var)
                    && !env_set(opentelemetry_otlp::OTEL_EXPORTER_OTLP_TIMEOUT)
                {
                    b = b.with_timeout(LAMBDA_EXPORT_TIMEOUT);
                }
            }
            b
        }};
    }
    let resource = resource(settings);

    let metric_exporter = configure!(
        opentelemetry_otlp::MetricExporter::builder().with_tonic(),
        opentelemetry_otlp::OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
        opentelemetry_otlp::OTEL_EXPORTER_OTLP_METRICS_TIMEOUT
    )
    // Temporality is left to OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE; its default,
    // cumulative, loses nothing to a failed export (the next one carries the totals).
    .build()
    .map_err(|e| err("metric", &e))?;
    let mut reader = PeriodicReader::builder(metric_exporter);
    if lambda && !env_set("OTEL_METRIC_EXPORT_INTERVAL") {
        // Every invocation flushes; a timer export in between would only repeat it.
        reader = reader.with_interval(Duration::from_secs(3600));
    }
    let meter = SdkMeterProvider::builder()
        .with_reader(reader.build())
        .with_resource(resource.clone())
        .build();
    // Global before the span processor is built: the processor binds its own counter of spans
    // (`otel.sdk.processor.span.processed`, which counts those dropped on a full queue) to the
    // global meter provider when it is built.
    opentelemetry::global::set_meter_provider(meter.clone());

    let span_exporter = configure!(
        opentelemetry_otlp::SpanExporter::builder().with_tonic(),
        opentelemetry_otlp::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
        opentelemetry_otlp::OTEL_EXPORTER_OTLP_TRACES_TIMEOUT
    )
    .build()
    .map_err(|e| err("span", &e))?;
    // The batch processor reads OTEL_BSP_*: a queue of 2,048 spans, batches of 512, every 5 s.
    // A full queue drops the span in `on_end` (a non-blocking send): the request never waits.
    let tracer = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(span_exporter).build())
        .with_resource(resource)
        .build();
    Ok(Providers { tracer, meter })
}

/// The log's filter: `RUST_LOG` when set (per-module filters), else `FLOW_LOG_LEVEL`; on
/// Lambda, Lambda's own log-level control (`AWS_LAMBDA_LOG_LEVEL`) when `FLOW_LOG_LEVEL` is not
/// set.
///
/// `RUST_LOG` is read as [`Targets`]: comma-separated `target=level` directives and an optional
/// bare default `level` (`info,flowpipe_core=debug,h2=off`), a target matching itself and every
/// module under it. `EnvFilter`'s span and field-value directives (`[span{field=value}]`) are
/// not supported: they compile regular expressions, and the regex engine alone was 0.35 MB of
/// the Lambda binary (BENCHMARKS.md, "Lambda binary size"). A `RUST_LOG` that does not parse is
/// ignored, as it was before, and `FLOW_LOG_LEVEL` applies.
fn log_filter(settings: &TelemetrySettings, host: Host) -> Targets {
    let from_rust_log = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| parse_rust_log(&v));
    let from_lambda = (host == Host::Lambda && !env_set(LOG_LEVEL_VAR))
        .then(|| std::env::var("AWS_LAMBDA_LOG_LEVEL").ok())
        .flatten()
        .and_then(|v| crate::settings::parse_log_level(&v).ok());
    from_rust_log.unwrap_or_else(|| {
        let l = from_lambda.unwrap_or(settings.log_level);
        Targets::new().with_default(level_filter(l))
    })
}

/// `RUST_LOG` as per-target levels; `None` when it does not parse.
fn parse_rust_log(v: &str) -> Option<Targets> {
    v.trim().parse::<Targets>().ok()
}

fn level_filter(l: crate::settings::LogLevel) -> LevelFilter {
    use crate::settings::LogLevel;
    match l {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    }
}

fn install_subscriber(
    settings: &TelemetrySettings,
    host: Host,
    json_logs: bool,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
    metrics: &Metrics,
) {
    let filter = log_filter(settings, host);
    // The Lambda collects stdout and logs JSON lines listing their spans (the runtime's carries
    // `requestId`); the local server logs to stderr, in colour only on a terminal.
    let log = match (host, json_logs) {
        (Host::Lambda, _) => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stdout)
            .boxed(),
        (Host::Server, true) => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
        (Host::Server, false) => {
            use std::io::IsTerminal;
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .boxed()
        }
    }
    .with_filter(filter);

    // The OpenTelemetry layer has its own filter, so the log level never decides which spans
    // exist: the API's own spans (server and store), never an event (they would become span
    // events on every request) and never the exporter's own stack.
    let spans = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_target(false)
            .with_context_activation(false)
            .with_filter(filter_fn(|m| {
                m.is_span() && m.target().starts_with("flowpipe_api")
            }))
    });
    let cas = metrics
        .is_otel()
        .then(|| CasMetricsLayer::new(metrics.clone()).with_filter(CasMetricsLayer::filter()));

    if Registry::default()
        .with(log)
        .with(spans)
        .with(cas)
        .try_init()
        .is_err()
    {
        tracing::debug!("a tracing subscriber was already installed; it is kept");
    }
}

impl Telemetry {
    /// Telemetry that records and exports nothing.
    pub fn disabled() -> Self {
        Telemetry::default()
    }

    /// Telemetry that records into `metrics` and exports no traces: an EMF writer with another
    /// sink (tests).
    pub fn from_metrics(metrics: Metrics, host: Host) -> Self {
        Telemetry {
            metrics,
            providers: None,
            host,
        }
    }

    /// The instruments, for the layers and the store.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether spans and metrics go to an OTLP collector.
    pub fn exports_otlp(&self) -> bool {
        self.providers.is_some()
    }

    /// `store` with its round trips traced and counted, when exporting OTLP; else `store`.
    pub fn instrument(&self, store: flowpipe_store::Store) -> flowpipe_store::Store {
        if self.exports_otlp() {
            let metrics = self.metrics.clone();
            store.wrapped(|s| InstrumentedKv::new(s, metrics))
        } else {
            store
        }
    }

    /// Exports everything recorded so far, within `budget`. The SDK's flush blocks its thread
    /// until the export, which runs on this runtime's tasks, is done: on a current-thread
    /// runtime (the Lambda) a flush on the runtime's own thread is a deadlock. So both signals
    /// flush on the blocking pool, in parallel, while this task waits asynchronously; a flush
    /// that overruns is left to finish in the background.
    pub async fn flush(&self, budget: Duration) -> Result<(), String> {
        let Some(p) = self.providers.clone() else {
            return Ok(());
        };
        let p2 = Arc::clone(&p);
        let spans = tokio::task::spawn_blocking(move || p.tracer.force_flush());
        let metrics = tokio::task::spawn_blocking(move || p2.meter.force_flush());
        match tokio::time::timeout(budget, async { (spans.await, metrics.await) }).await {
            Ok((Ok(Ok(())), Ok(Ok(())))) => Ok(()),
            Ok((s, m)) => Err(format!("flush failed: spans {s:?}, metrics {m:?}")),
            Err(_) => Err(format!("flush took longer than {budget:?}")),
        }
    }

    /// The Lambda's flush before each response (the environment may be frozen right after):
    /// [`Telemetry::flush`] within [`LAMBDA_FLUSH_BUDGET`]; a failure is logged, never the
    /// response's problem.
    pub async fn flush_invocation(&self) {
        if self.host == Host::Lambda
            && self.exports_otlp()
            && let Err(e) = self.flush(LAMBDA_FLUSH_BUDGET).await
        {
            tracing::warn!("telemetry not exported for this invocation: {e}");
        }
    }

    /// Flushes and stops the exporters: once, after the servers have drained (so the last
    /// requests are in), while the runtime still runs. Spans ended after this are dropped.
    pub async fn shutdown(&self) {
        let Some(p) = self.providers.clone() else {
            return;
        };
        let result = tokio::task::spawn_blocking(move || {
            let spans = p.tracer.shutdown();
            let metrics = p.meter.shutdown();
            (spans, metrics)
        })
        .await;
        match result {
            Ok((Ok(()), Ok(()))) => tracing::debug!("telemetry flushed and stopped"),
            other => tracing::warn!("telemetry shutdown incomplete: {other:?}"),
        }
    }
}

/// Reads W3C trace context from HTTP headers, which is also where gRPC metadata lives.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(::http::HeaderName::as_str).collect()
    }
}

/// Makes `span` continue the W3C `traceparent` (and `tracestate`) of `headers`, when there is
/// one; a malformed one starts a new trace.
fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let _ = span.set_parent(parent);
    }
}

/// A gRPC code's canonical name (`NOT_FOUND`): the contract's code on spans.
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// Server-side errors per the RPC semantic conventions (the others are the client's).
fn is_server_error(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn rust_log_takes_per_target_levels_and_a_default() {
        let f = parse_rust_log("warn,flowpipe_core=debug,H2=Off").unwrap();
        assert!(f.would_enable("flowpipe_core::cas", &Level::DEBUG));
        assert!(!f.would_enable("flowpipe_core::cas", &Level::TRACE));
        assert!(f.would_enable("flowpipe_api::rest", &Level::WARN));
        assert!(!f.would_enable("flowpipe_api::rest", &Level::INFO));
        assert!(!f.would_enable("H2", &Level::ERROR));

        // Without a default level only the named targets log, as with `EnvFilter`.
        let f = parse_rust_log(" flowpipe_api=INFO ").unwrap();
        assert!(f.would_enable("flowpipe_api::telemetry::http", &Level::INFO));
        assert!(!f.would_enable("tonic::transport", &Level::ERROR));
    }

    #[test]
    fn a_rust_log_that_does_not_parse_is_ignored() {
        assert!(parse_rust_log("flowpipe_api=loud").is_none());
        assert!(parse_rust_log("chatty=1=2").is_none());
    }

    #[test]
    fn flow_log_level_is_a_default_level() {
        let settings = TelemetrySettings {
            log_level: crate::settings::LogLevel::Warn,
            ..TelemetrySettings::default()
        };
        // Only when RUST_LOG is unset in this process; the tests never set it.
        if std::env::var_os("RUST_LOG").is_none() {
            let f = log_filter(&settings, Host::Server);
            assert!(f.would_enable("anything", &Level::WARN));
            assert!(!f.would_enable("anything", &Level::INFO));
        }
    }
}
