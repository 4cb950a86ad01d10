//! The key under which the SQLite store remembers an accepted message id for the dedup window: 63 bits of
//! SHA-256 over the session and the id, an integer primary key. The same key of a chat, and of a bare message
//! id, is what pending receipts are indexed by (queries compare the text as well, so a shared key there costs
//! nothing but a row read).
//!
//! Real message ids are random (`3EB0` and hex, `wamid.` and base64), so their keys land all over the index.
//! Kept as text, five million of them made a B-tree of 370 MB with a dozen ids per 1 KiB page; as integers
//! it is 100 MB with about fifty per page, so each webhook's insert reads and dirties a page of a tree
//! whose inner pages stay in the cache. Two different ids share a key with a chance of about one in 2^63 per
//! pair: over five million ids in the window, a wrongly dropped message about once in every 10^12 webhooks.
//! The key is written to disk, so it never changes: SHA-256, not a hasher whose output may differ between
//! Rust releases.

use sha2::{Digest, Sha256};

/// The dedup key of `message_id` in `session`: non-negative, stable across releases and machines.
pub fn seen_key(session: &str, message_id: &str) -> i64 {
    let digest = Sha256::new()
        .chain_update(session.as_bytes())
        .chain_update([0])
        .chain_update(message_id.as_bytes())
        .finalize();
    let first = u64::from_le_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"));
    (first >> 1) as i64
}

/// Registers [`seen_key`] as the SQL function `sha256_seen_key(session, message_id)`, which the migration
/// that introduced the key uses to convert the ids a store already held.
pub fn register(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "sha256_seen_key",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| Ok(seen_key(&ctx.get::<String>(0)?, &ctx.get::<String>(1)?)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_what_every_release_wrote() {
        // Written on disk by every store since schema version 4: a change here forgets every id accepted before.
        assert_eq!(seen_key("default", "3EB0A1B2C3D4"), KNOWN);
        assert!(seen_key("s", "m") >= 0);
    }

    #[test]
    fn the_session_and_the_id_are_not_run_together() {
        assert_ne!(seen_key("ab", "c"), seen_key("a", "bc"));
        assert_ne!(seen_key("one", "m"), seen_key("two", "m"));
    }

    /// Computed outside Rust: `int.from_bytes(sha256(b"default\x003EB0A1B2C3D4").digest()[:8], "little") >> 1`.
    const KNOWN: i64 = 7_305_769_061_068_456_275;
}
