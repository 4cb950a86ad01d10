//! Ownership with several replicas: which sessions this replica sends, applied from its leases. A session
//! lost is forgotten here (its receipts stay in the store for the new owner); a session gained starts with an
//! empty bucket and the pause kept in the store.

use std::collections::HashMap;

use tracing::info;

use super::pacing::Bucket;
use super::{RELOAD_EVERY, Scheduler};
use crate::domain::SessionName;
use crate::store::cluster::{Fence, Lease};

impl Scheduler {
    pub(super) fn owns(&self, session: &SessionName) -> bool {
        self.owned.as_ref().is_none_or(|o| o.contains_key(session))
    }

    /// Applies new lease holdings: sessions lost are forgotten here (their receipts stay in the store for
    /// their new owner); sessions gained start with an empty bucket and the stored pause.
    pub(super) fn apply_leases(&mut self, leases: Vec<Lease>) {
        let Some((_, replica)) = &self.delivery.cluster else {
            return;
        };
        let now = self.delivery.clock.now();
        let old = self.owned.take().unwrap_or_default();
        let mut new = HashMap::new();
        for lease in leases {
            let fence = Fence {
                replica: replica.clone(),
                token: lease.token,
            };
            if old.get(&lease.session) != Some(&fence) {
                let mut bucket = Bucket::new(0, now);
                if let Some(until) = lease.paused_until {
                    bucket.pause(until);
                }
                self.buckets.insert(lease.session.clone(), bucket);
            }
            new.insert(lease.session, fence);
        }
        for lost in old.keys().filter(|s| !new.contains_key(*s)) {
            self.timers.retain(|(_, chat)| chat.session != *lost);
            self.chat_due.retain(|chat, _| chat.session != *lost);
            if let Some(queue) = self.ready.remove(lost) {
                for r in queue {
                    self.taken.remove(&r.id);
                }
            }
            self.turns.retain(|s| s != lost);
            self.backlog.remove(lost);
            self.buckets.remove(lost);
            info!(session = %lost, "session moved to another replica");
        }
        // Reload the held sessions' chats when the holdings changed, and now and then besides: a wake lost
        // while the listening connection was down must not leave a chat waiting for the next move.
        self.reload_owned |= new != old || self.last_reload.elapsed() >= RELOAD_EVERY;
        if self.reload_owned {
            self.last_reload = tokio::time::Instant::now();
        }
        self.owned = Some(new);
    }
}
