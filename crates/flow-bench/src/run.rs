//! One benchmark row: an operation over one transport at one concurrency. `concurrency` workers
//! run the operation back to back, each on flows (or keys) of its own so rows never measure
//! contention between workers; latencies go into an HDR histogram, throughput is the operations
//! completed in the measured window (after a warm-up) divided by its length. A worker whose
//! operations are slower than the window stretches it until it has measured one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_client::KvClient;
use hdrhistogram::Histogram;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use flowpipe_api::grpc::v1::flow_service_client::FlowServiceClient;
use flowpipe_core::FlowName;
use flowpipe_core::kv::{Kv, RangeRequest};
use flowpipe_core::proto::v1::{
    CreateFlowRequest, FlowSpec, GetFlowRequest, ListFlowsRequest, RollbackFlowRequest,
    UpdateFlowRequest,
};

use crate::core_direct::{Core, api_err};
use crate::raw::{self, BenchResult};
use crate::workload::{self, Variant};

/// The operations of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    Get,
    List,
    Rollback,
    /// Calibration, not an API operation: a request that never touches the store (REST
    /// `/healthz`, gRPC health check of the process), against one etcd range read (raw-min:
    /// with etcd-client; core-direct: through the store the core runs on). It shows what the
    /// extra hop through the API costs by itself.
    Ping,
}

impl Op {
    pub const ALL: [Op; 6] = [
        Op::Create,
        Op::Update,
        Op::Get,
        Op::List,
        Op::Rollback,
        Op::Ping,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Get => "get",
            Op::List => "list",
            Op::Rollback => "rollback",
            Op::Ping => "ping",
        }
    }

    pub fn parse(s: &str) -> Result<Op, String> {
        Op::ALL.into_iter().find(|o| o.name() == s).ok_or_else(|| {
            format!("unknown operation {s:?} (create, update, get, list, rollback, ping)")
        })
    }
}

/// Who issues the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The API over REST, HTTP/1.1 keep-alive.
    Rest,
    /// The API over gRPC.
    Grpc,
    /// Baseline (a): the core in-process on an etcd store, sending the API's own reads and
    /// transactions (`core_direct.rs`).
    Core,
    /// Baseline (b): raw etcd-client, one CAS write or one range read.
    Min,
}

impl Transport {
    pub const ALL: [Transport; 4] = [
        Transport::Rest,
        Transport::Grpc,
        Transport::Core,
        Transport::Min,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Transport::Rest => "REST",
            Transport::Grpc => "gRPC",
            Transport::Core => "core-direct",
            Transport::Min => "raw-min",
        }
    }

    /// One letter, for flow names.
    fn letter(self) -> char {
        match self {
            Transport::Rest => 'r',
            Transport::Grpc => 'g',
            Transport::Core => 'c',
            Transport::Min => 'm',
        }
    }

    pub fn is_api(self) -> bool {
        matches!(self, Transport::Rest | Transport::Grpc)
    }
}

/// Connections shared by the workers of a row, as a real client would share them: one HTTP/1.1
/// connection pool, one gRPC channel (HTTP/2), one etcd client; and one in-process core (with
/// its own etcd client, as the API server has one).
#[derive(Clone)]
pub struct Clients {
    pub http: reqwest::Client,
    pub base: String,
    pub grpc: FlowServiceClient<Channel>,
    pub health: HealthClient<Channel>,
    pub kv: KvClient,
    /// Core-direct: the core on the keyspace the rows use.
    pub core: Core,
    /// Prefix of every flow name and raw key this run writes.
    pub tag: String,
}

