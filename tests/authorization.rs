//! Authorization (issue 11), black-box: the real gateway in front of the fake Cloud Controller
//! v3 (`support::cc_v3`, also its `[upstream]`) and the mock v1 broker, or with `[authorization]
//! source = "static"` and `[[spaces]]` role lists. What it proves, for what a user relies on —
//! the status and the Cloud Controller's body, what the broker was sent, what the Cloud
//! Controller was asked:
//!
//! 1. create: a space developer creates (the Cloud Controller asked with the developer's own
//!    token and the request's id); an outsider (60003), an auditor and a manager (403 10003)
//!    are refused before any broker call; an admin creates without role, flag or org question.
//! 2. create: a missing space (60003), the feature flag off (330002, with and without its
//!    custom message), a suspended organization (403 10003); admins are not held to the last two.
//! 3. create: a plan not visible to the space's organization is 60010.
//! 4. create: each check against every earlier one — body and `accepts_incomplete` before any
//!    question, an unknown plan upstream unasked, space before scope before flag before
//!    organization before role before plan visibility before the name rules.
//! 5. the cache: one question per user and answer (denials too), expiry after `cache_seconds`
//!    and at the token's `exp`, 100 concurrent creates asking once, emptied by a reload.
//! 6. a Cloud Controller down, reset, slow, failing, refusing connections or answering no v3:
//!    503 10015 within a bound, no broker call, `/readyz` 200, pass-through unharmed, failures
//!    not kept, metrics `result="unavailable"`.
//! 7. reads and lists hold only what is in spaces the caller sees (instances, bindings, keys,
//!    an instance's bindings and keys); hidden ones are brokergate's own 404s; read-all tokens
//!    see everything without a v3 call; one spaces list per caller, every page of it, and more
//!    spaces than brokergate keeps is 503 rather than a list cut short.
//! 8. rename, delete, bind, unbind, key create and key delete: refused for an auditor (403
//!    10003) and an outsider (404), and in a suspended organization, with no broker call; done
//!    for the developer.
//! 9. static: without role lists every writer may (and stderr says so); with them developers
//!    change, members see, others get 60003 / 404 / 403 10003.
//! 10. metrics (`brokergate_authorization_*`) and the access log's `authorization` field.
//!
//! Tests named `bug_…` are `#[ignore]`d: each shows a defect of `src/`, described in its doc
//! comment, and fails until it is fixed (`cargo test --test authorization -- --ignored`).
#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::broker::MockBroker;
use support::cc::assert_cc_error;
use support::cc_v3::{
    user_claims, user_token, FakeCloudController, Mode, Question, Role, AUDITOR, DEVELOPER,
    MANAGER, OUTSIDER,
};
use support::client::{self, get, send, Response, CREATE_PATH, FORM_CONTENT_TYPE};
use support::gateway::{
    Gateway, GatewayConfig, BROKER_NAME, BROKER_TOKEN, ORG_GUID, PLAN_GUID, SPACE_GUID,
};
use support::token;
use support::upstream::MockUpstream;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const INSTANCES: &str = "/v2/service_instances";
const BINDINGS: &str = "/v2/service_bindings";
const KEYS: &str = "/v2/service_keys";

/// A second space, in a second organization, where only [`OUTSIDER`] is a developer.
const SPACE2_GUID: &str = "5e1c2d3a-7b8c-4d9e-8f0a-1b2c3d4e5f60";
const ORG2_GUID: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
/// A space no one has.
const MISSING_SPACE: &str = "00000000-dead-4bee-8f00-000000000000";
/// A plan for other organizations only (`public = false`).
const PRIVATE_PLAN_GUID: &str = "3f1e2d4c-5b6a-4798-8a7b-6c5d4e3f2a1b";

/// Longest wait for an effect written after the answer (an access log line).
const EFFECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on an answer the gateway gives without waiting for anyone: generous for a
/// loaded 2-core CI machine, far below any timeout in play.
const PROMPT: Duration = Duration::from_secs(5);

const NOT_AUTHORIZED: &str = "You are not authorized to perform the requested action";
const INVALID_SPACE: &str = "The service instance is invalid: not a valid space";

/// The fake Cloud Controller (the gateway's `[upstream]`, so `source = cloud_controller`),
/// the broker, and a gateway on them.
struct Setup {
    cc: FakeCloudController,
    broker: MockBroker,
    gw: Gateway,
}

