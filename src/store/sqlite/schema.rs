//! The SQLite schema and its forward-only migrations, versioned by `PRAGMA user_version`.
//!
//! Each entry of [`MIGRATIONS`] takes the database from version `i` to `i + 1` and is never edited once
//! released: a change to the schema is a new entry. Migrations run at open, in one `BEGIN IMMEDIATE`
//! transaction that also reads the version, so two processes opening the same file at once cannot both apply
//! one. A file written by a newer autoseen (a higher version than this one knows) is refused, not guessed at.
//!
//! Version 1 is the schema the first release created without a version; it is written with `IF NOT EXISTS`
//! so that such a file is adopted as it is. Version 2 adds LID phone numbers, bare message ids (receipts
//! accepted before it have none, so acks do not find them), held `on_reply` receipts and the sent table.
//! Version 3 indexes pending receipts by due time (with the rowid: the order the scheduler reads them in).
//! Version 4 keeps accepted ids as integer keys in `seen` instead of text in `dedup` (see [`super::seen`]);
//! version 5 indexes pending receipts by such keys of their chat and bare message id. Version 6 keeps the
//! accepted ids as a log read into memory; version 7 drops the indexes of version 5 (kept in memory since), and
//! version 8 indexes the keys memory is read from, in id order.

use rusqlite::Connection;

