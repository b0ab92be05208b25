//! What a start (and then every finisher pass, for expired leases) does with reservations a
//! previous process left: the store removes those the policy resolves, and each one is reported, since the broker may hold an instance (or a
//! handle) made before the crash whose id brokergate never learnt.

use crate::metrics::Metrics;
use crate::store::{Recovered, RecoveryPolicy, Store, StoreError};

/// Runs the recovery; returns what was removed.
pub async fn recover(
    store: &dyn Store,
    metrics: &Metrics,
    policy: &RecoveryPolicy,
) -> Result<Recovered, StoreError> {
    let removed = store.recover(policy).await?;
    for r in &removed.instances {
        log::warn!(
            "Released a reservation whose holder is gone (a crash, or a lease that expired, during its broker call); the broker may hold an unrecorded instance. instance_guid={} name={:?} space_guid={} broker={} created_at={}",
            r.guid, r.name, r.space_guid, r.broker, r.created_at
        );
    }
    for h in &removed.handles {
        log::warn!(
            "Released a {} reservation whose holder is gone (a crash, or a lease that expired, during its bind); the broker may hold an unrecorded handle, which its own orphan check finds. guid={} instance_guid={} created_at={}",
            h.holder.kind().as_str(), h.guid, h.instance_guid, h.created_at
        );
    }
    let count = removed.instances.len() + removed.handles.len();
    metrics.store_reservations_recovered.inc_by(count as u64);
    // Runs at start and on every finisher pass: a pass that found nothing says so quietly.
    let level = if count > 0 || policy.predecessor_gone {
        log::Level::Info
    } else {
        log::Level::Debug
    };
    log::log!(
        level,
        "Store recovery done. owner={:?} predecessor_gone={} released={} released_handles={}",
        policy.owner,
        policy.predecessor_gone,
        removed.instances.len(),
        removed.handles.len()
    );
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Lease, MemoryStore};

    #[tokio::test]
    async fn reports_and_counts_what_it_removed() {
        let store = MemoryStore::new();
        let reservation = crate::store::conformance::reservation("g", "S", "n");
        let lease = Lease {
            owner: "here".into(),
            expires_at: 100,
        };
        store.reserve(&reservation, &lease).await.unwrap();
        let metrics = Metrics::new();
        let policy = RecoveryPolicy {
            owner: "here".into(),
            now: 50,
            predecessor_gone: true,
        };
        let removed = recover(&store, &metrics, &policy).await.unwrap();
        assert_eq!(removed.instances, [reservation]);
        assert_eq!(metrics.store_reservations_recovered.get(), 1);
        assert!(store.is_empty());
    }
}
