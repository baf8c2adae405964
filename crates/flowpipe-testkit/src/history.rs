//! Checking recorded per-flow histories for linearizability: stateright's
//! `LinearizabilityTester` ([`check`]), a maintained, general checker, and [`fast_check`], a
//! direct checker of the same model for histories too long for it.
//!
//! Why two: stateright searches for a linearization, which is exponential in the worst case. On
//! the partition tests' histories (16 writers, thousands of requests) it does not finish: 1,000
//! ops of 8 clients take 1.5 s, 5,000 ops of 4 clients 5.6 s, and a non-linearizable history of
//! 4 clients × 100 ops (exactly what a checker is for) over 30 s. [`fast_check`] exploits what
//! this model has that a general one does not (every known append names the version it created,
//! so the order of appends is known) and is O(n log n): 16,000 ops in milliseconds. The partition
//! tests therefore run [`fast_check`] on the whole recorded history and stateright on a bounded
//! window of it ([`window`]), and `tests/linearizability.rs` checks that both agree on thousands
//! of random small histories, linearizable or not.
//!
//! Model: each flow is a register holding its latest version (0: none yet). `Append` creates
//! the next version and returns the number assigned; `Read` returns the active (latest) version.
//! Linearizability is local (a history is linearizable iff each object's sub-history is), so
//! every flow is checked on its own: the cost is per flow, not per whole run.
//!
//! Recording: each op has an invoke time and, when its outcome is known, a return time and
//! value. An op whose outcome is unknown (timeout, connection lost: etcd may still apply it)
//! stays "in flight" for ever: the tester may linearize it anywhere after its invocation, or
//! not at all. stateright allows one in-flight op per thread, so the client that issued it
//! continues under a fresh thread id. Failed reads are dropped (a read has no effect).

use std::collections::BTreeMap;
use std::time::Duration;

use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

/// The sequential spec of one flow: its latest version.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct FlowVersions(pub u64);

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum FlowOp {
    /// Create a new version; the store assigns `latest + 1`.
    Append,
    /// Read the active version.
    Read,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum FlowRet {
    Appended(u64),
    ReadOk(u64),
}

impl SequentialSpec for FlowVersions {
    type Op = FlowOp;
    type Ret = FlowRet;

    fn invoke(&mut self, op: &FlowOp) -> FlowRet {
        match op {
            FlowOp::Append => {
                self.0 += 1;
                FlowRet::Appended(self.0)
            }
            FlowOp::Read => FlowRet::ReadOk(self.0),
        }
    }

    fn is_valid_step(&mut self, op: &FlowOp, ret: &FlowRet) -> bool {
        match (op, ret) {
            (FlowOp::Append, FlowRet::Appended(v)) if *v == self.0 + 1 => {
                self.0 = *v;
                true
            }
            (FlowOp::Read, FlowRet::ReadOk(v)) => *v == self.0,
            _ => false,
        }
    }
}

/// One recorded operation.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The client (task) that issued it; a client runs one op at a time.
    pub client: u32,
    pub flow: String,
    pub op: FlowOp,
    /// Since any fixed origin shared by the whole history.
    pub invoked: Duration,
    /// `None`: outcome unknown (error after the request may have reached the store).
    pub returned: Option<(Duration, FlowRet)>,
}

/// The outcome for one flow.
#[derive(Debug)]
pub struct FlowResult {
    pub flow: String,
    pub ops: usize,
    /// A witness order when linearizable.
    pub linearization: Option<Vec<(FlowOp, FlowRet)>>,
    /// CPU time of the search (`serialized_history`).
    pub check_time: Duration,
}

/// Replays one flow's ops into a tester, in real-time order of their events.
pub fn tester_for(
    ops: &[&Recorded],
    initial: u64,
) -> Result<LinearizabilityTester<u32, FlowVersions>, String> {
    // Events: (time, kind, op index), kind 0 = return, 1 = invoke: at equal timestamps a return
    // sorts first (a client's next op may start the instant its previous one returned).
    let mut events: Vec<(Duration, u8, usize)> = vec![];
    for (i, o) in ops.iter().enumerate() {
        events.push((o.invoked, 1, i));
        if let Some((t, _)) = &o.returned {
            if *t < o.invoked {
                return Err(format!("op returns before it is invoked: {o:?}"));
            }
            events.push((*t, 0, i));
        }
    }
    events.sort_by_key(|&(t, kind, i)| (t, kind, i));
    // Thread ids: the client's, bumped past every unknown-outcome op it left in flight.
    let mut incarnation: BTreeMap<u32, u32> = BTreeMap::new();
    let mut thread_of = vec![0u32; ops.len()];
    let mut next_spare = 1u32 << 20;
    let mut t = LinearizabilityTester::new(FlowVersions(initial));
    for (_, kind, i) in events {
        let o = ops[i];
        if kind == 1 {
            let inc = incarnation.entry(o.client).or_insert(o.client);
            thread_of[i] = *inc;
            if o.returned.is_none() {
                // Stays in flight: the client goes on under a new id.
                *inc = next_spare;
                next_spare += 1;
            }
            t.on_invoke(thread_of[i], o.op.clone())?;
        } else {
            let (_, ret) = o.returned.clone().unwrap();
            t.on_return(thread_of[i], ret)?;
        }
    }
    Ok(t)
}

