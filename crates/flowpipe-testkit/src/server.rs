//! [`TestServer`]: the real server (REST and gRPC, exactly as `flow-api` serves them) on loopback
//! ports the OS chooses.

use std::net::SocketAddr;

use flowpipe_api::server::{Config, Server};
use flowpipe_store::Store;

/// A real server on loopback ports chosen by the OS; stopped on drop.
pub struct TestServer {
    /// The REST listener.
    pub http: SocketAddr,
    /// The gRPC listener.
    pub grpc: SocketAddr,
    /// The store it serves.
    pub store: Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Binds and serves `config` (opening its store).
    pub async fn start(config: Config) -> TestServer {
        Self::serve(Server::bind(config).await.expect("bind"))
    }

    /// Binds and serves `config` on `store` (a store the test wraps, e.g. to count round trips).
    pub async fn start_on(config: Config, store: Store) -> TestServer {
        Self::serve(Server::bind_with_store(config, store).await.expect("bind"))
    }

    fn serve(server: Server) -> TestServer {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let http = server.http_addr();
        let grpc = server.grpc_addr();
        let store = server.state().store().clone();
        let serving = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        TestServer {
            http,
            grpc,
            store,
            stop: Some(stop),
            serving: Some(serving),
        }
    }

    /// Stops the server and waits until it has drained.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.serving.take() {
            h.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The REST and gRPC addresses a `flow-api` process serves, read from its startup line
/// ("flow-api serving rest=http://127.0.0.1:41234 grpc=127.0.0.1:40123 ...", the text log
/// format); `None` until that line is in `log`. For tests that start the binary on port 0 and
/// need to know which ports the OS gave it.
pub fn serving_addrs(log: &str) -> Option<(SocketAddr, SocketAddr)> {
    let line = log.lines().find(|l| l.contains("flow-api serving"))?;
    let field = |key: &str| {
        let value = line.split_whitespace().find_map(|w| w.strip_prefix(key))?;
        let addr = value.rsplit("://").next()?;
        addr.parse::<SocketAddr>().ok()
    };
    Some((field("rest=")?, field("grpc=")?))
}

#[cfg(test)]
mod tests {
    use super::serving_addrs;

    #[test]
    fn serving_addrs_reads_the_startup_line() {
        let log = "2026-12-02T14:24:35Z  INFO flowpipe_api::server::serve: flow-api serving \
                   rest=https://127.0.0.1:34327 grpc=127.0.0.1:46863 (TLS) store=embedded \
                   store at /tmp/x env=\"-\" auth=\"disabled\"\n";
        let (rest, grpc) = serving_addrs(log).unwrap();
        assert_eq!(rest.to_string(), "127.0.0.1:34327");
        assert_eq!(grpc.to_string(), "127.0.0.1:46863");
        assert_eq!(serving_addrs("2026-12-02T14:24:35Z  INFO starting\n"), None);
    }
}
