//! `autoseen backup PATH`: a consistent copy of the SQLite store, taken while the service runs.
//!
//! `VACUUM INTO` reads the store in one read transaction (WAL mode lets it run beside the writer, which it
//! never blocks) and writes a compact copy holding everything committed when it began, with the schema
//! version; the copy is synced before the command says it is done. Restoring is putting the copy where
//! `store.path` points while the service is stopped (docs/operations.md).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags};

/// Copies the store at `store` to the new file `to`; returns the copy's size in bytes.
pub fn backup(store: &Path, to: &Path) -> anyhow::Result<u64> {
    if to.exists() {
        bail!("{} already exists; back up to a new file", to.display());
    }
    let target = to
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8; choose another name", to.display()))?;
    let conn = Connection::open_with_flags(store, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open the store at {} (store.path)", store.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute("VACUUM INTO ?1", [target])
        .with_context(|| format!("cannot copy the store to {}", to.display()))?;
    let file = std::fs::File::open(to)?;
    file.sync_all()
        .with_context(|| format!("cannot sync {}", to.display()))?;
    Ok(file.metadata()?.len())
}
