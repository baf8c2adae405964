//! Network-partition harness: a real etcd cluster whose members, and the API, each live in their
//! own network namespace, joined by veth pairs on a bridge in a "hub" namespace. A link is cut by
//! an nftables drop rule in the hub's bridge (packets vanish silently, as in a real partition:
//! no RST, no ICMP, no local send error), never by closing sockets.
//!
//! ```text
//!             hub namespace: br0 + table bridge fpnet { chain cut }
//!      p-api        p-m0        p-m1        p-m2        (veth ends on br0)
//!        |            |           |           |
//!   api: eth0     m0: eth0    m1: eth0    m2: eth0      (one namespace each)
//!   10.x.y.100    10.x.y.10   10.x.y.11   10.x.y.12
//! ```
//!
//! Needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN for `setns`), `ip` (iproute2), `nft` (nftables) and
//! etcd (`$ETCD_BIN`, else `etcd` on `PATH`, else `/usr/bin/etcd`); `make test` installs them.
//! [`NetCluster::start`] fails with what is missing: the partition tests never skip.
//!
//! The host namespace is never touched: no interface, route, address or nft rule is added there.
//! The namespaces have no default route and no link to the host, so no packet the cluster or the
//! API sends can leave them. The other way round, the members' private addresses must never be
//! used from a thread of the host namespace (there they would go out through the host's default
//! route, to a network that is not ours): only the API runtime, processes started in the API
//! namespace and the members' own namespaces use them, and every thread that is to be in a
//! namespace checks that it is before it does anything ([`NetNs::runtime`], [`NetNs::spawn`]).
//!
//! # How the test talks to the API
//! The test process stays in the host namespace. [`NetCluster::api_runtime`] is a tokio runtime
//! whose every thread (workers and blocking pool) has `setns`'d into the API namespace before it
//! runs anything: a socket's namespace is fixed when the socket is created, so everything spawned
//! there (an `etcd_client::Client`, an in-process API server, the delay proxies) opens its sockets
//! in the API namespace, and the test awaits the `JoinHandle`s from its own runtime. An API server
//! run as a separate binary is started with [`NetCluster::spawn_in_api`] (spawned from a thread
//! that has entered the namespace: a child inherits the namespaces of the thread that forks it)
//! and reached from the test through [`NetCluster::portal`]: a listener on the host's 127.0.0.1
//! whose upstream sockets are made in the API namespace.
//!
//! `ip netns exec` and `ip -n` are not used: they also unshare the mount namespace and remount
//! `/sys`, which fails in a chroot whose `/` is not a mount point (`../shared/fresh-machine`).
//!
//! # Teardown
//! Every name is `fpnet-<pid>-<pid start time>-<seq>-<role>`, unique per process and cluster.
//! Teardown is done by one `sh` watchdog per cluster, started (in its own process group, so a
//! Ctrl-C or `timeout` aimed at the test's group does not reach it) before the first namespace
//! exists. It blocks
//! reading a pipe from the test process; the read returns when the pipe's write end closes: on
//! `Drop`, or when the kernel closes it because the test process died (panic=abort, SIGKILL, OOM).
//! Then it kills every process in the cluster's namespaces, deletes them (veths and the bridge go
//! with them) and removes the data directory. `Drop` uses the same path, so every passing test
//! also exercises the crash path. [`sweep_leftovers`] (run by every `start`) removes what a run
//! whose watchdog was itself killed left behind: namespaces and directories with the prefix whose
//! owner pid is gone (or is a different process with the same pid).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::delay_proxy::DelayProxy;
use crate::etcd::{ClusterArgs, ClusterMember, member_command};

/// The prefix of every namespace and directory this harness creates.
pub const PREFIX: &str = "fpnet-";
const NETNS_DIR: &str = "/run/netns";
/// etcd's ports inside each member's namespace (each member has its own, so they are fixed).
pub const CLIENT_PORT: u16 = 2379;
/// etcd's peer port inside each member's namespace.
pub const PEER_PORT: u16 = 2380;
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Candidate /24s; the first one that no host route or address overlaps is used. The cluster
/// never reaches the host, so this only avoids confusion (a packet capture on the host can never
/// show them).
const SUBNETS: [[u8; 3]; 4] = [[10, 213, 77], [10, 231, 19], [172, 30, 213], [172, 29, 77]];

