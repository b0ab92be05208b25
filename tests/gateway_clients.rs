//! What a v1 gateway (vcap-services-base's catalog manager) asks of its Cloud Controller at
//! start, answered by brokergate for its own plans: every page of
//! `GET /v2/service_instances?q=service_plan_guid:P` (keyed by `credentials.name`), then every
//! page of `GET /v2/service_bindings?q=service_instance_guid:G` (keyed by `gateway_name`), with
//! a UAA client token holding `cloud_controller.admin` — credentials and gateway data shown,
//! and the upstream never asked (it holds none of these).
#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::collections::BTreeMap;

use serde_json::{json, Value};

use support::broker::MockBroker;
use support::client::{create, create_body, get, send};
use support::gateway::{Gateway, GatewayConfig, BROKER_TOKEN, PLAN_GUID};
use support::token::{self, Claims};
use support::upstream::MockUpstream;

/// The token a gateway gets from UAA for its client: no user, admin scope.
fn gateway_token() -> String {
    Claims::new()
        .remove("user_id")
        .remove("email")
        .set("client_id", "mysql-gateway")
        .scopes(&["cloud_controller.admin"])
        .sign()
}

/// Every resource of a list, following `next_url` as the catalog manager does (bounded).
async fn every_page(gw: &Gateway, first: &str, bearer: &str) -> Vec<Value> {
    let mut resources = Vec::new();
    let mut next = Some(first.to_string());
    for _ in 0..20 {
        let Some(path) = next.take() else {
            return resources;
        };
        let resp = get(&format!("{}{path}", gw.url()), Some(bearer)).await;
        assert_eq!(resp.status, 200, "{path}: {resp:?}");
        let body = resp.json();
        resources.extend(body["resources"].as_array().unwrap().iter().cloned());
        next = body["next_url"].as_str().map(str::to_string);
    }
    panic!("more than 20 pages");
}

#[tokio::test]
async fn a_gateway_fetches_its_instance_and_binding_handles_page_by_page() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let upstream = MockUpstream::start().await;
    let gw = Gateway::start(
        GatewayConfig::new(&broker.url())
            .upstream(&upstream.url())
            .static_authorization(),
    )
    .await;
    let user = token::valid_token();
    let auth = format!("bearer {user}");
    let mut created = Vec::new();
    for i in 0..3 {
        let resp = create(&gw.url(), Some(&user), create_body(&format!("handle-{i}"))).await;
        assert_eq!(resp.status, 201, "{resp:?}");
        created.push(
            resp.json()["metadata"]["guid"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for app in ["app-1", "app-2"] {
        let bound = send(
            "POST",
            &format!("{}/v2/service_bindings", gw.url()),
            &[("Authorization", auth.as_str())],
            json!({"service_instance_guid": created[0], "app_guid": app, "parameters": {"ro": true}}),
        )
        .await;
        assert_eq!(bound.status, 201, "{bound:?}");
    }
    upstream.clear_requests();

    let bearer = gateway_token();
    let instances = every_page(
        &gw,
        &format!("/v2/service_instances?q=service_plan_guid:{PLAN_GUID}&results-per-page=2"),
        &bearer,
    )
    .await;
    // Keyed by `credentials.name` (the broker's service id), each remembering its guid.
    let by_name: BTreeMap<String, String> = instances
        .iter()
        .map(|r| {
            let name = r["entity"]["credentials"]["name"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(r["entity"]["gateway_data"].is_object(), "{r}");
            (name, r["metadata"]["guid"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(by_name.len(), 3);
    let mut guids: Vec<&String> = by_name.values().collect();
    guids.sort();
    let mut expected: Vec<&String> = created.iter().collect();
    expected.sort();
    assert_eq!(guids, expected);

    let bindings = every_page(
        &gw,
        &format!(
            "/v2/service_bindings?q=service_instance_guid:{}",
            created[0]
        ),
        &bearer,
    )
    .await;
    assert_eq!(bindings.len(), 2);
    for binding in &bindings {
        let entity = &binding["entity"];
        assert!(
            entity["gateway_name"]
                .as_str()
                .is_some_and(|n| n.starts_with("handle-")),
            "{entity}"
        );
        assert!(
            entity["credentials"]["name"].is_string(),
            "credentials shown: {entity}"
        );
        assert!(entity["gateway_data"].is_object(), "{entity}");
        assert_eq!(entity["binding_options"], json!({"ro": true}));
    }
    assert!(
        upstream.requests().is_empty(),
        "the upstream holds none of brokergate's handles: {:?}",
        upstream.requests()
    );
}
