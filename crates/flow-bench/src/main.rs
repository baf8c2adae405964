//! `flow-bench`: what the API costs on top of etcd, measured in one run against baselines run in
//! the same run (ratios, never absolute numbers, carry the verdicts: the machine is shared).
//!
//! It starts etcd on loopback (or uses `--etcd`), starts the API server as a process of its own
//! (so its RSS and CPU time can be read), and for each operation (create, update, get, list page
//! of 100, rollback) × concurrency (1, 16, 64) measures four rows: REST (HTTP/1.1 keep-alive),
//! gRPC, the core itself run in this process on an etcd store, sending the API's own requests
//! without the API around them ("core-direct", baseline a), and the minimal raw etcd-client
//! equivalent ("raw-min", baseline b). Then it records the etcd requests of each operation at the
//! `Kv` trait (core-direct's, and the API server's for the same operation), compares ListFlows
//! over flows of 1 and of 50 versions and over 10,000 and 30,000 flows, from the name index and
//! by discovery, and checks every target of issues 6 and 14 (see BENCHMARKS.md), printing a
//! Markdown report on stdout.
//!
//! ```text
//! cargo run --release -p flow-bench             # the full run (minutes)
//! cargo run --release -p flow-bench -- --quick  # seconds, for a smoke check
//! ```

mod core_direct;
mod otel;
mod raw;
mod recording;
mod report;
mod run;
mod seed;
mod server;
mod study;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use flowpipe_testkit::EtcdCluster;

use core_direct::Core;
use raw::BenchResult;
use report::{Report, Row};
use run::{Clients, Op, Transport, Worker};
use server::{ApiProcess, CpuMark, RssSampler};

