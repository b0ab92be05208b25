//! Where instances are recorded: the [`Store`] port the use cases talk to, and the backends
//! behind it (embedded SQLite; an in-memory one for use-case tests). A name is reserved (a row
//! in [`State::Reserved`], unique per space, held under a [`Lease`]) before the broker is
//! called, and becomes [`State::Created`] only when the broker's answer is committed.

mod memory;
mod sqlite;

#[cfg(test)]
pub(crate) mod conformance;

pub use memory::MemoryStore;
pub use sqlite::{SchemaVersion, SqliteOptions, SqliteStore, Synchronous};

use async_trait::async_trait;
use serde_json::value::RawValue;

/// The cause an error keeps, whatever the backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a reservation holds: everything known before the broker answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    pub guid: String,
    pub name: String,
    pub space_guid: String,
    pub organization_guid: Option<String>,
    pub service_plan_guid: String,
    pub broker: String,
    pub tags: Vec<String>,
    pub creator_user_id: String,
    pub creator_email: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// What the broker answered, committed onto the reservation.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub broker_service_id: String,
    pub gateway_data: Box<RawValue>,
    pub credentials: Box<RawValue>,
    pub dashboard_url: Option<String>,
}

/// An instance the broker provisioned and the store committed: what a 201 shows.
#[derive(Debug, Clone)]
pub struct CreatedInstance {
    pub reservation: Reservation,
    pub provisioned: Provisioned,
}

/// Who holds a reservation and until when (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The `[store] owner` of the process that reserved.
    pub owner: String,
    pub expires_at: i64,
}

impl Lease {
    /// Whether the holder's time is up at `now`: from `expires_at` on, anyone may resolve it.
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at <= now
    }
}

/// Lifecycle of a row. The state carries its data, so an impossible pair (a reservation with
/// credentials, a created instance without them) cannot be built.
///
/// Room is left for what a later lifecycle issue adds: a `Deleting` state (held under a
/// lease while the broker deprovisions, like a reservation), and bindings and service keys,
/// which belong to a created instance.
#[derive(Debug, Clone)]
pub enum State {
    /// The name is held while the broker is called.
    Reserved(Lease),
    /// The broker provisioned it and the answer is committed.
    Created(Provisioned),
}

/// A stored instance.
#[derive(Debug, Clone)]
pub struct InstanceRecord {
    pub reservation: Reservation,
    pub state: State,
}

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

/// What a start resolves: reservations whose lease expired (any owner), and — when the
/// previous process of `owner` is known to be gone (a normal start, not `run --upgrade`) —
/// every reservation `owner` holds.
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

    /// Called by the readiness probe (`/readyz`). `Ok`: a round trip to the backend answered;
    /// an error makes the gateway not ready.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Called once at start, before the gateway serves. Removes every reservation `policy`
    /// resolves and returns them, oldest first, so the caller can report each one: the broker
    /// may hold an instance nobody recorded. Created rows are never touched.
    async fn recover(&self, policy: &RecoveryPolicy) -> Result<Vec<Reservation>, StoreError>;
}