/// [`FakeCloudController::with_default_world`] plus [`SPACE2_GUID`] in [`ORG2_GUID`] with
/// [`OUTSIDER`] its developer, and a gateway asking it, its config passed through `config`.
async fn start(config: impl FnOnce(GatewayConfig) -> GatewayConfig) -> Setup {
    let cc = FakeCloudController::with_default_world().await;
    cc.add_org(ORG2_GUID, "second-org");
    cc.add_space(SPACE2_GUID, "second-space", ORG2_GUID);
    cc.grant(OUTSIDER, Role::SpaceDeveloper, SPACE2_GUID);
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let base = GatewayConfig::new(&broker.url()).upstream(&cc.url());
    let gw = Gateway::start(config(base)).await;
    Setup { cc, broker, gw }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn admin() -> String {
    token::valid_token()
}

/// `user_id`'s token with `cloud_controller.read` only.
fn read_only(user_id: &str) -> String {
    user_claims(user_id)
        .scopes(&["openid", "cloud_controller.read"])
        .sign()
}

/// A global auditor: sees every space without asking, changes nothing.
fn global_auditor() -> String {
    user_claims("user-global-auditor")
        .scopes(&["cloud_controller.global_auditor", "cloud_controller.read"])
        .sign()
}

fn body_for(space: &str, plan: &str, name: &str) -> Value {
    json!({"name": name, "space_guid": space, "service_plan_guid": plan})
}

/// `POST /v2/service_instances` in `space` on the seeded plan, with a fresh name.
async fn create_in(gw: &Gateway, token: &str, space: &str) -> Response {
    create_with(gw, token, body_for(space, PLAN_GUID, &unique("authz"))).await
}

/// `POST /v2/service_instances` with this body, as the seed's curl sends it.
async fn create_with(gw: &Gateway, token: &str, body: impl client::IntoBody) -> Response {
    client::create(&gw.url(), Some(token), body).await
}

/// A create that must succeed; its guid.
async fn created_in(gw: &Gateway, token: &str, space: &str) -> String {
    let resp = create_in(gw, token, space).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    guid(&resp)
}

/// Any request with a bearer token and, when given, a JSON body.
async fn call(
    gw: &Gateway,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Response {
    let bearer = format!("bearer {token}");
    let mut headers = vec![("authorization", bearer.as_str())];
    let bytes = match body {
        Some(b) => {
            headers.push(("content-type", "application/json"));
            b.to_string().into_bytes()
        }
        None => Vec::new(),
    };
    send(method, &format!("{}{path}", gw.url()), &headers, bytes).await
}

async fn read(gw: &Gateway, path: &str, token: &str) -> Response {
    get(&format!("{}{path}", gw.url()), Some(token)).await
}

async fn bind(gw: &Gateway, token: &str, instance: &str, app: &str) -> Response {
    let body = json!({"service_instance_guid": instance, "app_guid": app});
    call(gw, "POST", BINDINGS, token, Some(body)).await
}

async fn make_key(gw: &Gateway, token: &str, instance: &str, name: &str) -> Response {
    let body = json!({"service_instance_guid": instance, "name": name});
    call(gw, "POST", KEYS, token, Some(body)).await
}

fn guid(resp: &Response) -> String {
    resp.json()["metadata"]["guid"]
        .as_str()
        .unwrap_or_else(|| panic!("no metadata.guid in {resp:?}"))
        .to_string()
}

/// The guids a list answer holds, after checking its `total_results` is their number.
fn listed(resp: &Response) -> Vec<String> {
    assert_eq!(resp.status, 200, "{resp:?}");
    let body = resp.json();
    let guids: Vec<String> = body["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("no resources in {resp:?}"))
        .iter()
        .map(|r| r["metadata"]["guid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(body["total_results"], guids.len(), "{resp:?}");
    guids
}

/// A list answer holding exactly these guids, in any order.
fn assert_listed(resp: &Response, want: &[&str]) {
    let mut seen = listed(resp);
    seen.sort();
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(seen, want, "{resp:?}");
}

fn assert_not_authorized(resp: &Response) {
    let body = assert_cc_error(resp, 403, 10003, "CF-NotAuthorized");
    assert_eq!(body["description"], NOT_AUTHORIZED, "{resp:?}");
}

fn assert_invalid_space(resp: &Response) {
    let body = assert_cc_error(resp, 400, 60003, "CF-ServiceInstanceInvalid");
    assert_eq!(body["description"], INVALID_SPACE, "{resp:?}");
}

fn assert_instance_not_found(resp: &Response, guid: &str) {
    let body = assert_cc_error(resp, 404, 60004, "CF-ServiceInstanceNotFound");
    assert_eq!(
        body["description"],
        format!("The service instance could not be found: {guid}"),
        "{resp:?}"
    );
}

fn assert_binding_not_found(resp: &Response, guid: &str) {
    let body = assert_cc_error(resp, 404, 90004, "CF-ServiceBindingNotFound");
    assert_eq!(
        body["description"],
        format!("The service binding could not be found: {guid}"),
        "{resp:?}"
    );
}

fn assert_key_not_found(resp: &Response, guid: &str) {
    let body = assert_cc_error(resp, 404, 360003, "CF-ServiceKeyNotFound");
    assert_eq!(
        body["description"],
        format!("The service key could not be found: {guid}"),
        "{resp:?}"
    );
}

fn assert_unavailable(resp: &Response) {
    assert_cc_error(resp, 503, 10015, "CF-ServiceUnavailable");
}

/// What the fake Cloud Controller was asked since its last `reset_calls`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Asked {
    space: usize,
    spaces_list: usize,
    roles: usize,
    flag: usize,
    org: usize,
}

/// Nothing at all.
const NOTHING: Asked = Asked {
    space: 0,
    spaces_list: 0,
    roles: 0,
    flag: 0,
    org: 0,
};

/// Each of a non-admin create's four questions once.
const CREATE_QUESTIONS: Asked = Asked {
    space: 1,
    spaces_list: 0,
    roles: 1,
    flag: 1,
    org: 1,
};

fn asked(cc: &FakeCloudController) -> Asked {
    Asked {
        space: cc.calls(Question::Space),
        spaces_list: cc.calls(Question::SpacesList),
        roles: cc.calls(Question::Roles),
        flag: cc.calls(Question::FeatureFlag),
        org: cc.calls(Question::Organization),
    }
}

/// [`asked`], then forget it: what one step asked.
fn take_asked(cc: &FakeCloudController) -> Asked {
    let seen = asked(cc);
    cc.reset_calls();
    seen
}

/// The requests the fake received outside `/v3/`: what the gateway passed upstream.
fn passed_upstream(cc: &FakeCloudController) -> Vec<String> {
    cc.requests()
        .into_iter()
        .filter(|r| !r.path.starts_with("/v3/"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// The token of an `Authorization: bearer <token>` header.
fn bearer_token(header: Option<String>) -> String {
    let header = header.expect("an Authorization header");
    let (scheme, token) = header.split_once(' ').expect("scheme and token");
    assert!(scheme.eq_ignore_ascii_case("bearer"), "{header}");
    token.to_string()
}

/// What the broker has been asked to do so far: provisions, binds (and keys), unbinds,
/// deprovisions.
fn broker_calls(broker: &MockBroker) -> [usize; 4] {
    [
        broker.provision_count(),
        broker.bind_count(),
        broker.unbind_count(),
        broker.delete_count(),
    ]
}

async fn admin_get(gw: &Gateway, path: &str) -> Response {
    get(&format!("{}{path}", gw.admin_url()), None).await
}

/// A sample of `/metrics` with exactly this name and these labels (`None`: not on the page).
async fn metric(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let resp = admin_get(gw, "/metrics").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let want: BTreeMap<&str, &str> = labels.iter().copied().collect();
    resp.text().lines().find_map(|line| {
        if line.starts_with('#') {
            return None;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        if series_name != name {
            return None;
        }
        // The label values asked about here hold no commas or quotes.
        let got: BTreeMap<&str, &str> = labels
            .split(',')
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                Some((k.trim(), v.trim_matches('"')))
            })
            .collect();
        (got == want).then(|| value.parse().unwrap())
    })
}

const AUTHZ_REQUESTS: &str = "brokergate_authorization_requests_total";
const AUTHZ_DURATION_COUNT: &str = "brokergate_authorization_request_duration_seconds_count";
const AUTHZ_CACHE_HITS: &str = "brokergate_authorization_cache_hits_total";

/// `brokergate_authorization_requests_total{question,result}`, 0 when absent.
async fn authz_requests(gw: &Gateway, question: &str, result: &str) -> f64 {
    metric(
        gw,
        AUTHZ_REQUESTS,
        &[("question", question), ("result", result)],
    )
    .await
    .unwrap_or(0.0)
}

/// The access log line of the request answered with this `X-VCAP-Request-ID`, waited for.
async fn access_line(gw: &Gateway, resp: &Response) -> Value {
    let id = resp
        .header("x-vcap-request-id")
        .unwrap_or_else(|| panic!("no X-VCAP-Request-ID on {resp:?}"));
    let find = || {
        gw.stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["request_id"] == id.as_str())
    };
    support::wait_until(EFFECT_TIMEOUT, || find().is_some()).await;
    find().unwrap_or_else(|| panic!("no access log line for {id}:\n{}", gw.stdout()))
}

/// Replace the config file atomically (write a sibling, rename), so the file watcher never
/// reads half of it.
fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write temp config");
    std::fs::rename(&tmp, path).expect("rename config into place");
}

/// A second `[[plans]]` on the echo broker, visible to [`ORG2_GUID`] only.
fn private_plan_toml() -> String {
    format!(
        r#"[[plans]]
guid = "{PRIVATE_PLAN_GUID}"
broker = "{BROKER_NAME}"
label = "echo"
version = "1.0"
provider = "core"
name = "private"
unique_id = "echo-private"
public = false
organizations = ["{ORG2_GUID}"]
"#
    )
}

// ---------------------------------------------------------------------------------------------
// 1. Create: who may
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_space_developer_creates_and_auditors_managers_and_outsiders_do_not() {
    let Setup { cc, broker, gw } = start(|c| c).await;

    let developer = user_token(DEVELOPER);
    let resp = create_in(&gw, &developer, SPACE_GUID).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(broker.provision_count(), 1);
    let provision = broker.provision_requests()[0].json();
    assert_eq!(provision["email"], format!("{DEVELOPER}@example.com"));
    assert_eq!(asked(&cc), CREATE_QUESTIONS);
    // Asked as the developer, with the request's id, the role in the space's own terms.
    let request_id = resp.header("x-vcap-request-id").unwrap();
    let v3: Vec<_> = cc
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/v3/"))
        .collect();
    assert_eq!(v3.len(), 4, "{v3:#?}");
    for r in &v3 {
        assert_eq!(r.method, "GET", "{r:?}");
        assert_eq!(bearer_token(r.header("authorization")), developer, "{r:?}");
        assert_eq!(
            r.header("x-vcap-request-id").as_deref(),
            Some(request_id.as_str())
        );
    }
    let paths: Vec<&str> = v3.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("/v3/spaces/{SPACE_GUID}"),
            "/v3/feature_flags/service_instance_creation".to_string(),
            format!("/v3/organizations/{ORG_GUID}"),
            format!(
                "/v3/roles?types=space_developer&space_guids={SPACE_GUID}&user_guids={DEVELOPER}"
            ),
        ],
        "asked in the Cloud Controller's order"
    );
    assert_eq!(passed_upstream(&cc), Vec::<String>::new());

    // Someone who cannot see the space is told it is not a valid one.
    cc.reset_calls();
    let outsider = user_token(OUTSIDER);
    let resp = create_in(&gw, &outsider, SPACE_GUID).await;
    assert_invalid_space(&resp);
    assert_eq!(
        bearer_token(cc.last_authorization(Question::Space)),
        outsider
    );
    assert_eq!(
        asked(&cc),
        Asked {
            space: 1,
            ..NOTHING
        }
    );
    // Members who are not developers see it but may not create there.
    for user in [AUDITOR, MANAGER] {
        cc.reset_calls();
        let resp = create_in(&gw, &user_token(user), SPACE_GUID).await;
        assert_not_authorized(&resp);
        assert_eq!(asked(&cc), CREATE_QUESTIONS, "{user}");
    }
    assert_eq!(broker.provision_count(), 1, "no broker call for a refusal");

    // An admin needs no role, flag or organization; the space is still asked, as the admin.
    cc.reset_calls();
    let admin = admin();
    let resp = create_in(&gw, &admin, SPACE_GUID).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(
        asked(&cc),
        Asked {
            space: 1,
            ..NOTHING
        }
    );
    assert_eq!(bearer_token(cc.last_authorization(Question::Space)), admin);
    assert_eq!(broker.provision_count(), 2);
}

// ---------------------------------------------------------------------------------------------
// 2. Create: the space, the feature flag, the organization
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_missing_space_a_disabled_flag_and_a_suspended_org_refuse_a_create() {
    let Setup { cc, broker, gw } = start(|c| c.authorization_key("cache_seconds", 0)).await;
    let developer = user_token(DEVELOPER);

    // No such space, for a developer and for an admin alike.
    for token in [&developer, &admin()] {
        let resp = create_in(&gw, token, MISSING_SPACE).await;
        assert_invalid_space(&resp);
    }

    // The flag off: its operator's message, else its name.
    cc.set_feature_flag(
        "service_instance_creation",
        false,
        Some("Ask your operator for a service instance."),
    );
    let resp = create_in(&gw, &developer, SPACE_GUID).await;
    let body = assert_cc_error(&resp, 403, 330002, "CF-FeatureDisabled");
    assert_eq!(
        body["description"],
        "Feature Disabled: Ask your operator for a service instance."
    );
    cc.set_feature_flag("service_instance_creation", false, None);
    let resp = create_in(&gw, &developer, SPACE_GUID).await;
    let body = assert_cc_error(&resp, 403, 330002, "CF-FeatureDisabled");
    assert_eq!(
        body["description"],
        "Feature Disabled: service_instance_creation"
    );
    assert_eq!(broker.provision_count(), 0);
    // An admin is not held to the flag.
    let resp = create_in(&gw, &admin(), SPACE_GUID).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(broker.provision_count(), 1);

    // A suspended organization: nobody but an admin creates in it.
    cc.set_feature_flag("service_instance_creation", true, None);
    cc.suspend_org(ORG_GUID, true);
    let resp = create_in(&gw, &developer, SPACE_GUID).await;
    assert_not_authorized(&resp);
    assert_eq!(broker.provision_count(), 1);
    let resp = create_in(&gw, &admin(), SPACE_GUID).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(broker.provision_count(), 2);

    // Back to normal, the developer creates again.
    cc.suspend_org(ORG_GUID, false);
    let resp = create_in(&gw, &developer, SPACE_GUID).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(broker.provision_count(), 3);
}

/// A space guid that cannot name one resource (empty, `.`, `..`) is not a valid space: it is
/// never asked (`GET /v3/spaces/` would be the spaces list), and never taken for the Cloud
/// Controller failing.
#[tokio::test]
async fn a_space_guid_naming_no_single_resource_is_not_a_valid_space() {
    let Setup { cc, broker, gw } = start(|c| c).await;
    for guid in ["", ".", ".."] {
        let resp = create_in(&gw, &user_token(DEVELOPER), guid).await;
        assert_invalid_space(&resp);
    }
    assert_eq!(authz_requests(&gw, "space", "unavailable").await, 0.0);
    assert_eq!(
        cc.calls(Question::Space) + cc.calls(Question::SpacesList),
        0
    );
    assert_eq!(broker.provision_count(), 0);
}

// ---------------------------------------------------------------------------------------------
// 3. Create: plan visibility
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_plan_not_visible_to_the_spaces_organization_is_60010() {
    let Setup { cc, broker, gw } = start(|c| c.extra_toml(&private_plan_toml())).await;
    // The developer of the seeded space (organization ORG_GUID): not among the plan's.
    let body = body_for(SPACE_GUID, PRIVATE_PLAN_GUID, &unique("private"));
    let resp = create_with(&gw, &user_token(DEVELOPER), body.clone()).await;
    let err = assert_cc_error(
        &resp,
        403,
        60010,
        "CF-ServiceInstanceOrganizationNotAuthorized",
    );
    assert_eq!(
        err["description"],
        "A service instance for the selected plan cannot be created in this organization. The plan is visible because another organization you belong to has access to it."
    );
    assert_eq!(broker.provision_count(), 0);
    // The organization came from the Cloud Controller's space: the second space's (ORG2_GUID)
    // is among the plan's, so its developer creates there.
    let body = body_for(SPACE2_GUID, PRIVATE_PLAN_GUID, &unique("private"));
    let resp = create_with(&gw, &user_token(OUTSIDER), body).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(resp.json()["entity"]["space_guid"], SPACE2_GUID);
    assert_eq!(broker.provision_count(), 1);
    assert_eq!(broker.provision_requests()[0].json()["plan"], "private");
    assert_eq!(passed_upstream(&cc), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// 4. Create: the order of the checks
// ---------------------------------------------------------------------------------------------

/// `POST <path_and_query>` as [`client::create`] sends it.
async fn post_create(gw: &Gateway, path_and_query: &str, token: &str, body: Value) -> Response {
    let bearer = format!("bearer {token}");
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", FORM_CONTENT_TYPE),
    ];
    let url = format!("{}{path_and_query}", gw.url());
    send("POST", &url, &headers, body.to_string().into_bytes()).await
}

#[tokio::test]
async fn each_create_check_comes_after_every_earlier_one() {
    let Setup { cc, broker, gw } = start(|c| {
        c.authorization_key("cache_seconds", 0)
            .extra_toml(&private_plan_toml())
    })
    .await;
    let (developer, auditor) = (user_token(DEVELOPER), user_token(AUDITOR));

    // The body and the query come before any question.
    let resp = create_with(&gw, &developer, "{not json").await;
    assert_cc_error(&resp, 400, 1001, "CF-MessageParseError");
    assert_eq!(take_asked(&cc), NOTHING, "bad body");
    let body = body_for(MISSING_SPACE, PLAN_GUID, "x");
    let resp = post_create(
        &gw,
        &format!("{CREATE_PATH}?accepts_incomplete=maybe"),
        &developer,
        body,
    )
    .await;
    assert_cc_error(&resp, 400, 10004, "CF-InvalidRequest");
    assert_eq!(take_asked(&cc), NOTHING, "bad accepts_incomplete");

    // A plan brokergate does not serve is the Cloud Controller's, unasked.
    let body = body_for(MISSING_SPACE, "not-our-plan", "x");
    let resp = create_with(&gw, &developer, body).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        resp.json(),
        json!({"from": "upstream", "method": "POST", "path": CREATE_PATH})
    );
    assert_eq!(take_asked(&cc), NOTHING, "unknown plan");
    assert_eq!(passed_upstream(&cc), [format!("POST {CREATE_PATH}")]);

    // The space comes before the scope: a read-only token is told the space is not valid.
    let resp = create_in(&gw, &read_only(DEVELOPER), MISSING_SPACE).await;
    assert_invalid_space(&resp);
    let space_only = Asked {
        space: 1,
        ..NOTHING
    };
    assert_eq!(take_asked(&cc), space_only, "missing space");

    // The scope comes before the flag and the role.
    cc.set_feature_flag("service_instance_creation", false, None);
    let resp = create_in(&gw, &read_only(AUDITOR), SPACE_GUID).await;
    assert_cc_error(&resp, 403, 10007, "CF-InsufficientScope");
    assert_eq!(take_asked(&cc), space_only, "scope");

    // The flag comes before the organization and the role.
    let resp = create_in(&gw, &auditor, SPACE_GUID).await;
    assert_cc_error(&resp, 403, 330002, "CF-FeatureDisabled");
    let flag = Asked {
        space: 1,
        flag: 1,
        ..NOTHING
    };
    assert_eq!(take_asked(&cc), flag, "flag");
    cc.set_feature_flag("service_instance_creation", true, None);

    // The organization comes before the role: a suspended one refuses even its developer.
    cc.suspend_org(ORG_GUID, true);
    let resp = create_in(&gw, &developer, SPACE_GUID).await;
    assert_not_authorized(&resp);
    let org = Asked {
        space: 1,
        flag: 1,
        org: 1,
        ..NOTHING
    };
    assert_eq!(take_asked(&cc), org, "suspended");
    cc.suspend_org(ORG_GUID, false);

    // The role comes before the plan's visibility.
    let private = |name: &str| body_for(SPACE_GUID, PRIVATE_PLAN_GUID, name);
    let resp = create_with(&gw, &auditor, private("role-first")).await;
    assert_not_authorized(&resp);
    assert_eq!(take_asked(&cc), CREATE_QUESTIONS, "role");

    // The plan's visibility comes before the name rules.
    let resp = create_with(&gw, &developer, private("")).await;
    assert_cc_error(
        &resp,
        403,
        60010,
        "CF-ServiceInstanceOrganizationNotAuthorized",
    );
    assert_eq!(take_asked(&cc), CREATE_QUESTIONS, "visibility");

    // And the name rules come last of all, once everything else allowed.
    let resp = create_with(&gw, &developer, body_for(SPACE_GUID, PLAN_GUID, "")).await;
    assert_cc_error(&resp, 400, 60001, "CF-ServiceInstanceNameEmpty");
    assert_eq!(take_asked(&cc), CREATE_QUESTIONS, "name");

    assert_eq!(broker.provision_count(), 0);
}

// ---------------------------------------------------------------------------------------------
// 5. The cache
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn answers_are_kept_per_user_denials_too_and_a_reload_forgets_them() {
    let Setup { cc, broker, gw } = start(|c| c.authorization_key("cache_seconds", 60)).await;
    let developer = user_token(DEVELOPER);

    for _ in 0..2 {
        let resp = create_in(&gw, &developer, SPACE_GUID).await;
        assert_eq!(resp.status, 201, "{resp:?}");
    }
    assert_eq!(
        asked(&cc),
        CREATE_QUESTIONS,
        "two creates, one of each question"
    );
    // Another token of the same user is the same user.
    let resp = create_in(&gw, &user_claims(DEVELOPER).sign(), SPACE_GUID).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(asked(&cc), CREATE_QUESTIONS);

    // A denial is kept too; another user asks for themselves.
    cc.reset_calls();
    for _ in 0..2 {
        assert_not_authorized(&create_in(&gw, &user_token(AUDITOR), SPACE_GUID).await);
    }
    assert_eq!(
        asked(&cc),
        CREATE_QUESTIONS,
        "two refusals, one of each question"
    );
    cc.reset_calls();
    for _ in 0..2 {
        assert_invalid_space(&create_in(&gw, &user_token(OUTSIDER), SPACE_GUID).await);
    }
    assert_eq!(
        asked(&cc),
        Asked {
            space: 1,
            ..NOTHING
        }
    );
    assert_eq!(broker.provision_count(), 3);

    // A new configuration starts with an empty cache.
    cc.reset_calls();
    let path = gw.config_path().to_path_buf();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("[authorization]\n"), "{text}");
    write_config(
        &path,
        &text.replacen(
            "[authorization]\n",
            "[authorization]\ncache_size = 5000\n",
            1,
        ),
    );
    let reloaded = client::send(
        "POST",
        &format!("{}/-/reload", gw.admin_url()),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(reloaded.status, 200, "{reloaded:?}");
    let resp = create_in(&gw, &developer, SPACE_GUID).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(asked(&cc), CREATE_QUESTIONS, "asked again after the reload");
    assert_not_authorized(&create_in(&gw, &user_token(AUDITOR), SPACE_GUID).await);
    assert_eq!(asked(&cc).roles, 2, "the denial was forgotten too");
}

#[tokio::test]
async fn an_answer_expires_after_cache_seconds_and_a_revoked_role_then_counts() {
    let Setup { cc, broker, gw } = start(|c| c.authorization_key("cache_seconds", 1)).await;
    let developer = user_token(DEVELOPER);
    assert_eq!(create_in(&gw, &developer, SPACE_GUID).await.status, 201);
    assert_eq!(asked(&cc), CREATE_QUESTIONS);
    assert!(cc.revoke(DEVELOPER, Role::SpaceDeveloper, SPACE_GUID));
    // The developer still sees the space (as an auditor now), so only the role refuses.
    cc.grant(DEVELOPER, Role::SpaceAuditor, SPACE_GUID);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_not_authorized(&create_in(&gw, &developer, SPACE_GUID).await);
    assert_eq!(asked(&cc).roles, 2, "asked again once the answer expired");
    assert_eq!(asked(&cc).space, 2);
    assert_eq!(broker.provision_count(), 1);
}

#[tokio::test]
async fn an_answer_is_not_kept_past_the_tokens_exp() {
    let Setup {
        cc,
        gw,
        broker: _broker,
    } = start(|c| c.authorization_key("cache_seconds", 60)).await;
    let short = user_claims(DEVELOPER).expires_in(2).sign();
    let exp = token::now() + 2;
    assert_eq!(create_in(&gw, &short, SPACE_GUID).await.status, 201);
    assert_eq!(asked(&cc), CREATE_QUESTIONS);
    // Past the first token's exp: a second later, whatever the rounding to whole seconds.
    while token::now() <= exp {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fresh = user_token(DEVELOPER);
    assert_eq!(create_in(&gw, &fresh, SPACE_GUID).await.status, 201);
    assert_eq!(
        asked(&cc),
        Asked {
            space: 2,
            roles: 2,
            flag: 2,
            org: 2,
            ..NOTHING
        },
        "the same user, asked again"
    );
    // The fresh token's answers are kept for cache_seconds: the cache is on.
    assert_eq!(create_in(&gw, &fresh, SPACE_GUID).await.status, 201);
    assert_eq!(asked(&cc).roles, 2);
}

#[tokio::test]
async fn a_hundred_concurrent_creates_ask_each_question_once() {
    let Setup { cc, broker, gw } = start(|c| c.authorization_key("cache_seconds", 60)).await;
    let developer = user_token(DEVELOPER);
    let url = gw.url();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let (url, developer) = (url.clone(), developer.clone());
            tokio::spawn(async move {
                let body = body_for(SPACE_GUID, PLAN_GUID, &format!("burst-{i}"));
                client::create(&url, Some(&developer), body).await
            })
        })
        .collect();
    for task in tasks {
        let resp = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("answered within 60 s")
            .unwrap();
        assert_eq!(resp.status, 201, "{resp:?}");
    }
    assert_eq!(asked(&cc), CREATE_QUESTIONS);
    assert_eq!(broker.provision_count(), 100);
    // The other 99 had each answer from the cache, or from the one call in flight.
    for question in ["space", "feature_flag", "organization", "role"] {
        assert_eq!(
            authz_requests(&gw, question, "allowed").await,
            1.0,
            "{question}"
        );
        let hits = metric(&gw, AUTHZ_CACHE_HITS, &[("question", question)]).await;
        assert_eq!(hits, Some(99.0), "{question}");
    }
}

// ---------------------------------------------------------------------------------------------
// 6. A Cloud Controller that cannot answer
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_cloud_controller_down_reset_slow_or_failing_is_503_and_nothing_else_breaks() {
    let Setup { cc, broker, gw } = start(|c| c.authorization_key("timeout_seconds", 1)).await;
    let instance = created_in(&gw, &admin(), SPACE_GUID).await;
    let developer = user_token(DEVELOPER);
    let before = broker_calls(&broker);

    for mode in [
        Mode::Down,
        Mode::Reset,
        Mode::Status(500),
        Mode::Status(502),
    ] {
        cc.set_mode(mode);
        let started = Instant::now();
        let resp = create_in(&gw, &developer, SPACE_GUID).await;
        assert_unavailable(&resp);
        assert!(
            started.elapsed() < PROMPT,
            "{mode:?}: {:?}",
            started.elapsed()
        );
        // Reads, lists and writes of a caller who must be asked: refused alike.
        assert_unavailable(&read(&gw, &format!("{INSTANCES}/{instance}"), &developer).await);
        assert_unavailable(&read(&gw, INSTANCES, &developer).await);
        let path = format!("{INSTANCES}/{instance}");
        assert_unavailable(&call(&gw, "DELETE", &path, &developer, None).await);
        assert_unavailable(&bind(&gw, &developer, &instance, "app-1").await);
        // Whoever reads everything is not asked, and reads on.
        assert_eq!(
            read(&gw, &path, &global_auditor()).await.status,
            200,
            "{mode:?}"
        );
        // The gateway stays ready, and passes everything else through.
        assert_eq!(admin_get(&gw, "/readyz").await.status, 200, "{mode:?}");
        let info = read(&gw, "/v2/info", &developer).await;
        assert_eq!(info.status, 200, "{mode:?}: {info:?}");
        assert_eq!(info.json()["from"], "upstream");
    }

    // Slower than timeout_seconds: refused at the deadline, not when the answer comes (3 s).
    cc.set_mode(Mode::Slow(Duration::from_secs(3)));
    let started = Instant::now();
    let slow = tokio::spawn({
        let (url, developer) = (gw.url(), developer.clone());
        async move {
            let body = body_for(SPACE_GUID, PLAN_GUID, &unique("slow"));
            client::create(&url, Some(&developer), body).await
        }
    });
    // Meanwhile, the gateway is ready.
    assert_eq!(admin_get(&gw, "/readyz").await.status, 200);
    let resp = slow.await.unwrap();
    let took = started.elapsed();
    assert_unavailable(&resp);
    assert!(
        took < Duration::from_millis(2900),
        "waited for the slow answer: {took:?}"
    );
    assert_eq!(
        broker_calls(&broker),
        before,
        "no broker call while undecided"
    );

    // The late answer (the developer's space, at 3 s) never answers a later question: the
    // outsider, asked next, is still told the space is not valid.
    cc.set_mode(Mode::Normal);
    assert_invalid_space(&create_in(&gw, &user_token(OUTSIDER), SPACE_GUID).await);

    // Failures are not kept: the next create asks, and is let through.
    cc.reset_calls();
    let resp = create_in(&gw, &developer, SPACE_GUID).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(asked(&cc), CREATE_QUESTIONS);

    // Counted: four space questions per failing mode (create, read, delete, bind; the list
    // asks for the visible spaces instead), and one for the slow create.
    assert_eq!(
        authz_requests(&gw, "space", "unavailable").await,
        4.0 * 4.0 + 1.0
    );
    assert_eq!(
        authz_requests(&gw, "visible_spaces", "unavailable").await,
        4.0
    );
    assert_eq!(access_line(&gw, &resp).await["authorization"], "allowed");
}

#[tokio::test]
async fn a_cloud_controller_refusing_connections_is_503() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let refused = format!("http://127.0.0.1:{}", support::refused_port());
    let gw = Gateway::start(GatewayConfig::new(&broker.url()).upstream(&refused)).await;
    let started = Instant::now();
    let resp = create_in(&gw, &user_token(DEVELOPER), SPACE_GUID).await;
    assert_unavailable(&resp);
    assert!(started.elapsed() < PROMPT, "{:?}", started.elapsed());
    assert_unavailable(&create_in(&gw, &admin(), SPACE_GUID).await);
    assert_eq!(broker.provision_count(), 0);
    assert_eq!(admin_get(&gw, "/readyz").await.status, 200);
    assert_eq!(
        access_line(&gw, &resp).await["authorization"],
        "unavailable"
    );
}

