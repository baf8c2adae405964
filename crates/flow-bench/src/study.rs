//! The measurements that are not throughput rows:
//!
//! - etcd round trips per API operation on its common path, recorded at the `Kv` trait by
//!   core-direct's `RecordingKv` (every request, not just a count), and the same operation sent
//!   to an in-process API server over REST whose store records too: the report shows whether the
//!   API sent exactly the requests core-direct did;
//! - the ListFlows study: datasets of flows, each in its own key namespace of the same etcd (a
//!   1-version and a many-version dataset of the same size, and larger "scale" datasets), listed
//!   a page of 100 at a time through an in-process REST server on each namespace and through
//!   core-direct on the same namespace. Every dataset is listed from the name index (contract
//!   B.6, the `flows-ready` marker present); the 1-version/many-version pair is listed again
//!   without the marker, which sends ListFlows down the discovery path the index replaced
//!   (data of the original API). The ratios between datasets are what the number of versions,
//!   and the number of flows, cost a page.
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::KvClient;

use flowpipe_api::SystemEnvironment;
use flowpipe_api::server::{Config, Server};
use flowpipe_core::FlowRegistry;
use flowpipe_core::flows::FlowPage;
use flowpipe_core::proto::v1::{CreateFlowRequest, UpdateFlowRequest};
use flowpipe_store::{EtcdConfig, Store, StoreConfig};

use crate::core_direct::{Core, api_err};
use crate::raw::BenchResult;
use crate::recording::{self, Call, Recorder, RecordingKv};
use crate::run::{self, Clients, RowStats, Transport, Worker};
use crate::seed;
use crate::server::CpuMark;
use crate::workload::{self, Variant};

