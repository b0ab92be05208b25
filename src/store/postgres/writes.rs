//! Every write, each one transaction, safe beside other processes writing the same database.
//!
//! Sessions run at READ COMMITTED (set per connection): a statement that waited for a row lock
//! sees the row as the holder committed it. Transitions are compare-and-set
//! (`UPDATE … WHERE state = …`) or run under a row lock taken first:
//! - a delete locks its instance `FOR UPDATE`; a bind and an unbind lock it `FOR SHARE`. So a
//!   delete and a bind (or an unbind) of one instance run one after the other: whichever
//!   locks second sees what the first committed, and is refused.
//! - every transaction that touches both locks the instance before its handles, so two never
//!   wait on each other (no deadlock).
//!
//! Names, apps and key names are kept unique by unique indexes, never by a read before the
//! write: the loser of a race gets the index's violation, mapped in `error.rs`.

use deadpool_postgres::{GenericClient, Object};

use super::error::classify;
use crate::store::records::tags_json;
use crate::store::{
    HandleGrant, HandleReservation, Holder, InstanceUpdate, Lease, Provisioned, Reservation,
    StoreError,
};

pub(super) async fn reserve(
    client: &Object,
    r: &Reservation,
    lease: &Lease,
) -> Result<(), StoreError> {
    let tags = tags_json(&r.tags);
    execute(
        client,
        "INSERT INTO service_instances (guid, name, space_guid, organization_guid,
             service_plan_guid, broker, tags, creator_user_id, creator_email, state,
             created_at, lease_owner, lease_expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'reserved', $10, $11, $12)",
        &[
            &r.guid,
            &r.name,
            &r.space_guid,
            &r.organization_guid,
            &r.service_plan_guid,
            &r.broker,
            &tags,
            &r.creator_user_id,
            &r.creator_email,
            &r.created_at,
            &lease.owner,
            &lease.expires_at,
        ],
    )
    .await
    .map(drop)
}

pub(super) async fn release(client: &Object, guid: &str) -> Result<(), StoreError> {
    execute(
        client,
        "DELETE FROM service_instances WHERE guid = $1 AND state = 'reserved'",
        &[&guid],
    )
    .await
    .map(drop)
}

pub(super) async fn commit(client: &Object, guid: &str, p: &Provisioned) -> Result<(), StoreError> {
    let changed = execute(
        client,
        "UPDATE service_instances SET state = 'created', broker_service_id = $2,
             gateway_data = $3, credentials = $4, dashboard_url = $5,
             lease_owner = NULL, lease_expires_at = NULL
         WHERE guid = $1 AND state = 'reserved'",
        &[
            &guid,
            &p.broker_service_id,
            &p.gateway_data.get(),
            &p.credentials.get(),
            &p.dashboard_url,
        ],
    )
    .await?;
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::NoReservation(guid.to_string()))
    }
}

/// One statement: the compare-and-set, and the row's state (as the statement's snapshot saw
/// it) to tell why nothing changed.
pub(super) async fn update(
    client: &Object,
    guid: &str,
    u: &InstanceUpdate,
) -> Result<(), StoreError> {
    let tags = u.tags.as_deref().map(tags_json);
    let stmt = client
        .prepare_cached(
            "WITH changed AS (
                 UPDATE service_instances SET name = coalesce($2, name),
                     tags = coalesce($3, tags), last_operation = 'update', updated_at = $4
                 WHERE guid = $1 AND state = 'created'
                 RETURNING 1)
             SELECT EXISTS (SELECT 1 FROM changed),
                    (SELECT state FROM service_instances WHERE guid = $1)",
        )
        .await
        .map_err(classify)?;
    let row = client
        .query_one(&stmt, &[&guid, &u.name, &tags, &u.updated_at])
        .await
        .map_err(classify)?;
    let changed: bool = row.try_get(0).map_err(classify)?;
    if changed {
        return Ok(());
    }
    let state: Option<String> = row.try_get(1).map_err(classify)?;
    Err(match state.as_deref() {
        // Created when the statement began, not by the time it held the row: another
        // operation (a delete) took it meanwhile.
        Some("created") => StoreError::InProgress,
        other => refusal(other),
    })
}

/// Why an operation on a created instance (or handle) cannot run, from the row's state.
fn refusal(state: Option<&str>) -> StoreError {
    match state {
        Some("deleting") => StoreError::InProgress,
        _ => StoreError::NotFound,
    }
}

