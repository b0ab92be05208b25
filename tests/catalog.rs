//! The catalog (issue 12), black-box: brokergate's own offerings and plans (from `[[services]]`
//! and `[[plans]]`) served and merged with the upstream Cloud Controller's own v2 catalog (the
//! fake of `support::cc_v3`, the gateway's `[upstream]`). What it proves, for what the cf CLI
//! relies on:
//!
//! 1. served: `GET /v2/services/:guid`, `/v2/services/:guid/service_plans` and
//!    `/v2/service_plans/:guid` for brokergate's guids, with the fields the CLI reads (`extra` a
//!    JSON string or null, `service_broker_guid` null, `plan_updateable` false, the links), no
//!    upstream call; other guids reach the upstream unchanged and its answer comes back.
//! 2. merged: `GET /v2/services`, `/v2/service_plans`, `/v2/spaces/:guid/services`, walked page
//!    by page with `results-per-page` 1, 2 and 4 both ways: every item once, the upstream's
//!    first, `total_results` the sum, links that lead back and forth, one upstream call per page
//!    for that page and query.
//! 3. `q`: `label` and `service_guid` filter both lists; a `service_guid` only brokergate knows
//!    is answered without an upstream call.
//! 4. the caller's `Authorization` and `X-VCAP-Request-ID` reach the upstream on every call.
//! 5. an upstream 4xx/5xx comes back as it came; an upstream that is down (closed, reset,
//!    refused) is 502 `CF-ServerError`; never a partial list.
//! 6. the cf CLI v6 sequences of `cf marketplace` and `cf create-service echo free NAME`.
//! 7. plan visibility with the Cloud Controller as authorizer: a `public = false` plan (and an
//!    offering whose only plan it is) is shown to admins, read-all tokens and members of its
//!    organizations only; a space's offerings are those with a plan visible to the space's
//!    organization, whoever asks.
//! 8. no token is 401, a token without `cloud_controller.read` 403, the upstream unasked; a
//!    space `[[spaces]]` does not list, let through by `accept_unknown_spaces`.
//! 9. `order-direction=desc` reverses each part; an unlisted space keeps the upstream's
//!    offerings; `q=active:t` is true, as the Cloud Controller reads it.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use support::broker::MockBroker;
use support::cc::{assert_cc_error, CC_JSON};
use support::cc_v3::{
    user_claims, user_token, v2_error_body, FakeCloudController, Mode, Question, Role, DEVELOPER,
    OUTSIDER, UPSTREAM_MYSQL_GUID, UPSTREAM_MYSQL_LABEL, UPSTREAM_MYSQL_PLAN_GUID,
    UPSTREAM_REDIS_GUID, UPSTREAM_REDIS_LABEL, UPSTREAM_REDIS_PLAN_GUID,
};
use support::client::{self, Response};
use support::gateway::{Gateway, GatewayConfig, BROKER_NAME, BROKER_TOKEN, PLAN_GUID, SPACE_GUID};
use support::recorded::RecordedRequest;
use support::token;

// ---------------------------------------------------------------------------------------------
// The catalogs
// ---------------------------------------------------------------------------------------------

/// The seed plan's offering, derived from its label and version.
const ECHO_SERVICE_GUID: &str = "3dcca525-780d-5783-84f7-8a1c014e5780";

/// A declared `[[services]]` offering with every catalog field set, and its plans.
const PG_SERVICE_GUID: &str = "7c1f0e2a-3b4d-4e5f-8a6b-7c8d9e0f1a2b";
const PG_LABEL: &str = "bg-postgres";
const PG_EXTRA: &str = r#"{"displayName":"Postgres","imageUrl":"https://pg.example.com/logo.png"}"#;
const PG_PLAN_GUID: &str = "7c1f0e2a-3b4d-4e5f-8a6b-00000000a001";
const PG_PLAN_EXTRA: &str = r#"{"costs":[{"amount":{"usd":10.0},"unit":"MONTHLY"}]}"#;
/// `public = false`, for [`ORG2_GUID`] only.
const PG_PRIVATE_PLAN_GUID: &str = "7c1f0e2a-3b4d-4e5f-8a6b-00000000a002";
/// An offering whose only plan is `public = false`, for [`ORG2_GUID`] only.
const SECRET_SERVICE_GUID: &str = "5d2e1f3a-4b5c-4d6e-9f7a-8b9c0d1e2f3a";
const SECRET_LABEL: &str = "bg-secret";
const SECRET_PLAN_GUID: &str = "5d2e1f3a-4b5c-4d6e-9f7a-00000000b001";

/// A second organization and space in the fake's v3 world; [`OUTSIDER`] develops there.
const ORG2_GUID: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
const SPACE2_GUID: &str = "5e1c2d3a-7b8c-4d9e-8f0a-1b2c3d4e5f60";

/// A third offering (and plan) of the upstream, so that its list does not end on a page
/// boundary of 2.
const UPSTREAM_THIRD_GUID: &str = "a1b2c3d4-0003-4000-8000-00000000e003";
const UPSTREAM_THIRD_LABEL: &str = "upstream-third";
const UPSTREAM_THIRD_PLAN_GUID: &str = "a1b2c3d4-0003-4000-8000-00000000f003";

/// The upstream's offerings and plans, in its order.
const UPSTREAM_SERVICES: [&str; 3] = [
    UPSTREAM_MYSQL_GUID,
    UPSTREAM_REDIS_GUID,
    UPSTREAM_THIRD_GUID,
];
const UPSTREAM_PLANS: [&str; 3] = [
    UPSTREAM_MYSQL_PLAN_GUID,
    UPSTREAM_REDIS_PLAN_GUID,
    UPSTREAM_THIRD_PLAN_GUID,
];
/// brokergate's, as an admin sees them (in an order the test learns).
const OWN_SERVICES: [&str; 3] = [ECHO_SERVICE_GUID, PG_SERVICE_GUID, SECRET_SERVICE_GUID];
const OWN_PLANS: [&str; 4] = [
    PLAN_GUID,
    PG_PLAN_GUID,
    PG_PRIVATE_PLAN_GUID,
    SECRET_PLAN_GUID,
];
/// brokergate's offerings in a space of the seeded organization, whoever asks: those with a
/// plan visible to the space's organization (not [`SECRET_SERVICE_GUID`], even for an admin).
const OWN_SERVICES_IN_SPACE: [&str; 2] = [ECHO_SERVICE_GUID, PG_SERVICE_GUID];

