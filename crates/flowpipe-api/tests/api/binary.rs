//! The `flow-api` binary as an operator runs it: configuration from flags and environment, one
//! clear line and exit code 2 for a bad configuration, a startup log saying what it serves, and a
//! clean exit on SIGTERM after in-flight requests.

use std::process::Command;
use std::time::{Duration, Instant};

use flowpipe_testkit::{RefusedPort, serving_addrs};

const BIN: &str = env!("CARGO_BIN_EXE_flow-api");

fn run_failing(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env("FLOW_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn bad_configuration_is_one_line_and_exit_code_2() {
    let e = run_failing(&["--http-addr", "nowhere"], &[]);
    assert!(
        e.starts_with("flow-api: invalid FLOW_HTTP_ADDR \"nowhere\""),
        "{e}"
    );
    let e = run_failing(&[], &[("FLOW_GRPC_ADDR", ":99999")]);
    assert!(e.contains("invalid FLOW_GRPC_ADDR"), "{e}");
    let e = run_failing(&[], &[("FLOW_STORE", "postgres")]);
    assert!(e.contains("invalid FLOW_STORE \"postgres\""), "{e}");
    let e = run_failing(&["--data-dir", "/proc/nope/data"], &[]);
    assert!(
        e.contains("data directory /proc/nope/data is not usable"),
        "{e}"
    );
    let e = run_failing(&["--auth-enabled"], &[]);
    assert!(e.contains("FLOW_API_KEY"), "{e}");
    let e = run_failing(
        &[],
        &[
            ("FLOW_HTTP_TLS_ENABLED", "true"),
            ("FLOW_HTTP_TLS_CERT", "/missing/cert.pem"),
            ("FLOW_HTTP_TLS_KEY", "/missing/key.pem"),
        ],
    );
    assert!(e.contains("/missing/cert.pem"), "{e}");
    // A bad duration, from a variable or a flag: one line naming the flag.
    let e = run_failing(&[], &[("FLOW_ETCD_KEEPALIVE_INTERVAL", "soon")]);
    assert!(
        e.contains("--etcd-keepalive-interval") && e.contains("invalid duration"),
        "{e}"
    );
    let e = run_failing(&["--etcd-request-timeout", "0s"], &[]);
    assert!(e.contains("--etcd-request-timeout"), "{e}");
    // The port is taken: also one line.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let e = run_failing(&["-http-addr", &addr, "--grpc-addr", "127.0.0.1:0"], &[]);
    assert!(e.contains("cannot listen for REST"), "{e}");
}

#[test]
fn flags_win_over_environment() {
    // The environment says one port, the flag another (port 0: the OS picks it): the flag's is
    // the one served. The environment's port is held by another socket, so flow-api would exit
    // at once if it tried to listen there.
    let dir = tempfile::tempdir().unwrap();
    let env_port = RefusedPort::new();
    let env_addr = env_port.addr();
    let log_path = dir.path().join("stderr.log");
    let mut child = Command::new(BIN)
        .args(["-http-addr", "127.0.0.1:0"])
        .args(["--grpc-addr", "127.0.0.1:0"])
        .env("FLOW_HTTP_ADDR", env_addr.to_string())
        .env("FLOW_DATA_DIR", dir.path())
        .env("FLOW_ENV", "itest")
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let (http, _) = wait_serving(&log_path, || child.try_wait().unwrap());
    assert_ne!(http, env_addr);
    let ready = wait_ready(http.port());
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(ready, "not serving on the flag's port");
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("flow-api serving"), "{log}");
    assert!(log.contains("embedded store at"), "{log}");
    assert!(log.contains("itest"), "{log}");
    assert!(log.contains("SIGTERM received"), "{log}");
    // stderr is a pipe here, as under systemd or in a container: no colour escape codes.
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a non-terminal log: {log:?}"
    );
}

/// The addresses a `flow-api` process serves, from its startup line in `log` (its stderr);
/// `exited` says whether it has exited meanwhile.
fn wait_serving(
    log: &std::path::Path,
    mut exited: impl FnMut() -> Option<std::process::ExitStatus>,
) -> (std::net::SocketAddr, std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(addrs) = serving_addrs(&text) {
            return addrs;
        }
        if let Some(status) = exited() {
            panic!("flow-api exited with {status}:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "flow-api not serving after 20s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_ready(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(out) = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{port}/readyz")])
            .output()
            && out.status.success()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let mut child = tokio::process::Command::new(BIN)
        .args(["--http-addr", "127.0.0.1:0"])
        .args(["--grpc-addr", "127.0.0.1:0"])
        .env("FLOW_DATA_DIR", dir.path())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let port = wait_serving(&log_path, || child.try_wait().unwrap())
        .0
        .port();
    assert!(
        tokio::task::spawn_blocking(move || wait_ready(port))
            .await
            .unwrap()
    );
    // A request whose body arrives slowly is in flight when SIGTERM comes; it still completes.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = br#"{"name":"in-flight"}"#;
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/flows HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body[..10]).await.unwrap();
    // Time for flow-api to accept the connection and read the head, even on a busy machine.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = child.id().unwrap();
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.write_all(&body[10..]).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits after draining")
        .unwrap();
    assert!(status.success(), "{status}");
}
