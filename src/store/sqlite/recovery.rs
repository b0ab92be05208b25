//! Resolving reservations at start, on a connection of its own that is closed before it
//! returns: a start runs before the fork of daemon mode, which no connection may cross.

use std::path::Path;

use rusqlite::{params, TransactionBehavior};

use super::connection::{self, Synchronous};
use super::error::classify;
use super::reads::{reservation_of, RESERVATION_COLUMNS};
use crate::store::{RecoveryPolicy, Reservation, StoreError};

/// Deletes what `policy` resolves (as [`RecoveryPolicy::resolves`] does; a NULL lease, set by a
/// brokergate from before leases, counts as expired) in one transaction, and returns it oldest
/// first. A full scan: this runs once per start, and an index would cost every reservation.
pub(super) fn recover(
    path: &Path,
    synchronous: Synchronous,
    policy: &RecoveryPolicy,
) -> Result<Vec<Reservation>, StoreError> {
    let mut conn = connection::open(path, synchronous)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(classify)?;
    let mut removed = tx
        .prepare(&format!(
            "DELETE FROM service_instances
             WHERE state = 'reserved'
               AND (lease_expires_at IS NULL OR lease_expires_at <= ?1
                    OR (?2 AND lease_owner = ?3))
             RETURNING {RESERVATION_COLUMNS}"
        ))
        .and_then(|mut stmt| {
            let rows = stmt
                .query_map(
                    params![policy.now, policy.predecessor_gone, policy.owner],
                    reservation_of,
                )?
                .collect::<rusqlite::Result<Vec<_>>>();
            rows
        })
        .map_err(classify)?;
    tx.commit().map_err(classify)?;
    removed.sort_by(|a, b| (a.created_at, &a.guid).cmp(&(b.created_at, &b.guid)));
    Ok(removed)
}
