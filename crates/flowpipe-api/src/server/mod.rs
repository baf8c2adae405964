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

/// Logs to stderr, as text or JSON lines, filtered by `RUST_LOG` (default `info`). Text is
/// coloured only on a terminal: a log file or journald must not collect escape codes.
pub fn init_logging(json: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// The `flow-api` program: configuration from the process's arguments and environment, then
/// serve until SIGINT/SIGTERM. Configuration problems are one line on stderr and exit code 2.
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
    init_logging(config.json_logs);
    let server = match Server::bind(config).await {
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