/// The API server in this process on key namespace `ns`, its store recording (off until asked):
/// what the API sends for a request, to hold against core-direct's requests. Stops on drop.
pub struct InProcessApi {
    pub base: String,
    recorder: Arc<Recorder>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl InProcessApi {
    pub async fn start(endpoints: &[String], ns: &str) -> BenchResult<InProcessApi> {
        let mut config = EtcdConfig::new(endpoints.to_vec());
        config.namespace = ns.as_bytes().to_vec();
        let mut recorder = None;
        let store = Store::etcd(config.clone())
            .map_err(|e| format!("etcd store: {e}"))?
            .wrapped(|store| {
                let kv = RecordingKv::new(store);
                recorder = Some(kv.recorder());
                kv
            });
        let recorder: Arc<Recorder> = recorder.unwrap_or_default();
        // The server checks the name index at start-up (and builds it when it is not ready):
        // build it first, then let the server's one check of the marker happen before anything
        // is recorded, so that no recording window catches it.
        FlowRegistry::new(store.clone(), SystemEnvironment)
            .ensure_index()
            .await
            .map_err(|e| format!("name index: {e}"))?;
        recorder.start();
        let server = Server::bind_with_store(
            Config::for_tests(StoreConfig::Etcd(Box::new(config))),
            store,
        )
        .await
        .map_err(|e| e.to_string())?;
        let base = format!("http://{}", server.http_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        let started = std::time::Instant::now();
        while recorder.len() == 0 && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(recorder.take());
        Ok(InProcessApi {
            base,
            recorder,
            stop: Some(stop),
        })
    }

    /// Sends `req` (to this server) with recording on: the response body and the requests the
    /// server's store saw.
    pub async fn record(&self, req: reqwest::RequestBuilder) -> BenchResult<(Vec<u8>, Vec<Call>)> {
        self.recorder.start();
        let resp = req.send().await.map_err(|e| format!("HTTP: {e}"));
        // The server's gRPC health watcher pings the store every few seconds, but straight to
        // the backend (`Store::wrapped`): only the request's calls are recorded.
        let calls = self.recorder.take();
        let resp = resp?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("HTTP body: {e}"))?
            .to_vec();
        if !status.is_success() {
            return Err(format!(
                "in-process API: HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ));
        }
        Ok((body, calls))
    }
}

impl Drop for InProcessApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Round trips of one operation.
pub struct RoundTrips {
    pub op: String,
    /// The requests core-direct sent, in the order they completed.
    pub calls: Vec<Call>,
    /// How many requests the API server sent for the same operation over REST, and whether they
    /// were the same requests (kind, keys, compares, operations; not values or revisions).
    pub api: (usize, bool),
    /// Most allowed by the targets; `None` for a path the targets do not cover.
    pub max: Option<u64>,
    /// The target is exactly `max` round trips (a ListFlows page from the name index).
    pub exact: bool,
}

impl RoundTrips {
    pub fn count(&self) -> u64 {
        self.calls.len() as u64
    }
}

/// One operation run twice, on equal data: by core-direct (`core`) and by the API over REST
/// (`rest`), each recorded.
async fn both<T>(
    op: impl Into<String>,
    max: Option<u64>,
    core: &Core,
    core_op: impl Future<Output = Result<T, flowpipe_core::Error>>,
    api: &InProcessApi,
    rest: reqwest::RequestBuilder,
) -> BenchResult<(RoundTrips, T, Vec<u8>)> {
    let op = op.into();
    let (out, calls) = core.record(core_op).await;
    let out = out.map_err(|e| format!("{op}: {}", api_err(e)))?;
    let (body, api_calls) = api.record(rest).await?;
    let rt = RoundTrips {
        op,
        api: (
            api_calls.len(),
            recording::same_requests(&calls, &api_calls),
        ),
        calls,
        max,
        exact: false,
    };
    Ok((rt, out, body))
}

/// The page token of a REST ListFlows response.
fn next_page_token(body: &[u8]) -> BenchResult<String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("ListFlows response: {e}"))?;
    Ok(v.get("nextPageToken")
        .or_else(|| v.get("next_page_token"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned())
}

/// Records the requests of each operation on its common path (core-direct on namespace `ns`,
/// the API over REST on `api_ns`, the same flow in each), plus the first and the next ListFlows
/// page of 100 over each dataset of the list study, from the name index (exactly 2 round trips,
/// contract B.6) and, for the datasets listed both ways, by discovery (at most 5, the target of
/// issue 6 before the index).
pub async fn round_trips(
    endpoints: &[String],
    ns: &str,
    api_ns: &str,
    http: &reqwest::Client,
    datasets: &[Dataset],
) -> BenchResult<Vec<RoundTrips>> {
    let core = Core::connect(endpoints, ns.as_bytes())?;
    let api = InProcessApi::start(endpoints, api_ns).await?;
    let flows = &core.flows;
    let name = "round-trips";
    let url = |path: &str| format!("{}/v1/flows{path}", api.base);
    let json = |req: reqwest::RequestBuilder, body: Vec<u8>| {
        req.header("content-type", "application/json").body(body)
    };
    let mut out = Vec::new();

    let create = flows.create(CreateFlowRequest {
        spec: Some(workload::spec(Some(name), Variant::A)),
        validate_only: false,
    });
    let rest = json(
        http.post(url("")),
        workload::rest_body(Some(name), Variant::A),
    );
    out.push(
        both("create (new name)", Some(1), &core, create, &api, rest)
            .await?
            .0,
    );

    let get = flows.get(name);
    let rest = http.get(url(&format!("/{name}")));
    out.push(both("get", Some(2), &core, get, &api, rest).await?.0);

    // Both updates below write spec B: the first changes the flow, the second follows a rollback.
    let update_to_b = || {
        flows.update(UpdateFlowRequest {
            name: name.into(),
            spec: Some(workload::spec(None, Variant::B)),
            validate_only: false,
        })
    };
    let rest_update = || {
        json(
            http.put(url(&format!("/{name}"))),
            workload::rest_body(None, Variant::B),
        )
    };
    let op = "update (changed spec)";
    out.push(
        both(op, Some(2), &core, update_to_b(), &api, rest_update())
            .await?
            .0,
    );

    let rollback = flows.rollback(name, 1);
    let rest = http.post(url(&format!("/{name}/rollback/1")));
    out.push(
        both("rollback", Some(2), &core, rollback, &api, rest)
            .await?
            .0,
    );

    let status = flows.status(name);
    let rest = http.get(url(&format!("/{name}/status")));
    out.push(both("status", Some(1), &core, status, &api, rest).await?.0);

    // Not the common path: the first update after a rollback (the active version is then not the
    // newest, so the API compares decoded specs first, at the cost of a read).
    let op = "update, first after a rollback";
    out.push(
        both(op, None, &core, update_to_b(), &api, rest_update())
            .await?
            .0,
    );

    let delete = flows.delete(name);
    let rest = http.delete(url(&format!("/{name}")));
    out.push(both("delete", Some(2), &core, delete, &api, rest).await?.0);

    for d in datasets {
        for path in d.paths() {
            d.set_path(path).await?;
            let label = |page: u8| format!("list page {page}, {}, {}", d.shape, path.name());
            let (max, exact) = match path {
                Path::Index => (Some(INDEX_ROUND_TRIPS), true),
                Path::Discovery => (Some(5), false),
            };
            let rest = http.get(format!("{}/v1/flows?page_size=100", d.api.base));
            let first = d.core.flows.list_page(100, "");
            let (mut rt, first, body) = both(label(1), max, &d.core, first, &d.api, rest).await?;
            path.check(&rt.op, &first)?;
            rt.exact = exact;
            out.push(rt);
            let token = next_page_token(&body)?;
            let rest = http
                .get(format!("{}/v1/flows", d.api.base))
                .query(&[("page_size", "100"), ("page_token", token.as_str())]);
            let next = d.core.flows.list_page(100, &first.response.next_page_token);
            let (mut rt, next, _) = both(label(2), max, &d.core, next, &d.api, rest).await?;
            path.check(&rt.op, &next)?;
            rt.exact = exact;
            out.push(rt);
        }
        d.set_path(Path::Index).await?;
    }
    Ok(out)
}

/// Round trips of a ListFlows page from the name index, whatever the dataset (contract B.6).
pub const INDEX_ROUND_TRIPS: u64 = 2;

/// The shape of a dataset of the list study: `flows` flows of `versions` versions each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shape {
    pub flows: usize,
    pub versions: u64,
}

impl Shape {
    /// `<flows>x<versions>`, e.g. `10000x20`.
    pub fn parse(s: &str) -> Result<Shape, String> {
        let bad = || format!("invalid dataset {s:?}: expected <flows>x<versions>, e.g. 10000x20");
        let (flows, versions) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
        let shape = Shape {
            flows: flows.trim().parse().map_err(|_| bad())?,
            versions: versions.trim().parse().map_err(|_| bad())?,
        };
        if shape.flows <= 100 || shape.versions == 0 {
            return Err(format!(
                "invalid dataset {s:?}: more than 100 flows (the study reads two pages of 100) of at least 1 version"
            ));
        }
        Ok(shape)
    }
}

impl std::fmt::Display for Shape {
    /// `10,000 × 20`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} × {}", thousands(self.flows as u64), self.versions)
    }
}

/// `30000` as `30,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// How a dataset was written (see `seed.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeding {
    /// Through the core: a create, then updates, per flow; indexed by the API's own backfill.
    Core,
    /// The bulk seeder: the core's keys and values, written in transactions of 128 puts.
    Bulk,
}

