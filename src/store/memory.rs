//! A [`Store`] in process memory, keeping the same promises as SQLite (the conformance suite
//! runs on both) minus durability: for use-case tests, and anywhere a throwaway store will do.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::{
    HandleField, HandleGrant, HandleQuery, HandleRecord, HandleReservation, HandleState, Holder,
    InstanceField, InstanceQuery, InstanceRecord, InstanceUpdate, Lease, ListQuery, Listed,
    Operation, Provisioned, Recovered, RecoveryPolicy, Reservation, State, Store, StoreError,
    Unfinished,
};

#[derive(Default)]
struct Rows {
    instances: BTreeMap<String, InstanceRecord>,
    handles: BTreeMap<String, HandleRecord>,
    /// When each row was inserted: the order lists are in.
    inserted: HashMap<String, u64>,
    inserts: u64,
}

impl Rows {
    fn note_insert(&mut self, guid: &str) {
        self.inserted.insert(guid.to_string(), self.inserts);
        self.inserts += 1;
    }

    fn remove_instance(&mut self, guid: &str) {
        self.instances.remove(guid);
        self.inserted.remove(guid);
    }

    fn remove_handle(&mut self, guid: &str) {
        self.handles.remove(guid);
        self.inserted.remove(guid);
    }

    fn order_of(&self, guid: &str) -> u64 {
        self.inserted.get(guid).copied().unwrap_or(u64::MAX)
    }

    fn handles_of<'a>(&'a self, instance: &'a str) -> impl Iterator<Item = &'a HandleRecord> {
        self.handles
            .values()
            .filter(move |h| h.reservation.instance_guid == instance)
    }
}

#[derive(Default)]
pub struct MemoryStore {
    rows: Mutex<Rows>,
    fail_commits: AtomicBool,
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Test hook: while `fail` holds, every commit (of an instance or a handle) fails with a
    /// `Backend` error (as a full disk would) and changes nothing.
    pub fn fail_commits(&self, fail: bool) {
        self.fail_commits.store(fail, Ordering::SeqCst);
    }

    /// Instance rows of any state.
    pub fn len(&self) -> usize {
        self.rows().instances.len()
    }

    pub fn is_empty(&self) -> bool {
        let rows = self.rows();
        rows.instances.is_empty() && rows.handles.is_empty()
    }

    fn rows(&self) -> MutexGuard<'_, Rows> {
        // Every critical section below leaves the maps consistent before anything can panic,
        // so a poisoned lock still guards good data.
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn injected_failure(&self) -> Result<(), StoreError> {
        if self.fail_commits.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("injected commit failure".into()));
        }
        Ok(())
    }
}

/// Rows matching `query`'s conditions, in creation order, and the page of them it asks for.
fn page<T: Clone, F>(
    mut matching: Vec<&T>,
    order: impl Fn(&T) -> u64,
    query: &ListQuery<F>,
) -> Listed<T> {
    matching.sort_by_key(|row| order(row));
    if query.descending {
        matching.reverse();
    }
    let total = matching.len() as u64;
    let items = matching
        .into_iter()
        .skip(usize::try_from(query.offset).unwrap_or(usize::MAX))
        .take(query.limit as usize)
        .cloned()
        .collect();
    Listed { total, items }
}

fn instance_field(r: &InstanceRecord, field: InstanceField) -> Option<&str> {
    let res = &r.reservation;
    match field {
        InstanceField::Name => Some(&res.name),
        InstanceField::SpaceGuid => Some(&res.space_guid),
        InstanceField::ServicePlanGuid => Some(&res.service_plan_guid),
        InstanceField::GatewayName => r.provisioned().map(|p| p.broker_service_id.as_str()),
        InstanceField::OrganizationGuid => res.organization_guid.as_deref(),
    }
}

fn handle_field(h: &HandleRecord, field: HandleField) -> Option<&str> {
    let res = &h.reservation;
    match (field, &res.holder) {
        (HandleField::InstanceGuid, _) => Some(&res.instance_guid),
        (HandleField::AppGuid, Holder::App { app_guid, .. }) => Some(app_guid),
        (HandleField::AppGuid, Holder::Key { .. }) => None,
        (HandleField::Name, Holder::App { name, .. }) => name.as_deref(),
        (HandleField::Name, Holder::Key { name }) => Some(name),
        // Answered from the instance, by the caller.
        (HandleField::SpaceGuid, _) => None,
    }
}

