//! The ids the SQLite store accepted within the dedup window: every [`seen_key`](super::seen_key) in memory
//! (a [`KeySet`], checked and added to by the writer thread), and on disk as the log `seen_log`, read back
//! whole when the store opens. Each group commit adds its new keys to the log's last row (up to
//! [`ROW_KEYS`] keys accepted within [`ROW_SPAN_MS`] of its first, so a row fits one page) or to new rows
//! after it; the purge deletes the rows whose `accepted_at`, the newest of their keys', is past the window,
//! oldest first by the index on it (which, times growing, is also written at its end).
//!
//! Why: kept as a B-tree of random keys (schema versions 4 and 5), each webhook's id dirtied a page of a tree
//! of millions of keys, a page written to the WAL and copied again by the checkpoint, and the purge deleted
//! a million keys one page at a time. The log is written at its end only, and a page holds 96 ids. Memory
//! is the price: about 7 bytes an id, 40 MB for the six million of a busy 48 hours (docs/performance.md).
//!
//! What memory holds follows what commits: keys a group added are taken out again when its commit fails, and
//! keys a purge took out are put back; a job that fails alone takes out its own.

use rusqlite::{Connection, OptionalExtension, params};

use super::engine::{WriterState, unavailable};
use super::keyset::KeySet;
use crate::store::StoreError;

/// Most keys in one row of the log: 768 bytes, so a row stays on one page of 1 KiB.
pub const ROW_KEYS: usize = 96;
/// A row takes keys accepted up to this long after its first (never before it), so its keys expire about
/// together.
const ROW_SPAN_MS: i64 = 60_000;

/// The log's last row while it takes more keys.
struct Tail {
    id: i64,
    keys: Vec<i64>,
    first_at: i64,
}

/// The accepted ids: in memory, and what the current group still has to log.
#[derive(Default)]
pub struct Seen {
    keys: KeySet,
    /// Keys accepted in the current group and when, to be logged before its commit.
    fresh: Vec<(i64, i64)>,
    /// Keys the current group's purge took out, put back if it does not commit.
    gone: Vec<i64>,
    tail: Option<Tail>,
}

impl Seen {
    /// Every key of the log.
    pub fn load(conn: &Connection) -> rusqlite::Result<Self> {
        let rows: i64 = conn.query_row("SELECT COUNT(*) FROM seen_log", [], |r| r.get(0))?;
        let mut statement = conn.prepare("SELECT keys FROM seen_log")?;
        let blobs = statement.query_map([], |row| row.get::<_, Vec<u8>>(0))?;
        let mut failed = None;
        let all = blobs
            .map_while(|blob| blob.map_err(|e| failed = Some(e)).ok())
            .flat_map(|blob| (0..blob.len() / 8).map(move |i| key_at(&blob, i)));
        let keys = KeySet::load(rows as usize * ROW_KEYS, all);
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(Self {
            keys,
            ..Self::default()
        })
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Remembers `key`, accepted at `at`; false when it was accepted before.
    pub fn accept(&mut self, key: i64, at: i64) -> bool {
        let new = self.keys.insert(key);
        if new {
            self.fresh.push((key, at));
        }
        new
    }

    /// Brings what accepting `keys` will look at into the cache, all at once ([`KeySet::read_ahead`]).
    pub fn read_ahead(&self, keys: impl IntoIterator<Item = i64>) {
        self.keys.read_ahead(keys);
    }

    /// A mark to [`Seen::undo_since`].
    pub fn mark(&self) -> usize {
        self.fresh.len()
    }

    /// Forgets what was accepted since `mark`: its job failed and was rolled back.
    pub fn undo_since(&mut self, mark: usize) {
        for (key, _) in self.fresh.drain(mark..) {
            self.keys.remove(key);
        }
    }

    /// Forgets `keys`, whose log row the current group deletes; how many were remembered.
    pub fn forget(&mut self, keys: &[i64]) -> usize {
        let before = self.gone.len();
        self.keys.remove_all(keys, |key| self.gone.push(key));
        self.gone.len() - before
    }

    fn log(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let mut fresh = &self.fresh[..];
        if let Some(tail) = &mut self.tail {
            let room = fresh
                .iter()
                .take(ROW_KEYS - tail.keys.len())
                .take_while(|(_, at)| (0..ROW_SPAN_MS).contains(&(at - tail.first_at)))
                .count();
            if room > 0 {
                tail.keys.extend(fresh[..room].iter().map(|(k, _)| k));
                let at = fresh[..room].iter().map(|(_, at)| *at).max();
                let updated = conn
                    .prepare_cached(
                        "UPDATE seen_log SET keys = ?1, accepted_at = max(accepted_at, ?2) WHERE id = ?3",
                    )?
                    .execute(params![pack(&tail.keys), at, tail.id])?;
                if updated == 1 {
                    fresh = &fresh[room..];
                } else {
                    // Purged meanwhile (a window shorter than a row's span): its keys go in a row of their own.
                    self.tail = None;
                }
            }
        }
        for chunk in fresh.chunks(ROW_KEYS) {
            let keys: Vec<i64> = chunk.iter().map(|(k, _)| *k).collect();
            self.tail = Some(Tail {
                id: insert_row(conn, &keys, chunk.iter().map(|(_, at)| *at))?,
                first_at: chunk[0].1,
                keys,
            });
        }
        Ok(())
    }
}

impl WriterState for Seen {
    fn before_commit(&mut self, conn: &Connection) -> Result<(), StoreError> {
        if self.fresh.is_empty() {
            return Ok(());
        }
        self.log(conn).map_err(unavailable)
    }

