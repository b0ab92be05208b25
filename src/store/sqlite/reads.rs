//! Reads, off the writer's path: a small bounded pool of read-only connections (WAL lets each
//! read beside the writer and the others), each read run on tokio's blocking pool; and the
//! mapping from a row to a record.

use std::path::PathBuf;
use std::time::Duration;

use deadpool::managed::{self, Metrics, Pool, PoolError, RecycleResult, TimeoutType};
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::value::RawValue;

use super::connection;
use super::error::{classify, joined};
use crate::store::{InstanceRecord, Lease, Provisioned, Reservation, State, StoreError};

/// Longest a read waits for a free connection before failing as busy (retryable); as long as
/// a statement waits for a lock.
pub(super) const READ_WAIT: Duration = connection::BUSY_TIMEOUT;

/// Opens read connections on demand, on the blocking pool: none exists before the first read
/// (so none is carried across the fork of daemon mode).
struct Readers {
    path: PathBuf,
}

impl managed::Manager for Readers {
    type Type = Connection;
    type Error = StoreError;

    async fn create(&self) -> Result<Connection, StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || connection::open_reader(&path))
            .await
            .map_err(joined)?
    }

    async fn recycle(&self, _: &mut Connection, _: &Metrics) -> RecycleResult<StoreError> {
        // A read-only connection keeps no state between reads; a broken one fails its next
        // read, which reports the error, and the pool opens a fresh one after that.
        Ok(())
    }
}

pub(super) struct Reads {
    pool: Pool<Readers>,
}

impl Reads {
    /// A pool of at most `connections` (at least 1); nothing is opened yet.
    pub(super) fn new(path: PathBuf, connections: usize) -> Result<Reads, StoreError> {
        let pool = Pool::builder(Readers { path })
            .max_size(connections.max(1))
            .wait_timeout(Some(READ_WAIT))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(Reads { pool })
    }

    pub(super) async fn get(&self, guid: &str) -> Result<Option<InstanceRecord>, StoreError> {
        let guid = guid.to_string();
        self.with(move |conn| {
            conn.prepare_cached(&format!("{SELECT} WHERE guid = ?1"))?
                .query_row(params![guid], record_of)
                .optional()
        })
        .await
    }

    /// Touches the table without scanning it.
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM service_instances)",
                [],
                |_| Ok(()),
            )
        })
        .await
    }

    /// Connections the pool holds now.
    #[cfg(test)]
    pub(super) fn open_connections(&self) -> usize {
        self.pool.status().size
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.pool.get().await.map_err(pool_error)?;
        tokio::task::spawn_blocking(move || f(&conn).map_err(classify))
            .await
            .map_err(joined)?
    }
}

fn pool_error(e: PoolError<StoreError>) -> StoreError {
    match e {
        PoolError::Backend(e) => e,
        PoolError::Timeout(TimeoutType::Wait) => StoreError::Unavailable {
            retryable: true,
            source: format!("no read connection free within {READ_WAIT:?}").into(),
        },
        other => StoreError::Backend(Box::new(other)),
    }
}

/// The columns [`reservation_of`] reads, in its order.
pub(super) const RESERVATION_COLUMNS: &str = "guid, name, space_guid, organization_guid,
    service_plan_guid, broker, tags, creator_user_id, creator_email, created_at";

const SELECT: &str = "SELECT guid, name, space_guid, organization_guid, service_plan_guid,
    broker, tags, creator_user_id, creator_email, created_at, state, lease_owner,
    lease_expires_at, broker_service_id, gateway_data, credentials, dashboard_url
    FROM service_instances";

/// A row's first ten columns, as [`RESERVATION_COLUMNS`] lists them.
pub(super) fn reservation_of(row: &Row<'_>) -> rusqlite::Result<Reservation> {
    let tags: String = row.get(6)?;
    Ok(Reservation {
        guid: row.get(0)?,
        name: row.get(1)?,
        space_guid: row.get(2)?,
        organization_guid: row.get(3)?,
        service_plan_guid: row.get(4)?,
        broker: row.get(5)?,
        tags: serde_json::from_str(&tags).map_err(|e| bad(6, e))?,
        creator_user_id: row.get(7)?,
        creator_email: row.get(8)?,
        created_at: row.get(9)?,
    })
}

fn record_of(row: &Row<'_>) -> rusqlite::Result<InstanceRecord> {
    let state: String = row.get(10)?;
    let state = match state.as_str() {
        // No lease: set by a brokergate from before leases, so expired (see schema.rs).
        "reserved" => State::Reserved(Lease {
            owner: row.get::<_, Option<String>>(11)?.unwrap_or_default(),
            expires_at: row.get::<_, Option<i64>>(12)?.unwrap_or_default(),
        }),
        "created" => State::Created(Provisioned {
            broker_service_id: row.get(13)?,
            gateway_data: raw(row, 14)?,
            credentials: raw(row, 15)?,
            dashboard_url: row.get(16)?,
        }),
        other => return Err(bad(10, format!("unknown state {other:?}"))),
    };
    Ok(InstanceRecord {
        reservation: reservation_of(row)?,
        state,
    })
}

fn raw(row: &Row<'_>, i: usize) -> rusqlite::Result<Box<RawValue>> {
    RawValue::from_string(row.get(i)?).map_err(|e| bad(i, e))
}

fn bad(i: usize, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, Type::Text, e.into())
}
