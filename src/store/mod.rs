//! Where instances and their handles are recorded: the [`Store`] port the use cases talk to,
//! and the backends behind it (embedded SQLite; PostgreSQL, shared by replicas; an in-memory
//! one for use-case tests).
//!
//! Every broker call is guarded by a row state taken before it, atomically, under a [`Lease`]:
//! a name is reserved ([`State::Reserved`], unique per space) before a provision and becomes
//! [`State::Created`] only when the broker's answer is committed; a delete moves the instance
//! (and its handles) to [`State::Deleting`] before the broker is called and removes it only
//! once the broker confirmed; binds and unbinds do the same to their handle. A second
//! operation on a row in flight is refused ([`StoreError::InProgress`]), so the broker is
//! never called twice for one operation.

mod copy;
mod memory;
mod postgres;
mod records;
mod sqlite;
mod timed;

#[cfg(test)]
pub(crate) mod conformance;

pub use copy::{copy_store, Copied, CopyError};
pub use memory::MemoryStore;
pub use postgres::{redacted_url, PgOptions, PgStore, PoolObserver, PoolStatus, PoolWait};
pub use records::{
    CreatedInstance, HandleField, HandleGrant, HandleKind, HandleQuery, HandleRecord,
    HandleReservation, HandleState, Holder, InstanceField, InstanceQuery, InstanceRecord,
    InstanceUpdate, Lease, ListQuery, Listed, Operation, Provisioned, Recovered, Reservation,
    State, Unfinished,
};
pub use sqlite::{SchemaVersion, SqliteOptions, SqliteStore, Synchronous};
pub use timed::{CallOutcome, Observer, Timed, OPERATIONS};

use async_trait::async_trait;

/// The cause an error keeps, whatever the backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a store call failed, modelled on pingora's error: what kind, whether a retry may help,
/// and the cause. `Display` never includes credentials: values are bound as parameters, never
/// put into the text of a statement or an error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The name is taken in the space: only the per-space `(space_guid, name)` uniqueness.
    #[error("the name is taken in this space")]
    NameTaken,
    #[error("no reservation {0} to commit")]
    NoReservation(String),
    /// No row the operation applies to: none with the guid, or one still being created.
    #[error("not found")]
    NotFound,
    /// Another operation holds the row (or its instance) at a broker now.
    #[error("another operation is in progress")]
    InProgress,
    /// A delete without `recursive` of an instance that has bindings or keys.
    #[error("the instance has bindings or service keys")]
    NotEmpty,
    /// The app is bound to the instance already.
    #[error("the app is bound to this instance already")]
    AppBound,
    /// The instance has a service key of that name already.
    #[error("the service key name is taken for this instance")]
    KeyNameTaken,
    /// The backend cannot serve now: busy or locked (`retryable`), or lost — cannot be opened,
    /// I/O failing, its writer gone (not retryable: a retry would fail the same way).
    #[error("store unavailable{}: {source}", retry_note(*.retryable))]
    Unavailable {
        retryable: bool,
        #[source]
        source: BoxError,
    },
    /// Anything else: a violated constraint other than the name's, bad data, a bug.
    #[error("store: {0}")]
    Backend(#[source] BoxError),
}

fn retry_note(retryable: bool) -> &'static str {
    if retryable {
        " (retryable)"
    } else {
        ""
    }
}

impl StoreError {
    /// Whether the same call may succeed if made again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable {
                retryable: true,
                ..
            }
        )
    }
}

/// What a start resolves: rows in flight whose lease expired (any owner), and — when the
/// previous process of `owner` is known to be gone (a normal start, not `run --upgrade`) —
/// every one `owner` holds.
#[derive(Debug, Clone)]
pub struct RecoveryPolicy {
    pub owner: String,
    /// Unix seconds.
    pub now: i64,
    pub predecessor_gone: bool,
}

impl RecoveryPolicy {
    /// Whether a reservation under `lease` is resolved by this policy.
    pub fn resolves(&self, lease: &Lease) -> bool {
        lease.expired(self.now) || (self.predecessor_gone && lease.owner == self.owner)
    }
}

/// The port the use cases record instances through. Every method may be called from any
/// task, concurrently; a backend serialises what must be serialised.
#[async_trait]
pub trait Store: Send + Sync {
    /// Called by a create, after every check passed and before the broker is called.
    ///
    /// Holds `reservation.name` in `reservation.space_guid` under `lease`. `Ok`: the name is
    /// this create's until it is committed, released or recovered. `NameTaken`: a row with
    /// that name exists in the space (reserved or created) — only this, never another
    /// constraint (a duplicate guid is `Backend`). Another error: nothing was reserved.
    async fn reserve(&self, reservation: &Reservation, lease: &Lease) -> Result<(), StoreError>;

    /// Called when the broker call failed, or after a failed commit was deprovisioned.
    ///
    /// Drops the reservation `guid`, freeing its name. `Ok` also when there is none (already
    /// released or recovered); a created row is never removed by it.
    async fn release(&self, guid: &str) -> Result<(), StoreError>;

