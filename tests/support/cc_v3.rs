//! A fake Cloud Controller v3 on 127.0.0.1, for the gateway's authorization:
//! it answers the v3 questions the gateway asks with the caller's own bearer
//! token (a space, the spaces list, roles, a feature flag, an organization, the
//! organizations list) in
//! the real CC's shapes, from a small world of organizations, spaces and role
//! grants that tests set up and change while it runs.
//!
//! The caller is whoever the token's payload names (`user_id`, else
//! `client_id`); the token is decoded, never verified, as the gateway has
//! already verified it.
//!
//! It also holds the upstream's **own v2 catalog** (offerings and plans that
//! the real Cloud Controller lists besides brokergate's), answered in CC v2's
//! shapes: `GET /v2/services`, `/v2/services/:guid`,
//! `/v2/services/:guid/service_plans`, `/v2/service_plans`,
//! `/v2/service_plans/:guid` and `/v2/spaces/:guid/services`, with v2 paging
//! (`page`, `results-per-page`, `order-direction`, `q`) and v2 errors. See
//! [`FakeCloudController::add_v2_service`]. It holds no service instances of its
//! own: `GET /v2/service_instances` and `/v2/spaces/:guid/service_instances` are
//! empty v2 lists (what brokergate merges its own instances after).
//!
//! Everything else is answered as
//! [`MockUpstream`](super::upstream::MockUpstream) does, so one fake can also
//! be the gateway's `[upstream]`; a [`Mode`] set with
//! [`FakeCloudController::set_mode`] breaks the `/v3/` answers only, one set
//! with [`FakeCloudController::set_v2_mode`] only those of the v2 catalog and
//! the instance lists.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use super::cc::CC_JSON;
use super::gateway::{ORG_GUID, SPACE_GUID};
use super::recorded::RecordedRequest;
use super::server::{Handler, Reply, TestServer};
use super::token::Claims;
use super::upstream::info_body;

/// Content-Type of every v3 answer (v3 writes the space that v2 leaves out).
pub const V3_JSON: &str = "application/json; charset=utf-8";

/// `created_at` and `updated_at` of everything the fake holds: fixed, so that
/// answers compare equal from one run to the next.
pub const TIMESTAMP: &str = "2024-01-01T00:00:00Z";

/// The quota every organization points at.
pub const QUOTA_GUID: &str = "c0a1b2c3-0000-4000-8000-00000000a0a0";

/// Names [`FakeCloudController::seed_default`] gives the gateway's seeded
/// organization ([`ORG_GUID`]) and space ([`SPACE_GUID`]).
pub const ORG_NAME: &str = "default-org";
pub const SPACE_NAME: &str = "default-space";

/// Users of the default world: each holds the role of its name in
/// [`SPACE_GUID`], the outsider none at all. Sign a token for one with
/// [`user_token`].
pub const DEVELOPER: &str = "user-developer";
pub const AUDITOR: &str = "user-auditor";
pub const MANAGER: &str = "user-manager";
pub const OUTSIDER: &str = "user-outsider";

/// Scopes with which a token sees every space and organization, roles or not.
/// The default test token ([`super::token::valid_token`], user
/// [`super::token::DEFAULT_USER_ID`]) has `cloud_controller.admin`.
pub const GLOBAL_SCOPES: [&str; 3] = [
    "cloud_controller.admin",
    "cloud_controller.admin_read_only",
    "cloud_controller.global_auditor",
];

/// The scopes of an ordinary CF user, none of them global.
pub const USER_SCOPES: [&str; 3] = ["openid", "cloud_controller.read", "cloud_controller.write"];

/// The claims of an ordinary (non-admin) user `user_id`: [`super::token::default_claims`]
/// with that `user_id`, an email of its own and [`USER_SCOPES`].
pub fn user_claims(user_id: &str) -> Claims {
    Claims::new()
        .set("user_id", user_id)
        .set("user_name", user_id)
        .set("email", format!("{user_id}@example.com"))
        .scopes(&USER_SCOPES)
}

/// [`user_claims`] signed as the gateway's default config accepts (HS256,
/// [`super::token::DEFAULT_SECRET`]).
pub fn user_token(user_id: &str) -> String {
    user_claims(user_id).sign()
}

/// The upstream's own v2 catalog as [`FakeCloudController::seed_default`]
/// (and [`FakeCloudController::seed_v2_default`]) lays it: two offerings, in
/// this order, with one plan each. `upstream-mysql` has an `extra` (a JSON
/// string), `upstream-redis` none (`null`).
pub const UPSTREAM_MYSQL_GUID: &str = "a1b2c3d4-0001-4000-8000-00000000e001";
pub const UPSTREAM_MYSQL_LABEL: &str = "upstream-mysql";
pub const UPSTREAM_MYSQL_PLAN_GUID: &str = "a1b2c3d4-0001-4000-8000-00000000f001";
pub const UPSTREAM_MYSQL_PLAN_NAME: &str = "small";
pub const UPSTREAM_REDIS_GUID: &str = "a1b2c3d4-0002-4000-8000-00000000e002";
pub const UPSTREAM_REDIS_LABEL: &str = "upstream-redis";
pub const UPSTREAM_REDIS_PLAN_GUID: &str = "a1b2c3d4-0002-4000-8000-00000000f002";
pub const UPSTREAM_REDIS_PLAN_NAME: &str = "shared";

/// The `service_broker_guid` of every offering [`FakeCloudController::add_v2_service`] adds.
pub const UPSTREAM_BROKER_GUID: &str = "a1b2c3d4-0000-4000-8000-0000000b0000";

/// The `q` fields the fake filters offerings by (`/v2/services`,
/// `/v2/spaces/:guid/services`), as CC's `ServicesController`; another is 400 10005.
pub const V2_SERVICE_FILTERS: [&str; 5] = [
    "active",
    "label",
    "provider",
    "service_broker_guid",
    "unique_id",
];

/// The `q` fields the fake filters plans by (`/v2/service_plans`,
/// `/v2/services/:guid/service_plans`); another is 400 10005.
pub const V2_PLAN_FILTERS: [&str; 3] = ["active", "service_guid", "unique_id"];

/// The v2 catalog's `results-per-page` default and maximum (CC's `renderer:`).
pub const V2_DEFAULT_PER_PAGE: usize = 50;
pub const V2_MAX_PER_PAGE: usize = 100;

/// An offering of the upstream's own v2 catalog: the entity fields of CC v2's
/// `/v2/services` resource (2015 on). Change one with
/// [`FakeCloudController::update_v2_service`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Service {
    pub guid: String,
    pub label: String,
    pub provider: Option<String>,
    pub url: Option<String>,
    pub description: String,
    pub long_description: Option<String>,
    pub version: Option<String>,
    pub info_url: Option<String>,
    pub active: bool,
    pub bindable: bool,
    pub unique_id: String,
    /// JSON text, rendered as a JSON *string* (CC stores the broker's `metadata` as text).
    pub extra: Option<String>,
    pub tags: Vec<String>,
    pub requires: Vec<String>,
    pub documentation_url: Option<String>,
    pub service_broker_guid: Option<String>,
    pub plan_updateable: bool,
}

/// A plan of the upstream's own v2 catalog: the entity fields of CC v2's
/// `/v2/service_plans` resource. Change one with
/// [`FakeCloudController::update_v2_plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Plan {
    pub guid: String,
    pub service_guid: String,
    pub name: String,
    pub free: bool,
    pub description: String,
    /// JSON text, rendered as a JSON *string*.
    pub extra: Option<String>,
    pub unique_id: String,
    pub public: bool,
    pub active: bool,
    pub bindable: bool,
}

