//! Accepting receipts on PostgreSQL in batches. Webhooks that arrive while earlier ones are being written
//! wait in a queue and go together: one statement for all of them (the receipts as arrays, `unnest`ed), one
//! round trip and one commit, so the server's work per webhook shrinks as the load grows. A webhook alone
//! goes at once, in a batch of one; a batch that would start while the one before is still being written
//! waits until it holds as many receipts as that one, or that one ends, so under load two batches of about
//! one size take turns, one committing while the other fills. Each webhook is answered only once its batch
//! is committed, so "accepted" still means on disk; when the statement fails, every webhook of the batch
//! gets the error (and its sender retries), since one statement commits all or nothing.
//!
//! Dedup is part of that one statement, for the whole batch: ids are inserted in key order, so two
//! batches (of this replica or another) that meet on the same ids wait for each other in one order and never
//! deadlock. Of two deliveries of an id in one batch, the writer sends the first and answers the second
//! duplicate, so the statement sees each id once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{PostgresStore, get, ms, unavailable};
use crate::domain::ChatId;
use crate::store::{Accepted, NewReceipt, ReceiptId, StoreError};

/// At most this many receipts go in one statement (a webhook's are never split).
const MAX_RECEIPTS: usize = 512;
/// Batches written at once: while one commits, the next fills. Fewer means larger batches, and the server on
/// the same two cores did more with fewer (one replica: 4 at once 13,298 req/s, 2 at once 14,276, 1 alone
/// 14,829; with batches that wait for the size of the one before, 3 did 0.89 of 2); two keep one batch that
/// waits on a row another replica holds from stopping every webhook.
const IN_FLIGHT: usize = 2;

/// The batch's receipts as arrays, one per column, each id once (the writer keeps an id's first delivery).
/// The ids go into `dedup` in key order; each id the insert kept is stored as a receipt, and the receipts
/// are numbered (`pending.id`) in arrival order.
const ACCEPT_BATCH: &str = "WITH fresh AS (
         INSERT INTO dedup (session, message_id, accepted_at)
         SELECT * FROM unnest($1::text[], $3::text[], $11::int8[]) ORDER BY 1, 2
         ON CONFLICT DO NOTHING RETURNING session, message_id
     )
     INSERT INTO pending (session, chat, message_id, rule, due_at, not_before, read_on_reply,
                          on_reply, expires, chat_phone, accepted_at, bare_id)
     SELECT i.session, i.chat, i.message_id, i.rule, i.due_at, i.not_before, i.read_on_reply,
            i.on_reply, i.expires, i.chat_phone, i.accepted_at, i.bare_id
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::bool[],
                 $8::bool[], $9::bool[], $10::text[], $11::int8[], $12::text[])
          WITH ORDINALITY AS i(session, chat, message_id, rule, due_at, not_before, read_on_reply,
                               on_reply, expires, chat_phone, accepted_at, bare_id, ord)
     JOIN fresh f ON f.session = i.session AND f.message_id = i.message_id
     ORDER BY i.ord
     RETURNING id, session, message_id";

/// One webhook's receipts and where its answers go.
struct Job {
    receipts: Vec<NewReceipt>,
    answer: oneshot::Sender<Result<Vec<Accepted>, StoreError>>,
}

/// The queue in front of the batch writer; the writer stops once the last sender is dropped.
pub(super) struct Batches {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Batches {
    /// Starts the writer on `store`, a copy of the store that does not batch itself (so the writer holds no
    /// sender of its own queue).
    pub(super) fn start(store: PostgresStore) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(store, rx));
        Self { jobs }
    }

    /// Stores one webhook's receipts with whatever else is waiting; answers once they are committed.
    pub(super) async fn accept(
        &self,
        receipts: Vec<NewReceipt>,
    ) -> Result<Vec<Accepted>, StoreError> {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .send(Job { receipts, answer })
            .map_err(|_| StoreError::Closed)?;
        answered.await.map_err(|_| StoreError::Closed)?
    }
}