    /// Called when the broker provisioned, before the 201 is sent.
    ///
    /// Turns reservation `guid` into a created instance holding `provisioned`. `Ok`: durable at
    /// the backend's promise (SQLite: `synchronous`), so a 201 may be sent. `NoReservation`:
    /// no reservation `guid` (released, or recovered by another start). Any error: the caller
    /// deprovisions at the broker, so nothing is left unrecorded.
    async fn commit(&self, guid: &str, provisioned: &Provisioned) -> Result<(), StoreError>;

    /// Called by reads. `Ok(None)`: no row `guid`.
    async fn get(&self, guid: &str) -> Result<Option<InstanceRecord>, StoreError>;

    /// Called by lists: created and deleting instances, never reservations.
    async fn list(&self, query: &InstanceQuery) -> Result<Listed<InstanceRecord>, StoreError>;

    /// Called by a rename or retag, after the name rules passed.
    ///
    /// Changes a created instance's name and tags, sets `last_operation` to update and
    /// `updated_at`. `NotFound`: no created or deleting instance `guid`. `InProgress`: it is
    /// being deleted. `NameTaken`: another instance of its space has the new name. Any error
    /// changes nothing.
    async fn update(&self, guid: &str, update: &InstanceUpdate) -> Result<(), StoreError>;

    /// Called by a delete, before any broker call.
    ///
    /// Moves created instance `guid` — and, with `recursive`, every handle of it — to deleting
    /// under `lease`. `NotFound`: no created or deleting instance `guid`. `InProgress`: it, or
    /// one of its handles, is held by another operation (a delete, a bind, an unbind).
    /// `NotEmpty`: it has handles and `recursive` is false. Any error changes nothing.
    async fn begin_delete(
        &self,
        guid: &str,
        lease: &Lease,
        recursive: bool,
    ) -> Result<(), StoreError>;

    /// Called when the broker refused a delete: deleting instance `guid` and its deleting
    /// handles are created again. `Ok` also when it is not deleting.
    async fn abort_delete(&self, guid: &str) -> Result<(), StoreError>;

    /// Called when the broker deprovisioned: removes deleting instance `guid`. Its handles must
    /// be gone already (each removed by [`Store::finish_unbind`] once the broker unbound it).
    /// `Ok` also when there is no row (finished by another start); `NotFound` when it is not
    /// deleting; `NotEmpty` when a handle is left.
    async fn finish_delete(&self, guid: &str) -> Result<(), StoreError>;

    /// Called by a bind or a key create, after every check passed and before the broker is
    /// called.
    ///
    /// Holds a handle of `handle.instance_guid` under `lease`. `NotFound`: no created instance
    /// of that guid (none, being created, or deleting — see next). `InProgress`: the instance
    /// is being deleted. `AppBound`: the app has a binding (of any state) to the instance.
    /// `KeyNameTaken`: the instance has a key of that name. Any error reserves nothing.
    async fn reserve_handle(
        &self,
        handle: &HandleReservation,
        lease: &Lease,
    ) -> Result<(), StoreError>;

    /// Called when a bind failed: drops handle reservation `guid`. `Ok` also when there is
    /// none; a created handle is never removed by it.
    async fn release_handle(&self, guid: &str) -> Result<(), StoreError>;

    /// Called when the broker bound, before the 201 is sent: reservation `guid` becomes a
    /// created handle holding `grant`, durably. `NoReservation` as [`Store::commit`].
    async fn commit_handle(&self, guid: &str, grant: &HandleGrant) -> Result<(), StoreError>;

    /// A binding or key of any state. `Ok(None)`: no handle `guid`.
    async fn get_handle(&self, guid: &str) -> Result<Option<HandleRecord>, StoreError>;

    /// Created and deleting handles of one kind, never reservations.
    async fn list_handles(&self, query: &HandleQuery) -> Result<Listed<HandleRecord>, StoreError>;

    /// Called by an unbind or a key delete, before the broker is called: created handle `guid`
    /// becomes deleting under `lease`. `NotFound`: no created or deleting handle `guid`.
    /// `InProgress`: it, or its instance, is held by another operation.
    async fn begin_unbind(&self, guid: &str, lease: &Lease) -> Result<(), StoreError>;

    /// Called when the broker refused an unbind: deleting handle `guid` is created again.
    async fn abort_unbind(&self, guid: &str) -> Result<(), StoreError>;

    /// Called when the broker unbound: removes deleting handle `guid`. `Ok` also when there is
    /// no row; `NotFound` when it is not deleting.
    async fn finish_unbind(&self, guid: &str) -> Result<(), StoreError>;

    /// Called in the background, at start and then periodically: takes over the deletes and
    /// unbinds whose holder `policy` resolves, re-leasing each to `lease`, and returns them.
    async fn claim_unfinished(
        &self,
        policy: &RecoveryPolicy,
        lease: &Lease,
    ) -> Result<Unfinished, StoreError>;

    /// Called by the readiness probe (`/readyz`). `Ok`: a round trip to the backend answered;
    /// an error makes the gateway not ready.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Called once at start, before the gateway serves. Removes every reservation (of an
    /// instance or a handle) `policy` resolves and returns them, oldest first, so the caller
    /// can report each one: the broker may hold an instance or handle nobody recorded. Created
    /// and deleting rows are never touched here (see [`Store::claim_unfinished`]).
    async fn recover(&self, policy: &RecoveryPolicy) -> Result<Recovered, StoreError>;
}