/// A role as the v3 API names it (`type` of a role resource). Space roles are
/// granted in a space, organization roles in an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    SpaceDeveloper,
    SpaceAuditor,
    SpaceManager,
    SpaceSupporter,
    OrgUser,
    OrgAuditor,
    OrgBillingManager,
    /// The one organization role that also sees every space of its organization.
    OrgManager,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::SpaceDeveloper,
        Role::SpaceAuditor,
        Role::SpaceManager,
        Role::SpaceSupporter,
        Role::OrgUser,
        Role::OrgAuditor,
        Role::OrgBillingManager,
        Role::OrgManager,
    ];

    /// The v3 `type`: `space_developer`, `organization_manager`...
    pub fn as_str(self) -> &'static str {
        match self {
            Role::SpaceDeveloper => "space_developer",
            Role::SpaceAuditor => "space_auditor",
            Role::SpaceManager => "space_manager",
            Role::SpaceSupporter => "space_supporter",
            Role::OrgUser => "organization_user",
            Role::OrgAuditor => "organization_auditor",
            Role::OrgBillingManager => "organization_billing_manager",
            Role::OrgManager => "organization_manager",
        }
    }

    /// The role whose v3 `type` is `name`.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Granted in an organization rather than in a space.
    pub fn is_org_role(self) -> bool {
        matches!(
            self,
            Role::OrgUser | Role::OrgAuditor | Role::OrgBillingManager | Role::OrgManager
        )
    }
}

/// How the `/v3/` paths answer (set with [`FakeCloudController::set_mode`]),
/// or the v2 catalog's (with [`FakeCloudController::set_v2_mode`]); everything
/// else always answers normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The answers of the world as it is.
    Normal,
    /// Read the request, close the connection without answering (FIN).
    Down,
    /// Read the request, abort the connection without answering (RST).
    Reset,
    /// Read the request, never answer; held until the fake drops.
    Hang,
    /// Sleep this long, then answer as in `Normal` (from the world as it is then).
    Slow(Duration),
    /// This status with a `CF-ServerError` (10001) body, whatever was asked: v3's
    /// document on `/v3/`, v2's [`v2_error_body`] on the v2 catalog.
    Status(u16),
}

/// The kinds of v3 request the fake counts (`GET` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Question {
    /// `GET /v3/spaces/:guid`
    Space,
    /// `GET /v3/spaces`
    SpacesList,
    /// `GET /v3/roles`
    Roles,
    /// `GET /v3/feature_flags/:name`
    FeatureFlag,
    /// `GET /v3/organizations/:guid`
    Organization,
    /// `GET /v3/organizations`
    OrganizationsList,
}

