//! The clients: writers (updates of shared flows and creates of new ones) and readers of the
//! shared flows, over REST and gRPC, each recording every request it makes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flowpipe_api::grpc::v1::flow_service_client::FlowServiceClient;
use flowpipe_core::proto::v1::{
    CreateFlowRequest, FlowSpec, GetFlowRequest, GetFlowVersionRequest, ListFlowVersionsRequest,
    QueueSpec, StageSpec, UpdateFlowRequest,
};
use serde_json::{Value, json};
use tonic::transport::Channel;

/// Longer than any answer the API may take (its request timeout is 15 s): a client that waits
/// this long saw a hang, recorded as [`Outcome::NoAnswer`].
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    Rest,
    Grpc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Create,
    Update,
    Read,
}

impl Kind {
    pub fn is_write(self) -> bool {
        self != Kind::Read
    }
}

/// What a request got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Success: the flow's version written (or active, for a read) and the `op` label and
    /// stage threads of the spec in the answer.
    Ok {
        version: u64,
        label: String,
        threads: u32,
    },
    /// An error answer, by gRPC code name (REST: the body's `code`), with the HTTP status for
    /// REST.
    Failed {
        code: String,
        http: Option<u16>,
        message: String,
    },
    /// No answer (a broken connection, or nothing within [`CLIENT_TIMEOUT`]).
    NoAnswer(String),
}

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Op {
    pub client: u32,
    pub transport: Transport,
    pub kind: Kind,
    pub flow: String,
    /// For writes: the `op` label of the spec sent (unique per write).
    pub label: String,
    /// For writes: the stage threads of the spec sent.
    pub threads: u32,
    /// Since the history's origin.
    pub start: Duration,
    pub end: Duration,
    pub outcome: Outcome,
}

impl Op {
    pub fn latency(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }

    pub fn ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok { .. })
    }

    /// The error code ("UNAVAILABLE", ...), "NO_ANSWER", or None for a success.
    pub fn code(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Ok { .. } => None,
            Outcome::Failed { code, .. } => Some(code),
            Outcome::NoAnswer(_) => Some("NO_ANSWER"),
        }
    }
}

