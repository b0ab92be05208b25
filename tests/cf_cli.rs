//! The cf CLI v6.53.0's call sequences for a v1 plan, replayed against brokergate in front of
//! a fake Cloud Controller (which also authorizes: the caller is a space developer), each step
//! asserting the fields the CLI reads (`tests/catalog.rs` replays `marketplace` and
//! `create-service`): `services`, `service NAME`, `rename-service`, `bind-service`,
//! `unbind-service`, `create-service-key` / `service-key` / `delete-service-key`, and the
//! legacy `delete-service -f`.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use serde_json::{json, Value};

use support::broker::MockBroker;
use support::cc_v3::{user_token, FakeCloudController, DEVELOPER};
use support::client::{get, send, Response};
use support::gateway::{Gateway, GatewayConfig, BROKER_TOKEN, PLAN_GUID, SPACE_GUID};

const ECHO_SERVICE_GUID: &str = "3dcca525-780d-5783-84f7-8a1c014e5780";

struct Cli {
    gw: Gateway,
    token: String,
    _cc: FakeCloudController,
    broker: MockBroker,
}

impl Cli {
    async fn start() -> Cli {
        let cc = FakeCloudController::with_default_world().await;
        let broker = MockBroker::start(BROKER_TOKEN).await;
        let gw = Gateway::start(GatewayConfig::new(&broker.url()).upstream(&cc.url())).await;
        Cli {
            gw,
            token: user_token(DEVELOPER),
            _cc: cc,
            broker,
        }
    }