impl Question {
    pub const ALL: [Question; 6] = [
        Question::Space,
        Question::SpacesList,
        Question::Roles,
        Question::FeatureFlag,
        Question::Organization,
        Question::OrganizationsList,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

struct Org {
    guid: String,
    name: String,
    suspended: bool,
}

struct Space {
    guid: String,
    name: String,
    org: String,
}

struct Grant {
    guid: String,
    role: Role,
    user: String,
    /// A space guid for a space role, an organization guid for an org role.
    target: String,
}

struct Flag {
    name: String,
    enabled: bool,
    message: Option<String>,
}

/// What was asked of one [`Question`] since the last reset.
#[derive(Default, Clone)]
struct Asked {
    count: usize,
    last_authorization: Option<String>,
}

/// The world and the knobs. Vectors, not maps: lists come out in the order
/// things were added, as the real CC orders by `created_at`.
struct State {
    base_url: String,
    orgs: Vec<Org>,
    spaces: Vec<Space>,
    grants: Vec<Grant>,
    flags: Vec<Flag>,
    mode: Mode,
    asked: [Asked; Question::ALL.len()],
    v2_services: Vec<V2Service>,
    v2_plans: Vec<V2Plan>,
    v2_mode: Mode,
    /// The v2 catalog requests received since the last reset, in arrival order.
    v2_asked: Vec<RecordedRequest>,
}

/// A running fake Cloud Controller v3; stops when dropped.
pub struct FakeCloudController {
    server: TestServer,
    state: Arc<Mutex<State>>,
}

impl FakeCloudController {
    /// An empty world (no organizations, spaces or roles, an empty v2 catalog),
    /// the feature flag `service_instance_creation` enabled, both modes
    /// [`Mode::Normal`].
    pub async fn start() -> FakeCloudController {
        let state = Arc::new(Mutex::new(State {
            base_url: String::new(),
            orgs: Vec::new(),
            spaces: Vec::new(),
            grants: Vec::new(),
            flags: vec![Flag {
                name: "service_instance_creation".to_string(),
                enabled: true,
                message: None,
            }],
            mode: Mode::Normal,
            asked: Default::default(),
            v2_services: Vec::new(),
            v2_plans: Vec::new(),
            v2_mode: Mode::Normal,
            v2_asked: Vec::new(),
        }));
        let handler_state = state.clone();
        let handler: Handler = Arc::new(move |req: RecordedRequest| {
            let state = handler_state.clone();
            Box::pin(async move { handle(&state, req).await })
        });
        let server = TestServer::start(handler).await;
        lock(&state).base_url = server.url();
        FakeCloudController { server, state }
    }

    /// [`Self::start`], then [`Self::seed_default`].
    pub async fn with_default_world() -> FakeCloudController {
        let cc = FakeCloudController::start().await;
        cc.seed_default();
        cc
    }

    /// The world the gateway's default config assumes: organization
    /// [`ORG_GUID`] ([`ORG_NAME`]) with space [`SPACE_GUID`] ([`SPACE_NAME`]),
    /// and there [`DEVELOPER`] a space developer, [`AUDITOR`] a space auditor,
    /// [`MANAGER`] a space manager; [`OUTSIDER`] holds no role anywhere.
    ///
    /// The default test token ([`super::token::valid_token`]) needs no grant: its
    /// user, [`super::token::DEFAULT_USER_ID`], has `cloud_controller.admin` and so
    /// sees everything.
    ///
    /// And the upstream's v2 catalog of [`Self::seed_v2_default`].
    pub fn seed_default(&self) {
        self.add_org(ORG_GUID, ORG_NAME);
        self.add_space(SPACE_GUID, SPACE_NAME, ORG_GUID);
        self.grant(DEVELOPER, Role::SpaceDeveloper, SPACE_GUID);
        self.grant(AUDITOR, Role::SpaceAuditor, SPACE_GUID);
        self.grant(MANAGER, Role::SpaceManager, SPACE_GUID);
        self.seed_v2_default();
    }

    /// The upstream's own v2 catalog: [`UPSTREAM_MYSQL_LABEL`] (guid
    /// [`UPSTREAM_MYSQL_GUID`], `extra` `{"displayName":"upstream-mysql"}` as a
    /// string) with plan [`UPSTREAM_MYSQL_PLAN_NAME`] ([`UPSTREAM_MYSQL_PLAN_GUID`],
    /// not free), then [`UPSTREAM_REDIS_LABEL`] ([`UPSTREAM_REDIS_GUID`], `extra`
    /// null, a `documentation_url`) with plan [`UPSTREAM_REDIS_PLAN_NAME`]
    /// ([`UPSTREAM_REDIS_PLAN_GUID`], free, an `extra`). Everything else as
    /// [`Self::add_v2_service`] and [`Self::add_v2_plan`] default it.
    pub fn seed_v2_default(&self) {
        self.add_v2_service(UPSTREAM_MYSQL_GUID, UPSTREAM_MYSQL_LABEL);
        self.add_v2_plan(
            UPSTREAM_MYSQL_PLAN_GUID,
            UPSTREAM_MYSQL_GUID,
            UPSTREAM_MYSQL_PLAN_NAME,
        );
        self.update_v2_plan(UPSTREAM_MYSQL_PLAN_GUID, |p| p.free = false);
        self.add_v2_service(UPSTREAM_REDIS_GUID, UPSTREAM_REDIS_LABEL);
        self.update_v2_service(UPSTREAM_REDIS_GUID, |s| {
            s.extra = None;
            s.documentation_url = Some("https://redis.example.com/docs".to_string());
        });
        self.add_v2_plan(
            UPSTREAM_REDIS_PLAN_GUID,
            UPSTREAM_REDIS_GUID,
            UPSTREAM_REDIS_PLAN_NAME,
        );
        self.update_v2_plan(UPSTREAM_REDIS_PLAN_GUID, |p| {
            p.extra = Some(r#"{"costs":[],"bullets":["shared"]}"#.to_string());
        });
    }

    /// `http://127.0.0.1:PORT`: the gateway's Cloud Controller (and upstream) URL.
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Every request received (v3 or not, answered or not), in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }

    pub fn clear_requests(&self) {
        self.server.clear_requests();
    }

    /// Add an organization, or rename the one with this guid.
    pub fn add_org(&self, guid: &str, name: &str) {
        let mut state = self.lock();
        match state.orgs.iter_mut().find(|o| o.guid == guid) {
            Some(org) => org.name = name.to_string(),
            None => state.orgs.push(Org {
                guid: guid.to_string(),
                name: name.to_string(),
                suspended: false,
            }),
        }
    }

    /// What `suspended` says from now on; panics on an unknown organization.
    pub fn suspend_org(&self, guid: &str, suspended: bool) {
        let mut state = self.lock();
        let org = state
            .orgs
            .iter_mut()
            .find(|o| o.guid == guid)
            .unwrap_or_else(|| panic!("suspend_org: no organization {guid}"));
        org.suspended = suspended;
    }

    /// Add a space to an existing organization (panics otherwise), or rename
    /// and move the one with this guid.
    pub fn add_space(&self, guid: &str, name: &str, org_guid: &str) {
        let mut state = self.lock();
        assert!(
            state.org(org_guid).is_some(),
            "add_space {guid}: no organization {org_guid}; add_org first"
        );
        match state.spaces.iter_mut().find(|s| s.guid == guid) {
            Some(space) => {
                space.name = name.to_string();
                space.org = org_guid.to_string();
            }
            None => state.spaces.push(Space {
                guid: guid.to_string(),
                name: name.to_string(),
                org: org_guid.to_string(),
            }),
        }
    }

    /// Delete a space and the roles in it; whether it existed.
    pub fn remove_space(&self, guid: &str) -> bool {
        let mut state = self.lock();
        let before = state.spaces.len();
        state.spaces.retain(|s| s.guid != guid);
        state
            .grants
            .retain(|g| g.role.is_org_role() || g.target != guid);
        state.spaces.len() != before
    }

    /// Give `user_id` `role` in `target_guid`: a space for a space role, an
    /// organization for an organization role (panics when there is no such
    /// one, so a typo fails loudly). Returns the role's guid, the same for
    /// the same grant (granting twice is one role).
    pub fn grant(&self, user_id: &str, role: Role, target_guid: &str) -> String {
        let mut state = self.lock();
        let exists = if role.is_org_role() {
            state.org(target_guid).is_some()
        } else {
            state.space(target_guid).is_some()
        };
        assert!(
            exists,
            "grant {} to {user_id}: no {} {target_guid}",
            role.as_str(),
            if role.is_org_role() {
                "organization"
            } else {
                "space"
            }
        );
        let guid = role_guid(user_id, role, target_guid);
        if !state.grants.iter().any(|g| g.guid == guid) {
            state.grants.push(Grant {
                guid: guid.clone(),
                role,
                user: user_id.to_string(),
                target: target_guid.to_string(),
            });
        }
        guid
    }

    /// Take back what [`Self::grant`] gave; whether there was such a role.
    pub fn revoke(&self, user_id: &str, role: Role, target_guid: &str) -> bool {
        let guid = role_guid(user_id, role, target_guid);
        let mut state = self.lock();
        let before = state.grants.len();
        state.grants.retain(|g| g.guid != guid);
        state.grants.len() != before
    }

    /// Set (or create) feature flag `name`; `custom_message` is its
    /// `custom_error_message`.
    pub fn set_feature_flag(&self, name: &str, enabled: bool, custom_message: Option<&str>) {
        let mut state = self.lock();
        let message = custom_message.map(str::to_string);
        match state.flags.iter_mut().find(|f| f.name == name) {
            Some(flag) => {
                flag.enabled = enabled;
                flag.message = message;
            }
            None => state.flags.push(Flag {
                name: name.to_string(),
                enabled,
                message,
            }),
        }
    }

    /// How the `/v3/` paths answer from now on.
    pub fn set_mode(&self, mode: Mode) {
        self.lock().mode = mode;
    }

    /// `GET` requests of this kind received since the start or the last
    /// [`Self::reset_calls`], in every mode (closed, slow or failed ones too).
    pub fn calls(&self, question: Question) -> usize {
        self.lock().asked[question.index()].count
    }

    /// The `Authorization` header of the last such request (`None`: none came,
    /// or it had none); to assert the gateway sent the caller's own token.
    pub fn last_authorization(&self, question: Question) -> Option<String> {
        self.lock().asked[question.index()]
            .last_authorization
            .clone()
    }

    /// Forget [`Self::calls`] and [`Self::last_authorization`] (not the
    /// recorded [`Self::requests`], nor [`Self::v2_calls`]).
    pub fn reset_calls(&self) {
        self.lock().asked = Default::default();
    }

    /// Add an offering to the upstream's v2 catalog (after the others), or
    /// relabel the one with this guid. Defaults: `provider`, `url`,
    /// `long_description`, `version`, `info_url`, `documentation_url` null;
    /// `description` "`<label>` from the upstream"; `active`, `bindable` true;
    /// `unique_id` "`<label>`-id"; `extra` `{"displayName":"<label>"}` (JSON
    /// text); `tags` `["upstream"]`; `requires` `[]`; `service_broker_guid`
    /// [`UPSTREAM_BROKER_GUID`]; `plan_updateable` false.
    pub fn add_v2_service(&self, guid: &str, label: &str) {
        let mut state = self.lock();
        if let Some(service) = state.v2_services.iter_mut().find(|s| s.guid == guid) {
            service.label = label.to_string();
            return;
        }
        state.v2_services.push(V2Service {
            guid: guid.to_string(),
            label: label.to_string(),
            provider: None,
            url: None,
            description: format!("{label} from the upstream"),
            long_description: None,
            version: None,
            info_url: None,
            active: true,
            bindable: true,
            unique_id: format!("{label}-id"),
            extra: Some(json!({"displayName": label}).to_string()),
            tags: vec!["upstream".to_string()],
            requires: Vec::new(),
            documentation_url: None,
            service_broker_guid: Some(UPSTREAM_BROKER_GUID.to_string()),
            plan_updateable: false,
        });
    }

    /// Add a plan of an offering already in the v2 catalog (panics otherwise),
    /// after the others, or rename the one with this guid. Defaults: `free`,
    /// `public`, `active`, `bindable` true; `description` "`<name>` plan of
    /// `<label>`"; `extra` null; `unique_id` "`<label>`-`<name>`-id".
    pub fn add_v2_plan(&self, guid: &str, service_guid: &str, name: &str) {
        let mut state = self.lock();
        let label = match state.v2_service(service_guid) {
            Some(s) => s.label.clone(),
            None => {
                panic!("add_v2_plan {guid}: no v2 service {service_guid}; add_v2_service first")
            }
        };
        if let Some(plan) = state.v2_plans.iter_mut().find(|p| p.guid == guid) {
            plan.name = name.to_string();
            plan.service_guid = service_guid.to_string();
            return;
        }
        state.v2_plans.push(V2Plan {
            guid: guid.to_string(),
            service_guid: service_guid.to_string(),
            name: name.to_string(),
            free: true,
            description: format!("{name} plan of {label}"),
            extra: None,
            unique_id: format!("{label}-{name}-id"),
            public: true,
            active: true,
            bindable: true,
        });
    }

    /// Change an offering of the v2 catalog in place (panics when there is
    /// none with this guid; the guid itself is not to be changed).
    pub fn update_v2_service(&self, guid: &str, change: impl FnOnce(&mut V2Service)) {
        let mut state = self.lock();
        let service = state
            .v2_services
            .iter_mut()
            .find(|s| s.guid == guid)
            .unwrap_or_else(|| panic!("update_v2_service: no v2 service {guid}"));
        change(service);
    }

    /// Change a plan of the v2 catalog in place (panics when there is none).
    pub fn update_v2_plan(&self, guid: &str, change: impl FnOnce(&mut V2Plan)) {
        let mut state = self.lock();
        let plan = state
            .v2_plans
            .iter_mut()
            .find(|p| p.guid == guid)
            .unwrap_or_else(|| panic!("update_v2_plan: no v2 plan {guid}"));
        change(plan);
    }

    /// Delete an offering and its plans from the v2 catalog; whether it existed.
    pub fn remove_v2_service(&self, guid: &str) -> bool {
        let mut state = self.lock();
        let before = state.v2_services.len();
        state.v2_services.retain(|s| s.guid != guid);
        state.v2_plans.retain(|p| p.service_guid != guid);
        state.v2_services.len() != before
    }

    /// Delete a plan from the v2 catalog; whether it existed.
    pub fn remove_v2_plan(&self, guid: &str) -> bool {
        let mut state = self.lock();
        let before = state.v2_plans.len();
        state.v2_plans.retain(|p| p.guid != guid);
        state.v2_plans.len() != before
    }

    /// The v2 catalog's offerings, in list order.
    pub fn v2_services(&self) -> Vec<V2Service> {
        self.lock().v2_services.clone()
    }

    /// The v2 catalog's plans, in list order.
    pub fn v2_plans(&self) -> Vec<V2Plan> {
        self.lock().v2_plans.clone()
    }

    /// The resource (`{"metadata","entity"}`) the fake renders for this
    /// offering in every answer, to compare what the gateway passed on; panics
    /// when there is none.
    pub fn v2_service_resource(&self, guid: &str) -> Value {
        let state = self.lock();
        let service = state
            .v2_service(guid)
            .unwrap_or_else(|| panic!("v2_service_resource: no v2 service {guid}"));
        parse(&service_resource(service))
    }

    /// The resource the fake renders for this plan; panics when there is none.
    pub fn v2_plan_resource(&self, guid: &str) -> Value {
        let state = self.lock();
        let plan = state
            .v2_plans
            .iter()
            .find(|p| p.guid == guid)
            .unwrap_or_else(|| panic!("v2_plan_resource: no v2 plan {guid}"));
        parse(&plan_resource(plan))
    }

    /// How the v2 catalog's paths and the instance lists answer from now on
    /// (the `/v3/` ones keep theirs: see [`Self::set_mode`]).
    pub fn set_v2_mode(&self, mode: Mode) {
        self.lock().v2_mode = mode;
    }

    /// v2 list and catalog requests (the `GET`s the module doc lists, the
    /// instance lists included, in every mode)
    /// received since the start or the last [`Self::reset_v2_calls`] whose path,
    /// query included and exactly as sent, starts with `path_prefix`:
    /// `v2_calls("/v2/service_plans")` counts the list and each single plan,
    /// `v2_calls("/v2/services?")` only lists of offerings with a query,
    /// `v2_calls("")` all of them.
    pub fn v2_calls(&self, path_prefix: &str) -> usize {
        self.lock()
            .v2_asked
            .iter()
            .filter(|r| r.path.starts_with(path_prefix))
            .count()
    }

    /// The v2 catalog requests counted by [`Self::v2_calls`], in arrival order.
    pub fn v2_requests(&self) -> Vec<RecordedRequest> {
        self.lock().v2_asked.clone()
    }

    /// The `Authorization` header of the last v2 catalog request (`None`: none
    /// came, or it had none).
    pub fn last_v2_authorization(&self) -> Option<String> {
        self.lock()
            .v2_asked
            .last()
            .and_then(|r| r.header("authorization"))
    }

    /// The `X-VCAP-Request-ID` header of the last v2 catalog request.
    pub fn last_v2_request_id(&self) -> Option<String> {
        self.lock()
            .v2_asked
            .last()
            .and_then(|r| r.header("x-vcap-request-id"))
    }

    /// Forget [`Self::v2_calls`] (not the recorded [`Self::requests`]).
    pub fn reset_v2_calls(&self) {
        self.lock().v2_asked.clear();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().expect("cc v3 state lock")
}

/// Stable per (user, role, target): a revoke finds what the grant made, and a
/// test can predict it.
fn role_guid(user_id: &str, role: Role, target_guid: &str) -> String {
    let name = format!("{user_id}/{}/{target_guid}", role.as_str());
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

/// What a `/v3/` request asks for.
enum Route {
    Space(String),
    SpacesList,
    Roles,
    FeatureFlag(String),
    Organization(String),
    OrganizationsList,
    /// Anything else under `/v3/`: CC's 404 "Unknown request".
    Unknown,
}

impl Route {
    fn of(req: &RecordedRequest) -> Route {
        if req.method != "GET" {
            return Route::Unknown;
        }
        let segments = segments(req);
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match segments.as_slice() {
            ["v3", "spaces"] => Route::SpacesList,
            ["v3", "spaces", guid] => Route::Space(guid.to_string()),
            ["v3", "roles"] => Route::Roles,
            ["v3", "feature_flags", name] => Route::FeatureFlag(name.to_string()),
            ["v3", "organizations"] => Route::OrganizationsList,
            ["v3", "organizations", guid] => Route::Organization(guid.to_string()),
            _ => Route::Unknown,
        }
    }

    fn question(&self) -> Option<Question> {
        match self {
            Route::Space(_) => Some(Question::Space),
            Route::SpacesList => Some(Question::SpacesList),
            Route::Roles => Some(Question::Roles),
            Route::FeatureFlag(_) => Some(Question::FeatureFlag),
            Route::Organization(_) => Some(Question::Organization),
            Route::OrganizationsList => Some(Question::OrganizationsList),
            Route::Unknown => None,
        }
    }
}

/// The path's segments after the leading `/`, percent-decoded, without a
/// trailing slash.
fn segments(req: &RecordedRequest) -> Vec<String> {
    req.path_only()
        .trim_end_matches('/')
        .split('/')
        .skip(1)
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

async fn handle(state: &Mutex<State>, req: RecordedRequest) -> Reply {
    if let Some(route) = V2Route::of(&req) {
        return v2_handle(state, req, route).await;
    }
    let path = req.path_only();
    if path != "/v3" && !path.starts_with("/v3/") {
        return upstream_reply(&req);
    }
    let route = Route::of(&req);
    let mode = {
        let mut state = lock(state);
        if let Some(question) = route.question() {
            let asked = &mut state.asked[question.index()];
            asked.count += 1;
            asked.last_authorization = req.header("authorization");
        }
        state.mode
    };
    match mode {
        Mode::Normal => {}
        Mode::Down => return Reply::Close,
        Mode::Reset => return Reply::Reset,
        Mode::Hang => return Reply::Hang,
        Mode::Slow(delay) => tokio::time::sleep(delay).await,
        Mode::Status(status) => {
            return v3_error(status, "Server error", "CF-ServerError", 10001);
        }
    }
    if matches!(route, Route::Unknown) {
        return v3_error(404, "Unknown request", "CF-NotFound", 10000);
    }
    let Some(caller) = Caller::of(&req) else {
        return v3_error(401, "Authentication error", "CF-NotAuthenticated", 10002);
    };
    let params = query_params(&req);
    let state = lock(state);
    match route {
        Route::Space(guid) => match state.space(&guid).filter(|s| state.sees_space(&caller, s)) {
            Some(space) => v3_json(200, &state.space_json(space)),
            None => not_found("Space"),
        },
        Route::SpacesList => spaces_list(&state, &caller, &params),
        Route::Roles => roles_list(&state, &caller, &params),
        Route::FeatureFlag(name) => match state.flags.iter().find(|f| f.name == name) {
            Some(flag) => v3_json(200, &state.flag_json(flag)),
            None => not_found("Feature flag"),
        },
        Route::Organization(guid) => {
            match state
                .org(&guid)
                .filter(|o| state.sees_org(&caller, &o.guid))
            {
                Some(org) => v3_json(200, &state.org_json(org)),
                None => not_found("Organization"),
            }
        }
        Route::OrganizationsList => orgs_list(&state, &caller, &params),
        Route::Unknown => v3_error(404, "Unknown request", "CF-NotFound", 10000),
    }
}

/// [`MockUpstream`](super::upstream::MockUpstream)'s default answers.
fn upstream_reply(req: &RecordedRequest) -> Reply {
    if req.path_only() == "/v2/info" {
        return Reply::json(200, &info_body());
    }
    Reply::json(
        200,
        &json!({"from": "upstream", "method": req.method, "path": req.path}),
    )
}

/// Who is asking, from the bearer token's payload (not verified).
struct Caller {
    id: String,
    /// Holds one of [`GLOBAL_SCOPES`].
    global: bool,
}

impl Caller {
    fn of(req: &RecordedRequest) -> Option<Caller> {
        let header = req.header("authorization")?;
        let (scheme, token) = header.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let payload = token.trim().split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?;
        let claims: Value = serde_json::from_slice(&bytes).ok()?;
        let id = claims["user_id"]
            .as_str()
            .or_else(|| claims["client_id"].as_str())?
            .to_string();
        let global = claims["scope"].as_array().is_some_and(|scopes| {
            scopes
                .iter()
                .any(|s| s.as_str().is_some_and(|s| GLOBAL_SCOPES.contains(&s)))
        });
        Some(Caller { id, global })
    }
}

impl State {
    fn org(&self, guid: &str) -> Option<&Org> {
        self.orgs.iter().find(|o| o.guid == guid)
    }

    fn space(&self, guid: &str) -> Option<&Space> {
        self.spaces.iter().find(|s| s.guid == guid)
    }

    fn holds(&self, caller: &Caller, target: &str, role: impl Fn(Role) -> bool) -> bool {
        self.grants
            .iter()
            .any(|g| g.user == caller.id && g.target == target && role(g.role))
    }

    /// A role in the space, organization manager of its organization, or global.
    fn sees_space(&self, caller: &Caller, space: &Space) -> bool {
        caller.global
            || self.holds(caller, &space.guid, |r| !r.is_org_role())
            || self.holds(caller, &space.org, |r| r == Role::OrgManager)
    }

    /// Any role in the organization, a space it sees in it, or global.
    fn sees_org(&self, caller: &Caller, org_guid: &str) -> bool {
        caller.global
            || self.holds(caller, org_guid, Role::is_org_role)
            || self
                .spaces
                .iter()
                .any(|s| s.org == org_guid && self.sees_space(caller, s))
    }

    /// As the real CC: only roles in the spaces and organizations one sees.
    fn sees_grant(&self, caller: &Caller, grant: &Grant) -> bool {
        if caller.global {
            return true;
        }
        if grant.role.is_org_role() {
            self.sees_org(caller, &grant.target)
        } else {
            self.space(&grant.target)
                .is_some_and(|s| self.sees_space(caller, s))
        }
    }

    fn href(&self, path: &str) -> Value {
        json!({"href": format!("{}{path}", self.base_url)})
    }

    fn space_json(&self, space: &Space) -> Value {
        json!({
            "guid": space.guid,
            "name": space.name,
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "relationships": {"organization": {"data": {"guid": space.org}}},
            "metadata": {"labels": {}, "annotations": {}},
            "links": {
                "self": self.href(&format!("/v3/spaces/{}", space.guid)),
                "organization": self.href(&format!("/v3/organizations/{}", space.org)),
            },
        })
    }

    fn org_json(&self, org: &Org) -> Value {
        let me = format!("/v3/organizations/{}", org.guid);
        json!({
            "guid": org.guid,
            "name": org.name,
            "suspended": org.suspended,
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "relationships": {"quota": {"data": {"guid": QUOTA_GUID}}},
            "metadata": {"labels": {}, "annotations": {}},
            "links": {
                "self": self.href(&me),
                "domains": self.href(&format!("{me}/domains")),
                "default_domain": self.href(&format!("{me}/domains/default")),
                "quota": self.href(&format!("/v3/organization_quotas/{QUOTA_GUID}")),
            },
        })
    }

    fn grant_json(&self, grant: &Grant) -> Value {
        let (space, org, target_link) = if grant.role.is_org_role() {
            (
                Value::Null,
                json!({"guid": grant.target}),
                (
                    "organization",
                    format!("/v3/organizations/{}", grant.target),
                ),
            )
        } else {
            (
                json!({"guid": grant.target}),
                Value::Null,
                ("space", format!("/v3/spaces/{}", grant.target)),
            )
        };
        let mut links = json!({
            "self": self.href(&format!("/v3/roles/{}", grant.guid)),
            "user": self.href(&format!("/v3/users/{}", grant.user)),
        });
        links[target_link.0] = self.href(&target_link.1);
        json!({
            "guid": grant.guid,
            "type": grant.role.as_str(),
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "relationships": {
                "user": {"data": {"guid": grant.user}},
                "space": {"data": space},
                "organization": {"data": org},
            },
            "links": links,
        })
    }

    fn flag_json(&self, flag: &Flag) -> Value {
        json!({
            "name": flag.name,
            "enabled": flag.enabled,
            "updated_at": null,
            "custom_error_message": flag.message,
            "links": {"self": self.href(&format!("/v3/feature_flags/{}", flag.name))},
        })
    }
}

/// The query's parameters, decoded, in order.
fn query_params(req: &RecordedRequest) -> Vec<(String, String)> {
    let query = req.path.split_once('?').map(|(_, q)| q).unwrap_or("");
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// The comma-separated list given as filter `name`, if it was given.
fn filter<'a>(params: &'a [(String, String)], name: &str) -> Option<Vec<&'a str>> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.split(',').filter(|s| !s.is_empty()).collect())
}

/// Whether `value` passes filter `name` (an absent filter passes everything).
fn passes(params: &[(String, String)], name: &str, value: Option<&str>) -> bool {
    match filter(params, name) {
        None => true,
        Some(allowed) => value.is_some_and(|v| allowed.contains(&v)),
    }
}

/// `GET /v3/spaces`, filters `guids`, `names`, `organization_guids`.
fn spaces_list(state: &State, caller: &Caller, params: &[(String, String)]) -> Reply {
    let spaces: Vec<Value> = state
        .spaces
        .iter()
        .filter(|s| state.sees_space(caller, s))
        .filter(|s| passes(params, "guids", Some(&s.guid)))
        .filter(|s| passes(params, "names", Some(&s.name)))
        .filter(|s| passes(params, "organization_guids", Some(&s.org)))
        .map(|s| state.space_json(s))
        .collect();
    paged(
        state,
        "/v3/spaces",
        params,
        &["guids", "names", "organization_guids"],
        spaces,
    )
}

/// `GET /v3/organizations`, filters `guids`, `names`: the organizations the
/// caller sees (a role in it or in one of its spaces, or a global scope).
fn orgs_list(state: &State, caller: &Caller, params: &[(String, String)]) -> Reply {
    let orgs: Vec<Value> = state
        .orgs
        .iter()
        .filter(|o| state.sees_org(caller, &o.guid))
        .filter(|o| passes(params, "guids", Some(&o.guid)))
        .filter(|o| passes(params, "names", Some(&o.name)))
        .map(|o| state.org_json(o))
        .collect();
    paged(
        state,
        "/v3/organizations",
        params,
        &["guids", "names"],
        orgs,
    )
}

/// `GET /v3/roles`, filters `guids`, `types`, `user_guids`, `space_guids`,
/// `organization_guids`.
fn roles_list(state: &State, caller: &Caller, params: &[(String, String)]) -> Reply {
    let roles: Vec<Value> = state
        .grants
        .iter()
        .filter(|g| state.sees_grant(caller, g))
        .filter(|g| passes(params, "guids", Some(&g.guid)))
        .filter(|g| passes(params, "types", Some(g.role.as_str())))
        .filter(|g| passes(params, "user_guids", Some(&g.user)))
        .filter(|g| {
            let space = (!g.role.is_org_role()).then_some(g.target.as_str());
            passes(params, "space_guids", space)
        })
        .filter(|g| {
            let org = g.role.is_org_role().then_some(g.target.as_str());
            passes(params, "organization_guids", org)
        })
        .map(|g| state.grant_json(g))
        .collect();
    paged(
        state,
        "/v3/roles",
        params,
        &[
            "guids",
            "organization_guids",
            "space_guids",
            "types",
            "user_guids",
        ],
        roles,
    )
}

/// One page of `items` with v3 pagination, as CC's `PaginationPresenter`:
/// at least one page; `next` while below the last, `previous` above the
/// first; links carry `page`, `per_page` and the given filters, sorted by
/// name (Rails' `to_query`).
fn paged(
    state: &State,
    path: &str,
    params: &[(String, String)],
    filter_names: &[&str],
    items: Vec<Value>,
) -> Reply {
    let (page, per_page) = match paging(params) {
        Ok(paging) => paging,
        Err(reply) => return reply,
    };
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let link = |page: usize| -> Value {
        let mut pairs: Vec<(&str, String)> = filter_names
            .iter()
            .filter_map(|name| {
                params
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(k, v)| (k.as_str(), v.clone()))
            })
            .collect();
        pairs.push(("page", page.to_string()));
        pairs.push(("per_page", per_page.to_string()));
        pairs.sort();
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        state.href(&format!("{path}?{query}"))
    };
    let resources: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    v3_json(
        200,
        &json!({
            "pagination": {
                "total_results": total,
                "total_pages": last,
                "first": link(1),
                "last": link(last),
                "next": if page < last { link(page + 1) } else { Value::Null },
                "previous": if page > 1 { link(page - 1) } else { Value::Null },
            },
            "resources": resources,
        }),
    )
}

/// `page` (default 1, at least 1) and `per_page` (default 50, 1..=5000), or
/// CC's 400 `CF-BadQueryParameter`.
fn paging(params: &[(String, String)]) -> Result<(usize, usize), Reply> {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let bad = |detail: &str| {
        v3_error(
            400,
            &format!("The query parameter is invalid: {detail}"),
            "CF-BadQueryParameter",
            10005,
        )
    };
    let page = match get("page") {
        None => 1,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => return Err(bad("Page must be greater than 0")),
        },
    };
    let per_page = match get("per_page") {
        None => 50,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=5000).contains(&n) => n,
            _ => return Err(bad("Per page must be between 1 and 5000")),
        },
    };
    Ok((page, per_page))
}

