//! What the store holds and how it is asked for lists: instances, the handles (bindings and
//! service keys) that belong to them, their states, and the leases that guard what is in
//! flight at a broker.

use serde_json::value::RawValue;

/// What a reservation holds: everything known before the broker answers. A rename changes
/// `name` and `tags` in place.
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

/// An instance the broker provisioned and the store committed: what an envelope shows.
#[derive(Debug, Clone)]
pub struct CreatedInstance {
    pub reservation: Reservation,
    pub provisioned: Provisioned,
    pub last_operation: Operation,
    /// Unix seconds of the last rename or retag.
    pub updated_at: Option<i64>,
    /// A delete holds it: the broker is deprovisioning it, or the finisher will.
    pub deleting: bool,
}

impl CreatedInstance {
    /// The instance a record holds, once committed (created, or being deleted).
    pub fn from_record(record: InstanceRecord) -> Option<CreatedInstance> {
        let provisioned = record.provisioned()?.clone();
        Some(CreatedInstance {
            deleting: matches!(record.state, State::Deleting(..)),
            reservation: record.reservation,
            provisioned,
            last_operation: record.last_operation,
            updated_at: record.updated_at,
        })
    }
}

/// Who holds a row in flight and until when (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The `[store] owner` of the process that took it.
    pub owner: String,
    pub expires_at: i64,
}

impl Lease {
    /// Whether the holder's time is up at `now`: from `expires_at` on, anyone may resolve it.
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at <= now
    }
}

/// Lifecycle of an instance row. The state carries its data, so an impossible pair (a
/// reservation with credentials, a created instance without them) cannot be built.
#[derive(Debug, Clone)]
pub enum State {
    /// The name is held while the broker is called.
    Reserved(Lease),
    /// The broker provisioned it and the answer is committed.
    Created(Provisioned),
    /// A delete holds it while the broker unbinds its handles and deprovisions it.
    Deleting(Provisioned, Lease),
}

/// The last change a client made to an instance, as `last_operation.type` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
        }
    }

    pub fn parse(s: &str) -> Option<Operation> {
        match s {
            "create" => Some(Operation::Create),
            "update" => Some(Operation::Update),
            _ => None,
        }
    }
}

/// A stored instance.
#[derive(Debug, Clone)]
pub struct InstanceRecord {
    pub reservation: Reservation,
    pub state: State,
    pub last_operation: Operation,
    /// Unix seconds of the last rename or retag; `None` until one.
    pub updated_at: Option<i64>,
}

impl InstanceRecord {
    /// The broker's answer, once committed (created, or being deleted).
    pub fn provisioned(&self) -> Option<&Provisioned> {
        match &self.state {
            State::Reserved(_) => None,
            State::Created(p) | State::Deleting(p, _) => Some(p),
        }
    }
}

/// A rename or retag: what changes, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceUpdate {
    pub name: Option<String>,
    pub tags: Option<Vec<String>>,
    /// Unix seconds.
    pub updated_at: i64,
}

/// Whom a handle's credentials are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// A service binding: one per app and instance; its name is optional.
    App {
        app_guid: String,
        name: Option<String>,
    },
    /// A service key: a handle without an app, named uniquely per instance.
    Key { name: String },
}

impl Holder {
    pub fn kind(&self) -> HandleKind {
        match self {
            Holder::App { .. } => HandleKind::Binding,
            Holder::Key { .. } => HandleKind::Key,
        }
    }
}

/// The two resources a v1 handle is shown as; each has its own guids and routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleKind {
    Binding,
    Key,
}

impl HandleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HandleKind::Binding => "binding",
            HandleKind::Key => "key",
        }
    }
}