use super::seen;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &["
CREATE TABLE IF NOT EXISTS pending (
    id            INTEGER PRIMARY KEY,
    session       TEXT NOT NULL,
    chat          TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    rule          TEXT NOT NULL,
    due_at        INTEGER NOT NULL,
    not_before    INTEGER NOT NULL,
    read_on_reply INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    accepted_at   INTEGER NOT NULL,
    last_error    TEXT
);
CREATE INDEX IF NOT EXISTS pending_by_chat ON pending (session, chat, due_at);
CREATE TABLE IF NOT EXISTS dedup (
    session     TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    accepted_at INTEGER NOT NULL,
    PRIMARY KEY (session, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_by_age ON dedup (accepted_at);
CREATE TABLE IF NOT EXISTS dead (
    id          INTEGER PRIMARY KEY,
    session     TEXT NOT NULL,
    chat        TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    rule        TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    last_error  TEXT NOT NULL,
    died_at     INTEGER NOT NULL,
    read_on_reply INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
", "
-- LID chats keep their phone number; acks find a receipt by its bare message id; on_reply receipts are held.
ALTER TABLE pending ADD COLUMN chat_phone TEXT;
ALTER TABLE pending ADD COLUMN bare_id TEXT;
ALTER TABLE pending ADD COLUMN on_reply INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pending ADD COLUMN expires INTEGER NOT NULL DEFAULT 0;
CREATE INDEX pending_by_bare_id ON pending (session, bare_id);
CREATE INDEX pending_by_phone ON pending (session, chat_phone) WHERE chat_phone IS NOT NULL;
ALTER TABLE dead ADD COLUMN chat_phone TEXT;
-- Sent messages, remembered for the dedup window so that acks can confirm them.
CREATE TABLE sent (
    session    TEXT NOT NULL,
    bare_id    TEXT NOT NULL,
    sent_at    INTEGER NOT NULL,
    confirmed  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session, bare_id)
) WITHOUT ROWID;
CREATE INDEX sent_by_age ON sent (sent_at);
", "
-- The scheduler holds timers only for what falls due soon, and reads the rest in due order as time passes.
CREATE INDEX pending_by_due ON pending (due_at);
", "
-- Accepted ids are remembered under an integer key (seen.rs): a third of the size of the text index and
-- inserted into far faster on random ids. Without an index by age: the purge sweeps the table in key order.
CREATE TABLE seen (key INTEGER PRIMARY KEY, accepted_at INTEGER NOT NULL);
INSERT INTO seen (key, accepted_at)
    SELECT sha256_seen_key(session, message_id), MAX(accepted_at) FROM dedup GROUP BY 1;
DROP TABLE dedup;
", "
-- Pending receipts are found by chat and by bare message id through integer keys (seen.rs) instead of text.
ALTER TABLE pending ADD COLUMN chat_key INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pending ADD COLUMN bare_key INTEGER;
UPDATE pending SET chat_key = sha256_seen_key(session, chat),
                   bare_key = CASE WHEN bare_id IS NULL THEN NULL ELSE sha256_seen_key(session, bare_id) END;
DROP INDEX pending_by_chat;
DROP INDEX pending_by_bare_id;
CREATE INDEX pending_by_chat_key ON pending (chat_key, due_at);
CREATE INDEX pending_by_bare_key ON pending (bare_key) WHERE bare_key IS NOT NULL;
", "
-- Accepted ids as a log read into memory at start (dedup.rs): a group commit writes at the log's end, not on
-- a random page of a tree, and the purge deletes from its start. The keys of `seen` move over (in Rust,
-- `dedup::migrate_from_table`), and `seen` is dropped.
CREATE TABLE seen_log (id INTEGER PRIMARY KEY, accepted_at INTEGER NOT NULL, keys BLOB NOT NULL);
CREATE INDEX seen_log_by_age ON seen_log (accepted_at);
", "
-- Pending receipts are found by chat and by bare message id in memory (rows.rs), read from `chat_key` and
-- `bare_key` at start: these two indexes took a random page each for every receipt accepted.
DROP INDEX pending_by_chat_key;
DROP INDEX pending_by_bare_key;
", "
-- What the store reads at start to find pending receipts in memory, in a sixth of the table's pages; in id
-- order, so a receipt's entry is written at its end.
CREATE INDEX pending_keys ON pending (id, chat_key, bare_key);
"];

/// The schema version whose migration also moves the accepted ids from `seen` into `seen_log`.
const SEEN_LOG: usize = 6;

/// The schema version this build writes.
pub const VERSION: usize = MIGRATIONS.len();

/// Brings the database up to [`VERSION`]; refuses a database from a newer release.
pub fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    seen::register(conn)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let found = usize::try_from(found).unwrap_or(usize::MAX);
    if found > VERSION {
        anyhow::bail!(
            "the store has schema version {found}, written by a newer autoseen; this one knows up to {VERSION} \
             (run the newer release, or point store.path at another file)"
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found) {
        tx.execute_batch(sql)?;
        if i + 1 == SEEN_LOG {
            super::dedup::migrate_from_table(&tx)?;
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tracing::info!(version = i + 1, "store schema migrated");
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_gets_every_migration_and_a_second_run_changes_nothing() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, VERSION as i64);
    }

    #[test]
    fn a_file_of_the_first_release_is_adopted_with_its_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute(
            "INSERT INTO dedup (session, message_id, accepted_at) VALUES ('s', 'm', 1)",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let kept: Vec<(i64, Vec<u8>)> = conn
            .prepare("SELECT accepted_at, keys FROM seen_log")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kept, [(1, seen::seen_key("s", "m").to_le_bytes().to_vec())]);
    }

    #[test]
    fn receipts_pending_before_version_5_get_their_keys() {
        let mut conn = Connection::open_in_memory().unwrap();
        seen::register(&conn).unwrap();
        for sql in &MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        let insert = "INSERT INTO pending (session, chat, message_id, rule, due_at, not_before, read_on_reply,
                                           accepted_at, bare_id)
                      VALUES ('s', ?1, 'm', 'r', 1, 1, 1, 1, ?2)";
        conn.execute(insert, ("491@c.us", Some("3EB0"))).unwrap();
        conn.execute(insert, ("492@c.us", None::<&str>)).unwrap();
        migrate(&mut conn).unwrap();
        let keys: Vec<(i64, Option<i64>)> = conn
            .prepare("SELECT chat_key, bare_key FROM pending ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            keys,
            [
                (
                    seen::seen_key("s", "491@c.us"),
                    Some(seen::seen_key("s", "3EB0"))
                ),
                (seen::seen_key("s", "492@c.us"), None),
            ]
        );
    }

    #[test]
    fn ids_of_version_5_move_into_the_log_oldest_first_in_full_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        seen::register(&conn).unwrap();
        for sql in &MIGRATIONS[..5] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        // Keys in random order, each accepted at a moment that is not its key's order.
        let ids: Vec<(i64, i64)> = (0..200)
            .map(|i| {
                (
                    seen::seen_key("s", &format!("m{i}")),
                    1_000 + (i * 7919) % 200,
                )
            })
            .collect();
        for (key, at) in &ids {
            conn.execute(
                "INSERT INTO seen (key, accepted_at) VALUES (?1, ?2)",
                (key, at),
            )
            .unwrap();
        }
        migrate(&mut conn).unwrap();

        let rows: Vec<(i64, Vec<u8>)> = conn
            .prepare("SELECT accepted_at, keys FROM seen_log ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut by_age = ids.clone();
        by_age.sort_by_key(|&(_, at)| at);
        let sizes: Vec<usize> = rows.iter().map(|(_, keys)| keys.len() / 8).collect();
        assert_eq!(sizes, [96, 96, 8]);
        let logged: Vec<i64> = rows
            .iter()
            .flat_map(|(_, keys)| {
                keys.chunks(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            })
            .collect();
        assert_eq!(logged, by_age.iter().map(|&(k, _)| k).collect::<Vec<_>>());
        assert_eq!(rows[0].0, by_age[95].1, "a row is as old as its newest id");
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'seen'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "the old table is dropped");
    }

    #[test]
    fn a_file_from_a_newer_release_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", (VERSION + 1) as i64)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err().to_string();
        assert!(err.contains("newer autoseen"), "{err}");
    }
}