/// brokergate's catalog beyond the seed plan.
fn catalog_toml() -> String {
    format!(
        r#"
[[services]]
guid = "{PG_SERVICE_GUID}"
label = "{PG_LABEL}"
version = "9.6"
broker = "{BROKER_NAME}"
description = "PostgreSQL from brokergate"
url = "http://pg.example.com"
long_description = "A PostgreSQL database on a shared cluster"
info_url = "https://pg.example.com/info"
documentation_url = "https://pg.example.com/docs"
tags = ["relational", "sql"]
extra = '{PG_EXTRA}'
unique_id = "bg-postgres-id"

[[plans]]
guid = "{PG_PLAN_GUID}"
service = "{PG_SERVICE_GUID}"
name = "standard"
unique_id = "bg-postgres-standard"
description = "A standard database"
free = false
extra = '{PG_PLAN_EXTRA}'

[[plans]]
guid = "{PG_PRIVATE_PLAN_GUID}"
service = "{PG_SERVICE_GUID}"
name = "private"
unique_id = "bg-postgres-private"
description = "For the second organization"
public = false
organizations = ["{ORG2_GUID}"]

[[services]]
guid = "{SECRET_SERVICE_GUID}"
label = "{SECRET_LABEL}"
version = "1"
broker = "{BROKER_NAME}"
description = "Only for the second organization"

[[plans]]
guid = "{SECRET_PLAN_GUID}"
service = "{SECRET_SERVICE_GUID}"
name = "secret"
unique_id = "bg-secret-plan"
public = false
organizations = ["{ORG2_GUID}"]
"#
    )
}

// ---------------------------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------------------------

/// The fake Cloud Controller (the gateway's `[upstream]`), the echo broker, and a gateway.
struct Setup {
    cc: FakeCloudController,
    broker: MockBroker,
    gw: Gateway,
}

/// The fake's default world and v2 catalog plus [`UPSTREAM_THIRD_GUID`], [`SPACE2_GUID`] in
/// [`ORG2_GUID`] with [`OUTSIDER`] its developer; a gateway with [`catalog_toml`] on static
/// authorization.
async fn start() -> Setup {
    start_with(|c| c.static_authorization()).await
}

/// [`start`] with the gateway's config passed through `config` (without static
/// authorization: the Cloud Controller authorizes).
async fn start_with(config: impl FnOnce(GatewayConfig) -> GatewayConfig) -> Setup {
    let cc = FakeCloudController::with_default_world().await;
    cc.add_org(ORG2_GUID, "second-org");
    cc.add_space(SPACE2_GUID, "second-space", ORG2_GUID);
    cc.grant(OUTSIDER, Role::SpaceDeveloper, SPACE2_GUID);
    cc.add_v2_service(UPSTREAM_THIRD_GUID, UPSTREAM_THIRD_LABEL);
    cc.add_v2_plan(UPSTREAM_THIRD_PLAN_GUID, UPSTREAM_THIRD_GUID, "third-plan");
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let base = GatewayConfig::new(&broker.url())
        .upstream(&cc.url())
        .extra_toml(&catalog_toml());
    let gw = Gateway::start(config(base)).await;
    Setup { cc, broker, gw }
}

fn admin() -> String {
    token::valid_token()
}

/// `GET` on the gateway with `bearer <token>`.
async fn get(gw: &Gateway, path: &str, token: &str) -> Response {
    client::get(&format!("{}{path}", gw.url()), Some(token)).await
}

/// `GET` with `bearer <token>` and this `X-VCAP-Request-ID`.
async fn get_with_id(gw: &Gateway, path: &str, token: &str, request_id: &str) -> Response {
    let auth = format!("bearer {token}");
    client::send(
        "GET",
        &format!("{}{path}", gw.url()),
        &[
            ("authorization", auth.as_str()),
            ("x-vcap-request-id", request_id),
        ],
        "",
    )
    .await
}

/// A 200 with CC's Content-Type; the body.
fn ok(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type").as_deref(), Some(CC_JSON), "{r:?}");
    r.json()
}

