//! CloudWatch Embedded Metric Format (EMF): on Lambda without an OTLP collector, each REST
//! request writes one JSON line to stdout, and CloudWatch Logs extracts the two HTTP metrics
//! from it. No API call, no background task, nothing to flush before the environment freezes.
//!
//! Document shape (CloudWatch "Specification: Embedded metric format"):
//! ```json
//! {"_aws":{"Timestamp":1700000000000,
//!          "CloudWatchMetrics":[{"Namespace":"flow-api",
//!                                "Dimensions":[["http.method","http.route","http.status_code"]],
//!                                "Metrics":[{"Name":"flow_api_http_requests_total","Unit":"Count"},
//!                                           {"Name":"flow_api_http_latency_ms","Unit":"Milliseconds"}]}]},
//!  "http.method":"GET","http.route":"/v1/flows/{name}","http.status_code":"200",
//!  "flow_api_http_requests_total":1,"flow_api_http_latency_ms":3.2}
//! ```
//! - every name in `Dimensions` and `Metrics` must be a member of the root object;
//! - dimension values are strings (CloudWatch dimensions are name/value strings), so the status
//!   code is `"200"` here while it is an integer attribute over OTLP;
//! - `Timestamp` is milliseconds since the epoch; a line is one log event (at most 1 MB).
//!
//! The line must be the whole log event: it is written with one `write_all` of a complete line,
//! which `Stdout` performs under its lock, so it never interleaves with the JSON log lines that
//! tracing-subscriber writes to the same stdout.

use std::io::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::metrics::{attr, names};

type Sink = dyn Fn(&str) + Send + Sync;

/// Writes one EMF line per REST request. Cheap to clone.
#[derive(Clone)]
pub struct EmfWriter {
    namespace: Arc<str>,
    sink: Arc<Sink>,
}

impl EmfWriter {
    /// Lines to stdout (on Lambda: the function's CloudWatch log group). `namespace` is the
    /// CloudWatch metric namespace: the service name (`flow-api`) by default.
    pub fn stdout(namespace: impl Into<Arc<str>>) -> Self {
        Self::with_sink(namespace, |line| {
            let mut out = std::io::stdout().lock();
            // A failed write to stdout has nowhere to be reported; metrics must not fail requests.
            let _ = out.write_all(line.as_bytes());
        })
    }

    /// Lines (each ending in `\n`) to `sink`: tests, or another writer.
    pub fn with_sink(
        namespace: impl Into<Arc<str>>,
        sink: impl Fn(&str) + Send + Sync + 'static,
    ) -> Self {
        EmfWriter {
            namespace: namespace.into(),
            sink: Arc::new(sink),
        }
    }

    /// Writes the line for one request, stamped now.
    pub fn http_request(&self, method: &str, route: &str, status: u16, latency_ms: f64) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut line = http_line(&self.namespace, now_ms, method, route, status, latency_ms);
        line.push('\n');
        (self.sink)(&line);
    }
}

/// The EMF document (one line, no trailing newline) for one REST request.
pub fn http_line(
    namespace: &str,
    timestamp_ms: u64,
    method: &str,
    route: &str,
    status: u16,
    latency_ms: f64,
) -> String {
    // A NaN or infinite latency cannot be written as JSON (serde_json would emit null, which
    // CloudWatch rejects for the whole line); it cannot happen with Instant arithmetic, but a
    // metrics line must never be malformed.
    let latency = if latency_ms.is_finite() {
        latency_ms
    } else {
        0.0
    };
    let doc: Value = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [[attr::HTTP_METHOD, attr::HTTP_ROUTE, attr::HTTP_STATUS_CODE]],
                "Metrics": [
                    {"Name": names::HTTP_REQUESTS, "Unit": "Count"},
                    {"Name": names::HTTP_LATENCY, "Unit": "Milliseconds"},
                ],
            }],
        },
        attr::HTTP_METHOD: method,
        attr::HTTP_ROUTE: route,
        attr::HTTP_STATUS_CODE: status.to_string(),
        names::HTTP_REQUESTS: 1,
        names::HTTP_LATENCY: latency,
    });
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn one_line_holds_both_metrics_and_their_dimensions() {
        let line = http_line(
            "flow-api",
            1_700_000_000_123,
            "GET",
            "/v1/flows/{name}",
            404,
            3.25,
        );
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();

        let aws = &v["_aws"];
        assert_eq!(aws["Timestamp"], json!(1_700_000_000_123u64));
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        let d = &directives[0];
        assert_eq!(d["Namespace"], "flow-api");
        assert_eq!(
            d["Dimensions"],
            json!([["http.method", "http.route", "http.status_code"]])
        );
        assert_eq!(
            d["Metrics"],
            json!([
                {"Name": "flow_api_http_requests_total", "Unit": "Count"},
                {"Name": "flow_api_http_latency_ms", "Unit": "Milliseconds"},
            ])
        );

        // Every referenced dimension and metric is a root member (the spec's MUST).
        for dim in d["Dimensions"][0].as_array().unwrap() {
            let value = &v[dim.as_str().unwrap()];
            assert!(
                value.is_string(),
                "dimension {dim} must be a string, got {value}"
            );
        }
        for m in d["Metrics"].as_array().unwrap() {
            assert!(v[m["Name"].as_str().unwrap()].is_number());
        }
        assert_eq!(v["http.method"], "GET");
        assert_eq!(v["http.route"], "/v1/flows/{name}");
        assert_eq!(v["http.status_code"], "404");
        assert_eq!(v["flow_api_http_requests_total"], 1);
        assert_eq!(v["flow_api_http_latency_ms"], 3.25);
    }

    #[test]
    fn values_are_json_escaped_and_latency_is_always_a_number() {
        let line = http_line("ns", 0, "GET", "/a\"b\\c", 200, f64::NAN);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["http.route"], "/a\"b\\c");
        assert_eq!(v["flow_api_http_latency_ms"], 0.0);
    }

    #[test]
    fn the_writer_emits_one_newline_terminated_line_per_request() {
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        let w = EmfWriter::with_sink("flow-api", move |l| sink.lock().unwrap().push(l.to_owned()));
        w.http_request("POST", "/v1/flows", 201, 1.5);
        w.http_request("GET", "unmatched", 404, 0.2);
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 2);
        for l in lines.iter() {
            assert!(l.ends_with('\n') && l.matches('\n').count() == 1);
            let v: Value = serde_json::from_str(l.trim_end()).unwrap();
            assert!(v["_aws"]["Timestamp"].as_u64().unwrap() > 1_600_000_000_000);
        }
    }
}