impl Seeding {
    pub fn name(self) -> &'static str {
        match self {
            Seeding::Core => "through the core (create + updates), indexed by the API's backfill",
            Seeding::Bulk => "bulk seeder (the core's keys and values, 128 puts a transaction)",
        }
    }
}

/// Where a ListFlows page finds its names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// The name index (contract B.6): the `flows-ready` marker is present.
    Index,
    /// No marker (data of the original API): names discovered under the flows' own keys.
    Discovery,
}

impl Path {
    pub fn name(self) -> &'static str {
        match self {
            Path::Index => "index",
            Path::Discovery => "fallback (discovery)",
        }
    }

    pub fn is_index(self) -> bool {
        self == Path::Index
    }

    /// Fails unless `page` took this path: a row must measure what it says.
    fn check(self, what: &str, page: &FlowPage) -> BenchResult<()> {
        if page.from_index == self.is_index() {
            return Ok(());
        }
        Err(format!(
            "{what}: the page came from the {} path, expected the {} path",
            run::path_name(page.from_index),
            run::path_name(self.is_index())
        ))
    }
}

/// One dataset of the list study in key namespace `ns`, seeded and checked, with a core and an
/// in-process API server on that namespace.
pub struct Dataset {
    pub shape: Shape,
    pub seeding: Seeding,
    /// Also listed without the `flows-ready` marker (the discovery path).
    pub fallback: bool,
    pub ns: String,
    /// Keys in the namespace once seeded.
    pub keys: i64,
    /// Seeding time, the index and the check of the listing included.
    pub seeded_in: Duration,
    pub core: Core,
    pub api: InProcessApi,
}