/// Takes what is waiting, up to [`MAX_RECEIPTS`], once one of [`IN_FLIGHT`] slots is free, and writes it;
/// while every other slot is busy, the batch grows to the size of the one before first (or until a slot
/// frees).
async fn write_batches(store: PostgresStore, mut rx: mpsc::UnboundedReceiver<Job>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut previous = 0;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut size = first.receipts.len();
        let mut batch = vec![first];
        // Taken at once, the batch that starts while the one before commits holds only the webhook or two
        // that came since, and the next one all the rest: a large batch beside a small one, and a commit
        // spent on a few receipts. Waiting for as many as the one before holds keeps both the same size.
        // The wait ends when a slot frees, so it is never longer than the batch before takes.
        while size < MAX_RECEIPTS {
            let job = match rx.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Empty) if size < previous && slots.available_permits() == 0 => {
                    tokio::select! {
                        job = rx.recv() => match job {
                            Some(job) => job,
                            None => break,
                        },
                        _ = slots.acquire() => break,
                    }
                }
                Err(_) => break,
            };
            size += job.receipts.len();
            batch.push(job);
        }
        previous = size;
        let store = store.clone();
        tokio::spawn(async move {
            let receipts: Vec<&NewReceipt> = batch.iter().flat_map(|j| &j.receipts).collect();
            let mut answers = store.accept_batch(&receipts).await.map(Vec::into_iter);
            for job in batch {
                let answer = match &mut answers {
                    Ok(all) => Ok(all.by_ref().take(job.receipts.len()).collect()),
                    Err(e) => Err(e.clone()),
                };
                // A webhook whose request went away no longer waits for its answer; its receipts are stored.
                let _ = job.answer.send(answer);
            }
            drop(slot);
        });
    }
}

impl PostgresStore {
    /// Runs [`ACCEPT_BATCH`] for `all`: one answer each, in order.
    async fn accept_batch(&self, all: &[&NewReceipt]) -> Result<Vec<Accepted>, StoreError> {
        // An id delivered twice in the batch is stored from its first delivery; the statement sees it once.
        let mut seen = HashSet::with_capacity(all.len());
        let receipts: Vec<&NewReceipt> = all
            .iter()
            .copied()
            .filter(|r| seen.insert((r.session.as_str(), r.message_id.as_str())))
            .collect();
        let column =
            |f: fn(&NewReceipt) -> i64| receipts.iter().map(|r| f(r)).collect::<Vec<i64>>();
        let flag =
            |f: fn(&NewReceipt) -> bool| receipts.iter().map(|r| f(r)).collect::<Vec<bool>>();
        let sessions: Vec<&str> = receipts.iter().map(|r| r.session.as_str()).collect();
        let chats: Vec<&str> = receipts.iter().map(|r| r.chat.as_str()).collect();
        let ids: Vec<&str> = receipts.iter().map(|r| r.message_id.as_str()).collect();
        let rules: Vec<&str> = receipts.iter().map(|r| &*r.rule).collect();
        let phones: Vec<Option<&str>> = receipts
            .iter()
            .map(|r| r.chat_phone.as_ref().map(ChatId::as_str))
            .collect();
        let bare: Vec<&str> = receipts.iter().map(|r| r.message_id.bare_str()).collect();
        let (due, not_before, at) = (
            column(|r| ms(r.due_at)),
            column(|r| ms(r.not_before)),
            column(|r| ms(r.accepted_at)),
        );
        let (read_on_reply, on_reply, expires) = (
            flag(|r| r.read_on_reply),
            flag(|r| r.on_reply),
            flag(|r| r.expires),
        );
        let client = self.client().await?;
        let statement = client
            .prepare_cached(ACCEPT_BATCH)
            .await
            .map_err(unavailable)?;
        let rows = client
            .query(
                &statement,
                &[
                    &sessions,
                    &chats,
                    &ids,
                    &rules,
                    &due,
                    &not_before,
                    &read_on_reply,
                    &on_reply,
                    &expires,
                    &phones,
                    &at,
                    &bare,
                ],
            )
            .await
            .map_err(unavailable)?;
        let mut stored = HashMap::with_capacity(rows.len());
        for row in &rows {
            let key = (
                get::<&str>(row, "session")?,
                get::<&str>(row, "message_id")?,
            );
            stored.insert(key, get::<i64>(row, "id")?);
        }
        // The first delivery of an id takes its row; any other in the batch is a duplicate.
        Ok(all
            .iter()
            .map(
                |r| match stored.remove(&(r.session.as_str(), r.message_id.as_str())) {
                    Some(id) => Accepted::New {
                        id: ReceiptId::from_row(id),
                    },
                    None => Accepted::Duplicate,
                },
            )
            .collect())
    }
}
