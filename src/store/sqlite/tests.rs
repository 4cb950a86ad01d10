//! The SQLite store's own tests; the behaviour every store shares is in `store::contract`.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::store::contract::{Backend, key, key_of, receipt, t};
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
async fn pending_receipts_are_found_by_chat_and_by_acked_id_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(&settings(dir.path())).unwrap();
        let mut ids = Vec::new();
        for (chat, id) in [("1@c.us", "m1"), ("1@c.us", "m2"), ("2@c.us", "m3")] {
            match store.accept(receipt(chat, id, t(50))).await.unwrap() {
                Accepted::New { id } => ids.push(id),
                Accepted::Duplicate => panic!("{id} new"),
            }
        }
        assert_eq!(store.cancel(vec![ids[1]]).await.unwrap(), 1);
    }
    let store = SqliteStore::open(&settings(dir.path())).unwrap();
    let ids = |receipts: Vec<Receipt>| -> Vec<String> {
        receipts.iter().map(|r| r.message_id.to_string()).collect()
    };

    assert_eq!(lock(&store.rows).len(), 2, "the cancelled one is not read");
    assert_eq!(
        ids(store.chat_receipts(&key("1@c.us")).await.unwrap()),
        ["m1"]
    );
    assert_eq!(
        ids(store.receipts_through(&key_of("s", "m1")).await.unwrap()),
        ["m1"]
    );
    assert_eq!(
        ids(store.receipts_through(&key_of("s", "m3")).await.unwrap()),
        ["m3"]
    );
    assert!(
        store
            .receipts_through(&key_of("s", "m2"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_purge_longer_than_one_chunk_forgets_every_expired_id_and_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let expired = 2 * PURGE_ROWS * dedup::ROW_KEYS + 5;
    {
        // The log as a store that accepted them would have left it; the store reads it when it opens.
        drop(SqliteStore::open(&s).unwrap());
        let mut other = Connection::open(&s.path).unwrap();
        let tx = other.transaction().unwrap();
        let old = (0..expired).map(|i| (ms(t(i as u32)), seen_key("s", &format!("old{i}"))));
        append_seen_log(&tx, &old.collect::<Vec<_>>()).unwrap();
        append_seen_log(&tx, &[(ms(t(50_000)), seen_key("s", "fresh"))]).unwrap();
        tx.commit().unwrap();
    }
    let store = SqliteStore::open(&s).unwrap();
    let again = |id: &str| store.accept(receipt("1@c.us", id, t(60_000)));
    assert_eq!(
        again("old7").await.unwrap(),
        Accepted::Duplicate,
        "read at start"
    );

    let forgotten = store.purge_dedup(t(40_000)).await.unwrap();

    assert_eq!(forgotten, expired as u64);
    assert!(matches!(again("old7").await.unwrap(), Accepted::New { .. }));
    assert!(matches!(
        again(&format!("old{}", expired - 1)).await.unwrap(),
        Accepted::New { .. }
    ));
    assert_eq!(again("fresh").await.unwrap(), Accepted::Duplicate);
    drop(store);
    let reopened = SqliteStore::open(&s).unwrap();
    let after_restart = reopened
        .accept(receipt("1@c.us", "old8", t(60_000)))
        .await
        .unwrap();
    assert!(
        matches!(after_restart, Accepted::New { .. }),
        "forgotten on disk too"
    );
    let twice = reopened
        .accept(receipt("1@c.us", "old7", t(60_000)))
        .await
        .unwrap();
    assert_eq!(twice, Accepted::Duplicate, "accepted again, logged again");
}

#[tokio::test]
async fn a_store_open_in_one_store_is_refused_to_another_and_free_once_closed() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let first = SqliteStore::open(&s).unwrap();

    let refused = SqliteStore::open(&s).err().expect("the file is taken");

    assert!(
        format!("{refused:#}").contains("open in another autoseen process"),
        "{refused:#}"
    );
    drop(first);
    // Its threads close the file as they end; opening waits for that.
    let reopened = SqliteStore::open(&s).unwrap();
    assert!(matches!(
        reopened
            .accept(receipt("1@c.us", "m1", t(5)))
            .await
            .unwrap(),
        Accepted::New { .. }
    ));
}

#[tokio::test]
async fn ids_of_a_group_that_did_not_commit_are_not_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let store = SqliteStore::open(&s).unwrap();
    let other = Connection::open(&s.path).unwrap();
    // The log cannot be written, so the group's commit fails after its receipt was inserted.
    other
        .execute_batch("ALTER TABLE seen_log RENAME TO gone")
        .unwrap();

    let refused = store.accept(receipt("1@c.us", "m1", t(5))).await;

    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "{refused:?}"
    );
    other
        .execute_batch("ALTER TABLE gone RENAME TO seen_log")
        .unwrap();
    assert!(
        store.list_pending(10).await.unwrap().is_empty(),
        "rolled back"
    );
    assert_eq!(lock(&store.rows).len(), 0, "its row is not held either");
    assert!(matches!(
        store.accept(receipt("1@c.us", "m1", t(5))).await.unwrap(),
        Accepted::New { .. }
    ));
    assert_eq!(
        store.accept(receipt("1@c.us", "m1", t(6))).await.unwrap(),
        Accepted::Duplicate
    );
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
