//! The instance lifecycle after a create: `GET /v2/service_instances/:guid` — the same
//! envelope as the 201, secrets only for callers who may write, scope and not-found errors as
//! the Cloud Controller's, and a guid brokergate does not hold passed upstream unchanged — the
//! paginated list, and `PUT` (rename and retag, no broker call).
#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use serde_json::{json, Value};

use support::broker::MockBroker;
use support::cc::assert_cc_error;
use support::client::{create, create_body, get, send, Response};
use support::gateway::{Gateway, GatewayConfig, BROKER_TOKEN};
use support::token::{self, Claims};
use support::upstream::MockUpstream;

const INSTANCES: &str = "/v2/service_instances";

fn token_with(scopes: &[&str]) -> String {
    Claims::new().scopes(scopes).sign()
}

/// A gateway (with `upstream` when given) and one instance created through it: its 201.
async fn gateway_with_instance(upstream: Option<&str>) -> (MockBroker, Gateway, Response) {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let mut config = GatewayConfig::new(&broker.url());
    if let Some(url) = upstream {
        config = config.upstream(url).static_authorization();
    }
    let gw = Gateway::start(config).await;
    let name = format!("read-me-{}", uuid::Uuid::new_v4().simple());
    let created = create(&gw.url(), Some(&token::valid_token()), create_body(&name)).await;
    assert_eq!(created.status, 201, "{created:?}");
    (broker, gw, created)
}

