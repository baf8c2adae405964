//! The local server (binary `flow-api`): [`config`] loads and checks the configuration once
//! (flags, environment, files), [`tls`] holds the listeners' certificates, [`serve`] binds REST
//! and gRPC over one store and shuts both down gracefully.

pub mod config;
pub mod serve;
pub mod tls;

use std::process::ExitCode;

pub use config::{Config, ConfigError};
pub use serve::{Server, shutdown_signal};
pub use tls::TlsIdentity;

use crate::telemetry::{self, Host};

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