/// What the harness's fallible operations return: the error says what failed and how to fix it.
pub type Result<T> = std::result::Result<T, String>;

/// One end of a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    /// The API's namespace.
    Api,
    /// Member `i`'s namespace.
    Member(usize),
}

/// A named network namespace (`/run/netns/<name>`) and an open fd on it.
pub struct NetNs {
    name: String,
    file: Arc<File>,
}

impl NetNs {
    fn add(name: &str) -> Result<NetNs> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "add", name]);
        checked(&format!("ip netns add {name}"), cmd.output())?;
        NetNs::open(name)
    }

    fn open(name: &str) -> Result<NetNs> {
        let path = Path::new(NETNS_DIR).join(name);
        let file = File::open(&path).map_err(|e| format!("open {}: {e}", path.display()))?;
        Ok(NetNs {
            name: name.to_string(),
            file: Arc::new(file),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's inode (what `/proc/<pid>/task/<tid>/ns/net` links to).
    pub fn inode(&self) -> u64 {
        self.file.metadata().map(|m| m.ino()).unwrap_or(0)
    }

    /// Moves the calling thread into this namespace for good (use a dedicated thread), and
    /// checks that it is there.
    pub fn enter_current_thread(&self) -> std::io::Result<()> {
        enter(&self.file, self.inode())
    }

    /// Runs `f` on a new thread that is in this namespace (checked first), and returns what it
    /// returns: sockets and child processes it makes belong to this namespace.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let (file, inode) = (self.file.clone(), self.inode());
        std::thread::spawn(move || {
            enter(&file, inode)?;
            f()
        })
        .join()
        .map_err(|_| std::io::Error::other("namespace thread panicked"))?
    }

    /// Starts `cmd` in this namespace: it is spawned from a thread that entered the namespace
    /// (a child inherits the namespaces of the thread that forks it), so unlike `ip netns exec`
    /// it needs no mount namespace, and its pid is the program's.
    pub fn spawn(&self, mut cmd: Command) -> std::io::Result<Child> {
        self.run(move || cmd.spawn())
    }

    /// Runs `cmd` to completion in this namespace.
    pub fn output(&self, mut cmd: Command) -> std::io::Result<Output> {
        self.run(move || cmd.output())
    }

    /// Runs `cmd` in this namespace with `input` on its stdin; its stdout is discarded.
    fn output_with_stdin(&self, mut cmd: Command, input: String) -> std::io::Result<Output> {
        self.run(move || {
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            child
                .stdin
                .take()
                .expect("piped stdin")
                .write_all(input.as_bytes())?;
            child.wait_with_output()
        })
    }

    /// A blocking TCP connection made from inside this namespace (on a short-lived thread, so
    /// the caller's thread stays where it is). The stream keeps its namespace wherever it is used.
    pub fn connect(&self, addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
        self.run(move || TcpStream::connect_timeout(&addr, timeout))
    }

    /// A tokio multi-thread runtime whose threads all run in this namespace. If a thread cannot
    /// enter it, the process aborts: no thread of it may ever send from the host namespace.
    pub fn runtime(&self, threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
        let (file, inode) = (self.file.clone(), self.inode());
        let name = self.name.clone();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(format!("{}-rt", self.name))
            .enable_all()
            .on_thread_start(move || {
                if let Err(e) = enter(&file, inode) {
                    eprintln!("fpnet: cannot enter network namespace {name}: {e}; aborting");
                    std::process::abort();
                }
            })
            .build()
    }
}

/// Moves the calling thread into the network namespace `file` (whose inode is `inode`) and
/// checks that it got there (and so is not in the host namespace any more).
fn enter(file: &File, inode: u64) -> std::io::Result<()> {
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )?;
    let now = current_thread_netns();
    if now != inode || now == process_netns() {
        return Err(std::io::Error::other(format!(
            "this thread is in network namespace {now} after setns, not {inode}"
        )));
    }
    Ok(())
}

