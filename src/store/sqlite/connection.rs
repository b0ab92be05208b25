//! Opening the database: the file created readable by its owner only, and every connection's
//! pragmas — WAL, the `synchronous` level, and how long a locked database is waited for.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::error::{at_path, classify};
use crate::store::StoreError;

/// How long a statement waits for a lock another connection holds before failing with BUSY.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// When a committed row is durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// After an fsync of the WAL: a 201 survives power loss.
    #[default]
    Full,
    /// Once written to the WAL: a 201 survives a process crash, not a power loss.
    Normal,
}

impl Synchronous {
    pub(super) fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Creates the directory and an empty owner-only file when there is none: the file holds
/// credentials in clear text.
pub(super) fn prepare_file(path: &Path) -> Result<(), StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| at_path(dir, e))?;
    }
    if !path.exists() {
        create_private(path)?;
    }
    Ok(())
}

/// A connection for writes (and migrations, recovery), at `synchronous`.
pub(super) fn open(path: &Path, synchronous: Synchronous) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|e| at_path(path, e))?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {};",
        synchronous.pragma()
    ))
    .map_err(classify)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
    Ok(conn)
}

/// A connection that can only read: WAL lets it read beside the writer without waiting.
pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = open(path, Synchronous::Normal)?;
    conn.execute_batch("PRAGMA query_only = ON;")
        .map_err(classify)?;
    Ok(conn)
}

#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| at_path(path, e))
}

#[cfg(not(unix))]
fn create_private(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}
