//! The PostgreSQL schema and its forward-only migrations, recorded in `autoseen_migrations`.
//!
//! Migrations run in one transaction under a transaction-scoped advisory lock, so replicas starting at once
//! apply each migration exactly once (the lock is released with the transaction, which also works behind a
//! transaction-pooling PgBouncer). Each migration only adds (expand), or swaps an index or constraint for one
//! that the same queries use; removing what an older release still reads waits for a later release
//! (contract), so replicas of the previous release keep working during a rolling update. A database migrated
//! by a newer release is used as long as it has everything this one needs; its higher version is logged.

use deadpool_postgres::Object;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE pending (
    id            BIGSERIAL PRIMARY KEY,
    session       TEXT NOT NULL,
    chat          TEXT NOT NULL,
    chat_phone    TEXT,
    message_id    TEXT NOT NULL,
    bare_id       TEXT NOT NULL,
    rule          TEXT NOT NULL,
    due_at        BIGINT NOT NULL,
    not_before    BIGINT NOT NULL,
    read_on_reply BOOLEAN NOT NULL,
    on_reply      BOOLEAN NOT NULL DEFAULT false,
    expires       BOOLEAN NOT NULL DEFAULT false,
    attempts      INTEGER NOT NULL DEFAULT 0,
    accepted_at   BIGINT NOT NULL,
    last_error    TEXT
);
CREATE INDEX pending_by_chat ON pending (session, chat, due_at);
CREATE INDEX pending_by_bare_id ON pending (session, bare_id);
CREATE INDEX pending_by_phone ON pending (session, chat_phone) WHERE chat_phone IS NOT NULL;
CREATE TABLE dedup (
    session     TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    accepted_at BIGINT NOT NULL,
    PRIMARY KEY (session, message_id)
);
CREATE INDEX dedup_by_age ON dedup (accepted_at);
CREATE TABLE dead (
    id            BIGSERIAL PRIMARY KEY,
    session       TEXT NOT NULL,
    chat          TEXT NOT NULL,
    chat_phone    TEXT,
    message_id    TEXT NOT NULL,
    rule          TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    last_error    TEXT NOT NULL,
    died_at       BIGINT NOT NULL,
    read_on_reply BOOLEAN NOT NULL
);
CREATE TABLE sent (
    session    TEXT NOT NULL,
    bare_id    TEXT NOT NULL,
    sent_at    BIGINT NOT NULL,
    confirmed  BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (session, bare_id)
);
CREATE INDEX sent_by_age ON sent (sent_at);
",
    "
-- Several replicas: who is alive, and who sends which session under which fencing token.
CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    heartbeat_at BIGINT NOT NULL
);
CREATE TABLE leases (
    session      TEXT PRIMARY KEY,
    owner        TEXT,
    token        BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    paused_until BIGINT NOT NULL DEFAULT 0
);
",
    "
-- The scheduler holds timers only for what falls due soon, and reads the rest in due order as time passes.
CREATE INDEX pending_by_due ON pending (due_at, id);
",
    "
-- Cheaper entries for the two random keys every accepted receipt writes: a hash index holds a 4-byte hash
-- and the row's address, and finds a value without comparing text. Dedup stays one row per session and
-- message id, as an exclusion constraint on a hash index (PostgreSQL's unique indexes are B-trees only);
-- `ON CONFLICT DO NOTHING` without a target, which every release has used, honours it the same way.
-- Replaced, not added: the previous release's queries use the new index and constraint as they used the old.
ALTER TABLE dedup DROP CONSTRAINT dedup_pkey,
    ADD CONSTRAINT dedup_once EXCLUDE USING hash ((session || chr(9) || message_id) WITH =);
DROP INDEX pending_by_bare_id;
CREATE INDEX pending_by_bare_id ON pending USING hash (bare_id);
",
];

/// Any number, the same in every replica: the advisory lock migrations take.
const MIGRATION_LOCK: i64 = 0x6175_746f_7365_656e;

/// Brings the schema up to the newest version this release knows.
pub async fn migrate(client: &mut Object) -> Result<(), tokio_postgres::Error> {
    migrate_to(client, MIGRATIONS.len()).await
}

/// Brings the schema up to version `target` (tests start from an older one).
pub(super) async fn migrate_to(
    client: &mut Object,
    target: usize,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS autoseen_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM autoseen_migrations",
            &[],
        )
        .await?;
    let found = usize::try_from(row.get::<_, i32>(0)).unwrap_or(0);
    if found > MIGRATIONS.len() {
        tracing::info!(
            version = found,
            known = MIGRATIONS.len(),
            "the PostgreSQL schema is newer than this release; newer migrations keep its queries working, so it is used as it is"
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().take(target).skip(found) {
        tx.batch_execute(sql).await?;
        let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO autoseen_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tracing::info!(version, "store schema migrated");
    }
    tx.commit().await
}
