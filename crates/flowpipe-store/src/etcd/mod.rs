//! [`EtcdStore`]: the [`Kv`] trait on a real etcd cluster, through `etcd-client`.
//!
//! One client per process, built lazily on first use (no network I/O at construction, which
//! the Lambda init phase relies on) and shared by every request; gRPC multiplexes requests over
//! its HTTP/2 connections. A transport failure drops the client so the next request builds a
//! fresh one (after a Lambda freeze the old connections may be dead). Authentication tokens are
//! refreshed when etcd reports them expired.
//!
//! Errors: anything that means "etcd cannot answer now" (connection refused, timeout, no leader,
//! a connection that broke, whatever the gRPC code the client library gave it; or something
//! other than etcd answering on the endpoint's port) is `Unavailable`, its endpoints logged; a
//! read at a compacted revision is `FailedPrecondition(REVISION_UNAVAILABLE)`; the rest (what
//! etcd itself answered) is `Internal`.
//!
//! # Deadlines and retries
//! Every call is done by one deadline: [`EtcdConfig::request_timeout`] from its start, or the
//! request's own deadline ([`crate::deadline`]) when that is earlier; waiting for a connection
//! counts too. Within it, a call that failed without effect is tried again, on whichever member
//! the client picks next (its balancer skips one that is still reconnecting):
//! - never sent: the connection to the member could not be made (`tonic::ConnectError` in the
//!   error's sources: a member that is down, or cut off, while the client reconnects to it);
//! - not proposed: etcd refused it before proposing it to raft ("etcdserver: no leader", which a
//!   member that lost its leader answers at once because the client sets `require_leader`; an
//!   isolated old leader keeps answering it for as long as the partition lasts, and the client
//!   keeps its healthy connection to it, so only a retry moves the request to the majority).
//!
//! A read (a range, or a transaction of ranges only) is idempotent, so it is also retried after
//! an error whose outcome is unknown (a connection that broke mid-request). A write whose outcome
//! is unknown is never retried here: it is answered `Unavailable` and the client decides. A write
//! that is retried was never applied, so it cannot apply twice; and even if it had been, the
//! core's compare-and-swap transactions would fail their compares on the retry and read the state
//! that the first attempt wrote (`flowpipe_core::cas`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare as EtcdCompare, CompareOp as EtcdCompareOp, ConnectOptions,
    DeleteOptions, GetOptions, Identity, TlsOptions, Txn as EtcdTxn, TxnOp as EtcdTxnOp,
    TxnOpResponse as EtcdTxnOpResponse,
};
use tokio::sync::Mutex;

use flowpipe_core::keys::prefix_end;
use flowpipe_core::kv::{
    Compare, CompareOp, CompareTarget, KeyValue, Kv, KvError, RangeRequest, RangeResponse, Txn,
    TxnOp, TxnOpResponse, TxnResponse,
};

mod config;

pub use config::{EtcdConfig, EtcdConfigError, PemField};

type Result<T, E = KvError> = std::result::Result<T, E>;

/// A handle to one shared etcd client; clone it freely.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: EtcdConfig,
    /// The shared client and its generation (so a reset only drops the client that failed).
    client: std::sync::Mutex<Option<(u64, Client)>>,
    /// Held while connecting: one connection attempt at a time.
    connecting: Mutex<()>,
    /// The last failed attempt: callers within [`RECONNECT_BACKOFF`] of it fail at once instead
    /// of queueing behind attempts of their own.
    last_failure: std::sync::Mutex<Option<(Instant, KvError)>>,
    generation: AtomicU64,
}

/// How long a failed connection attempt is reused as the answer before trying again.
const RECONNECT_BACKOFF: Duration = Duration::from_secs(1);
/// The first pause before retrying a call that etcd refused for want of a leader; it doubles up
/// to [`RETRY_PAUSE_MAX`]. An election takes about one election timeout (1 s by default), and
/// another member usually answers the very next try.
const RETRY_PAUSE: Duration = Duration::from_millis(25);
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(400);

