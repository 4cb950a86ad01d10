//! The store contract on a real PostgreSQL: each test gets a schema of its own, dropped after.

use std::collections::HashMap;

use super::*;
use crate::store::Store;
use crate::store::contract::Backend;
use tokio_postgres::NoTls;

/// The server tests use: `AUTOSEEN_TEST_DATABASE_URL`, else the local default.
pub fn test_url() -> String {
    std::env::var("AUTOSEEN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Whether a missing server fails the test (CI) rather than skipping it (a newcomer's machine).
pub fn required() -> bool {
    std::env::var("AUTOSEEN_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// A store in a fresh schema, or `None` (having said `skipped: …`) when no server answers and none is
/// required.
pub struct TempSchema {
    store: PostgresStore,
    schema: String,
}

impl TempSchema {
    pub async fn new() -> Option<Self> {
        let url = test_url();
        let admin = match tokio_postgres::connect(&url, NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                client
            }
            Err(e) if !required() => {
                println!("skipped: no PostgreSQL at {url} ({e})");
                return None;
            }
            Err(e) => {
                panic!("PostgreSQL is required (AUTOSEEN_TEST_REQUIRE_POSTGRES=1) at {url}: {e}")
            }
        };
        let schema = format!("autoseen_test_{}", rand::random::<u64>());
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
        let separator = if url.contains('?') { '&' } else { '?' };
        let scoped = format!("{url}{separator}options=-csearch_path%3D{schema}");
        let store = PostgresStore::new(&StoreUrl::new(scoped)).unwrap();
        Some(Self { store, schema })
    }
}

impl Drop for TempSchema {
    fn drop(&mut self) {
        let statement = format!("DROP SCHEMA {} CASCADE", self.schema);
        // The test's runtime cannot block on itself: a scoped thread with a runtime of its own does it.
        std::thread::scope(|scope| {
            scope.spawn(|| drop_blocking(&statement));
        });
    }
}

/// Runs one statement on the test server from a thread that is outside any runtime.
fn drop_blocking(statement: &str) {
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        return;
    };
    runtime.block_on(async {
        let Ok((client, connection)) = tokio_postgres::connect(&test_url(), NoTls).await else {
            return;
        };
        let driver = tokio::spawn(connection);
        let _ = client.batch_execute(statement).await;
        driver.abort();
    });
}

impl Backend for TempSchema {
    fn store(&self) -> &dyn Store {
        &self.store
    }
}

crate::store_contract_tests!(async { TempSchema::new().await });

#[tokio::test]
async fn two_concurrent_deliveries_of_a_message_store_it_once() {
    let Some(backend) = TempSchema::new().await else {
        return;
    };
    let store = backend.store.clone();
    let receipt = crate::store::contract::receipt(
        "1@c.us",
        "false_1@c.us_TWICE",
        crate::store::contract::t(10),
    );

    let (a, b) = tokio::join!(store.accept(receipt.clone()), store.accept(receipt));

    let mut answers = [a.unwrap(), b.unwrap()];
    answers.sort_by_key(|a| matches!(a, Accepted::Duplicate));
    assert!(matches!(answers[0], Accepted::New { .. }), "{answers:?}");
    assert_eq!(answers[1], Accepted::Duplicate);
    assert_eq!(store.list_pending(10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_written_in_one_batch_are_each_answered_for_their_own_receipts() {
    let Some(backend) = TempSchema::new().await else {
        return;
    };
    let store = backend.store.clone();
    let at = crate::store::contract::t(10);
    let webhook = |n: usize| {
        // Every fifth webhook repeats the previous one's id, and every webhook carries its first id twice.
        let first = format!("m{}", if n % 5 == 4 { n - 1 } else { n });
        vec![
            crate::store::contract::receipt("1@c.us", &first, at),
            crate::store::contract::receipt("2@c.us", &format!("other{n}"), at),
            crate::store::contract::receipt("1@c.us", &first, at),
        ]
    };

    // Posted at once, most of them wait for a batch in flight and are written together.
    let answers = futures_util::future::join_all((0..200).map(|n| {
        let store = store.clone();
        async move { store.accept_all(webhook(n)).await.unwrap() }
    }))
    .await;

    let pending = store.list_pending(1_000).await.unwrap();
    let by_id: HashMap<ReceiptId, &str> = pending
        .iter()
        .map(|r| (r.id, r.message_id.as_str()))
        .collect();
    let mut new_firsts = 0;
    for (n, answer) in answers.iter().enumerate() {
        let expected = webhook(n);
        assert_eq!(answer.len(), 3, "webhook {n}: {answer:?}");
        for (receipt, accepted) in expected.iter().zip(answer) {
            if let Accepted::New { id } = accepted {
                assert_eq!(by_id[id], receipt.message_id.as_str(), "webhook {n}");
            }
        }
        assert!(
            matches!(answer[1], Accepted::New { .. }),
            "webhook {n}: {answer:?}"
        );
        assert_eq!(answer[2], Accepted::Duplicate, "webhook {n}: the id again");
        new_firsts += usize::from(matches!(answer[0], Accepted::New { .. }));
    }
    // m0..m199 less the forty repeats (m4 repeats m3, ...): each stored once, whichever delivery came first.
    assert_eq!(new_firsts, 160);
    assert_eq!(pending.len(), 160 + 200);
}

#[tokio::test]
async fn a_store_of_schema_3_keeps_its_ids_and_receipts_through_the_hash_indexes_of_4() {
    let Some(backend) = TempSchema::new().await else {
        return;
    };
    let mut client = backend.store.pool.get().await.unwrap();
    schema::migrate_to(&mut client, 3).await.unwrap();
    // What the previous release wrote: an accepted id, and its receipt, found later by its bare id.
    client
        .batch_execute(
            "INSERT INTO dedup (session, message_id, accepted_at) VALUES ('s', 'false_1@c.us_OLD', 1);
             INSERT INTO pending (session, chat, message_id, bare_id, rule, due_at, not_before, read_on_reply,
                                  accepted_at)
             VALUES ('s', '1@c.us', 'false_1@c.us_OLD', 'OLD', 'defaults', 10, 0, true, 1)",
        )
        .await
        .unwrap();
    drop(client);
    let store = backend.store.clone();
    let accept = |id: &str| {
        store.accept(crate::store::contract::receipt(
            "1@c.us",
            id,
            crate::store::contract::t(10),
        ))
    };

    let again = accept("false_1@c.us_OLD").await.unwrap();
    let fresh = accept("false_1@c.us_NEW").await.unwrap();
    let through = store
        .receipts_through(&crate::store::contract::key_of("s", "NEW"))
        .await
        .unwrap();

    assert_eq!(again, Accepted::Duplicate);
    assert!(matches!(fresh, Accepted::New { .. }), "{fresh:?}");
    let ids: Vec<&str> = through.iter().map(|r| r.message_id.as_str()).collect();
    assert_eq!(ids, ["false_1@c.us_OLD", "false_1@c.us_NEW"]);
    let methods = backend
        .store
        .query(
            "SELECT a.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_am a ON a.oid = c.relam
             WHERE c.relname IN ('pending_by_bare_id', 'dedup_once') AND c.relnamespace = current_schema()::regnamespace
             ORDER BY c.relname",
            &[],
            |row| get::<String>(row, "amname"),
        )
        .await
        .unwrap();
    assert_eq!(methods, ["hash", "hash"]);
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_not_a_crash() {
    let store = PostgresStore::new(&StoreUrl::new("postgres://postgres@127.0.0.1:9/none")).unwrap();

    let err = store.check_writable().await.unwrap_err();

    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
}