fn matches<F: Copy>(conditions: &[(F, Vec<String>)], value: impl Fn(F) -> Option<String>) -> bool {
    conditions
        .iter()
        .all(|(field, values)| value(*field).is_some_and(|v| values.contains(&v)))
}

#[async_trait]
impl Store for MemoryStore {
    async fn reserve(&self, r: &Reservation, lease: &Lease) -> Result<(), StoreError> {
        let mut rows = self.rows();
        if rows.instances.contains_key(&r.guid) {
            return Err(StoreError::Backend(
                format!("duplicate instance guid {}", r.guid).into(),
            ));
        }
        let taken = rows.instances.values().any(|row| {
            row.reservation.space_guid == r.space_guid && row.reservation.name == r.name
        });
        if taken {
            return Err(StoreError::NameTaken);
        }
        let record = InstanceRecord {
            reservation: r.clone(),
            state: State::Reserved(lease.clone()),
            last_operation: Operation::Create,
            updated_at: None,
        };
        rows.instances.insert(r.guid.clone(), record);
        rows.note_insert(&r.guid);
        Ok(())
    }

    async fn release(&self, guid: &str) -> Result<(), StoreError> {
        let mut rows = self.rows();
        if rows
            .instances
            .get(guid)
            .is_some_and(|row| matches!(row.state, State::Reserved(_)))
        {
            rows.remove_instance(guid);
        }
        Ok(())
    }

    async fn commit(&self, guid: &str, p: &Provisioned) -> Result<(), StoreError> {
        self.injected_failure()?;
        match self.rows().instances.get_mut(guid) {
            Some(row) if matches!(row.state, State::Reserved(_)) => {
                row.state = State::Created(p.clone());
                Ok(())
            }
            _ => Err(StoreError::NoReservation(guid.to_string())),
        }
    }

    async fn get(&self, guid: &str) -> Result<Option<InstanceRecord>, StoreError> {
        Ok(self.rows().instances.get(guid).cloned())
    }

    async fn list(&self, query: &InstanceQuery) -> Result<Listed<InstanceRecord>, StoreError> {
        let rows = self.rows();
        let matching = rows
            .instances
            .values()
            .filter(|r| r.provisioned().is_some())
            .filter(|r| {
                matches(&query.conditions, |f| {
                    instance_field(r, f).map(str::to_string)
                })
            })
            .collect();
        Ok(page(
            matching,
            |r: &InstanceRecord| rows.order_of(&r.reservation.guid),
            query,
        ))
    }

    async fn update(&self, guid: &str, u: &InstanceUpdate) -> Result<(), StoreError> {
        let mut rows = self.rows();
        let Some(row) = rows.instances.get(guid) else {
            return Err(StoreError::NotFound);
        };
        match row.state {
            State::Reserved(_) => return Err(StoreError::NotFound),
            State::Deleting(..) => return Err(StoreError::InProgress),
            State::Created(_) => {}
        }
        if let Some(name) = &u.name {
            let space = &row.reservation.space_guid;
            let taken = rows.instances.values().any(|other| {
                other.reservation.guid != guid
                    && other.reservation.space_guid == *space
                    && other.reservation.name == *name
            });
            if taken {
                return Err(StoreError::NameTaken);
            }
        }
        let Some(row) = rows.instances.get_mut(guid) else {
            return Err(StoreError::NotFound);
        };
        if let Some(name) = &u.name {
            row.reservation.name = name.clone();
        }
        if let Some(tags) = &u.tags {
            row.reservation.tags = tags.clone();
        }
        row.last_operation = Operation::Update;
        row.updated_at = Some(u.updated_at);
        Ok(())
    }

    async fn begin_delete(
        &self,
        guid: &str,
        lease: &Lease,
        recursive: bool,
    ) -> Result<(), StoreError> {
        let mut rows = self.rows();
        let provisioned = match rows.instances.get(guid).map(|r| &r.state) {
            None | Some(State::Reserved(_)) => return Err(StoreError::NotFound),
            Some(State::Deleting(..)) => return Err(StoreError::InProgress),
            Some(State::Created(p)) => p.clone(),
        };
        let handles: Vec<&HandleRecord> = rows.handles_of(guid).collect();
        if handles
            .iter()
            .any(|h| !matches!(h.state, HandleState::Created(_)))
        {
            return Err(StoreError::InProgress);
        }
        if !handles.is_empty() && !recursive {
            return Err(StoreError::NotEmpty);
        }
        let guids: Vec<String> = handles.iter().map(|h| h.reservation.guid.clone()).collect();
        for h in guids {
            if let Some(row) = rows.handles.get_mut(&h) {
                if let HandleState::Created(g) = &row.state {
                    row.state = HandleState::Deleting(g.clone(), lease.clone());
                }
            }
        }
        if let Some(row) = rows.instances.get_mut(guid) {
            row.state = State::Deleting(provisioned, lease.clone());
        }
        Ok(())
    }

