//! Reads, on pooled connections: a record by guid, and the lists — each page one statement
//! (the total and the page from one snapshot), served from the list indexes — and the
//! mapping from a row to a record, which writes and recovery share.

use deadpool_postgres::GenericClient;
use serde_json::value::RawValue;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::error::{bad_row, classify};
use crate::store::{
    HandleField, HandleGrant, HandleQuery, HandleRecord, HandleReservation, HandleState, Holder,
    InstanceField, InstanceQuery, InstanceRecord, Lease, ListQuery, Listed, Operation, Provisioned,
    Reservation, State, StoreError,
};

/// An instance row's columns, as [`record_of`] reads them: the first ten are the
/// reservation's ([`reservation_of`]).
pub(super) const INSTANCE_COLUMNS: &str = "guid, name, space_guid, organization_guid, \
    service_plan_guid, broker, tags, creator_user_id, creator_email, created_at, state, \
    lease_owner, lease_expires_at, broker_service_id, gateway_data, credentials, dashboard_url, \
    last_operation, updated_at";

/// A handle row's columns, as [`handle_of`] reads them: the first eight are the reservation's
/// ([`handle_reservation_of`]).
pub(super) const HANDLE_COLUMNS: &str = "guid, instance_guid, kind, app_guid, name, \
    binding_options, creator_user_id, created_at, state, lease_owner, lease_expires_at, \
    handle_id, gateway_data, credentials, syslog_drain_url";

pub(super) async fn get(
    client: &impl GenericClient,
    guid: &str,
) -> Result<Option<InstanceRecord>, StoreError> {
    let sql = format!("SELECT {INSTANCE_COLUMNS} FROM service_instances WHERE guid = $1");
    let stmt = client.prepare_cached(&sql).await.map_err(classify)?;
    let row = client.query_opt(&stmt, &[&guid]).await.map_err(classify)?;
    row.map(|row| record_of(&row, 0)).transpose()
}

pub(super) async fn get_handle(
    client: &impl GenericClient,
    guid: &str,
) -> Result<Option<HandleRecord>, StoreError> {
    let sql = format!("SELECT {HANDLE_COLUMNS} FROM service_handles WHERE guid = $1");
    let stmt = client.prepare_cached(&sql).await.map_err(classify)?;
    let row = client.query_opt(&stmt, &[&guid]).await.map_err(classify)?;
    row.map(|row| handle_of(&row, 0)).transpose()
}

pub(super) async fn list(
    client: &impl GenericClient,
    query: &InstanceQuery,
) -> Result<Listed<InstanceRecord>, StoreError> {
    let page = Page::instances(query);
    listed(client, &page, record_of).await
}

pub(super) async fn list_handles(
    client: &impl GenericClient,
    query: &HandleQuery,
) -> Result<Listed<HandleRecord>, StoreError> {
    let page = Page::handles(query);
    listed(client, &page, handle_of).await
}

/// `EXPLAIN` of an instance list's one statement, one line per plan node.
pub(super) async fn explain_list(
    client: &impl GenericClient,
    query: &InstanceQuery,
) -> Result<Vec<String>, StoreError> {
    let page = Page::instances(query);
    let rows = client
        .query(&format!("EXPLAIN {}", page.sql), &page.params())
        .await
        .map_err(classify)?;
    rows.iter()
        .map(|row| row.try_get::<_, String>(0).map_err(classify))
        .collect()
}

/// A list's value for one condition: one value compares with `=` (the index then yields rows
/// in `seq` order, no sort), several with `= ANY`.
enum Value {
    One(String),
    Many(Vec<String>),
}

/// One page's statement and its parameters. Column names come from fixed tables, values are
/// bound; the text depends only on which fields are filtered (and on how many values), so
/// `prepare_cached` reuses it.
struct Page {
    sql: String,
    values: Vec<Value>,
    limit: i64,
    offset: i64,
}