/// The network namespace inode of the calling thread.
pub fn current_thread_netns() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// The network namespace inode of the process's main thread (the host namespace for a test).
pub fn process_netns() -> u64 {
    std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino())
        .unwrap_or(0)
}

struct Member {
    name: String,
    ip: Ipv4Addr,
    ns: NetNs,
    data_dir: PathBuf,
    log: PathBuf,
    process: Option<Child>,
    id: u64,
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
        format!("http://{}:{CLIENT_PORT}", self.ip)
    }
    fn peer_url(&self) -> String {
        format!("http://{}:{PEER_PORT}", self.ip)
    }
}

/// What one member says about itself (`/v3/maintenance/status`).
#[derive(Clone, Debug)]
pub struct MemberStatus {
    /// The member's index.
    pub member: usize,
    /// Its etcd member id.
    pub id: u64,
    /// The id of the member it takes for the leader (0: none).
    pub leader_id: u64,
    /// Its raft term.
    pub raft_term: u64,
    /// Its raft index.
    pub raft_index: u64,
}

/// Options for [`NetCluster::start_with`].
#[derive(Clone, Debug)]
pub struct Options {
    /// How many etcd members (3).
    pub members: usize,
    /// etcd's `--heartbeat-interval` in ms (50, as [`crate::EtcdCluster`]).
    pub heartbeat_ms: u64,
    /// etcd's `--election-timeout` in ms (500, as [`crate::EtcdCluster`]).
    pub election_ms: u64,
    /// More etcd flags for every member.
    pub extra_args: Vec<String>,
    /// Worker threads of the API runtime.
    pub api_threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            members: 3,
            heartbeat_ms: 50,
            election_ms: 500,
            extra_args: vec![],
            api_threads: 2,
        }
    }
}