    async fn get(&self, path: &str) -> Value {
        let resp = get(&format!("{}{path}", self.gw.url()), Some(&self.token)).await;
        assert_eq!(resp.status, 200, "GET {path}: {resp:?}");
        resp.json()
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Response {
        let auth = format!("bearer {}", self.token);
        let url = format!("{}{path}", self.gw.url());
        let headers = [("Authorization", auth.as_str())];
        match body {
            Some(body) => send(method, &url, &headers, body).await,
            None => send(method, &url, &headers, "").await,
        }
    }

    /// The instance lookup `service`, `bind-service` and the key commands start with.
    async fn lookup(&self, name: &str) -> Vec<Value> {
        let list = self
            .get(&format!(
                "/v2/spaces/{SPACE_GUID}/service_instances?q=name:{name}&return_user_provided_service_instances=true"
            ))
            .await;
        list["resources"].as_array().unwrap().clone()
    }

    /// `cf create-service echo free NAME`'s last call.
    async fn create_service(&self, name: &str) -> String {
        let resp = self
            .call(
                "POST",
                "/v2/service_instances?accepts_incomplete=true",
                Some(
                    json!({"name": name, "service_plan_guid": PLAN_GUID, "space_guid": SPACE_GUID}),
                ),
            )
            .await;
        assert_eq!(resp.status, 201, "{resp:?}");
        assert_eq!(
            resp.json()["entity"]["last_operation"]["state"],
            "succeeded"
        );
        resp.json()["metadata"]["guid"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// What the CLI requires of an instance: `type`, `space_guid`, `service_guid`,
/// `last_operation`, `created_at` RFC 3339.
fn assert_cli_reads_instance(instance: &Value, name: &str) {
    let e = &instance["entity"];
    assert_eq!(e["name"], name);
    assert_eq!(e["type"], "managed_service_instance");
    assert_eq!(e["space_guid"], SPACE_GUID);
    assert_eq!(e["service_guid"], ECHO_SERVICE_GUID);
    assert_eq!(e["service_plan_guid"], PLAN_GUID);
    assert!(e["last_operation"]["state"].is_string(), "{e}");
    let created = instance["metadata"]["created_at"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "{created}"
    );
}

#[tokio::test]
async fn services_and_service_show_brokergates_instance() {
    let cli = Cli::start().await;
    let guid = cli.create_service("my-db").await;

    // cf services: the space summary, then the offerings (for broker names).
    let summary = cli.get(&format!("/v2/spaces/{SPACE_GUID}/summary")).await;
    let ours = summary["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "my-db")
        .unwrap()
        .clone();
    assert_eq!(ours["last_operation"]["type"], "create");
    assert_eq!(ours["last_operation"]["state"], "succeeded");
    assert_eq!(ours["service_plan"]["guid"], PLAN_GUID);
    assert_eq!(ours["service_plan"]["name"], "free");
    assert_eq!(ours["service_plan"]["service"]["label"], "echo");
    let services = cli.get("/v2/services").await;
    assert!(services["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["metadata"]["guid"] == ECHO_SERVICE_GUID));

    // cf service my-db.
    let found = cli.lookup("my-db").await;
    let instance = found
        .iter()
        .find(|r| r["metadata"]["guid"] == guid.as_str())
        .unwrap();
    assert_cli_reads_instance(instance, "my-db");
    let shared = cli
        .get(&format!("/v2/service_instances/{guid}/shared_to"))
        .await;
    assert_eq!(shared["total_results"], 0);
    let plan = cli.get(&format!("/v2/service_plans/{PLAN_GUID}")).await;
    assert_eq!(plan["entity"]["name"], "free");
    assert_eq!(plan["entity"]["service_guid"], ECHO_SERVICE_GUID);
    let service = cli.get(&format!("/v2/services/{ECHO_SERVICE_GUID}")).await;
    assert_eq!(service["entity"]["label"], "echo");
    assert!(service["entity"]["extra"].is_null() || service["entity"]["extra"].is_string());
    let bindings = cli
        .get(&format!("/v2/service_instances/{guid}/service_bindings"))
        .await;
    assert_eq!(bindings["total_results"], 0);
}

#[tokio::test]
async fn rename_bind_unbind_and_keys() {
    let cli = Cli::start().await;
    let guid = cli.create_service("old-name").await;

    // cf rename-service old-name new-name.
    let renamed = cli
        .call(
            "PUT",
            &format!("/v2/service_instances/{guid}?accepts_incomplete=true"),
            Some(json!({"name": "new-name"})),
        )
        .await;
    assert_eq!(renamed.status, 201, "{renamed:?}");
    assert_eq!(cli.lookup("new-name").await.len(), 1);

    // cf bind-service web new-name.
    let bound = cli
        .call(
            "POST",
            "/v2/service_bindings?accepts_incomplete=true",
            Some(json!({"service_instance_guid": guid, "app_guid": "app-web", "parameters": {}})),
        )
        .await;
    assert_eq!(bound.status, 201, "{bound:?}");
    let binding = bound.json();
    assert_eq!(binding["entity"]["app_guid"], "app-web");
    assert_eq!(binding["entity"]["service_instance_guid"], guid.as_str());
    assert!(
        binding["entity"]["last_operation"].is_object()
            || binding["entity"]["last_operation"].is_null()
    );
    let again = cli
        .call(
            "POST",
            "/v2/service_bindings?accepts_incomplete=true",
            Some(json!({"service_instance_guid": guid, "app_guid": "app-web"})),
        )
        .await;
    support::cc::assert_cc_error(&again, 400, 90003, "CF-ServiceBindingAppServiceTaken");

    // cf unbind-service web new-name.
    let found = cli
        .get(&format!(
            "/v2/service_bindings?q=app_guid:app-web&q=service_instance_guid:{guid}"
        ))
        .await;
    assert_eq!(found["total_results"], 1);
    let binding_guid = found["resources"][0]["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let unbound = cli
        .call(
            "DELETE",
            &format!("/v2/service_bindings/{binding_guid}?accepts_incomplete=true"),
            None,
        )
        .await;
    assert_eq!(unbound.status, 204, "{unbound:?}");
    assert!(unbound.body.is_empty());

    // cf create-service-key new-name key; cf service-key new-name key; cf delete-service-key -f.
    let key = cli
        .call(
            "POST",
            "/v2/service_keys",
            Some(json!({"service_instance_guid": guid, "name": "key"})),
        )
        .await;
    assert_eq!(key.status, 201, "{key:?}");
    let keys = cli
        .get(&format!(
            "/v2/service_instances/{guid}/service_keys?q=name:key"
        ))
        .await;
    assert_eq!(keys["total_results"], 1);
    assert!(keys["resources"][0]["entity"]["credentials"].is_object());
    let key_guid = keys["resources"][0]["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let deleted = cli
        .call("DELETE", &format!("/v2/service_keys/{key_guid}"), None)
        .await;
    assert_eq!(deleted.status, 204, "{deleted:?}");
    assert_eq!(cli.broker.bind_count(), 2);
}

#[tokio::test]
async fn the_legacy_delete_service_finds_inlines_and_deletes() {
    let cli = Cli::start().await;
    let guid = cli.create_service("doomed").await;
    let lookup = format!(
        "/v2/spaces/{SPACE_GUID}/service_instances?return_user_provided_service_instances=true&q=name%3Adoomed&inline-relations-depth=1"
    );
    let list = cli.get(&lookup).await;
    let instance = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metadata"]["guid"] == guid.as_str())
        .unwrap()
        .clone();
    let e = &instance["entity"];
    assert_eq!(e["service_bindings"], json!([]));
    assert_eq!(e["service_keys"], json!([]));
    let service_guid = e["service_plan"]["entity"]["service_guid"]
        .as_str()
        .unwrap();
    assert_eq!(e["service_plan"]["metadata"]["guid"], PLAN_GUID);
    cli.get(&format!("/v2/services/{service_guid}")).await;
    let deleted = cli
        .call(
            "DELETE",
            &format!("/v2/service_instances/{guid}?accepts_incomplete=true&async=true"),
            None,
        )
        .await;
    assert_eq!(
        deleted.status, 204,
        "a 200 with an empty body breaks the v6 decoder: {deleted:?}"
    );
    assert!(deleted.body.is_empty());
    let after = cli.get(&lookup).await;
    assert!(after["resources"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["metadata"]["guid"] != guid.as_str()));
    assert_eq!(cli.broker.delete_count(), 1);
}
