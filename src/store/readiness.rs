//! The readiness answer, cached: `/readyz` is probed every few seconds by every orchestrator and load
//! balancer, and each probe of the store takes its write lock. One probe runs at most every
//! [`PROBE_EVERY`]; callers in between get its answer. A failure is cached exactly as long as a success, so
//! readiness follows the store back once it recovers.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Operator, StoreError};

/// How long one probe's answer stands.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

pub struct Readiness {
    store: Arc<dyn Operator>,
    last: Mutex<Option<(Instant, Result<(), StoreError>)>>,
}

impl Readiness {
    pub fn new(store: Arc<dyn Operator>) -> Self {
        Self {
            store,
            last: Mutex::new(None),
        }
    }

    /// The store's readiness, probed now unless a probe answered within [`PROBE_EVERY`].
    pub async fn check(&self) -> Result<(), StoreError> {
        // Holding the lock across the probe makes concurrent callers share one probe.
        let mut last = self.last.lock().await;
        if let Some((at, result)) = &*last
            && at.elapsed() < PROBE_EVERY
        {
            return result.clone();
        }
        let result = self.store.check_writable().await;
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test(start_paused = true)]
    async fn a_probe_answer_stands_for_a_while_then_is_probed_again() {
        let store = Arc::new(MemoryStore::default());
        let readiness = Readiness::new(store.clone());
        assert_eq!(readiness.check().await, Ok(()));
        store.set_unwritable(true);
        assert_eq!(readiness.check().await, Ok(()), "cached");
        tokio::time::advance(PROBE_EVERY).await;
        assert!(readiness.check().await.is_err(), "probed again");
        store.set_unwritable(false);
        assert!(readiness.check().await.is_err(), "cached failure");
        tokio::time::advance(PROBE_EVERY).await;
        assert_eq!(
            readiness.check().await,
            Ok(()),
            "never stuck on an old failure"
        );
    }
}