fn guid_of(created: &Response) -> String {
    created.json()["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn read(gw: &Gateway, path_guid: &str, token: Option<&str>) -> Response {
    get(&format!("{}{INSTANCES}/{path_guid}", gw.url()), token).await
}

#[tokio::test]
async fn a_read_answers_the_201s_envelope_byte_for_byte() {
    let (_broker, gw, created) = gateway_with_instance(None).await;
    let guid = guid_of(&created);
    for scopes in [
        &["cloud_controller.admin"][..],
        &["cloud_controller.read", "cloud_controller.write"],
    ] {
        let resp = read(&gw, &guid, Some(&token_with(scopes))).await;
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(resp.body, created.body, "{scopes:?}");
        assert_eq!(
            resp.header("content-type").as_deref(),
            Some("application/json;charset=utf-8")
        );
        assert_eq!(
            resp.header("content-length"),
            Some(resp.body.len().to_string())
        );
        assert_eq!(resp.header("location"), None);
        assert!(resp.header("x-vcap-request-id").is_some());
    }
    // A trailing slash and a percent-encoded guid name the same instance.
    let encoded = guid.replacen('-', "%2D", 1);
    for path in [format!("{guid}/"), encoded] {
        let resp = read(&gw, &path, Some(&token::valid_token())).await;
        assert_eq!(resp.status, 200, "{path}: {resp:?}");
        assert_eq!(resp.body, created.body, "{path}");
    }
}

#[tokio::test]
async fn a_read_only_token_sees_credentials_and_dashboard_redacted() {
    let (_broker, gw, created) = gateway_with_instance(None).await;
    let guid = guid_of(&created);
    let resp = read(&gw, &guid, Some(&token_with(&["cloud_controller.read"]))).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let (seen, full): (Value, Value) = (resp.json(), created.json());
    assert_eq!(
        seen["entity"]["credentials"],
        json!({"redacted_message": "[PRIVATE DATA HIDDEN]"})
    );
    assert_eq!(seen["entity"]["dashboard_url"], "");
    // Everything else is as the creator saw it.
    let mut unredacted = seen.clone();
    unredacted["entity"]["credentials"] = full["entity"]["credentials"].clone();
    unredacted["entity"]["dashboard_url"] = full["entity"]["dashboard_url"].clone();
    assert_eq!(unredacted, full);
    // The broker's credential values (the mock's name its instance in them and in the
    // dashboard URL) appear nowhere in the answer.
    let secret = full["entity"]["credentials"]["name"].as_str().unwrap();
    assert!(secret.starts_with("svc-"), "{full}");
    assert!(!resp.text().contains(secret), "{resp:?}");
}

#[tokio::test]
async fn a_write_only_token_is_403_and_no_token_is_401() {
    let (_broker, gw, created) = gateway_with_instance(None).await;
    let guid = guid_of(&created);
    let resp = read(&gw, &guid, Some(&token_with(&["cloud_controller.write"]))).await;
    let body = assert_cc_error(&resp, 403, 10007, "CF-InsufficientScope");
    assert_eq!(
        body["description"],
        "Your token lacks the necessary scopes to access this resource."
    );
    let resp = read(&gw, &guid, None).await;
    assert_cc_error(&resp, 401, 10002, "CF-NotAuthenticated");
    let resp = read(&gw, &guid, Some("not.a.token")).await;
    assert_cc_error(&resp, 401, 1000, "CF-InvalidAuthToken");
}

#[tokio::test]
async fn an_unknown_guid_without_upstream_is_60004() {
    let (_broker, gw, _created) = gateway_with_instance(None).await;
    let resp = read(&gw, "no-such-guid", Some(&token::valid_token())).await;
    let body = assert_cc_error(&resp, 404, 60004, "CF-ServiceInstanceNotFound");
    assert_eq!(
        body["description"],
        "The service instance could not be found: no-such-guid"
    );
    // The scope is checked only once the instance is found, as the Cloud Controller does.
    let write_only = token_with(&["cloud_controller.write"]);
    let resp = read(&gw, "no-such-guid", Some(&write_only)).await;
    assert_cc_error(&resp, 404, 60004, "CF-ServiceInstanceNotFound");
}

#[tokio::test]
async fn an_unknown_guid_goes_upstream_unchanged_and_an_owned_one_does_not() {
    let upstream = MockUpstream::start().await;
    let (_broker, gw, created) = gateway_with_instance(Some(&upstream.url())).await;
    let bearer = format!("bearer {}", token::valid_token());
    let headers = [
        ("authorization", bearer.as_str()),
        ("x-custom", "kept"),
        ("x-vcap-request-id", "client-id-1"),
    ];
    let path = format!("{INSTANCES}/upstream-guid?inline-relations-depth=1");
    let resp = send("GET", &format!("{}{path}", gw.url()), &headers, Vec::new()).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        resp.json(),
        json!({"from": "upstream", "method": "GET", "path": path})
    );
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(
        seen[0].header("authorization").as_deref(),
        Some(bearer.as_str())
    );
    assert_eq!(seen[0].header("x-custom").as_deref(), Some("kept"));
    assert_eq!(
        seen[0].header("x-vcap-request-id").as_deref(),
        Some("client-id-1")
    );

    let resp = read(&gw, &guid_of(&created), Some(&token::valid_token())).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body, created.body);
    assert_eq!(
        upstream.requests().len(),
        1,
        "an owned guid never goes upstream"
    );
}

#[tokio::test]
async fn head_and_other_methods_on_an_instance_are_not_owned() {
    let (_broker, gw, created) = gateway_with_instance(None).await;
    let url = format!("{}{INSTANCES}/{}", gw.url(), guid_of(&created));
    let bearer = format!("bearer {}", token::valid_token());
    let resp = send("OPTIONS", &url, &[("authorization", &bearer)], Vec::new()).await;
    let body = assert_cc_error(&resp, 404, 10000, "CF-NotFound");
    assert_eq!(body["description"], "Unknown request");
    let resp = send("HEAD", &url, &[("authorization", &bearer)], Vec::new()).await;
    assert_eq!(resp.status, 404, "{resp:?}");
}

/// A gateway holding five instances, `list-0` … `list-4`, created in that order.
async fn gateway_with_five() -> (MockBroker, Gateway, Vec<String>) {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let gw = Gateway::start(GatewayConfig::new(&broker.url())).await;
    let mut guids = Vec::new();
    for i in 0..5 {
        let body = create_body(&format!("list-{i}"));
        let created = create(&gw.url(), Some(&token::valid_token()), body).await;
        assert_eq!(created.status, 201, "{created:?}");
        guids.push(guid_of(&created));
    }
    (broker, gw, guids)
}

async fn list(gw: &Gateway, query: &str, token: Option<&str>) -> Response {
    get(&format!("{}{INSTANCES}{query}", gw.url()), token).await
}

