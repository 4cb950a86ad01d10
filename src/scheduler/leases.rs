//! Holding sessions across replicas: a heartbeat (`store.heartbeat`) renews this replica's leases and takes or
//! gives back sessions toward its fair share (see [`crate::store::cluster`]), then tells the scheduler what it
//! holds. A second task passes on what other replicas made due, so a receipt accepted anywhere reaches the
//! replica that sends its session at once, not at the next heartbeat.
//!
//! A replica sends a session only while its own clock says the lease is good: from the start of the last
//! renewal, `store.lease_ttl` less one heartbeat (room for clocks that disagree a little). When renewals fail or
//! stall past that, it stops sending everything before any other replica may take over, so two replicas never
//! send one session at once; fencing (outcomes recorded under the lease's token) stays as the second guard.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::SchedulerHandle;
use crate::domain::SessionName;
use crate::settings::StoreSettings;
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
    timing: Timing,
    clock: Clock,
}

/// How long a lease lasts, and how often it is renewed.
#[derive(Debug, Clone, Copy)]
struct Timing {
    ttl: Duration,
    heartbeat: Duration,
}

impl Replica {
    pub fn new(cluster: Arc<dyn Cluster>, store: &StoreSettings, clock: Clock) -> Self {
        let id = ReplicaId::random();
        info!(replica = %id, "one replica of several: sending the sessions it holds a lease on");
        Self {
            cluster,
            id,
            timing: Timing {
                ttl: store.lease_ttl,
                heartbeat: store.heartbeat(),
            },
            clock,
        }
    }

    pub fn cluster(&self) -> Arc<dyn Cluster> {
        self.cluster.clone()
    }

    pub fn id(&self) -> ReplicaId {
        self.id.clone()
    }

    /// Starts the heartbeat and the listener; [`Replica::leave`] stops them.
    pub fn start(&self, scheduler: SchedulerHandle, holdings: Holdings) -> Started {
        let stop = CancellationToken::new();
        let heartbeat = tokio::spawn(hold(
            self.cluster.clone(),
            self.id.clone(),
            self.timing,
            self.clock,
            scheduler.clone(),
            holdings,
            stop.clone(),
        ));
        tokio::spawn(listen(self.cluster.clone(), scheduler, stop.clone()));
        Started { stop, heartbeat }
    }

    /// After the sends in flight have finished: stops the heartbeat and gives every lease back, so the
    /// other replicas take the sessions at their next heartbeat instead of after `lease_ttl`. The heartbeat
    /// has ended before the leases go back: one still in flight would otherwise take them again afterwards,
    /// and they would run out only after `lease_ttl`.
    pub async fn leave(self, started: Started) {
        started.stop.cancel();
        let _ = started.heartbeat.await;
        match self.cluster.release(&self.id).await {
            Ok(()) => info!(replica = %self.id, "leases given back"),
            Err(e) => {
                warn!(replica = %self.id, error = %e, "cannot give the leases back; they run out by themselves")
            }
        }
    }
}

/// The running heartbeat and listener of a replica.
pub struct Started {
    stop: CancellationToken,
    heartbeat: tokio::task::JoinHandle<()>,
}

