//! The measurements that are not throughput rows:
//!
//! - etcd round trips per API operation, counted at the `Kv` trait (`Store::round_trips`) around
//!   single operations of an in-process `FlowRegistry` on the common path;
//! - the ListFlows cost study: one dataset of flows with 1 version and one with 50, each in its own
//!   key namespace of the same etcd, listed through an in-process REST server on each namespace
//!   and through the raw-same baseline. The ratio between the two is what the number of versions
//!   costs a listing.

use std::time::Duration;

use etcd_client::KvClient;

use flowpipe_api::core::FlowRegistry;
use flowpipe_api::handler::SystemEnvironment;
use flowpipe_api::local::{Config, Server};
use flowpipe_api::proto::v1::{CreateFlowRequest, UpdateFlowRequest};
use flowpipe_api::store::{EtcdConfig, Store, StoreConfig};

use crate::raw::{self, BenchResult, ListCost};
use crate::run::{self, Clients, RowStats, Transport, Worker};
use crate::workload::{self, Variant};

/// A store of its own on key namespace `ns`, counting its round trips.
pub fn store(endpoints: &[String], ns: &str) -> BenchResult<Store> {
    let mut config = EtcdConfig::new(endpoints.to_vec());
    config.namespace = ns.as_bytes().to_vec();
    Store::open(StoreConfig::Etcd(Box::new(config))).map_err(|e| e.message().to_string())
}

/// Round trips of one operation.
pub struct RoundTrips {
    pub op: &'static str,
    pub count: u64,
    /// Most allowed by the targets; `None` for a path the targets do not cover.
    pub max: Option<u64>,
    /// For the first list page of a study dataset: that dataset's versions per flow.
    pub list_versions: Option<u64>,
}

fn api_err(e: flowpipe_api::core::Error) -> String {
    format!("{:?}: {}", e.code(), e.message())
}

/// Counts the round trips of each operation on its common path, in namespace `ns`, plus the
/// first and the next ListFlows page of 100 over each dataset of the list study.
pub async fn round_trips(
    endpoints: &[String],
    ns: &str,
    datasets: &[Dataset],
) -> BenchResult<Vec<RoundTrips>> {
    let store = store(endpoints, ns)?;
    let flows = FlowRegistry::new(store.clone(), SystemEnvironment);
    let name = "round-trips";
    let mut out = Vec::new();
    // One operation at a time, nothing else on this store: the counter's difference is exactly
    // that operation's round trips.
    let since = |op: &'static str, max: Option<u64>, before: u64| RoundTrips {
        op,
        count: store.round_trips().total() - before,
        max,
        list_versions: None,
    };

    let b = store.round_trips().total();
    flows
        .create(CreateFlowRequest {
            spec: Some(workload::spec(Some(name), Variant::A)),
            validate_only: false,
        })
        .await
        .map_err(api_err)?;
    out.push(since("create (new name)", Some(1), b));

    // Both updates below write spec B: the first changes the flow, the second follows a rollback.
    let update_to_b = || async {
        flows
            .update(
                UpdateFlowRequest {
                    name: name.into(),
                    spec: Some(workload::spec(None, Variant::B)),
                    validate_only: false,
                },
                None,
            )
            .await
            .map_err(api_err)
    };

    let b = store.round_trips().total();
    flows.get(name).await.map_err(api_err)?;
    out.push(since("get", Some(2), b));

    let b = store.round_trips().total();
    update_to_b().await?;
    out.push(since("update (changed spec)", Some(2), b));

    let b = store.round_trips().total();
    flows.rollback(name, 1).await.map_err(api_err)?;
    out.push(since("rollback", Some(2), b));

    let b = store.round_trips().total();
    flows.status(name).await.map_err(api_err)?;
    out.push(since("status", Some(1), b));

    // Not the common path: the first update after a rollback (the active version is then not the
    // newest, so the API compares decoded specs first, at the cost of a read).
    let b = store.round_trips().total();
    update_to_b().await?;
    out.push(since("update, first after a rollback", None, b));

    let b = store.round_trips().total();
    flows.delete(name).await.map_err(api_err)?;
    out.push(since("delete", Some(2), b));

    for d in datasets {
        let store = self::store(endpoints, &d.ns)?;
        let flows = FlowRegistry::new(store.clone(), SystemEnvironment);
        let b = store.round_trips().total();
        let first = flows.list(100, "").await.map_err(api_err)?;
        out.push(RoundTrips {
            op: d.first_label,
            count: store.round_trips().total() - b,
            max: Some(5),
            list_versions: Some(d.versions),
        });
        let b = store.round_trips().total();
        flows
            .list(100, &first.next_page_token)
            .await
            .map_err(api_err)?;
        out.push(RoundTrips {
            op: d.next_label,
            count: store.round_trips().total() - b,
            max: Some(5),
            list_versions: None,
        });
    }
    Ok(out)
}