/// What a failed call says about its effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// No connection to the member could be made: nothing was sent.
    NotSent,
    /// etcd refused it before proposing it to raft: nothing was applied.
    NotProposed,
    /// Sent, with no usable answer (a broken connection, a timeout, etcd unable to serve now):
    /// it may or may not have been applied.
    Unknown,
    /// etcd answered with an error that retrying does not change.
    Answered,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl EtcdStore {
    /// A store for `config`, checked first. Does no I/O: the client connects on first use.
    pub fn new(config: EtcdConfig) -> Result<Self, EtcdConfigError> {
        config.validate()?;
        Ok(EtcdStore {
            inner: Arc::new(Inner {
                config,
                client: std::sync::Mutex::new(None),
                connecting: Mutex::new(()),
                last_failure: std::sync::Mutex::new(None),
                generation: AtomicU64::new(0),
            }),
        })
    }

    /// The configured endpoints.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.config.endpoints
    }

    fn options(&self) -> ConnectOptions {
        let c = &self.inner.config;
        let mut o = ConnectOptions::new()
            .with_connect_timeout(c.connect_timeout)
            .with_timeout(c.request_timeout)
            .with_keep_alive(c.keepalive_interval, c.keepalive_timeout)
            // Pings only while a request is open. etcd counts pings on a connection without
            // streams as abuse (its `--grpc-keepalive-min-time` is 5 s and it does not permit
            // them without streams) and closes the connection after three; an idle connection
            // needs no probe anyway: the next request finds out, and the ping it starts bounds
            // how long a silent member can hold it (see RELIABILITY.md).
            .with_keep_alive_while_idle(false)
            // A member without a leader answers "no leader" at once instead of holding the
            // request until the timeout; `call` then tries another member.
            .with_require_leader(c.require_leader)
            .with_auto_token_refresh(true);
        if let (Some(u), Some(p)) = (&c.username, &c.password) {
            o = o.with_user(u, p);
        }
        if c.ca_pem.is_some() || c.cert_pem.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &c.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let (Some(cert), Some(key)) = (&c.cert_pem, &c.key_pem) {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            o = o.with_tls(tls);
        }
        o
    }

    fn current(&self) -> Option<(u64, Client)> {
        self.inner
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The shared client, connecting it if needed. Connecting does network I/O only with
    /// username/password auth (to get a token); the lock it takes is not the one requests use to
    /// read the current client, so a slow connect never blocks requests that have one.
    async fn client(&self) -> Result<(u64, Client)> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let _one = self.inner.connecting.lock().await;
        if let Some(c) = self.current() {
            return Ok(c);
        }
        if let Some((when, e)) = self
            .inner
            .last_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            && when.elapsed() < RECONNECT_BACKOFF
        {
            return Err(e.clone());
        }
        match Client::connect(&self.inner.config.endpoints, Some(self.options())).await {
            Ok(client) => {
                let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
                *self
                    .inner
                    .client
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some((generation, client.clone()));
                Ok((generation, client))
            }
            Err(e) => {
                let e = self.error(e);
                *self
                    .inner
                    .last_failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// Forgets client `generation` after a transport failure, so the next call builds a fresh one
    /// (after a Lambda freeze the old connections may be dead). A newer client stays.
    fn reset(&self, generation: u64) {
        let mut current = self
            .inner
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            *current = None;
        }
    }

    fn error(&self, e: etcd_client::Error) -> KvError {
        // Clients are told etcd is unavailable and why; which endpoints is for the logs only.
        let unavailable = |what: String| {
            tracing::warn!(endpoints = %self.inner.config.endpoints.join(","), "etcd unavailable: {what}");
            KvError::Unavailable(format!("etcd is unavailable: {what}"))
        };
        match e {
            etcd_client::Error::GRpcStatus(s) => {
                use tonic::Code;
                let msg = s.message().to_string();
                // A status the client made itself from a transport failure (it has a source),
                // whatever its code (h2 reports some broken streams as INTERNAL): the connection
                // failed, etcd did not answer.
                if let Some(cause) = std::error::Error::source(&s) {
                    return unavailable(format!("{msg} ({})", transport_chain(cause)));
                }
                // Not etcd answering: whatever serves the endpoint's port answered HTTP that is
                // not gRPC (another service, a proxy's error page). tonic reports it under the
                // code it maps the HTTP status to (INTERNAL, UNIMPLEMENTED, ...); to our clients
                // the store cannot answer, and the operator needs the HTTP status.
                if let Some(http) = non_grpc_http_status(&msg) {
                    return unavailable(format!(
                        "the endpoint answered HTTP {http}, not etcd's gRPC (is it an etcd client URL?)"
                    ));
                }
                match s.code() {
                    // etcd's rpctypes define these errors by their text (ErrGRPCCompacted,
                    // ErrGRPCFutureRev); etcd's own Go client tells them apart the same way.
                    Code::OutOfRange if msg.contains("compacted") || msg.contains("future") => {
                        KvError::RevisionUnavailable(format!("etcd: {msg}"))
                    }
                    Code::Unavailable
                    | Code::DeadlineExceeded
                    | Code::Cancelled
                    | Code::Aborted
                    | Code::ResourceExhausted
                    | Code::Unknown => unavailable(if msg.is_empty() {
                        format!("{:?}", s.code())
                    } else {
                        msg
                    }),
                    Code::Unauthenticated | Code::PermissionDenied => {
                        unavailable(format!("etcd refused our credentials: {msg}"))
                    }
                    // A gRPC server that does not serve etcd's KV API: every method used here
                    // exists since etcd 3.0, so the endpoint is something else.
                    Code::Unimplemented => unavailable(format!(
                        "the endpoint does not serve etcd's v3 API (is it an etcd client URL?): {msg}"
                    )),
                    // A wrong user or password comes back as INVALID_ARGUMENT.
                    Code::InvalidArgument if msg.contains("authentication failed") => {
                        unavailable(format!("etcd refused our credentials: {msg}"))
                    }
                    _ => KvError::Internal(format!("etcd error {:?}: {msg}", s.code())),
                }
            }
            etcd_client::Error::TransportError(t) => unavailable(transport_chain(&t)),
            etcd_client::Error::IoError(io) => unavailable(io.to_string()),
            other => KvError::Internal(format!("etcd client: {other}")),
        }
    }

    /// The error for a call that ran out of time.
    fn timed_out(&self, limit: Duration) -> KvError {
        tracing::warn!(endpoints = %self.inner.config.endpoints.join(","), "etcd unavailable: no answer within {limit:?}");
        KvError::Unavailable(format!("etcd is unavailable: no answer within {limit:?}"))
    }

    /// Runs `f` on the shared client by the call's deadline, trying again after a failure
    /// without effect (and, when `idempotent`, after any failure that may be temporary). See the
    /// module docs.
    async fn call<T, F, Fut>(&self, idempotent: bool, f: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let started = tokio::time::Instant::now();
        let own = started + self.inner.config.request_timeout;
        let deadline = crate::deadline::current().map_or(own, |d| own.min(d.into()));
        let limit = deadline.saturating_duration_since(started);
        let mut pause = RETRY_PAUSE;
        loop {
            let attempt = tokio::time::timeout_at(deadline, async {
                let (generation, client) = self.client().await?;
                Ok(f(client).await.map_err(|e| (generation, e)))
            })
            .await;
            let (generation, e) = match attempt {
                Err(_) => return Err(self.timed_out(limit)),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(Ok(v))) => return Ok(v),
                Ok(Ok(Err(failed))) => failed,
            };
            let failure = failure(&e);
            // A broken connection (not etcd saying it cannot serve: "etcdserver: no leader"
            // arrives over a working connection): the next call builds a fresh client. A member
            // that could not be reached is left to the client, which reconnects by itself.
            if broken_connection(&e) && failure != Failure::NotSent {
                self.reset(generation);
            }
            let retry = match failure {
                Failure::NotSent | Failure::NotProposed => true,
                Failure::Unknown => idempotent,
                Failure::Answered => false,
            };
            // Never sent: another member at once (the balancer skips the one reconnecting).
            // Otherwise back off a little: an election may be under way.
            let wait = if failure == Failure::NotSent {
                Duration::ZERO
            } else {
                let w = pause;
                pause = (pause * 2).min(RETRY_PAUSE_MAX);
                w
            };
            if !retry || tokio::time::Instant::now() + wait >= deadline {
                return Err(self.error(e));
            }
            tracing::debug!(?failure, error = %e, "etcd call failed; trying again");
            tokio::time::sleep(wait).await;
        }
    }
}

