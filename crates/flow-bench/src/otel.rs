//! What observability costs: the same operations against two API servers in the same run, one
//! with observability off (the default) and one exporting metrics and traces over OTLP/gRPC to
//! an in-process collector (`flowpipe_testkit::otlp::Receiver`, keeping counts only), in
//! rounds of mirrored windows (off, on, on, off; then on, off, off, on). The verdict is the
//! median of the rounds' throughput ratios (on ÷ off).

use std::time::Duration;

use flowpipe_testkit::otlp::Receiver;

use crate::raw::BenchResult;
use crate::run::{self, Clients, Op, Transport, Worker};
use crate::server::{CpuMark, us_per_op};

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

/// What one side (off or on) of a row did, summed over its windows.
#[derive(Default)]
pub struct Side {
    /// Operations counted inside the measured windows, and the windows' total length.
    ops: u64,
    window: Duration,
    /// Operations completed in the windows and their warm-ups (CPU time is per operation of
    /// those).
    all_ops: u64,
    /// CPU time of the API server, etcd, and this process (the load generator and the
    /// collector), over the windows and their warm-ups.
    server_cpu: Duration,
    etcd_cpu: Option<Duration>,
    bench_cpu: Duration,
    hist: Option<hdrhistogram::Histogram<u64>>,
    errors: u64,
}

impl Side {
    fn add(&mut self, stats: &run::RowStats, cpu: [Option<Duration>; 3]) {
        self.ops += stats.ops;
        self.window += stats.window;
        self.all_ops += stats.all_ops;
        self.server_cpu += cpu[0].unwrap_or_default();
        if let Some(etcd) = cpu[1] {
            self.etcd_cpu = Some(self.etcd_cpu.unwrap_or_default() + etcd);
        }
        self.bench_cpu += cpu[2].unwrap_or_default();
        match &mut self.hist {
            Some(h) => {
                let _ = h.add(&stats.hist);
            }
            None => self.hist = Some(stats.hist.clone()),
        }
        self.errors += stats.errors;
    }

    /// Operations per second over all the windows.
    pub fn throughput(&self) -> f64 {
        self.ops as f64 / self.window.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Median latency over all the windows, in ms.
    pub fn p50_ms(&self) -> f64 {
        self.hist
            .as_ref()
            .map_or(0.0, |h| h.value_at_quantile(0.5) as f64 / 1000.0)
    }

    fn per_op(&self, d: Duration) -> f64 {
        us_per_op(d, self.all_ops)
    }

    /// The API server's CPU µs per operation.
    pub fn server_cpu_us(&self) -> f64 {
        self.per_op(self.server_cpu)
    }

    /// etcd's CPU µs per operation (when its process is on this machine).
    pub fn etcd_cpu_us(&self) -> Option<f64> {
        self.etcd_cpu.map(|d| self.per_op(d))
    }

    /// This process's CPU µs per operation: the load generator, and the collector the "on"
    /// server exports to.
    pub fn bench_cpu_us(&self) -> f64 {
        self.per_op(self.bench_cpu)
    }
}

/// One operation over one transport, off against on.
pub struct OtelRow {
    pub op: Op,
    pub transport: Transport,
    pub conc: usize,
    pub off: Side,
    pub on: Side,
    /// Each round's on ÷ off throughput ratio.
    pub round_ratios: Vec<f64>,
}

impl OtelRow {
    /// The verdict's ratio: the median of the rounds' ratios.
    pub fn ratio(&self) -> f64 {
        median(self.round_ratios.clone())
    }

    pub fn errors(&self) -> u64 {
        self.off.errors + self.on.errors
    }
}

/// The measured rows, and what the collector received.
pub struct OtelStudy {
    pub rows: Vec<OtelRow>,
    pub spans: u64,
    pub metric_exports: u64,
}

/// The order of the sides in `round` (false = off, true = on): off, on, on, off, then on, off,
/// off, on. Throughput drifts during a row (a create adds keys to etcd, the machine's other
/// work comes and goes); mirrored pairs cancel a linear drift within the round, and alternating
/// the mirror between rounds keeps whatever the first window of a round pays off one side.
fn round_order(round: usize) -> [bool; 4] {
    if round.is_multiple_of(2) {
        [false, true, true, false]
    } else {
        [true, false, false, true]
    }
}

/// Runs `ops` at `conc` over REST and gRPC against `off` and `on` (clients and server pid),
/// `rounds` times, each round two windows per side ([`round_order`]). `etcd` is etcd's pid when
/// it runs here.
#[allow(clippy::too_many_arguments)]
pub async fn study(
    off: (&Clients, u32),
    on: (&Clients, u32),
    etcd: Option<u32>,
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
    let me = std::process::id();
    let mut rows = Vec::new();
    for &op in ops {
        for transport in [Transport::Rest, Transport::Grpc] {
            let mut workers: Vec<Option<Vec<Worker>>> = Vec::new();
            for (clients, _) in [off, on] {
                let mut ws = Vec::with_capacity(conc);
                for w in 0..conc {
                    ws.push(Worker::setup(op, transport, clients, conc, w).await?);
                }
                workers.push(Some(ws));
            }
            let mut sides = [Side::default(), Side::default()];
            let mut round_ratios = Vec::with_capacity(rounds);
            for round in 0..rounds {
                let mut throughput = [0.0f64; 2];
                for is_on in round_order(round) {
                    let i = usize::from(is_on);
                    let pid = if is_on { on.1 } else { off.1 };
                    let marks = [Some(pid), etcd, Some(me)].map(CpuMark::now);
                    let (stats, back) =
                        run::run(workers[i].take().unwrap_or_default(), warmup, measure).await;
                    workers[i] = Some(back);
                    let cpu = marks.map(|m| m?.used());
                    eprintln!(
                        "[flow-bench] observability {} {} {} c={conc}: {:.0} ops/s",
                        if is_on { "on " } else { "off" },
                        op.name(),
                        transport.name(),
                        stats.throughput()
                    );
                    throughput[i] += stats.throughput();
                    sides[i].add(&stats, cpu);
                }
                round_ratios.push(throughput[1] / throughput[0].max(f64::MIN_POSITIVE));
            }
            let [off_side, on_side] = sides;
            let row = OtelRow {
                op,
                transport,
                conc,
                off: off_side,
                on: on_side,
                round_ratios,
            };
            eprintln!(
                "[flow-bench] observability {} {} c={conc}: on ÷ off {:.3} (rounds {:.2?}); \
                 server CPU µs/op {:.0} → {:.0}, this process {:.0} → {:.0}",
                op.name(),
                transport.name(),
                row.ratio(),
                row.round_ratios,
                row.off.server_cpu_us(),
                row.on.server_cpu_us(),
                row.off.bench_cpu_us(),
                row.on.bench_cpu_us(),
            );
            rows.push(row);
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_mirror_their_windows_and_alternate_who_goes_first() {
        for round in 0..4 {
            let order = round_order(round);
            assert_eq!(order.iter().filter(|on| **on).count(), 2);
            // Mirrored: a linear drift weighs the same on both sides.
            assert_eq!(order, [order[3], order[2], order[1], order[0]]);
            assert_ne!(round_order(round)[0], round_order(round + 1)[0]);
        }
    }

    #[test]
    fn the_ratio_is_the_median_round() {
        let row = OtelRow {
            op: Op::Get,
            transport: Transport::Rest,
            conc: 16,
            off: Side::default(),
            on: Side::default(),
            round_ratios: vec![0.9, 1.02, 0.97, 1.2, 0.99],
        };
        assert_eq!(row.ratio(), 0.99);
    }
}