fn guids(list: &Value) -> Vec<String> {
    list["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("no resources in {list}"))
        .iter()
        .map(|r| r["metadata"]["guid"].as_str().expect("guid").to_string())
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The query of a request the upstream received, decoded: key → values in order.
fn query_of(req: &RecordedRequest) -> BTreeMap<String, Vec<String>> {
    let query = req.path.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()).into_owned() {
        out.entry(k).or_default().push(v);
    }
    out
}

/// The upstream was asked exactly once since the last reset, on `path`, for page `page` of
/// `per_page` (given, or CC's defaults 1 and 50 left out), direction `direction`, and these
/// `q` values; its request.
fn assert_asked_once(
    cc: &FakeCloudController,
    path: &str,
    page: u32,
    per_page: u32,
    direction: &str,
    q: &[&str],
) -> RecordedRequest {
    let asked = cc.v2_requests();
    assert_eq!(asked.len(), 1, "one upstream call for the page: {asked:#?}");
    let req = asked.into_iter().next().unwrap();
    assert_eq!(req.path_only(), path, "{req:?}");
    let query = query_of(&req);
    let one = |key: &str, default: &str| -> String {
        match query.get(key).map(Vec::as_slice) {
            None => default.to_string(),
            Some([v]) => v.clone(),
            Some(more) => panic!("{key} given {} times: {req:?}", more.len()),
        }
    };
    assert_eq!(one("page", "1"), page.to_string(), "{req:?}");
    assert_eq!(
        one("results-per-page", "50"),
        per_page.to_string(),
        "{req:?}"
    );
    assert_eq!(one("order-direction", "asc"), direction, "{req:?}");
    let sent_q: Vec<&str> = query
        .get("q")
        .map(|v| v.iter().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(sent_q, q, "the same q: {req:?}");
    req
}

/// The merged list at `path` (no query of its own but `extra`, e.g. `q=label:x&`) walked with
/// `next_url` from page 1 of `per_page` in `direction`: each page checked (total, page count,
/// the upstream asked once for that page, `prev_url` leading back to the page before); the
/// guids in order.
async fn walk(
    s: &Setup,
    token: &str,
    path: &str,
    extra: &str,
    q: &[&str],
    per_page: u32,
    direction: &str,
) -> Vec<String> {
    let mut link = Some(format!(
        "{path}?{extra}order-direction={direction}&results-per-page={per_page}"
    ));
    let mut seen = Vec::new();
    let mut pages: Vec<Vec<String>> = Vec::new();
    let mut total = None;
    while let Some(current) = link {
        assert!(pages.len() < 20, "too many pages walking {path}");
        s.cc.reset_v2_calls();
        let page = ok(&get(&s.gw, &current, token).await);
        let k = u32::try_from(pages.len() + 1).unwrap();
        assert_asked_once(&s.cc, path, k, per_page, direction, q);
        let t = page["total_results"].as_u64().expect("total_results");
        assert_eq!(
            *total.get_or_insert(t),
            t,
            "the same total on every page: {page}"
        );
        assert_eq!(
            page["total_pages"].as_u64().unwrap(),
            t.div_ceil(u64::from(per_page)).max(1),
            "{page}"
        );
        let items = guids(&page);
        let expected_len = t
            .saturating_sub(u64::from(k - 1) * u64::from(per_page))
            .min(u64::from(per_page));
        assert_eq!(
            items.len() as u64,
            expected_len,
            "page {k} of {current}: {page}"
        );
        match page["prev_url"].as_str() {
            None => assert_eq!(k, 1, "only page 1 has no prev_url: {page}"),
            Some(prev) => {
                assert!(k > 1, "page 1 has no prev_url: {page}");
                assert!(prev.starts_with(&format!("{path}?")), "relative: {prev}");
                let back = ok(&get(&s.gw, prev, token).await);
                assert_eq!(guids(&back), pages[pages.len() - 1], "prev_url of page {k}");
            }
        }
        if let Some(next) = page["next_url"].as_str() {
            assert!(next.starts_with(&format!("{path}?")), "relative: {next}");
            assert!(
                next.contains(&format!("page={}", k + 1)),
                "next_url of page {k}: {next}"
            );
        }
        seen.extend(items.iter().cloned());
        pages.push(items);
        link = page["next_url"].as_str().map(str::to_string);
    }
    let total = total.unwrap();
    assert_eq!(
        seen.len() as u64,
        total,
        "every item of {total} once: {seen:?}"
    );
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no item twice: {seen:?}");
    seen
}

/// The fields the cf CLI v6 reads from an offering (`ccv2.Service`): a guid, a label, a
/// description, `extra` a JSON string holding an object (the CLI decodes it) or null, and
/// `documentation_url` a string or null.
fn assert_cli_reads_service(resource: &Value) {
    assert!(resource["metadata"]["guid"].is_string(), "{resource}");
    let e = &resource["entity"];
    assert!(e["label"].is_string(), "{resource}");
    assert!(e["description"].is_string(), "{resource}");
    match &e["extra"] {
        Value::Null => {}
        Value::String(text) => {
            let parsed: Value = serde_json::from_str(text)
                .unwrap_or_else(|err| panic!("extra is not JSON text ({err}): {resource}"));
            assert!(parsed.is_object(), "extra holds an object: {resource}");
        }
        other => panic!("extra must be a string or null, not {other}: {resource}"),
    }
    assert!(
        e["documentation_url"].is_string() || e["documentation_url"].is_null(),
        "{resource}"
    );
}

/// The fields the cf CLI v6 reads from a plan (`ccv2.ServicePlan`).
fn assert_cli_reads_plan(resource: &Value) {
    assert!(resource["metadata"]["guid"].is_string(), "{resource}");
    let e = &resource["entity"];
    assert!(e["name"].is_string(), "{resource}");
    assert!(e["service_guid"].is_string(), "{resource}");
    assert!(e["free"].is_boolean(), "{resource}");
    assert!(e["public"].is_boolean(), "{resource}");
    assert!(e["description"].is_string(), "{resource}");
}

// ---------------------------------------------------------------------------------------------
// 1. Served
// ---------------------------------------------------------------------------------------------

#[test]
fn the_seed_plans_offering_guid_is_derived_from_label_and_version() {
    assert_eq!(
        brokergate::config::derived_service_guid("echo", "1.0"),
        ECHO_SERVICE_GUID
    );
}

#[tokio::test]
async fn brokergates_offerings_are_served_with_every_catalog_field() {
    let s = start().await;
    let admin = admin();

    let pg = ok(&get(&s.gw, &format!("/v2/services/{PG_SERVICE_GUID}"), &admin).await);
    assert_eq!(pg["metadata"]["guid"], PG_SERVICE_GUID);
    assert_eq!(
        pg["metadata"]["url"],
        format!("/v2/services/{PG_SERVICE_GUID}")
    );
    assert_eq!(
        pg["entity"],
        json!({
            "label": PG_LABEL,
            "provider": null,
            "url": "http://pg.example.com",
            "description": "PostgreSQL from brokergate",
            "long_description": "A PostgreSQL database on a shared cluster",
            "version": "9.6",
            "info_url": "https://pg.example.com/info",
            "active": true,
            "bindable": true,
            "unique_id": "bg-postgres-id",
            "extra": PG_EXTRA,
            "tags": ["relational", "sql"],
            "requires": [],
            "documentation_url": "https://pg.example.com/docs",
            "service_broker_guid": null,
            "plan_updateable": false,
            "service_plans_url": format!("/v2/services/{PG_SERVICE_GUID}/service_plans"),
        }),
        "{pg}"
    );
    assert_cli_reads_service(&pg);

    // The seed plan's derived offering: label, version and provider from the plan.
    let echo = ok(&get(&s.gw, &format!("/v2/services/{ECHO_SERVICE_GUID}"), &admin).await);
    assert_cli_reads_service(&echo);
    let e = &echo["entity"];
    assert_eq!(
        (&e["label"], &e["version"], &e["provider"]),
        (&json!("echo"), &json!("1.0"), &json!("core")),
        "{echo}"
    );
    assert_eq!(e["extra"], Value::Null, "no extra is null: {echo}");
    assert_eq!(e["documentation_url"], Value::Null, "{echo}");
    assert_eq!(e["service_broker_guid"], Value::Null, "{echo}");
    assert_eq!(e["plan_updateable"], false, "{echo}");
    assert_eq!(e["active"], true, "{echo}");
    assert_eq!(
        e["service_plans_url"],
        format!("/v2/services/{ECHO_SERVICE_GUID}/service_plans")
    );
    assert_eq!(
        echo["metadata"]["url"],
        format!("/v2/services/{ECHO_SERVICE_GUID}")
    );

    assert_eq!(s.cc.v2_calls(""), 0, "brokergate's own: no upstream call");
    assert!(s.broker.requests().is_empty(), "nor a broker call");
}

#[tokio::test]
async fn brokergates_plans_are_served_alone_and_per_offering() {
    let s = start().await;
    let admin = admin();

    let free = ok(&get(&s.gw, &format!("/v2/service_plans/{PLAN_GUID}"), &admin).await);
    assert_cli_reads_plan(&free);
    assert_eq!(free["metadata"]["guid"], PLAN_GUID);
    assert_eq!(
        free["metadata"]["url"],
        format!("/v2/service_plans/{PLAN_GUID}")
    );
    let e = &free["entity"];
    assert_eq!(e["name"], "free", "{free}");
    assert_eq!(e["service_guid"], ECHO_SERVICE_GUID, "{free}");
    assert_eq!(e["unique_id"], "echo-free", "{free}");
    assert_eq!((&e["free"], &e["public"]), (&json!(true), &json!(true)));
    assert_eq!(e["description"], "", "{free}");
    assert_eq!(e["extra"], Value::Null, "{free}");
    assert_eq!(
        e["service_url"],
        format!("/v2/services/{ECHO_SERVICE_GUID}")
    );
    assert_eq!(
        e["service_instances_url"],
        format!("/v2/service_plans/{PLAN_GUID}/service_instances")
    );

    let standard = ok(&get(&s.gw, &format!("/v2/service_plans/{PG_PLAN_GUID}"), &admin).await);
    assert_cli_reads_plan(&standard);
    let e = &standard["entity"];
    assert_eq!(
        (
            &e["name"],
            &e["service_guid"],
            &e["free"],
            &e["public"],
            &e["description"],
            &e["extra"],
            &e["unique_id"],
            &e["active"]
        ),
        (
            &json!("standard"),
            &json!(PG_SERVICE_GUID),
            &json!(false),
            &json!(true),
            &json!("A standard database"),
            &json!(PG_PLAN_EXTRA),
            &json!("bg-postgres-standard"),
            &json!(true)
        ),
        "{standard}"
    );
    let private = ok(&get(
        &s.gw,
        &format!("/v2/service_plans/{PG_PRIVATE_PLAN_GUID}"),
        &admin,
    )
    .await);
    assert_eq!(private["entity"]["public"], false, "{private}");
    assert_eq!(private["entity"]["name"], "private");

    let of_pg = ok(&get(
        &s.gw,
        &format!("/v2/services/{PG_SERVICE_GUID}/service_plans"),
        &admin,
    )
    .await);
    assert_eq!(of_pg["total_results"], 2, "{of_pg}");
    let mut got = guids(&of_pg);
    got.sort();
    let mut want = strings(&[PG_PLAN_GUID, PG_PRIVATE_PLAN_GUID]);
    want.sort();
    assert_eq!(got, want, "{of_pg}");
    for plan in of_pg["resources"].as_array().unwrap() {
        assert_cli_reads_plan(plan);
        assert_eq!(plan["entity"]["service_guid"], PG_SERVICE_GUID);
    }
    assert_eq!(of_pg["resources"][0]["entity"], {
        let first = of_pg["resources"][0]["metadata"]["guid"].as_str().unwrap();
        ok(&get(&s.gw, &format!("/v2/service_plans/{first}"), &admin).await)["entity"].clone()
    });

    let of_echo = ok(&get(
        &s.gw,
        &format!("/v2/services/{ECHO_SERVICE_GUID}/service_plans"),
        &admin,
    )
    .await);
    assert_eq!(guids(&of_echo), [PLAN_GUID]);
    assert_eq!(of_echo["total_results"], 1);
    assert_eq!(of_echo["resources"][0], free);

    // Paged like every v2 list.
    let page = ok(&get(
        &s.gw,
        &format!("/v2/services/{PG_SERVICE_GUID}/service_plans?results-per-page=1&page=2"),
        &admin,
    )
    .await);
    assert_eq!(
        (&page["total_results"], &page["total_pages"]),
        (&json!(2), &json!(2))
    );
    assert_eq!(guids(&page).len(), 1);
    assert_eq!(page["next_url"], Value::Null);
    assert_eq!(
        page["prev_url"],
        format!(
            "/v2/services/{PG_SERVICE_GUID}/service_plans?order-direction=asc&page=1&results-per-page=1"
        )
    );

    assert_eq!(s.cc.v2_calls(""), 0, "brokergate's own: no upstream call");
}

#[tokio::test]
async fn other_guids_reach_the_upstream_unchanged_and_its_answer_comes_back() {
    let s = start().await;
    let admin = admin();
    let cases = [
        (
            format!("/v2/services/{UPSTREAM_MYSQL_GUID}"),
            200,
            s.cc.v2_service_resource(UPSTREAM_MYSQL_GUID),
        ),
        (
            format!("/v2/service_plans/{UPSTREAM_REDIS_PLAN_GUID}?inline-relations-depth=1"),
            200,
            s.cc.v2_plan_resource(UPSTREAM_REDIS_PLAN_GUID),
        ),
        (
            "/v2/services/no-such-guid".to_string(),
            404,
            v2_error_body(
                120003,
                "The service could not be found: no-such-guid",
                "CF-ServiceNotFound",
            ),
        ),
        (
            "/v2/services/no-such-guid/service_plans".to_string(),
            404,
            v2_error_body(
                120003,
                "The service could not be found: no-such-guid",
                "CF-ServiceNotFound",
            ),
        ),
        (
            "/v2/service_plans/no-such-guid".to_string(),
            404,
            v2_error_body(
                110003,
                "The service plan could not be found: no-such-guid",
                "CF-ServicePlanNotFound",
            ),
        ),
    ];
    for (path, status, body) in cases {
        s.cc.reset_v2_calls();
        let r = get(&s.gw, &path, &admin).await;
        assert_eq!((r.status, r.json()), (status, body), "{path}: {r:?}");
        let asked = s.cc.v2_requests();
        assert_eq!(asked.len(), 1, "{path}: {asked:?}");
        assert_eq!(asked[0].path, path, "unchanged");
        assert_eq!(
            s.cc.last_v2_authorization(),
            Some(format!("bearer {admin}"))
        );
    }
    let plans_of_redis = ok(&get(
        &s.gw,
        &format!("/v2/services/{UPSTREAM_REDIS_GUID}/service_plans"),
        &admin,
    )
    .await);
    assert_eq!(guids(&plans_of_redis), [UPSTREAM_REDIS_PLAN_GUID]);
    assert_eq!(
        plans_of_redis["resources"][0],
        s.cc.v2_plan_resource(UPSTREAM_REDIS_PLAN_GUID)
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Merged, page by page
// ---------------------------------------------------------------------------------------------

/// Checks a merged walk: the upstream's items first in its order (reversed for `desc`), then
/// brokergate's `own` (as a set; their order is returned).
fn split_merged(seen: &[String], upstream: &[&str], own: &[&str], desc: bool) -> Vec<String> {
    let mut up = strings(upstream);
    if desc {
        up.reverse();
    }
    assert_eq!(seen.len(), up.len() + own.len(), "{seen:?}");
    assert_eq!(seen[..up.len()], up[..], "the upstream's first: {seen:?}");
    let rest = seen[up.len()..].to_vec();
    let got: BTreeSet<&str> = rest.iter().map(String::as_str).collect();
    let want: BTreeSet<&str> = own.iter().copied().collect();
    assert_eq!(got, want, "then brokergate's: {seen:?}");
    rest
}

/// Walks `path` with 1, 2 and 4 a page, both ways; brokergate's part in each direction, the
/// same whatever the page size.
async fn assert_merged_walks(
    s: &Setup,
    path: &str,
    upstream: &[&str],
    own: &[&str],
) -> (Vec<String>, Vec<String>) {
    let admin = admin();
    let mut asc: Option<Vec<String>> = None;
    let mut desc: Option<Vec<String>> = None;
    for per_page in [1, 2, 4] {
        let seen = walk(s, &admin, path, "", &[], per_page, "asc").await;
        let rest = split_merged(&seen, upstream, own, false);
        assert_eq!(
            asc.get_or_insert_with(|| rest.clone()),
            &rest,
            "brokergate's order is the same whatever the page size"
        );
        let seen = walk(s, &admin, path, "", &[], per_page, "desc").await;
        let rest = split_merged(&seen, upstream, own, true);
        assert_eq!(
            desc.get_or_insert_with(|| rest.clone()),
            &rest,
            "brokergate's order is the same whatever the page size (desc)"
        );
    }
    (asc.unwrap(), desc.unwrap())
}

#[tokio::test]
async fn services_are_the_upstreams_then_brokergates_page_by_page() {
    let s = start().await;
    let (asc, _) = assert_merged_walks(&s, "/v2/services", &UPSTREAM_SERVICES, &OWN_SERVICES).await;
    // brokergate's part in catalog order (label).
    assert_eq!(
        asc,
        [PG_SERVICE_GUID, SECRET_SERVICE_GUID, ECHO_SERVICE_GUID]
    );

    // The links, exactly: page 2 of 2 holds the upstream's last and brokergate's first.
    let page = ok(&get(&s.gw, "/v2/services?page=2&results-per-page=2", &admin()).await);
    assert_eq!(
        (&page["total_results"], &page["total_pages"]),
        (&json!(6), &json!(3))
    );
    assert_eq!(guids(&page)[0], UPSTREAM_THIRD_GUID);
    assert!(OWN_SERVICES.contains(&guids(&page)[1].as_str()), "{page}");
    assert_eq!(
        page["prev_url"],
        "/v2/services?order-direction=asc&page=1&results-per-page=2"
    );
    assert_eq!(
        page["next_url"],
        "/v2/services?order-direction=asc&page=3&results-per-page=2"
    );
    for resource in page["resources"].as_array().unwrap() {
        assert_cli_reads_service(resource);
    }
    assert_eq!(
        page["resources"][0],
        s.cc.v2_service_resource(UPSTREAM_THIRD_GUID),
        "the upstream's item as it rendered it"
    );
}

#[tokio::test]
async fn service_plans_are_the_upstreams_then_brokergates_page_by_page() {
    let s = start().await;
    let (asc, _) = assert_merged_walks(&s, "/v2/service_plans", &UPSTREAM_PLANS, &OWN_PLANS).await;
    // brokergate's part in catalog order (offering label, plan name).
    assert_eq!(
        asc,
        [
            PG_PRIVATE_PLAN_GUID,
            PG_PLAN_GUID,
            SECRET_PLAN_GUID,
            PLAN_GUID
        ]
    );
    let all = ok(&get(&s.gw, "/v2/service_plans", &admin()).await);
    assert_eq!(all["total_results"], 7);
    assert_eq!(
        (&all["prev_url"], &all["next_url"]),
        (&Value::Null, &Value::Null)
    );
    for resource in all["resources"].as_array().unwrap() {
        assert_cli_reads_plan(resource);
    }
}

#[tokio::test]
async fn a_spaces_services_are_the_upstreams_then_brokergates_page_by_page() {
    let s = start().await;
    let path = format!("/v2/spaces/{SPACE_GUID}/services");
    assert_merged_walks(&s, &path, &UPSTREAM_SERVICES, &OWN_SERVICES_IN_SPACE).await;
}

/// With `order-direction=desc` the merged list is the upstream's list reversed, then
/// brokergate's reversed (`cc::merge`'s rule: each list in its own order), on every merged
/// list and on an offering's plans.
#[tokio::test]
async fn desc_reverses_brokergates_entries_too() {
    let s = start().await;
    let admin = admin();
    for (path, upstream, own) in [
        (
            "/v2/services".to_string(),
            &UPSTREAM_SERVICES[..],
            &OWN_SERVICES[..],
        ),
        (
            "/v2/service_plans".to_string(),
            &UPSTREAM_PLANS[..],
            &OWN_PLANS[..],
        ),
        (
            format!("/v2/spaces/{SPACE_GUID}/services"),
            &UPSTREAM_SERVICES[..],
            &OWN_SERVICES_IN_SPACE[..],
        ),
    ] {
        let asc = walk(&s, &admin, &path, "", &[], 100, "asc").await;
        let asc = split_merged(&asc, upstream, own, false);
        let desc = walk(&s, &admin, &path, "", &[], 100, "desc").await;
        let desc = split_merged(&desc, upstream, own, true);
        let mut reversed = asc.clone();
        reversed.reverse();
        assert_eq!(desc, reversed, "{path}: desc reverses brokergate's part");
    }
    let of_pg = format!("/v2/services/{PG_SERVICE_GUID}/service_plans");
    let asc = guids(&ok(&get(&s.gw, &of_pg, &admin).await));
    let desc = guids(&ok(&get(
        &s.gw,
        &format!("{of_pg}?order-direction=desc"),
        &admin,
    )
    .await));
    let mut reversed = asc.clone();
    reversed.reverse();
    assert_eq!(desc, reversed, "{of_pg}");
}

#[tokio::test]
async fn a_page_past_the_end_is_empty_with_a_link_back() {
    let s = start().await;
    let page = ok(&get(&s.gw, "/v2/services?page=9&results-per-page=2", &admin()).await);
    assert_eq!(page["resources"], json!([]), "{page}");
    assert_eq!(
        (&page["total_results"], &page["total_pages"]),
        (&json!(6), &json!(3))
    );
    assert_eq!(page["next_url"], Value::Null);
    assert_eq!(
        page["prev_url"],
        "/v2/services?order-direction=asc&page=8&results-per-page=2"
    );
}

#[tokio::test]
async fn a_query_brokergate_refuses_asks_no_one() {
    let s = start().await;
    for path in [
        "/v2/services?results-per-page=101",
        "/v2/service_plans?results-per-page=101",
        format!("/v2/spaces/{SPACE_GUID}/services?results-per-page=101").as_str(),
    ] {
        let r = get(&s.gw, path, &admin()).await;
        let body = assert_cc_error(&r, 400, 10005, "CF-BadQueryParameter");
        assert_eq!(
            body["description"], "The query parameter is invalid: results_per_page must be <= 100",
            "{path}"
        );
    }
    assert_eq!(s.cc.v2_calls(""), 0);
}

// ---------------------------------------------------------------------------------------------
// 3. q
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn q_label_filters_both_lists() {
    let s = start().await;
    let admin = admin();
    for base in [
        "/v2/services".to_string(),
        format!("/v2/spaces/{SPACE_GUID}/services"),
    ] {
        for (label, want) in [
            (UPSTREAM_REDIS_LABEL, vec![UPSTREAM_REDIS_GUID]),
            (PG_LABEL, vec![PG_SERVICE_GUID]),
            ("echo", vec![ECHO_SERVICE_GUID]),
            ("nothing-of-the-kind", vec![]),
        ] {
            let q = format!("label:{label}");
            s.cc.reset_v2_calls();
            let list = ok(&get(&s.gw, &format!("{base}?q={q}"), &admin).await);
            assert_eq!(guids(&list), want, "{base}?q={q}: {list}");
            assert_eq!(list["total_results"], want.len(), "{base}?q={q}");
            let req = assert_asked_once(&s.cc, &base, 1, 50, "asc", &[&q]);
            assert!(req.path.contains("q="), "{req:?}");
        }
        // Walked with the filter: the links keep it.
        let seen = walk(
            &s,
            &admin,
            &base,
            &format!("q=label+IN+{UPSTREAM_MYSQL_LABEL},{PG_LABEL},echo&"),
            &[&format!("label IN {UPSTREAM_MYSQL_LABEL},{PG_LABEL},echo")],
            1,
            "asc",
        )
        .await;
        split_merged(
            &seen,
            &[UPSTREAM_MYSQL_GUID],
            &[PG_SERVICE_GUID, ECHO_SERVICE_GUID],
            false,
        );
    }
}

#[tokio::test]
async fn q_service_guid_only_brokergate_knows_asks_no_upstream() {
    let s = start().await;
    let admin = admin();
    for (service, want) in [
        (PG_SERVICE_GUID, vec![PG_PLAN_GUID, PG_PRIVATE_PLAN_GUID]),
        (ECHO_SERVICE_GUID, vec![PLAN_GUID]),
    ] {
        s.cc.reset_v2_calls();
        for query in [
            format!("q=service_guid:{service}"),
            format!("q=service_guid%3A{service}"),
        ] {
            let list = ok(&get(&s.gw, &format!("/v2/service_plans?{query}"), &admin).await);
            let mut got = guids(&list);
            got.sort();
            let mut want = strings(&want);
            want.sort();
            assert_eq!(got, want, "{query}: {list}");
            assert_eq!(list["total_results"], want.len());
            for plan in list["resources"].as_array().unwrap() {
                assert_eq!(plan["entity"]["service_guid"], service);
            }
        }
        assert_eq!(
            s.cc.v2_calls(""),
            0,
            "a service guid only brokergate knows is answered without the upstream"
        );
    }
    // The upstream's: asked, once, with the same q; none of brokergate's.
    s.cc.reset_v2_calls();
    let q = format!("service_guid:{UPSTREAM_MYSQL_GUID}");
    let list = ok(&get(&s.gw, &format!("/v2/service_plans?q={q}"), &admin).await);
    assert_eq!(guids(&list), [UPSTREAM_MYSQL_PLAN_GUID]);
    assert_eq!(list["total_results"], 1);
    assert_asked_once(&s.cc, "/v2/service_plans", 1, 50, "asc", &[&q]);
    // Neither knows it.
    let list = ok(&get(&s.gw, "/v2/service_plans?q=service_guid:nope", &admin).await);
    assert_eq!(list["total_results"], 0);
}

// ---------------------------------------------------------------------------------------------
// 4. The caller's Authorization and request id
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_callers_authorization_and_request_id_reach_the_upstream() {
    let s = start().await;
    let token = user_token(DEVELOPER);
    // Merged: brokergate asks, with its own request id (the caller's, `::` and a uuid), which
    // the caller gets back.
    let merged = [
        "/v2/services".to_string(),
        "/v2/services?q=label:echo".to_string(),
        "/v2/service_plans?results-per-page=2&page=2".to_string(),
        format!("/v2/service_plans?q=service_guid:{UPSTREAM_MYSQL_GUID}"),
        format!("/v2/spaces/{SPACE_GUID}/services"),
    ];
    for (i, path) in merged.iter().enumerate() {
        s.cc.reset_v2_calls();
        let id = format!("catalog-test-{i}");
        let r = get_with_id(&s.gw, path, &token, &id).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(s.cc.v2_calls(""), 1, "{path}");
        assert_eq!(
            s.cc.last_v2_authorization(),
            Some(format!("bearer {token}")),
            "{path}"
        );
        let sent = s.cc.last_v2_request_id().unwrap_or_default();
        let answered = r.header("x-vcap-request-id").unwrap_or_default();
        assert!(
            sent.starts_with(&format!("{id}::")),
            "{path}: upstream got {sent:?}"
        );
        assert_eq!(sent, answered, "{path}: the request's own id");
    }
    // Not brokergate's guids: passed on as they came, headers and all.
    let passed = [
        format!("/v2/services/{UPSTREAM_MYSQL_GUID}"),
        format!("/v2/services/{UPSTREAM_MYSQL_GUID}/service_plans"),
        format!("/v2/service_plans/{UPSTREAM_MYSQL_PLAN_GUID}"),
    ];
    for (i, path) in passed.iter().enumerate() {
        s.cc.reset_v2_calls();
        let id = format!("passed-{i}");
        let r = get_with_id(&s.gw, path, &token, &id).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(s.cc.v2_calls(""), 1, "{path}");
        assert_eq!(
            s.cc.last_v2_authorization(),
            Some(format!("bearer {token}")),
            "{path}"
        );
        assert_eq!(s.cc.last_v2_request_id(), Some(id), "{path}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Upstream failures
// ---------------------------------------------------------------------------------------------

fn merged_paths() -> Vec<String> {
    vec![
        "/v2/services".to_string(),
        "/v2/services?q=label:echo".to_string(),
        "/v2/service_plans".to_string(),
        format!("/v2/service_plans?q=service_guid:{UPSTREAM_MYSQL_GUID}"),
        format!("/v2/spaces/{SPACE_GUID}/services"),
        format!("/v2/spaces/{SPACE_GUID}/services?q=label:echo"),
    ]
}

#[tokio::test]
async fn an_upstream_error_comes_back_as_it_came() {
    let s = start().await;
    let admin = admin();
    for status in [500, 503, 400, 403] {
        s.cc.set_v2_mode(Mode::Status(status));
        for path in merged_paths() {
            let r = get(&s.gw, &path, &admin).await;
            assert_eq!(r.status, status, "{path}: {r:?}");
            assert_eq!(
                r.json(),
                v2_error_body(10001, "Server error", "CF-ServerError"),
                "{path}: the upstream's body, not a partial list"
            );
        }
    }
    s.cc.set_v2_mode(Mode::Normal);

    // A space the upstream does not know: its 404, as it came.
    let missing = "0000aaaa-0000-4000-8000-00000000dead";
    for path in [
        format!("/v2/spaces/{missing}/services"),
        format!("/v2/spaces/{missing}/services?q=label:echo&results-per-page=1"),
    ] {
        let r = get(&s.gw, &path, &admin).await;
        assert_eq!(
            (r.status, r.json()),
            (
                404,
                v2_error_body(
                    40004,
                    &format!("The app space could not be found: {missing}"),
                    "CF-SpaceNotFound",
                )
            ),
            "{path}: {r:?}"
        );
    }
}

#[tokio::test]
async fn an_upstream_that_is_down_is_502_and_never_a_partial_list() {
    let s = start().await;
    let admin = admin();
    for mode in [Mode::Down, Mode::Reset] {
        s.cc.set_v2_mode(mode);
        for path in merged_paths() {
            let r = get(&s.gw, &path, &admin).await;
            let body = assert_cc_error(&r, 502, 10001, "CF-ServerError");
            assert!(body.get("resources").is_none(), "{mode:?} {path}: {body}");
        }
    }
    s.cc.set_v2_mode(Mode::Normal);
    // And it recovers.
    assert_eq!(
        ok(&get(&s.gw, "/v2/services", &admin).await)["total_results"],
        6
    );
}

#[tokio::test]
async fn an_upstream_refusing_connections_is_502() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let refused = format!("http://127.0.0.1:{}", support::refused_port());
    let gw = Gateway::start(
        GatewayConfig::new(&broker.url())
            .upstream(&refused)
            .static_authorization()
            .extra_toml(&catalog_toml()),
    )
    .await;
    let admin = admin();
    for path in merged_paths() {
        let r = get(&gw, &path, &admin).await;
        assert_cc_error(&r, 502, 10001, "CF-ServerError");
    }
    // brokergate's own need no upstream.
    let own = ok(&get(&gw, &format!("/v2/services/{PG_SERVICE_GUID}"), &admin).await);
    assert_eq!(own["entity"]["label"], PG_LABEL);
    let plans = ok(&get(
        &gw,
        &format!("/v2/service_plans?q=service_guid:{PG_SERVICE_GUID}"),
        &admin,
    )
    .await);
    assert_eq!(plans["total_results"], 2);
}

// ---------------------------------------------------------------------------------------------
// 6. The cf CLI v6
// ---------------------------------------------------------------------------------------------

/// `cf marketplace`: the space's offerings (every page), then each offering's plans. (As an
/// admin: the plans list shows `bg-postgres`'s private plan too, while the space, in the
/// seeded organization, does not show `bg-secret`, whose only plan is for another one.)
#[tokio::test]
async fn cf_marketplace_sees_every_offering_with_its_plans() {
    let s = start().await;
    let token = admin();
    let mut services = Vec::new();
    let mut next = Some(format!("/v2/spaces/{SPACE_GUID}/services"));
    while let Some(link) = next {
        let page = ok(&get(&s.gw, &link, &token).await);
        services.extend(page["resources"].as_array().unwrap().iter().cloned());
        next = page["next_url"].as_str().map(str::to_string);
    }
    let mut table: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    for service in &services {
        assert_cli_reads_service(service);
        let guid = service["metadata"]["guid"].as_str().unwrap();
        let label = service["entity"]["label"].as_str().unwrap().to_string();
        // The CLI's filter, URL-encoded as Go's url.Values encodes it.
        let plans = ok(&get(
            &s.gw,
            &format!("/v2/service_plans?q=service_guid%3A{guid}"),
            &token,
        )
        .await);
        assert_eq!(plans["next_url"], Value::Null, "{plans}");
        let mut rows = Vec::new();
        for plan in plans["resources"].as_array().unwrap() {
            assert_cli_reads_plan(plan);
            assert_eq!(plan["entity"]["service_guid"], guid, "{plan}");
            rows.push((
                plan["entity"]["name"].as_str().unwrap().to_string(),
                plan["entity"]["free"].as_bool().unwrap(),
            ));
        }
        rows.sort();
        table.insert(label, rows);
    }
    let row = |plans: &[(&str, bool)]| -> Vec<(String, bool)> {
        plans.iter().map(|(n, f)| (n.to_string(), *f)).collect()
    };
    let want: BTreeMap<String, Vec<(String, bool)>> = [
        (UPSTREAM_MYSQL_LABEL, row(&[("small", false)])),
        (UPSTREAM_REDIS_LABEL, row(&[("shared", true)])),
        (UPSTREAM_THIRD_LABEL, row(&[("third-plan", true)])),
        ("echo", row(&[("free", true)])),
        (PG_LABEL, row(&[("private", true), ("standard", false)])),
    ]
    .into_iter()
    .map(|(l, r)| (l.to_string(), r))
    .collect();
    assert_eq!(table, want);
}

/// `cf create-service echo free NAME`: the offering by label in the space, its plans, the
/// plan by name, then the create.
#[tokio::test]
async fn cf_create_service_finds_the_plan_by_name_and_creates() {
    let s = start().await;
    let token = admin();
    s.cc.reset_v2_calls();
    let found = ok(&get(
        &s.gw,
        &format!("/v2/spaces/{SPACE_GUID}/services?q=label%3Aecho"),
        &token,
    )
    .await);
    assert_eq!(found["total_results"], 1, "{found}");
    let service = &found["resources"][0];
    assert_cli_reads_service(service);
    assert_eq!(service["entity"]["label"], "echo");
    let service_guid = service["metadata"]["guid"].as_str().unwrap();
    assert_eq!(service_guid, ECHO_SERVICE_GUID);

    let plans = ok(&get(
        &s.gw,
        &format!("/v2/service_plans?q=service_guid%3A{service_guid}"),
        &token,
    )
    .await);
    let plan = plans["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["entity"]["name"] == "free")
        .unwrap_or_else(|| panic!("no plan named free: {plans}"));
    assert_cli_reads_plan(plan);
    let plan_guid = plan["metadata"]["guid"].as_str().unwrap();
    assert_eq!(plan_guid, PLAN_GUID);
    assert_eq!(
        s.cc.v2_calls(""),
        1,
        "the label query asked the upstream; the plans of brokergate's offering did not"
    );

    let auth = format!("bearer {token}");
    let name = format!("cli-{}", uuid::Uuid::new_v4().simple());
    let created = client::send(
        "POST",
        &format!(
            "{}/v2/service_instances?accepts_incomplete=true",
            s.gw.url()
        ),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        json!({"name": name, "service_plan_guid": plan_guid, "space_guid": SPACE_GUID}),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    let body = created.json();
    assert!(body["metadata"]["guid"].is_string(), "{body}");
    assert_eq!(body["entity"]["name"], name.as_str());
    assert_eq!(body["entity"]["service_plan_guid"], PLAN_GUID);
    assert_eq!(body["entity"]["space_guid"], SPACE_GUID);
    assert_eq!(s.broker.provision_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// 7. Plan visibility, the Cloud Controller authorizing
// ---------------------------------------------------------------------------------------------

/// The guids of brokergate's offerings and plans in the merged lists, as `token` sees them.
async fn own_seen(s: &Setup, token: &str, path: &str, own: &[&str]) -> BTreeSet<String> {
    let list = ok(&get(&s.gw, &format!("{path}?results-per-page=100"), token).await);
    let all = guids(&list);
    assert_eq!(list["total_results"], all.len(), "{path}: {list}");
    all.into_iter()
        .filter(|g| own.contains(&g.as_str()))
        .collect()
}

#[tokio::test]
async fn a_private_plan_is_shown_to_admins_readers_of_all_and_its_organizations_only() {
    let s = start_with(|c| c).await;
    let global_auditor = user_claims("user-global-auditor")
        .scopes(&["cloud_controller.global_auditor", "cloud_controller.read"])
        .sign();
    let public_services: BTreeSet<String> = [ECHO_SERVICE_GUID, PG_SERVICE_GUID]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let all_services: BTreeSet<String> = OWN_SERVICES.iter().map(|s| s.to_string()).collect();
    let public_plans: BTreeSet<String> = [PLAN_GUID, PG_PLAN_GUID]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let all_plans: BTreeSet<String> = OWN_PLANS.iter().map(|s| s.to_string()).collect();
    s.cc.reset_calls();

    let callers = [
        ("admin", admin(), true),
        ("global auditor", global_auditor, true),
        (
            "a member of the plans' organization",
            user_token(OUTSIDER),
            true,
        ),
        (
            "a member of another organization",
            user_token(DEVELOPER),
            false,
        ),
        (
            "a member of no organization",
            user_token("user-nobody"),
            false,
        ),
    ];
    for (who, token, sees) in &callers {
        let (services, plans) = if *sees {
            (&all_services, &all_plans)
        } else {
            (&public_services, &public_plans)
        };
        assert_eq!(
            own_seen(&s, token, "/v2/services", &OWN_SERVICES).await,
            *services,
            "{who}: /v2/services"
        );
        assert_eq!(
            own_seen(&s, token, "/v2/service_plans", &OWN_PLANS).await,
            *plans,
            "{who}: /v2/service_plans"
        );
        let of_pg = ok(&get(
            &s.gw,
            &format!("/v2/services/{PG_SERVICE_GUID}/service_plans"),
            token,
        )
        .await);
        assert_eq!(
            of_pg["total_results"],
            if *sees { 2 } else { 1 },
            "{who}: {of_pg}"
        );
        let private = get(
            &s.gw,
            &format!("/v2/service_plans/{PG_PRIVATE_PLAN_GUID}"),
            token,
        )
        .await;
        let secret = get(&s.gw, &format!("/v2/services/{SECRET_SERVICE_GUID}"), token).await;
        let secret_plans = get(
            &s.gw,
            &format!("/v2/service_plans?q=service_guid:{SECRET_SERVICE_GUID}"),
            token,
        )
        .await;
        if *sees {
            assert_eq!(private.status, 200, "{who}: {private:?}");
            assert_eq!(secret.status, 200, "{who}: {secret:?}");
            assert_eq!(ok(&secret_plans)["total_results"], 1, "{who}");
        } else {
            assert_cc_error(&private, 404, 110003, "CF-ServicePlanNotFound");
            assert_cc_error(&secret, 404, 120003, "CF-ServiceNotFound");
            assert_eq!(ok(&secret_plans)["total_results"], 0, "{who}");
        }
    }

    assert!(
        s.cc.calls(Question::OrganizationsList) >= 1,
        "the members' organizations asked of the Cloud Controller"
    );

    // A space's offerings, for its own members.
    let in_org2 = own_seen(
        &s,
        &user_token(OUTSIDER),
        &format!("/v2/spaces/{SPACE2_GUID}/services"),
        &OWN_SERVICES,
    )
    .await;
    assert!(in_org2.contains(SECRET_SERVICE_GUID), "{in_org2:?}");
    let in_org1 = own_seen(
        &s,
        &user_token(DEVELOPER),
        &format!("/v2/spaces/{SPACE_GUID}/services"),
        &OWN_SERVICES,
    )
    .await;
    assert_eq!(in_org1, public_services);
}

// ---------------------------------------------------------------------------------------------
// 8. Who may ask at all; spaces brokergate's static configuration does not list
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn no_token_is_401_and_a_token_without_read_is_403_and_no_one_is_asked() {
    let s = start().await;
    let no_read = token::Claims::new().scopes(&["openid"]).sign();
    let mut paths = merged_paths();
    paths.extend([
        format!("/v2/services/{PG_SERVICE_GUID}"),
        format!("/v2/services/{PG_SERVICE_GUID}/service_plans"),
        format!("/v2/service_plans/{PLAN_GUID}"),
    ]);
    for path in &paths {
        let url = format!("{}{path}", s.gw.url());
        let r = client::get(&url, None).await;
        assert_cc_error(&r, 401, 10002, "CF-NotAuthenticated");
        let r = client::get(&url, Some(&no_read)).await;
        assert_cc_error(&r, 403, 10007, "CF-InsufficientScope");
    }
    assert_eq!(s.cc.v2_calls(""), 0, "{:?}", s.cc.v2_requests());
}

/// With static authorization and `accept_unknown_spaces`, a space the upstream knows but
/// `[[spaces]]` does not list shows the upstream's offerings, then brokergate's with a public
/// plan (no organization is known to admit a restricted one).
#[tokio::test]
async fn an_unlisted_space_let_through_shows_the_upstreams_and_brokergates_public_offerings() {
    let s = start_with(|c| c.static_authorization().accept_unknown_spaces(true)).await;
    let path = format!("/v2/spaces/{SPACE2_GUID}/services");
    let seen = walk(&s, &admin(), &path, "", &[], 2, "asc").await;
    split_merged(
        &seen,
        &UPSTREAM_SERVICES,
        &[ECHO_SERVICE_GUID, PG_SERVICE_GUID],
        false,
    );
}

/// A space the upstream shows the caller but `[[spaces]]` does not list keeps the upstream's
/// offerings (`cf marketplace` anywhere), with brokergate's public ones after them.
#[tokio::test]
async fn an_unlisted_space_keeps_the_upstreams_offerings() {
    let s = start().await;
    let r = get(
        &s.gw,
        &format!("/v2/spaces/{SPACE2_GUID}/services"),
        &admin(),
    )
    .await;
    let list = ok(&r);
    assert_eq!(guids(&list)[..3], strings(&UPSTREAM_SERVICES)[..], "{list}");
}

/// The Cloud Controller reads a boolean `q` value `t` or `true` as true; so does brokergate.
#[tokio::test]
async fn q_active_t_is_true_as_the_cloud_controller_reads_it() {
    let s = start().await;
    let admin = admin();
    let all = ok(&get(&s.gw, "/v2/services?q=active:true", &admin).await);
    let t = ok(&get(&s.gw, "/v2/services?q=active:t", &admin).await);
    assert_eq!(all["total_results"], 6);
    assert_eq!(guids(&t), guids(&all), "{t}");
}

/// With `inline-relations-depth` ≥ 1 (a v1 gateway reads its offerings with depth 2) each of
/// brokergate's offerings carries the plans the caller sees.
#[tokio::test]
async fn an_inlined_offering_list_carries_brokergates_plans() {
    let s = start().await;
    let list = ok(&get(&s.gw, "/v2/services?inline-relations-depth=2", &admin()).await);
    let resources = list["resources"].as_array().unwrap();
    let pg = resources
        .iter()
        .find(|r| r["metadata"]["guid"] == PG_SERVICE_GUID)
        .unwrap();
    let plans: Vec<&str> = pg["entity"]["service_plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["guid"].as_str().unwrap())
        .collect();
    let mut plans = plans;
    plans.sort();
    let mut expected = vec![PG_PLAN_GUID, PG_PRIVATE_PLAN_GUID];
    expected.sort();
    assert_eq!(plans, expected);
    assert_eq!(
        pg["entity"]["service_plans"][0]["entity"]["service_guid"],
        PG_SERVICE_GUID
    );
    // Without the depth, no plans inline.
    let plain = ok(&get(&s.gw, "/v2/services", &admin()).await);
    let pg = plain["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metadata"]["guid"] == PG_SERVICE_GUID)
        .unwrap();
    assert_eq!(pg["entity"].get("service_plans"), None);
}
