//! Compare-and-swap retries and give-ups, counted from the core's own `tracing` events.
//!
//! The core stays free of metrics crates: its CAS loop (`flowpipe_core::cas`) emits one DEBUG
//! event per lost race, target [`CAS_TARGET`], with `write` (`update_flow`, ...) and `outcome`
//! (`retry` or `gave_up`) and `reason` (`raced` or `stale`). [`CasMetricsLayer`] is a `tracing` layer with a filter of its own
//! ([`CasMetricsLayer::filter`]) that turns them into `flow_api_cas_retries_total` and
//! `flow_api_cas_give_ups_total`, whatever the log level.

use flowpipe_core::cas::CAS_TARGET;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer};

use super::metrics::{Metrics, OTHER};

/// The writes the core names (`Write::NAME`): the only values of the `write` attribute.
const WRITES: [&str; 6] = [
    "create_flow",
    "update_flow",
    "rollback_flow",
    "delete_flow",
    "create_schema",
    "delete_schema",
];

/// See the module documentation.
pub struct CasMetricsLayer {
    metrics: Metrics,
}

impl CasMetricsLayer {
    /// Counts into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        CasMetricsLayer { metrics }
    }

    /// The layer's own filter: the core's CAS events, at any log level.
    pub fn filter() -> Targets {
        Targets::new().with_target(CAS_TARGET, LevelFilter::DEBUG)
    }
}

#[derive(Default)]
struct CasEvent {
    write: Option<&'static str>,
    retry: Option<bool>,
    reason: Option<&'static str>,
}

impl Visit for CasEvent {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "write" => self.write = Some(WRITES.into_iter().find(|w| *w == value).unwrap_or(OTHER)),
            "outcome" => {
                self.retry = match value {
                    "retry" => Some(true),
                    "gave_up" => Some(false),
                    _ => None,
                };
            }
            "reason" => {
                self.reason = match value {
                    "raced" => Some("raced"),
                    "stale" => Some("stale"),
                    _ => None,
                };
            }
            _ => {}
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl<S: Subscriber> Layer<S> for CasMetricsLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != CAS_TARGET {
            return;
        }
        let mut e = CasEvent::default();
        event.record(&mut e);
        let write = e.write.unwrap_or(OTHER);
        let reason = e.reason.unwrap_or(OTHER);
        match e.retry {
            Some(true) => self.metrics.cas_retry(write, reason),
            Some(false) => self.metrics.cas_give_up(write),
            None => {}
        }
    }
}