/// A partitionable etcd cluster plus an API namespace. See the module docs.
pub struct NetCluster {
    prefix: String,
    subnet: [u8; 3],
    dir: PathBuf,
    binary: PathBuf,
    token: String,
    options: Options,
    hub: NetNs,
    api: NetNs,
    members: Vec<Member>,
    cuts: BTreeSet<(Node, Node)>,
    api_rt: Option<tokio::runtime::Runtime>,
    watchdog: Option<(Child, ChildStdin)>,
    started_in: Duration,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl NetCluster {
    /// A 3-member cluster with the testkit's election settings.
    pub fn start() -> Result<NetCluster> {
        Self::start_with(Options::default())
    }

    /// Creates the namespaces and links, starts etcd in them and waits until every member is
    /// healthy and a leader is agreed. Blocking (call it from `spawn_blocking` in async tests,
    /// or before building the test's runtime).
    pub fn start_with(options: Options) -> Result<NetCluster> {
        let t0 = Instant::now();
        check_environment()?;
        sweep_leftovers();
        let binary = crate::etcd_binary()?;
        let pid = std::process::id();
        let prefix = format!(
            "{PREFIX}{pid}-{}-{}",
            start_time(pid).ok_or("cannot read this process's start time")?,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let subnet = free_subnet()?;
        let dir = std::env::temp_dir().join(&prefix);
        let ns_names: Vec<String> = ["hub".to_string(), "api".to_string()]
            .into_iter()
            .chain((0..options.members).map(|i| format!("m{i}")))
            .map(|role| format!("{prefix}-{role}"))
            .collect();
        // The watchdog exists before anything it must remove.
        let watchdog = spawn_watchdog(&ns_names, &dir)?;
        let mut guard = SetupGuard {
            watchdog: Some(watchdog),
        };
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;

        let hub = NetNs::add(&ns_names[0])?;
        let api = NetNs::add(&ns_names[1])?;
        let mut members = Vec::new();
        for i in 0..options.members {
            members.push(Member {
                name: format!("m{i}"),
                ip: Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 10 + i as u8),
                ns: NetNs::add(&ns_names[2 + i])?,
                data_dir: dir.join(format!("m{i}.etcd")),
                log: dir.join(format!("m{i}.log")),
                process: None,
                id: 0,
            });
        }
        // The bridge and the cut table, in the hub. Bridge-family rules see every frame between
        // two ports; a dropped frame just vanishes.
        ip_batch(
            &hub,
            "link add br0 type bridge\nlink set br0 up\nlink set lo up\n",
        )?;
        nft(
            &hub,
            "table bridge fpnet {\n chain cut { type filter hook forward priority 0; policy accept; }\n}\n",
        )?;
        let mut hub_cmds = String::new();
        for (ns, port) in std::iter::once((&api, "p-api".to_string()))
            .chain(members.iter().map(|m| (&m.ns, format!("p-{}", m.name))))
        {
            hub_cmds += &format!(
                "link add {port} type veth peer name eth0 netns {ns}\nlink set {port} master br0 up\n",
                ns = ns.name
            );
        }
        ip_batch(&hub, &hub_cmds)?;
        let configure = |ns: &NetNs, ip: Ipv4Addr| {
            ip_batch(
                ns,
                &format!("link set lo up\naddr add {ip}/24 dev eth0\nlink set eth0 up\n"),
            )
        };
        configure(&api, api_ip(subnet))?;
        for m in &members {
            configure(&m.ns, m.ip)?;
        }

        let api_rt = api
            .runtime(options.api_threads)
            .map_err(|e| format!("cannot build the API runtime: {e}"))?;
        let mut cluster = NetCluster {
            token: prefix.clone(),
            prefix,
            subnet,
            dir,
            binary,
            options,
            hub,
            api,
            members,
            cuts: BTreeSet::new(),
            api_rt: Some(api_rt),
            watchdog: guard.watchdog.take(),
            started_in: Duration::ZERO,
        };
        // From here on, Drop tears everything down.
        drop(guard);
        cluster.verify_api_runtime()?;
        for i in 0..cluster.members.len() {
            cluster.spawn(i)?;
        }
        for i in 0..cluster.members.len() {
            cluster.wait_healthy(i)?;
        }
        for i in 0..cluster.members.len() {
            cluster.members[i].id = cluster
                .status(i)
                .ok_or_else(|| format!("no status from m{i}"))?
                .id;
        }
        cluster.wait_leader(START_TIMEOUT)?;
        cluster.started_in = t0.elapsed();
        Ok(cluster)
    }

    /// How long `start` took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The unique name prefix of this cluster's namespaces and directory.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The names of every namespace of this cluster.
    pub fn namespaces(&self) -> Vec<String> {
        [&self.hub, &self.api]
            .into_iter()
            .chain(self.members.iter().map(|m| &m.ns))
            .map(|n| n.name.clone())
            .collect()
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The API namespace's address.
    pub fn api_ip(&self) -> Ipv4Addr {
        api_ip(self.subnet)
    }

    pub fn member_ip(&self, i: usize) -> Ipv4Addr {
        self.members[i].ip
    }

    pub fn member_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.members[i].ip, CLIENT_PORT))
    }

    /// Client URLs of every member in member order. Use them only from the API runtime
    /// ([`NetCluster::in_api`]), a process started with [`NetCluster::spawn_in_api`] or a
    /// member command: from a thread of the host namespace these private addresses are not
    /// unreachable but go out through the host's default route, to a network that is not ours.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].client_url()
    }

    /// etcd's member id of member `i`.
    pub fn member_id(&self, i: usize) -> u64 {
        self.members[i].id
    }

    /// The member index of an etcd member id (e.g. from a response header).
    pub fn member_index(&self, id: u64) -> Option<usize> {
        self.members.iter().position(|m| m.id == id)
    }

    /// The runtime whose threads live in the API namespace: spawn the client (or API server)
    /// work there and await the handles from the test's own runtime.
    pub fn api_runtime(&self) -> &tokio::runtime::Handle {
        self.api_rt.as_ref().expect("api runtime").handle()
    }

    /// Spawns `fut` on the API runtime.
    pub fn in_api<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.api_runtime().spawn(fut)
    }

    /// Starts `cmd` (e.g. the real API server binary) in the API namespace. Processes in the
    /// namespace are killed by the teardown.
    pub fn spawn_in_api(&self, cmd: Command) -> Result<Child> {
        self.api
            .spawn(cmd)
            .map_err(|e| format!("cannot start a process in the API namespace: {e}"))
    }

    /// Runs `cmd` (e.g. `etcdctl`) to completion in member `i`'s namespace.
    pub fn member_output(&self, i: usize, cmd: Command) -> Result<Output> {
        self.members[i]
            .ns
            .output(cmd)
            .map_err(|e| format!("cannot run a command in m{i}'s namespace: {e}"))
    }

    /// Makes `target` (an address in the API namespace, e.g. the API server's port on
    /// 127.0.0.1 there) reachable from the test at the returned 127.0.0.1 address of the host
    /// namespace. Each accepted connection is forwarded over a socket made in the API namespace.
    /// Call it from a thread in the host namespace (any test thread).
    pub fn portal(&self, target: SocketAddr) -> Result<SocketAddr> {
        if current_thread_netns() != process_netns() {
            return Err("portal() must be called from a thread in the host namespace".into());
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        self.in_api(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("portal listener");
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(target).await {
                        let _ = down.set_nodelay(true);
                        let _ = up.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
            }
        });
        Ok(addr)
    }

    /// One [`DelayProxy`] per member, listening on 127.0.0.1 in the API namespace, forwarding to
    /// that member; returns their `http://` endpoints (in member order) and the proxies, whose
    /// delay can be changed at any time (e.g. 200 ms on the leader's for a slow leader). Cuts
    /// still apply: the proxies' upstream sockets are in the API namespace.
    pub async fn delay_proxies(&self, delay: Duration) -> Result<(Vec<String>, Vec<DelayProxy>)> {
        let mut urls = vec![];
        let mut proxies = vec![];
        for i in 0..self.members.len() {
            let upstream = self.member_addr(i);
            let p = self
                .in_api(async move {
                    DelayProxy::start("127.0.0.1:0".parse().unwrap(), upstream, delay).await
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("delay proxy: {e}"))?;
            urls.push(format!("http://{}", p.local_addr()));
            proxies.push(p);
        }
        Ok((urls, proxies))
    }

    fn ip_of(&self, n: Node) -> Ipv4Addr {
        match n {
            Node::Api => self.api_ip(),
            Node::Member(i) => self.members[i].ip,
        }
    }

    /// Drops every packet between `a` and `b`, both ways (existing connections stay open and
    /// go silent). Idempotent.
    pub fn cut(&mut self, a: Node, b: Node) -> Result<()> {
        self.set_cuts(&[(a, b)], true)
    }

    /// Cuts several links in one atomic nft transaction.
    pub fn cut_all(&mut self, links: &[(Node, Node)]) -> Result<()> {
        self.set_cuts(links, true)
    }

    /// Restores the link between `a` and `b`.
    pub fn uncut(&mut self, a: Node, b: Node) -> Result<()> {
        self.set_cuts(&[(a, b)], false)
    }

    /// Cuts `n` from every other node.
    pub fn isolate(&mut self, n: Node) -> Result<()> {
        let links: Vec<_> = self
            .nodes()
            .into_iter()
            .filter(|&o| o != n)
            .map(|o| (n, o))
            .collect();
        self.set_cuts(&links, true)
    }

    /// Restores every link.
    pub fn heal(&mut self) -> Result<()> {
        self.cuts.clear();
        self.apply_cuts()
    }

    /// The links cut now.
    pub fn cuts(&self) -> Vec<(Node, Node)> {
        self.cuts.iter().copied().collect()
    }

    fn nodes(&self) -> Vec<Node> {
        std::iter::once(Node::Api)
            .chain((0..self.members.len()).map(Node::Member))
            .collect()
    }

    fn set_cuts(&mut self, links: &[(Node, Node)], cut: bool) -> Result<()> {
        for &(a, b) in links {
            if a == b {
                return Err(format!("cannot cut {a:?} from itself"));
            }
            if let Node::Member(i) = a.max(b)
                && i >= self.members.len()
            {
                return Err(format!("no member {i}"));
            }
            let key = (a.min(b), a.max(b));
            if cut {
                self.cuts.insert(key);
            } else {
                self.cuts.remove(&key);
            }
        }
        self.apply_cuts()
    }

    /// Replaces the hub's cut chain with the current set, atomically (one nft transaction).
    fn apply_cuts(&self) -> Result<()> {
        let mut script = String::from("flush chain bridge fpnet cut\n");
        for &(a, b) in &self.cuts {
            let (x, y) = (self.ip_of(a), self.ip_of(b));
            script += &format!("add rule bridge fpnet cut ip saddr {x} ip daddr {y} drop\n");
            script += &format!("add rule bridge fpnet cut ip saddr {y} ip daddr {x} drop\n");
        }
        nft(&self.hub, &script)
    }

    /// The hub's ruleset as nft prints it (for failure messages).
    pub fn ruleset(&self) -> String {
        let mut cmd = Command::new("nft");
        cmd.args(["list", "ruleset"]);
        self.hub
            .output(cmd)
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn verify_api_runtime(&self) -> Result<()> {
        let want = self.api.inode();
        let (tx, rx) = std::sync::mpsc::channel();
        self.in_api(async move {
            let _ = tx.send(current_thread_netns());
        });
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        if got != want || got == process_netns() {
            return Err(format!(
                "API runtime thread is in netns {got}, expected {want}"
            ));
        }
        Ok(())
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let shared = ClusterArgs {
            binary: &self.binary,
            token: &self.token,
            heartbeat_ms: self.options.heartbeat_ms,
            election_ms: self.options.election_ms,
            extra_args: &self.options.extra_args,
        };
        let cmd = member_command(&shared, &self.members, i)?;
        let m = &mut self.members[i];
        let child =
            m.ns.spawn(cmd)
                .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        m.process = Some(child);
        Ok(())
    }

    fn wait_healthy(&mut self, i: usize) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let m = &mut self.members[i];
            if let Some(p) = m.process.as_mut()
                && let Ok(Some(status)) = p.try_wait()
            {
                return Err(format!(
                    "etcd {} exited with {status} while starting; log:\n{}",
                    m.name,
                    tail(&m.log)
                ));
            }
            if self
                .http(
                    i,
                    "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                )
                .is_some_and(|b| b.contains("\"health\":\"true\""))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let m = &self.members[i];
                return Err(format!(
                    "etcd {} not healthy after {START_TIMEOUT:?}; log:\n{}",
                    m.name,
                    tail(&m.log)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until member `i` is healthy (after `restart(i, false)`).
    pub fn wait(&mut self, i: usize) -> Result<()> {
        self.wait_healthy(i)
    }

    /// An HTTP/1.1 request to member `i`'s client port from inside its own namespace (over its
    /// loopback route, so cuts never affect it). Returns the body.
    fn http(&self, i: usize, request: &str) -> Option<String> {
        let m = &self.members[i];
        let addr = SocketAddr::V4(SocketAddrV4::new(m.ip, CLIENT_PORT));
        let mut s = m.ns.connect(addr, Duration::from_millis(500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(request.as_bytes()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let (_, body) = out.split_once("\r\n\r\n")?;
        Some(body.to_string())
    }

    /// What member `i` says about itself (None when it is down or does not answer in 2 s).
    pub fn status(&self, i: usize) -> Option<MemberStatus> {
        self.members[i].process.as_ref()?;
        let body = self.http(
            i,
            "POST /v3/maintenance/status HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        )?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let num =
            |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        Some(MemberStatus {
            member: i,
            id: num(&v["header"]["member_id"]),
            leader_id: num(&v["leader"]),
            raft_term: num(&v["raftTerm"]),
            raft_index: num(&v["raftIndex"]),
        })
    }

    /// The leader: of the members that say they lead, the one with the highest term (during a
    /// partition a deposed leader may still think it leads for up to an election timeout).
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len())
            .filter_map(|i| self.status(i))
            .filter(|s| s.id != 0 && s.id == s.leader_id)
            .max_by_key(|s| s.raft_term)
            .map(|s| s.member)
    }

    /// Waits until a majority of members agree on a leader that says it leads; returns it.
    pub fn wait_leader(&self, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let st: Vec<MemberStatus> = (0..self.members.len())
                .filter_map(|i| self.status(i))
                .collect();
            for s in &st {
                if s.id == s.leader_id
                    && st
                        .iter()
                        .filter(|o| o.leader_id == s.id && o.raft_term == s.raft_term)
                        .count()
                        > self.members.len() / 2
                {
                    return Ok(s.member);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no agreed leader after {timeout:?}: {st:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills member `i` at once (SIGKILL, as in a crash).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].process.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    /// Starts member `i` again on its data directory; with `wait`, until it is healthy.
    pub fn restart(&mut self, i: usize, wait: bool) -> Result<()> {
        self.kill(i);
        self.spawn(i)?;
        if wait {
            self.wait_healthy(i)?;
        }
        Ok(())
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].process.is_some()
    }

    /// The last 30 lines of member `i`'s log.
    pub fn log(&self, i: usize) -> String {
        tail(&self.members[i].log)
    }
}

impl Drop for NetCluster {
    fn drop(&mut self) {
        // Threads in the API namespace go first (shutdown_background is allowed in async code).
        if let Some(rt) = self.api_rt.take() {
            rt.shutdown_background();
        }
        for i in 0..self.members.len() {
            self.kill(i);
        }
        if let Some(w) = self.watchdog.take() {
            finish_watchdog(w);
        }
    }
}

/// Runs the watchdog when a `start` fails before the cluster value exists.
struct SetupGuard {
    watchdog: Option<(Child, ChildStdin)>,
}

impl Drop for SetupGuard {
    fn drop(&mut self) {
        if let Some(w) = self.watchdog.take() {
            finish_watchdog(w);
        }
    }
}

/// Closes the watchdog's pipe (it then tears down) and waits up to 20 s for it.
fn finish_watchdog((mut child, stdin): (Child, ChildStdin)) {
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("fpnet: watchdog {} still running after 20 s", child.id());
}

/// The teardown script for namespaces `names` and directory `dir`, run by `sh` once its stdin
/// reaches EOF. It never kills `owner` (the test process), whose main thread is in the host
/// namespace anyway. Last, when /run/netns is empty it unmounts it: `ip netns add` makes it a
/// bind mount of itself and nothing removes that, which in a chroot leaves a mount point under
/// the chroot's root (fresh-machine's final `rm -rf` of the root then fails). The umount is not
/// lazy, so it fails harmlessly (EBUSY) while any namespace is still mounted there.
fn teardown_script(names: &[String], dir: &Path, owner: u32) -> String {
    let names = names.join(" ");
    format!(
        "read _ignored\n\
         for ns in {names}; do\n\
           for p in $(ip netns pids $ns 2>/dev/null); do [ $p = {owner} ] || kill -9 $p 2>/dev/null; done\n\
         done\n\
         for ns in {names}; do\n\
           i=0; while [ -e {NETNS_DIR}/$ns ] && [ $i -lt 50 ]; do ip netns del $ns 2>/dev/null || sleep 0.1; i=$((i+1)); done\n\
         done\n\
         rm -rf '{dir}'\n\
         [ -d {NETNS_DIR} ] && [ -z \"$(ls -A {NETNS_DIR})\" ] && umount {NETNS_DIR} 2>/dev/null\n\
         exit 0\n",
        dir = dir.display()
    )
}

fn spawn_watchdog(names: &[String], dir: &Path) -> Result<(Child, ChildStdin)> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(teardown_script(names, dir, std::process::id()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Its own process group: a SIGINT/SIGTERM/SIGKILL sent to the test's process group
    // (Ctrl-C, `timeout`) does not reach it, so it outlives the test and cleans up.
    cmd.process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the teardown watchdog: {e}"))?;
    let stdin = child.stdin.take().expect("piped stdin");
    Ok((child, stdin))
}

/// Removes namespaces and directories of clusters whose owner process is gone: names
/// `fpnet-<pid>-<start time>-...` where no process `<pid>` with that start time exists.
/// Returns the namespace names removed.
pub fn sweep_leftovers() -> Vec<String> {
    let mut removed = vec![];
    let dead = |name: &str| -> bool {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            return false;
        };
        let mut parts = rest.split('-');
        let (Some(pid), Some(start)) = (parts.next(), parts.next()) else {
            return false;
        };
        let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
            return false;
        };
        start_time(pid) != Some(start)
    };
    if let Ok(entries) = std::fs::read_dir(NETNS_DIR) {
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| dead(n))
            .collect();
        names.sort();
        if !names.is_empty() {
            let script =
                teardown_script(&names, Path::new("/nonexistent-fpnet"), std::process::id());
            let _ = Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            removed = names;
        }
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            if let Ok(n) = e.file_name().into_string()
                && dead(&n)
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    removed
}

/// Field 22 of /proc/<pid>/stat (start time in clock ticks since boot): with the pid, it names
/// one process for the machine's uptime.
fn start_time(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

fn api_ip(subnet: [u8; 3]) -> Ipv4Addr {
    Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 100)
}

/// The first candidate /24 that no route of the host namespace (any table) covers or is
/// covered by, other than a default route.
fn free_subnet() -> Result<[u8; 3]> {
    let out = Command::new("ip")
        .args(["-4", "-o", "route", "show", "table", "all"])
        .output()
        .map_err(|e| format!("ip route: {e}"))?;
    let routes = String::from_utf8_lossy(&out.stdout);
    let nets: Vec<(u32, u32)> = routes
        .lines()
        .filter_map(|l| {
            let first = l
                .split_whitespace()
                .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
            let (a, len) = first.split_once('/').unwrap_or((first, "32"));
            let a: Ipv4Addr = a.parse().ok()?;
            let len: u32 = len.parse().ok()?;
            if len == 0 {
                return None;
            }
            Some((u32::from(a), len))
        })
        .collect();
    SUBNETS
        .into_iter()
        .find(|s| {
            let net = u32::from(Ipv4Addr::new(s[0], s[1], s[2], 0));
            !nets.iter().any(|&(a, len)| {
                let l = len.min(24);
                let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
                a & mask == net & mask
            })
        })
        .ok_or_else(|| "every candidate subnet overlaps a host route".to_string())
}

/// Fails early, with what to do, when the machine cannot run the harness.
pub fn check_environment() -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Err(
            "the partition tests need root (they make network namespaces and nftables rules); \
             run them as root"
                .into(),
        );
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        if Command::new(tool).arg("-V").output().is_err() {
            return Err(format!(
                "`{tool}` not found: the partition tests need it (`apt-get install {package}`, \
                 which `make test` does through scripts/ensure-tools.sh)"
            ));
        }
    }
    Ok(())
}

fn checked(what: &str, out: std::io::Result<Output>) -> Result<()> {
    let out = out.map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// `ip -batch -` with `commands`, run inside `ns`. Not `ip -n`: that (like `ip netns exec`)
/// also unshares the mount namespace and runs `mount --make-rslave /`, which fails with EINVAL
/// in a chroot whose / is not a mount point (../shared/fresh-machine).
fn ip_batch(ns: &NetNs, commands: &str) -> Result<()> {
    let mut cmd = Command::new("ip");
    cmd.args(["-batch", "-"]);
    checked(
        &format!("ip -batch in {} <<{commands:?}", ns.name),
        ns.output_with_stdin(cmd, commands.to_string()),
    )
}

/// `nft -f -` inside `ns` (one atomic transaction).
fn nft(ns: &NetNs, script: &str) -> Result<()> {
    let mut cmd = Command::new("nft");
    cmd.args(["-f", "-"]);
    checked(
        &format!("nft -f in {} <<{script:?}", ns.name),
        ns.output_with_stdin(cmd, script.to_string()),
    )
}

fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
