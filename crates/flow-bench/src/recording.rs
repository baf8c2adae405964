//! [`RecordingKv`]: a [`Kv`] that records every request the core sends through it, so the report
//! shows what an operation costs at etcd (how many round trips, and what each one is) from the
//! requests themselves rather than from a hand count, and so two runs of an operation (the
//! core-direct baseline and the API server) can be compared request for request.
//!
//! Recording is off until [`Recorder::start`]; while it is off a call costs one atomic load, so
//! the core-direct rows of the throughput table run through the same wrapper unrecorded.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use flowpipe_core::keys::FLOWS_PREFIX;
use flowpipe_core::kv::{
    Compare, CompareOp, CompareTarget, Kv, KvError, RangeRequest, RangeResponse, Txn, TxnOp,
    TxnOpResponse, TxnResponse,
};

/// What a [`RecordingKv`] saw while recording, shared by its clones.
#[derive(Debug, Default)]
pub struct Recorder {
    on: AtomicBool,
    calls: Mutex<Vec<Call>>,
}

impl Recorder {
    /// Starts recording (forgetting whatever was recorded before).
    pub fn start(&self) {
        self.lock().clear();
        self.on.store(true, Ordering::SeqCst);
    }

    /// Stops recording and hands over the calls recorded since [`Recorder::start`], in the order
    /// they completed.
    pub fn take(&self) -> Vec<Call> {
        self.on.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.lock())
    }

    /// Calls recorded so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn recording(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Call>> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One request (one etcd round trip) and what came back.
#[derive(Debug, Clone)]
pub struct Call {
    pub request: Request,
    /// Keys returned: by the range, or by every range of the transaction's branch that ran.
    pub returned: usize,
    /// For a transaction: whether its compares held. `None` for a range or a failed request.
    pub succeeded: Option<bool>,
    /// The store's error, if the request failed.
    pub error: Option<String>,
}

/// A request as the core built it.
#[derive(Debug, Clone)]
pub enum Request {
    Range(RangeRequest),
    Txn(Txn),
}

/// A [`Kv`] that records the requests passed to `K` while its [`Recorder`] is on.
#[derive(Debug, Clone)]
pub struct RecordingKv<K> {
    inner: K,
    recorder: Arc<Recorder>,
}

impl<K: Kv> RecordingKv<K> {
    pub fn new(inner: K) -> Self {
        RecordingKv {
            inner,
            recorder: Arc::default(),
        }
    }

    /// The recorder, shared by every clone.
    pub fn recorder(&self) -> Arc<Recorder> {
        Arc::clone(&self.recorder)
    }
}

impl<K: Kv> Kv for RecordingKv<K> {
    fn range(
        &self,
        req: RangeRequest,
    ) -> impl Future<Output = Result<RangeResponse, KvError>> + Send {
        let copy = self.recorder.recording().then(|| req.clone());
        async move {
            let resp = self.inner.range(req).await;
            if let Some(req) = copy {
                self.recorder.lock().push(Call {
                    request: Request::Range(req),
                    returned: resp.as_ref().map_or(0, |r| r.kvs.len()),
                    succeeded: None,
                    error: resp.as_ref().err().map(ToString::to_string),
                });
            }
            resp
        }
    }

    fn txn(&self, txn: Txn) -> impl Future<Output = Result<TxnResponse, KvError>> + Send {
        let copy = self.recorder.recording().then(|| txn.clone());
        async move {
            let resp = self.inner.txn(txn).await;
            if let Some(txn) = copy {
                let returned = resp.as_ref().map_or(0, |r| {
                    r.responses
                        .iter()
                        .map(|op| match op {
                            TxnOpResponse::Range(r) => r.kvs.len(),
                            _ => 0,
                        })
                        .sum()
                });
                self.recorder.lock().push(Call {
                    request: Request::Txn(txn),
                    returned,
                    succeeded: resp.as_ref().ok().map(|r| r.succeeded),
                    error: resp.as_ref().err().map(ToString::to_string),
                });
            }
            resp
        }
    }
}

/// Operations of a transaction branch shown in full; longer branches show this many and a count.
const SHOWN_OPS: usize = 3;

/// A key for the report: without the flows prefix (every flow key has it), `\0` spelled out.
fn key(k: &[u8]) -> String {
    let k = match k.strip_prefix(FLOWS_PREFIX.as_bytes()) {
        Some(rest) if !rest.is_empty() => rest,
        _ => k,
    };
    String::from_utf8_lossy(k).replace('\0', "\\0")
}