/// Checks every flow of `history` on its own.
pub fn check(history: &[Recorded]) -> Result<Vec<FlowResult>, String> {
    let mut by_flow: BTreeMap<&str, Vec<&Recorded>> = BTreeMap::new();
    for r in history {
        // A failed read has no effect and no return: leave it out.
        if r.op == FlowOp::Read && r.returned.is_none() {
            continue;
        }
        by_flow.entry(r.flow.as_str()).or_default().push(r);
    }
    by_flow
        .into_values()
        .map(|ops| check_from(&ops, 0))
        .collect()
}

/// CPU time of the calling thread.
pub fn thread_cpu_time() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// A bounded window of one flow's history for [`check_from`], sound for it: if the whole
/// history is linearizable, so is the window. The window covers a run of versions `first..=to`
/// (`first >= from`) that all have a known append (the request that made each was
/// acknowledged): it holds those appends and the reads that returned `first - 1..=to`; `to` is
/// the largest version of the run for which that makes at most `max_ops` ops. Of the runs that
/// start at `from` or right after a version without a known append, the first that fills half of
/// `max_ops` is taken, else the largest of the first 64. Returns the register's version before
/// the window (`first - 1`, where [`check_from`] starts) and the ops; `None` when no version
/// `>= from` has a known append.
///
/// Why it is sound: restrict a linearization of the whole history to these ops. The appends of
/// versions below `first` all come before the append of `first`, so the register holds
/// `first - 1` where the window starts; every kept read returned a version `<= to` and sits where
/// the register held it, between that version's append and the next, all kept (each version of
/// the run was made by its known append, so no other append, unknown-outcome ones included,
/// falls between them); dropped ops are reads (no effect), appends of versions above `to` (after
/// every kept one) and below `first` (before every kept one), and unknown-outcome appends, which
/// made no version of the run. Real-time order between kept ops is unchanged.
///
/// Why runs without gaps: an unknown-outcome append in the window may be linearized anywhere
/// after its invocation or nowhere, and each one multiplies stateright's search; a window with
/// several took minutes.
pub fn window<'a>(
    flow_ops: &[&'a Recorded],
    from: u64,
    max_ops: usize,
) -> Option<(u64, Vec<&'a Recorded>)> {
    let from = from.max(1);
    let mut known: Vec<u64> = flow_ops
        .iter()
        .filter_map(|o| match &o.returned {
            Some((_, FlowRet::Appended(v))) if *v >= from => Some(*v),
            _ => None,
        })
        .collect();
    known.sort_unstable();
    known.dedup();
    // Ops per version: the append that made it and the reads that returned it.
    let mut per_version: BTreeMap<u64, usize> = BTreeMap::new();
    for o in flow_ops {
        match &o.returned {
            Some((_, FlowRet::Appended(v) | FlowRet::ReadOk(v))) => {
                *per_version.entry(*v).or_default() += 1;
            }
            None => {}
        }
    }
    let count = |v: u64| per_version.get(&v).copied().unwrap_or(0);
    // Runs of consecutive versions with known appends.
    let mut runs: Vec<(u64, u64)> = vec![];
    for &v in &known {
        match runs.last_mut() {
            Some((_, to)) if *to + 1 == v => *to = v,
            _ => runs.push((v, v)),
        }
    }
    let mut best: Option<(u64, u64, usize)> = None;
    for &(first, last) in runs.iter().take(64) {
        // The reads of `first - 1` are in the window too.
        let mut n = count(first - 1);
        let mut to = first - 1;
        for v in first..=last {
            if n + count(v) > max_ops && to >= first {
                break;
            }
            n += count(v);
            to = v;
        }
        if best.is_none_or(|(_, _, b)| n > b) {
            best = Some((first, to, n));
        }
        if n >= max_ops / 2 {
            break;
        }
    }
    let (first, to, _) = best?;
    let ops = flow_ops
        .iter()
        .copied()
        .filter(|o| match (&o.op, &o.returned) {
            (FlowOp::Append, Some((_, FlowRet::Appended(v)))) => (first..=to).contains(v),
            (FlowOp::Read, Some((_, FlowRet::ReadOk(v)))) => (first - 1..=to).contains(v),
            _ => false,
        })
        .collect();
    Some((first - 1, ops))
}

