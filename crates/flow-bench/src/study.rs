//! The measurements that are not throughput rows:
//!
//! - etcd round trips per API operation on its common path, recorded at the `Kv` trait by
//!   core-direct's `RecordingKv` (every request, not just a count), and the same operation sent
//!   to an in-process API server over REST whose store records too: the report shows whether the
//!   API sent exactly the requests core-direct did;
//! - the ListFlows cost study: one dataset of flows with 1 version and one with 50, each in its
//!   own key namespace of the same etcd, listed through an in-process REST server on each
//!   namespace, through core-direct on the same namespace, and through the name-index prototype.
//!   The ratio between the two datasets is what the number of versions costs a listing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::KvClient;

use flowpipe_api::SystemEnvironment;
use flowpipe_api::server::{Config, Server};
use flowpipe_core::proto::v1::{CreateFlowRequest, UpdateFlowRequest};
use flowpipe_core::{FlowName, FlowRegistry};
use flowpipe_store::{EtcdConfig, Store, StoreConfig};

use crate::core_direct::{Core, api_err};
use crate::raw::{self, BenchResult, ListCost};
use crate::recording::{self, Call, Recorder, RecordingKv};
use crate::run::{self, Clients, RowStats, Transport, Worker};
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
    pub op: &'static str,
    /// The requests core-direct sent, in the order they completed.
    pub calls: Vec<Call>,
    /// How many requests the API server sent for the same operation over REST, and whether they
    /// were the same requests (kind, keys, compares, operations; not values or revisions).
    pub api: (usize, bool),
    /// Most allowed by the targets; `None` for a path the targets do not cover.
    pub max: Option<u64>,
}

impl RoundTrips {
    pub fn count(&self) -> u64 {
        self.calls.len() as u64
    }
}

/// One operation run twice, on equal data: by core-direct (`core`) and by the API over REST
/// (`rest`), each recorded.
async fn both<T>(
    op: &'static str,
    max: Option<u64>,
    core: &Core,
    core_op: impl Future<Output = Result<T, flowpipe_core::Error>>,
    api: &InProcessApi,
    rest: reqwest::RequestBuilder,
) -> BenchResult<(RoundTrips, T, Vec<u8>)> {
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
/// page of 100 over each dataset of the list study.
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
        let rest = http.get(format!("{}/v1/flows?page_size=100", d.api.base));
        let first = d.core.flows.list(100, "");
        let (rt, first, body) = both(d.first_label, Some(5), &d.core, first, &d.api, rest).await?;
        out.push(rt);
        let token = next_page_token(&body)?;
        let rest = http
            .get(format!("{}/v1/flows", d.api.base))
            .query(&[("page_size", "100"), ("page_token", token.as_str())]);
        let next = d.core.flows.list(100, &first.next_page_token);
        out.push(
            both(d.next_label, Some(5), &d.core, next, &d.api, rest)
                .await?
                .0,
        );
    }
    Ok(out)
}

/// One dataset of the list study: `flows` flows of `versions` versions each, with status, in key
/// namespace `ns`, with a core and an in-process API server on that namespace.
pub struct Dataset {
    pub versions: u64,
    pub flows: usize,
    pub ns: String,
    pub first_label: &'static str,
    pub next_label: &'static str,
    pub core: Core,
    pub api: InProcessApi,
}

impl Dataset {
    pub async fn open(
        endpoints: &[String],
        versions: u64,
        flows: usize,
        ns: String,
    ) -> BenchResult<Dataset> {
        let (first_label, next_label) = if versions == 1 {
            (
                "list page 1, 1-version flows",
                "list page 2, 1-version flows",
            )
        } else {
            (
                "list page 1, many-version flows",
                "list page 2, many-version flows",
            )
        };
        Ok(Dataset {
            versions,
            flows,
            core: Core::connect(endpoints, ns.as_bytes())?,
            api: InProcessApi::start(endpoints, &ns).await?,
            ns,
            first_label,
            next_label,
        })
    }

    /// The flows (through the core), and the name-index prototype's keys for them.
    pub async fn seed(&self, kv: &KvClient) -> BenchResult<()> {
        let names: Vec<FlowName> = (0..self.flows)
            .map(|i| workload::name(format!("flow-{i:05}")))
            .collect();
        self.core.seed_flows(&names, self.versions).await?;
        raw::seed_index(kv, self.ns.as_bytes(), &names).await
    }
}

/// Who lists in a row of the list study.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lister {
    /// The API over REST.
    Rest,
    /// The core in-process: the API's requests without the API around them.
    Core,
    /// Raw etcd-client listing through the name-index prototype (a proposal, not the API).
    Indexed,
}

impl Lister {
    pub const ALL: [Lister; 3] = [Lister::Rest, Lister::Core, Lister::Indexed];

    pub fn name(self) -> &'static str {
        match self {
            Lister::Rest => "REST",
            Lister::Core => "core-direct",
            Lister::Indexed => "raw, name index (proposal)",
        }
    }
}

/// One row of the list study.
pub struct ListRow {
    pub versions: u64,
    pub lister: Lister,
    pub conc: usize,
    pub stats: RowStats,
    /// etcd's CPU time per listed page, µs (when its process is known).
    pub etcd_cpu_us: Option<f64>,
}