fn v3_json(status: u16, body: &Value) -> Reply {
    Reply::raw(status, body.to_string(), V3_JSON)
}

/// The v3 error document: `{"errors":[{"detail","title","code"}]}`.
pub fn v3_error_body(detail: &str, title: &str, code: u64) -> Value {
    json!({"errors": [{"detail": detail, "title": title, "code": code}]})
}

fn v3_error(status: u16, detail: &str, title: &str, code: u64) -> Reply {
    v3_json(status, &v3_error_body(detail, title, code))
}

/// 404 `CF-ResourceNotFound`: also what an invisible resource gets, so a
/// caller cannot tell it exists.
fn not_found(what: &str) -> Reply {
    v3_error(
        404,
        &format!("{what} not found"),
        "CF-ResourceNotFound",
        10010,
    )
}

// ---------------------------------------------------------------------------
// The upstream's own v2 catalog.

/// A v2 catalog request (`GET` only; anything else is no catalog request).
enum V2Route {
    /// `/v2/services`
    Services,
    /// `/v2/services/:guid`
    Service(String),
    /// `/v2/services/:guid/service_plans`
    PlansOf(String),
    /// `/v2/service_plans`
    Plans,
    /// `/v2/service_plans/:guid`
    Plan(String),
    /// `/v2/spaces/:guid/services`
    SpaceServices(String),
    /// `/v2/service_instances`: the upstream's own instances, none.
    Instances,
    /// `/v2/spaces/:guid/service_instances`: none.
    SpaceInstances(String),
    /// `/v2/service_bindings`, `/v2/service_keys`, `/v2/apps/:guid/service_bindings`: the
    /// upstream's own handles, none.
    Handles(String),
}