/// [`check`] on one flow's ops, starting from a register that holds version `initial` (for a
/// [`window`]).
pub fn check_from(ops: &[&Recorded], initial: u64) -> Result<FlowResult, String> {
    let tester = tester_for(ops, initial)?;
    let flow = ops.first().map(|o| o.flow.clone()).unwrap_or_default();
    let n = ops.len();
    // The search recurses once per op: give it a big stack. Timed in thread CPU time (the
    // machine is shared; wall time would measure the neighbours).
    let (linearization, check_time) = std::thread::Builder::new()
        .stack_size(1 << 30)
        .spawn(move || {
            let t = thread_cpu_time();
            let r = tester.serialized_history();
            (r, thread_cpu_time().saturating_sub(t))
        })
        .map_err(|e| e.to_string())?
        .join()
        .map_err(|_| "checker panicked".to_string())?;
    Ok(FlowResult {
        flow,
        ops: n,
        linearization,
        check_time,
    })
}

/// A synthetic history of one flow: `clients` clients each doing `per_client` ops (a fraction
/// `append_ratio` appends), each op taking a random time and taking effect at a random point
/// inside it, so the history is linearizable by construction. A deterministic xorshift stream
/// from `seed`. `unknown_ratio` of appends lose their return (they took effect).
pub fn synthetic(
    clients: u32,
    per_client: usize,
    append_ratio: f64,
    unknown_ratio: f64,
    seed: u64,
) -> Vec<Recorded> {
    let mut s = seed.max(1);
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % 1_000_000) as f64 / 1_000_000.0
    };
    // Each client: a sequence of (invoke, effect, return) in microseconds.
    struct P {
        client: u32,
        op: FlowOp,
        inv: u64,
        eff: u64,
        ret: u64,
        unknown: bool,
    }
    let mut planned = vec![];
    for c in 0..clients {
        let mut t = (rnd() * 1000.0) as u64;
        for _ in 0..per_client {
            let dur = 200 + (rnd() * 3000.0) as u64;
            let eff = t + 1 + (rnd() * (dur - 2) as f64) as u64;
            let op = if rnd() < append_ratio {
                FlowOp::Append
            } else {
                FlowOp::Read
            };
            let unknown = op == FlowOp::Append && rnd() < unknown_ratio;
            planned.push(P {
                client: c,
                op,
                inv: t,
                eff,
                ret: t + dur,
                unknown,
            });
            t += dur + (rnd() * 500.0) as u64;
        }
    }
    // Apply in effect order to get the return values.
    let mut idx: Vec<usize> = (0..planned.len()).collect();
    idx.sort_by_key(|&i| planned[i].eff);
    let mut reg = FlowVersions(0);
    let mut rets = vec![None; planned.len()];
    for i in idx {
        rets[i] = Some(reg.invoke(&planned[i].op));
    }
    planned
        .into_iter()
        .zip(rets)
        .map(|(p, r)| Recorded {
            client: p.client,
            flow: "f".into(),
            op: p.op,
            invoked: Duration::from_micros(p.inv),
            returned: if p.unknown {
                None
            } else {
                Some((Duration::from_micros(p.ret), r.unwrap()))
            },
        })
        .collect()
}

/// Makes one read of version `v` (> 0) that was invoked after the append of `v` returned
/// return `v - 1` instead: a stale read the checker must reject. `last`: the last such read (the
/// search then explores nearly everything before failing), else the first.
pub fn inject_stale_read(h: &mut [Recorded], last: bool) -> bool {
    let appended: BTreeMap<u64, Duration> = h
        .iter()
        .filter_map(|r| match &r.returned {
            Some((t, FlowRet::Appended(v))) => Some((*v, *t)),
            _ => None,
        })
        .collect();
    let pick = h.iter().enumerate().filter_map(|(i, r)| match &r.returned {
        Some((_, FlowRet::ReadOk(v)))
            if *v > 0 && appended.get(v).is_some_and(|t| *t < r.invoked) =>
        {
            Some((i, *v))
        }
        _ => None,
    });
    let mut pick = pick;
    let pick = if last { pick.next_back() } else { pick.next() };
    if let Some((i, v)) = pick {
        let t = h[i].returned.as_ref().unwrap().0;
        h[i].returned = Some((t, FlowRet::ReadOk(v - 1)));
        true
    } else {
        false
    }
}