#[tokio::test]
async fn an_upstream_that_answers_no_v3_is_undecided_not_allowed() {
    // A plain pass-through upstream answers 200 to everything, in no v3 shape.
    let upstream = MockUpstream::start().await;
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let gw = Gateway::start(GatewayConfig::new(&broker.url()).upstream(&upstream.url())).await;
    for token in [user_token(DEVELOPER), admin()] {
        assert_unavailable(&create_in(&gw, &token, SPACE_GUID).await);
    }
    assert_eq!(broker.provision_count(), 0);
    let asked: Vec<String> = upstream
        .requests()
        .into_iter()
        .map(|r| r.path)
        .filter(|p| p.starts_with("/v3/"))
        .collect();
    assert_eq!(
        asked,
        [
            format!("/v3/spaces/{SPACE_GUID}"),
            format!("/v3/spaces/{SPACE_GUID}")
        ]
    );
    assert_eq!(authz_requests(&gw, "space", "unavailable").await, 2.0);
}

// ---------------------------------------------------------------------------------------------
// 7. Reads and lists: only what is in spaces the caller sees
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn reads_and_lists_show_only_what_is_in_spaces_the_caller_sees() {
    let Setup {
        cc,
        gw,
        broker: _broker,
    } = start(|c| c.authorization_key("cache_seconds", 60)).await;
    let (developer, auditor, manager, outsider) = (
        user_token(DEVELOPER),
        user_token(AUDITOR),
        user_token(MANAGER),
        user_token(OUTSIDER),
    );
    // A in the seeded space, by its developer; B in the second space, by its only developer.
    let a = created_in(&gw, &developer, SPACE_GUID).await;
    let b = created_in(&gw, &outsider, SPACE2_GUID).await;
    let bind_a = bind(&gw, &developer, &a, "app-a").await;
    assert_eq!(bind_a.status, 201, "{bind_a:?}");
    let key_a = make_key(&gw, &developer, &a, "key-a").await;
    assert_eq!(key_a.status, 201, "{key_a:?}");
    let bind_b = bind(&gw, &outsider, &b, "app-b").await;
    assert_eq!(bind_b.status, 201, "{bind_b:?}");
    let key_b = make_key(&gw, &outsider, &b, "key-b").await;
    assert_eq!(key_b.status, 201, "{key_b:?}");
    let (bind_a, key_a, bind_b, key_b) = (guid(&bind_a), guid(&key_a), guid(&bind_b), guid(&key_b));

    // One instance: every member of its space reads it; anyone else is told it does not exist.
    for token in [&developer, &auditor, &manager] {
        let resp = read(&gw, &format!("{INSTANCES}/{a}"), token).await;
        assert_eq!(resp.status, 200, "{resp:?}");
        let resp = read(&gw, &format!("{INSTANCES}/{b}"), token).await;
        assert_instance_not_found(&resp, &b);
    }
    assert_eq!(
        read(&gw, &format!("{INSTANCES}/{b}"), &outsider)
            .await
            .status,
        200
    );
    assert_instance_not_found(&read(&gw, &format!("{INSTANCES}/{a}"), &outsider).await, &a);

    // Bindings and keys, one at a time, and an instance's bindings.
    assert_eq!(
        read(&gw, &format!("{BINDINGS}/{bind_a}"), &auditor)
            .await
            .status,
        200
    );
    assert_eq!(
        read(&gw, &format!("{KEYS}/{key_a}"), &auditor).await.status,
        200
    );
    assert_binding_not_found(
        &read(&gw, &format!("{BINDINGS}/{bind_a}"), &outsider).await,
        &bind_a,
    );
    assert_key_not_found(
        &read(&gw, &format!("{KEYS}/{key_a}"), &outsider).await,
        &key_a,
    );
    assert_binding_not_found(
        &read(&gw, &format!("{BINDINGS}/{bind_b}"), &developer).await,
        &bind_b,
    );
    assert_key_not_found(
        &read(&gw, &format!("{KEYS}/{key_b}"), &developer).await,
        &key_b,
    );
    let a_bindings = format!("{INSTANCES}/{a}/service_bindings");
    assert_listed(&read(&gw, &a_bindings, &auditor).await, &[&bind_a]);
    assert_instance_not_found(&read(&gw, &a_bindings, &outsider).await, &a);
    let a_keys = format!("{INSTANCES}/{a}/service_keys");
    assert_listed(&read(&gw, &a_keys, &auditor).await, &[&key_a]);
    assert_instance_not_found(&read(&gw, &a_keys, &outsider).await, &a);
    // Hidden is brokergate's own answer: nothing of it went to the Cloud Controller's v2.
    assert_eq!(passed_upstream(&cc), Vec::<String>::new());

    // Lists: each caller's own spaces, one spaces list per caller for every kind.
    cc.reset_calls();
    assert_listed(&read(&gw, INSTANCES, &developer).await, &[&a]);
    assert_listed(&read(&gw, BINDINGS, &developer).await, &[&bind_a]);
    assert_listed(&read(&gw, KEYS, &developer).await, &[&key_a]);
    assert_eq!(
        asked(&cc),
        Asked {
            spaces_list: 1,
            ..NOTHING
        }
    );
    assert_eq!(
        bearer_token(cc.last_authorization(Question::SpacesList)),
        developer
    );
    let lists: Vec<String> = cc
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/v3/spaces?"))
        .map(|r| r.path)
        .collect();
    assert_eq!(lists, ["/v3/spaces?per_page=1000&page=1"]);
    assert_listed(&read(&gw, INSTANCES, &auditor).await, &[&a]);
    assert_listed(&read(&gw, INSTANCES, &outsider).await, &[&b]);
    assert_listed(&read(&gw, BINDINGS, &outsider).await, &[&bind_b]);
    assert_listed(&read(&gw, KEYS, &outsider).await, &[&key_b]);
    assert_eq!(asked(&cc).spaces_list, 3, "developer, auditor, outsider");
    // A user who sees no space sees an empty list.
    let nobody = user_token("user-nobody");
    assert_listed(&read(&gw, INSTANCES, &nobody).await, &[]);

    // Read-all tokens see everything, without a question.
    cc.reset_calls();
    for token in [global_auditor(), admin()] {
        assert_eq!(listed(&read(&gw, INSTANCES, &token).await).len(), 2);
        assert_eq!(listed(&read(&gw, BINDINGS, &token).await).len(), 2);
        assert_eq!(listed(&read(&gw, KEYS, &token).await).len(), 2);
        for path in [
            format!("{INSTANCES}/{a}"),
            format!("{INSTANCES}/{b}"),
            format!("{BINDINGS}/{bind_b}"),
            format!("{KEYS}/{key_b}"),
        ] {
            assert_eq!(read(&gw, &path, &token).await.status, 200, "{path}");
        }
    }
    assert_eq!(asked(&cc), NOTHING);
}

