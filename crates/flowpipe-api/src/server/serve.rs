//! Startup and graceful shutdown of the local server: REST and gRPC side by side over one
//! [`AppState`], both stopping on SIGINT/SIGTERM once their in-flight requests are done.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic_health::ServingStatus;

use flowpipe_store::Store;

use super::config::{Config, ConfigError};
use super::tls::TlsIdentity;
use crate::grpc::GrpcApi;
use crate::telemetry::{GrpcTelemetryLayer, Telemetry};
use crate::{AppState, router};

/// How long shutdown waits for in-flight requests before closing connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// A bound but not yet serving server: tests read the ports (bound on port 0) before serving.
pub struct Server {
    config: Config,
    state: AppState,
    http: TcpListener,
    grpc: TcpListener,
    telemetry: Telemetry,
}

async fn listen(what: &str, addr: SocketAddr) -> Result<TcpListener, ConfigError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ConfigError(format!("cannot listen for {what} on {addr}: {e}")))
}

impl Server {
    /// Opens the store and binds both listeners. Fails (one line) if the store cannot be opened
    /// or an address cannot be bound; an unreachable etcd is not a failure (see `/readyz`).
    pub async fn bind(config: Config) -> Result<Server, ConfigError> {
        let store = Store::open(config.store.clone())
            .map_err(|e| ConfigError(format!("cannot open the store: {e}")))?;
        Self::bind_with_store(config, store).await
    }

    /// As [`Server::bind`], on a store the caller opened (tests wrap one to count its round
    /// trips); `config.store` is not used.
    pub async fn bind_with_store(config: Config, store: Store) -> Result<Server, ConfigError> {
        Self::bind_with(config, store, Telemetry::disabled()).await
    }

    /// As [`Server::bind`], recording into `telemetry` (built by `crate::telemetry::init`),
    /// which [`Server::serve`] flushes and stops once both listeners have drained.
    pub async fn bind_with_telemetry(
        config: Config,
        telemetry: Telemetry,
    ) -> Result<Server, ConfigError> {
        let store = Store::open(config.store.clone())
            .map_err(|e| ConfigError(format!("cannot open the store: {e}")))?;
        Self::bind_with(config, store, telemetry).await
    }

    /// As [`Server::bind_with_store`], recording into `telemetry`.
    pub async fn bind_with(
        config: Config,
        store: Store,
        telemetry: Telemetry,
    ) -> Result<Server, ConfigError> {
        let state = AppState::with_telemetry(
            telemetry.instrument(store),
            config.http.clone(),
            config.api_key.clone(),
            telemetry.clone(),
        );
        let http = listen("REST", config.http_addr).await?;
        let grpc = listen("gRPC", config.grpc_addr).await?;
        Ok(Server {
            config,
            state,
            http,
            grpc,
            telemetry,
        })
    }

    /// The REST listener's address (the port the OS chose, for port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().unwrap_or(self.config.http_addr)
    }

    /// The gRPC listener's address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or(self.config.grpc_addr)
    }

    /// The state both listeners serve.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish (up to
    /// `DRAIN_TIMEOUT`, 20 s), then flushes and stops the telemetry.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop_tx = std::sync::Arc::new(stop_tx);
        let state = self.state.clone();
        let stopper = stop_tx.clone();
        tokio::spawn(async move {
            shutdown.await;
            // Readiness fails first, so load balancers stop sending new requests while the
            // in-flight ones finish.
            state.set_draining();
            let _ = stopper.send(true);
        });
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };

        let http_addr = self.http_addr();
        let grpc_addr = self.grpc_addr();
        let store = self.state.store().describe();
        tracing::info!(
            rest = %format!("{}://{http_addr}", if self.config.http_tls.is_some() { "https" } else { "http" }),
            grpc = %format!("{grpc_addr}{}", if self.config.grpc_tls.is_some() { " (TLS)" } else { "" }),
            store = %store,
            env = self.config.http.env.as_deref().unwrap_or("-"),
            auth = if self.config.api_key.is_some() { "api key" } else { "disabled" },
            "flow-api serving"
        );

        // The name index of ListFlows, if it is not ready yet (data of the original API): built
        // in the background, so readiness does not wait for it.
        let backfill = tokio::spawn(build_index(self.state.clone()));

        let rest = serve_rest(
            self.http,
            router(self.state.clone()),
            self.config.http_tls.clone(),
            stopped(stop_rx.clone()),
        );
        let grpc = serve_grpc(
            self.grpc,
            self.state.clone(),
            &self.config,
            stopped(stop_rx.clone()),
        );
        // Both listeners serve until the stop signal. If one fails first, the other is stopped
        // too: a half-up server would look healthy to whoever probes the other port.
        let both = async {
            tokio::pin!(rest, grpc);
            tokio::select! {
                r = &mut rest => {
                    let _ = stop_tx.send(true);
                    r.and(grpc.await)
                }
                g = &mut grpc => {
                    let _ = stop_tx.send(true);
                    g.and(rest.await)
                }
            }
        };
        // In-flight requests get DRAIN_TIMEOUT after the stop signal; then connections close.
        let deadline = async {
            stopped(stop_rx.clone()).await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        };
        let result = tokio::select! {
            r = both => r,
            _ = deadline => {
                tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; closing their connections");
                Ok(())
            }
        };
        backfill.abort();
        // After the drain, so the last requests' spans and metrics are in the final export.
        self.telemetry.shutdown().await;
        tracing::info!("flow-api stopped");
        result
    }
}

