//! The instance and binding lists merged with the upstream Cloud Controller's:
//! `GET /v2/service_instances`, `GET /v2/spaces/:guid/service_instances`, the binding lists
//! (all, an app's) — the upstream's first, then brokergate's, page by page, `total_results`
//! summed and the links rebuilt; the upstream asked once per page with the client's query and
//! token, and not at all for a plan or an instance only brokergate holds; its refusals passed
//! through as they came; a space's list with its relations inlined; the space summary.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use support::broker::MockBroker;
use support::client::{create, create_body, get, send};
use support::gateway::{Gateway, GatewayConfig, BROKER_TOKEN, PLAN_GUID, SPACE_GUID};
use support::recorded::RecordedRequest;
use support::server::{Handler, Reply, TestServer};
use support::token;

/// How the fake upstream answers its instance lists.
#[derive(Clone, Copy)]
enum Answers {
    /// A v2 list of `n` instances, paged as asked.
    List(usize),
    /// This status with a CF error body.
    Status(u16),
}

/// A fake Cloud Controller holding `n` instances of its own, `upstream-0` … `upstream-{n-1}`.
async fn upstream_with(answers: Arc<Mutex<Answers>>) -> TestServer {
    let handler: Handler = Arc::new(move |req: RecordedRequest| {
        let answers = *answers.lock().unwrap();
        Box::pin(async move {
            match answers {
                Answers::Status(status) => Reply::json(
                    status,
                    &json!({"code": 10001, "description": "upstream says no", "error_code": "CF-ServerError"}),
                ),
                Answers::List(n) => Reply::json(200, &page_of(&req, n)),
            }
        })
    });
    TestServer::start(handler).await
}

/// The upstream's page: `page` and `results-per-page` from the query, as the Cloud Controller.
fn page_of(req: &RecordedRequest, n: usize) -> Value {
    let query = req.path.split_once('?').map(|(_, q)| q).unwrap_or("");
    let param = |name: &str, default: usize| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (page, per_page) = (param("page", 1), param("results-per-page", 50));
    let resources: Vec<Value> = (0..n)
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|i| {
            json!({"metadata": {"guid": format!("upstream-guid-{i}")},
                   "entity": {"name": format!("upstream-{i}"), "type": "managed_service_instance"}})
        })
        .collect();
    json!({"total_results": n, "total_pages": n.div_ceil(per_page).max(1),
           "prev_url": null, "next_url": null, "resources": resources})
}

