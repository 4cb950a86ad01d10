//! A store at steady state, for the figures that depend on it: the ids of a busy 48 hours (five million,
//! accepted over the dedup window), a million more that are older (the purge forgets them while the
//! measurement runs), and a million pending receipts due an hour or two from now, in realistic chats. Built
//! once per run as a template: autoseen creates the file (so the schema is its own), the bench fills it in
//! one transaction, and each measured server gets a copy.

use std::path::{Path, PathBuf};

use autoseen::store::sqlite::seen_key;
use rusqlite::params;

use super::*;

/// The schema version the rows below are written for; a newer one stops the bench rather than guess.
pub const SCHEMA_VERSION: i64 = 8;

/// How full the store is.
pub struct Fill {
    pub live_ids: usize,
    pub expired_ids: usize,
    pub pending: usize,
}

impl Fill {
    pub fn of(quick: bool) -> Self {
        let scale = if quick { 10 } else { 1 };
        Self {
            live_ids: 5_000_000 / scale,
            expired_ids: 1_000_000 / scale,
            pending: 1_000_000 / scale,
        }
    }
}

/// A filled store file, copied for each server.
pub struct Template {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Template {
    pub fn build(fill: &Fill) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("autoseen.db");
        // autoseen creates and migrates the file; the bench only adds rows.
        drop(spawn(autoseen(&config_for(dir.path(), &path)?))?);
        let mut db = rusqlite::Connection::open(&path)?;
        let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version != SCHEMA_VERSION {
            bail!(
                "the store's schema is version {version}; bench/src/steady.rs writes rows for {SCHEMA_VERSION}"
            );
        }
        db.pragma_update(None, "synchronous", "OFF")?;
        let now = now_ms();
        let hour = 3_600_000;
        let tx = db.transaction()?;
        {
            // The log holds the ids as a store that accepted them would: oldest first, in full rows.
            let mut seen = Vec::with_capacity(fill.live_ids + fill.expired_ids);
            for n in 0..fill.live_ids + fill.expired_ids {
                let m = traffic::message(7, n);
                let r = traffic::mix(n as u64 ^ 0xD1D1);
                let age = if n < fill.live_ids {
                    (r % (47 * hour as u64)) as i64
                } else {
                    48 * hour + (r % hour as u64) as i64
                };
                seen.push((now - age, seen_key(m.session, &m.serialized)));
            }
            seen.sort_unstable();
            autoseen::store::sqlite::append_seen_log(&tx, &seen)?;
            let mut pending = tx.prepare(
                "INSERT INTO pending (session, chat, message_id, rule, due_at, not_before, read_on_reply,
                                      accepted_at, chat_phone, bare_id, on_reply, expires, chat_key, bare_key)
                 VALUES (?1, ?2, ?3, 'default', ?4, ?4, 1, ?5, NULL, ?6, 0, 0, ?7, ?8)",
            )?;
            for n in 0..fill.pending {
                let m = traffic::message(8, n);
                let due = now + hour + (traffic::mix(n as u64 ^ 0xD0E0) % hour as u64) as i64;
                let keys = (seen_key(m.session, &m.chat), seen_key(m.session, &m.id));
                pending.execute(params![
                    m.session,
                    m.chat,
                    m.serialized,
                    due,
                    now,
                    m.id,
                    keys.0,
                    keys.1
                ])?;
            }
        }
        tx.commit()?;
        db.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
        drop(db);
        Ok(Self { _dir: dir, path })
    }

    /// A copy of the filled store, with a config folder for autoseen with the shipped rules (an hour's delay):
    /// the folder that holds both, and the config folder to start autoseen with.
    pub fn copy(&self) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
        let dir = tempfile::tempdir()?;
        let store = dir.path().join("autoseen.db");
        std::fs::copy(&self.path, &store)?;
        Command::new("sync").status()?;
        let config = config_for(dir.path(), &store)?;
        Ok((dir, config))
    }
}

fn config_for(dir: &Path, store: &Path) -> anyhow::Result<PathBuf> {
    let config = dir.join("config");
    autoseen_config(&config, "http://127.0.0.1:9", store, "", None)?;
    Ok(config)
}