/// What the list study found.
pub struct ListStudy {
    pub rows: Vec<ListRow>,
    /// Raw range probes separating returned keys from walked keys.
    pub probes: Vec<ScanProbe>,
    /// Per dataset (by versions): what a first page costs at etcd, as the core lists (recorded)
    /// and with the name-index prototype.
    pub costs: Vec<(u64, ListCost)>,
    pub indexed_costs: Vec<(u64, ListCost)>,
}

impl ListStudy {
    pub fn row(&self, versions: u64, lister: Lister, conc: usize) -> Option<&ListRow> {
        self.rows
            .iter()
            .find(|r| r.versions == versions && r.lister == lister && r.conc == conc)
    }
}

/// What a first page cost, from the requests the core sent.
fn list_cost(calls: &[Call], flows: usize) -> ListCost {
    ListCost {
        round_trips: calls.len() as u64,
        discovery_keys: calls
            .iter()
            .filter(|c| c.is_discovery())
            .map(|c| c.returned as u64)
            .sum(),
        flows,
    }
}

/// Lists the first page of 100 of every dataset over REST (the dataset's in-process server),
/// core-direct and the name-index prototype, at each concurrency, datasets interleaved so drift
/// hits both alike.
pub async fn list_study(
    clients: &Clients,
    datasets: &[Dataset],
    concurrency: &[usize],
    warmup: Duration,
    measure: Duration,
    etcd_pid: Option<u32>,
) -> BenchResult<ListStudy> {
    let mut on_dataset = Vec::new();
    let mut costs = Vec::new();
    let mut indexed_costs = Vec::new();
    for d in datasets {
        let mut c = clients.clone();
        c.base.clone_from(&d.api.base);
        c.core = d.core.clone();
        let (page, calls) = d.core.record(d.core.flows.list(100, "")).await;
        let page = page.map_err(api_err)?;
        costs.push((d.versions, list_cost(&calls, page.flows.len())));
        indexed_costs.push((
            d.versions,
            raw::list_page_indexed(&clients.kv, d.ns.as_bytes(), 100).await?,
        ));
        on_dataset.push((d, c));
    }
    let mut rows = Vec::new();
    for &conc in concurrency {
        for lister in Lister::ALL {
            let transport = match lister {
                Lister::Rest => Transport::Rest,
                Lister::Core => Transport::Core,
                Lister::Indexed => Transport::Min,
            };
            for (d, c) in &on_dataset {
                let mut workers = Vec::with_capacity(conc);
                for _ in 0..conc {
                    let indexed = lister == Lister::Indexed;
                    workers.push(Worker::list_in(transport, c, d.ns.as_bytes(), indexed).await?);
                }
                let cpu0 = etcd_pid.and_then(crate::server::cpu_time);
                let (stats, _) = run::run(workers, warmup, measure).await;
                let etcd_cpu_us = cpu0
                    .zip(etcd_pid.and_then(crate::server::cpu_time))
                    .map(|(a, b)| (b - a).as_secs_f64() * 1e6 / stats.all_ops.max(1) as f64);
                if let Some(e) = &stats.first_error {
                    return Err(format!("list study row failed: {e}"));
                }
                rows.push(ListRow {
                    versions: d.versions,
                    lister,
                    conc,
                    stats,
                    etcd_cpu_us,
                });
            }
        }
    }
    let probes = scan_probes(&clients.kv, datasets, 200, etcd_pid).await?;
    Ok(ListStudy {
        rows,
        probes,
        costs,
        indexed_costs,
    })
}

/// One probe of etcd's range cost on a dataset.
pub struct ScanProbe {
    pub versions: u64,
    pub what: &'static str,
    pub keys_returned: usize,
    pub p50_ms: f64,
    pub etcd_cpu_us: Option<f64>,
}

/// Separates the two costs of a discovery read on each dataset, with raw keys-only range reads
/// issued one at a time: the keys a read returns, and the keys etcd walks. etcd 3.4 collects
/// every revision in `[key, range_end)` from its index before applying `limit`, so the same
/// 100-key read costs more the more keys follow it in the range.
pub async fn scan_probes(
    kv: &KvClient,
    datasets: &[Dataset],
    reads: usize,
    etcd_pid: Option<u32>,
) -> BenchResult<Vec<ScanProbe>> {
    let mut out = Vec::new();
    for d in datasets {
        let ns = d.ns.as_bytes();
        let (start, end) = flowpipe_core::keys::all_flows();
        let start = [ns, &start].concat();
        let end_all = [ns, &end].concat();
        // The end of the first flow's keys: a range that walks only what it returns.
        let first = workload::name("flow-00000".into());
        let first_end = [
            ns,
            &flowpipe_core::keys::FlowKeys::new(&first).subtree_end(),
        ]
        .concat();
        for (what, end, limit) in [
            ("100 keys, range to the end of all flows", &end_all, 100),
            (
                "first flow's keys only, range bounded to it",
                &first_end,
                100,
            ),
        ] {
            let mut hist = Vec::with_capacity(reads);
            let mut returned = 0;
            let cpu0 = etcd_pid.and_then(crate::server::cpu_time);
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
            let etcd_cpu_us = cpu0
                .zip(etcd_pid.and_then(crate::server::cpu_time))
                .map(|(a, b)| (b - a).as_secs_f64() * 1e6 / reads as f64);
            hist.sort_unstable();
            out.push(ScanProbe {
                versions: d.versions,
                what,
                keys_returned: returned,
                p50_ms: hist[hist.len() / 2].as_secs_f64() * 1000.0,
                etcd_cpu_us,
            });
        }
    }
    Ok(out)
}
