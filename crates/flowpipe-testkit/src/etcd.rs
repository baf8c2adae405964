//! Real `etcd` processes on free loopback ports, each with its own temporary data directory,
//! stopped when dropped.
//!
//! The binary is `$ETCD_BIN`, else `etcd` on `PATH`, else `/usr/bin/etcd`. When none exists,
//! starting fails with a message saying how to install it: tests never skip for lack of etcd.
//!
//! A test binary shares one cluster between its tests (a `static`), and statics are never
//! dropped; so each member gets a watchdog shell that kills it (and removes its data) once the
//! process that started it is gone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a member may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts a shell that waits while both this process and `pid` live, then runs `cleanup`: the
/// way a child of a test (or of a `static` that is never dropped) is stopped and its files removed
/// when the test process dies without running destructors.
pub fn watchdog(pid: u32, cleanup: &str) -> std::io::Result<Child> {
    let script = format!(
        "while kill -0 {parent} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 1; done; {cleanup}",
        parent = std::process::id(),
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// The etcd binary to run.
pub fn etcd_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("ETCD_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("ETCD_BIN={} does not exist", p.display()))
        };
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("etcd"))
        .chain([PathBuf::from("/usr/bin/etcd")])
        .find(|p| p.is_file());
    on_path.ok_or_else(|| {
        "etcd not found: tests need a real etcd. Install it (`apt-get install etcd-server`, \
         which `make test` does) or set ETCD_BIN to its path"
            .to_string()
    })
}