#[tokio::test]
async fn every_page_of_the_callers_spaces_counts_and_too_many_is_503_not_a_short_list() {
    const ORG3_GUID: &str = "7c6b5a49-3827-4165-9d4e-3f2a1b0c9d8e";
    const ORG_MANAGER: &str = "user-org-manager";
    let space = |n: usize| format!("00000000-0000-4000-8000-{n:012}");
    let Setup {
        cc,
        gw,
        broker: _broker,
    } = start(|c| c.authorization_key("cache_seconds", 0)).await;
    // An organization manager sees every space of the organization: 1001 of them, two pages.
    cc.add_org(ORG3_GUID, "big-org");
    for n in 1..=1001 {
        cc.add_space(&space(n), &format!("space-{n}"), ORG3_GUID);
    }
    cc.grant(ORG_MANAGER, Role::OrgManager, ORG3_GUID);
    let first = created_in(&gw, &admin(), &space(1)).await;
    let last = created_in(&gw, &admin(), &space(1001)).await;
    let _elsewhere = created_in(&gw, &admin(), SPACE_GUID).await;

    cc.clear_requests();
    let manager = user_token(ORG_MANAGER);
    assert_listed(&read(&gw, INSTANCES, &manager).await, &[&first, &last]);
    // The v3 calls only: the list also asks the upstream for its own instances.
    let pages: Vec<String> = cc
        .requests()
        .into_iter()
        .map(|r| r.path)
        .filter(|p| p.starts_with("/v3/"))
        .collect();
    assert_eq!(
        pages,
        [
            "/v3/spaces?per_page=1000&page=1",
            "/v3/spaces?per_page=1000&page=2"
        ]
    );

    // More spaces than brokergate holds a list of (10 000): refused, never cut short.
    for n in 1002..=10_001 {
        cc.add_space(&space(n), &format!("space-{n}"), ORG3_GUID);
    }
    let started = Instant::now();
    assert_unavailable(&read(&gw, INSTANCES, &manager).await);
    assert!(started.elapsed() < PROMPT * 2, "{:?}", started.elapsed());
    assert_eq!(
        authz_requests(&gw, "visible_spaces", "unavailable").await,
        1.0
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Changes: rename, delete, bind, unbind, keys
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn only_a_developer_renames_deletes_binds_and_makes_keys() {
    let Setup { cc, broker, gw } = start(|c| c.authorization_key("cache_seconds", 0)).await;
    let developer = user_token(DEVELOPER);
    let instance = created_in(&gw, &developer, SPACE_GUID).await;
    let binding = bind(&gw, &developer, &instance, "app-1").await;
    assert_eq!(binding.status, 201, "{binding:?}");
    let key = make_key(&gw, &developer, &instance, "key-1").await;
    assert_eq!(key.status, 201, "{key:?}");
    let (binding, key) = (guid(&binding), guid(&key));
    let name = read(&gw, &format!("{INSTANCES}/{instance}"), &developer)
        .await
        .json()["entity"]["name"]
        .clone();
    let before = broker_calls(&broker);

    let i_path = format!("{INSTANCES}/{instance}");
    let b_path = format!("{BINDINGS}/{binding}");
    let k_path = format!("{KEYS}/{key}");
    let rename = json!({"name": "renamed"});
    // Each change, by one caller.
    let attempts = |token: String| {
        let (gw, instance, i_path, b_path, k_path, rename) = (
            &gw,
            instance.clone(),
            i_path.clone(),
            b_path.clone(),
            k_path.clone(),
            rename.clone(),
        );
        async move {
            vec![
                (
                    "rename",
                    call(gw, "PUT", &i_path, &token, Some(rename)).await,
                ),
                ("bind", bind(gw, &token, &instance, "app-2").await),
                ("key", make_key(gw, &token, &instance, "key-2").await),
                ("unbind", call(gw, "DELETE", &b_path, &token, None).await),
                (
                    "delete key",
                    call(gw, "DELETE", &k_path, &token, None).await,
                ),
                ("delete", call(gw, "DELETE", &i_path, &token, None).await),
            ]
        }
    };

    // Members who are not developers: not authorized.
    for user in [AUDITOR, MANAGER] {
        for (what, resp) in attempts(user_token(user)).await {
            assert_eq!(resp.status, 403, "{user} {what}: {resp:?}");
            assert_not_authorized(&resp);
        }
    }
    // Someone who cannot see the space: not found, each in its own kind.
    for (what, resp) in attempts(user_token(OUTSIDER)).await {
        match what {
            "unbind" => assert_binding_not_found(&resp, &binding),
            "delete key" => assert_key_not_found(&resp, &key),
            _ => assert_instance_not_found(&resp, &instance),
        }
    }
    // Its own developer, in a suspended organization: not authorized.
    cc.suspend_org(ORG_GUID, true);
    for (what, resp) in attempts(developer.clone()).await {
        assert_eq!(resp.status, 403, "suspended {what}: {resp:?}");
        assert_not_authorized(&resp);
    }
    cc.suspend_org(ORG_GUID, false);
    assert_eq!(
        broker_calls(&broker),
        before,
        "no broker call for a refusal"
    );
    assert_eq!(passed_upstream(&cc), Vec::<String>::new());
    let seen = read(&gw, &i_path, &admin()).await;
    assert_eq!(seen.json()["entity"]["name"], name, "unchanged: {seen:?}");

    // The developer does each.
    let done = attempts(developer.clone()).await;
    let statuses: Vec<(&str, u16)> = done.iter().map(|(w, r)| (*w, r.status)).collect();
    assert_eq!(
        statuses,
        [
            ("rename", 201),
            ("bind", 201),
            ("key", 201),
            ("unbind", 204),
            ("delete key", 204),
            // The binding and the key made just before are still there.
            ("delete", 400),
        ],
        "{done:#?}"
    );
    assert_eq!(done[0].1.json()["entity"]["name"], "renamed");
    let resp = call(
        &gw,
        "DELETE",
        &format!("{i_path}?recursive=true"),
        &developer,
        None,
    )
    .await;
    assert_eq!(resp.status, 204, "{resp:?}");
    let [provisions, binds, unbinds, deletes] = before;
    assert_eq!(
        broker_calls(&broker),
        [provisions, binds + 2, unbinds + 4, deletes + 1]
    );
}

// ---------------------------------------------------------------------------------------------
// 9. Static authorization
// ---------------------------------------------------------------------------------------------

const NO_ROLE_LISTS_WARNING: &str = "no [[spaces]] entry has role lists";
const WITH_ROLE_LISTS: &str = "with role lists in 1 of 2 spaces";

#[tokio::test]
async fn static_without_role_lists_lets_every_writer_in_and_says_so() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let gw = Gateway::start(GatewayConfig::new(&broker.url())).await;
    let warned = support::wait_until(EFFECT_TIMEOUT, || {
        gw.stderr().contains(NO_ROLE_LISTS_WARNING)
    })
    .await;
    assert!(warned, "{}", gw.stderr());
    let mut guids = Vec::new();
    for user in [DEVELOPER, AUDITOR, OUTSIDER] {
        guids.push(created_in(&gw, &user_token(user), SPACE_GUID).await);
    }
    assert_eq!(broker.provision_count(), 3);
    // Every reader sees them all, and every writer changes any.
    assert_eq!(
        listed(&read(&gw, INSTANCES, &read_only(MANAGER)).await).len(),
        3
    );
    let path = format!("{INSTANCES}/{}", guids[0]);
    let resp = call(&gw, "DELETE", &path, &user_token(OUTSIDER), None).await;
    assert_eq!(resp.status, 204, "{resp:?}");
}

#[tokio::test]
async fn static_role_lists_let_developers_change_and_members_see() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let listed_space = format!(
        r#"[[spaces]]
guid = "{SPACE2_GUID}"
organization_guid = "{ORG2_GUID}"
developers = ["{DEVELOPER}"]
auditors = ["{AUDITOR}"]
managers = ["{MANAGER}"]
"#
    );
    let config = GatewayConfig::new(&broker.url())
        .static_authorization()
        .extra_toml(&listed_space);
    let gw = Gateway::start(config).await;
    // Said instead: which spaces have lists.
    let said = support::wait_until(EFFECT_TIMEOUT, || gw.stderr().contains(WITH_ROLE_LISTS)).await;
    assert!(said, "{}", gw.stderr());
    assert!(
        !gw.stderr().contains(NO_ROLE_LISTS_WARNING),
        "{}",
        gw.stderr()
    );

    let developer = user_token(DEVELOPER);
    let mine = created_in(&gw, &developer, SPACE2_GUID).await;
    for user in [AUDITOR, MANAGER] {
        assert_not_authorized(&create_in(&gw, &user_token(user), SPACE2_GUID).await);
    }
    let outsider = user_token(OUTSIDER);
    assert_invalid_space(&create_in(&gw, &outsider, SPACE2_GUID).await);
    assert_eq!(broker.provision_count(), 1);
    // The seeded space has no lists: open to every writer still.
    let open = created_in(&gw, &outsider, SPACE_GUID).await;

    // Members see; others do not.
    let path = format!("{INSTANCES}/{mine}");
    assert_eq!(read(&gw, &path, &user_token(AUDITOR)).await.status, 200);
    assert_instance_not_found(&read(&gw, &path, &outsider).await, &mine);
    assert_listed(&read(&gw, INSTANCES, &outsider).await, &[&open]);
    for token in [developer.clone(), user_token(AUDITOR), global_auditor()] {
        assert_listed(&read(&gw, INSTANCES, &token).await, &[&mine, &open]);
    }
    // Only developers change.
    assert_not_authorized(&call(&gw, "DELETE", &path, &user_token(AUDITOR), None).await);
    assert_instance_not_found(&call(&gw, "DELETE", &path, &outsider, None).await, &mine);
    assert_eq!(broker.delete_count(), 0);
    let resp = call(&gw, "DELETE", &path, &developer, None).await;
    assert_eq!(resp.status, 204, "{resp:?}");
}

