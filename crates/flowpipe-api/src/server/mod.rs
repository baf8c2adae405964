//! The local server (binary `flow-api`): [`config`] loads and checks the configuration once
//! (flags, environment, files), [`tls`] holds the listeners' certificates, [`serve`] binds REST
//! and gRPC over one store and shuts both down gracefully.

pub mod config;
pub mod serve;
pub mod tls;

use std::process::ExitCode;

pub use config::{Command, Config, ConfigError, IndexCommand};
pub use serve::{Server, shutdown_signal};
pub use tls::TlsIdentity;

use crate::telemetry::{self, Host};

/// `flow-api index rebuild`: builds the name index of the configured store and says what it did.
async fn rebuild_index(config: Config) -> ExitCode {
    let store = match flowpipe_store::Store::open(config.store) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("flow-api: cannot open the store: {e}");
            return ExitCode::from(2);
        }
    };
    let flows = flowpipe_core::FlowRegistry::new(store.clone(), crate::SystemEnvironment);
    match flows.rebuild_index().await {
        Ok(r) => {
            println!(
                "indexed {} flows on {}: {} live, {} index keys written, {} removed, {} changed meanwhile (left to their writers); the index is ready",
                r.live,
                store.describe(),
                r.live,
                r.indexed,
                r.removed,
                r.skipped
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("flow-api: index rebuild failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The `flow-api` program: configuration from the process's arguments and environment, then
/// logging and telemetry (`crate::telemetry::init`), then serve until SIGINT/SIGTERM, then flush
/// the telemetry. Configuration problems are one line on stderr and exit code 2.
pub async fn run() -> ExitCode {
    let config = match Config::load(std::env::args()) {
        Err(usage) => {
            let _ = usage.print();
            return if usage.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
        Ok(Err(e)) => {
            eprintln!("flow-api: {e}");
            return ExitCode::from(2);
        }
        Ok(Ok(c)) => c,
    };
    let telemetry = match telemetry::init(&config.telemetry, Host::Server, config.json_logs) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("flow-api: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Index(IndexCommand::Rebuild)) = config.command {
        let code = rebuild_index(config).await;
        telemetry.shutdown().await;
        return code;
    }
    let server = match Server::bind_with_telemetry(config, telemetry).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("flow-api: {e}");
            return ExitCode::from(2);
        }
    };
    match server.serve(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}
