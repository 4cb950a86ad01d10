//! Several replicas on one store: which replica sends which session, and how they tell each other about new
//! work. Only a shared backend (PostgreSQL) implements [`Cluster`]; with the embedded store the one process
//! owns every session.
//!
//! Each session is sent by exactly one live replica, the holder of its lease. A replica's heartbeat renews
//! its leases, takes free or expired ones up to its fair share (sessions divided by live replicas, rounded
//! up), and gives back what it holds beyond that share plus one, so sessions spread. A lease that is not
//! renewed within `store.lease_ttl` is free for the taking: a replica that dies loses its sessions after at
//! most that long. Every taking bumps the session's fencing token; an outcome is recorded only under the
//! token it was sent under, so a replica that lost a session (a long pause, a partition) cannot overwrite
//! what the new owner did. A new owner starts the session's token bucket empty and honours the stored
//! pause (`Retry-After`, a refused key), so rate plus burst and pauses hold across a move.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use tokio::sync::mpsc;

use super::StoreError;
use crate::domain::{ChatKey, SessionName};

/// A replica's name in the lease table: random per process start.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReplicaId(Arc<str>);

impl ReplicaId {
    /// A new, random id for this process.
    pub fn random() -> Self {
        Self(format!("replica-{:016x}", rand::random::<u64>()).into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A session's fencing token: bumped each time its lease changes hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FenceToken(i64);

impl FenceToken {
    pub(crate) fn from_row(raw: i64) -> Self {
        Self(raw)
    }

    pub(in crate::store) fn to_row(self) -> i64 {
        self.0
    }
}

/// A session this replica holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub session: SessionName,
    pub token: FenceToken,
    /// The session may not send before this (a `Retry-After` or a refused key, seen by any replica).
    pub paused_until: Option<Timestamp>,
}

/// Under which lease an outcome is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub replica: ReplicaId,
    pub token: FenceToken,
}

#[async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// Records this replica alive, renews its leases, takes or gives back sessions toward its fair share,
    /// and returns every session it holds now.
    async fn heartbeat(
        &self,
        replica: &ReplicaId,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Vec<Lease>, StoreError>;
    /// Gives back every lease at once (a clean shutdown), so others take them without waiting for the TTL.
    async fn release(&self, replica: &ReplicaId) -> Result<(), StoreError>;
    /// Remembers that `session` may not send before `until`, for whichever replica holds it next.
    async fn pause(&self, session: &SessionName, until: Timestamp) -> Result<(), StoreError>;
    /// Tells the replica holding `chat`'s session that a receipt of it is due at `due`. Accepting does not
    /// announce by itself: a `NOTIFY` makes PostgreSQL serialize commits, so only receipts accepted by a
    /// replica that does not hold their session are announced.
    async fn announce(&self, chat: &ChatKey, due: Timestamp) -> Result<(), StoreError>;
    /// Until `wake` closes, passes on every chat that another replica (or this one) made due: announced,
    /// flushed or replayed receipts.
    async fn listen(&self, wake: mpsc::UnboundedSender<(ChatKey, Timestamp)>);
}