impl Dataset {
    /// Seeds `shape` into namespace `ns` as `seeding` says, starts an API server on it (which
    /// finds the index ready: for a dataset seeded through the core, the API's own backfill has
    /// just built it), then checks that the core lists every flow from the index (`seed::verify`).
    pub async fn prepare(
        endpoints: &[String],
        kv: &KvClient,
        shape: Shape,
        seeding: Seeding,
        fallback: bool,
        ns: String,
    ) -> BenchResult<Dataset> {
        let started = Instant::now();
        let core = Core::connect(endpoints, ns.as_bytes())?;
        let width = (shape.flows - 1).to_string().len().max(5);
        let names: Vec<_> = (0..shape.flows)
            .map(|i| workload::name(format!("flow-{i:0width$}")))
            .collect();
        match seeding {
            Seeding::Core => core.seed_flows(&names, shape.versions).await?,
            Seeding::Bulk => {
                seed::bulk(&core, &names, shape.versions).await?;
            }
        }
        let api = InProcessApi::start(endpoints, &ns).await?;
        seed::verify(&core, &names, shape.versions)
            .await
            .map_err(|e| format!("dataset {shape}: {e}"))?;
        let keys = kv
            .clone()
            .get(
                // `<ns>/`: not another namespace that merely starts with this one.
                format!("{ns}/"),
                Some(
                    etcd_client::GetOptions::new()
                        .with_prefix()
                        .with_count_only(),
                ),
            )
            .await
            .map_err(|e| format!("etcd: {e}"))?
            .count();
        Ok(Dataset {
            shape,
            seeding,
            fallback,
            ns,
            keys,
            seeded_in: started.elapsed(),
            core,
            api,
        })
    }

    /// The paths this dataset is listed by.
    pub fn paths(&self) -> Vec<Path> {
        if self.fallback {
            vec![Path::Index, Path::Discovery]
        } else {
            vec![Path::Index]
        }
    }

    /// Makes ListFlows take `path` on this dataset: puts or deletes the `flows-ready` marker (the
    /// index keys stay). The in-process server checks the marker only at start-up, so it does
    /// not put it back.
    pub async fn set_path(&self, path: Path) -> BenchResult<()> {
        seed::set_index_ready(&self.core, path.is_index()).await
    }
}

/// Who lists in a row of the list study.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lister {
    /// The API over REST.
    Rest,
    /// The core in-process: the API's requests without the API around them.
    Core,
}

impl Lister {
    pub const ALL: [Lister; 2] = [Lister::Rest, Lister::Core];

    pub fn name(self) -> &'static str {
        match self {
            Lister::Rest => "REST",
            Lister::Core => "core-direct",
        }
    }

    fn transport(self) -> Transport {
        match self {
            Lister::Rest => Transport::Rest,
            Lister::Core => Transport::Core,
        }
    }
}

/// What a row of the list study lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    pub shape: Shape,
    pub path: Path,
    /// 1: the first page of 100; 2: the next one, with the first page's token.
    pub page: u8,
}

/// One row of the list study.
pub struct ListRow {
    pub case: Case,
    pub lister: Lister,
    pub conc: usize,
    /// The round with the median throughput.
    pub stats: RowStats,
    /// etcd's CPU time per listed page in that round, µs (when its process is known).
    pub etcd_cpu_us: Option<f64>,
    /// (throughput, p50 ms) of every round, in the order the rounds ran.
    pub per_round: Vec<(f64, f64)>,
}

/// What one page cost at etcd, from the requests core-direct sent (recorded).
pub struct PageCost {
    pub case: Case,
    pub round_trips: u64,
    /// Keys returned by every read of the page (the marker, index or discovery keys, heads).
    pub keys_read: u64,
    /// Flows on the page.
    pub flows: usize,
}

/// A dataset as the report describes it.
pub struct DatasetInfo {
    pub shape: Shape,
    pub seeding: Seeding,
    pub fallback: bool,
    pub keys: i64,
    pub seeded_in: Duration,
}

/// What the list study found.
pub struct ListStudy {
    pub datasets: Vec<DatasetInfo>,
    /// The 1-version and many-version datasets of the same size: the first is every ratio's
    /// baseline.
    pub pair: (Shape, Shape),
    pub costs: Vec<PageCost>,
    pub rows: Vec<ListRow>,
    /// Raw range probes separating returned keys from walked keys.
    pub probes: Vec<ScanProbe>,
    pub rounds: usize,
}