impl Page {
    fn instances(query: &InstanceQuery) -> Page {
        Page::of(
            "service_instances",
            INSTANCE_COLUMNS,
            "state <> 'reserved'",
            query,
            InstanceField::column,
        )
    }

    /// The kind is written into the statement (a fixed word), not bound: so the plan can use
    /// the indexes only bindings have.
    fn handles(query: &HandleQuery) -> Page {
        let base = format!("kind = '{}' AND state <> 'reserved'", query.kind.as_str());
        Page::of(
            "service_handles",
            HANDLE_COLUMNS,
            &base,
            &query.list,
            HandleField::column,
        )
    }

    /// The total beside the page, in one statement (one snapshot): a count over the filter,
    /// and the page joined to it laterally, so a page past the end still carries the total.
    fn of<F: Copy>(
        table: &str,
        columns: &str,
        base: &str,
        query: &ListQuery<F>,
        column: fn(F) -> &'static str,
    ) -> Page {
        let mut clause = base.to_string();
        let mut values = Vec::new();
        for (field, wanted) in &query.conditions {
            let n = values.len() + 1;
            let (test, value) = match wanted.as_slice() {
                [one] => (format!("= ${n}"), Value::One(one.clone())),
                many => (format!("= ANY(${n})"), Value::Many(many.to_vec())),
            };
            clause.push_str(&format!(" AND {} {test}", column(*field)));
            values.push(value);
        }
        // Creation order (see the migration's `seq`).
        let dir = if query.descending { "DESC" } else { "ASC" };
        let (limit, offset) = (values.len() + 1, values.len() + 2);
        let sql = format!(
            "SELECT t.total, p.* FROM
                 (SELECT count(*) AS total FROM {table} WHERE {clause}) t
                 LEFT JOIN LATERAL
                 (SELECT {columns}, seq FROM {table} WHERE {clause}
                  ORDER BY seq {dir} LIMIT ${limit} OFFSET ${offset}) p ON true
             ORDER BY p.seq {dir}"
        );
        Page {
            sql,
            values,
            limit: i64::from(query.limit),
            offset: i64::try_from(query.offset).unwrap_or(i64::MAX),
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = self
            .values
            .iter()
            .map(|v| match v {
                Value::One(s) => s as &(dyn ToSql + Sync),
                Value::Many(v) => v as &(dyn ToSql + Sync),
            })
            .collect();
        params.push(&self.limit);
        params.push(&self.offset);
        params
    }
}

/// Rows hold the total first, then a record — or NULLs, when the page is empty.
async fn listed<T>(
    client: &impl GenericClient,
    page: &Page,
    row_of: fn(&Row, usize) -> Result<T, StoreError>,
) -> Result<Listed<T>, StoreError> {
    let stmt = client.prepare_cached(&page.sql).await.map_err(classify)?;
    let rows = client
        .query(&stmt, &page.params())
        .await
        .map_err(classify)?;
    let mut total = 0;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        total = row.try_get::<_, i64>(0).map_err(classify)?;
        if row
            .try_get::<_, Option<String>>(1)
            .map_err(classify)?
            .is_some()
        {
            items.push(row_of(row, 1)?);
        }
    }
    Ok(Listed {
        total: u64::try_from(total).unwrap_or_default(),
        items,
    })
}

fn col<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, StoreError> {
    row.try_get(i).map_err(classify)
}

/// The reservation in the ten columns from `at`, as [`INSTANCE_COLUMNS`] starts.
pub(super) fn reservation_of(row: &Row, at: usize) -> Result<Reservation, StoreError> {
    let tags: String = col(row, at + 6)?;
    Ok(Reservation {
        guid: col(row, at)?,
        name: col(row, at + 1)?,
        space_guid: col(row, at + 2)?,
        organization_guid: col(row, at + 3)?,
        service_plan_guid: col(row, at + 4)?,
        broker: col(row, at + 5)?,
        tags: serde_json::from_str(&tags).map_err(|e| bad_row(format!("tags: {e}")))?,
        creator_user_id: col(row, at + 7)?,
        creator_email: col(row, at + 8)?,
        created_at: col(row, at + 9)?,
    })
}