/// Whether `e` broke the connection it was sent on (as opposed to etcd answering an error).
fn broken_connection(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => {
            matches!(s.code(), tonic::Code::Unknown | tonic::Code::Unavailable)
                && !s.message().starts_with("etcdserver:")
        }
        _ => false,
    }
}

/// Whether `T` is among the sources of `e` (typed, never by text).
fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.is::<T>() {
            return true;
        }
        cur = c.source();
    }
    false
}

/// What a failed call says about its effect (see [`Failure`]).
fn failure(e: &etcd_client::Error) -> Failure {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            use tonic::Code;
            if caused_by::<tonic::ConnectError>(s) {
                return Failure::NotSent;
            }
            // etcd's rpctypes.ErrGRPCNoLeader, defined by its text. With `require_leader` the
            // member's interceptor answers it before the request reaches raft; a proposal that
            // loses its leader later ends as "leader changed" or a timeout (unknown) instead.
            if s.code() == Code::Unavailable && s.message() == "etcdserver: no leader" {
                return Failure::NotProposed;
            }
            // A status the client made itself from a transport error (it has a source: hyper,
            // h2, a timeout), whatever its code: the request may have been sent.
            if std::error::Error::source(s).is_some() {
                return Failure::Unknown;
            }
            match s.code() {
                Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Cancelled
                | Code::Aborted
                | Code::ResourceExhausted
                | Code::Unknown => Failure::Unknown,
                _ => Failure::Answered,
            }
        }
        etcd_client::Error::TransportError(t) if caused_by::<tonic::ConnectError>(t) => {
            Failure::NotSent
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => Failure::Unknown,
        _ => Failure::Answered,
    }
}