/// A TCP port on 127.0.0.1 that was free when checked, for a process that binds it later (etcd,
/// flow-api, moto) or binds it again (a restarted etcd member).
///
/// It is not one the OS would choose: a port from the ephemeral range, released here, could be
/// given meanwhile to any socket bound to port 0 or to an outgoing connection, such as a server
/// of a test running beside this one (which happened). So the ports come from 20000–32767, below
/// the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), in turn from an offset of the
/// process id: the OS never hands them out, and this process hands out each once (until it has
/// gone round the whole range).
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let low = FIXED_PORTS.start;
    let high = FIXED_PORTS.end.min(ephemeral_low);
    assert!(
        high > low + 1000,
        "the ephemeral port range starts at {ephemeral_low}: tests need {FIXED_PORTS:?} outside it"
    );
    let span = high - low;
    let offset = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (low + (offset + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{high} on 127.0.0.1")
}

/// Where [`free_port`] takes its ports: below Linux's default ephemeral range (32768–60999).
const FIXED_PORTS: std::ops::Range<u32> = 20_000..32_768;

/// A loopback port where nothing answers, for as long as the value lives: a socket is bound to
/// it but never listens, so connections to it are refused, and no other socket can take the
/// port meanwhile. (A port from [`free_port`] is free when chosen but not held; a test that once
/// pointed a client at such a port as "nowhere" met another test's HTTP/2 server there.)
pub struct RefusedPort {
    port: u16,
    _socket: tokio::net::TcpSocket,
}

impl RefusedPort {
    /// Reserves a port the OS picks on 127.0.0.1.
    pub fn new() -> RefusedPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind 127.0.0.1:0");
        let port = socket.local_addr().expect("the bound address").port();
        RefusedPort {
            port,
            _socket: socket,
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }
}

impl Default for RefusedPort {
    fn default() -> Self {
        Self::new()
    }
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    process: Option<Child>,
    watchdog: Option<Child>,
}

impl ClusterMember for Member {
    fn name(&self) -> &str {
        &self.name
    }
    fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    fn log(&self) -> &Path {
        &self.log
    }
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

impl Member {
    fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// A running etcd cluster of one or more members on loopback.
pub struct EtcdCluster {
    binary: PathBuf,
    dir: PathBuf,
    token: String,
    extra_args: Vec<String>,
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Starts a one-member cluster and waits until it is healthy.
    pub fn start_single() -> Result<Self, String> {
        Self::start(1)
    }

    /// Starts an `n`-member cluster and waits until every member is healthy.
    pub fn start(n: usize) -> Result<Self, String> {
        Self::start_with_args(n, &[])
    }

    /// Like [`EtcdCluster::start`], with extra etcd flags for every member (e.g.
    /// `--auth-token-ttl=1`).
    pub fn start_with_args(n: usize, extra_args: &[&str]) -> Result<Self, String> {
        let binary = etcd_binary()?;
        let dir = std::env::temp_dir().join(format!(
            "flowpipe-etcd-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.join(format!("m{i}.etcd")),
                log: dir.join(format!("m{i}.log")),
                process: None,
                watchdog: None,
            })
            .collect();
        let mut cluster = EtcdCluster {
            binary,
            extra_args: extra_args
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
            token: format!("flowpipe-test-{}", uuid::Uuid::new_v4().simple()),
            dir,
            members,
        };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        for i in 0..n {
            cluster.wait_healthy(i)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let shared = ClusterArgs {
            binary: &self.binary,
            token: &self.token,
            // Fast elections keep fault tests short; fine on loopback.
            heartbeat_ms: 50,
            election_ms: 500,
            extra_args: &self.extra_args,
        };
        let child = member_command(&shared, &self.members, i)?
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        let m = &mut self.members[i];
        // Once this process is gone, kill etcd and remove its files.
        let watchdog = watchdog(
            child.id(),
            &format!(
                "kill -9 {etcd} 2>/dev/null; kill -0 {parent} 2>/dev/null || rm -rf '{dir}'",
                parent = std::process::id(),
                etcd = child.id(),
                dir = self.dir.display(),
            ),
        )
        .map_err(|e| format!("cannot start watchdog: {e}"))?;
        m.process = Some(child);
        m.watchdog = Some(watchdog);
        Ok(())
    }

    fn wait_healthy(&mut self, i: usize) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let m = &mut self.members[i];
            if let Some(p) = m.process.as_mut()
                && let Ok(Some(status)) = p.try_wait()
            {
                return Err(format!(
                    "etcd member {} exited with {status} while starting; log:\n{}",
                    m.name,
                    tail(&m.log)
                ));
            }
            if health(m.client_port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "etcd member {} not healthy after {START_TIMEOUT:?}; log:\n{}",
                    m.name,
                    tail(&m.log)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Client URLs of every member, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    /// The client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].client_url()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Kills member `i` at once (SIGKILL: no clean shutdown, as in a crash).
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts member `i` again on its ports and data directory, and waits until it is healthy.
    /// With `wait == false` it returns at once (for restarting a whole cluster, whose members
    /// only become healthy together).
    pub fn restart(&mut self, i: usize, wait: bool) -> Result<(), String> {
        self.members[i].kill();
        self.spawn(i)?;
        if wait {
            self.wait_healthy(i)?;
        }
        Ok(())
    }

    /// Waits until member `i` is healthy.
    pub fn wait(&mut self, i: usize) -> Result<(), String> {
        self.wait_healthy(i)
    }

    /// Whether member `i` is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].process.is_some()
    }

    /// The index of the current leader, asking each running member's `/v3/maintenance/status`.
    pub fn leader(&self) -> Option<usize> {
        for m in self.members.iter().filter(|m| m.process.is_some()) {
            let Some(body) = http_post(m.client_port, "/v3/maintenance/status", "{}") else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
                continue;
            };
            let member_id = v["header"]["member_id"].as_str().unwrap_or_default();
            let leader = v["leader"].as_str().unwrap_or_default();
            if !leader.is_empty() && member_id == leader {
                return self.members.iter().position(|x| x.name == m.name);
            }
        }
        None
    }

    /// The leader, asking until `timeout`: on a busy machine a member may miss heartbeats and
    /// start an election, during which no member is leader.
    pub fn wait_leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let leader = self.leader();
            if leader.is_some() || Instant::now() > deadline {
                return leader;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The log of member `i` (for failure messages).
    pub fn log(&self, i: usize) -> String {
        tail(&self.members[i].log)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn http(port: u16, request: &str) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (_, body) = out.split_once("\r\n\r\n")?;
    Some(body.to_string())
}

fn http_post(port: u16, path: &str, body: &str) -> Option<String> {
    http(
        port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// etcd's `/health` says `"health":"true"`.
fn health(port: u16) -> bool {
    http(
        port,
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .is_some_and(|b| b.contains("\"health\":\"true\""))
}

/// One member of a test cluster, as its command line names it: a loopback member here, or one
/// in its own network namespace ([`crate::partition`]).
pub(crate) trait ClusterMember {
    fn name(&self) -> &str;
    fn data_dir(&self) -> &Path;
    /// Where etcd's stdout and stderr go (appended: a restarted member keeps its history).
    fn log(&self) -> &Path;
    fn client_url(&self) -> String;
    fn peer_url(&self) -> String;
}

/// What every member of one test cluster has on its command line.
pub(crate) struct ClusterArgs<'a> {
    pub binary: &'a Path,
    pub token: &'a str,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    pub extra_args: &'a [String],
}

/// The command that starts member `i` of a test cluster: the one place its command line is
/// written, for the loopback clusters here and the namespaced ones of [`crate::partition`].
/// A member whose data directory exists rejoins (`existing`); otherwise it is new.
pub(crate) fn member_command(
    cluster: &ClusterArgs<'_>,
    members: &[impl ClusterMember],
    i: usize,
) -> Result<Command, String> {
    let m = &members[i];
    let initial_cluster = members
        .iter()
        .map(|m| format!("{}={}", m.name(), m.peer_url()))
        .collect::<Vec<_>>()
        .join(",");
    let state = if m.data_dir().exists() {
        "existing"
    } else {
        "new"
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(m.log())
        .map_err(|e| format!("open {}: {e}", m.log().display()))?;
    let mut cmd = Command::new(cluster.binary);
    cmd.arg("--name")
        .arg(m.name())
        .arg("--data-dir")
        .arg(m.data_dir())
        .arg("--listen-client-urls")
        .arg(m.client_url())
        .arg("--advertise-client-urls")
        .arg(m.client_url())
        .arg("--listen-peer-urls")
        .arg(m.peer_url())
        .arg("--initial-advertise-peer-urls")
        .arg(m.peer_url())
        .arg("--initial-cluster")
        .arg(initial_cluster)
        .arg("--initial-cluster-state")
        .arg(state)
        .arg("--initial-cluster-token")
        .arg(cluster.token)
        .arg("--heartbeat-interval")
        .arg(cluster.heartbeat_ms.to_string())
        .arg("--election-timeout")
        .arg(cluster.election_ms.to_string())
        .arg("--logger")
        .arg("zap")
        .args(cluster.extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
        .stderr(Stdio::from(log));
    Ok(cmd)
}