fn names(page: &Value) -> Vec<String> {
    page["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["entity"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// A gateway in front of `upstream` holding two instances, `own-0` and `own-1`.
async fn gateway_before(upstream: &TestServer) -> (MockBroker, Gateway) {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let gw = Gateway::start(
        GatewayConfig::new(&broker.url())
            .upstream(&upstream.url())
            .static_authorization(),
    )
    .await;
    for i in 0..2 {
        let created = create(
            &gw.url(),
            Some(&token::valid_token()),
            create_body(&format!("own-{i}")),
        )
        .await;
        assert_eq!(created.status, 201, "{created:?}");
    }
    (broker, gw)
}

#[tokio::test]
async fn the_list_is_the_upstreams_then_brokergates_page_by_page() {
    let answers = Arc::new(Mutex::new(Answers::List(3)));
    let upstream = upstream_with(answers.clone()).await;
    let (_broker, gw) = gateway_before(&upstream).await;
    let bearer = token::valid_token();
    upstream.clear_requests();

    let mut seen = Vec::new();
    for page in 1..=3 {
        let url = format!(
            "{}/v2/service_instances?results-per-page=2&page={page}",
            gw.url()
        );
        let resp = get(&url, Some(&bearer)).await;
        assert_eq!(resp.status, 200, "{resp:?}");
        let body = resp.json();
        assert_eq!(body["total_results"], 5);
        assert_eq!(body["total_pages"], 3);
        let next = (page < 3).then(|| {
            format!(
                "/v2/service_instances?order-direction=asc&page={}&results-per-page=2",
                page + 1
            )
        });
        assert_eq!(body["next_url"], json!(next), "page {page}");
        seen.extend(names(&body));
    }
    assert_eq!(
        seen,
        ["upstream-0", "upstream-1", "upstream-2", "own-0", "own-1"]
    );
    // The upstream was asked once per page, with the client's query and token.
    let asked = upstream.requests();
    assert_eq!(asked.len(), 3);
    assert_eq!(
        asked[2].path,
        "/v2/service_instances?results-per-page=2&page=3"
    );
    assert_eq!(
        asked[0].header("authorization"),
        Some(format!("bearer {bearer}"))
    );
    assert!(asked[0].header("x-vcap-request-id").is_some());
}

#[tokio::test]
async fn a_plan_only_brokergate_serves_is_not_asked_for_and_refusals_pass_through() {
    let answers = Arc::new(Mutex::new(Answers::List(3)));
    let upstream = upstream_with(answers.clone()).await;
    let (_broker, gw) = gateway_before(&upstream).await;
    let bearer = token::valid_token();
    upstream.clear_requests();

    let url = format!(
        "{}/v2/service_instances?q=service_plan_guid:{PLAN_GUID}",
        gw.url()
    );
    let resp = get(&url, Some(&bearer)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(names(&resp.json()), ["own-0", "own-1"]);
    assert!(
        upstream.requests().is_empty(),
        "not asked for a plan of brokergate's"
    );

    // An upstream refusal comes back as it came; nothing of brokergate's is added.
    *answers.lock().unwrap() = Answers::Status(503);
    let resp = get(&format!("{}/v2/service_instances", gw.url()), Some(&bearer)).await;
    assert_eq!(resp.status, 503, "{resp:?}");
    assert_eq!(resp.json()["description"], "upstream says no");
}

#[tokio::test]
async fn an_upstream_that_is_down_is_502_never_a_partial_list() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let down = format!("http://127.0.0.1:{}", support::refused_port());
    let gw = Gateway::start(
        GatewayConfig::new(&broker.url())
            .upstream(&down)
            .static_authorization(),
    )
    .await;
    let created = create(&gw.url(), Some(&token::valid_token()), create_body("own")).await;
    assert_eq!(created.status, 201, "{created:?}");
    let resp = get(
        &format!("{}/v2/service_instances", gw.url()),
        Some(&token::valid_token()),
    )
    .await;
    support::cc::assert_cc_error(&resp, 502, 10001, "CF-ServerError");
}

#[tokio::test]
async fn a_spaces_list_inlines_plan_bindings_and_keys_of_brokergates_instances() {
    let answers = Arc::new(Mutex::new(Answers::List(1)));
    let upstream = upstream_with(answers).await;
    let (_broker, gw) = gateway_before(&upstream).await;
    let bearer = token::valid_token();
    // A binding of own-0.
    let own = get(
        &format!(
            "{}/v2/spaces/{SPACE_GUID}/service_instances?q=name:own-0",
            gw.url()
        ),
        Some(&bearer),
    )
    .await;
    assert_eq!(own.status, 200, "{own:?}");
    let body = own.json();
    // The upstream's one instance (its fake ignores q), then own-0.
    assert_eq!(names(&body), ["upstream-0", "own-0"]);
    let guid = body["resources"][1]["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let auth = format!("bearer {bearer}");
    let bound = send(
        "POST",
        &format!("{}/v2/service_bindings", gw.url()),
        &[("Authorization", auth.as_str())],
        json!({"service_instance_guid": guid, "app_guid": "app-1"}),
    )
    .await;
    assert_eq!(bound.status, 201, "{bound:?}");

    let url = format!(
        "{}/v2/spaces/{SPACE_GUID}/service_instances?return_user_provided_service_instances=true&q=name%3Aown-0&inline-relations-depth=1",
        gw.url()
    );
    let resp = get(&url, Some(&bearer)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let ours = &resp.json()["resources"][1]["entity"];
    assert_eq!(ours["name"], "own-0");
    assert_eq!(ours["service_plan"]["metadata"]["guid"], PLAN_GUID);
    assert_eq!(
        ours["service_plan"]["entity"]["service_guid"],
        "3dcca525-780d-5783-84f7-8a1c014e5780"
    );
    assert_eq!(ours["service_bindings"].as_array().unwrap().len(), 1);
    assert_eq!(ours["service_bindings"][0]["entity"]["app_guid"], "app-1");
    assert_eq!(ours["service_keys"], json!([]));
    // Another space holds none of brokergate's instances.
    let other = get(
        &format!("{}/v2/spaces/other-space/service_instances", gw.url()),
        Some(&bearer),
    )
    .await;
    assert_eq!(other.status, 200, "{other:?}");
    assert_eq!(names(&other.json()), ["upstream-0"]);
}

/// A fake Cloud Controller whose space summary shows one app, `app-1`, bound to nothing of its.
async fn upstream_with_summary() -> TestServer {
    let handler: Handler = Arc::new(move |req: RecordedRequest| {
        Box::pin(async move {
            if req.path_only().ends_with("/summary") {
                return Reply::json(
                    200,
                    &json!({"guid": SPACE_GUID, "name": "dev",
                            "apps": [{"guid": "app-1", "name": "web", "service_names": ["upstream-db"]},
                                     {"guid": "app-2", "name": "worker"}],
                            "services": [{"guid": "upstream-guid-0", "name": "upstream-db", "bound_app_count": 1}]}),
                );
            }
            Reply::json(200, &page_of(&req, 0))
        })
    });
    TestServer::start(handler).await
}

#[tokio::test]
async fn the_space_summary_adds_brokergates_instances_and_their_apps() {
    let upstream = upstream_with_summary().await;
    let (_broker, gw) = gateway_before(&upstream).await;
    let bearer = token::valid_token();
    let auth = format!("bearer {bearer}");
    let own = get(
        &format!("{}/v2/service_instances?q=name:own-0", gw.url()),
        Some(&bearer),
    )
    .await;
    let guid = own.json()["resources"][0]["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let bound = send(
        "POST",
        &format!("{}/v2/service_bindings", gw.url()),
        &[("Authorization", auth.as_str())],
        json!({"service_instance_guid": guid, "app_guid": "app-1"}),
    )
    .await;
    assert_eq!(bound.status, 201, "{bound:?}");

    let resp = get(
        &format!("{}/v2/spaces/{SPACE_GUID}/summary", gw.url()),
        Some(&bearer),
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let summary = resp.json();
    assert_eq!(summary["name"], "dev");
    let services = summary["services"].as_array().unwrap();
    let names: Vec<&str> = services
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["upstream-db", "own-0", "own-1"]);
    let own_0 = &services[1];
    assert_eq!(own_0["guid"], guid.as_str());
    assert_eq!(own_0["bound_app_count"], 1);
    assert_eq!(own_0["last_operation"]["state"], "succeeded");
    assert_eq!(own_0["service_plan"]["guid"], PLAN_GUID);
    assert_eq!(own_0["service_plan"]["name"], "free");
    assert_eq!(own_0["service_plan"]["service"]["label"], "echo");
    assert_eq!(services[2]["bound_app_count"], 0);
    assert_eq!(
        summary["apps"][0]["service_names"],
        json!(["upstream-db", "own-0"])
    );
    assert_eq!(summary["apps"][1].get("service_names"), None);
}

#[tokio::test]
async fn without_an_upstream_the_summary_is_brokergates_for_a_known_space() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let gw = Gateway::start(GatewayConfig::new(&broker.url())).await;
    let bearer = token::valid_token();
    let created = create(&gw.url(), Some(&bearer), create_body("alone")).await;
    assert_eq!(created.status, 201, "{created:?}");
    let resp = get(
        &format!("{}/v2/spaces/{SPACE_GUID}/summary", gw.url()),
        Some(&bearer),
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let summary = resp.json();
    assert_eq!(summary["services"][0]["name"], "alone");
    assert_eq!(summary["apps"], json!([]));
    let unknown = get(
        &format!("{}/v2/spaces/nowhere/summary", gw.url()),
        Some(&bearer),
    )
    .await;
    support::cc::assert_cc_error(&unknown, 404, 40004, "CF-SpaceNotFound");
}

fn guids(page: &Value) -> Vec<String> {
    page["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metadata"]["guid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn binding_lists_are_merged_and_an_instance_of_brokergates_asks_no_upstream() {
    let answers = Arc::new(Mutex::new(Answers::List(2)));
    let upstream = upstream_with(answers).await;
    let (_broker, gw) = gateway_before(&upstream).await;
    let bearer = token::valid_token();
    let auth = format!("bearer {bearer}");
    let own = get(
        &format!("{}/v2/service_instances?q=name:own-0", gw.url()),
        Some(&bearer),
    )
    .await;
    let instance = own.json()["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["entity"]["name"] == "own-0")
        .map(|r| r["metadata"]["guid"].as_str().unwrap().to_string())
        .unwrap();
    let bound = send(
        "POST",
        &format!("{}/v2/service_bindings", gw.url()),
        &[("Authorization", auth.as_str())],
        json!({"service_instance_guid": instance, "app_guid": "app-1"}),
    )
    .await;
    assert_eq!(bound.status, 201, "{bound:?}");
    let binding = bound.json()["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    upstream.clear_requests();

    // What `cf unbind-service` asks: an instance of brokergate's, so no upstream call.
    let url = format!(
        "{}/v2/service_bindings?q=app_guid:app-1&q=service_instance_guid:{instance}",
        gw.url()
    );
    let resp = get(&url, Some(&bearer)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(guids(&resp.json()), vec![binding.as_str()]);
    assert!(upstream.requests().is_empty());

    // An app's bindings, and all bindings: the upstream's first.
    for path in ["/v2/apps/app-1/service_bindings", "/v2/service_bindings"] {
        let resp = get(&format!("{}{path}", gw.url()), Some(&bearer)).await;
        assert_eq!(resp.status, 200, "{resp:?}");
        let body = resp.json();
        assert_eq!(body["total_results"], 3, "{path}");
        assert_eq!(
            guids(&body),
            ["upstream-guid-0", "upstream-guid-1", binding.as_str()],
            "{path}"
        );
    }
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn brokergates_instances_are_shared_neither_to_nor_from_another_space() {
    let upstream = upstream_with(Arc::new(Mutex::new(Answers::List(0)))).await;
    let (_broker, gw) = gateway_before(&upstream).await;
    let bearer = token::valid_token();
    let own = get(
        &format!("{}/v2/service_instances?q=name:own-0", gw.url()),
        Some(&bearer),
    )
    .await;
    let guid = guids(&own.json())[0].clone();
    upstream.clear_requests();

    let to = get(
        &format!("{}/v2/service_instances/{guid}/shared_to", gw.url()),
        Some(&bearer),
    )
    .await;
    assert_eq!(to.status, 200, "{to:?}");
    let body = to.json();
    assert_eq!(body["total_results"], 0);
    assert_eq!(body["resources"], json!([]));
    let from = get(
        &format!("{}/v2/service_instances/{guid}/shared_from", gw.url()),
        Some(&bearer),
    )
    .await;
    assert_eq!(from.status, 204, "{from:?}");
    assert!(from.body.is_empty());
    assert!(
        upstream.requests().is_empty(),
        "brokergate's own: not asked upstream"
    );
    // Another instance's sharing is the upstream's to answer.
    let theirs = get(
        &format!("{}/v2/service_instances/upstream-guid/shared_to", gw.url()),
        Some(&bearer),
    )
    .await;
    assert_eq!(theirs.status, 200, "{theirs:?}");
    assert_eq!(upstream.requests().len(), 1);
}