fn range(r: &RangeRequest) -> String {
    let mut s = match &r.range_end {
        Some(end) => format!("range [`{}`, `{}`)", key(&r.key), key(end)),
        None => format!("get `{}`", key(&r.key)),
    };
    if r.keys_only {
        s.push_str(" keys-only");
    }
    if r.limit > 0 {
        let _ = write!(s, " limit {}", r.limit);
    }
    // The revision itself differs from run to run; whether the read is pinned to one does not.
    if r.revision > 0 {
        s.push_str(" at a revision");
    }
    s
}

fn compare(c: &Compare) -> String {
    let op = match c.op {
        CompareOp::Equal => "=",
        CompareOp::NotEqual => "≠",
        CompareOp::Greater => ">",
        CompareOp::Less => "<",
    };
    // Values and revisions depend on the state the operation was decided from: left out, so a
    // description is the request's shape and two runs of one operation describe alike.
    let (what, target) = match &c.target {
        CompareTarget::CreateRevision(0) => return format!("absent `{}`", key(&c.key)),
        CompareTarget::Value(_) => ("value", "…"),
        CompareTarget::Version(_) => ("version", "…"),
        CompareTarget::CreateRevision(_) => ("create_rev", "…"),
        CompareTarget::ModRevision(0) => ("mod_rev", "0"),
        CompareTarget::ModRevision(_) => ("mod_rev", "read"),
    };
    format!("{what}(`{}`) {op} {target}", key(&c.key))
}

fn op(o: &TxnOp) -> String {
    match o {
        TxnOp::Range(r) => range(r),
        TxnOp::Put { key: k, .. } => format!("put `{}`", key(k)),
        TxnOp::Delete {
            key: k,
            range_end: None,
        } => format!("delete `{}`", key(k)),
        TxnOp::Delete {
            key: k,
            range_end: Some(end),
        } => format!("delete [`{}`, `{}`)", key(k), key(end)),
    }
}

fn list<T>(items: &[T], show: impl Fn(&T) -> String) -> String {
    let mut parts: Vec<String> = items.iter().take(SHOWN_OPS).map(show).collect();
    if items.len() > SHOWN_OPS {
        parts.push(format!("… {} more", items.len() - SHOWN_OPS));
    }
    parts.join(", ")
}

impl Call {
    /// What was sent, without the values and revisions that depend on the state: `range …` or
    /// `txn if … then … else …`. Two runs of one operation on equal data have equal shapes.
    pub fn shape(&self) -> String {
        match &self.request {
            Request::Range(r) => range(r),
            Request::Txn(t) => {
                let mut s = String::from("txn");
                if !t.compare.is_empty() {
                    let _ = write!(
                        s,
                        " if {} compare(s) [{}]",
                        t.compare.len(),
                        list(&t.compare, compare)
                    );
                }
                let _ = write!(
                    s,
                    " then {} op(s) [{}]",
                    t.success.len(),
                    list(&t.success, op)
                );
                if !t.failure.is_empty() {
                    let _ = write!(
                        s,
                        " else {} op(s) [{}]",
                        t.failure.len(),
                        list(&t.failure, op)
                    );
                }
                s
            }
        }
    }

    /// A complete signature for comparing two runs: the shape with every compare and operation
    /// (not only the first few), still without state-dependent values.
    pub fn signature(&self) -> String {
        match &self.request {
            Request::Range(r) => range(r),
            Request::Txn(t) => {
                let all = |ops: &[TxnOp]| ops.iter().map(op).collect::<Vec<_>>().join(", ");
                format!(
                    "txn if [{}] then [{}] else [{}]",
                    t.compare.iter().map(compare).collect::<Vec<_>>().join(", "),
                    all(&t.success),
                    all(&t.failure)
                )
            }
        }
    }

    /// What came back.
    pub fn outcome(&self) -> String {
        if let Some(e) = &self.error {
            return format!("error: {e}");
        }
        match self.succeeded {
            Some(true) => format!("then ran, {} key(s) read", self.returned),
            Some(false) => format!("else ran, {} key(s) read", self.returned),
            None => format!("{} key(s)", self.returned),
        }
    }
}

/// Whether two recordings of one operation sent the same requests (in any order: concurrent
/// reads complete in any order).
pub fn same_requests(a: &[Call], b: &[Call]) -> bool {
    let sorted = |calls: &[Call]| {
        let mut v: Vec<String> = calls.iter().map(Call::signature).collect();
        v.sort();
        v
    };
    sorted(a) == sorted(b)
}
