//! The linearizability checkers of the partition tests: stateright's tester on hand-written and
//! synthetic per-flow histories, and the direct checker (`history::fast_check`) agreeing with it
//! on thousands of random small histories (so it can stand in for it on histories stateright
//! cannot finish), then on large ones.

use std::time::{Duration, Instant};

use flowpipe_testkit::history::{
    FlowOp, FlowRet, Recorded, check, check_from, fast_check, inject_stale_read, synthetic, window,
};

fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

fn op(client: u32, op: FlowOp, inv: u64, ret: Option<(u64, FlowRet)>) -> Recorded {
    Recorded {
        client,
        flow: "f".into(),
        op,
        invoked: ms(inv),
        returned: ret.map(|(t, r)| (ms(t), r)),
    }
}

#[test]
fn hand_written_histories() {
    use FlowOp::*;
    use FlowRet::*;
    // Two overlapping appends get 2 and 1 (the later-invoked one won the race); a read after
    // both sees 2; a read overlapping both may see 0, 1 or 2.
    let ok = vec![
        op(1, Append, 0, Some((10, Appended(2)))),
        op(2, Append, 2, Some((8, Appended(1)))),
        op(3, Read, 1, Some((9, ReadOk(0)))),
        op(3, Read, 11, Some((12, ReadOk(2)))),
    ];
    let r = check(&ok).unwrap();
    assert!(r[0].linearization.is_some(), "{r:?}");
    eprintln!("witness: {:?}", r[0].linearization);

    // A read that starts after both appends returned must see 2, not 1.
    let stale = vec![
        op(1, Append, 0, Some((10, Appended(2)))),
        op(2, Append, 2, Some((8, Appended(1)))),
        op(3, Read, 11, Some((12, ReadOk(1)))),
    ];
    assert!(check(&stale).unwrap()[0].linearization.is_none());

    // Versions must not be handed out twice, nor skipped.
    let dup = vec![
        op(1, Append, 0, Some((5, Appended(1)))),
        op(2, Append, 6, Some((9, Appended(1)))),
    ];
    assert!(check(&dup).unwrap()[0].linearization.is_none());
    let gap = vec![op(1, Append, 0, Some((5, Appended(2))))];
    assert!(check(&gap).unwrap()[0].linearization.is_none());

    // An append whose outcome is unknown (timed out) may or may not have happened, at any
    // time after its invocation; the same client then goes on.
    for seen in [1, 2] {
        let unknown = vec![
            op(1, Append, 0, Some((2, Appended(1)))),
            op(2, Append, 3, None), // timeout
            op(2, Read, 20, Some((21, ReadOk(seen)))),
            op(1, Read, 22, Some((23, ReadOk(seen)))),
        ];
        assert!(
            check(&unknown).unwrap()[0].linearization.is_some(),
            "seen {seen}"
        );
    }
    // ... but it cannot take effect before it was invoked, nor be seen and then unseen.
    let before = vec![op(1, Read, 0, Some((2, ReadOk(1)))), op(2, Append, 3, None)];
    assert!(check(&before).unwrap()[0].linearization.is_none());
    let flicker = vec![
        op(2, Append, 0, None),
        op(1, Read, 5, Some((6, ReadOk(1)))),
        op(1, Read, 7, Some((8, ReadOk(0)))),
    ];
    assert!(check(&flicker).unwrap()[0].linearization.is_none());
}

#[test]
fn synthetic_histories_and_their_cost() {
    // Small on purpose: the search is exponential in the worst case (see results/lincheck.txt).
    for (clients, per) in [(2u32, 100usize), (4, 25)] {
        let h = synthetic(clients, per, 0.5, 0.05, 7);
        let t = Instant::now();
        let r = check(&h).unwrap();
        eprintln!(
            "{} ops, {clients} clients: linearizable={} in {:?}",
            h.len(),
            r[0].linearization.is_some(),
            t.elapsed()
        );
        assert!(r[0].linearization.is_some());
        let mut bad = h.clone();
        assert!(inject_stale_read(&mut bad, false));
        let t = Instant::now();
        let r = check(&bad).unwrap();
        eprintln!(
            "  with an early stale read: linearizable={} in {:?}",
            r[0].linearization.is_some(),
            t.elapsed()
        );
        assert!(r[0].linearization.is_none());
    }
}

/// Random small histories (mostly not linearizable): the direct checker agrees with stateright.
/// (The prototype of this harness ran 20,000 cases; 5,000 keep the test to seconds.)
const CASES: u64 = 5000;

