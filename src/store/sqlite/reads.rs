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
use crate::store::{
    HandleField, HandleGrant, HandleQuery, HandleRecord, HandleReservation, HandleState, Holder,
    InstanceField, InstanceQuery, InstanceRecord, Lease, ListQuery, Listed, Operation, Provisioned,
    Reservation, State, StoreError,
};

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

    pub(super) async fn list(
        &self,
        query: &InstanceQuery,
    ) -> Result<Listed<InstanceRecord>, StoreError> {
        let query = query.clone();
        self.with(move |conn| {
            let filter = Filter::of(&query, "state <> 'reserved'", InstanceField::column);
            listed(conn, SELECT, "service_instances", &filter, record_of)
        })
        .await
    }

    pub(super) async fn get_handle(&self, guid: &str) -> Result<Option<HandleRecord>, StoreError> {
        let guid = guid.to_string();
        self.with(move |conn| {
            conn.prepare_cached(&format!("{SELECT_HANDLE} WHERE guid = ?1"))?
                .query_row(params![guid], handle_of)
                .optional()
        })
        .await
    }

    pub(super) async fn list_handles(
        &self,
        query: &HandleQuery,
    ) -> Result<Listed<HandleRecord>, StoreError> {
        let query = query.clone();
        self.with(move |conn| {
            let kind = query.kind.as_str();
            let base = format!("kind = '{kind}' AND state <> 'reserved'");
            let filter = Filter::of(&query.list, &base, HandleField::column);
            listed(conn, SELECT_HANDLE, "service_handles", &filter, handle_of)
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

pub(super) const SELECT: &str =
    "SELECT guid, name, space_guid, organization_guid, service_plan_guid,
    broker, tags, creator_user_id, creator_email, created_at, state, lease_owner,
    lease_expires_at, broker_service_id, gateway_data, credentials, dashboard_url,
    last_operation, updated_at
    FROM service_instances";

/// The columns [`handle_reservation_of`] reads, in its order.
pub(super) const HANDLE_RESERVATION_COLUMNS: &str = "guid, instance_guid, kind, app_guid, name,
    binding_options, creator_user_id, created_at";

pub(super) const SELECT_HANDLE: &str = "SELECT guid, instance_guid, kind, app_guid, name,
    binding_options, creator_user_id, created_at, state, lease_owner, lease_expires_at,
    handle_id, gateway_data, credentials, syslog_drain_url
    FROM service_handles";

/// A list's WHERE clause (column names from a fixed table, values bound), its order and page.
struct Filter {
    clause: String,
    values: Vec<String>,
    order: &'static str,
    limit: i64,
    offset: i64,
}

impl Filter {
    fn of<F: Copy>(query: &ListQuery<F>, base: &str, column: fn(F) -> &'static str) -> Filter {
        let mut clause = base.to_string();
        let mut values = Vec::new();
        for (field, wanted) in &query.conditions {
            let marks = vec!["?"; wanted.len()].join(", ");
            clause.push_str(&format!(" AND {} IN ({marks})", column(*field)));
            values.extend(wanted.iter().cloned());
        }
        Filter {
            clause,
            values,
            // Creation order (see the migration that made the list indexes).
            order: if query.descending {
                "rowid DESC"
            } else {
                "rowid ASC"
            },
            limit: i64::from(query.limit),
            offset: i64::try_from(query.offset).unwrap_or(i64::MAX),
        }
    }
}

impl Filter {
    fn count_sql(&self, table: &str) -> String {
        format!("SELECT count(*) FROM {table} WHERE {}", self.clause)
    }

    fn page_sql(&self, select: &str) -> String {
        format!(
            "{select} WHERE {} ORDER BY {} LIMIT {} OFFSET {}",
            self.clause, self.order, self.limit, self.offset
        )
    }
}

/// What SQLite plans for an instance list's count and page (`EXPLAIN QUERY PLAN`), one line
/// per step.
pub fn instance_list_plans(
    conn: &Connection,
    query: &InstanceQuery,
) -> rusqlite::Result<Vec<String>> {
    let filter = Filter::of(query, "state <> 'reserved'", InstanceField::column);
    let mut lines = Vec::new();
    for sql in [
        filter.count_sql("service_instances"),
        filter.page_sql(SELECT),
    ] {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
        let steps = stmt.query_map(rusqlite::params_from_iter(&filter.values), |row| {
            row.get::<_, String>(3)
        })?;
        for step in steps {
            lines.push(step?);
        }
    }
    Ok(lines)
}

/// The count and the page, in one read transaction so both see the same rows.
fn listed<T>(
    conn: &Connection,
    select: &str,
    table: &str,
    filter: &Filter,
    row_of: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Listed<T>> {
    conn.execute_batch("BEGIN")?;
    let result = (|| {
        let total: i64 = conn
            .prepare_cached(&filter.count_sql(table))?
            .query_row(rusqlite::params_from_iter(&filter.values), |row| row.get(0))?;
        let mut stmt = conn.prepare_cached(&filter.page_sql(select))?;
        let items = stmt
            .query_map(rusqlite::params_from_iter(&filter.values), row_of)?
            .collect::<rusqlite::Result<Vec<T>>>()?;
        Ok(Listed {
            total: u64::try_from(total).unwrap_or_default(),
            items,
        })
    })();
    // A read transaction: ending it cannot lose anything, whichever way it went.
    let _ = conn.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" });
    result
}

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

/// A lease at columns `at` and `at + 1`. None: set by a brokergate from before leases, so
/// expired (see schema.rs).
fn lease_of(row: &Row<'_>, at: usize) -> rusqlite::Result<Lease> {
    Ok(Lease {
        owner: row.get::<_, Option<String>>(at)?.unwrap_or_default(),
        expires_at: row.get::<_, Option<i64>>(at + 1)?.unwrap_or_default(),
    })
}

pub(super) fn record_of(row: &Row<'_>) -> rusqlite::Result<InstanceRecord> {
    let state: String = row.get(10)?;
    let provisioned = || {
        Ok::<_, rusqlite::Error>(Provisioned {
            broker_service_id: row.get(13)?,
            gateway_data: raw(row, 14)?,
            credentials: raw(row, 15)?,
            dashboard_url: row.get(16)?,
        })
    };
    let state = match state.as_str() {
        "reserved" => State::Reserved(lease_of(row, 11)?),
        "created" => State::Created(provisioned()?),
        "deleting" => State::Deleting(provisioned()?, lease_of(row, 11)?),
        other => return Err(bad(10, format!("unknown state {other:?}"))),
    };
    let last_operation: String = row.get(17)?;
    Ok(InstanceRecord {
        reservation: reservation_of(row)?,
        state,
        last_operation: Operation::parse(&last_operation)
            .ok_or_else(|| bad(17, format!("unknown operation {last_operation:?}")))?,
        updated_at: row.get(18)?,
    })
}

/// A handle row's first eight columns, as [`HANDLE_RESERVATION_COLUMNS`] lists them.
pub(super) fn handle_reservation_of(row: &Row<'_>) -> rusqlite::Result<HandleReservation> {
    let kind: String = row.get(2)?;
    let holder = match kind.as_str() {
        "binding" => Holder::App {
            app_guid: row.get(3)?,
            name: row.get(4)?,
        },
        "key" => Holder::Key { name: row.get(4)? },
        other => return Err(bad(2, format!("unknown handle kind {other:?}"))),
    };
    Ok(HandleReservation {
        guid: row.get(0)?,
        instance_guid: row.get(1)?,
        holder,
        binding_options: row.get(5)?,
        creator_user_id: row.get(6)?,
        created_at: row.get(7)?,
    })
}

pub(super) fn handle_of(row: &Row<'_>) -> rusqlite::Result<HandleRecord> {
    let state: String = row.get(8)?;
    let grant = || {
        Ok::<_, rusqlite::Error>(HandleGrant {
            handle_id: row.get(11)?,
            configuration: raw(row, 12)?,
            credentials: raw(row, 13)?,
            syslog_drain_url: row.get(14)?,
        })
    };
    let state = match state.as_str() {
        "reserved" => HandleState::Reserved(lease_of(row, 9)?),
        "created" => HandleState::Created(grant()?),
        "deleting" => HandleState::Deleting(grant()?, lease_of(row, 9)?),
        other => return Err(bad(8, format!("unknown state {other:?}"))),
    };
    Ok(HandleRecord {
        reservation: handle_reservation_of(row)?,
        state,
    })
}

fn raw(row: &Row<'_>, i: usize) -> rusqlite::Result<Box<RawValue>> {
    RawValue::from_string(row.get(i)?).map_err(|e| bad(i, e))
}

fn bad(i: usize, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, Type::Text, e.into())
}
