//! A TCP proxy that delays every chunk of bytes, in both directions, by a fixed time (for a
//! "slow link" without `tc netem`, which this kernel lacks).
//!
//! It adds latency, not a throughput limit: each chunk read is stamped with its arrival time and
//! written at `arrival + delay`, so chunks in flight overlap (pipelined requests on an HTTP/2
//! connection each see `delay`, not `n * delay`). The delay can be changed at any time; it
//! applies to chunks that arrive afterwards. Dropping the proxy closes the listener and every
//! connection. Runs on the runtime it is started on (start it on the API runtime of a
//! [`crate::partition::NetCluster`] to put its sockets in the API namespace).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// At most this many chunks wait in one direction; past it the proxy stops reading (so memory
/// stays bounded; with 64 KiB reads that is far beyond what a test sends in 200 ms).
const QUEUE: usize = 4096;

pub struct DelayProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    delay_us: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

enum Item {
    Chunk(Instant, Vec<u8>),
    Eof(Instant),
}

impl DelayProxy {
    /// Listens on `listen` (port 0 for any) and forwards each connection to `upstream`.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        delay: Duration,
    ) -> std::io::Result<DelayProxy> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let delay_us = Arc::new(AtomicU64::new(delay.as_micros() as u64));
        let d = delay_us.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((down, _)) = accepted else { continue };
                        let d = d.clone();
                        conns.spawn(async move {
                            // The upstream connect is not delayed: a SYN that gets no answer
                            // (a cut link) makes the client's connect time out as it would.
                            let Ok(up) = TcpStream::connect(upstream).await else { return };
                            let _ = down.set_nodelay(true);
                            let _ = up.set_nodelay(true);
                            let (dr, dw) = down.into_split();
                            let (ur, uw) = up.into_split();
                            let mut halves = JoinSet::new();
                            halves.spawn(pipe(dr, uw, d.clone()));
                            halves.spawn(pipe(ur, dw, d));
                            // An error in one direction ends the connection (both halves drop).
                            while let Some(r) = halves.join_next().await {
                                if !matches!(r, Ok(Ok(()))) {
                                    break;
                                }
                            }
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(DelayProxy {
            addr,
            upstream,
            delay_us,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_us
            .store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_us.load(Ordering::Relaxed))
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `r` to `w`, each chunk written `delay` after it was read. A reader task stamps and
/// queues; a writer task sleeps until each chunk's time, so chunks overlap in flight.
async fn pipe(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    delay_us: Arc<AtomicU64>,
) -> std::io::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Item>(QUEUE);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = r.read(&mut buf).await?;
            let due = Instant::now() + Duration::from_micros(delay_us.load(Ordering::Relaxed));
            let item = if n == 0 {
                Item::Eof(due)
            } else {
                Item::Chunk(due, buf[..n].to_vec())
            };
            let eof = n == 0;
            if tx.send(item).await.is_err() || eof {
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    let writer = async move {
        while let Some(item) = rx.recv().await {
            match item {
                Item::Chunk(due, bytes) => {
                    tokio::time::sleep_until(due).await;
                    w.write_all(&bytes).await?;
                }
                Item::Eof(due) => {
                    tokio::time::sleep_until(due).await;
                    w.shutdown().await?;
                    return Ok(());
                }
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let (a, b) = tokio::join!(reader, writer);
    a.and(b)
}
