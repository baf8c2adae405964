//! Keeps `flow-bench` from rotting: runs it once, briefly, end to end (its own etcd, its own API
//! server process, every operation and transport, the recorded round trips and the list study,
//! with a small scale dataset so the bulk seeder runs too)
//! and checks that the report has every section and that no row failed. Nothing about speed is
//! asserted: a debug build's numbers on a shared machine mean nothing; BENCHMARKS.md has the real
//! ones.

use std::process::Command;

#[test]
fn flow_bench_runs_every_row_and_reports_every_target() {
    let out = Command::new(env!("CARGO_BIN_EXE_flow-bench"))
        .args([
            "--quick",
            "--duration",
            "150ms",
            "--warmup",
            "30ms",
            "--concurrency",
            "1,2",
            "--list-flows",
            "120",
            "--list-versions",
            "5",
            "--list-scale",
            "300x3",
            "--study-concurrency",
            "1",
            "--otel-ops",
            "get,create",
            "--otel-concurrency",
            "2",
        ])
        .output()
        .expect("flow-bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "flow-bench failed:\n{stderr}");
    let report = String::from_utf8(out.stdout).expect("the report is UTF-8");
    for section in [
        "### Throughput and latency",
        "### Targets against core-direct (baseline a)",
        "### etcd round trips per operation",
        "### ListFlows: 120 flows × 1 version vs × 5 versions, and at scale",
        "### Observability: OTLP on ÷ off",
        "### Server memory",
        "### Summary",
    ] {
        assert!(report.contains(section), "no {section:?} in:\n{report}");
    }
    for op in ["create", "update", "get", "list", "rollback", "ping"] {
        for transport in ["REST", "gRPC", "core-direct", "raw-min"] {
            for conc in [1, 2] {
                let row = format!("| {op} | {conc} | {transport} |");
                assert!(report.contains(&row), "no row {row:?} in:\n{report}");
            }
        }
    }
    // Observability rows: both transports, and the collector received the "on" server's spans.
    for op in ["get", "create"] {
        for transport in ["REST", "gRPC"] {
            let row = format!("| {op} | 2 | {transport} |");
            assert!(report.contains(&row), "no row {row:?} in:\n{report}");
        }
    }
    assert!(
        !report.contains("(`0` spans"),
        "no span reached the collector:\n{report}"
    );
    // The round trips are counts, not timings: they are exact on every machine.
    for (op, n) in [
        ("create (new name)", 1),
        ("get", 2),
        ("update (changed spec)", 2),
        ("rollback", 2),
        ("delete", 2),
    ] {
        let row = format!("| {op} | {n} |");
        assert!(report.contains(&row), "no {row:?} in:\n{report}");
    }
    // A list page from the name index is exactly 2 round trips, whatever the flows' version
    // counts (contract B.6), and by discovery a small constant number (B.4); the smoke run lists
    // 1-version, 5-version and 3-version flows from the index, the first two by discovery too.
    for (target, n) in [("| = 2 |", 6), ("| ≤ 5 |", 4)] {
        let list_rows: Vec<&str> = report
            .lines()
            .filter(|l| l.starts_with("| list page") && l.contains(target))
            .collect();
        assert_eq!(list_rows.len(), n, "list round-trip rows in:\n{report}");
        for row in list_rows {
            assert!(row.contains("| PASS |"), "{row}");
        }
    }
    // The study's own page costs, recorded: every index page is 2 round trips.
    let index_pages: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("| index | ") && l.contains("| = 2 |"))
        .collect();
    assert_eq!(index_pages.len(), 6, "index page costs in:\n{report}");
    for row in index_pages {
        assert!(row.contains("| = 2 | PASS |"), "{row}");
    }
    // Every target of issue 14 has its row (timings in a debug build mean nothing: no verdict
    // is asserted).
    for target in ["| ≤ 1.2 |", "| ≤ 1.5 |"] {
        assert!(
            report.contains(target),
            "no {target:?} target in:\n{report}"
        );
    }
    // Scale datasets are measured from the index only; the pair both ways.
    assert!(
        !report.contains("| 300 × 3 | fallback") && report.contains("| 120 × 5 | fallback"),
        "list study paths in:\n{report}"
    );
    // Every request is listed: create's one transaction, for one.
    assert!(
        report.contains("| operation | # | request | outcome |")
            && report.contains("| create (new name) | 1 | txn "),
        "no recorded requests in:\n{report}"
    );
    assert!(
        !report.contains("errors (first:"),
        "some rows had errors:\n{report}\n{stderr}"
    );
    // Core-direct is the core itself; the API server, asked over REST, must send exactly the
    // requests core-direct sent for each operation (else core-direct is not the API's baseline).
    let rt_rows: Vec<&str> = report
        .lines()
        .filter(|l| l.ends_with("| same requests |") || l.contains("**DIFFERS**"))
        .collect();
    assert_eq!(rt_rows.len(), 17, "round-trip rows in:\n{report}");
    for row in rt_rows {
        assert!(row.ends_with("| same requests |"), "{row}");
    }
}