impl Clients {
    pub async fn connect(
        http_addr: std::net::SocketAddr,
        grpc_addr: std::net::SocketAddr,
        kv: KvClient,
        core: Core,
        tag: &str,
    ) -> BenchResult<Clients> {
        let http = reqwest::Client::builder()
            .http1_only()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1024)
            .pool_idle_timeout(Duration::from_secs(300))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let channel = Channel::from_shared(format!("http://{grpc_addr}"))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("gRPC connect to {grpc_addr}: {e}"))?;
        let health = HealthClient::new(channel.clone());
        let grpc = FlowServiceClient::new(channel)
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024);
        Ok(Clients {
            http,
            base: format!("http://{http_addr}"),
            grpc,
            health,
            kv,
            core,
            tag: tag.to_string(),
        })
    }

    async fn rest(&self, req: reqwest::RequestBuilder) -> BenchResult<Bytes> {
        let resp = req.send().await.map_err(|e| format!("HTTP: {e}"))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| format!("HTTP body: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ));
        }
        Ok(body)
    }

    fn json(
        &self,
        req: reqwest::RequestBuilder,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::RequestBuilder {
        req.header("content-type", "application/json").body(body)
    }

    /// Creates flow `name` through the API (REST): setting up flows exactly as the API writes
    /// them.
    pub async fn api_create(&self, name: &FlowName) -> BenchResult<()> {
        let req = self.http.post(format!("{}/v1/flows", self.base));
        self.rest(self.json(req, workload::rest_body(Some(name.as_str()), Variant::A)))
            .await
            .map(|_| ())
    }

    pub async fn api_update(&self, name: &FlowName, variant: Variant) -> BenchResult<()> {
        let req = self.http.put(format!("{}/v1/flows/{name}", self.base));
        self.rest(self.json(req, workload::rest_body(None, variant)))
            .await
            .map(|_| ())
    }
}

fn grpc_err(e: tonic::Status) -> String {
    format!("gRPC {:?}: {}", e.code(), e.message())
}

/// What a worker keeps between operations.
pub struct Worker {
    op: Op,
    transport: Transport,
    c: Clients,
    /// Operations done so far.
    i: u64,
    /// Create: prefix of new names. Otherwise the worker's flow.
    name: String,
    flow: Option<FlowName>,
    /// List rows: the page token of the page to list (empty: the first page).
    page_token: String,
    /// List rows of the study, core-direct: the path every page must take (`true`: the name
    /// index; `false`: discovery), checked on every call.
    from_index: Option<bool>,
    /// Raw-min: the key and its mod revision.
    min_key: Vec<u8>,
    min_rev: i64,
    specs: [FlowSpec; 2],
    update_bodies: [Bytes; 2],
    min_values: [Vec<u8>; 2],
}

/// Where raw-min rows keep their keys.
pub fn min_prefix(tag: &str) -> String {
    format!("/{tag}-min/")
}

/// The keys raw-min list rows read a page of.
pub fn min_list_prefix(tag: &str) -> Vec<u8> {
    format!("{}list/", min_prefix(tag)).into_bytes()
}

impl Worker {
    /// Worker `w` of a row at concurrency `conc`: sets up the flow it works on (created through
    /// the API for API rows, through the core for core-direct rows, a raw key for raw-min).
    pub async fn setup(
        op: Op,
        transport: Transport,
        c: &Clients,
        conc: usize,
        w: usize,
    ) -> BenchResult<Worker> {
        let name = format!(
            "{}-{}{}{}-{w}",
            c.tag,
            &op.name()[..1],
            transport.letter(),
            conc
        );
        let flow = workload::name(name.clone());
        let mut worker = Worker {
            op,
            transport,
            c: c.clone(),
            i: 0,
            name,
            flow: None,
            page_token: String::new(),
            from_index: None,
            min_key: format!(
                "{}{}{}{conc}/{w}",
                min_prefix(&c.tag),
                op.name(),
                transport.letter()
            )
            .into_bytes(),
            min_rev: 0,
            specs: [
                workload::spec(None, Variant::A),
                workload::spec(None, Variant::B),
            ],
            update_bodies: [
                workload::rest_body(None, Variant::A).into(),
                workload::rest_body(None, Variant::B).into(),
            ],
            min_values: [
                workload::stored_spec(&flow, Variant::A, 1),
                workload::stored_spec(&flow, Variant::B, 1),
            ],
        };
        if matches!(op, Op::Create | Op::List) {
            return Ok(worker);
        }
        if op == Op::Ping {
            if transport.is_api() {
                return Ok(worker);
            }
            // The other rows read one key: one etcd round trip.
            worker.min_rev = raw::min_write(
                &mut c.kv.clone(),
                worker.min_key.clone(),
                0,
                worker.min_values[0].clone(),
            )
            .await?;
            return Ok(worker);
        }
        match transport {
            Transport::Rest | Transport::Grpc => {
                c.api_create(&flow).await?;
                if op == Op::Rollback {
                    c.api_update(&flow, Variant::B).await?;
                }
            }
            Transport::Core => {
                let versions = if op == Op::Rollback { 2 } else { 1 };
                c.core.seed_flow(&flow, versions).await?;
            }
            Transport::Min => {
                worker.min_rev = raw::min_write(
                    &mut c.kv.clone(),
                    worker.min_key.clone(),
                    0,
                    worker.min_values[0].clone(),
                )
                .await?;
            }
        }
        worker.flow = Some(flow);
        Ok(worker)
    }

