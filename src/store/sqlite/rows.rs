//! The pending receipts' rows by chat and by bare message id, in memory: the keys of `chat_key` and
//! `bare_key` (each a [`seen_key`](super::seen_key)) to row ids, read from the `pending` table when the
//! store opens and kept in step by the jobs that add and delete its rows.
//!
//! Why: as B-tree indexes (schema version 5), each webhook's receipt put an entry on a random page of two
//! trees of a million entries, two pages written to the WAL and copied again by the checkpoint; dropping
//! both doubled the webhooks a second on a full store (docs/performance.md). Memory is the price: 6 bytes an
//! entry, two entries a receipt.
//!
//! What memory holds is never less than what is committed: a row is added when its job inserts it (taken
//! out again if the job or its group is rolled back) and removed only once the group that deleted it has
//! committed. A lookup may so give rows that are not (or no longer) there, and rows of another key that
//! shares its bits ([`KeyRows`]): every query checks what it gets against the row's own columns.

use std::sync::Mutex;

use rusqlite::Connection;

use super::engine::{WriterState, lock};
use super::keyset::KeyRows;
use crate::store::StoreError;

/// A pending receipt's row and the keys it is found by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub id: i64,
    pub chat: i64,
    /// None for receipts accepted before bare ids were kept, and for replayed dead ones.
    pub bare: Option<i64>,
}

/// Rows by chat and by bare id, and what the current group changed.
#[derive(Default)]
pub struct Rows {
    by_chat: KeyRows,
    by_bare: KeyRows,
    /// Rows inserted by the current group: taken out again if it is rolled back.
    added: Vec<Row>,
    /// Rows deleted by the current group: taken out once it commits.
    deleted: Vec<Row>,
}

impl Rows {
    /// Every pending receipt's row.
    pub fn load(conn: &Connection) -> rusqlite::Result<Self> {
        let count: i64 = conn.query_row("SELECT COUNT(*) FROM pending", [], |r| r.get(0))?;
        let expected = usize::try_from(count).unwrap_or(0);
        let (mut by_chat, mut by_bare) =
            (KeyRows::with_room(expected), KeyRows::with_room(expected));
        let mut statement =
            conn.prepare("SELECT id, chat_key, bare_key FROM pending INDEXED BY pending_keys")?;
        let mut all = statement.query([])?;
        while let Some(r) = all.next()? {
            let id = r.get(0)?;
            by_chat.push(r.get(1)?, id);
            if let Some(bare) = r.get(2)? {
                by_bare.push(bare, id);
            }
        }
        by_chat.sort();
        by_bare.sort();
        Ok(Self {
            by_chat,
            by_bare,
            ..Self::default()
        })
    }

    /// How many rows are held.
    pub fn len(&self) -> usize {
        self.by_chat.len()
    }

    /// Holds `row`, just inserted by a job of the current group.
    pub fn add(&mut self, row: Row) {
        self.by_chat.insert(row.chat, row.id);
        if let Some(bare) = row.bare {
            self.by_bare.insert(bare, row.id);
        }
        self.added.push(row);
    }

    /// Brings what adding rows of these chats and bare ids will look at into the cache, all at once
    /// ([`KeyRows::read_ahead`]).
    pub fn read_ahead(
        &self,
        chats: impl IntoIterator<Item = i64>,
        bares: impl IntoIterator<Item = i64>,
    ) {
        self.by_chat.read_ahead(chats);
        self.by_bare.read_ahead(bares);
    }

    /// Lets `row` go once the current group, whose job deleted it, commits.
    pub fn delete(&mut self, row: Row) {
        self.deleted.push(row);
    }

    /// A mark to [`Rows::undo_since`].
    pub fn mark(&self) -> (usize, usize) {
        (self.added.len(), self.deleted.len())
    }

    /// Undoes what was added and deleted since `mark`: its job failed and was rolled back.
    pub fn undo_since(&mut self, (added, deleted): (usize, usize)) {
        let undone: Vec<Row> = self.added.drain(added..).collect();
        undone.into_iter().for_each(|row| self.take_out(row));
        self.deleted.truncate(deleted);
    }

    fn take_out(&mut self, row: Row) {
        self.by_chat.remove(row.chat, row.id);
        if let Some(bare) = row.bare {
            self.by_bare.remove(bare, row.id);
        }
    }

    /// The rows of the chat whose key is `chat`, in id order (a superset: see the module's words).
    pub fn in_chat(&self, chat: i64) -> Vec<i64> {
        self.by_chat.rows(chat)
    }

    /// The rows whose bare id's key is `bare` (a superset).
    pub fn with_bare(&self, bare: i64) -> Vec<i64> {
        self.by_bare.rows(bare)
    }
}

/// Runs a writer's job `f` that adds or deletes rows: what it did is undone when it fails (its savepoint
/// is rolled back).
pub fn changing<T>(
    rows: &Mutex<Rows>,
    f: impl FnOnce(&mut Rows) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut rows = lock(rows);
    let mark = rows.mark();
    let result = f(&mut rows);
    if result.is_err() {
        rows.undo_since(mark);
    }
    result
}

impl WriterState for Rows {
    fn before_commit(&mut self, _: &Connection) -> Result<(), StoreError> {
        Ok(())
    }

    fn after_commit(&mut self, committed: bool) {
        if committed {
            self.added.clear();
            let deleted = std::mem::take(&mut self.deleted);
            deleted.into_iter().for_each(|row| self.take_out(row));
        } else {
            self.undo_since((0, 0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Row = Row {
        id: 1,
        chat: 100,
        bare: Some(7),
    };
    const B: Row = Row {
        id: 2,
        chat: 100,
        bare: None,
    };

    #[test]
    fn a_row_is_held_from_its_insert_and_let_go_once_its_delete_commits() {
        let mut rows = Rows::default();
        rows.add(A);
        rows.add(B);
        rows.after_commit(true);
        rows.delete(A);
        assert_eq!(
            rows.in_chat(100),
            vec![1, 2],
            "held until the delete commits"
        );
        assert_eq!(rows.with_bare(7), vec![1]);
        rows.after_commit(true);
        assert_eq!(rows.in_chat(100), vec![2]);
        assert!(rows.with_bare(7).is_empty());
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn what_a_rolled_back_group_or_job_did_is_undone() {
        let mut rows = Rows::default();
        rows.add(A);
        rows.after_commit(true);
        rows.add(B);
        rows.delete(A);
        rows.after_commit(false);
        assert_eq!(rows.in_chat(100), vec![1], "B taken out, A kept");
        let mark = rows.mark();
        rows.add(B);
        rows.delete(A);
        rows.undo_since(mark);
        rows.after_commit(true);
        assert_eq!(rows.in_chat(100), vec![1]);
        assert_eq!(rows.with_bare(7), vec![1]);
    }
}
