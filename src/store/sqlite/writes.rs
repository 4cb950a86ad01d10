//! The writer's statements that add and delete pending receipts, each keeping the accepted ids
//! ([`super::dedup`]) and the rows held in memory ([`super::rows`]) in step with the table.

use rusqlite::{Connection, OptionalExtension, params};

use super::dedup::Seen;
use super::engine::unavailable;
use super::rows::{Row, Rows};
use super::{exec, ms, seen_key};
use crate::domain::ChatId;
use crate::store::{Accepted, NewReceipt, Outcome, ReceiptId, StoreError};

/// A receipt's integer keys ([`super::seen`]), computed before the job reaches the writer thread, which is what
/// bounds ingest: three SHA-256 digests a webhook are no work of its.
pub(super) struct Keys {
    seen: i64,
    chat: i64,
    bare: i64,
}

pub(super) type Keyed = (NewReceipt, Keys);

pub(super) fn keyed(r: NewReceipt) -> Keyed {
    let session = r.session.as_str();
    let keys = Keys {
        seen: seen_key(session, r.message_id.as_str()),
        chat: seen_key(session, r.chat.as_str()),
        bare: seen_key(session, r.message_id.bare_str()),
    };
    (r, keys)
}

/// Brings into the cache what [`insert_receipt`] will look at in memory for each of `receipts`, every key at
/// once, so that their cache misses overlap: on a full store each insert otherwise waits on several, one
/// after the other.
pub(super) fn read_ahead((seen, rows): (&Seen, &Rows), receipts: &[Keyed]) {
    seen.read_ahead(receipts.iter().map(|(_, k)| k.seen));
    rows.read_ahead(
        receipts.iter().map(|(_, k)| k.chat),
        receipts.iter().map(|(_, k)| k.bare),
    );
}

/// Remembers the message id and stores the receipt, unless the id was accepted before.
pub(super) fn insert_receipt(
    c: &Connection,
    (seen, rows): (&mut Seen, &mut Rows),
    (r, keys): &Keyed,
) -> Result<Accepted, StoreError> {
    if !seen.accept(keys.seen, ms(r.accepted_at)) {
        return Ok(Accepted::Duplicate);
    }
    exec(
        c,
        "INSERT INTO pending (session, chat, message_id, rule, due_at, not_before, read_on_reply, accepted_at,
                              chat_phone, bare_id, on_reply, expires, chat_key, bare_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            r.session.as_str(),
            r.chat.as_str(),
            r.message_id.as_str(),
            &*r.rule,
            ms(r.due_at),
            ms(r.not_before),
            r.read_on_reply,
            ms(r.accepted_at),
            r.chat_phone.as_ref().map(ChatId::as_str),
            r.message_id.bare_str(),
            r.on_reply,
            r.expires,
            keys.chat,
            keys.bare,
        ],
    )?;
    let id = c.last_insert_rowid();
    rows.add(Row {
        id,
        chat: keys.chat,
        bare: Some(keys.bare),
    });
    Ok(Accepted::New {
        id: ReceiptId::from_row(id),
    })
}

/// Deletes a pending receipt; whether it was there.
pub(super) fn delete_pending(c: &Connection, rows: &mut Rows, id: i64) -> Result<bool, StoreError> {
    let row = c
        .prepare_cached("DELETE FROM pending WHERE id = ?1 RETURNING chat_key, bare_key")
        .and_then(|mut s| {
            s.query_row([id], |r| {
                Ok(Row {
                    id,
                    chat: r.get(0)?,
                    bare: r.get(1)?,
                })
            })
            .optional()
        })
        .map_err(unavailable)?;
    Ok(row.map(|row| rows.delete(row)).is_some())
}

/// Writes what came of sending each receipt.
pub(super) fn record_all(
    c: &Connection,
    rows: &mut Rows,
    outcomes: Vec<(ReceiptId, Outcome)>,
) -> Result<(), StoreError> {
    for (id, outcome) in outcomes {
        let id = id.to_row();
        match outcome {
            Outcome::Sent { at } => {
                exec(
                    c,
                    "INSERT INTO sent (session, bare_id, sent_at)
                     SELECT session, COALESCE(bare_id, message_id), ?2 FROM pending WHERE id = ?1
                     ON CONFLICT DO UPDATE SET sent_at = excluded.sent_at",
                    params![id, ms(at)],
                )?;
                delete_pending(c, rows, id)?;
            }
            Outcome::Retry {
                attempts,
                at,
                error,
            } => {
                exec(
                    c,
                    "UPDATE pending SET attempts = ?2, due_at = ?3, not_before = ?3, last_error = ?4 WHERE id = ?1",
                    params![id, attempts, ms(at), error],
                )?;
            }
            Outcome::Dead {
                attempts,
                error,
                at,
            } => {
                exec(
                    c,
                    "INSERT INTO dead (session, chat, message_id, rule, attempts, last_error, died_at, read_on_reply, chat_phone)
                     SELECT session, chat, message_id, rule, ?2, ?3, ?4, read_on_reply, chat_phone FROM pending WHERE id = ?1",
                    params![id, attempts, error, ms(at)],
                )?;
                delete_pending(c, rows, id)?;
            }
        }
    }
    Ok(())
}