    async fn abort_delete(&self, guid: &str) -> Result<(), StoreError> {
        let mut rows = self.rows();
        let Some(row) = rows.instances.get_mut(guid) else {
            return Ok(());
        };
        let State::Deleting(p, _) = &row.state else {
            return Ok(());
        };
        row.state = State::Created(p.clone());
        for h in rows.handles.values_mut() {
            if h.reservation.instance_guid == guid {
                if let HandleState::Deleting(g, _) = &h.state {
                    h.state = HandleState::Created(g.clone());
                }
            }
        }
        Ok(())
    }

    async fn finish_delete(&self, guid: &str) -> Result<(), StoreError> {
        self.injected_failure()?;
        let mut rows = self.rows();
        match rows.instances.get(guid).map(|r| &r.state) {
            None => return Ok(()),
            Some(State::Deleting(..)) => {}
            Some(_) => return Err(StoreError::NotFound),
        }
        if rows.handles_of(guid).next().is_some() {
            return Err(StoreError::NotEmpty);
        }
        rows.remove_instance(guid);
        Ok(())
    }

    async fn reserve_handle(&self, h: &HandleReservation, lease: &Lease) -> Result<(), StoreError> {
        let mut rows = self.rows();
        if rows.handles.contains_key(&h.guid) {
            return Err(StoreError::Backend(
                format!("duplicate handle guid {}", h.guid).into(),
            ));
        }
        match rows.instances.get(&h.instance_guid).map(|r| &r.state) {
            None | Some(State::Reserved(_)) => return Err(StoreError::NotFound),
            Some(State::Deleting(..)) => return Err(StoreError::InProgress),
            Some(State::Created(_)) => {}
        }
        for other in rows.handles_of(&h.instance_guid) {
            match (&other.reservation.holder, &h.holder) {
                (Holder::App { app_guid: a, .. }, Holder::App { app_guid: b, .. }) if a == b => {
                    return Err(StoreError::AppBound)
                }
                (Holder::Key { name: a }, Holder::Key { name: b }) if a == b => {
                    return Err(StoreError::KeyNameTaken)
                }
                _ => {}
            }
        }
        let record = HandleRecord {
            reservation: h.clone(),
            state: HandleState::Reserved(lease.clone()),
        };
        rows.handles.insert(h.guid.clone(), record);
        rows.note_insert(&h.guid);
        Ok(())
    }

    async fn release_handle(&self, guid: &str) -> Result<(), StoreError> {
        let mut rows = self.rows();
        if rows
            .handles
            .get(guid)
            .is_some_and(|h| matches!(h.state, HandleState::Reserved(_)))
        {
            rows.remove_handle(guid);
        }
        Ok(())
    }

    async fn commit_handle(&self, guid: &str, grant: &HandleGrant) -> Result<(), StoreError> {
        self.injected_failure()?;
        match self.rows().handles.get_mut(guid) {
            Some(row) if matches!(row.state, HandleState::Reserved(_)) => {
                row.state = HandleState::Created(grant.clone());
                Ok(())
            }
            _ => Err(StoreError::NoReservation(guid.to_string())),
        }
    }

    async fn get_handle(&self, guid: &str) -> Result<Option<HandleRecord>, StoreError> {
        Ok(self.rows().handles.get(guid).cloned())
    }

    async fn list_handles(&self, query: &HandleQuery) -> Result<Listed<HandleRecord>, StoreError> {
        let rows = self.rows();
        let matching = rows
            .handles
            .values()
            .filter(|h| h.reservation.holder.kind() == query.kind && h.grant().is_some())
            .filter(|h| {
                matches(&query.list.conditions, |f| match f {
                    HandleField::SpaceGuid => rows
                        .instances
                        .get(&h.reservation.instance_guid)
                        .map(|i| i.reservation.space_guid.clone()),
                    _ => handle_field(h, f).map(str::to_string),
                })
            })
            .collect();
        Ok(page(
            matching,
            |h: &HandleRecord| rows.order_of(&h.reservation.guid),
            &query.list,
        ))
    }

