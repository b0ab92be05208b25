//! Versioned migrations, applied at open on a dedicated connection: under a session-level
//! advisory lock, so replicas starting at once apply each exactly once (the others wait, then
//! find it recorded); each in a transaction of its own, recorded in `schema_migrations`. A
//! database written by a newer brokergate is refused.

use tokio_postgres::Client;

use super::error::classify;
use crate::store::{SchemaVersion, StoreError};

struct Migration {
    version: i32,
    description: &'static str,
    sql: &'static str,
}

/// The SQL lives in `migrations/postgres/`, one file per version. Never edit a migration that
/// has shipped: add one.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "service instances, bindings and service keys, list indexes",
    sql: include_str!("../../../migrations/postgres/0001_service_instances_and_handles.sql"),
}];

/// The newest schema this binary knows.
pub(super) const LATEST: i32 = MIGRATIONS.len() as i32;

/// The advisory lock every brokergate migrating a database takes: "brokerga" in ASCII, so it
/// is unlikely to collide with another application's key on a shared server.
const MIGRATION_LOCK: i64 = 0x6272_6f6b_6572_6761;

#[derive(Debug, thiserror::Error)]
#[error(
    "the database's schema is at version {found}, newer than this brokergate's {known}: \
     run the brokergate release that wrote it, or a later one"
)]
struct TooNew {
    found: i32,
    known: i32,
}

/// Brings the schema to [`LATEST`], holding the migration lock throughout. The lock is the
/// session's: released here, and by the server if the connection dies first.
pub(super) async fn migrate(client: &mut Client) -> Result<SchemaVersion, StoreError> {
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(classify)?;
    if !locked {
        log::info!("Waiting for another brokergate to finish migrating the store.");
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(classify)?;
    }
    let result = migrate_locked(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(classify);
    let version = result?;
    unlocked?;
    Ok(version)
}

async fn migrate_locked(client: &mut Client) -> Result<SchemaVersion, StoreError> {
    client
        .batch_execute(
            // client_min_messages: the notice that the table exists already is not news.
            "SET client_min_messages = warning;
             CREATE TABLE IF NOT EXISTS schema_migrations (
                 version     INTEGER PRIMARY KEY,
                 description TEXT NOT NULL,
                 applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(classify)?;
    let found = recorded(client).await?;
    if found > LATEST {
        return Err(StoreError::Backend(Box::new(TooNew {
            found,
            known: LATEST,
        })));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        let tx = client.transaction().await.map_err(classify)?;
        tx.batch_execute(m.sql).await.map_err(classify)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
            &[&m.version, &m.description],
        )
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        log::info!(
            "Store schema migrated. version={} description={:?}",
            m.version,
            m.description
        );
    }
    Ok(SchemaVersion {
        found: to_u32(found),
        reached: to_u32(LATEST),
    })
}

async fn recorded(client: &Client) -> Result<i32, StoreError> {
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(classify)?;
    row.try_get(0).map_err(classify)
}

/// Versions are positive (the primary key of rows this code writes).
fn to_u32(v: i32) -> u32 {
    u32::try_from(v).unwrap_or_default()
}