impl V2Route {
    fn of(req: &RecordedRequest) -> Option<V2Route> {
        if req.method != "GET" {
            return None;
        }
        let segments = segments(req);
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        Some(match segments.as_slice() {
            ["v2", "services"] => V2Route::Services,
            ["v2", "services", guid] => V2Route::Service(guid.to_string()),
            ["v2", "services", guid, "service_plans"] => V2Route::PlansOf(guid.to_string()),
            ["v2", "service_plans"] => V2Route::Plans,
            ["v2", "service_plans", guid] => V2Route::Plan(guid.to_string()),
            ["v2", "spaces", guid, "services"] => V2Route::SpaceServices(guid.to_string()),
            ["v2", "service_instances"] => V2Route::Instances,
            ["v2", "spaces", guid, "service_instances"] => {
                V2Route::SpaceInstances(guid.to_string())
            }
            ["v2", "service_bindings"] => V2Route::Handles("/v2/service_bindings".into()),
            ["v2", "service_keys"] => V2Route::Handles("/v2/service_keys".into()),
            ["v2", "apps", guid, "service_bindings"] => {
                V2Route::Handles(format!("/v2/apps/{guid}/service_bindings"))
            }
            _ => return None,
        })
    }
}

async fn v2_handle(state: &Mutex<State>, req: RecordedRequest, route: V2Route) -> Reply {
    let mode = {
        let mut state = lock(state);
        state.v2_asked.push(req.clone());
        state.v2_mode
    };
    match mode {
        Mode::Normal => {}
        Mode::Down => return Reply::Close,
        Mode::Reset => return Reply::Reset,
        Mode::Hang => return Reply::Hang,
        Mode::Slow(delay) => tokio::time::sleep(delay).await,
        Mode::Status(status) => return v2_error(status, 10001, "Server error", "CF-ServerError"),
    }
    if Caller::of(&req).is_none() {
        return v2_error(401, 10002, "Authentication error", "CF-NotAuthenticated");
    }
    let params = query_params(&req);
    let state = lock(state);
    match route {
        V2Route::Services => {
            let all: Vec<&V2Service> = state.v2_services.iter().collect();
            services_page(&params, "/v2/services", all)
        }
        V2Route::Service(guid) => match state.v2_service(&guid) {
            Some(service) => v2_json(200, service_resource(service)),
            None => service_not_found(&guid),
        },
        V2Route::PlansOf(guid) => {
            if state.v2_service(&guid).is_none() {
                return service_not_found(&guid);
            }
            let plans: Vec<&V2Plan> = state
                .v2_plans
                .iter()
                .filter(|p| p.service_guid == guid)
                .collect();
            plans_page(
                &params,
                &format!("/v2/services/{guid}/service_plans"),
                plans,
            )
        }
        V2Route::Plans => {
            let all: Vec<&V2Plan> = state.v2_plans.iter().collect();
            plans_page(&params, "/v2/service_plans", all)
        }
        V2Route::Plan(guid) => match state.v2_plans.iter().find(|p| p.guid == guid) {
            Some(plan) => v2_json(200, plan_resource(plan)),
            None => v2_error(
                404,
                110003,
                &format!("The service plan could not be found: {guid}"),
                "CF-ServicePlanNotFound",
            ),
        },
        V2Route::SpaceServices(guid) => {
            if state.space(&guid).is_none() {
                return space_not_found(&guid);
            }
            // Every offering is taken to have a plan visible in every space.
            let all: Vec<&V2Service> = state.v2_services.iter().collect();
            services_page(&params, &format!("/v2/spaces/{guid}/services"), all)
        }
        V2Route::Instances => no_instances(&params, "/v2/service_instances"),
        V2Route::SpaceInstances(guid) => {
            if state.space(&guid).is_none() {
                return space_not_found(&guid);
            }
            no_instances(&params, &format!("/v2/spaces/{guid}/service_instances"))
        }
        V2Route::Handles(path) => match V2Query::parse(&params, &V2_HANDLE_FILTERS) {
            Ok(query) => v2_json(200, query.render(&path, Vec::new())),
            Err(reply) => reply,
        },
    }
}

