//! A [`Store`] in process memory, keeping the same promises as SQLite (the conformance suite
//! runs on both) minus durability: for use-case tests, and anywhere a throwaway store will do.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::{
    InstanceRecord, Lease, Provisioned, RecoveryPolicy, Reservation, State, Store, StoreError,
};

#[derive(Default)]
pub struct MemoryStore {
    rows: Mutex<BTreeMap<String, InstanceRecord>>,
    fail_commits: AtomicBool,
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Test hook: while `fail` holds, every commit fails with a `Backend` error (as a full
    /// disk would) and changes nothing.
    pub fn fail_commits(&self, fail: bool) {
        self.fail_commits.store(fail, Ordering::SeqCst);
    }

    /// Rows of any state.
    pub fn len(&self) -> usize {
        self.rows().len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows().is_empty()
    }

    fn rows(&self) -> MutexGuard<'_, BTreeMap<String, InstanceRecord>> {
        // Every critical section below leaves the map consistent before anything can panic,
        // so a poisoned lock still guards good data.
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn reserve(&self, r: &Reservation, lease: &Lease) -> Result<(), StoreError> {
        let mut rows = self.rows();
        if rows.contains_key(&r.guid) {
            return Err(StoreError::Backend(
                format!("duplicate instance guid {}", r.guid).into(),
            ));
        }
        let taken = rows.values().any(|row| {
            row.reservation.space_guid == r.space_guid && row.reservation.name == r.name
        });
        if taken {
            return Err(StoreError::NameTaken);
        }
        let record = InstanceRecord {
            reservation: r.clone(),
            state: State::Reserved(lease.clone()),
        };
        rows.insert(r.guid.clone(), record);
        Ok(())
    }

    async fn release(&self, guid: &str) -> Result<(), StoreError> {
        let mut rows = self.rows();
        if rows
            .get(guid)
            .is_some_and(|row| matches!(row.state, State::Reserved(_)))
        {
            rows.remove(guid);
        }
        Ok(())
    }

    async fn commit(&self, guid: &str, p: &Provisioned) -> Result<(), StoreError> {
        if self.fail_commits.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("injected commit failure".into()));
        }
        match self.rows().get_mut(guid) {
            Some(row) if matches!(row.state, State::Reserved(_)) => {
                row.state = State::Created(p.clone());
                Ok(())
            }
            _ => Err(StoreError::NoReservation(guid.to_string())),
        }
    }

    async fn get(&self, guid: &str) -> Result<Option<InstanceRecord>, StoreError> {
        Ok(self.rows().get(guid).cloned())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn recover(&self, policy: &RecoveryPolicy) -> Result<Vec<Reservation>, StoreError> {
        let mut removed: Vec<Reservation> = Vec::new();
        self.rows().retain(|_, row| match &row.state {
            State::Reserved(lease) if policy.resolves(lease) => {
                removed.push(row.reservation.clone());
                false
            }
            _ => true,
        });
        removed.sort_by(|a, b| (a.created_at, &a.guid).cmp(&(b.created_at, &b.guid)));
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::conformance::{store_conformance, Subject};

    store_conformance!(|| Subject::new(MemoryStore::new()));
}