    /// A list worker of the list-cost study (`c.base` and `c.core` are then a server and a
    /// core on the dataset's namespace): it lists the page of 100 at `page_token` (empty: the
    /// first), and core-direct fails a call whose page did not come from the path `from_index`
    /// says (REST rows cannot tell; the study checks the API's requests before the rows).
    pub async fn list_in(
        transport: Transport,
        c: &Clients,
        page_token: &str,
        from_index: bool,
    ) -> BenchResult<Worker> {
        let mut w = Worker::setup(Op::List, transport, c, 0, 0).await?;
        page_token.clone_into(&mut w.page_token);
        w.from_index = Some(from_index);
        Ok(w)
    }

    fn flow(&self) -> &FlowName {
        self.flow.as_ref().expect("set up with a flow")
    }

    /// One operation. The step counter (which name to create, which spec to update to, which
    /// version to roll back to) only moves on success, so a failed step is retried as is rather
    /// than turning the next one into a different (say, idempotent) operation.
    pub async fn step(&mut self) -> BenchResult<()> {
        let r = self.step_at(self.i).await;
        if r.is_ok() {
            self.i += 1;
        }
        r
    }

    async fn step_at(&mut self, i: u64) -> BenchResult<()> {
        let c = &self.c;
        let mut kv = c.kv.clone();
        match (self.op, self.transport) {
            (Op::Create, t) => {
                let name = workload::name(format!("{}-{i}", self.name));
                match t {
                    Transport::Rest => {
                        let req = c.http.post(format!("{}/v1/flows", c.base));
                        let body = workload::rest_body(Some(name.as_str()), Variant::A);
                        c.rest(c.json(req, body)).await?;
                    }
                    Transport::Grpc => {
                        let mut spec = self.specs[0].clone();
                        spec.name = name.as_str().to_owned();
                        c.grpc
                            .clone()
                            .create_flow(CreateFlowRequest {
                                spec: Some(spec),
                                validate_only: false,
                            })
                            .await
                            .map_err(grpc_err)?;
                    }
                    Transport::Core => {
                        let mut spec = self.specs[0].clone();
                        spec.name = name.as_str().to_owned();
                        c.core
                            .flows
                            .create(CreateFlowRequest {
                                spec: Some(spec),
                                validate_only: false,
                            })
                            .await
                            .map_err(api_err)?;
                    }
                    Transport::Min => {
                        let mut key = self.min_key.clone();
                        key.extend_from_slice(format!("/{i}").as_bytes());
                        raw::min_write(&mut kv, key, 0, self.min_values[0].clone()).await?;
                    }
                }
            }
            (Op::Get, t) => match t {
                Transport::Rest => {
                    let req = c.http.get(format!("{}/v1/flows/{}", c.base, self.flow()));
                    c.rest(req).await?;
                }
                Transport::Grpc => {
                    c.grpc
                        .clone()
                        .get_flow(GetFlowRequest {
                            name: self.flow().to_string(),
                        })
                        .await
                        .map_err(grpc_err)?;
                }
                Transport::Core => {
                    c.core
                        .flows
                        .get(self.flow().as_str())
                        .await
                        .map_err(api_err)?;
                }
                Transport::Min => raw::min_read(&mut kv, self.min_key.clone(), None, 0).await?,
            },
            (Op::Update, t) => {
                let variant = Variant::of_update(i);
                let ix = usize::from(variant == Variant::B);
                match t {
                    Transport::Rest => {
                        let req = c.http.put(format!("{}/v1/flows/{}", c.base, self.flow()));
                        c.rest(c.json(req, self.update_bodies[ix].clone())).await?;
                    }
                    Transport::Grpc => {
                        c.grpc
                            .clone()
                            .update_flow(UpdateFlowRequest {
                                name: self.flow().to_string(),
                                spec: Some(self.specs[ix].clone()),
                                validate_only: false,
                            })
                            .await
                            .map_err(grpc_err)?;
                    }
                    Transport::Core => {
                        c.core
                            .flows
                            .update(UpdateFlowRequest {
                                name: self.flow().to_string(),
                                spec: Some(self.specs[ix].clone()),
                                validate_only: false,
                            })
                            .await
                            .map_err(api_err)?;
                    }
                    Transport::Min => {
                        self.min_rev = raw::min_write(
                            &mut kv,
                            self.min_key.clone(),
                            self.min_rev,
                            self.min_values[ix].clone(),
                        )
                        .await?;
                    }
                }
            }
            (Op::Rollback, t) => {
                // The flow has versions 1 and 2, 2 active: alternate, so every call moves it.
                let target = if i.is_multiple_of(2) { 1 } else { 2 };
                match t {
                    Transport::Rest => {
                        let req = c.http.post(format!(
                            "{}/v1/flows/{}/rollback/{target}",
                            c.base,
                            self.flow()
                        ));
                        c.rest(req).await?;
                    }
                    Transport::Grpc => {
                        c.grpc
                            .clone()
                            .rollback_flow(RollbackFlowRequest {
                                name: self.flow().to_string(),
                                version: target,
                            })
                            .await
                            .map_err(grpc_err)?;
                    }
                    Transport::Core => {
                        c.core
                            .flows
                            .rollback(self.flow().as_str(), target)
                            .await
                            .map_err(api_err)?;
                    }
                    Transport::Min => {
                        self.min_rev = raw::min_write(
                            &mut kv,
                            self.min_key.clone(),
                            self.min_rev,
                            target.to_string().into_bytes(),
                        )
                        .await?;
                    }
                }
            }
            (Op::Ping, t) => match t {
                Transport::Rest => {
                    c.rest(c.http.get(format!("{}/healthz", c.base))).await?;
                }
                Transport::Grpc => {
                    c.health
                        .clone()
                        .check(HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .map_err(grpc_err)?;
                }
                Transport::Core => {
                    let resp = c
                        .core
                        .flows
                        .kv()
                        .range(RangeRequest::key(self.min_key.clone()))
                        .await
                        .map_err(|e| format!("store: {e}"))?;
                    if resp.kvs.is_empty() {
                        return Err("store read: nothing there".into());
                    }
                }
                Transport::Min => raw::min_read(&mut kv, self.min_key.clone(), None, 0).await?,
            },
            (Op::List, t) => match t {
                Transport::Rest => {
                    let mut req = c.http.get(format!("{}/v1/flows?page_size=100", c.base));
                    if !self.page_token.is_empty() {
                        req = req.query(&[("page_token", self.page_token.as_str())]);
                    }
                    c.rest(req).await?;
                }
                Transport::Grpc => {
                    c.grpc
                        .clone()
                        .list_flows(ListFlowsRequest {
                            page_size: 100,
                            page_token: self.page_token.clone(),
                        })
                        .await
                        .map_err(grpc_err)?;
                }
                Transport::Core => {
                    let page = c
                        .core
                        .flows
                        .list_page(100, &self.page_token)
                        .await
                        .map_err(api_err)?;
                    if let Some(want) = self.from_index
                        && page.from_index != want
                    {
                        return Err(format!(
                            "a ListFlows page came from the {} path, expected the {} path",
                            path_name(page.from_index),
                            path_name(want)
                        ));
                    }
                }
                Transport::Min => {
                    let start = min_list_prefix(&c.tag);
                    let end = flowpipe_core::keys::prefix_end(&start);
                    raw::min_read(&mut kv, start, Some(end), 100).await?;
                }
            },
        }
        Ok(())
    }
}

/// How a ListFlows page found its names: `true`, the name index (contract B.6).
pub fn path_name(from_index: bool) -> &'static str {
    if from_index { "index" } else { "discovery" }
}

