//! Holding sessions across replicas: a heartbeat every third of `store.lease_ttl` renews this replica's
//! leases and takes or gives back sessions toward its fair share (see [`crate::store::cluster`]), then tells
//! the scheduler what it holds. A second task passes on what other replicas made due, so a receipt accepted
//! anywhere reaches the replica that sends its session at once, not at the next heartbeat.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::SchedulerHandle;
use crate::domain::SessionName;
use crate::store::cluster::{Cluster, ReplicaId};
use crate::time::Clock;

/// The least time between two heartbeats brought forward by work for sessions nobody may hold.
const UNHELD_GAP: Duration = Duration::from_millis(100);

/// The sessions this replica holds, for those who report on them (the pending gauges). `None`: all.
#[derive(Clone, Default)]
pub struct Holdings(Arc<RwLock<Option<HashSet<SessionName>>>>);

impl Holdings {
    /// Whether this replica reports on `session`.
    pub fn holds(&self, session: &SessionName) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(|s| s.contains(session))
    }

    fn set(&self, sessions: HashSet<SessionName>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(sessions);
    }
}

/// This process as one replica of several: its id, and the store's cluster operations.
pub struct Replica {
    cluster: Arc<dyn Cluster>,
    id: ReplicaId,
    ttl: Duration,
    clock: Clock,
}

impl Replica {
    pub fn new(cluster: Arc<dyn Cluster>, ttl: Duration, clock: Clock) -> Self {
        let id = ReplicaId::random();
        info!(replica = %id, "one replica of several: sending the sessions it holds a lease on");
        Self {
            cluster,
            id,
            ttl,
            clock,
        }
    }

    pub fn cluster(&self) -> Arc<dyn Cluster> {
        self.cluster.clone()
    }

    pub fn id(&self) -> ReplicaId {
        self.id.clone()
    }

    /// Starts the heartbeat and the listener; the token stops them.
    pub fn start(&self, scheduler: SchedulerHandle, holdings: Holdings) -> CancellationToken {
        let stop = CancellationToken::new();
        tokio::spawn(hold(
            self.cluster.clone(),
            self.id.clone(),
            self.ttl,
            self.clock,
            scheduler.clone(),
            holdings,
            stop.clone(),
        ));
        tokio::spawn(listen(self.cluster.clone(), scheduler, stop.clone()));
        stop
    }

    /// After the sends in flight have finished: stops the heartbeat and gives every lease back, so the
    /// other replicas take the sessions at their next heartbeat instead of after `lease_ttl`.
    pub async fn leave(self, started: CancellationToken) {
        started.cancel();
        match self.cluster.release(&self.id).await {
            Ok(()) => info!(replica = %self.id, "leases given back"),
            Err(e) => {
                warn!(replica = %self.id, error = %e, "cannot give the leases back; they run out by themselves")
            }
        }
    }
}

/// Heartbeats until `stop`, keeping the scheduler's sessions and `holdings` up to date.
async fn hold(
    cluster: Arc<dyn Cluster>,
    replica: ReplicaId,
    ttl: Duration,
    clock: Clock,
    scheduler: SchedulerHandle,
    holdings: Holdings,
    stop: CancellationToken,
) {
    holdings.set(HashSet::new());
    let mut every = tokio::time::interval(ttl / 3);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut held = 0;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            // Not more often than every 100 ms, however much unheld work arrives.
            _ = async { scheduler.unheld_work().await; tokio::time::sleep(UNHELD_GAP).await } => {}
            _ = stop.cancelled() => return,
        }
        match cluster.heartbeat(&replica, ttl, clock.now()).await {
            Ok(leases) => {
                if leases.len() != held {
                    info!(%replica, sessions = leases.len(), "sessions held");
                    held = leases.len();
                }
                holdings.set(leases.iter().map(|l| l.session.clone()).collect());
                scheduler.leases(leases);
            }
            // The leases run out by themselves if this goes on; nothing to undo here.
            Err(e) => warn!(%replica, error = %e, "lease heartbeat failed; trying again"),
        }
    }
}

/// Passes on chats other replicas made due, until `stop`.
async fn listen(cluster: Arc<dyn Cluster>, scheduler: SchedulerHandle, stop: CancellationToken) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::spawn(async move { cluster.listen(tx).await });
    loop {
        tokio::select! {
            woken = rx.recv() => match woken {
                Some((chat, due)) => scheduler.wake(chat, due),
                None => break,
            },
            _ = stop.cancelled() => break,
        }
    }
    listener.abort();
}
