//! The partition harness itself: start, cut (silent), heal, leader, kill, teardown (also after
//! SIGKILL of the test process), the sweep of leftovers, the delaying proxy, a process in the API
//! namespace reached through the portal. Needs root, iproute2, nftables and etcd (`make test`
//! installs them); without them these tests fail, saying what is missing.

use std::process::Command;
use std::time::{Duration, Instant};

use flowpipe_testkit::delay_proxy::DelayProxy;
use flowpipe_testkit::partition::{NetCluster, Node, PREFIX, sweep_leftovers};

fn netns_list() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// TCP connect from the API namespace to member `i`, with a short timeout.
async fn api_reaches(c: &NetCluster, i: usize) -> bool {
    let addr = c.member_addr(i);
    c.in_api(async move {
        tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_cut_heal_and_teardown() {
    let c = tokio::task::spawn_blocking(NetCluster::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("cluster started in {:?}", c.started_in());
    let names = c.namespaces();
    assert_eq!(names.len(), 5);
    for n in &names {
        assert!(n.starts_with(PREFIX) && netns_list().contains(n), "{n}");
    }
    // Host namespace untouched: no interface and no nft table of ours there.
    let host_links = String::from_utf8(
        Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        !host_links.contains("p-api") && !host_links.contains("br0"),
        "{host_links}"
    );
    let host_nft = String::from_utf8(
        Command::new("nft")
            .args(["list", "ruleset"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(!host_nft.contains("fpnet"), "{host_nft}");

    let leader = c.leader().expect("leader");
    for i in 0..3 {
        assert!(api_reaches(&c, i).await, "API reaches m{i} before any cut");
    }
    let mut c = c;
    c.cut(Node::Api, Node::Member(leader)).unwrap();
    assert!(!api_reaches(&c, leader).await, "cut link is silent");
    for i in (0..3).filter(|&i| i != leader) {
        assert!(api_reaches(&c, i).await, "other links stay up");
    }
    // The leader still answers in its own namespace (cuts are in the hub only).
    assert_eq!(c.leader(), Some(leader));
    c.heal().unwrap();
    assert!(api_reaches(&c, leader).await, "healed");

    // Isolate the leader from its peers: the others elect a new one.
    let t = Instant::now();
    c.cut_all(&[
        (Node::Member(leader), Node::Member((leader + 1) % 3)),
        (Node::Member(leader), Node::Member((leader + 2) % 3)),
    ])
    .unwrap();
    let new_leader = loop {
        let l = tokio::task::block_in_place(|| c.wait_leader(Duration::from_secs(10))).unwrap();
        if l != leader {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("new leader m{new_leader} after {:?}", t.elapsed());
    c.heal().unwrap();

    // Kill and restart a member.
    c.kill(new_leader);
    assert!(!c.is_running(new_leader));
    let l2 = tokio::task::block_in_place(|| c.wait_leader(Duration::from_secs(10))).unwrap();
    assert_ne!(l2, new_leader);
    tokio::task::block_in_place(|| c.restart(new_leader, true)).unwrap();

    let dir = c.data_dir().to_path_buf();
    let t = Instant::now();
    drop(c);
    eprintln!("teardown in {:?}", t.elapsed());
    for n in &names {
        assert!(!netns_list().contains(n), "{n} removed");
    }
    assert!(!dir.exists());
}

/// A child process that starts a cluster and is SIGKILLed: the watchdog removes everything.
#[test]
fn sigkill_of_the_owner_tears_down() {
    if std::env::var_os("FPNET_CHILD").is_some() {
        let c = NetCluster::start().unwrap_or_else(|e| panic!("{e}"));
        println!("READY {}", c.prefix());
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "sigkill_of_the_owner_tears_down",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FPNET_CHILD", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut prefix = None;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some((_, p)) = line.split_once("READY ") {
            prefix = Some(p.to_string());
            break;
        }
    }
    // Kill the child however this test ends.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(child);
    let prefix = prefix.expect("child started a cluster");
    let ours = || {
        netns_list()
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .count()
    };
    assert_eq!(ours(), 5);
    let etcd_pids = || {
        let out = Command::new("pgrep")
            .args(["-f", "--", &format!("--initial-cluster-token {prefix}")])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().lines().count()
    };
    assert_eq!(etcd_pids(), 3);
    let t = Instant::now();
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    let dir = std::env::temp_dir().join(&prefix);
    while ours() > 0 || etcd_pids() > 0 || dir.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "leftovers after SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("teardown after SIGKILL took {:?}", t.elapsed());
}

/// Leftovers of a dead owner (as if its watchdog had been killed too) are swept by name.
#[test]
fn sweep_removes_leftovers_of_dead_owners() {
    // A pid that is not running now (pid_max is far above this) with a made-up start time.
    let name = format!("{PREFIX}4000000-1-0-hub");
    let alive = format!("{PREFIX}{}-1-0-hub", std::process::id()); // our pid, wrong start time: dead too
    Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .unwrap();
    Command::new("ip")
        .args(["netns", "add", &alive])
        .status()
        .unwrap();
    // Every NetCluster::start sweeps too, so a test running beside this one may have swept
    // them first: what counts is that they are gone.
    let removed = sweep_leftovers();
    let left = netns_list();
    assert!(
        !left.contains(&name) && !left.contains(&alive),
        "swept {removed:?}, left {left:?}"
    );
}

#[tokio::test]
async fn delay_proxy_adds_latency_without_limiting_pipelining() {
    // An echo server on loopback.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = echo.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let p = DelayProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        echo_addr,
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(p.local_addr())
        .await
        .unwrap();
    s.set_nodelay(true).unwrap();
    // One round trip: 200 ms each way.
    let t = Instant::now();
    s.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    let rtt = t.elapsed();
    eprintln!("round trip through the proxy: {rtt:?}");
    assert!(rtt >= Duration::from_millis(400), "{rtt:?}");
    // Ten messages 20 ms apart: all back ~400 ms after each was sent (not 10 x 400 ms).
    let (mut r, mut w) = s.into_split();
    let t = Instant::now();
    let sender = tokio::spawn(async move {
        for i in 0..10u8 {
            w.write_all(&[i]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        w
    });
    let mut arrivals = vec![];
    for _ in 0..10 {
        let mut b = [0u8; 1];
        r.read_exact(&mut b).await.unwrap();
        arrivals.push(t.elapsed());
    }
    let _w = sender.await.unwrap();
    eprintln!("arrivals {arrivals:?}");
    assert!(arrivals[0] >= Duration::from_millis(400));
    // Sequential forwarding would take 10 x 400 ms; pipelined it is 400 + 180 ms, plus whatever
    // a loaded machine adds, far from 4 s either way.
    assert!(
        arrivals[9] < Duration::from_millis(2500),
        "pipelined: {:?}",
        arrivals[9]
    );
    // Delay changed at run time.
    p.set_delay(Duration::ZERO);
    let mut s = tokio::net::TcpStream::connect(p.local_addr())
        .await
        .unwrap();
    let t = Instant::now();
    s.write_all(b"y").await.unwrap();
    s.read_exact(&mut b).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
}

/// The API as a separate process in its namespace (the test binary itself in server mode),
/// reached by the test through the portal; the teardown kills it.
#[test]
fn api_process_is_reached_through_the_portal() {
    if std::env::var_os("FPNET_API_SERVER").is_some() {
        // Server mode: say which netns we are in, then echo.
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:7000").unwrap();
        for s in l.incoming() {
            let mut s = s.unwrap();
            let ino = std::fs::metadata("/proc/self/ns/net")
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .unwrap();
            writeln!(s, "netns {ino}").unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
        }
        return;
    }
    use std::io::{BufRead, Read, Write};
    let c = NetCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "api_process_is_reached_through_the_portal",
        "--exact",
        "--test-threads=1",
    ])
    .env("FPNET_API_SERVER", "1")
    .stdout(std::process::Stdio::null());
    let mut server = c.spawn_in_api(cmd).unwrap();
    let portal = c.portal("127.0.0.1:7000".parse().unwrap()).unwrap();
    assert!(portal.ip().is_loopback());
    let t = Instant::now();
    let mut s = loop {
        // The server may not listen yet: the portal then closes the connection at once.
        if let Ok(s) = std::net::TcpStream::connect(portal) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut line = String::new();
            let mut r = std::io::BufReader::new(s.try_clone().unwrap());
            if r.read_line(&mut line).is_ok() && line.starts_with("netns ") {
                let host = std::fs::metadata("/proc/self/ns/net")
                    .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                    .unwrap();
                let ino: u64 = line.trim()["netns ".len()..].parse().unwrap();
                assert_ne!(
                    ino, host,
                    "the server runs in the API namespace, not the host's"
                );
                break s;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "server never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    s.write_all(b"hello").unwrap();
    let mut b = [0u8; 5];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hello");
    let pid = server.id();
    drop(c);
    // The teardown killed the process in the API namespace.
    let status = server.wait().unwrap();
    assert!(!status.success(), "killed: {status:?}");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}
