//! What a gone holder left in flight. Rows are taken `FOR UPDATE SKIP LOCKED`: two replicas
//! recovering (or claiming) at once each take different rows, and a row another process is
//! committing or finishing right now is left to it. Each call is one transaction, on a
//! dedicated connection (see `mod.rs`).

use std::collections::HashMap;

use tokio_postgres::Client;

use super::error::classify;
use super::reads::{
    handle_of, handle_reservation_of, record_of, reservation_of, HANDLE_COLUMNS, INSTANCE_COLUMNS,
};
use crate::store::{HandleRecord, Lease, Recovered, RecoveryPolicy, StoreError, Unfinished};

/// Rows whose lease `policy` resolves (as [`RecoveryPolicy::resolves`]; a NULL lease counts
/// as expired), on $1 = now, $2 = predecessor_gone, $3 = owner.
const RESOLVED: &str = "(lease_expires_at IS NULL OR lease_expires_at <= $1
                         OR ($2 AND lease_owner = $3))";

/// Deletes the reservations `policy` resolves and returns them, oldest first.
pub(super) async fn recover(
    client: &mut Client,
    policy: &RecoveryPolicy,
) -> Result<Recovered, StoreError> {
    let tx = client.transaction().await.map_err(classify)?;
    let args: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&policy.now, &policy.predecessor_gone, &policy.owner];
    let instances = tx
        .query(
            &format!(
                "WITH gone AS (
                     DELETE FROM service_instances WHERE guid IN (
                         SELECT guid FROM service_instances
                         WHERE state = 'reserved' AND {RESOLVED}
                         FOR UPDATE SKIP LOCKED)
                     RETURNING {INSTANCE_COLUMNS})
                 SELECT * FROM gone ORDER BY created_at, guid"
            ),
            &args,
        )
        .await
        .map_err(classify)?
        .iter()
        .map(|row| reservation_of(row, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let handles = tx
        .query(
            &format!(
                "WITH gone AS (
                     DELETE FROM service_handles WHERE guid IN (
                         SELECT guid FROM service_handles
                         WHERE state = 'reserved' AND {RESOLVED}
                         FOR UPDATE SKIP LOCKED)
                     RETURNING {HANDLE_COLUMNS})
                 SELECT * FROM gone ORDER BY created_at, guid"
            ),
            &args,
        )
        .await
        .map_err(classify)?
        .iter()
        .map(|row| handle_reservation_of(row, 0))
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit().await.map_err(classify)?;
    Ok(Recovered { instances, handles })
}

/// Re-leases to `lease` the deleting rows `policy` resolves and returns them: each delete with
/// its handles, then the unbinds of instances not being deleted. Three statements, whatever
/// the number of rows.
pub(super) async fn claim_unfinished(
    client: &mut Client,
    policy: &RecoveryPolicy,
    lease: &Lease,
) -> Result<Unfinished, StoreError> {
    let tx = client.transaction().await.map_err(classify)?;
    let args: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
        &policy.now,
        &policy.predecessor_gone,
        &policy.owner,
        &lease.owner,
        &lease.expires_at,
    ];
    let instances = tx
        .query(
            &format!(
                "WITH claimed AS (
                     UPDATE service_instances SET lease_owner = $4, lease_expires_at = $5
                     WHERE guid IN (
                         SELECT guid FROM service_instances
                         WHERE state = 'deleting' AND {RESOLVED}
                         FOR UPDATE SKIP LOCKED)
                     RETURNING seq, {INSTANCE_COLUMNS})
                 SELECT {INSTANCE_COLUMNS} FROM claimed ORDER BY seq"
            ),
            &args,
        )
        .await
        .map_err(classify)?
        .iter()
        .map(|row| record_of(row, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let guids: Vec<&str> = instances
        .iter()
        .map(|i| i.reservation.guid.as_str())
        .collect();
    // The claimed instances' handles: locked after their instance, as every write does.
    let mut handles: HashMap<String, Vec<HandleRecord>> = HashMap::new();
    if !guids.is_empty() {
        let rows = tx
            .query(
                &format!(
                    "WITH claimed AS (
                         UPDATE service_handles SET lease_owner = $2, lease_expires_at = $3
                         WHERE instance_guid = ANY($1) AND state = 'deleting'
                         RETURNING seq, {HANDLE_COLUMNS})
                     SELECT {HANDLE_COLUMNS} FROM claimed ORDER BY seq"
                ),
                &[&guids, &lease.owner, &lease.expires_at],
            )
            .await
            .map_err(classify)?;
        for row in &rows {
            let h = handle_of(row, 0)?;
            handles
                .entry(h.reservation.instance_guid.clone())
                .or_default()
                .push(h);
        }
    }
    let unbinds = tx
        .query(
            &format!(
                "WITH claimed AS (
                     UPDATE service_handles SET lease_owner = $4, lease_expires_at = $5
                     WHERE guid IN (
                         SELECT h.guid FROM service_handles h
                         WHERE h.state = 'deleting' AND {RESOLVED}
                           AND NOT EXISTS (SELECT 1 FROM service_instances i
                                           WHERE i.guid = h.instance_guid
                                             AND i.state = 'deleting')
                         FOR UPDATE OF h SKIP LOCKED)
                     RETURNING seq, {HANDLE_COLUMNS})
                 SELECT {HANDLE_COLUMNS} FROM claimed ORDER BY seq"
            ),
            &args,
        )
        .await
        .map_err(classify)?
        .iter()
        .map(|row| handle_of(row, 0))
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit().await.map_err(classify)?;
    let deletes = instances
        .into_iter()
        .map(|i| {
            let of_it = handles.remove(&i.reservation.guid).unwrap_or_default();
            (i, of_it)
        })
        .collect();
    Ok(Unfinished { deletes, unbinds })
}
