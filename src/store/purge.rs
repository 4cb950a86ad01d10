//! The store's own upkeep: ids of messages accepted longer ago than `store.dedup_window` are forgotten, so the
//! dedup table stays bounded. Runs every few minutes until stopped.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::Queue;
use crate::time::Clock;

/// How often accepted ids older than the dedup window are forgotten.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Starts the purge task: once now, then every [`PURGE_EVERY`], until `stop` is cancelled.
pub fn spawn_purge(
    queue: Arc<dyn Queue>,
    window: Duration,
    clock: Clock,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(PURGE_EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.cancelled() => return,
            }
            let before = clock
                .now()
                .checked_sub(
                    jiff::SignedDuration::try_from(window).unwrap_or(jiff::SignedDuration::MAX),
                )
                .unwrap_or(jiff::Timestamp::MIN);
            match queue.purge_dedup(before).await {
                Ok(n) if n > 0 => info!(forgotten = n, "old message ids purged"),
                Ok(_) => {}
                Err(e) => error!(error = %e, "cannot purge old message ids"),
            }
        }
    })
}
