//! `flowpipe-validate` (crates/flowpipe-core/src/bin) says what the server says. The same specs go
//! through the REST API's CreateFlow (in process, `?validate_only=true`) and through the
//! validator, both as the host binary and as `target/wasm/flowpipe-validate.wasm` under wasmtime
//! (`scripts/wasm-run`): its `--json` line for each spec must be the API's 400 body exactly (or
//! code 0 where the API accepts the spec), and its text output the API's field violations. Then
//! the command line itself, on both: exit codes 0/1/2, standard input, `--help`.
//!
//! The `.wasm` is built by `make wasm-test`, which `make test` runs before `cargo test`; without
//! it (or with one older than the core's sources) these tests fail and say so.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};

use crate::rest::Api;
use flowpipe_testkit::stores::memory_store;
use flowpipe_testkit::workspace_root;

/// One spec body, named for the file it is written to.
struct Case {
    file: String,
    body: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let many_stages: Vec<String> = (0..1025)
        .map(|i| format!(r#"{{"name":"s{i}","type":"t","threads":1}}"#))
        .collect();
    // 150 broken stages: more violations than an error lists (the last one counts the rest).
    let broken_stages: Vec<String> = (0..150)
        .map(|i| format!(r#"{{"name":"s{i}","threads":0}}"#))
        .collect();
    let deep = format!(
        r#"{{"name":"deep","stages":[{{"name":"s","type":"t","threads":1,"config":{{"a":{}1{}}}}}]}}"#,
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let bodies: Vec<(&str, String)> = vec![
        (
            "minimal",
            r#"{"name":"example","mode":"JOB","queues":[],"stages":[]}"#.into(),
        ),
        (
            "readme-orders",
            r#"{"name":"orders","mode":"STREAMING","labels":{"team":"data"},
                "queues":[{"name":"events"}],
                "stages":[{"name":"source","type":"kafka","threads":2,"outputQueue":"events",
                           "config":{"topic":"orders","brokers":["kafka-0:9092"]}},
                          {"name":"sink","type":"s3","threads":1,"input_queue":"events",
                           "config":{"bucket":"orders-archive"}}]}"#
                .into(),
        ),
        (
            "every-rule",
            r#"{"name":"Bad_Name","version":"4",
                "queues":[{"name":"q"},{"name":"q"},{"name":""}],
                "stages":[{"name":"s","type":"","threads":0,"input_queue":"nope"},
                          {"name":"s","type":"t","threads":1,"input_queue":"q","output_queue":"q"}],
                "kubernetes":{"cpu_pinning":{"ghost":{"cpu":[1]}}},
                "kubernetes_options":{"cron":{"schedule":""}}}"#
                .into(),
        ),
        ("no-name", r#"{"mode":"JOB"}"#.into()),
        ("empty", String::new()),
        ("blank", " \n\t ".into()),
        ("not-json", "name: orders\n".into()),
        ("truncated", r#"{"name":"orders","stages":[{"#.into()),
        ("trailing", r#"{"name":"orders"} {}"#.into()),
        ("array", "[]".into()),
        (
            "unknown-field",
            r#"{"name":"x","stages":[{"name":"a","bogus":1}]}"#.into(),
        ),
        (
            "wrong-type",
            r#"{"name":"x","stages":[{},{"threads":"many"}]}"#.into(),
        ),
        (
            "threads-beyond-u32",
            r#"{"name":"n","stages":[{"name":"s","type":"t","threads":4294967296}]}"#.into(),
        ),
        ("duplicate-key", r#"{"name":"a","name":"b"}"#.into()),
        (
            "duplicate-nested-key",
            r#"{"name":"a","stages":[{"config":{"x":{"y":1,"y":2}}}]}"#.into(),
        ),
        (
            "mode-conflict",
            r#"{"name":"x","mode":"JOB","execution":{"mode":"EXECUTION_MODE_STREAMING"}}"#.into(),
        ),
        ("mode-unknown", r#"{"name":"x","mode":"FAST"}"#.into()),
        (
            "enum-unknown",
            r#"{"name":"n","execution":{"mode":"FAST"}}"#.into(),
        ),
        ("client-version", r#"{"name":"n","version":7}"#.into()),
        (
            "nul-in-queue-name",
            r#"{"name":"n","queues":[{"name":"q\u0000"}]}"#.into(),
        ),
        ("lone-surrogate", r#"{"name":"\ud800x"}"#.into()),
        (
            "huge-number",
            r#"{"name":"n","stages":[{"name":"s","type":"t","threads":1,"config":{"x":1e999}}]}"#
                .into(),
        ),
        ("deep-config", deep),
        (
            "too-many-stages",
            format!(r#"{{"name":"many","stages":[{}]}}"#, many_stages.join(",")),
        ),
        (
            "many-violations",
            format!(
                r#"{{"name":"many","stages":[{}]}}"#,
                broken_stages.join(",")
            ),
        ),
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, (name, body))| Case {
            file: format!("{i:02}-{name}.json"),
            body: body.into_bytes(),
        })
        .collect()
}

/// What the server answers `body` with, as the validator's `--json` line must be.
async fn server_status(api: &Api, body: &[u8]) -> Value {
    let req = Request::builder()
        .method("POST")
        .uri("/v1/flows?validate_only=true")
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .unwrap();
    let reply = api.raw(req).await;
    match reply.status.as_u16() {
        200 => json!({"code": 0, "message": "", "details": []}),
        400 => reply.json,
        other => panic!(
            "the server answered {other}, not 200 or 400: {}",
            reply.json
        ),
    }
}

/// The validator's text lines for a spec whose `--json` status is `status`.
fn text_lines(file: &str, status: &Value) -> Vec<String> {
    if status["code"] == 0 {
        return vec![format!("{file}: valid")];
    }
    let violations: Vec<&Value> = status["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .flat_map(|d| d["fieldViolations"].as_array().unwrap())
        .collect();
    if violations.is_empty() {
        return vec![format!("{file}: {}", status["message"].as_str().unwrap())];
    }
    violations
        .iter()
        .map(|v| {
            match (
                v["field"].as_str().unwrap(),
                v["description"].as_str().unwrap(),
            ) {
                ("", d) => format!("{file}: {d}"),
                (f, d) => format!("{file}: {f}: {d}"),
            }
        })
        .collect()
}

/// A way to run flowpipe-validate.
enum Validator {
    Host(PathBuf),
    Wasm(PathBuf),
}

impl Validator {
    fn label(&self) -> &'static str {
        match self {
            Validator::Host(_) => "host binary",
            Validator::Wasm(_) => "flowpipe-validate.wasm under wasmtime",
        }
    }

    /// Runs it in `dir` (the only directory the .wasm sees) with `args` and `stdin`.
    fn run(&self, dir: &Path, args: &[&str], stdin: &[u8]) -> Ran {
        let mut cmd = match self {
            Validator::Host(bin) => Command::new(bin),
            Validator::Wasm(wasm) => {
                let mut c = Command::new(workspace_root().join("scripts/wasm-run"));
                c.arg(wasm);
                c
            }
        };
        let mut child = cmd
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: cannot start: {e}", self.label()));
        // Written from a thread: a large stdin and a large stdout must not wait on each other.
        let mut pipe = child.stdin.take().unwrap();
        let input = stdin.to_vec();
        let writer = std::thread::spawn(move || pipe.write_all(&input));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        Ran::new(self.label(), args, out)
    }
}

struct Ran {
    what: String,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn new(label: &str, args: &[&str], out: Output) -> Ran {
        let ran = Ran {
            what: format!("{label} {args:?}"),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        };
        // 127: scripts/wasm-run found no wasmtime; anything else off the contract is a crash.
        assert!(
            (0..=2).contains(&ran.code),
            "{}: exit code {}, stdout:\n{}\nstderr:\n{}",
            ran.what,
            ran.code,
            ran.stdout,
            ran.stderr
        );
        ran
    }

    #[track_caller]
    fn exits(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "{}: stdout:\n{}\nstderr:\n{}",
            self.what, self.stdout, self.stderr
        );
        self
    }

    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{}: not a JSON line ({e}): {l}", self.what))
            })
            .collect()
    }
}

/// The host binary, built by cargo (a no-op after `cargo test --workspace --all-targets`, which
/// builds it; `CARGO_BIN_EXE_*` exists only for the core's own tests). Asking cargo, rather than
/// guessing target/debug, also rebuilds it when the core changed since.
fn host() -> Validator {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    let bin = BIN.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let out = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "flowpipe-core",
                "--bin",
                "flowpipe-validate",
            ])
            .arg("--message-format=json-render-diagnostics")
            .current_dir(workspace_root())
            .stderr(Stdio::inherit())
            .output()
            .expect("cannot run cargo to build flowpipe-validate");
        assert!(
            out.status.success(),
            "cargo build of flowpipe-validate failed"
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| {
                m["reason"] == "compiler-artifact" && m["target"]["name"] == "flowpipe-validate"
            })
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo build named no flowpipe-validate executable")
    });
    Validator::Host(bin.clone())
}

/// `target/wasm/flowpipe-validate.wasm`, as `make wasm-test` leaves it, and never older than the
/// sources it is built from (a stale one would compare yesterday's rules).
fn wasm() -> Validator {
    let root = workspace_root();
    let wasm = root.join("target/wasm/flowpipe-validate.wasm");
    let built = std::fs::metadata(&wasm).and_then(|m| m.modified()).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}): run `make wasm-test` (which `make test` runs before cargo test) to build it",
            wasm.display()
        )
    });
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for source in [
        "crates/flowpipe-core/src",
        "crates/flowpipe-core/build.rs",
        "crates/flowpipe-core/Cargo.toml",
        "proto",
        "Cargo.lock",
    ] {
        newest_file(&root.join(source), &mut newest);
    }
    if let Some((changed, path)) = newest {
        assert!(
            changed <= built,
            "{} is older than {}: run `make wasm-test` to rebuild it",
            wasm.display(),
            path.display()
        );
    }
    Validator::Wasm(wasm)
}