pub(super) async fn begin_delete(
    client: &mut Object,
    guid: &str,
    lease: &Lease,
    recursive: bool,
) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(classify)?;
    let state = locked_instance_state(&tx, guid, "FOR UPDATE").await?;
    if state.as_deref() != Some("created") {
        return Err(refusal(state.as_deref()));
    }
    // With the instance locked no handle can be added; each one's state is final for this
    // transaction unless it is in flight — which refuses the delete anyway.
    let stmt = tx
        .prepare_cached(
            "SELECT count(*), count(*) FILTER (WHERE state <> 'created')
             FROM service_handles WHERE instance_guid = $1",
        )
        .await
        .map_err(classify)?;
    let row = tx.query_one(&stmt, &[&guid]).await.map_err(classify)?;
    let (handles, busy): (i64, i64) = (
        row.try_get(0).map_err(classify)?,
        row.try_get(1).map_err(classify)?,
    );
    if busy > 0 {
        return Err(StoreError::InProgress);
    }
    if handles > 0 && !recursive {
        return Err(StoreError::NotEmpty);
    }
    let lease_args: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&guid, &lease.owner, &lease.expires_at];
    execute(
        &tx,
        "UPDATE service_instances SET state = 'deleting', lease_owner = $2, lease_expires_at = $3
         WHERE guid = $1",
        &lease_args,
    )
    .await?;
    if handles > 0 {
        execute(
            &tx,
            "UPDATE service_handles SET state = 'deleting', lease_owner = $2,
                 lease_expires_at = $3
             WHERE instance_guid = $1 AND state = 'created'",
            &lease_args,
        )
        .await?;
    }
    tx.commit().await.map_err(classify)
}

/// The handles go back only when the instance did: an abort of an instance not being
/// deleting changes nothing.
pub(super) async fn abort_delete(client: &mut Object, guid: &str) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(classify)?;
    let changed = execute(
        &tx,
        "UPDATE service_instances SET state = 'created', lease_owner = NULL,
             lease_expires_at = NULL
         WHERE guid = $1 AND state = 'deleting'",
        &[&guid],
    )
    .await?;
    if changed == 1 {
        execute(
            &tx,
            "UPDATE service_handles SET state = 'created', lease_owner = NULL,
                 lease_expires_at = NULL
             WHERE instance_guid = $1 AND state = 'deleting'",
            &[&guid],
        )
        .await?;
    }
    tx.commit().await.map_err(classify)
}

pub(super) async fn finish_delete(client: &mut Object, guid: &str) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(classify)?;
    match locked_instance_state(&tx, guid, "FOR UPDATE")
        .await?
        .as_deref()
    {
        None => return Ok(()),
        Some("deleting") => {}
        Some(_) => return Err(StoreError::NotFound),
    }
    let stmt = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM service_handles WHERE instance_guid = $1)")
        .await
        .map_err(classify)?;
    let left: bool = tx
        .query_one(&stmt, &[&guid])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(classify)?;
    if left {
        return Err(StoreError::NotEmpty);
    }
    execute(
        &tx,
        "DELETE FROM service_instances WHERE guid = $1",
        &[&guid],
    )
    .await?;
    tx.commit().await.map_err(classify)
}

pub(super) async fn reserve_handle(
    client: &mut Object,
    h: &HandleReservation,
    lease: &Lease,
) -> Result<(), StoreError> {
    let (app_guid, name) = match &h.holder {
        Holder::App { app_guid, name } => (Some(app_guid.as_str()), name.as_deref()),
        Holder::Key { name } => (None, Some(name.as_str())),
    };
    let tx = client.transaction().await.map_err(classify)?;
    // Shared: binds of one instance go side by side; a delete waits for them, and they for it.
    let state = locked_instance_state(&tx, &h.instance_guid, "FOR SHARE").await?;
    if state.as_deref() != Some("created") {
        return Err(refusal(state.as_deref()));
    }
    execute(
        &tx,
        "INSERT INTO service_handles (guid, instance_guid, kind, app_guid, name, binding_options,
             state, creator_user_id, created_at, lease_owner, lease_expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'reserved', $7, $8, $9, $10)",
        &[
            &h.guid,
            &h.instance_guid,
            &h.holder.kind().as_str(),
            &app_guid,
            &name,
            &h.binding_options,
            &h.creator_user_id,
            &h.created_at,
            &lease.owner,
            &lease.expires_at,
        ],
    )
    .await?;
    tx.commit().await.map_err(classify)
}