// ---------------------------------------------------------------------------------------------
// 10. Metrics and the access log
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn metrics_and_the_access_log_tell_what_authorization_came_to() {
    let Setup {
        cc,
        gw,
        broker: _broker,
    } = start(|c| c).await;

    let resp = create_in(&gw, &user_token(DEVELOPER), SPACE_GUID).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    let instance = guid(&resp);
    for question in ["space", "feature_flag", "organization", "role"] {
        assert_eq!(
            authz_requests(&gw, question, "allowed").await,
            1.0,
            "{question}"
        );
        let count = metric(&gw, AUTHZ_DURATION_COUNT, &[("question", question)]).await;
        assert_eq!(count, Some(1.0), "{question}");
    }
    let line = access_line(&gw, &resp).await;
    assert_eq!(line["authorization"], "allowed", "{line}");
    assert_eq!(line["user_id"], DEVELOPER, "{line}");

    // A second create is answered from the cache: a hit, no new request.
    let resp = create_in(&gw, &user_token(DEVELOPER), SPACE_GUID).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(authz_requests(&gw, "role", "allowed").await, 1.0);
    assert_eq!(
        metric(&gw, AUTHZ_CACHE_HITS, &[("question", "role")]).await,
        Some(1.0)
    );
    assert_eq!(access_line(&gw, &resp).await["authorization"], "allowed");

    // Refused by the role, and by the space.
    let resp = create_in(&gw, &user_token(AUDITOR), SPACE_GUID).await;
    assert_not_authorized(&resp);
    assert_eq!(authz_requests(&gw, "role", "denied").await, 1.0);
    assert_eq!(access_line(&gw, &resp).await["authorization"], "denied");
    let resp = create_in(&gw, &user_token(OUTSIDER), SPACE_GUID).await;
    assert_invalid_space(&resp);
    assert_eq!(authz_requests(&gw, "space", "denied").await, 1.0);
    assert_eq!(access_line(&gw, &resp).await["authorization"], "denied");

    // A read hidden from the caller: denied too.
    let resp = read(
        &gw,
        &format!("{INSTANCES}/{instance}"),
        &user_token(OUTSIDER),
    )
    .await;
    assert_instance_not_found(&resp, &instance);
    assert_eq!(access_line(&gw, &resp).await["authorization"], "denied");

    // Never asked: null.
    let resp = create_with(&gw, &user_token(DEVELOPER), "{").await;
    assert_eq!(resp.status, 400, "{resp:?}");
    assert_eq!(access_line(&gw, &resp).await["authorization"], Value::Null);

    // Undecided (the manager's answers are not in the cache).
    cc.set_mode(Mode::Down);
    let resp = create_in(&gw, &user_token(MANAGER), SPACE_GUID).await;
    assert_unavailable(&resp);
    assert_eq!(authz_requests(&gw, "space", "unavailable").await, 1.0);
    assert_eq!(
        access_line(&gw, &resp).await["authorization"],
        "unavailable"
    );
}