#[test]
fn fast_check_agrees_with_stateright() {
    let mut s = 0x2545F4914F6CDD1Du64;
    let mut rnd = move |n: u64| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s % n
    };
    let (mut agree_lin, mut agree_not) = (0, 0);
    for case in 0..CASES {
        let clients = 1 + rnd(4) as u32;
        // Per client a sequence of ops; event times are distinct slots of a random interleaving.
        let mut pending: Vec<Vec<(FlowOp, Option<FlowRet>)>> = (0..clients)
            .map(|_| {
                (0..1 + rnd(3))
                    .map(|_| {
                        if rnd(2) == 0 {
                            let ret = if rnd(5) == 0 {
                                None
                            } else {
                                Some(FlowRet::Appended(1 + rnd(4)))
                            };
                            (FlowOp::Append, ret)
                        } else {
                            (FlowOp::Read, Some(FlowRet::ReadOk(rnd(4))))
                        }
                    })
                    .collect()
            })
            .collect();
        let mut h: Vec<Recorded> = vec![];
        let mut open: Vec<Option<usize>> = vec![None; clients as usize];
        let mut t = 0u64;
        loop {
            let live: Vec<usize> = (0..clients as usize)
                .filter(|&c| open[c].is_some() || !pending[c].is_empty())
                .collect();
            if live.is_empty() {
                break;
            }
            let c = live[rnd(live.len() as u64) as usize];
            t += 1;
            match open[c].take() {
                Some(i) => {
                    if let Some(r) = h[i].returned.take() {
                        h[i].returned = Some((ms(t), r.1));
                    }
                }
                None => {
                    let (op, ret) = pending[c].remove(0);
                    h.push(Recorded {
                        client: c as u32,
                        flow: "f".into(),
                        op,
                        invoked: ms(t),
                        returned: ret.map(|r| (ms(0), r)),
                    });
                    open[c] = Some(h.len() - 1);
                }
            }
        }
        let slow = check(&h).unwrap()[0].linearization.is_some();
        let refs: Vec<&Recorded> = h.iter().collect();
        let fast = fast_check(&refs);
        assert_eq!(
            slow,
            fast.is_ok(),
            "case {case}: stateright {slow}, fast {fast:?}\n{h:#?}"
        );
        if slow { agree_lin += 1 } else { agree_not += 1 }
    }
    eprintln!("agree on {CASES} random histories: {agree_lin} linearizable, {agree_not} not");
    assert!(agree_lin > CASES / 20 && agree_not > CASES / 2);
}

/// The direct checker on the big synthetic histories that stateright cannot finish.
#[test]
fn fast_check_scales() {
    for (clients, per) in [(8u32, 1000usize), (16, 1000), (64, 200)] {
        let h = synthetic(clients, per, 0.5, 0.05, 11);
        let refs: Vec<&Recorded> = h.iter().collect();
        let t = Instant::now();
        assert!(fast_check(&refs).is_ok());
        let valid = t.elapsed();
        let mut bad = h.clone();
        assert!(inject_stale_read(&mut bad, true));
        let refs: Vec<&Recorded> = bad.iter().collect();
        let t = Instant::now();
        assert!(fast_check(&refs).is_err());
        eprintln!(
            "{} ops, {clients} clients: valid in {valid:?}, late stale read found in {:?}",
            h.len(),
            t.elapsed()
        );
    }
}

/// A window of a long history (the part that stateright can check) is linearizable when the
/// whole is, and a stale read inside it is still caught. (stateright proves a history
/// non-linearizable only by exhausting its search, exponential in the clients: the stale-read
/// windows are of two clients.)
#[test]
fn windows_of_long_histories() {
    for (clients, per, max, tamper) in [(4u32, 2000usize, 120usize, false), (2, 3000, 40, true)] {
        let h = synthetic(clients, per, 0.5, 0.05, 3);
        let refs: Vec<&Recorded> = h.iter().collect();
        assert!(fast_check(&refs).is_ok());
        for from in [1, 200, 700] {
            let (initial, ops) = window(&refs, from, max).expect("a window");
            assert!(ops.len() <= max && ops.len() > max / 3, "{}", ops.len());
            let unknown = ops.iter().filter(|o| o.returned.is_none()).count();
            eprintln!(
                "{clients} clients, window from v{from}: {} ops, {unknown} of unknown outcome",
                ops.len()
            );
            let r = check_from(&ops, initial).unwrap();
            assert!(
                r.linearization.is_some(),
                "window from {from}: {} ops not linearizable",
                r.ops
            );
            if !tamper {
                continue;
            }
            // The same window with one of its reads made stale.
            let mut owned: Vec<Recorded> = ops.iter().map(|o| (*o).clone()).collect();
            assert!(inject_stale_read(&mut owned, false));
            let bad: Vec<&Recorded> = owned.iter().collect();
            assert!(check_from(&bad, initial).unwrap().linearization.is_none());
        }
    }
}