    fn after_commit(&mut self, committed: bool) {
        if !committed {
            for (key, _) in &self.fresh {
                self.keys.remove(*key);
            }
            for key in &self.gone {
                self.keys.insert(*key);
            }
            // The tail's row is as it was before the group; the keys held for it may not be.
            self.tail = None;
        }
        self.fresh.clear();
        self.gone.clear();
    }
}

/// Keys as stored in a row: 8 bytes each, little-endian.
pub fn pack(keys: &[i64]) -> Vec<u8> {
    keys.iter().flat_map(|k| k.to_le_bytes()).collect()
}

fn unpack(blob: &[u8]) -> impl Iterator<Item = i64> + '_ {
    (0..blob.len() / 8).map(|i| key_at(blob, i))
}

fn key_at(blob: &[u8], i: usize) -> i64 {
    i64::from_le_bytes(blob[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
}

/// Appends `keys` (accepted at, key), in the order accepted, to the log in full rows: what the migration from
/// the `seen` table writes, and the benchmark's filling of a store.
pub fn append(conn: &Connection, keys: &[(i64, i64)]) -> rusqlite::Result<()> {
    for chunk in keys.chunks(ROW_KEYS) {
        let packed: Vec<i64> = chunk.iter().map(|(_, k)| *k).collect();
        insert_row(conn, &packed, chunk.iter().map(|(at, _)| *at))?;
    }
    Ok(())
}

/// A new row of the log holding `keys`, as old as the newest of `accepted`; its id.
fn insert_row(
    conn: &Connection,
    keys: &[i64],
    accepted: impl Iterator<Item = i64>,
) -> rusqlite::Result<i64> {
    conn.prepare_cached("INSERT INTO seen_log (accepted_at, keys) VALUES (?1, ?2)")?
        .execute(params![accepted.max(), pack(keys)])?;
    Ok(conn.last_insert_rowid())
}

/// The log's oldest rows accepted before `before`, at most `limit` of them, each with its keys.
pub fn expired_rows(
    conn: &Connection,
    before: i64,
    limit: usize,
) -> rusqlite::Result<Vec<(i64, Vec<i64>)>> {
    conn.prepare_cached(
        "SELECT id, keys FROM seen_log WHERE accepted_at < ?1 ORDER BY accepted_at LIMIT ?2",
    )?
    .query_map(params![before, limit as i64], |row| {
        Ok((row.get(0)?, unpack(row.get_ref(1)?.as_blob()?).collect()))
    })?
    .collect()
}

/// Deletes the log row `id` if it is still older than `before`; whether it did.
pub fn delete_row(conn: &Connection, id: i64, before: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached("DELETE FROM seen_log WHERE id = ?1 AND accepted_at < ?2")?
        .execute(params![id, before])
        .map(|n| n == 1)
}

/// Schema version 6: the `seen` table's keys into the log, oldest first, then the table dropped.
pub fn migrate_from_table(conn: &Connection) -> rusqlite::Result<()> {
    let had_table: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'seen'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if had_table.is_none() {
        return Ok(());
    }
    let keys: Vec<(i64, i64)> = conn
        .prepare("SELECT accepted_at, key FROM seen ORDER BY accepted_at")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    append(conn, &keys)?;
    conn.execute_batch("DROP TABLE seen")
}