async fn serve_rest(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<TlsIdentity>,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        None => {
            // TCP_NODELAY for the same reason as on gRPC: a response must not wait for an ACK.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "could not set TCP_NODELAY");
                }
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
        Some(identity) => {
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                stopped.await;
                h.graceful_shutdown(Some(DRAIN_TIMEOUT));
            });
            axum_server::from_tcp_rustls(
                listener.into_std()?,
                axum_server::tls_rustls::RustlsConfig::from_config(identity.rustls_config()),
            )?
            .map(|tls| tls.acceptor(axum_server::accept::NoDelayAcceptor::new()))
            .handle(handle)
            .serve(app.into_make_service())
            .await
        }
    }
}

async fn serve_grpc(
    listener: TcpListener,
    state: AppState,
    config: &Config,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The server span, access log and call metrics (crate::telemetry::grpc); methods of any
    // other service share one `rpc.method` value.
    let telemetry = GrpcTelemetryLayer::new(state.telemetry()).with_services([
        "flowpipe.v1.FlowService",
        "flowpipe.v1.SchemaRegistryService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]);
    let (health, health_service) = tonic_health::server::health_reporter();
    // The API service is "serving" while its store answers; the process itself ("") always is.
    // Until the first probe answers it is known and not serving, never unknown (NOT_FOUND).
    for service in [
        "flowpipe.v1.FlowService",
        "flowpipe.v1.SchemaRegistryService",
    ] {
        health
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
    let probe = state.clone();
    let watch_health = tokio::spawn(async move {
        loop {
            let ping = tokio::time::timeout(Duration::from_secs(3), probe.store().ping());
            let status = match ping.await {
                Ok(Ok(())) if !probe.is_draining() => ServingStatus::Serving,
                _ => ServingStatus::NotServing,
            };
            health
                .set_service_status("flowpipe.v1.FlowService", status)
                .await;
            health
                .set_service_status("flowpipe.v1.SchemaRegistryService", status)
                .await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    let (flows, schemas) = GrpcApi::new(state).services();
    let (reflection_v1, reflection_v1alpha) = reflection();

    let mut builder = tonic::transport::Server::builder().timeout(config.http.request_timeout);
    if let Some(identity) = &config.grpc_tls {
        builder = builder
            .tls_config(
                tonic::transport::ServerTlsConfig::new().identity(identity.tonic_identity()),
            )
            .map_err(std::io::Error::other)?;
    }
    let result = builder
        .layer(telemetry)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(flows)
        .add_service(schemas)
        // TCP_NODELAY: without it Nagle holds a small response back until the client's delayed
        // ACK (~40 ms), which flow-bench measured as a 44 ms p50 on every unary call at c=1.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            stopped,
        )
        .await
        .map_err(std::io::Error::other);
    watch_health.abort();
    result
}

/// The reflection services (v1 and v1alpha, for older grpcurl), listing our services and health.
fn reflection() -> (
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
) {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(flowpipe_core::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // Our own descriptor set is built into the binary; failing to load it is a build bug.
    let v1 = builder()
        .build_v1()
        .expect("embedded descriptor set is valid");
    let v1alpha = builder()
        .build_v1alpha()
        .expect("embedded descriptor set is valid");
    (v1, v1alpha)
}

/// Builds the name index unless it is ready (contract B.6), retrying while the store is
/// unavailable (with a backoff up to a minute); any other failure is logged and left to
/// `flow-api index rebuild`, since ListFlows answers correctly without the index, only slower.
async fn build_index(state: AppState) {
    let mut delay = Duration::from_secs(1);
    loop {
        match state.flows().ensure_index().await {
            Ok(report) if report.already_ready => return,
            Ok(report) => {
                tracing::info!(
                    live = report.live,
                    indexed = report.indexed,
                    removed = report.removed,
                    skipped = report.skipped,
                    "name index built"
                );
                return;
            }
            Err(e) if e.code() == flowpipe_core::Code::Unavailable => {
                tracing::warn!(error = %e, retry_in = ?delay, "cannot build the name index yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(60));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot build the name index; run `flow-api index rebuild`");
                return;
            }
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what Kubernetes and systemd send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        _ = term => tracing::info!("SIGTERM received, shutting down"),
    }
}