/// The HTTP status of an answer that was not gRPC, from the status tonic made of it: tonic
/// (0.14) says "... while receiving response with status: 404 Not Found" when the body did not
/// decode as gRPC, and "grpc-status header missing, mapped from HTTP status code 404" when there
/// was no body. The store conformance suite's `etcd_endpoints` tests pin both on the tonic in use.
fn non_grpc_http_status(msg: &str) -> Option<&str> {
    [
        "while receiving response with status: ",
        "grpc-status header missing, mapped from HTTP status code ",
    ]
    .iter()
    .find_map(|said| msg.find(said).map(|at| &msg[at + said.len()..]))
}

/// A transport error with its causes ("transport error: connection refused").
fn transport_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `key` inside namespace `ns`.
fn ns_key(ns: &[u8], key: &[u8]) -> Vec<u8> {
    [ns, key].concat()
}

/// `range_end` inside namespace `ns`: etcd's "to the end" (`\0`) becomes the namespace's end.
fn ns_end(ns: &[u8], end: &[u8]) -> Vec<u8> {
    if end == [0] && !ns.is_empty() {
        prefix_end(ns)
    } else {
        ns_key(ns, end)
    }
}

fn get_options(ns: &[u8], r: &RangeRequest) -> GetOptions {
    let mut o = GetOptions::new();
    if let Some(end) = &r.range_end {
        o = o.with_range(ns_end(ns, end));
    }
    if r.revision > 0 {
        o = o.with_revision(r.revision);
    }
    if r.limit > 0 {
        o = o.with_limit(r.limit);
    }
    if r.keys_only {
        o = o.with_keys_only();
    }
    o
}

