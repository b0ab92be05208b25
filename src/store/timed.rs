//! A [`Store`] that times every call of the store it wraps and reports it to an observer: the
//! store's latency by operation, the same for every backend, without the store knowing about
//! metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{
    HandleGrant, HandleQuery, HandleRecord, HandleReservation, InstanceQuery, InstanceRecord,
    InstanceUpdate, Lease, Listed, Provisioned, Recovered, RecoveryPolicy, Reservation, Store,
    StoreError, Unfinished,
};

/// How a store call ended, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Ok,
    /// The store answered with a rule's refusal (name taken, not found, in progress, …): the
    /// store worked.
    Refused,
    /// The backend could not serve (pool exhausted, database down, locked).
    Unavailable,
    /// Any other failure.
    Error,
}

impl CallOutcome {
    pub const ALL: [CallOutcome; 4] = [
        CallOutcome::Ok,
        CallOutcome::Refused,
        CallOutcome::Unavailable,
        CallOutcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Refused => "refused",
            CallOutcome::Unavailable => "unavailable",
            CallOutcome::Error => "error",
        }
    }

    fn of<T>(result: &Result<T, StoreError>) -> CallOutcome {
        match result {
            Ok(_) => CallOutcome::Ok,
            Err(StoreError::Unavailable { .. }) => CallOutcome::Unavailable,
            Err(StoreError::Backend(_)) => CallOutcome::Error,
            Err(_) => CallOutcome::Refused,
        }
    }
}

/// Every operation name [`Timed`] reports, for metrics that pre-register their series.
pub const OPERATIONS: [&str; 20] = [
    "reserve",
    "release",
    "commit",
    "get",
    "list",
    "update",
    "begin_delete",
    "abort_delete",
    "finish_delete",
    "reserve_handle",
    "release_handle",
    "commit_handle",
    "get_handle",
    "list_handles",
    "begin_unbind",
    "abort_unbind",
    "finish_unbind",
    "claim_unfinished",
    "ping",
    "recover",
];

/// Told of each call: the operation (one of [`OPERATIONS`]), how long it took, how it ended.
pub type Observer = Arc<dyn Fn(&'static str, Duration, CallOutcome) + Send + Sync>;

pub struct Timed {
    inner: Arc<dyn Store>,
    observe: Observer,
}

impl Timed {
    pub fn new(inner: Arc<dyn Store>, observe: Observer) -> Timed {
        Timed { inner, observe }
    }

    async fn time<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = call.await;
        (self.observe)(operation, started.elapsed(), CallOutcome::of(&result));
        result
    }
}

#[async_trait]
impl Store for Timed {
    async fn reserve(&self, r: &Reservation, lease: &Lease) -> Result<(), StoreError> {
        self.time("reserve", self.inner.reserve(r, lease)).await
    }

    async fn release(&self, guid: &str) -> Result<(), StoreError> {
        self.time("release", self.inner.release(guid)).await
    }

    async fn commit(&self, guid: &str, p: &Provisioned) -> Result<(), StoreError> {
        self.time("commit", self.inner.commit(guid, p)).await
    }

    async fn get(&self, guid: &str) -> Result<Option<InstanceRecord>, StoreError> {
        self.time("get", self.inner.get(guid)).await
    }

    async fn list(&self, query: &InstanceQuery) -> Result<Listed<InstanceRecord>, StoreError> {
        self.time("list", self.inner.list(query)).await
    }

    async fn update(&self, guid: &str, update: &InstanceUpdate) -> Result<(), StoreError> {
        self.time("update", self.inner.update(guid, update)).await
    }

    async fn begin_delete(
        &self,
        guid: &str,
        lease: &Lease,
        recursive: bool,
    ) -> Result<(), StoreError> {
        self.time(
            "begin_delete",
            self.inner.begin_delete(guid, lease, recursive),
        )
        .await
    }

    async fn abort_delete(&self, guid: &str) -> Result<(), StoreError> {
        self.time("abort_delete", self.inner.abort_delete(guid))
            .await
    }

    async fn finish_delete(&self, guid: &str) -> Result<(), StoreError> {
        self.time("finish_delete", self.inner.finish_delete(guid))
            .await
    }

    async fn reserve_handle(
        &self,
        handle: &HandleReservation,
        lease: &Lease,
    ) -> Result<(), StoreError> {
        self.time("reserve_handle", self.inner.reserve_handle(handle, lease))
            .await
    }

    async fn release_handle(&self, guid: &str) -> Result<(), StoreError> {
        self.time("release_handle", self.inner.release_handle(guid))
            .await
    }

    async fn commit_handle(&self, guid: &str, grant: &HandleGrant) -> Result<(), StoreError> {
        self.time("commit_handle", self.inner.commit_handle(guid, grant))
            .await
    }

    async fn get_handle(&self, guid: &str) -> Result<Option<HandleRecord>, StoreError> {
        self.time("get_handle", self.inner.get_handle(guid)).await
    }

    async fn list_handles(&self, query: &HandleQuery) -> Result<Listed<HandleRecord>, StoreError> {
        self.time("list_handles", self.inner.list_handles(query))
            .await
    }

    async fn begin_unbind(&self, guid: &str, lease: &Lease) -> Result<(), StoreError> {
        self.time("begin_unbind", self.inner.begin_unbind(guid, lease))
            .await
    }

    async fn abort_unbind(&self, guid: &str) -> Result<(), StoreError> {
        self.time("abort_unbind", self.inner.abort_unbind(guid))
            .await
    }

    async fn finish_unbind(&self, guid: &str) -> Result<(), StoreError> {
        self.time("finish_unbind", self.inner.finish_unbind(guid))
            .await
    }

    async fn claim_unfinished(
        &self,
        policy: &RecoveryPolicy,
        lease: &Lease,
    ) -> Result<Unfinished, StoreError> {
        self.time(
            "claim_unfinished",
            self.inner.claim_unfinished(policy, lease),
        )
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.time("ping", self.inner.ping()).await
    }

    async fn recover(&self, policy: &RecoveryPolicy) -> Result<Recovered, StoreError> {
        self.time("recover", self.inner.recover(policy)).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap
    use std::sync::Mutex;

    use super::*;
    use crate::store::conformance::reservation;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn each_call_is_reported_with_its_operation_and_outcome() {
        let seen: Arc<Mutex<Vec<(&'static str, CallOutcome)>>> = Arc::default();
        let log = seen.clone();
        let store = Timed::new(
            Arc::new(MemoryStore::new()),
            Arc::new(move |op, _, outcome| log.lock().unwrap().push((op, outcome))),
        );
        let lease = Lease {
            owner: "o".into(),
            expires_at: i64::MAX,
        };
        store
            .reserve(&reservation("g1", "S", "n"), &lease)
            .await
            .unwrap();
        let taken = store.reserve(&reservation("g2", "S", "n"), &lease).await;
        assert!(matches!(taken, Err(StoreError::NameTaken)));
        store.get("g1").await.unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                ("reserve", CallOutcome::Ok),
                ("reserve", CallOutcome::Refused),
                ("get", CallOutcome::Ok)
            ]
        );
    }
}