/// The spec every write sends: labelled with its unique `label`, `threads` stage threads.
pub fn spec(flow: &str, label: &str, threads: u32) -> FlowSpec {
    FlowSpec {
        name: flow.to_string(),
        labels: [("op".to_string(), label.to_string())]
            .into_iter()
            .collect(),
        queues: vec![QueueSpec {
            name: "q".into(),
            ..Default::default()
        }],
        stages: vec![StageSpec {
            name: "s".into(),
            r#type: "t".into(),
            threads,
            output_queue: Some("q".into()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn spec_json(flow: &str, label: &str, threads: u32) -> Value {
    json!({
        "name": flow,
        "labels": {"op": label},
        "queues": [{"name": "q"}],
        "stages": [{"name": "s", "type": "t", "threads": threads, "outputQueue": "q"}]
    })
}

/// How the clients reach the API (the portals on the host's loopback).
#[derive(Clone)]
pub struct Api {
    pub rest: SocketAddr,
    pub grpc: SocketAddr,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(rest: SocketAddr, grpc: SocketAddr) -> Api {
        assert!(
            rest.ip().is_loopback() && grpc.ip().is_loopback(),
            "the test process talks to loopback only"
        );
        Api {
            rest,
            grpc,
            http: reqwest::Client::builder()
                .timeout(CLIENT_TIMEOUT)
                .build()
                .expect("http client"),
        }
    }

    /// A gRPC client with its own connection.
    pub fn grpc_client(&self) -> FlowServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.grpc))
            .expect("grpc url")
            .timeout(CLIENT_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        FlowServiceClient::new(channel)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.rest)
    }

    /// A REST answer as an outcome.
    async fn rest_outcome(r: reqwest::Result<reqwest::Response>) -> Outcome {
        let r = match r {
            Ok(r) => r,
            Err(e) => return Outcome::NoAnswer(e.to_string()),
        };
        let status = r.status().as_u16();
        let body: Value = match r.json().await {
            Ok(v) => v,
            Err(e) => return Outcome::NoAnswer(format!("HTTP {status}, body unreadable: {e}")),
        };
        if (200..300).contains(&status) {
            let version = body["version"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let label = body["spec"]["labels"]["op"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let threads = body["spec"]["stages"][0]["threads"]
                .as_u64()
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(0);
            Outcome::Ok {
                version,
                label,
                threads,
            }
        } else {
            let code = body["code"]
                .as_i64()
                .and_then(|c| i32::try_from(c).ok())
                .map_or_else(|| "NONE".to_string(), code_name);
            Outcome::Failed {
                code,
                http: Some(status),
                message: body["message"].as_str().unwrap_or_default().to_string(),
            }
        }
    }

    pub async fn rest_write(&self, kind: Kind, flow: &str, label: &str, threads: u32) -> Outcome {
        let body = spec_json(flow, label, threads);
        let r = match kind {
            Kind::Create => self.http.post(self.url("/v1/flows")).json(&body).send(),
            _ => self
                .http
                .put(self.url(&format!("/v1/flows/{flow}")))
                .json(&body)
                .send(),
        };
        Self::rest_outcome(r.await).await
    }

    pub async fn rest_read(&self, flow: &str) -> Outcome {
        let r = self
            .http
            .get(self.url(&format!("/v1/flows/{flow}")))
            .send()
            .await;
        Self::rest_outcome(r).await
    }
}

/// gRPC's name of a code ("UNAVAILABLE").
pub fn code_name(code: i32) -> String {
    let name = format!("{:?}", tonic::Code::from_i32(code));
    // Unavailable -> UNAVAILABLE, DeadlineExceeded -> DEADLINE_EXCEEDED.
    let mut out = String::new();
    for (i, ch) in name.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

fn grpc_outcome(
    r: Result<tonic::Response<flowpipe_core::proto::v1::Flow>, tonic::Status>,
) -> Outcome {
    match r {
        Ok(resp) => {
            let f = resp.into_inner();
            let spec = f.spec.unwrap_or_default();
            Outcome::Ok {
                version: f.version,
                label: spec.labels.get("op").cloned().unwrap_or_default(),
                threads: spec.stages.first().map_or(0, |s| s.threads),
            }
        }
        // A status made by the client itself (the connection broke): no answer from the API.
        Err(s) if std::error::Error::source(&s).is_some() => {
            Outcome::NoAnswer(format!("{:?}: {}", s.code(), s.message()))
        }
        Err(s) => Outcome::Failed {
            code: code_name(s.code() as i32),
            http: None,
            message: s.message().to_string(),
        },
    }
}

pub async fn grpc_write(
    client: &mut FlowServiceClient<Channel>,
    kind: Kind,
    flow: &str,
    label: &str,
    threads: u32,
) -> Outcome {
    let spec = spec(flow, label, threads);
    let r = match kind {
        Kind::Create => {
            client
                .create_flow(CreateFlowRequest {
                    spec: Some(spec),
                    validate_only: false,
                })
                .await
        }
        _ => {
            client
                .update_flow(UpdateFlowRequest {
                    name: flow.to_string(),
                    spec: Some(spec),
                    validate_only: false,
                })
                .await
        }
    };
    grpc_outcome(r)
}

pub async fn grpc_read(client: &mut FlowServiceClient<Channel>, flow: &str) -> Outcome {
    grpc_outcome(
        client
            .get_flow(GetFlowRequest {
                name: flow.to_string(),
            })
            .await,
    )
}

/// What the clients share.
#[derive(Clone)]
pub struct Run {
    pub api: Api,
    pub shared: Arc<Vec<String>>,
    pub t0: Instant,
    pub stop: Arc<AtomicBool>,
    pub ops: Arc<Mutex<Vec<Op>>>,
    pub pace: Duration,
}

impl Run {
    fn record(&self, op: Op) {
        self.ops.lock().unwrap().push(op);
    }

    /// A writer: three updates of a shared flow for every create of a new flow, until stopped.
    pub async fn writer(self, id: u32, transport: Transport) {
        let mut grpc = self.api.grpc_client();
        let mut n = 0u32;
        while !self.stop.load(Ordering::Relaxed) {
            n += 1;
            let (kind, flow) = if n.is_multiple_of(4) {
                (Kind::Create, format!("c{id}-{n}"))
            } else {
                let f = &self.shared[(id + n) as usize % self.shared.len()];
                (Kind::Update, f.clone())
            };
            let label = format!("w{id}-{n}");
            let threads = 1 + n % 7;
            let start = self.t0.elapsed();
            let outcome = match transport {
                Transport::Rest => self.api.rest_write(kind, &flow, &label, threads).await,
                Transport::Grpc => grpc_write(&mut grpc, kind, &flow, &label, threads).await,
            };
            self.record(Op {
                client: id,
                transport,
                kind,
                flow,
                label,
                threads,
                start,
                end: self.t0.elapsed(),
                outcome,
            });
            tokio::time::sleep(self.pace).await;
        }
    }

    /// A reader of the shared flows, until stopped.
    pub async fn reader(self, id: u32, transport: Transport) {
        let mut grpc = self.api.grpc_client();
        let mut n = 0usize;
        while !self.stop.load(Ordering::Relaxed) {
            n += 1;
            let flow = self.shared[(id as usize + n) % self.shared.len()].clone();
            let start = self.t0.elapsed();
            let outcome = match transport {
                Transport::Rest => self.api.rest_read(&flow).await,
                Transport::Grpc => grpc_read(&mut grpc, &flow).await,
            };
            self.record(Op {
                client: id,
                transport,
                kind: Kind::Read,
                flow,
                label: String::new(),
                threads: 0,
                start,
                end: self.t0.elapsed(),
                outcome,
            });
            tokio::time::sleep(self.pace).await;
        }
    }
}

/// One stored version as the API returns it after the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub label: String,
    pub threads: u32,
}

/// Every version of `flow` (`None`: the flow does not exist), read through gRPC after the run:
/// the versions ListFlowVersions lists, each read with GetFlowVersion.
pub async fn stored_versions(
    client: &mut FlowServiceClient<Channel>,
    flow: &str,
) -> Result<Option<std::collections::BTreeMap<u64, Stored>>, tonic::Status> {
    let mut listed = vec![];
    let mut token = String::new();
    loop {
        let page = match client
            .list_flow_versions(ListFlowVersionsRequest {
                name: flow.to_string(),
                page_size: 1000,
                page_token: token.clone(),
            })
            .await
        {
            Ok(p) => p.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
            Err(s) => return Err(s),
        };
        listed.extend(page.versions.iter().map(|v| v.version));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut out = std::collections::BTreeMap::new();
    for v in listed {
        let f = client
            .get_flow_version(GetFlowVersionRequest {
                name: flow.to_string(),
                version: v,
            })
            .await?
            .into_inner();
        let spec = f.spec.unwrap_or_default();
        out.insert(
            v,
            Stored {
                label: spec.labels.get("op").cloned().unwrap_or_default(),
                threads: spec.stages.first().map_or(0, |s| s.threads),
            },
        );
    }
    Ok(Some(out))
}