impl ListStudy {
    pub fn row(&self, case: Case, lister: Lister, conc: usize) -> Option<&ListRow> {
        self.rows
            .iter()
            .find(|r| r.case == case && r.lister == lister && r.conc == conc)
    }
}

/// How long each row of the list study runs, and how many times.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub warmup: Duration,
    pub measure: Duration,
    pub rounds: usize,
}

/// Lists every dataset through REST (the dataset's in-process server) and core-direct, the
/// first page of 100 and the next, at each concurrency, from the index and (for the datasets
/// that have it) by discovery. Each row runs `rounds` times; within a round, datasets alternate
/// and the order rotates from round to round, so drift hits every dataset alike.
pub async fn list_study(
    clients: &Clients,
    datasets: &[Dataset],
    pair: (Shape, Shape),
    concurrency: &[usize],
    schedule: Schedule,
    etcd_pid: Option<u32>,
) -> BenchResult<ListStudy> {
    let Schedule {
        warmup,
        measure,
        rounds,
    } = schedule;
    let rounds = rounds.max(1);
    // Each case's page token and recorded cost; tokens of page 2 are taken while the path is
    // in place, and pin the first page's revision: at that revision the marker is present (or
    // absent), so the second page keeps the first page's path whatever the marker is later.
    let mut cases: Vec<(usize, Case, String)> = Vec::new();
    let mut costs = Vec::new();
    for (di, d) in datasets.iter().enumerate() {
        for path in d.paths() {
            d.set_path(path).await?;
            let mut token = String::new();
            for page in [1, 2] {
                let case = Case {
                    shape: d.shape,
                    path,
                    page,
                };
                let what = format!("list page {page}, {}, {}", d.shape, path.name());
                let (out, calls) = d.core.record(d.core.flows.list_page(100, &token)).await;
                let out = out.map_err(|e| format!("{what}: {}", api_err(e)))?;
                path.check(&what, &out)?;
                costs.push(PageCost {
                    case,
                    round_trips: calls.len() as u64,
                    keys_read: calls.iter().map(|c| c.returned as u64).sum(),
                    flows: out.response.flows.len(),
                });
                cases.push((di, case, token));
                token = out.response.next_page_token;
            }
        }
        d.set_path(Path::Index).await?;
    }

    let mut per_case: Vec<Vec<(RowStats, Option<f64>)>> = Vec::new();
    let mut keys: Vec<(Case, Lister, usize)> = Vec::new();
    for round in 0..rounds {
        for path in [Path::Index, Path::Discovery] {
            for d in datasets.iter().filter(|d| d.paths().contains(&path)) {
                d.set_path(path).await?;
            }
            for &conc in concurrency {
                for page in [1, 2] {
                    for lister in Lister::ALL {
                        let these: Vec<&(usize, Case, String)> = cases
                            .iter()
                            .filter(|(_, c, _)| c.path == path && c.page == page)
                            .collect();
                        for k in 0..these.len() {
                            let (di, case, token) = these[(k + round) % these.len()];
                            let d = &datasets[*di];
                            let mut c = clients.clone();
                            c.base.clone_from(&d.api.base);
                            c.core = d.core.clone();
                            let mut workers = Vec::with_capacity(conc);
                            for _ in 0..conc {
                                workers.push(
                                    Worker::list_in(lister.transport(), &c, token, path.is_index())
                                        .await?,
                                );
                            }
                            let cpu0 = CpuMark::now(etcd_pid);
                            let (stats, _) = run::run(workers, warmup, measure).await;
                            let etcd_cpu_us = cpu0.and_then(|m| m.us_per_op(stats.all_ops));
                            if let Some(e) = &stats.first_error {
                                return Err(format!(
                                    "list study row failed ({}, {}, page {page}, {}, c={conc}): {e}",
                                    case.shape,
                                    path.name(),
                                    lister.name()
                                ));
                            }
                            eprintln!(
                                "[flow-bench] list {:<14} {:<20} page {page} {:<11} c={conc:<3} {:>7.0} pages/s  p50 {:>8.3} ms  p99 {:>8.3} ms",
                                case.shape.to_string(),
                                path.name(),
                                lister.name(),
                                stats.throughput(),
                                stats.p50_ms(),
                                stats.p99_ms()
                            );
                            let key = (*case, lister, conc);
                            match keys.iter().position(|x| *x == key) {
                                Some(i) => per_case[i].push((stats, etcd_cpu_us)),
                                None => {
                                    keys.push(key);
                                    per_case.push(vec![(stats, etcd_cpu_us)]);
                                }
                            }
                        }
                    }
                }
            }
        }
        for d in datasets {
            d.set_path(Path::Index).await?;
        }
    }
    let rows = keys
        .into_iter()
        .zip(per_case)
        .map(|((case, lister, conc), mut results)| {
            let per_round = results
                .iter()
                .map(|(s, _)| (s.throughput(), s.p50_ms()))
                .collect();
            // The numbers shown: the median round by throughput.
            results.sort_by(|x, y| x.0.throughput().total_cmp(&y.0.throughput()));
            let mid = results.len() / 2;
            let (stats, etcd_cpu_us) = results.swap_remove(mid);
            ListRow {
                case,
                lister,
                conc,
                stats,
                etcd_cpu_us,
                per_round,
            }
        })
        .collect();
    let probes = scan_probes(&clients.kv, datasets, 200, etcd_pid).await?;
    Ok(ListStudy {
        datasets: datasets
            .iter()
            .map(|d| DatasetInfo {
                shape: d.shape,
                seeding: d.seeding,
                fallback: d.fallback,
                keys: d.keys,
                seeded_in: d.seeded_in,
            })
            .collect(),
        pair,
        costs,
        rows,
        probes,
        rounds,
    })
}

