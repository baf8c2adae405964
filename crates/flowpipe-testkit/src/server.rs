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