/// One dataset of the list study: `flows` flows of `versions` versions each, with status, in key
/// namespace `ns`.
pub struct Dataset {
    pub versions: u64,
    pub flows: usize,
    pub ns: String,
    pub first_label: &'static str,
    pub next_label: &'static str,
}

impl Dataset {
    pub fn new(versions: u64, flows: usize, ns: String) -> Dataset {
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
        Dataset {
            versions,
            flows,
            ns,
            first_label,
            next_label,
        }
    }

    /// The flows, and the name-index prototype's keys for them.
    pub async fn seed(&self, kv: &KvClient) -> BenchResult<()> {
        let names: Vec<_> = (0..self.flows)
            .map(|i| workload::name(format!("flow-{i:05}")))
            .collect();
        raw::seed_flows(kv, self.ns.as_bytes(), &names, self.versions).await?;
        raw::seed_index(kv, self.ns.as_bytes(), &names).await
    }
}

/// Who lists in a row of the list study.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lister {
    /// The API over REST.
    Rest,
    /// Raw etcd-client issuing the API's requests.
    Same,
    /// Raw etcd-client listing through the name-index prototype (a proposal, not the API).
    Indexed,
}

impl Lister {
    pub const ALL: [Lister; 3] = [Lister::Rest, Lister::Same, Lister::Indexed];

    pub fn name(self) -> &'static str {
        match self {
            Lister::Rest => "REST",
            Lister::Same => "raw-same",
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
    /// Per dataset (by versions): what a first page costs at etcd, as the API lists and with
    /// the name-index prototype.
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

/// Lists the first page of 100 of every dataset over REST (an in-process server per dataset,
/// on that dataset's namespace) and raw-same, at each concurrency, datasets interleaved so drift
/// hits both alike.
pub async fn list_study(
    endpoints: &[String],
    clients: &Clients,
    datasets: &[Dataset],
    concurrency: &[usize],
    warmup: Duration,
    measure: Duration,
    etcd_pid: Option<u32>,
) -> BenchResult<ListStudy> {
    let mut servers = Vec::new();
    let mut costs = Vec::new();
    let mut indexed_costs = Vec::new();
    for d in datasets {
        let mut config = EtcdConfig::new(endpoints.to_vec());
        config.namespace = d.ns.as_bytes().to_vec();
        let server = Server::bind(Config::for_tests(StoreConfig::Etcd(Box::new(config))))
            .await
            .map_err(|e| e.to_string())?;
        let mut c = clients.clone();
        c.base = format!("http://{}", server.http_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        costs.push((
            d.versions,
            raw::list_page(&clients.kv, d.ns.as_bytes(), 100).await?,
        ));
        indexed_costs.push((
            d.versions,
            raw::list_page_indexed(&clients.kv, d.ns.as_bytes(), 100).await?,
        ));
        servers.push((d, c, stop));
    }
    let mut rows = Vec::new();
    for &conc in concurrency {
        for lister in Lister::ALL {
            let transport = match lister {
                Lister::Rest => Transport::Rest,
                Lister::Same | Lister::Indexed => Transport::Same,
            };
            for (d, c, _) in &servers {
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
    for (_, _, stop) in servers {
        let _ = stop.send(());
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
        let (start, end) = flowpipe_api::core::keys::all_flows();
        let start = [ns, &start].concat();
        let end_all = [ns, &end].concat();
        // The end of the first flow's keys: a range that walks only what it returns.
        let first = workload::name("flow-00000".into());
        let first_end = [
            ns,
            &flowpipe_api::core::keys::FlowKeys::new(&first).subtree_end(),
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