/// Heartbeats until `stop`, keeping the scheduler's sessions and `holdings` up to date, and giving every
/// session up when the leases run out by this replica's clock before a renewal came through.
async fn hold(
    cluster: Arc<dyn Cluster>,
    replica: ReplicaId,
    timing: Timing,
    clock: Clock,
    scheduler: SchedulerHandle,
    holdings: Holdings,
    stop: CancellationToken,
) {
    holdings.set(HashSet::new());
    let mut every = tokio::time::interval(timing.heartbeat);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut held = 0;
    // Until when this replica may send what it holds; `None` while it holds nothing.
    let mut good_until: Option<Instant> = None;
    let give_up = |held: &mut usize| {
        warn!(%replica, sessions = *held, "leases not renewed in time; stopped sending until a heartbeat gets through");
        *held = 0;
        holdings.set(HashSet::new());
        scheduler.leases(Vec::new());
    };
    loop {
        tokio::select! {
            _ = every.tick() => {}
            // Not more often than every 100 ms, however much unheld work arrives.
            _ = async { scheduler.unheld_work().await; tokio::time::sleep(UNHELD_GAP).await } => {}
            _ = sleep_until(good_until) => {
                good_until = None;
                give_up(&mut held);
                continue;
            }
            _ = stop.cancelled() => return,
        }
        let started = Instant::now();
        let beat = cluster.heartbeat(&replica, timing.ttl, clock.now());
        let limit = good_until.unwrap_or(started + timing.ttl);
        match tokio::time::timeout_at(limit, beat).await {
            Ok(Ok(leases)) => {
                if leases.len() != held {
                    info!(%replica, sessions = leases.len(), "sessions held");
                    held = leases.len();
                }
                good_until = (!leases.is_empty()).then(|| started + timing.ttl - timing.heartbeat);
                holdings.set(leases.iter().map(|l| l.session.clone()).collect());
                scheduler.leases(leases);
            }
            // The leases run out by themselves if this goes on; the arm above stops sending when they do.
            Ok(Err(e)) => warn!(%replica, error = %e, "lease heartbeat failed; trying again"),
            Err(_) => {
                warn!(%replica, "lease heartbeat took longer than the leases last; trying again");
                if good_until.take().is_some() {
                    give_up(&mut held);
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever when there is no `at`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

    use async_trait::async_trait;
    use jiff::Timestamp;
    use tokio::sync::mpsc;

    use super::*;
    use crate::domain::ChatKey;
    use crate::scheduler::Command;
    use crate::store::StoreError;
    use crate::store::cluster::{FenceToken, Lease};

    const TIMING: Timing = Timing {
        ttl: Duration::from_secs(2),
        heartbeat: Duration::from_millis(500),
    };

    /// A heartbeat that takes `takes` and grants one session, up to `answers` times, then never answers again
    /// (a stalled database); writes down each heartbeat committed and the leases given back.
    struct Fake {
        answers: usize,
        takes: Duration,
        calls: AtomicUsize,
        events: std::sync::Mutex<Vec<&'static str>>,
    }

    impl Fake {
        fn new(answers: usize, takes: Duration) -> Self {
            Self {
                answers,
                takes,
                calls: AtomicUsize::new(0),
                events: Default::default(),
            }
        }
    }

    #[async_trait]
    impl Cluster for Fake {
        async fn heartbeat(
            &self,
            _: &ReplicaId,
            _: Duration,
            _: Timestamp,
        ) -> Result<Vec<Lease>, StoreError> {
            if self.calls.fetch_add(1, Ordering::SeqCst) >= self.answers {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(self.takes).await;
            self.events.lock().unwrap().push("heartbeat committed");
            Ok(vec![Lease {
                session: SessionName::parse("sales").unwrap(),
                token: FenceToken::from_row(1),
                paused_until: None,
            }])
        }
        async fn release(&self, _: &ReplicaId) -> Result<(), StoreError> {
            self.events.lock().unwrap().push("leases given back");
            Ok(())
        }
        async fn pause(&self, _: &SessionName, _: Timestamp) -> Result<(), StoreError> {
            Ok(())
        }
        async fn announce(&self, _: &ChatKey, _: Timestamp) -> Result<(), StoreError> {
            Ok(())
        }
        async fn listen(&self, _: mpsc::UnboundedSender<(ChatKey, Timestamp)>) {}
    }

    fn scheduler() -> (SchedulerHandle, mpsc::UnboundedReceiver<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = SchedulerHandle {
            tx,
            held_until: Arc::new(AtomicI64::new(0)),
            unheld: Arc::new(tokio::sync::Notify::new()),
        };
        (handle, rx)
    }

    #[tokio::test(start_paused = true)]
    async fn leaving_gives_the_leases_back_after_the_heartbeat_in_flight() {
        let cluster = Arc::new(Fake::new(usize::MAX, Duration::from_millis(300)));
        let replica = Replica {
            cluster: cluster.clone(),
            id: ReplicaId::random(),
            timing: TIMING,
            clock: Clock::system(),
        };
        let (handle, _commands) = scheduler();
        let started = replica.start(handle, Holdings::default());
        tokio::time::sleep(Duration::from_millis(100)).await;

        replica.leave(started).await;

        // Given back first, the heartbeat's commit would have taken the sessions again for a whole lease.
        assert_eq!(
            *cluster.events.lock().unwrap(),
            ["heartbeat committed", "leases given back"]
        );
    }

    /// Runs `hold` on `cluster` and returns, for each holding it hands the scheduler, when and how many.
    async fn holdings_over(cluster: Fake, run_for: Duration) -> Vec<(Duration, usize)> {
        let (scheduler, mut rx) = scheduler();
        let (start, stop) = (Instant::now(), CancellationToken::new());
        let task = tokio::spawn(hold(
            Arc::new(cluster),
            ReplicaId::random(),
            TIMING,
            Clock::system(),
            scheduler,
            Holdings::default(),
            stop.clone(),
        ));
        let mut seen = Vec::new();
        let end = tokio::time::sleep(run_for);
        tokio::pin!(end);
        loop {
            tokio::select! {
                Some(command) = rx.recv() => if let Command::Leases(leases) = command {
                    seen.push((start.elapsed(), leases.len()));
                },
                _ = &mut end => break,
            }
        }
        stop.cancel();
        task.await.unwrap();
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn a_replica_stops_sending_when_its_leases_run_out_by_its_own_clock() {
        let cluster = Fake::new(2, Duration::ZERO);

        let seen = holdings_over(cluster, TIMING.ttl * 3).await;

        // Renewed at 0 and at one heartbeat, then stalled: given up a lease TTL less a heartbeat after the
        // last renewal began, before any other replica may take the sessions (a TTL after it).
        let last_renewal = TIMING.heartbeat;
        assert_eq!(
            seen,
            [
                (Duration::ZERO, 1),
                (last_renewal, 1),
                (last_renewal + TIMING.ttl - TIMING.heartbeat, 0)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn leases_renewed_on_time_are_never_given_up() {
        let cluster = Fake::new(usize::MAX, Duration::ZERO);

        let seen = holdings_over(cluster, TIMING.ttl * 10).await;

        assert!(seen.len() >= 20, "{seen:?}");
        assert!(seen.iter().all(|(_, held)| *held == 1), "{seen:?}");
    }
}
