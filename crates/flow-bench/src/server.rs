//! The API under test as a process of its own, so its memory (peak RSS) and CPU time can be read
//! from `/proc` without the load generator's counted in.
//!
//! By default the process is this executable re-run with [`SERVE_ENV`] set, which makes it run
//! `flowpipe_api::server::run()`: the `flow-api` program itself, built in the same profile and at
//! the same commit as the benchmark (a `flow-api` found next to the executable could be stale,
//! since `cargo run -p flow-bench` does not rebuild it). `--server-bin` runs another binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flowpipe_testkit::free_port;

use crate::raw::BenchResult;

/// Set in the environment of the server process: "be flow-api".
pub const SERVE_ENV: &str = "FLOW_BENCH_SERVE_AS_FLOW_API";

/// A running API server process; killed on drop.
pub struct ApiProcess {
    child: Option<Child>,
    watchdog: Option<Child>,
    pub pid: u32,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub log: PathBuf,
}

impl ApiProcess {
    /// Starts the server on free loopback ports against `endpoints` and waits until `/readyz`
    /// answers 200.
    pub async fn start(
        endpoints: &[String],
        bin: Option<&Path>,
        log_filter: Option<&str>,
        log: PathBuf,
        env: &[(&str, String)],
    ) -> BenchResult<ApiProcess> {
        let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let grpc: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = match bin {
            Some(b) => Command::new(b),
            None => {
                let mut c = Command::new(&exe);
                c.env(SERVE_ENV, "1");
                c
            }
        };
        cmd.arg("--etcd")
            .arg(endpoints.join(","))
            .arg("--http-addr")
            .arg(http.to_string())
            .arg("--grpc-addr")
            .arg(grpc.to_string());
        if let Some(f) = log_filter {
            cmd.env("RUST_LOG", f);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                log_file.try_clone().map_err(|e| e.to_string())?,
            ))
            .stderr(Stdio::from(log_file))
            .spawn()
            .map_err(|e| format!("cannot start the API server: {e}"))?;
        let pid = child.id();
        // If the benchmark dies without dropping this (SIGKILL), the server must not linger.
        let watchdog = flowpipe_testkit::watchdog(pid, &format!("kill -9 {pid} 2>/dev/null")).ok();
        let mut p = ApiProcess {
            child: Some(child),
            watchdog,
            pid,
            http,
            grpc,
            log,
        };
        p.wait_ready().await?;
        Ok(p)
    }

    async fn wait_ready(&mut self) -> BenchResult<()> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "the API server exited with {status}; log {}:\n{}",
                    self.log.display(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ));
            }
            if let Ok(r) = client
                .get(format!("http://{}/readyz", self.http))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the API server was not ready after 30s; log {}",
                    self.log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server as an orchestrator does (SIGTERM) and waits up to 30 s for it to drain
    /// and flush its telemetry.
    pub fn stop_gracefully(mut self) -> BenchResult<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("the API server exited with {status}"))
                };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("the API server did not stop within 30s of SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Current resident set size, KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        status_field(self.pid, "VmRSS:")
    }

    /// Peak resident set size over the process's life (VmHWM), KiB.
    pub fn hwm_kib(&self) -> Option<u64> {
        status_field(self.pid, "VmHWM:")
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        for c in [self.child.take(), self.watchdog.take()]
            .into_iter()
            .flatten()
        {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// A process's CPU time at one moment, read again after a measured window: what the process
/// used during it.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    pid: u32,
    at: Duration,
}

impl CpuMark {
    /// `pid`'s CPU time now; `None` without a pid or when its `/proc` entry cannot be read.
    pub fn now(pid: Option<u32>) -> Option<CpuMark> {
        let pid = pid?;
        Some(CpuMark {
            pid,
            at: cpu_time(pid)?,
        })
    }

    /// The CPU time the process used since the mark.
    pub fn used(&self) -> Option<Duration> {
        cpu_time(self.pid)?.checked_sub(self.at)
    }

    /// The CPU µs the process used since the mark per operation, over `ops` operations.
    pub fn us_per_op(&self, ops: u64) -> Option<f64> {
        Some(us_per_op(self.used()?, ops))
    }
}

/// `cpu` as µs per operation over `ops` operations (none counts as one).
pub fn us_per_op(cpu: Duration, ops: u64) -> f64 {
    cpu.as_secs_f64() * 1e6 / ops.max(1) as f64
}

/// utime + stime of `/proc/<pid>/stat`, in clock ticks of 1/100 s (USER_HZ is 100 on every
/// Linux architecture this runs on).
fn cpu_time(pid: u32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Samples a process's VmRSS every 10 ms on a thread of its own, keeping the peak since the last
/// [`RssSampler::take_peak`].
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kib) = status_field(pid, "VmRSS:") {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        RssSampler {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// The highest VmRSS (KiB) seen since the previous call.
    pub fn take_peak(&self) -> u64 {
        self.peak.swap(0, Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
