//! What observability costs: the same operations against two API servers in the same run, one
//! with observability off (the default) and one exporting metrics and traces over OTLP/gRPC to
//! an in-process collector (`flowpipe_testkit::otlp::Receiver`, keeping counts only), rounds
//! interleaved. The verdict is the median of the per-round throughput ratios (on ÷ off).

use std::time::Duration;

use flowpipe_testkit::otlp::Receiver;

use crate::raw::BenchResult;
use crate::run::{self, Clients, Op, Transport, Worker};
use crate::server::cpu_time;

/// The largest throughput cost observability may have: on ÷ off ≥ 0.95.
pub const MIN_RATIO: f64 = 0.95;

/// The environment of the server with observability on, exporting to `collector`.
pub fn server_env(collector: std::net::SocketAddr) -> Vec<(&'static str, String)> {
    vec![
        ("FLOW_OBSERVABILITY_ENABLED", "true".into()),
        // host:port, as the original helm chart writes it.
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.to_string()),
        // A metrics export every 5 s (the default is 60 s), so the rows pay for exports too.
        ("OTEL_METRIC_EXPORT_INTERVAL", "5000".into()),
    ]
}

/// One operation over one transport, off against on.
pub struct OtelRow {
    pub op: Op,
    pub transport: Transport,
    pub conc: usize,
    /// (ops/s, p50 ms, server CPU µs per op) with observability off, median round by ops/s.
    pub off: (f64, f64, Option<f64>),
    /// The same with observability on.
    pub on: (f64, f64, Option<f64>),
    /// Median of the per-round on ÷ off throughput ratios.
    pub ratio: f64,
    pub errors: u64,
}

/// The measured rows, and what the collector received.
pub struct OtelStudy {
    pub rows: Vec<OtelRow>,
    pub spans: u64,
    pub metric_exports: u64,
}

/// Runs `ops` at `conc` over REST and gRPC against `off` and `on`, `rounds` times.
pub async fn study(
    off: (&Clients, u32),
    on: (&Clients, u32),
    ops: &[Op],
    conc: usize,
    rounds: usize,
    warmup: Duration,
    measure: Duration,
) -> BenchResult<OtelStudy> {
    // The off side's flows get names of their own: the main rows ran the same operations at the
    // same concurrency on these clients, and an update worker's flow left at its other spec
    // would make the setup's create a 409.
    let off_clients = Clients {
        tag: format!("{}-f", off.0.tag),
        ..off.0.clone()
    };
    let off = (&off_clients, off.1);
    let mut rows = Vec::new();
    for &op in ops {
        for transport in [Transport::Rest, Transport::Grpc] {
            let mut sides = Vec::new();
            for (clients, pid) in [off, on] {
                let mut ws = Vec::with_capacity(conc);
                for w in 0..conc {
                    ws.push(Worker::setup(op, transport, clients, conc, w).await?);
                }
                sides.push((pid, Some(ws), Vec::new()));
            }
            for round in 0..rounds {
                for k in 0..2 {
                    // Alternate which side goes first, so drift favours neither.
                    let (pid, ws, results) = &mut sides[(k + round) % 2];
                    let cpu0 = cpu_time(*pid);
                    let (stats, back) =
                        run::run(ws.take().unwrap_or_default(), warmup, measure).await;
                    *ws = Some(back);
                    let cpu = cpu_time(*pid)
                        .zip(cpu0)
                        .and_then(|(a, b)| a.checked_sub(b))
                        .map(|d| d.as_secs_f64() * 1e6 / stats.all_ops.max(1) as f64);
                    eprintln!(
                        "[flow-bench] observability {} {} {} c={conc}: {:.0} ops/s",
                        if sides_is_on(k, round) { "on " } else { "off" },
                        op.name(),
                        transport.name(),
                        stats.throughput()
                    );
                    results.push((stats.throughput(), stats.p50_ms(), cpu, stats.errors));
                }
            }
            let ratios: Vec<f64> = sides[0]
                .2
                .iter()
                .zip(&sides[1].2)
                .map(|(off, on)| on.0 / off.0.max(f64::MIN_POSITIVE))
                .collect();
            let median_round = |rs: &Vec<(f64, f64, Option<f64>, u64)>| {
                let mut rs = rs.clone();
                rs.sort_by(|a, b| a.0.total_cmp(&b.0));
                let m = rs[rs.len() / 2];
                (m.0, m.1, m.2)
            };
            let errors = sides.iter().flat_map(|s| &s.2).map(|r| r.3).sum::<u64>();
            rows.push(OtelRow {
                op,
                transport,
                conc,
                off: median_round(&sides[0].2),
                on: median_round(&sides[1].2),
                ratio: median(ratios),
                errors,
            });
        }
    }
    Ok(OtelStudy {
        rows,
        spans: 0,
        metric_exports: 0,
    })
}

impl OtelStudy {
    /// Records what `receiver` has received (call after the "on" server's graceful shutdown,
    /// which exports what it still holds).
    pub fn received(&mut self, receiver: &Receiver) {
        self.spans = receiver.data.spans_received();
        self.metric_exports = receiver.data.metric_exports();
    }
}

/// Whether the `k`-th side run in `round` is the "on" side (sides alternate each round).
fn sides_is_on(k: usize, round: usize) -> bool {
    (k + round) % 2 == 1
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