/// The `q` fields of CC's binding and key lists.
const V2_HANDLE_FILTERS: [&str; 3] = ["service_instance_guid", "app_guid", "name"];

/// The `q` fields of CC's service instance lists.
const V2_INSTANCE_FILTERS: [&str; 7] = [
    "name",
    "space_guid",
    "service_plan_guid",
    "service_binding_guid",
    "gateway_name",
    "organization_guid",
    "service_key_guid",
];

/// The upstream's own service instances: an empty v2 list, paged and checked
/// like the others.
fn no_instances(params: &[(String, String)], path: &str) -> Reply {
    match V2Query::parse(params, &V2_INSTANCE_FILTERS) {
        Ok(query) => v2_json(200, query.render(path, Vec::new())),
        Err(reply) => reply,
    }
}

fn space_not_found(guid: &str) -> Reply {
    v2_error(
        404,
        40004,
        &format!("The app space could not be found: {guid}"),
        "CF-SpaceNotFound",
    )
}

impl State {
    fn v2_service(&self, guid: &str) -> Option<&V2Service> {
        self.v2_services.iter().find(|s| s.guid == guid)
    }
}

fn service_not_found(guid: &str) -> Reply {
    v2_error(
        404,
        120003,
        &format!("The service could not be found: {guid}"),
        "CF-ServiceNotFound",
    )
}

