//! Where instances are recorded: the [`Store`] port the use cases talk to, and its embedded
//! SQLite implementation. A name is reserved (a `reserved` row, unique per space) before the
//! broker is called and becomes `created` only when the broker's answer is committed.

mod sqlite;
mod writer;

pub use sqlite::SqliteStore;

use async_trait::async_trait;
use serde_json::value::RawValue;

/// Lifecycle of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The name is held while the broker is called.
    Reserved,
    /// The broker provisioned it and the answer is committed.
    Created,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Reserved => "reserved",
            State::Created => "created",
        }
    }
}

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

/// A stored instance.
#[derive(Debug, Clone)]
pub struct InstanceRecord {
    pub reservation: Reservation,
    pub state: State,
    /// Present once `Created`.
    pub provisioned: Option<Provisioned>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the name is taken in this space")]
    NameTaken,
    #[error("no reservation {0} to commit")]
    NoReservation(String),
    #[error("store: {0}")]
    Backend(String),
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Holds the name in the space, or fails with `NameTaken`.
    async fn reserve(&self, reservation: &Reservation) -> Result<(), StoreError>;
    /// Drops a reservation whose broker call failed.
    async fn release(&self, guid: &str) -> Result<(), StoreError>;
    /// Durably records the broker's answer; after `Ok` the instance survives a crash.
    async fn commit(&self, guid: &str, provisioned: &Provisioned) -> Result<(), StoreError>;
    async fn get(&self, guid: &str) -> Result<Option<InstanceRecord>, StoreError>;
}