/// One probe of etcd's range cost on a dataset.
pub struct ScanProbe {
    pub shape: Shape,
    pub what: &'static str,
    pub keys_returned: usize,
    pub p50_ms: f64,
    pub etcd_cpu_us: Option<f64>,
}

/// Separates the costs of a page's range read on each dataset, with raw keys-only range reads
/// issued one at a time: the keys a read returns, and the keys etcd walks. etcd (up to 3.6)
/// collects every revision in `[key, range_end)` from its index before applying `limit`, so the
/// same small read costs more the more keys follow it in the range: over the flows' keys (the
/// discovery path) those are every version of every later flow; over the name index, one key
/// per later flow.
pub async fn scan_probes(
    kv: &KvClient,
    datasets: &[Dataset],
    reads: usize,
    etcd_pid: Option<u32>,
) -> BenchResult<Vec<ScanProbe>> {
    let mut out = Vec::new();
    for d in datasets {
        let ns = d.ns.as_bytes();
        let (index_start, index_end) = flowpipe_core::keys::flow_index_after(None);
        let mut probes = vec![(
            "index: 101 keys, range to the end of the index",
            [ns, &index_start].concat(),
            [ns, &index_end].concat(),
            101,
        )];
        if d.fallback {
            let (start, end) = flowpipe_core::keys::all_flows();
            let start = [ns, &start].concat();
            // The end of the first flow's keys: a range that walks only what it returns.
            let first = workload::name("flow-00000".into());
            let first_end = [
                ns,
                &flowpipe_core::keys::FlowKeys::new(&first).subtree_end(),
            ]
            .concat();
            probes.push((
                "flows: 100 keys, range to the end of all flows",
                start.clone(),
                [ns, &end].concat(),
                100,
            ));
            probes.push((
                "flows: first flow's keys only, range bounded to it",
                start,
                first_end,
                100,
            ));
        }
        for (what, start, end, limit) in probes {
            let mut hist = Vec::with_capacity(reads);
            let mut returned = 0;
            let cpu0 = CpuMark::now(etcd_pid);
            for _ in 0..reads {
                let o = etcd_client::GetOptions::new()
                    .with_range(end.clone())
                    .with_keys_only()
                    .with_limit(limit);
                let t = std::time::Instant::now();
                let resp = kv
                    .clone()
                    .get(start.clone(), Some(o))
                    .await
                    .map_err(|e| e.to_string())?;
                hist.push(t.elapsed());
                returned = resp.kvs().len();
            }
            let etcd_cpu_us = cpu0.and_then(|m| m.us_per_op(reads as u64));
            hist.sort_unstable();
            out.push(ScanProbe {
                shape: d.shape,
                what,
                keys_returned: returned,
                p50_ms: hist[hist.len() / 2].as_secs_f64() * 1000.0,
                etcd_cpu_us,
            });
        }
    }
    Ok(out)
}
