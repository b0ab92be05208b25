//! What a gone holder left in flight, on a connection of its own that is closed before each
//! call returns: a start runs before the fork of daemon mode, which no connection may cross.
//! Reservations are removed ([`recover`]); half-done deletes and unbinds are taken over
//! ([`claim_unfinished`]) for the caller to finish at the broker.

use std::path::Path;

use rusqlite::{params, Transaction, TransactionBehavior};

use super::connection::{self, Synchronous};
use super::error::classify;
use super::reads::{
    handle_of, handle_reservation_of, record_of, reservation_of, HANDLE_RESERVATION_COLUMNS,
    RESERVATION_COLUMNS, SELECT, SELECT_HANDLE,
};
use crate::store::{Lease, Recovered, RecoveryPolicy, StoreError, Unfinished};

/// Rows whose lease `policy` resolves (as [`RecoveryPolicy::resolves`] does; a NULL lease, set
/// by a brokergate from before leases, counts as expired), as a WHERE clause on ?1 = now,
/// ?2 = predecessor_gone, ?3 = owner.
const RESOLVED: &str = "(lease_expires_at IS NULL OR lease_expires_at <= ?1
                         OR (?2 AND lease_owner = ?3))";

/// Deletes the reservations `policy` resolves in one transaction, and returns them oldest
/// first. Full scans: this runs once per start, and an index would cost every reservation.
pub(super) fn recover(
    path: &Path,
    synchronous: Synchronous,
    policy: &RecoveryPolicy,
) -> Result<Recovered, StoreError> {
    in_transaction(path, synchronous, |tx| {
        let args = params![policy.now, policy.predecessor_gone, policy.owner];
        let mut instances = tx
            .prepare(&format!(
                "DELETE FROM service_instances WHERE state = 'reserved' AND {RESOLVED}
                 RETURNING {RESERVATION_COLUMNS}"
            ))?
            .query_map(args, reservation_of)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut handles = tx
            .prepare(&format!(
                "DELETE FROM service_handles WHERE state = 'reserved' AND {RESOLVED}
                 RETURNING {HANDLE_RESERVATION_COLUMNS}"
            ))?
            .query_map(args, handle_reservation_of)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        instances.sort_by(|a, b| (a.created_at, &a.guid).cmp(&(b.created_at, &b.guid)));
        handles.sort_by(|a, b| (a.created_at, &a.guid).cmp(&(b.created_at, &b.guid)));
        Ok(Recovered { instances, handles })
    })
}

/// Re-leases to `lease` the deleting rows `policy` resolves, in one transaction, and returns
/// them: each delete with its handles, then the unbinds of instances not being deleted.
pub(super) fn claim_unfinished(
    path: &Path,
    synchronous: Synchronous,
    policy: &RecoveryPolicy,
    lease: &Lease,
) -> Result<Unfinished, StoreError> {
    in_transaction(path, synchronous, |tx| {
        let args = params![
            policy.now,
            policy.predecessor_gone,
            policy.owner,
            lease.owner,
            lease.expires_at
        ];
        let guids = tx
            .prepare(&format!(
                "UPDATE service_instances SET lease_owner = ?4, lease_expires_at = ?5
                 WHERE state = 'deleting' AND {RESOLVED} RETURNING guid"
            ))?
            .query_map(args, |row| row.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut unfinished = Unfinished::default();
        for guid in guids {
            tx.prepare_cached(
                "UPDATE service_handles SET lease_owner = ?2, lease_expires_at = ?3
                 WHERE instance_guid = ?1 AND state = 'deleting'",
            )?
            .execute(params![guid, lease.owner, lease.expires_at])?;
            let instance = tx
                .prepare_cached(&format!("{SELECT} WHERE guid = ?1"))?
                .query_row(params![guid], record_of)?;
            let handles = tx
                .prepare_cached(&format!(
                    "{SELECT_HANDLE} WHERE instance_guid = ?1 AND state = 'deleting'"
                ))?
                .query_map(params![guid], handle_of)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            unfinished.deletes.push((instance, handles));
        }
        unfinished.unbinds = tx
            .prepare(&format!(
                "UPDATE service_handles SET lease_owner = ?4, lease_expires_at = ?5
                 WHERE state = 'deleting' AND {RESOLVED}
                   AND NOT EXISTS (SELECT 1 FROM service_instances i
                                   WHERE i.guid = service_handles.instance_guid
                                     AND i.state = 'deleting')
                 RETURNING guid"
            ))?
            .query_map(args, |row| row.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .map(|guid| {
                tx.prepare_cached(&format!("{SELECT_HANDLE} WHERE guid = ?1"))?
                    .query_row(params![guid], handle_of)
            })
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(unfinished)
    })
}

/// Runs `f` in an IMMEDIATE transaction on a connection of its own, and commits it.
fn in_transaction<T>(
    path: &Path,
    synchronous: Synchronous,
    f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    let mut conn = connection::open(path, synchronous)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(classify)?;
    let value = f(&tx).map_err(classify)?;
    tx.commit().map_err(classify)?;
    Ok(value)
}