/// A field's value as `q` compares it.
enum Field<'a> {
    Text(Option<&'a str>),
    Bool(bool),
}

impl Field<'_> {
    /// CC's equality: a null column matches nothing; a boolean column reads
    /// `t` and `true` as true, anything else as false.
    fn matches(&self, values: &[String]) -> bool {
        match self {
            Field::Text(None) => false,
            Field::Text(Some(v)) => values.iter().any(|x| x == v),
            Field::Bool(b) => values.iter().any(|x| (x == "t" || x == "true") == *b),
        }
    }
}

fn service_field<'a>(s: &'a V2Service, name: &str) -> Field<'a> {
    match name {
        "active" => Field::Bool(s.active),
        "label" => Field::Text(Some(&s.label)),
        "provider" => Field::Text(s.provider.as_deref()),
        "service_broker_guid" => Field::Text(s.service_broker_guid.as_deref()),
        "unique_id" => Field::Text(Some(&s.unique_id)),
        _ => Field::Text(None),
    }
}

fn plan_field<'a>(p: &'a V2Plan, name: &str) -> Field<'a> {
    match name {
        "active" => Field::Bool(p.active),
        "service_guid" => Field::Text(Some(&p.service_guid)),
        "unique_id" => Field::Text(Some(&p.unique_id)),
        _ => Field::Text(None),
    }
}

fn services_page(params: &[(String, String)], path: &str, items: Vec<&V2Service>) -> Reply {
    let query = match V2Query::parse(params, &V2_SERVICE_FILTERS) {
        Ok(query) => query,
        Err(reply) => return reply,
    };
    let items: Vec<String> = items
        .into_iter()
        .filter(|s| query.passes(|name| service_field(s, name)))
        .map(service_resource)
        .collect();
    v2_json(200, query.render(path, items))
}

fn plans_page(params: &[(String, String)], path: &str, items: Vec<&V2Plan>) -> Reply {
    let query = match V2Query::parse(params, &V2_PLAN_FILTERS) {
        Ok(query) => query,
        Err(reply) => return reply,
    };
    let items: Vec<String> = items
        .into_iter()
        .filter(|p| query.passes(|name| plan_field(p, name)))
        .map(plan_resource)
        .collect();
    v2_json(200, query.render(path, items))
}

/// A v2 list query: `page`, `results-per-page`, `order-direction` and every
/// `q` (repeatable; `;` separates filters within one too), ANDed.
struct V2Query {
    page: usize,
    per_page: usize,
    desc: bool,
    /// The `q` filters as given, for the links.
    q: Vec<String>,
    /// (field, values): `field:value` or `field IN a,b`.
    filters: Vec<(String, Vec<String>)>,
}

