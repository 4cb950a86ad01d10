//! The handle the rest of the service holds: it tells the scheduler's task about new work (wakes, leases)
//! and asks it about acks, over one channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};

use super::{AckKind, AckRequest, AckResult, Command};
use crate::domain::{ChatKey, MessageKey};
use crate::store::StoreError;
use crate::store::cluster::Lease;

/// Tells the scheduler about newly stored receipts. Cheap to clone.
#[derive(Clone)]
pub struct SchedulerHandle {
    pub(super) tx: mpsc::UnboundedSender<Command>,
    /// Milliseconds since the epoch up to which the scheduler holds timers; a receipt due later is found by
    /// its reading of the store, so its wake is not even sent.
    pub(super) held_until: Arc<AtomicI64>,
    /// Signalled when work arrives for a session this replica does not hold: perhaps nobody does yet.
    pub(super) unheld: Arc<tokio::sync::Notify>,
}

impl SchedulerHandle {
    /// A receipt of `chat` was committed with this due time.
    pub fn wake(&self, chat: ChatKey, due: Timestamp) {
        if due.as_millisecond() <= self.held_until.load(Ordering::SeqCst) {
            let _ = self.tx.send(Command::Wake(chat, due));
        }
    }

    /// From now on this replica sends exactly these sessions.
    pub fn leases(&self, leases: Vec<Lease>) {
        let _ = self.tx.send(Command::Leases(leases));
    }

    /// Completes when work arrived for a session this replica does not hold (a new session, perhaps held by
    /// nobody yet): the lease heartbeat runs early, so a new session waits for no heartbeat period.
    pub async fn unheld_work(&self) {
        self.unheld.notified().await;
    }

    /// This account read `message`: cancels the receipts of its chat up to it that are not yet
    /// handed to the sender, and confirms it if it was sent or is being sent.
    pub async fn ack(&self, message: MessageKey) -> Result<AckResult, StoreError> {
        self.ack_as(message, AckKind::Read).await
    }

    /// Its sender deleted `message`: cancels its receipt unless already handed to the sender.
    pub async fn deleted(&self, message: MessageKey) -> Result<AckResult, StoreError> {
        self.ack_as(message, AckKind::Deleted).await
    }

    async fn ack_as(&self, message: MessageKey, kind: AckKind) -> Result<AckResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Ack(AckRequest {
                message,
                kind,
                reply,
            }))
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}