/// A direct check of the same model, O(n log n), exploiting that every known append returns the
/// version it created, so the order of appends is known and only has to fit the real-time
/// intervals. With p(v) the instant version v took effect, the history is linearizable iff some
/// strictly increasing p(1) < p(2) < ... < p(V) (V: the largest version anyone saw) satisfies:
/// - each known append of v: invoked <= p(v) <= returned;
/// - each read of v: p(v) <= read.returned and p(v+1) > read.invoked (some instant inside the
///   read lies in [p(v), p(v+1)));
/// - each version with no known append is the effect of a distinct unknown-outcome append,
///   invoked <= p(v) (pairing the earliest-invoked unknowns with the lowest such versions is
///   optimal, as they have no upper bound);
/// - known appends hand out each version at most once, and none is 0.
///
/// The earliest feasible p(v), taken in order, decides it. Use it for big histories (cross-
/// checked against stateright in `tests/linearizability.rs`). Returns which version fails.
pub fn fast_check(ops: &[&Recorded]) -> Result<(), String> {
    const NEG: i128 = i128::MIN / 4;
    const POS: i128 = i128::MAX / 4;
    let ns = |d: Duration| d.as_nanos() as i128;
    let mut known: BTreeMap<u64, (i128, i128)> = BTreeMap::new();
    let mut unknown: Vec<i128> = vec![];
    let mut reads: Vec<(i128, i128, u64)> = vec![];
    for o in ops {
        match (&o.op, &o.returned) {
            (FlowOp::Append, Some((t, FlowRet::Appended(v)))) => {
                if *v == 0 || known.insert(*v, (ns(o.invoked), ns(*t))).is_some() {
                    return Err(format!("version {v} handed out twice (or 0)"));
                }
            }
            (FlowOp::Append, None) => unknown.push(ns(o.invoked)),
            (FlowOp::Read, Some((t, FlowRet::ReadOk(v)))) => {
                reads.push((ns(o.invoked), ns(*t), *v));
            }
            (FlowOp::Read, None) => {}
            (op, Some((_, ret))) => return Err(format!("{op:?} cannot return {ret:?}")),
        }
    }
    let max_v = known
        .keys()
        .next_back()
        .copied()
        .unwrap_or(0)
        .max(reads.iter().map(|r| r.2).max().unwrap_or(0));
    let n = max_v as usize;
    let mut lower = vec![NEG; n + 2];
    let mut upper = vec![POS; n + 2];
    for (&v, &(inv, ret)) in &known {
        lower[v as usize] = lower[v as usize].max(inv);
        upper[v as usize] = upper[v as usize].min(ret);
    }
    for &(inv, ret, v) in &reads {
        let v = v as usize;
        if v > 0 {
            upper[v] = upper[v].min(ret);
        }
        lower[v + 1] = lower[v + 1].max(inv + 1);
    }
    unknown.sort();
    let mut spare = unknown.into_iter();
    #[allow(clippy::needless_range_loop)] // v is a version number, not just an index
    for v in 1..=n {
        if !known.contains_key(&(v as u64)) {
            let Some(inv) = spare.next() else {
                return Err(format!(
                    "version {v} was seen but no append could have created it"
                ));
            };
            lower[v] = lower[v].max(inv);
        }
    }
    let mut p = NEG;
    for v in 1..=n {
        p = lower[v].max(p + 1);
        if p > upper[v] {
            return Err(format!(
                "version {v} cannot take effect in time (earliest {p}ns, latest {}ns)",
                upper[v]
            ));
        }
    }
    Ok(())
}

/// `fast_check` on every flow of `history`: (flow, ops, result).
pub fn fast_check_all(history: &[Recorded]) -> Vec<(String, usize, Result<(), String>)> {
    let mut by_flow: BTreeMap<&str, Vec<&Recorded>> = BTreeMap::new();
    for r in history {
        by_flow.entry(r.flow.as_str()).or_default().push(r);
    }
    by_flow
        .into_iter()
        .map(|(f, ops)| (f.to_string(), ops.len(), fast_check(&ops)))
        .collect()
}
