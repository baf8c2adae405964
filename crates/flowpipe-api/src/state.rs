//! What every transport shares: the core over the process's one store, and the settings of the
//! HTTP surface. Built once per process, cloned (cheaply) into every request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use flowpipe_core::{Environment, FlowRegistry, SchemaRegistry};
use flowpipe_store::Store;

use crate::auth::ApiKey;
use crate::settings::HttpSettings;
use crate::telemetry::Telemetry;

/// The real environment: system clock, random UUIDs, tokio timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn new_uid(&self) -> String {
        uuid::Uuid::new_v4().to_string()
    }

    fn random(&self) -> u64 {
        rand::random()
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// When a process builds the name index of ListFlows if it is not ready (contract B.6; data
/// written by the original API has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexBackfill {
    /// At start-up, in the background, without delaying readiness: the local server, which
    /// runs long (`server::serve` starts it).
    AtStartup,
    /// On the first ListFlows that finds no index, before answering it: a Lambda execution
    /// environment, which is frozen between invocations, so work in the background would not
    /// progress. A failed attempt is tried again by a ListFlows a minute later at the earliest.
    OnFirstUnindexedList,
}

/// How long after a failed on-demand backfill the next ListFlows may try again.
const BACKFILL_RETRY: Duration = Duration::from_secs(60);

/// Shared by every request of every transport.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    flows: FlowRegistry<Store, SystemEnvironment>,
    schemas: SchemaRegistry<Store, SystemEnvironment>,
    store: Store,
    http: HttpSettings,
    api_key: Option<ApiKey>,
    telemetry: Telemetry,
    draining: AtomicBool,
    backfill: IndexBackfill,
    /// On-demand backfill: done, or when it last failed. Its lock makes concurrent first lists
    /// run one backfill.
    backfilled: tokio::sync::Mutex<Result<(), Option<std::time::Instant>>>,
}

impl AppState {
    /// The state of a long-running process serving `store`, without telemetry (the name index
    /// is built at start-up, see [`IndexBackfill::AtStartup`]).
    pub fn new(store: Store, http: HttpSettings, api_key: Option<ApiKey>) -> Self {
        Self::with_telemetry(store, http, api_key, Telemetry::disabled())
    }

    /// The state of a long-running process serving `store` and recording into `telemetry`
    /// (whose [`Telemetry::instrument`] the store should already have been through).
    pub fn with_telemetry(
        store: Store,
        http: HttpSettings,
        api_key: Option<ApiKey>,
        telemetry: Telemetry,
    ) -> Self {
        Self::with(store, http, api_key, telemetry, IndexBackfill::AtStartup)
    }

    /// The state of a process serving `store`, recording into `telemetry` and building the name
    /// index as `backfill` says.
    pub fn with(
        store: Store,
        http: HttpSettings,
        api_key: Option<ApiKey>,
        telemetry: Telemetry,
        backfill: IndexBackfill,
    ) -> Self {
        AppState {
            inner: Arc::new(Inner {
                flows: FlowRegistry::new(store.clone(), SystemEnvironment),
                schemas: SchemaRegistry::new(store.clone(), SystemEnvironment),
                store,
                http,
                api_key,
                telemetry,
                draining: AtomicBool::new(false),
                backfill,
                backfilled: tokio::sync::Mutex::new(Err(None)),
            }),
        }
    }

    /// Marks the process as shutting down: readiness probes fail from now on.
    pub fn set_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    /// The flow operations.
    pub fn flows(&self) -> &FlowRegistry<Store, SystemEnvironment> {
        &self.inner.flows
    }

    /// The schema operations.
    pub fn schemas(&self) -> &SchemaRegistry<Store, SystemEnvironment> {
        &self.inner.schemas
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The HTTP settings.
    pub fn http(&self) -> &HttpSettings {
        &self.inner.http
    }

    /// A ListFlows found no name index: with [`IndexBackfill::OnFirstUnindexedList`], build it
    /// now (once per process; a failure is logged, and retried by a later ListFlows).
    pub async fn index_missing(&self) {
        if self.inner.backfill != IndexBackfill::OnFirstUnindexedList {
            return;
        }
        let mut backfilled = self.inner.backfilled.lock().await;
        match *backfilled {
            Ok(()) => return,
            Err(Some(failed)) if failed.elapsed() < BACKFILL_RETRY => return,
            Err(_) => {}
        }
        match self.flows().ensure_index().await {
            Ok(report) => {
                tracing::info!(?report, "name index built");
                *backfilled = Ok(());
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not build the name index; ListFlows reads flows the slow way meanwhile");
                *backfilled = Err(Some(std::time::Instant::now()));
            }
        }
    }

    /// The process's telemetry.
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// The API key requests must carry, when authentication is enabled.
    pub fn api_key(&self) -> Option<&ApiKey> {
        self.inner.api_key.as_ref()
    }
}