/// Measures the flow-pipe API (REST and gRPC) against raw etcd baselines in the same run.
#[derive(Parser, Debug)]
#[command(name = "flow-bench", version)]
struct Args {
    /// etcd endpoints to use (comma-separated) instead of starting one on loopback. The run
    /// writes flows named `fb<random>-*` into its keyspace and deletes them at the end.
    #[arg(long, value_delimiter = ',')]
    etcd: Vec<String>,
    /// A short run (seconds): shorter rows, a smaller list dataset.
    #[arg(long)]
    quick: bool,
    /// Measured time per row (e.g. 3s, 500ms). Default 3s, 300ms with --quick.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Unmeasured time before each row's window. Default 500ms, 100ms with --quick.
    #[arg(long, value_parser = parse_duration)]
    warmup: Option<Duration>,
    /// Concurrencies (workers) of the rows.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// Operations to measure (`ping`: a request that does no store work, for calibration).
    #[arg(long, value_delimiter = ',', default_value = "create,update,get,list,rollback,ping", value_parser = Op::parse)]
    ops: Vec<Op>,
    /// Each row is run this many times, transports interleaved; the report shows the round with
    /// the median throughput.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Flows in the list datasets: the list rows' dataset, and the list study's pair of a
    /// 1-version and a many-version dataset (seeded through the core). Default 1000, 200 with
    /// --quick.
    #[arg(long)]
    list_flows: Option<usize>,
    /// Versions per flow of the list study's many-version dataset.
    #[arg(long, default_value_t = 50)]
    list_versions: u64,
    /// The list study's scale datasets, `<flows>x<versions>` comma-separated, written by the
    /// bulk seeder and listed from the name index; `none` for none. Default 10000x20,30000x1;
    /// none with --quick.
    #[arg(long)]
    list_scale: Option<String>,
    /// Concurrencies of the list study.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    study_concurrency: Vec<usize>,
    /// Run this binary as the API server instead of this executable in flow-api mode.
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Give etcd the last CPU to itself and run the API server and the load generator on the
    /// others, as in a deployment where etcd has machines of its own (needs `taskset`, 2+ CPUs,
    /// and an etcd on this machine).
    #[arg(long)]
    pin_etcd: bool,
    /// `RUST_LOG` of the API server (default: its own default, `info`).
    #[arg(long)]
    server_log: Option<String>,
    /// Operations of the observability rows: each against a second API server exporting OTLP
    /// to a collector in this process, and against the first (observability off).
    #[arg(long, value_delimiter = ',', default_value = "create,get,update", value_parser = Op::parse)]
    otel_ops: Vec<Op>,
    /// Concurrency of the observability rows.
    #[arg(long, default_value_t = 16)]
    otel_concurrency: usize,
    /// Rounds of the observability rows; each runs two windows per side, mirrored (off, on,
    /// on, off), and the verdict is the median of the rounds' ratios.
    #[arg(long, default_value_t = 5)]
    otel_rounds: usize,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = n.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("invalid duration {s:?}: use ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("invalid duration {s:?}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    // The server process of a run: this executable, asked to be `flow-api`.
    if std::env::var_os(server::SERVE_ENV).is_some() {
        return flowpipe_api::server::run().await;
    }
    let args = Args::parse();
    match bench(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flow-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Progress goes to stderr; the report (stdout) stays clean Markdown.
macro_rules! progress {
    ($($t:tt)*) => { eprintln!("[flow-bench] {}", format!($($t)*)) };
}

/// The pid of the etcd serving `endpoint`, found by its command line (for its CPU time).
fn etcd_pid(endpoint: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_etcd = args.first().is_some_and(|a| a.ends_with(b"etcd"));
        if is_etcd && args.contains(&endpoint.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

/// The CPUs this process may run on (`Cpus_allowed_list` of /proc/self/status, e.g. `0-3,8`).
fn allowed_cpus() -> BenchResult<Vec<usize>> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .ok_or("no Cpus_allowed_list in /proc/self/status")?;
    let mut cpus = Vec::new();
    for part in list.trim().split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi): (usize, usize) = (
            lo.parse().map_err(|_| format!("bad CPU list {list:?}"))?,
            hi.parse().map_err(|_| format!("bad CPU list {list:?}"))?,
        );
        cpus.extend(lo..=hi);
    }
    Ok(cpus)
}

/// Sets the CPU affinity of every thread of `pid`.
fn taskset(cpus: &[usize], pid: u32) -> BenchResult<()> {
    let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &list.join(","), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("taskset (util-linux) is needed for --pin-etcd: {e}"))?;
    if !status.success() {
        return Err(format!(
            "taskset -c {} {pid} failed: {status}",
            list.join(",")
        ));
    }
    Ok(())
}

/// `--pin-etcd`: etcd on the last allowed CPU, this process on the others. Runs before the API
/// server starts, so the server (a child) inherits this process's CPUs. Returns the placement
/// the report shows.
fn pin_etcd(endpoint: &str) -> BenchResult<String> {
    let cpus = allowed_cpus()?;
    let Some((&last, rest)) = cpus.split_last().filter(|(_, rest)| !rest.is_empty()) else {
        return Err("--pin-etcd needs at least 2 CPUs".into());
    };
    let etcd = etcd_pid(endpoint)
        .ok_or("--pin-etcd: no etcd process serving the endpoint runs on this machine")?;
    taskset(&[last], etcd)?;
    taskset(rest, std::process::id())?;
    Ok(format!(
        "etcd pinned to CPU {last}, the API server and the load generator to CPU(s) {rest:?}"
    ))
}

/// Deletes everything the run wrote into an etcd it did not start.
async fn cleanup(kv: &mut etcd_client::KvClient, tag: &str) {
    for prefix in [format!("/flowpipe/flows/{tag}-"), format!("/{tag}-")] {
        let _ = kv
            .delete(
                prefix.clone(),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )
            .await;
    }
}

async fn bench(a: Args) -> BenchResult<()> {
    let started = Instant::now();
    let measure = a.duration.unwrap_or(if a.quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(3)
    });
    let warmup = a.warmup.unwrap_or(if a.quick {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(500)
    });
    let list_flows = a.list_flows.unwrap_or(if a.quick { 200 } else { 1000 });
    let mut concurrency = a.concurrency.clone();
    concurrency.sort_unstable();
    concurrency.dedup();
    if concurrency.is_empty() || concurrency[0] == 0 {
        return Err("--concurrency needs positive numbers".into());
    }
    let rounds = a.rounds.max(1);
    // List first: its rows should list the seeded dataset, not the thousands of flows the
    // create rows leave behind (etcd 3.4 walks every key of a range, whatever its limit).
    let mut ops: Vec<Op> = Vec::new();
    for op in &a.ops {
        if !ops.contains(op) {
            ops.push(*op);
        }
    }
    ops.sort_by_key(|o| *o != Op::List);
    // The study compares two datasets in namespaces of their own and reads a second page.
    if a.list_versions < 2 {
        return Err("--list-versions must be at least 2 (the study compares it with 1)".into());
    }
    if list_flows <= 100 {
        return Err(
            "--list-flows must be more than 100 (a page is 100 flows; the study reads two pages)"
                .into(),
        );
    }
    let pair = (
        study::Shape {
            flows: list_flows,
            versions: 1,
        },
        study::Shape {
            flows: list_flows,
            versions: a.list_versions,
        },
    );
    let scale = match a.list_scale.as_deref().map(str::trim) {
        None if a.quick => Vec::new(),
        None => ["10000x20", "30000x1"]
            .into_iter()
            .map(study::Shape::parse)
            .collect::<BenchResult<Vec<_>>>()?,
        Some("none" | "") => Vec::new(),
        Some(list) => list
            .split(',')
            .map(study::Shape::parse)
            .collect::<BenchResult<Vec<_>>>()?,
    };
    for (i, shape) in scale.iter().enumerate() {
        if *shape == pair.0 || *shape == pair.1 || scale[..i].contains(shape) {
            return Err(format!(
                "--list-scale: {shape} is there twice (with --list-flows and --list-versions too)"
            ));
        }
    }