/// A lease at columns `at` and `at + 1`; NULL counts as expired (owner "", at 0).
fn lease_of(row: &Row, at: usize) -> Result<Lease, StoreError> {
    Ok(Lease {
        owner: col::<Option<String>>(row, at)?.unwrap_or_default(),
        expires_at: col::<Option<i64>>(row, at + 1)?.unwrap_or_default(),
    })
}

/// An instance in the columns from `at`, as [`INSTANCE_COLUMNS`] lists them.
pub(super) fn record_of(row: &Row, at: usize) -> Result<InstanceRecord, StoreError> {
    let provisioned = || {
        Ok::<_, StoreError>(Provisioned {
            broker_service_id: col(row, at + 13)?,
            gateway_data: raw(row, at + 14)?,
            credentials: raw(row, at + 15)?,
            dashboard_url: col(row, at + 16)?,
        })
    };
    let state: String = col(row, at + 10)?;
    let state = match state.as_str() {
        "reserved" => State::Reserved(lease_of(row, at + 11)?),
        "created" => State::Created(provisioned()?),
        "deleting" => State::Deleting(provisioned()?, lease_of(row, at + 11)?),
        other => return Err(bad_row(format!("unknown instance state {other:?}"))),
    };
    let last_operation: String = col(row, at + 17)?;
    Ok(InstanceRecord {
        reservation: reservation_of(row, at)?,
        state,
        last_operation: Operation::parse(&last_operation)
            .ok_or_else(|| bad_row(format!("unknown operation {last_operation:?}")))?,
        updated_at: col(row, at + 18)?,
    })
}

/// The handle reservation in the eight columns from `at`, as [`HANDLE_COLUMNS`] starts.
pub(super) fn handle_reservation_of(row: &Row, at: usize) -> Result<HandleReservation, StoreError> {
    let kind: String = col(row, at + 2)?;
    let holder = match kind.as_str() {
        "binding" => Holder::App {
            app_guid: col(row, at + 3)?,
            name: col(row, at + 4)?,
        },
        "key" => Holder::Key {
            name: col(row, at + 4)?,
        },
        other => return Err(bad_row(format!("unknown handle kind {other:?}"))),
    };
    Ok(HandleReservation {
        guid: col(row, at)?,
        instance_guid: col(row, at + 1)?,
        holder,
        binding_options: col(row, at + 5)?,
        creator_user_id: col(row, at + 6)?,
        created_at: col(row, at + 7)?,
    })
}

/// A handle in the columns from `at`, as [`HANDLE_COLUMNS`] lists them.
pub(super) fn handle_of(row: &Row, at: usize) -> Result<HandleRecord, StoreError> {
    let grant = || {
        Ok::<_, StoreError>(HandleGrant {
            handle_id: col(row, at + 11)?,
            configuration: raw(row, at + 12)?,
            credentials: raw(row, at + 13)?,
            syslog_drain_url: col(row, at + 14)?,
        })
    };
    let state: String = col(row, at + 8)?;
    let state = match state.as_str() {
        "reserved" => HandleState::Reserved(lease_of(row, at + 9)?),
        "created" => HandleState::Created(grant()?),
        "deleting" => HandleState::Deleting(grant()?, lease_of(row, at + 9)?),
        other => return Err(bad_row(format!("unknown handle state {other:?}"))),
    };
    Ok(HandleRecord {
        reservation: handle_reservation_of(row, at)?,
        state,
    })
}

/// JSON text exactly as stored (`text`, so byte for byte what the broker sent).
fn raw(row: &Row, i: usize) -> Result<Box<RawValue>, StoreError> {
    RawValue::from_string(col(row, i)?).map_err(|e| bad_row(format!("column {i}: {e}")))
}