fn names(page: &Value) -> Vec<String> {
    page["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["entity"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_list_pages_in_creation_order_both_ways_keeping_every_q() {
    let (_broker, gw, guids) = gateway_with_five().await;
    let token = token::valid_token();

    let all = list(&gw, "", Some(&token)).await;
    assert_eq!(all.status, 200, "{all:?}");
    let body = all.json();
    assert_eq!(body["total_results"], 5);
    assert_eq!(body["total_pages"], 1);
    assert_eq!(body["prev_url"], Value::Null);
    assert_eq!(body["next_url"], Value::Null);
    assert_eq!(
        names(&body),
        ["list-0", "list-1", "list-2", "list-3", "list-4"]
    );
    assert_eq!(body["resources"][0]["metadata"]["guid"], guids[0].as_str());
    // Each resource is the instance's own envelope.
    let one = read(&gw, &guids[3], Some(&token)).await;
    assert_eq!(body["resources"][3], one.json());

    // Three pages of two, with a q filter (IN) kept in the links.
    let q = format!("q=space_guid:{}", support::gateway::SPACE_GUID);
    let page2 = list(
        &gw,
        &format!("?results-per-page=2&page=2&{q}"),
        Some(&token),
    )
    .await;
    let body = page2.json();
    assert_eq!(
        (body["total_results"].clone(), body["total_pages"].clone()),
        (json!(5), json!(3))
    );
    assert_eq!(names(&body), ["list-2", "list-3"]);
    assert_eq!(
        body["prev_url"],
        format!("{INSTANCES}?order-direction=asc&page=1&{q}&results-per-page=2")
    );
    assert_eq!(
        body["next_url"],
        format!("{INSTANCES}?order-direction=asc&page=3&{q}&results-per-page=2")
    );
    let page3 = list(
        &gw,
        &format!("?results-per-page=2&page=3&{q}"),
        Some(&token),
    )
    .await;
    assert_eq!(names(&page3.json()), ["list-4"]);
    assert_eq!(page3.json()["next_url"], Value::Null);

    let newest = list(
        &gw,
        "?results-per-page=2&order-direction=desc",
        Some(&token),
    )
    .await;
    let body = newest.json();
    assert_eq!(names(&body), ["list-4", "list-3"]);
    assert_eq!(
        body["next_url"],
        format!("{INSTANCES}?order-direction=desc&page=2&results-per-page=2")
    );

    let picked = list(&gw, "?q=name%20IN%20list-1,list-3,nope", Some(&token)).await;
    assert_eq!(names(&picked.json()), ["list-1", "list-3"]);
    let both = list(
        &gw,
        &format!(
            "?q=name:list-2&q=space_guid:{}",
            support::gateway::SPACE_GUID
        ),
        Some(&token),
    )
    .await;
    assert_eq!(names(&both.json()), ["list-2"]);
    let none = list(&gw, "?q=name:list-2&q=space_guid:elsewhere", Some(&token)).await;
    assert_eq!(none.json()["total_results"], 0);
}

#[tokio::test]
async fn list_errors_are_the_cloud_controllers() {
    let (_broker, gw, _guids) = gateway_with_five().await;
    let token = token::valid_token();
    let resp = list(&gw, "?results-per-page=101", Some(&token)).await;
    let body = assert_cc_error(&resp, 400, 10005, "CF-BadQueryParameter");
    assert_eq!(
        body["description"],
        "The query parameter is invalid: results_per_page must be <= 100"
    );
    let resp = list(&gw, "?q=app_guid:x", Some(&token)).await;
    assert_cc_error(&resp, 400, 10005, "CF-BadQueryParameter");
    let resp = list(&gw, "?order-direction=sideways", Some(&token)).await;
    assert_cc_error(&resp, 400, 10005, "CF-BadQueryParameter");

    let resp = list(&gw, "", Some(&token_with(&["cloud_controller.write"]))).await;
    assert_cc_error(&resp, 403, 10007, "CF-InsufficientScope");
    let resp = list(&gw, "", None).await;
    assert_cc_error(&resp, 401, 10002, "CF-NotAuthenticated");

    // Read-only tokens see every instance's secrets redacted.
    let resp = list(&gw, "", Some(&token_with(&["cloud_controller.read"]))).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    for r in resp.json()["resources"].as_array().unwrap() {
        assert_eq!(
            r["entity"]["credentials"],
            json!({"redacted_message": "[PRIVATE DATA HIDDEN]"})
        );
        assert_eq!(r["entity"]["dashboard_url"], "");
    }
}

// ---------------------------------------------------------------------------------------------
// PUT /v2/service_instances/:guid

async fn put(gw: &Gateway, guid: &str, token: Option<&str>, body: Value) -> Response {
    let auth = token.map(|t| format!("bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = auth.as_deref() {
        headers.push(("authorization", a));
    }
    let url = format!("{}{INSTANCES}/{guid}", gw.url());
    send("PUT", &url, &headers, body.to_string().into_bytes()).await
}

#[tokio::test]
async fn a_rename_and_retag_is_201_with_an_update_and_no_broker_call() {
    let (broker, gw, created) = gateway_with_instance(None).await;
    let guid = guid_of(&created);
    let body = json!({"name": "  renamed  ", "tags": ["a", "b"]});
    let resp = put(&gw, &guid, Some(&token::valid_token()), body).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(resp.header("location"), None);
    let (seen, before) = (resp.json(), created.json());
    assert_eq!(seen["entity"]["name"], "renamed");
    assert_eq!(seen["entity"]["tags"], json!(["a", "b"]));
    let op = &seen["entity"]["last_operation"];
    assert_eq!(
        (&op["type"], &op["state"]),
        (&json!("update"), &json!("succeeded"))
    );
    let updated_at = seen["metadata"]["updated_at"].as_str().unwrap();
    assert!(updated_at.ends_with("+00:00"), "{updated_at}");
    assert_eq!(op["updated_at"], updated_at);
    assert_eq!(
        seen["metadata"]["created_at"],
        before["metadata"]["created_at"]
    );
    // The rest is the instance as created, secrets included.
    for field in [
        "credentials",
        "gateway_data",
        "dashboard_url",
        "service_guid",
    ] {
        assert_eq!(seen["entity"][field], before["entity"][field], "{field}");
    }
    // A read shows the update, and the broker heard nothing of it.
    let read_back = read(&gw, &guid, Some(&token::valid_token())).await;
    assert_eq!(read_back.json(), seen);
    assert_eq!(broker.requests().len(), 1, "{:#?}", broker.requests());
    // Only tags: the name stays.
    let resp = put(&gw, &guid, Some(&token::valid_token()), json!({"tags": []})).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(resp.json()["entity"]["name"], "renamed");
    assert_eq!(resp.json()["entity"]["tags"], json!([]));
}

#[tokio::test]
async fn a_rename_into_a_taken_name_is_60002_and_changes_nothing() {
    let (_broker, gw, first) = gateway_with_instance(None).await;
    let second = create(&gw.url(), Some(&token::valid_token()), create_body("taken")).await;
    assert_eq!(second.status, 201, "{second:?}");
    let guid = guid_of(&first);
    let resp = put(
        &gw,
        &guid,
        Some(&token::valid_token()),
        json!({"name": "taken"}),
    )
    .await;
    let body = assert_cc_error(&resp, 400, 60002, "CF-ServiceInstanceNameTaken");
    assert_eq!(
        body["description"],
        "The service instance name is taken: taken"
    );
    let unchanged = read(&gw, &guid, Some(&token::valid_token())).await;
    assert_eq!(unchanged.body, first.body);
    // Renaming to its own name is no conflict.
    let own = first.json()["entity"]["name"].as_str().unwrap().to_string();
    let resp = put(
        &gw,
        &guid,
        Some(&token::valid_token()),
        json!({"name": own}),
    )
    .await;
    assert_eq!(resp.status, 201, "{resp:?}");
}

#[tokio::test]
async fn plan_changes_parameters_space_changes_and_bad_bodies_are_refused() {
    let (broker, gw, created) = gateway_with_instance(None).await;
    let guid = guid_of(&created);
    let token = token::valid_token();
    let entity = created.json()["entity"].clone();
    for body in [
        json!({"service_plan_guid": "another-plan"}),
        json!({"parameters": {"size": "large"}}),
        json!({"name": "x", "parameters": {}}),
    ] {
        let resp = put(&gw, &guid, Some(&token), body.clone()).await;
        let err = assert_cc_error(&resp, 400, 110004, "CF-ServicePlanNotUpdateable");
        assert_eq!(
            err["description"], "The service does not support changing plans.",
            "{body}"
        );
    }
    let resp = put(&gw, &guid, Some(&token), json!({"space_guid": "elsewhere"})).await;
    let err = assert_cc_error(&resp, 400, 60014, "CF-ServiceInstanceSpaceChangeNotAllowed");
    assert_eq!(
        err["description"],
        "Cannot update space for service instance."
    );
    // The current plan and space may be repeated.
    let same = json!({
        "service_plan_guid": entity["service_plan_guid"],
        "space_guid": entity["space_guid"],
    });
    assert_eq!(put(&gw, &guid, Some(&token), same).await.status, 201);

    let resp = put(&gw, &guid, Some(&token), json!({"name": ""})).await;
    assert_cc_error(&resp, 400, 60001, "CF-ServiceInstanceNameEmpty");
    let resp = put(&gw, &guid, Some(&token), json!({"name": "n".repeat(256)})).await;
    assert_cc_error(&resp, 400, 60009, "CF-ServiceInstanceNameTooLong");
    let resp = put(&gw, &guid, Some(&token), json!({"tags": "not-a-list"})).await;
    let err = assert_cc_error(&resp, 400, 1001, "CF-MessageParseError");
    assert!(
        err["description"].as_str().unwrap().contains("Field: tags"),
        "{err}"
    );
    let url = format!("{}{INSTANCES}/{guid}", gw.url());
    let bearer = format!("bearer {token}");
    let resp = send("PUT", &url, &[("authorization", &bearer)], b"{".to_vec()).await;
    assert_cc_error(&resp, 400, 1001, "CF-MessageParseError");

    let unchanged = read(&gw, &guid, Some(&token)).await.json();
    assert_eq!(unchanged["entity"]["name"], entity["name"]);
    assert_eq!(unchanged["entity"]["last_operation"]["type"], "update");
    assert_eq!(broker.requests().len(), 1, "no broker call");
}

#[tokio::test]
async fn an_update_needs_write_and_an_unknown_guid_is_not_ours() {
    let upstream = MockUpstream::start().await;
    let (_broker, gw, created) = gateway_with_instance(Some(&upstream.url())).await;
    let guid = guid_of(&created);
    let read_only = token_with(&["cloud_controller.read"]);
    let resp = put(&gw, &guid, Some(&read_only), json!({"name": "x"})).await;
    assert_cc_error(&resp, 403, 10007, "CF-InsufficientScope");
    let resp = put(&gw, &guid, None, json!({"name": "x"})).await;
    assert_cc_error(&resp, 401, 10002, "CF-NotAuthenticated");
    assert!(upstream.requests().is_empty());

    // Method, path, query and body reach the upstream unchanged.
    let body = br#"{"name":"theirs",  "tags":[]}"#.to_vec();
    let bearer = format!("bearer {}", token::valid_token());
    let url = format!(
        "{}{INSTANCES}/upstream-guid?accepts_incomplete=true",
        gw.url()
    );
    let resp = send("PUT", &url, &[("authorization", &bearer)], body.clone()).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].method, "PUT");
    assert_eq!(
        seen[0].path,
        format!("{INSTANCES}/upstream-guid?accepts_incomplete=true")
    );
    assert_eq!(seen[0].body, body);
}

#[tokio::test]
async fn an_unknown_guid_without_upstream_is_60004_on_update() {
    let (_broker, gw, _created) = gateway_with_instance(None).await;
    let resp = put(&gw, "no-such-guid", Some(&token::valid_token()), json!({})).await;
    let body = assert_cc_error(&resp, 404, 60004, "CF-ServiceInstanceNotFound");
    assert_eq!(
        body["description"],
        "The service instance could not be found: no-such-guid"
    );
}