fn range_response(ns: &[u8], mut resp: etcd_client::GetResponse) -> RangeResponse {
    let revision = resp
        .header()
        .map_or(0, etcd_client::ResponseHeader::revision);
    let more = resp.more();
    let kvs = resp
        .take_kvs()
        .into_iter()
        .map(|kv| {
            let (create_revision, mod_revision, version) =
                (kv.create_revision(), kv.mod_revision(), kv.version());
            let (mut key, value) = kv.into_key_value();
            key.drain(..ns.len().min(key.len()));
            KeyValue {
                key,
                value,
                create_revision,
                mod_revision,
                version,
            }
        })
        .collect();
    RangeResponse {
        kvs,
        more,
        revision,
    }
}

fn compare(ns: &[u8], c: Compare) -> EtcdCompare {
    let key = ns_key(ns, &c.key);
    let op = match c.op {
        CompareOp::Equal => EtcdCompareOp::Equal,
        CompareOp::NotEqual => EtcdCompareOp::NotEqual,
        CompareOp::Greater => EtcdCompareOp::Greater,
        CompareOp::Less => EtcdCompareOp::Less,
    };
    match c.target {
        CompareTarget::Value(v) => EtcdCompare::value(key, op, v),
        CompareTarget::Version(v) => EtcdCompare::version(key, op, v),
        CompareTarget::CreateRevision(r) => EtcdCompare::create_revision(key, op, r),
        CompareTarget::ModRevision(r) => EtcdCompare::mod_revision(key, op, r),
    }
}

fn txn_op(ns: &[u8], op: TxnOp) -> EtcdTxnOp {
    match op {
        TxnOp::Range(r) => EtcdTxnOp::get(ns_key(ns, &r.key), Some(get_options(ns, &r))),
        TxnOp::Put { key, value } => EtcdTxnOp::put(ns_key(ns, &key), value, None),
        TxnOp::Delete { key, range_end } => {
            let o = range_end.map(|end| DeleteOptions::new().with_range(ns_end(ns, &end)));
            EtcdTxnOp::delete(ns_key(ns, &key), o)
        }
    }
}

impl Kv for EtcdStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        let ns = self.inner.config.namespace.as_slice();
        let opts = get_options(ns, &req);
        let key = ns_key(ns, &req.key);
        let resp = self
            .call(true, |mut c| {
                let (key, opts) = (key.clone(), opts.clone());
                async move { c.get(key, Some(opts)).await }
            })
            .await?;
        Ok(range_response(ns, resp))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let ns = self.inner.config.namespace.as_slice();
        // Only reads: idempotent by construction, so retried after any temporary failure.
        let read_only = txn
            .success
            .iter()
            .chain(&txn.failure)
            .all(|op| matches!(op, TxnOp::Range(_)));
        let ops = |ops: Vec<TxnOp>| ops.into_iter().map(|o| txn_op(ns, o)).collect::<Vec<_>>();
        let t = EtcdTxn::new()
            .when(
                txn.compare
                    .into_iter()
                    .map(|c| compare(ns, c))
                    .collect::<Vec<_>>(),
            )
            .and_then(ops(txn.success))
            .or_else(ops(txn.failure));
        let resp = self
            .call(read_only, |mut c| {
                let t = t.clone();
                async move { c.txn(t).await }
            })
            .await?;
        let revision = resp
            .header()
            .map_or(0, etcd_client::ResponseHeader::revision);
        let responses = resp
            .op_responses()
            .into_iter()
            .map(|r| match r {
                EtcdTxnOpResponse::Get(g) => Ok(TxnOpResponse::Range(range_response(ns, g))),
                EtcdTxnOpResponse::Put(_) => Ok(TxnOpResponse::Put),
                EtcdTxnOpResponse::Delete(d) => Ok(TxnOpResponse::Delete {
                    deleted: d.deleted(),
                }),
                // This store never sends nested transactions.
                EtcdTxnOpResponse::Txn(_) => Err(KvError::Internal(
                    "etcd answered a nested transaction".into(),
                )),
            })
            .collect::<Result<_>>()?;
        Ok(TxnResponse {
            succeeded: resp.succeeded(),
            revision,
            responses,
        })
    }
}
