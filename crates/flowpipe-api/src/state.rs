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
}

impl AppState {
    /// The state of a process serving `store`, without telemetry.
    pub fn new(store: Store, http: HttpSettings, api_key: Option<ApiKey>) -> Self {
        Self::with_telemetry(store, http, api_key, Telemetry::disabled())
    }

    /// The state of a process serving `store` and recording into `telemetry` (whose
    /// [`Telemetry::instrument`] the store should already have been through).
    pub fn with_telemetry(
        store: Store,
        http: HttpSettings,
        api_key: Option<ApiKey>,
        telemetry: Telemetry,
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

    /// The process's telemetry.
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// The API key requests must carry, when authentication is enabled.
    pub fn api_key(&self) -> Option<&ApiKey> {
        self.inner.api_key.as_ref()
    }
}