pub(super) async fn release_handle(client: &Object, guid: &str) -> Result<(), StoreError> {
    execute(
        client,
        "DELETE FROM service_handles WHERE guid = $1 AND state = 'reserved'",
        &[&guid],
    )
    .await
    .map(drop)
}

pub(super) async fn commit_handle(
    client: &Object,
    guid: &str,
    g: &HandleGrant,
) -> Result<(), StoreError> {
    let changed = execute(
        client,
        "UPDATE service_handles SET state = 'created', handle_id = $2, gateway_data = $3,
             credentials = $4, syslog_drain_url = $5, lease_owner = NULL,
             lease_expires_at = NULL
         WHERE guid = $1 AND state = 'reserved'",
        &[
            &guid,
            &g.handle_id,
            &g.configuration.get(),
            &g.credentials.get(),
            &g.syslog_drain_url,
        ],
    )
    .await?;
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::NoReservation(guid.to_string()))
    }
}

pub(super) async fn begin_unbind(
    client: &mut Object,
    guid: &str,
    lease: &Lease,
) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(classify)?;
    let Some((state, instance_guid)) = handle_state(&tx, guid).await? else {
        return Err(StoreError::NotFound);
    };
    if state != "created" {
        return Err(refusal(Some(&state)));
    }
    // The instance first, as a delete locks it: then a delete and this unbind are ordered.
    let instance = locked_instance_state(&tx, &instance_guid, "FOR SHARE").await?;
    if instance.as_deref() == Some("deleting") {
        return Err(StoreError::InProgress);
    }
    let changed = execute(
        &tx,
        "UPDATE service_handles SET state = 'deleting', lease_owner = $2, lease_expires_at = $3
         WHERE guid = $1 AND state = 'created'",
        &[&guid, &lease.owner, &lease.expires_at],
    )
    .await?;
    if changed == 0 {
        // Another unbind took it (or finished it) since it was read.
        let now = handle_state(&tx, guid).await?;
        return Err(refusal(now.as_ref().map(|(s, _)| s.as_str())));
    }
    tx.commit().await.map_err(classify)
}

pub(super) async fn abort_unbind(client: &Object, guid: &str) -> Result<(), StoreError> {
    execute(
        client,
        "UPDATE service_handles SET state = 'created', lease_owner = NULL,
             lease_expires_at = NULL
         WHERE guid = $1 AND state = 'deleting'",
        &[&guid],
    )
    .await
    .map(drop)
}

pub(super) async fn finish_unbind(client: &mut Object, guid: &str) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(classify)?;
    let stmt = tx
        .prepare_cached("SELECT state FROM service_handles WHERE guid = $1 FOR UPDATE")
        .await
        .map_err(classify)?;
    let state: Option<String> = tx
        .query_opt(&stmt, &[&guid])
        .await
        .and_then(|row| row.map(|r| r.try_get(0)).transpose())
        .map_err(classify)?;
    match state.as_deref() {
        None => return Ok(()),
        Some("deleting") => {}
        Some(_) => return Err(StoreError::NotFound),
    }
    execute(&tx, "DELETE FROM service_handles WHERE guid = $1", &[&guid]).await?;
    tx.commit().await.map_err(classify)
}

/// An instance's state under a row lock (`FOR UPDATE` or `FOR SHARE`); `None` without a row.
async fn locked_instance_state(
    client: &impl GenericClient,
    guid: &str,
    lock: &str,
) -> Result<Option<String>, StoreError> {
    let sql = format!("SELECT state FROM service_instances WHERE guid = $1 {lock}");
    let stmt = client.prepare_cached(&sql).await.map_err(classify)?;
    client
        .query_opt(&stmt, &[&guid])
        .await
        .and_then(|row| row.map(|r| r.try_get(0)).transpose())
        .map_err(classify)
}

/// A handle's state and instance; `None` without a row.
async fn handle_state(
    client: &impl GenericClient,
    guid: &str,
) -> Result<Option<(String, String)>, StoreError> {
    let stmt = client
        .prepare_cached("SELECT state, instance_guid FROM service_handles WHERE guid = $1")
        .await
        .map_err(classify)?;
    let row = client.query_opt(&stmt, &[&guid]).await.map_err(classify)?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .transpose()
        .map_err(classify)
}

/// A prepared (cached) statement's row count.
async fn execute(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, StoreError> {
    let stmt = client.prepare_cached(sql).await.map_err(classify)?;
    client.execute(&stmt, params).await.map_err(classify)
}
