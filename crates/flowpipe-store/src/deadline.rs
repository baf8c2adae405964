//! The deadline of the request being served: every store call made while serving it, and every
//! wait for the store (a write queued behind another write of the same flow), ends by then.
//!
//! The transports set it when a request arrives ([`within`]) from the store's request timeout
//! ([`crate::Store::request_timeout`]); the etcd store ends each call by the earlier of this
//! deadline and its own per-call timeout, retries included; [`crate::Store`] tells the core when
//! it has passed (`Kv::deadline_passed`). Outside any request (background work, tests calling the
//! store directly) there is none, and each call has only its own timeout.
//!
//! It is a tokio task-local: it applies to the future given to [`within`], not to tasks that
//! future spawns.

use std::future::Future;
use std::time::Instant;

tokio::task_local! {
    static DEADLINE: Option<Instant>;
}

/// Runs `fut` with `deadline` as the deadline of every store call it makes (`None`: no request
/// deadline, e.g. for work a request starts that must not be cut short by it).
pub async fn within<F: Future>(deadline: Option<Instant>, fut: F) -> F::Output {
    DEADLINE.scope(deadline, fut).await
}

/// The deadline of the request being served, if any.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok().flatten()
}

/// Resolves when the current deadline has passed; never when there is none.
pub async fn passed() {
    match current() {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn scoped_to_the_future() {
        assert_eq!(current(), None);
        let d = Instant::now() + Duration::from_millis(20);
        within(Some(d), async {
            assert_eq!(current(), Some(d));
            passed().await;
            assert!(Instant::now() >= d);
            within(None, async { assert_eq!(current(), None) }).await;
        })
        .await;
        assert_eq!(current(), None);
    }
}