    let harness;
    let endpoints = if a.etcd.is_empty() {
        progress!("starting etcd on loopback");
        harness = Some(EtcdCluster::start_single()?);
        harness
            .as_ref()
            .map(EtcdCluster::endpoints)
            .unwrap_or_default()
    } else {
        harness = None;
        a.etcd.clone()
    };
    let placement = if a.pin_etcd {
        pin_etcd(&endpoints[0])?
    } else {
        let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
        format!("{cores} CPUs shared by etcd, the API server and the load generator")
    };
    let etcd = etcd_client::Client::connect(&endpoints, None)
        .await
        .map_err(|e| format!("connect to etcd at {}: {e}", endpoints.join(",")))?;
    let mut kv = etcd.kv_client();
    let tag = format!("fb{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    // Everything after this point writes `tag`'s keys: in an etcd this run did not start they
    // are removed whether the run succeeds or fails (a leftover dataset would skew later runs).
    let outcome: BenchResult<()> = async {
        let log = std::env::temp_dir().join(format!("flow-bench-{tag}-server.log"));
        progress!("starting the API server (log: {})", log.display());
        let api = ApiProcess::start(
            &endpoints,
            a.server_bin.as_deref(),
            a.server_log.as_deref(),
            log,
            &[],
        )
        .await?;
        progress!(
            "API server: pid {}, REST {}, gRPC {}; etcd {}",
            api.pid,
            api.http,
            api.grpc,
            endpoints.join(",")
        );
        let idle_rss = api.rss_kib();
        let sampler = RssSampler::start(api.pid);
        let etcd_pid = etcd_pid(&endpoints[0]);
        // Core-direct: the core on the API server's keyspace, with an etcd client of its own.
        let core = Core::connect(&endpoints, b"")?;
        let clients = Clients::connect(api.http, api.grpc, kv.clone(), core, &tag).await?;

        progress!("seeding {list_flows} flows for the list rows");
        let list_names: Vec<_> = (0..list_flows)
            .map(|i| workload::name(format!("{tag}-l{i:05}")))
            .collect();
        clients.core.seed_flows(&list_names, 1).await?;
        // Raw-min list reads a page of 100 small values: what an ideal one-read page would read.
        let min_list = run::min_list_prefix(&tag);
        let meta = workload::flow_meta(1);
        for i in 0..=100 {
            let mut key = min_list.clone();
            key.extend_from_slice(format!("{i:05}").as_bytes());
            kv.put(key, meta.clone(), None)
                .await
                .map_err(|e| e.to_string())?;
        }

        let mut rows: Vec<Row> = Vec::new();
        for &op in &ops {
            for &conc in &concurrency {
                let mut workers = Vec::new();
                for t in Transport::ALL {
                    let mut ws = Vec::with_capacity(conc);
                    for w in 0..conc {
                        ws.push(Worker::setup(op, t, &clients, conc, w).await?);
                    }
                    workers.push((t, Some(ws)));
                }
                let mut results: Vec<Vec<Row>> =
                    (0..Transport::ALL.len()).map(|_| Vec::new()).collect();
                for round in 0..rounds {
                    for k in 0..workers.len() {
                        // Rotate the order each round so drift does not favour one transport.
                        let ix = (k + round) % workers.len();
                        let (t, ws) = &mut workers[ix];
                        let (api0, etcd0, me0) = (
                            CpuMark::now(Some(api.pid)),
                            CpuMark::now(etcd_pid),
                            CpuMark::now(Some(std::process::id())),
                        );
                        sampler.take_peak();
                        let (stats, back) =
                            run::run(ws.take().unwrap_or_default(), warmup, measure).await;
                        *ws = Some(back);
                        let rss = sampler.take_peak();
                        let per_op = |mark: Option<CpuMark>| mark?.us_per_op(stats.all_ops);
                        let row = Row {
                            op,
                            conc,
                            transport: *t,
                            api_cpu_us: if t.is_api() { per_op(api0) } else { None },
                            etcd_cpu_us: per_op(etcd0),
                            client_cpu_us: per_op(me0),
                            rss_peak_kib: t.is_api().then_some(rss),
                            per_round: Vec::new(),
                            stats,
                        };
                        progress!("{}", row.progress_line());
                        results[ix].push(row);
                    }
                }
                for mut r in results {
                    // Ratios are taken round by round (rows of one round ran minutes apart at most
                    // seconds), so the row shown keeps every round's numbers.
                    let per_round: Vec<(f64, f64)> = r
                        .iter()
                        .map(|x| (x.stats.throughput(), x.stats.p50_ms()))
                        .collect();
                    // The numbers shown: the median round by throughput.
                    r.sort_by(|x, y| x.stats.throughput().total_cmp(&y.stats.throughput()));
                    let mid = r.len() / 2;
                    let mut row = r.swap_remove(mid);
                    row.per_round = per_round;
                    rows.push(row);
                }
            }
        }
        let peak_rss = api.hwm_kib();
        drop(sampler);

        progress!("observability rows: a second API server exporting OTLP to a collector here");
        let collector = flowpipe_testkit::otlp::Receiver::start_counting();
        let otel_log = std::env::temp_dir().join(format!("flow-bench-{tag}-server-otel.log"));
        let api_otel = ApiProcess::start(
            &endpoints,
            a.server_bin.as_deref(),
            a.server_log.as_deref(),
            otel_log,
            &otel::server_env(collector.addr),
        )
        .await?;
        let otel_clients = Clients::connect(
            api_otel.http,
            api_otel.grpc,
            kv.clone(),
            clients.core.clone(),
            &format!("{tag}-o"),
        )
        .await?;
        let mut otel = otel::study(
            (&clients, api.pid),
            (&otel_clients, api_otel.pid),
            etcd_pid,
            &a.otel_ops,
            a.otel_concurrency.max(1),
            a.otel_rounds.max(1),
            warmup,
            measure,
        )
        .await?;
        drop(otel_clients);
        api_otel.stop_gracefully()?;
        otel.received(&collector);

        // The list study's datasets, each in a namespace of its own: the pair through the core,
        // the scale datasets with the bulk seeder (once it has shown it writes what the core
        // writes). Each is checked through the core's ListFlows before it is measured.
        let mut datasets = Vec::new();
        if let Some(most) = scale.iter().map(|s| s.versions).max() {
            progress!("checking the bulk seeder against the core");
            seed::check_layout(&endpoints, &kv, &format!("/{tag}-layout"), most.clamp(2, 5))
                .await?;
        }
        let plan = [
            (pair.0, study::Seeding::Core),
            (pair.1, study::Seeding::Core),
        ]
        .into_iter()
        .chain(scale.iter().map(|s| (*s, study::Seeding::Bulk)));
        for (shape, seeding) in plan {
            progress!(
                "seeding the list study's {shape} dataset ({})",
                seeding.name()
            );
            let fallback = seeding == study::Seeding::Core;
            let ns = format!("/{tag}-{}x{}", shape.flows, shape.versions);
            let d = study::Dataset::prepare(&endpoints, &kv, shape, seeding, fallback, ns).await?;
            progress!(
                "seeded and checked {shape} in {:.1}s ({} keys)",
                d.seeded_in.as_secs_f64(),
                d.keys
            );
            datasets.push(d);
        }
        progress!("recording the requests of each operation");
        let round_trips = study::round_trips(
            &endpoints,
            &format!("/{tag}-rt"),
            &format!("/{tag}-rta"),
            &clients.http,
            &datasets,
        )
        .await?;
        progress!("list study");
        let list = study::list_study(
            &clients,
            &datasets,
            pair,
            &a.study_concurrency,
            study::Schedule {
                warmup,
                measure,
                rounds,
            },
            etcd_pid,
        )
        .await?;

        let report = Report {
            command: std::env::args().collect::<Vec<_>>().join(" "),
            release: !cfg!(debug_assertions),
            placement,
            measure,
            warmup,
            rounds,
            concurrency,
            ops,
            rows,
            round_trips,
            list,
            idle_rss_kib: idle_rss,
            peak_rss_kib: peak_rss,
            etcd_cpu: etcd_pid.is_some(),
            otel,
            elapsed: started.elapsed(),
        };
        print!("{}", report.render());
        drop(api);
        Ok(())
    }
    .await;
    if harness.is_none() {
        cleanup(&mut kv, &tag).await;
    }
    outcome
}
