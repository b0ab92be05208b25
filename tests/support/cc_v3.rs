//! A fake Cloud Controller v3 on 127.0.0.1, for the gateway's authorization:
//! it answers the v3 questions the gateway asks with the caller's own bearer
//! token (a space, the spaces list, roles, a feature flag, an organization) in
//! the real CC's shapes, from a small world of organizations, spaces and role
//! grants that tests set up and change while it runs.
//!
//! The caller is whoever the token's payload names (`user_id`, else
//! `client_id`); the token is decoded, never verified, as the gateway has
//! already verified it. Everything outside `/v3/` is answered as
//! [`MockUpstream`](super::upstream::MockUpstream) does, so one fake can also
//! be the gateway's `[upstream]`; a [`Mode`] breaks the `/v3/` answers only.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

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

/// How the `/v3/` paths answer; everything else always answers normally.
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
    /// This status with a v3 `CF-ServerError` (10001) body, whatever was asked.
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
}

impl Question {
    pub const ALL: [Question; 5] = [
        Question::Space,
        Question::SpacesList,
        Question::Roles,
        Question::FeatureFlag,
        Question::Organization,
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
}

/// A running fake Cloud Controller v3; stops when dropped.
pub struct FakeCloudController {
    server: TestServer,
    state: Arc<Mutex<State>>,
}

impl FakeCloudController {
    /// An empty world (no organizations, spaces or roles), the feature flag
    /// `service_instance_creation` enabled, in [`Mode::Normal`].
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
    pub fn seed_default(&self) {
        self.add_org(ORG_GUID, ORG_NAME);
        self.add_space(SPACE_GUID, SPACE_NAME, ORG_GUID);
        self.grant(DEVELOPER, Role::SpaceDeveloper, SPACE_GUID);
        self.grant(AUDITOR, Role::SpaceAuditor, SPACE_GUID);
        self.grant(MANAGER, Role::SpaceManager, SPACE_GUID);
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
    /// recorded [`Self::requests`]).
    pub fn reset_calls(&self) {
        self.lock().asked = Default::default();
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
    /// Anything else under `/v3/`: CC's 404 "Unknown request".
    Unknown,
}

impl Route {
    fn of(req: &RecordedRequest) -> Route {
        if req.method != "GET" {
            return Route::Unknown;
        }
        let path = req.path_only().trim_end_matches('/');
        let segments: Vec<String> = path
            .split('/')
            .skip(1)
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match segments.as_slice() {
            ["v3", "spaces"] => Route::SpacesList,
            ["v3", "spaces", guid] => Route::Space(guid.to_string()),
            ["v3", "roles"] => Route::Roles,
            ["v3", "feature_flags", name] => Route::FeatureFlag(name.to_string()),
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
            Route::Unknown => None,
        }
    }
}

async fn handle(state: &Mutex<State>, req: RecordedRequest) -> Reply {
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
