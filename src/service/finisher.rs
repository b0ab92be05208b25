//! Finishing what a gone process left half done: deletes and unbinds whose holder crashed (or
//! whose lease expired) between moving a row to deleting and removing it. The store hands them
//! over under a fresh lease (`Store::claim_unfinished`); each is completed at the broker —
//! unbind and deprovision are idempotent, and a broker that no longer knows the instance or
//! handle counts as done — or, when the broker refuses, put back as it was, so its owner can
//! delete it again.

use std::sync::Arc;

use super::bind::{BindError, Binder};
use super::delete::Deleter;
use super::lease::LeasePolicy;
use super::provision::Trace;
use crate::config::{Broker, Runtime};
use crate::store::{RecoveryPolicy, Store, StoreError, Unfinished};

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Instances (and their handles) removed once the broker confirmed.
    pub deletes: usize,
    /// Handles removed once the broker confirmed.
    pub unbinds: usize,
    /// Deletes or unbinds the broker refused (put back) or the store could not record (left
    /// for the next pass).
    pub failed: usize,
}

/// The request id the finisher's broker calls carry.
const REQUEST_ID: &str = "brokergate-finisher";

pub struct Finisher {
    store: Arc<dyn Store>,
    deleter: Deleter,
    binder: Binder,
    leases: LeasePolicy,
}

impl Finisher {
    pub fn new(
        store: Arc<dyn Store>,
        deleter: Deleter,
        binder: Binder,
        leases: impl Into<LeasePolicy>,
    ) -> Self {
        Finisher {
            store,
            deleter,
            binder,
            leases: leases.into(),
        }
    }

    /// Claims what `policy` resolves and completes each, in the order the store gave them.
    pub async fn finish(
        &self,
        rt: &Runtime,
        policy: &RecoveryPolicy,
    ) -> Result<Finished, StoreError> {
        // Every claimed row's broker calls, each at most the slowest broker's timeout; a lease
        // that still runs out lets another replica repeat an idempotent call, nothing worse.
        let slowest = rt
            .brokers
            .iter()
            .map(|b| i64::try_from(b.timeout.as_secs()).unwrap_or(i64::MAX))
            .max()
            .unwrap_or(0);
        let claim = self.leases.covering(slowest, policy.now, CLAIMED_CALLS);
        let Unfinished { deletes, unbinds } = self.store.claim_unfinished(policy, &claim).await?;
        let mut done = Finished::default();
        for (instance, handles) in deletes {
            let guid = instance.reservation.guid.clone();
            let Some(broker) = broker_named(rt, &instance.reservation.broker) else {
                log::error!("Cannot finish a delete: its broker is not configured; the instance is kept. instance_guid={guid} broker={}", instance.reservation.broker);
                self.restore_instance(&guid).await;
                done.failed += 1;
                continue;
            };
            let mut trace = Trace::default();
            match self
                .deleter
                .complete(broker, &instance, &handles, REQUEST_ID, &mut trace)
                .await
            {
                Ok(()) => {
                    log::info!("Finished a delete a previous process left. instance_guid={guid}");
                    done.deletes += 1;
                }
                Err(e) => {
                    log_failure("delete", &guid, &e);
                    done.failed += 1;
                }
            }
        }
        for handle in unbinds {
            let guid = handle.reservation.guid.clone();
            let instance = self.store.get(&handle.reservation.instance_guid).await?;
            let found = instance.as_ref().and_then(|i| {
                let broker = broker_named(rt, &i.reservation.broker)?;
                Some((broker, i.provisioned()?))
            });
            let Some((broker, provisioned)) = found else {
                log::error!("Cannot finish an unbind: its instance or broker is gone; the handle is kept. handle_guid={guid}");
                self.restore_handle(&guid).await;
                done.failed += 1;
                continue;
            };
            let mut trace = Trace::default();
            match self
                .binder
                .complete_unbind(broker, provisioned, &handle, REQUEST_ID, &mut trace)
                .await
            {
                Ok(()) => {
                    log::info!("Finished an unbind a previous process left. handle_guid={guid}");
                    done.unbinds += 1;
                }
                Err(e) => {
                    if matches!(e, BindError::Broker(_)) {
                        self.restore_handle(&guid).await;
                    }
                    log_failure("unbind", &guid, &e);
                    done.failed += 1;
                }
            }
        }
        Ok(done)
    }

    async fn restore_instance(&self, guid: &str) {
        if let Err(e) = self.store.abort_delete(guid).await {
            log::error!("Could not restore an instance. instance_guid={guid} error={e}");
        }
    }

    async fn restore_handle(&self, guid: &str) {
        if let Err(e) = self.store.abort_unbind(guid).await {
            log::error!("Could not restore a handle. handle_guid={guid} error={e}");
        }
    }
}

/// How many broker calls' worth of time a claim covers.
const CLAIMED_CALLS: u64 = 10;

fn broker_named<'rt>(rt: &'rt Runtime, name: &str) -> Option<&'rt Broker> {
    rt.brokers.iter().find(|b| b.name == name).map(|b| &**b)
}

fn log_failure(operation: &str, guid: &str, error: &dyn std::fmt::Display) {
    log::error!("Could not finish an unfinished {operation}; a refusal puts it back, a store failure leaves it for the next pass. guid={guid} error={error}");
}