fn newest_file(path: &Path, newest: &mut Option<(SystemTime, PathBuf)>) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            newest_file(&entry.unwrap().path(), newest);
        }
    } else {
        let changed = meta.modified().unwrap();
        if newest.as_ref().is_none_or(|(t, _)| changed > *t) {
            *newest = Some((changed, path.to_path_buf()));
        }
    }
}

fn validators() -> [Validator; 2] {
    [host(), wasm()]
}

#[tokio::test]
async fn the_validator_reports_what_the_server_answers() {
    let api = Api::new(memory_store());
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    let mut expected = Vec::new();
    for case in &cases {
        std::fs::write(dir.path().join(&case.file), &case.body).unwrap();
        expected.push(server_status(&api, &case.body).await);
    }
    let valid = expected.iter().filter(|s| s["code"] == 0).count();
    assert!(
        valid >= 2 && valid < cases.len(),
        "the cases must hold both valid and invalid specs"
    );
    let files: Vec<&str> = cases.iter().map(|c| c.file.as_str()).collect();
    let mut json_args = vec!["--json"];
    json_args.extend(&files);
    let text: Vec<String> = cases
        .iter()
        .zip(&expected)
        .flat_map(|(c, s)| text_lines(&c.file, s))
        .collect();

    for v in validators() {
        // Every file in one run: line N is file N.
        let ran = v.run(dir.path(), &json_args, b"");
        ran.exits(1);
        let got = ran.json_lines();
        assert_eq!(
            got.len(),
            cases.len(),
            "{}: one line per file:\n{}",
            ran.what,
            ran.stdout
        );
        for ((case, want), got) in cases.iter().zip(&expected).zip(&got) {
            assert_eq!(
                got,
                want,
                "{}: {} differs from the server's answer",
                v.label(),
                case.file
            );
        }
        let ran = v.run(dir.path(), &files, b"");
        ran.exits(1);
        let got: Vec<&str> = ran.stdout.lines().collect();
        assert_eq!(got, text, "{}: text output", v.label());
        assert_eq!(ran.stderr, "", "{}", ran.what);
    }
}

