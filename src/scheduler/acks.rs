//! Acks: this account read a message (on the phone, another device, or through our own sendSeen), so its
//! chat's receipts up to it that are not yet handed to the sender are cancelled, and a sent one is confirmed;
//! or its sender deleted it, so its own receipt alone is cancelled.

use super::{AckKind, AckResult, Scheduler};
use crate::domain::MessageKey;
use crate::metric_names as names;
use crate::store::{ReceiptId, StoreError};

impl Scheduler {
    /// Handles an ack: the acked message's receipt and those accepted before it in its chat are cancelled
    /// unless already handed to the sender; the acked one counts as confirmed when sent or in flight.
    pub(super) async fn apply_ack(
        &mut self,
        message: &MessageKey,
        kind: AckKind,
    ) -> Result<AckResult, StoreError> {
        let store = self.delivery.store.clone();
        let mut through = store.receipts_through(message).await?;
        if kind == AckKind::Deleted {
            // Only the deleted message's own receipt: the ones before it are still unread.
            through.retain(|r| r.message_id.bare_str() == message.bare.as_str());
            if through.is_empty() {
                return Ok(AckResult::default());
            }
        }
        let Some(acked) = through.last() else {
            let confirmed = store.confirm_sent(message, false).await?;
            return Ok(AckResult {
                cancelled: 0,
                confirmed: u64::from(confirmed),
            });
        };
        let acked_in_flight = self.in_flight.contains(&acked.id);
        let cancel: Vec<ReceiptId> = through
            .iter()
            .map(|r| r.id)
            .filter(|id| !self.in_flight.contains(id))
            .collect();
        let confirmed =
            kind == AckKind::Read && acked_in_flight && store.confirm_sent(message, true).await?;
        let cancelled = store.cancel(cancel.clone()).await?;
        // Those already loaded wait in the session's ready queue: take them out.
        let session = &message.session;
        if let Some(queue) = self.ready.get_mut(session) {
            queue.retain(|r| !cancel.contains(&r.id));
            if queue.is_empty() {
                self.ready.remove(session);
                self.turns.retain(|s| s != session);
            }
        }
        for id in &cancel {
            self.taken.remove(id);
        }
        let reason = match kind {
            AckKind::Read => "read_elsewhere",
            AckKind::Deleted => "deleted",
        };
        metrics::counter!(names::RECEIPTS_CANCELLED, "reason" => reason).increment(cancelled);
        Ok(AckResult {
            cancelled,
            confirmed: u64::from(confirmed),
        })
    }
}