/// What a handle reservation holds: everything known before the broker binds.
#[derive(Debug, Clone, PartialEq)]
pub struct HandleReservation {
    pub guid: String,
    pub instance_guid: String,
    pub holder: Holder,
    /// The request's `parameters` (v1's `binding_options`), verbatim; `{}` when absent.
    pub binding_options: String,
    pub creator_user_id: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// What the broker answered to a bind, committed onto the handle reservation.
#[derive(Debug, Clone)]
pub struct HandleGrant {
    /// The broker's id of the handle (the bind answer's `service_id`).
    pub handle_id: String,
    pub configuration: Box<RawValue>,
    pub credentials: Box<RawValue>,
    pub syslog_drain_url: Option<String>,
}

/// Lifecycle of a handle row, as [`State`] is of an instance.
#[derive(Debug, Clone)]
pub enum HandleState {
    /// Held while the broker binds.
    Reserved(Lease),
    Created(HandleGrant),
    /// An unbind (or its instance's recursive delete) holds it while the broker unbinds.
    Deleting(HandleGrant, Lease),
}

/// A stored binding or service key.
#[derive(Debug, Clone)]
pub struct HandleRecord {
    pub reservation: HandleReservation,
    pub state: HandleState,
}

impl HandleRecord {
    /// The broker's answer, once committed (created, or being unbound).
    pub fn grant(&self) -> Option<&HandleGrant> {
        match &self.state {
            HandleState::Reserved(_) => None,
            HandleState::Created(g) | HandleState::Deleting(g, _) => Some(g),
        }
    }
}

/// A field an instance list may be filtered on (CC's `q` fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceField {
    Name,
    SpaceGuid,
    ServicePlanGuid,
    /// The broker's id of the instance (CC's `gateway_name`).
    GatewayName,
    OrganizationGuid,
}

/// A field a handle list may be filtered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleField {
    InstanceGuid,
    AppGuid,
    Name,
    /// The space of the handle's instance (what visibility filters on).
    SpaceGuid,
}

impl InstanceField {
    /// Its column in `service_instances`, the same in every backend's schema.
    pub(crate) fn column(self) -> &'static str {
        match self {
            InstanceField::Name => "name",
            InstanceField::SpaceGuid => "space_guid",
            InstanceField::ServicePlanGuid => "service_plan_guid",
            InstanceField::GatewayName => "broker_service_id",
            InstanceField::OrganizationGuid => "organization_guid",
        }
    }
}

impl HandleField {
    /// Its column in `service_handles` (or, for the space, an expression over it), the same
    /// in every backend's schema.
    pub(crate) fn column(self) -> &'static str {
        match self {
            HandleField::InstanceGuid => "instance_guid",
            HandleField::AppGuid => "app_guid",
            HandleField::Name => "name",
            // Looked up on the instance: handles do not repeat their instance's space.
            HandleField::SpaceGuid => {
                "(SELECT i.space_guid FROM service_instances i WHERE i.guid = service_handles.instance_guid)"
            }
        }
    }
}

/// Tags as every backend keeps them: a JSON array of strings in a text column.
pub(crate) fn tags_json(tags: &[String]) -> String {
    // A list of strings always serializes.
    serde_json::to_string(tags).unwrap_or_default()
}

/// One page of a list: rows matching every condition (a condition matches when the field
/// equals any of its values), in creation (insertion) order, `offset` rows skipped, at most
/// `limit`.
/// Rows in flight at a broker for the first time (reservations) are never listed.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery<F> {
    pub conditions: Vec<(F, Vec<String>)>,
    pub descending: bool,
    pub offset: u64,
    pub limit: u32,
}

/// An instance list.
pub type InstanceQuery = ListQuery<InstanceField>;

/// A handle list, of one kind.
#[derive(Debug, Clone, PartialEq)]
pub struct HandleQuery {
    pub kind: HandleKind,
    pub list: ListQuery<HandleField>,
}

/// A page, and how many rows match in all.
#[derive(Debug, Clone)]
pub struct Listed<T> {
    pub total: u64,
    pub items: Vec<T>,
}

/// What a start freed: reservations whose holder is gone, each of which the broker may have
/// acted on without brokergate learning of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recovered {
    pub instances: Vec<Reservation>,
    pub handles: Vec<HandleReservation>,
}

/// Deletes and unbinds a gone holder left half done, now held by the claimant: each is to be
/// finished at the broker (both calls are idempotent) or, failing that, undone.
#[derive(Debug, Clone, Default)]
pub struct Unfinished {
    /// Instances in [`State::Deleting`], each with its handles (all deleting too).
    pub deletes: Vec<(InstanceRecord, Vec<HandleRecord>)>,
    /// Handles in [`HandleState::Deleting`] whose instance is not being deleted.
    pub unbinds: Vec<HandleRecord>,
}