/// The outcome of one row.
pub struct RowStats {
    /// Operations completed inside the measured window (the histogram may hold a few more: the
    /// first operation of a worker that completed none inside it).
    pub ops: u64,
    /// Operations completed in the whole row, warm-up included (for CPU time per operation).
    pub all_ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub window: Duration,
    /// Latencies in microseconds.
    pub hist: Histogram<u64>,
}

impl RowStats {
    pub fn throughput(&self) -> f64 {
        self.ops as f64 / self.window.as_secs_f64()
    }

    pub fn p50_ms(&self) -> f64 {
        self.hist.value_at_quantile(0.50) as f64 / 1000.0
    }

    pub fn p99_ms(&self) -> f64 {
        self.hist.value_at_quantile(0.99) as f64 / 1000.0
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// Fewest operations a row's window must count: a row of slow operations (a ListFlows page
/// over many versions takes seconds at c=16) keeps its window open until it has this many, so
/// its throughput is not one or two completions in a fixed window.
const MIN_WINDOW_OPS: u64 = 20;

/// Runs `workers` concurrently: a warm-up, then a window of at least `measure` (longer for slow
/// operations, see [`MIN_WINDOW_OPS`], at most 10 × `measure`). Throughput is the operations
/// completed inside the window divided by its length, whenever they started; latencies are those
/// of the same operations (plus, for a worker that completed none, its first one after the
/// warm-up). Hands the workers back, so a later round continues where this one stopped.
pub async fn run(
    workers: Vec<Worker>,
    warmup: Duration,
    measure: Duration,
) -> (RowStats, Vec<Worker>) {
    let start = Instant::now() + warmup;
    let end = start + measure;
    let hard_end = start + measure * 10;
    let counted = Arc::new(AtomicU64::new(0));
    let stop: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut w| {
            let (counted, stop) = (counted.clone(), stop.clone());
            tokio::spawn(async move {
                let mut hist = histogram();
                let (mut errors, mut first_error, mut all) = (0u64, None, 0u64);
                loop {
                    let now = Instant::now();
                    if now >= end
                        && (counted.load(Ordering::Relaxed) >= MIN_WINDOW_OPS || now >= hard_end)
                    {
                        let _ = stop.set(now);
                    }
                    // Every worker measures at least one operation, so a row of operations
                    // slower than the window still has a latency from each worker.
                    if stop.get().is_some() && (!hist.is_empty() || errors > 0) {
                        break;
                    }
                    let t0 = Instant::now();
                    let r = w.step().await;
                    let t1 = Instant::now();
                    match r {
                        Ok(()) => {
                            all += 1;
                            let in_window = t1 >= start && stop.get().is_none_or(|s| t1 <= *s);
                            if in_window {
                                counted.fetch_add(1, Ordering::Relaxed);
                            }
                            if in_window || (t1 >= start && hist.is_empty()) {
                                let _ = hist.record((t1 - t0).as_micros().max(1) as u64);
                            }
                        }
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                            // A failing worker must not spin: the row is reported as broken.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                (w, hist, errors, first_error, all)
            })
        })
        .collect();
    let mut stats = RowStats {
        ops: 0,
        all_ops: 0,
        errors: 0,
        first_error: None,
        window: measure,
        hist: histogram(),
    };
    let mut back = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            Ok((w, h, errors, first, all)) => {
                back.push(w);
                let _ = stats.hist.add(&h);
                stats.all_ops += all;
                stats.errors += errors;
                if stats.first_error.is_none() {
                    stats.first_error = first;
                }
            }
            Err(e) => {
                stats.errors += 1;
                stats
                    .first_error
                    .get_or_insert(format!("worker panicked: {e}"));
            }
        }
    }
    stats.ops = counted.load(Ordering::Relaxed);
    stats.window = stop
        .get()
        .map_or(measure, |s| s.saturating_duration_since(start));
    (stats, back)
}
