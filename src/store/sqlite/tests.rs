//! The SQLite store's own tests; the behaviour every store shares is in `store::contract`.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::store::contract::{Backend, receipt, t};
use crate::store::{Operator, Queue, Store};

fn settings(dir: &Path) -> SqliteOptions {
    SqliteOptions {
        path: dir.join("sub/autoseen.db"),
        synchronous: crate::settings::Synchronous::Normal,
        busy_timeout: Duration::from_millis(100),
    }
}

/// A store in a temporary folder that lives as long as it.
pub struct TempSqlite {
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

impl TempSqlite {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&settings(dir.path())).unwrap();
        Self { store, _dir: dir }
    }
}

impl Backend for TempSqlite {
    fn store(&self) -> &dyn Store {
        &self.store
    }
}

crate::store_contract_tests!(async { Some(TempSqlite::new()) });

#[tokio::test]
async fn accepted_receipts_and_ids_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(&settings(dir.path())).unwrap();
        store.accept(receipt("1@c.us", "m1", t(50))).await.unwrap();
    }
    let store = SqliteStore::open(&settings(dir.path())).unwrap();
    let q = DueQuery {
        after: None,
        until: t(1_000_000),
        limit: 10,
    };
    let heads = store.due_heads(q).await.unwrap();
    assert_eq!(heads.len(), 1);
    assert_eq!(
        store.accept(receipt("1@c.us", "m1", t(99))).await.unwrap(),
        Accepted::Duplicate
    );
}

#[tokio::test]
async fn a_purge_longer_than_one_chunk_forgets_every_expired_id_and_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let store = SqliteStore::open(&s).unwrap();
    let expired = 2 * SWEEP_CHUNK as usize + 5;
    let mut other = Connection::open(&s.path).unwrap();
    let tx = other.transaction().unwrap();
    let ids = (0..expired).map(|i| (format!("old{i}"), i as u32));
    for (id, at) in ids.chain([("fresh".to_string(), 50_000)]) {
        tx.execute(
            "INSERT INTO seen (key, accepted_at) VALUES (?1, ?2)",
            (seen_key("s", &id), ms(t(at))),
        )
        .unwrap();
    }
    tx.commit().unwrap();

    let forgotten = store.purge_dedup(t(40_000)).await.unwrap();

    assert_eq!(forgotten, expired as u64);
    let left: Vec<i64> = other
        .prepare("SELECT key FROM seen")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(left, [seen_key("s", "fresh")]);
}

#[tokio::test]
async fn a_locked_database_is_reported_unwritable_and_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let store = SqliteStore::open(&s).unwrap();
    let other = Connection::open(&s.path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    assert!(matches!(
        store.check_writable().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.accept(receipt("1@c.us", "a", t(5))).await,
        Err(StoreError::Unavailable(_))
    ));
    other.execute_batch("COMMIT").unwrap();
    assert_eq!(store.check_writable().await, Ok(()));
    // The refused message was not remembered as accepted.
    assert!(matches!(
        store.accept(receipt("1@c.us", "a", t(5))).await.unwrap(),
        Accepted::New { .. }
    ));
}

#[tokio::test]
async fn the_readiness_probe_writes_nothing_when_all_is_well() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let store = SqliteStore::open(&s).unwrap();
    for _ in 0..3 {
        store.check_writable().await.unwrap();
    }
    let reader = Connection::open(&s.path).unwrap();
    let rows: i64 = reader
        .query_row("SELECT COUNT(*) FROM meta", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0);
}