impl V2Query {
    /// The query, or CC's 400 `CF-BadQueryParameter` (10005) for an integer
    /// that is none, a page size above [`V2_MAX_PER_PAGE`] or below 1, a page
    /// below 1, a direction other than `asc`/`desc`, or a `q` on a field not in
    /// `fields` (or with no `:` nor ` IN `).
    fn parse(params: &[(String, String)], fields: &[&str]) -> Result<V2Query, Reply> {
        let bad = |detail: &str| {
            v2_error(
                400,
                10005,
                &format!("The query parameter is invalid: {detail}"),
                "CF-BadQueryParameter",
            )
        };
        // Rack: the last occurrence of a key wins.
        let get = |name: &str| params.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
        let integer = |name: &str, label: &str| -> Result<Option<i64>, Reply> {
            match get(name) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse::<i64>()
                    .map(Some)
                    .map_err(|_| bad(&format!("{label} must be an integer"))),
            }
        };
        let page = integer("page", "page")?.unwrap_or(1);
        let per_page =
            integer("results-per-page", "results_per_page")?.unwrap_or(V2_DEFAULT_PER_PAGE as i64);

        let mut q = Vec::new();
        let mut filters = Vec::new();
        for (_, value) in params.iter().filter(|(k, _)| k == "q") {
            for segment in value.split(';').filter(|s| !s.is_empty()) {
                let colon = segment.find(':');
                let within = segment.find(" IN ");
                let (field, values) = match (colon, within) {
                    (Some(c), Some(i)) if i < c => (&segment[..i], split_in(&segment[i + 4..])),
                    (None, Some(i)) => (&segment[..i], split_in(&segment[i + 4..])),
                    (Some(c), _) => (&segment[..c], vec![segment[c + 1..].to_string()]),
                    (None, None) => return Err(bad(segment)),
                };
                if !fields.contains(&field) {
                    return Err(bad(field));
                }
                filters.push((field.to_string(), values));
                q.push(segment.to_string());
            }
        }

        if per_page > V2_MAX_PER_PAGE as i64 {
            return Err(bad(&format!(
                "results_per_page must be <= {V2_MAX_PER_PAGE}"
            )));
        }
        let desc = match get("order-direction").map(String::as_str) {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(bad(&format!(
                    "order_direction must be 'asc' or 'desc' but was '{other}'"
                )))
            }
        };
        if per_page < 1 {
            return Err(bad("results_per_page must be >= 1"));
        }
        if page < 1 {
            return Err(bad("page must be >= 1"));
        }
        Ok(V2Query {
            page: usize::try_from(page).unwrap_or(usize::MAX),
            per_page: usize::try_from(per_page).unwrap_or(usize::MAX),
            desc,
            q,
            filters,
        })
    }

    fn passes<'a>(&self, field: impl Fn(&str) -> Field<'a>) -> bool {
        self.filters
            .iter()
            .all(|(name, values)| field(name).matches(values))
    }

    /// The page of `items` (already filtered, in ascending order) as CC v2's
    /// paginated collection, keys in CC's order.
    fn render(&self, path: &str, mut items: Vec<String>) -> String {
        if self.desc {
            items.reverse();
        }
        let total = items.len();
        let pages = total.div_ceil(self.per_page).max(1);
        let prev = (self.page > 1).then(|| self.link(path, self.page - 1));
        let next = (self.page < pages).then(|| self.link(path, self.page + 1));
        let resources: Vec<String> = items
            .into_iter()
            .skip((self.page - 1).saturating_mul(self.per_page))
            .take(self.per_page)
            .collect();
        obj(&[
            ("total_results", total.to_string()),
            ("total_pages", pages.to_string()),
            ("prev_url", js(prev)),
            ("next_url", js(next)),
            ("resources", format!("[{}]", resources.join(","))),
        ])
    }

    /// CC's page link: relative, keys sorted (`order-direction`, `page`, every
    /// `q`, `results-per-page`), Addressable's encoding (`:` and `,` kept).
    fn link(&self, path: &str, page: usize) -> String {
        let mut pairs: Vec<(&str, String)> = vec![
            (
                "order-direction",
                if self.desc { "desc" } else { "asc" }.to_string(),
            ),
            ("page", page.to_string()),
        ];
        pairs.extend(self.q.iter().map(|q| ("q", q.clone())));
        pairs.push(("results-per-page", self.per_page.to_string()));
        let query: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", link_encode(k), link_encode(v)))
            .collect();
        format!("{path}?{}", query.join("&"))
    }
}

/// An ` IN ` list: comma-separated, empty items dropped.
fn split_in(list: &str) -> Vec<String> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Percent-encodes all but what Addressable's `normalize` leaves in a query.
fn link_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$'()*,=:@/?".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A JSON object from (key, raw JSON text) in this order (serde_json's `Value`
/// would sort the keys).
fn obj(members: &[(&str, String)]) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", js(k)))
        .collect();
    format!("{{{}}}", members.join(","))
}

fn js(value: impl serde::Serialize) -> String {
    serde_json::to_string(&value).expect("serializable")
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("the fake renders JSON")
}

fn metadata(guid: &str, url: &str) -> String {
    obj(&[
        ("guid", js(guid)),
        ("url", js(url)),
        ("created_at", js(TIMESTAMP)),
        ("updated_at", js(TIMESTAMP)),
    ])
}

/// CC v2's service resource, keys in CC's order.
fn service_resource(s: &V2Service) -> String {
    let url = format!("/v2/services/{}", s.guid);
    let entity = obj(&[
        ("label", js(&s.label)),
        ("provider", js(&s.provider)),
        ("url", js(&s.url)),
        ("description", js(&s.description)),
        ("long_description", js(&s.long_description)),
        ("version", js(&s.version)),
        ("info_url", js(&s.info_url)),
        ("active", js(s.active)),
        ("bindable", js(s.bindable)),
        ("unique_id", js(&s.unique_id)),
        ("extra", js(&s.extra)),
        ("tags", js(&s.tags)),
        ("requires", js(&s.requires)),
        ("documentation_url", js(&s.documentation_url)),
        ("service_broker_guid", js(&s.service_broker_guid)),
        ("plan_updateable", js(s.plan_updateable)),
        ("service_plans_url", js(format!("{url}/service_plans"))),
    ]);
    obj(&[("metadata", metadata(&s.guid, &url)), ("entity", entity)])
}

/// CC v2's service plan resource, keys in CC's order.
fn plan_resource(p: &V2Plan) -> String {
    let url = format!("/v2/service_plans/{}", p.guid);
    let entity = obj(&[
        ("name", js(&p.name)),
        ("free", js(p.free)),
        ("description", js(&p.description)),
        ("service_guid", js(&p.service_guid)),
        ("extra", js(&p.extra)),
        ("unique_id", js(&p.unique_id)),
        ("public", js(p.public)),
        ("active", js(p.active)),
        ("bindable", js(p.bindable)),
        (
            "service_url",
            js(format!("/v2/services/{}", p.service_guid)),
        ),
        (
            "service_instances_url",
            js(format!("{url}/service_instances")),
        ),
    ]);
    obj(&[("metadata", metadata(&p.guid, &url)), ("entity", entity)])
}

/// CC v2's error document, `{"code","description","error_code"}` (in that
/// order, which is also `Value`'s).
pub fn v2_error_body(code: u64, description: &str, error_code: &str) -> Value {
    json!({"code": code, "description": description, "error_code": error_code})
}

fn v2_error(status: u16, code: u64, description: &str, error_code: &str) -> Reply {
    Reply::raw(
        status,
        v2_error_body(code, description, error_code).to_string(),
        CC_JSON,
    )
}

fn v2_json(status: u16, body: String) -> Reply {
    Reply::raw(status, body, CC_JSON)
}
