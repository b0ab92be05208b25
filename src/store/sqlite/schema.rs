//! Versioned migrations, applied at open: each once, in order, in a transaction of its own,
//! recorded in `schema_migrations`. A store written by a newer brokergate is refused.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::error::classify;
use crate::store::StoreError;

pub(super) struct Migration {
    pub(super) version: u32,
    pub(super) description: &'static str,
    pub(super) sql: &'static str,
}

/// The SQL lives in `migrations/sqlite/`, one file per version. Never edit a migration that
/// has shipped: add one.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "service_instances",
        sql: include_str!("../../../migrations/sqlite/0001_service_instances.sql"),
    },
    Migration {
        version: 2,
        description: "reservation leases; a state check later states fit",
        sql: include_str!("../../../migrations/sqlite/0002_leases.sql"),
    },
    Migration {
        version: 3,
        description: "the lifecycle: last operation, list indexes, bindings and service keys",
        sql: include_str!("../../../migrations/sqlite/0003_lifecycle.sql"),
    },
];

/// The newest schema this binary knows.
pub(super) const LATEST: u32 = MIGRATIONS.len() as u32;

/// The schema a store was found at and the one it reached at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersion {
    pub found: u32,
    pub reached: u32,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "the store's schema is at version {found}, newer than this brokergate's {known}: \
     run the brokergate release that wrote it, or a later one"
)]
struct TooNew {
    found: u32,
    known: u32,
}

/// Brings the schema to [`LATEST`].
pub(super) fn migrate(conn: &mut Connection) -> Result<SchemaVersion, StoreError> {
    let found = in_transaction(conn, |tx| {
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version     INTEGER PRIMARY KEY,
                 description TEXT NOT NULL,
                 applied_at  INTEGER NOT NULL
             );",
        )?;
        let mut found = recorded(tx)?;
        if found == 0 && made_before_migrations(tx)? {
            record(tx, &MIGRATIONS[0])?;
            found = 1;
        }
        Ok(found)
    })?;
    if found > LATEST {
        return Err(StoreError::Backend(Box::new(TooNew {
            found,
            known: LATEST,
        })));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        let applied = in_transaction(conn, |tx| {
            // Another process opening the same file may have applied it meanwhile.
            let due = recorded(tx)? < m.version;
            if due {
                tx.execute_batch(m.sql)?;
                record(tx, m)?;
            }
            Ok(due)
        })?;
        if applied {
            log::info!(
                "Store schema migrated. version={} description={:?}",
                m.version,
                m.description
            );
        }
    }
    Ok(SchemaVersion {
        found,
        reached: LATEST,
    })
}

/// Runs `f` in an IMMEDIATE transaction (the write lock taken first, so two processes opening
/// the store at once migrate one after the other) and commits it.
fn in_transaction<T>(
    conn: &mut Connection,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(classify)?;
    let value = f(&tx).map_err(classify)?;
    tx.commit().map_err(classify)?;
    Ok(value)
}

fn recorded(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("SELECT max(version) FROM schema_migrations", [], |row| {
        row.get::<_, Option<u32>>(0)
    })
    .map(Option::unwrap_or_default)
}

/// A store the code before migrations made: its table, marked `user_version = 1`.
fn made_before_migrations(conn: &Connection) -> rusqlite::Result<bool> {
    let user_version: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let table = conn
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'service_instances'",
            [],
            |_| Ok(()),
        )
        .optional()?;
    Ok(user_version == 1 && table.is_some())
}

fn record(conn: &Connection, m: &Migration) -> rusqlite::Result<()> {
    let now = crate::clock::now_unix();
    conn.execute(
        "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?1, ?2, ?3)",
        rusqlite::params![m.version, m.description, now],
    )?;
    // Kept equal to the version for tools that read only the header.
    conn.pragma_update(None, "user_version", m.version)
}
