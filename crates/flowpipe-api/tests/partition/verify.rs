//! What every scenario checks on its recorded history and on what is stored after it, and the
//! numbers it reports.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use flowpipe_testkit::history::{self, FlowOp, FlowRet, Recorded};

use crate::workload::{Kind, Op, Outcome, Stored, Transport};

/// A request slower than this counts as stalled in the failover measures.
pub const STALLED: Duration = Duration::from_secs(1);

/// The recorded run of one scenario.
pub struct Run {
    pub name: &'static str,
    pub ops: Vec<Op>,
    /// When the fault began and ended (since the history's origin).
    pub cut: Duration,
    pub heal: Duration,
    /// Every version of every flow written to, after the run (`None`: the flow does not exist).
    pub stored: BTreeMap<String, Option<BTreeMap<u64, Stored>>>,
    /// Leader before, and during the fault if another one was elected.
    pub leader: usize,
    pub new_leader: Option<(usize, Duration)>,
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn ms(d: Duration) -> String {
    format!("{:.0}ms", d.as_secs_f64() * 1e3)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

impl Run {
    /// Requests that started in `[from, to)`.
    pub fn started(&self, from: Duration, to: Duration) -> impl Iterator<Item = &Op> {
        self.ops
            .iter()
            .filter(move |o| o.start >= from && o.start < to)
    }

    /// From the cut until the last request that failed during the fault ended: from then to the
    /// heal, every request succeeded. Zero when none failed. Failures only: how slow requests
    /// are depends on how busy the machine is (see [`Run::last_stall`]).
    pub fn disruption(&self) -> Duration {
        self.ops
            .iter()
            .filter(|o| o.end >= self.cut && o.end < self.heal && !o.ok())
            .map(|o| o.end - self.cut)
            .max()
            .unwrap_or_default()
    }

    /// From the cut until the last request slower than [`STALLED`] that ended during the fault
    /// ended (reported, not asserted: on a loaded two-core machine requests stall without any
    /// fault).
    pub fn last_stall(&self) -> Option<Duration> {
        self.ops
            .iter()
            .filter(|o| o.end >= self.cut && o.end < self.heal && o.latency() > STALLED)
            .map(|o| o.end - self.cut)
            .max()
    }

    /// From the heal until the last request that started after it and failed ended (zero: every
    /// request after the heal succeeded).
    pub fn recovery(&self) -> Duration {
        self.ops
            .iter()
            .filter(|o| o.start >= self.heal && !o.ok())
            .map(|o| o.end - self.heal)
            .max()
            .unwrap_or_default()
    }

    /// The first successful write that started after `from`, as time since `from` to its end.
    pub fn first_write_after(&self, from: Duration) -> Option<Duration> {
        self.ops
            .iter()
            .filter(|o| o.kind.is_write() && o.ok() && o.start >= from)
            .map(|o| o.end - from)
            .min()
    }

    pub fn worst(&self) -> Duration {
        self.ops.iter().map(Op::latency).max().unwrap_or_default()
    }

    /// Error counts by phase ("before", "fault", "after": by when the request started), code and
    /// transport.
    pub fn errors(&self) -> BTreeMap<(&'static str, String, Transport), usize> {
        let mut m = BTreeMap::new();
        for o in &self.ops {
            if let Some(code) = o.code() {
                let phase = self.phase(o.start);
                *m.entry((phase, code.to_string(), o.transport)).or_default() += 1;
            }
        }
        m
    }

    fn phase(&self, t: Duration) -> &'static str {
        if t < self.cut {
            "before"
        } else if t < self.heal {
            "fault"
        } else {
            "after"
        }
    }

    /// The report: what RELIABILITY.md quotes.
    pub fn report(&self) -> String {
        let mut s = String::new();
        let writes = self.ops.iter().filter(|o| o.kind.is_write()).count();
        let _ = writeln!(
            s,
            "== {}: {} requests ({} writes, {} reads), fault at {} held {}, observed {} after",
            self.name,
            self.ops.len(),
            writes,
            self.ops.len() - writes,
            secs(self.cut),
            secs(self.heal - self.cut),
            secs(self.ops.iter().map(|o| o.end).max().unwrap_or_default() - self.heal),
        );
        let _ = writeln!(
            s,
            "   leader m{}{}",
            self.leader,
            self.new_leader
                .map(|(l, t)| format!(", new leader m{l} agreed {} after the cut", secs(t)))
                .unwrap_or_default()
        );
        let first = |from| {
            self.first_write_after(from)
                .map_or_else(|| "-".to_string(), secs)
        };
        let _ = writeln!(
            s,
            "   failover: last failed request during the fault ended {} after the cut (last stalled >1s: {}); first write started after the cut acknowledged {} after it",
            secs(self.disruption()),
            self.last_stall().map_or_else(|| "none".to_string(), secs),
            first(self.cut),
        );
        let _ = writeln!(
            s,
            "   recovery: last failed request started after the heal ended {} after it; first write after the heal acknowledged {} after it",
            secs(self.recovery()),
            first(self.heal),
        );
        for (phase, from, to) in [
            ("before", Duration::ZERO, self.cut),
            ("fault", self.cut, self.heal),
            ("after", self.heal, Duration::MAX),
        ] {
            for (kind, what) in [(true, "writes"), (false, "reads")] {
                let ops: Vec<&Op> = self
                    .started(from, to)
                    .filter(|o| o.kind.is_write() == kind)
                    .collect();
                let mut ok: Vec<Duration> =
                    ops.iter().filter(|o| o.ok()).map(|o| o.latency()).collect();
                ok.sort();
                let worst = ops.iter().map(|o| o.latency()).max().unwrap_or_default();
                let _ = writeln!(
                    s,
                    "   {phase:>6} {what:>6}: {:>5} ok / {:>4} failed; ok latency p50 {} p99 {} max {}; worst (any outcome) {}",
                    ok.len(),
                    ops.len() - ok.len(),
                    ms(percentile(&ok, 0.5)),
                    ms(percentile(&ok, 0.99)),
                    ms(ok.last().copied().unwrap_or_default()),
                    ms(worst),
                );
            }
        }
        let errors = self.errors();
        if errors.is_empty() {
            let _ = writeln!(s, "   errors: none");
        }
        for ((phase, code, transport), n) in errors {
            let _ = writeln!(s, "   errors {phase:>6}: {n:>4} x {code} ({transport:?})");
        }
        let _ = writeln!(s, "   worst latency of any request: {}", ms(self.worst()));
        s
    }
}

/// The checks that hold in every scenario; panics with what broke.
///
/// - No request outlives its deadline: each answer came within `limit` (the etcd request
///   timeout, plus slack for the portal and a loaded machine; the API ends every request's
///   store work by the timeout, see `flowpipe_api::deadline`).
/// - Every failure is UNAVAILABLE (503 over REST): never a 500, a 504 or no answer.
/// - Every acknowledged write is stored, as the version it was acknowledged as, with its exact
///   spec (label and threads); versions of a flow are 1..=latest without gaps; each write's spec
///   is stored at most once (exactly once if acknowledged; at most once if it failed, as
///   UNAVAILABLE means "may have been applied"); nothing is stored that no one wrote.
/// - Reads return the spec stored for the version they return.
/// - The history is linearizable per flow: appends (acknowledged with their version, or with
///   unknown outcome when they failed) and reads. This is what makes "acknowledgement order" and
///   "a read that started after a write was acknowledged never returns an older version"
///   precise. The whole history goes to `history::fast_check`; stateright's tester checks a
///   window of the busiest flows around the fault (it cannot finish whole histories of 16
///   concurrent clients; `fast_check` agrees with it, see flowpipe-testkit's tests).
pub fn check_all(run: &Run, limit: Duration) {
    // Deadlines and error codes.
    for o in &run.ops {
        assert!(
            o.latency() <= limit,
            "{}: a request took {:?} (> {limit:?}): {o:?}",
            run.name,
            o.latency()
        );
        match &o.outcome {
            Outcome::Ok { .. } => {}
            Outcome::Failed { code, http, .. } => assert!(
                code == "UNAVAILABLE" && http.is_none_or(|h| h == 503),
                "{}: only UNAVAILABLE (503) may fail a request: {o:?}",
                run.name
            ),
            Outcome::NoAnswer(_) => panic!("{}: no answer: {o:?}", run.name),
        }
    }

    // What is stored.
    let mut writes: BTreeMap<&str, &Op> = BTreeMap::new();
    for o in run.ops.iter().filter(|o| o.kind.is_write()) {
        assert!(
            writes.insert(o.label.as_str(), o).is_none(),
            "label {} used twice",
            o.label
        );
    }
    let mut stored_labels: BTreeSet<&str> = BTreeSet::new();
    for (flow, versions) in &run.stored {
        let Some(versions) = versions else { continue };
        let latest = versions.keys().next_back().copied().unwrap_or(0);
        assert_eq!(
            versions.keys().copied().collect::<Vec<_>>(),
            (1..=latest).collect::<Vec<_>>(),
            "{}: versions of {flow} are not contiguous",
            run.name
        );
        for (v, st) in versions {
            assert!(
                stored_labels.insert(st.label.as_str()),
                "{}: the spec labelled {} is stored twice (a write applied twice); {flow} v{v}",
                run.name,
                st.label
            );
            let w = writes.get(st.label.as_str()).unwrap_or_else(|| {
                panic!(
                    "{}: {flow} v{v} holds {st:?}, which no request wrote",
                    run.name
                )
            });
            assert_eq!(
                w.flow, *flow,
                "{}: {st:?} stored under another flow",
                run.name
            );
            assert_eq!(
                w.threads, st.threads,
                "{}: {flow} v{v} has another spec than its write sent",
                run.name
            );
            // A write that failed (UNAVAILABLE) may have been applied; it was, as v. One that
            // was acknowledged must be stored as the version it was acknowledged as.
            if let Outcome::Ok { version, .. } = &w.outcome {
                assert_eq!(
                    version, v,
                    "{}: {} was acknowledged as {flow} v{version} but is stored as v{v}",
                    run.name, w.label
                );
            }
        }
    }
    for w in writes.values() {
        if let Outcome::Ok {
            version,
            label,
            threads,
        } = &w.outcome
        {
            assert_eq!(
                (label.as_str(), *threads),
                (w.label.as_str(), w.threads),
                "{}: the answer to {} carries another spec",
                run.name,
                w.label
            );
            let st = run
                .stored
                .get(&w.flow)
                .and_then(|v| v.as_ref())
                .and_then(|v| v.get(version));
            assert_eq!(
                st.map(|s| s.label.as_str()),
                Some(w.label.as_str()),
                "{}: acknowledged {} v{version} ({}) is not stored as acknowledged (lost)",
                run.name,
                w.flow,
                w.label
            );
        }
    }
    for o in run.ops.iter().filter(|o| o.kind == Kind::Read) {
        if let Outcome::Ok {
            version,
            label,
            threads,
        } = &o.outcome
        {
            let st = run
                .stored
                .get(&o.flow)
                .and_then(|v| v.as_ref())
                .and_then(|v| v.get(version));
            assert_eq!(
                st,
                Some(&Stored {
                    label: label.clone(),
                    threads: *threads
                }),
                "{}: a read of {} returned v{version} with another spec than is stored",
                run.name,
                o.flow
            );
        }
    }

    // Linearizability, per flow.
    let recorded = to_history(&run.ops);
    let t = std::time::Instant::now();
    for (flow, n, r) in history::fast_check_all(&recorded) {
        assert!(
            r.is_ok(),
            "{}: the history of {flow} ({n} requests) is not linearizable: {}",
            run.name,
            r.unwrap_err()
        );
    }
    let fast = t.elapsed();
    let sampled = stateright_windows(run, &recorded);
    eprintln!(
        "{}: fast_check of {} requests: {fast:?}; stateright on windows around the fault: {sampled}",
        run.name,
        recorded.len()
    );
}

/// The recorded requests in the checkers' model: each flow a register of its latest version;
/// writes are appends (returning their version, or of unknown outcome when they failed); reads
/// return the active version. Failed reads have no effect and are left out.
pub fn to_history(ops: &[Op]) -> Vec<Recorded> {
    ops.iter()
        .filter(|o| o.kind.is_write() || o.ok())
        .map(|o| {
            let ret = match (&o.outcome, o.kind) {
                (Outcome::Ok { version, .. }, Kind::Read) => Some(FlowRet::ReadOk(*version)),
                (Outcome::Ok { version, .. }, _) => Some(FlowRet::Appended(*version)),
                _ => None,
            };
            Recorded {
                client: o.client,
                flow: o.flow.clone(),
                op: if o.kind.is_write() {
                    FlowOp::Append
                } else {
                    FlowOp::Read
                },
                invoked: o.start,
                returned: ret.map(|r| (o.end, r)),
            }
        })
        .collect()
}

/// Operations per stateright window: small enough for its search with 20 concurrent clients
/// (it is exponential in the worst case), large enough to span the fault's first seconds.
const WINDOW: usize = 60;

/// stateright's tester on a window of each of the two busiest flows, starting at the first
/// version written after the cut (see `history::window` for why a window is sound). Returns a
/// summary.
fn stateright_windows(run: &Run, recorded: &[Recorded]) -> String {
    let mut by_flow: BTreeMap<&str, Vec<&Recorded>> = BTreeMap::new();
    for r in recorded {
        by_flow.entry(r.flow.as_str()).or_default().push(r);
    }
    let mut busiest: Vec<(&str, Vec<&Recorded>)> = by_flow.into_iter().collect();
    busiest.sort_by_key(|(f, ops)| (std::cmp::Reverse(ops.len()), *f));
    let mut out = vec![];
    for (flow, ops) in busiest.into_iter().take(2) {
        // The first version whose write started at or after one second before the cut.
        let from = ops
            .iter()
            .filter(|o| o.invoked + Duration::from_secs(1) >= run.cut)
            .filter_map(|o| match &o.returned {
                Some((_, FlowRet::Appended(v))) => Some(*v),
                _ => None,
            })
            .min()
            .unwrap_or(1);
        let Some((initial, window)) = history::window(&ops, from, WINDOW) else {
            continue;
        };
        let r = history::check_from(&window, initial).expect("stateright");
        assert!(
            r.linearization.is_some(),
            "{}: stateright finds the window of {flow} from v{from} ({} requests) not linearizable",
            run.name,
            r.ops
        );
        out.push(format!(
            "{flow} v{from}..: {} requests linearizable ({:?} CPU)",
            r.ops, r.check_time
        ));
    }
    out.join("; ")
}