#[test]
fn exit_codes_stdin_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let valid = br#"{"name":"orders","mode":"STREAMING","queues":[{"name":"q"}]}"#;
    let invalid =
        br#"{"name":"orders","stages":[{"name":"s","type":"t","threads":1,"inputQueue":"nope"}]}"#;
    std::fs::write(dir.path().join("valid.json"), valid).unwrap();
    std::fs::write(dir.path().join("invalid.json"), invalid).unwrap();
    std::fs::write(dir.path().join("latin1.json"), b"{\"name\":\"caf\xe9\"}").unwrap();
    std::fs::create_dir(dir.path().join("a-directory")).unwrap();
    let not_declared =
        "stages[0].input_queue: names queue \"nope\", which is not declared in queues";

    for v in validators() {
        let d = dir.path();
        let r = v.run(d, &["valid.json"], b"");
        assert_eq!(r.exits(0).stdout, "valid.json: valid\n");
        let r = v.run(d, &["invalid.json"], b"");
        assert_eq!(r.exits(1).stdout, format!("invalid.json: {not_declared}\n"));

        // Standard input: with no file, and as `-` among files.
        let r = v.run(d, &[], valid);
        assert_eq!(r.exits(0).stdout, "<stdin>: valid\n");
        let r = v.run(d, &["valid.json", "-"], invalid);
        assert_eq!(
            r.exits(1).stdout,
            format!("valid.json: valid\n<stdin>: {not_declared}\n")
        );

        // Unreadable: 2, said on stderr, and 2 wins over 1.
        let r = v.run(d, &["missing.json"], b"");
        assert_eq!(r.exits(2).stdout, "");
        assert_eq!(
            r.stderr,
            "flowpipe-validate: missing.json: cannot read: no such file\n"
        );
        let r = v.run(d, &["latin1.json"], b"");
        assert!(
            r.exits(2)
                .stderr
                .contains("latin1.json: not UTF-8 text (invalid byte at offset 12)"),
            "{}",
            r.stderr
        );
        let r = v.run(d, &["a-directory"], b"");
        assert!(
            r.exits(2)
                .stderr
                .starts_with("flowpipe-validate: a-directory: cannot read: "),
            "{}",
            r.stderr
        );
        let r = v.run(d, &["invalid.json", "missing.json", "valid.json"], b"");
        r.exits(2);
        assert_eq!(
            r.stdout,
            format!("invalid.json: {not_declared}\nvalid.json: valid\n")
        );

        // --json: one status per input, in order, the unreadable one included.
        let r = v.run(d, &["--json", "valid.json", "missing.json", "-"], invalid);
        let lines = r.exits(2).json_lines();
        assert_eq!(lines.len(), 3, "{}", r.stdout);
        assert_eq!(lines[0], json!({"code": 0, "message": "", "details": []}));
        assert_eq!(lines[1]["code"], 3);
        assert_eq!(lines[1]["details"][0]["reason"], "UNREADABLE_INPUT");
        assert_eq!(lines[1]["details"][0]["metadata"]["file"], "missing.json");
        assert_eq!(lines[2]["code"], 3);
        assert_eq!(lines[2]["details"][0]["reason"], "INVALID_FLOW_SPEC");
        assert_eq!(
            lines[2]["details"][1]["fieldViolations"][0]["field"],
            "stages[0].input_queue"
        );
        let r = v.run(d, &["--json", "valid.json"], b"");
        assert_eq!(
            r.exits(0).stdout,
            "{\"code\":0,\"details\":[],\"message\":\"\"}\n"
        );

        // The command line.
        let r = v.run(d, &["--help"], b"");
        assert!(
            r.exits(0)
                .stdout
                .starts_with("usage: flowpipe-validate [--json] [FILE...]"),
            "{}",
            r.stdout
        );
        let r = v.run(d, &["--jsno", "valid.json"], b"");
        assert!(
            r.exits(2).stderr.contains("unknown option --jsno"),
            "{}",
            r.stderr
        );
        assert_eq!(r.stdout, "");
        let r = v.run(d, &["--", "--json"], b"");
        assert_eq!(
            r.exits(2).stderr,
            "flowpipe-validate: --json: cannot read: no such file\n"
        );
    }
}