    async fn begin_unbind(&self, guid: &str, lease: &Lease) -> Result<(), StoreError> {
        let mut rows = self.rows();
        let (instance, grant) = match rows.handles.get(guid) {
            None => return Err(StoreError::NotFound),
            Some(h) => match &h.state {
                HandleState::Reserved(_) => return Err(StoreError::NotFound),
                HandleState::Deleting(..) => return Err(StoreError::InProgress),
                HandleState::Created(g) => (h.reservation.instance_guid.clone(), g.clone()),
            },
        };
        if rows
            .instances
            .get(&instance)
            .is_some_and(|i| matches!(i.state, State::Deleting(..)))
        {
            return Err(StoreError::InProgress);
        }
        if let Some(h) = rows.handles.get_mut(guid) {
            h.state = HandleState::Deleting(grant, lease.clone());
        }
        Ok(())
    }

    async fn abort_unbind(&self, guid: &str) -> Result<(), StoreError> {
        if let Some(h) = self.rows().handles.get_mut(guid) {
            if let HandleState::Deleting(g, _) = &h.state {
                h.state = HandleState::Created(g.clone());
            }
        }
        Ok(())
    }

    async fn finish_unbind(&self, guid: &str) -> Result<(), StoreError> {
        self.injected_failure()?;
        let mut rows = self.rows();
        match rows.handles.get(guid).map(|h| &h.state) {
            None => Ok(()),
            Some(HandleState::Deleting(..)) => {
                rows.remove_handle(guid);
                Ok(())
            }
            Some(_) => Err(StoreError::NotFound),
        }
    }

    async fn claim_unfinished(
        &self,
        policy: &RecoveryPolicy,
        lease: &Lease,
    ) -> Result<Unfinished, StoreError> {
        let mut rows = self.rows();
        let Rows {
            instances, handles, ..
        } = &mut *rows;
        let mut unfinished = Unfinished::default();
        for row in instances.values_mut() {
            let State::Deleting(p, held) = &row.state else {
                continue;
            };
            if !policy.resolves(held) {
                continue;
            }
            row.state = State::Deleting(p.clone(), lease.clone());
            let mut of_it = Vec::new();
            for h in handles.values_mut() {
                if h.reservation.instance_guid == row.reservation.guid {
                    if let HandleState::Deleting(g, _) = &h.state {
                        h.state = HandleState::Deleting(g.clone(), lease.clone());
                        of_it.push(h.clone());
                    }
                }
            }
            unfinished.deletes.push((row.clone(), of_it));
        }
        for h in handles.values_mut() {
            let HandleState::Deleting(g, held) = &h.state else {
                continue;
            };
            let instance_deleting = instances
                .get(&h.reservation.instance_guid)
                .is_some_and(|i| matches!(i.state, State::Deleting(..)));
            if instance_deleting || !policy.resolves(held) {
                continue;
            }
            h.state = HandleState::Deleting(g.clone(), lease.clone());
            unfinished.unbinds.push(h.clone());
        }
        Ok(unfinished)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn recover(&self, policy: &RecoveryPolicy) -> Result<Recovered, StoreError> {
        let mut rows = self.rows();
        let mut recovered = Recovered::default();
        rows.instances.retain(|_, row| match &row.state {
            State::Reserved(lease) if policy.resolves(lease) => {
                recovered.instances.push(row.reservation.clone());
                false
            }
            _ => true,
        });
        rows.handles.retain(|_, row| match &row.state {
            HandleState::Reserved(lease) if policy.resolves(lease) => {
                recovered.handles.push(row.reservation.clone());
                false
            }
            _ => true,
        });
        let Rows { inserted, .. } = &mut *rows;
        for guid in recovered.instances.iter().map(|r| &r.guid) {
            inserted.remove(guid);
        }
        for guid in recovered.handles.iter().map(|h| &h.guid) {
            inserted.remove(guid);
        }
        recovered
            .instances
            .sort_by(|a, b| (a.created_at, &a.guid).cmp(&(b.created_at, &b.guid)));
        recovered
            .handles
            .sort_by(|a, b| (a.created_at, &a.guid).cmp(&(b.created_at, &b.guid)));
        Ok(recovered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::conformance::{store_conformance, Subject};

    store_conformance!(|| Subject::new(MemoryStore::new()));
}
