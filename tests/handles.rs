//! Deleting instances, binding and unbinding them, and service keys, against the mock v1
//! broker: the v1 requests on the wire, the v2 envelopes and statuses, the Cloud Controller's
//! errors, and what a race between a delete and a bind (or another delete) leaves.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::time::Duration;

use serde_json::{json, Value};

use support::broker::{MockBroker, Mode, CONFIGURATIONS_PATH, TOKEN_HEADER};
use support::cc::assert_cc_error;
use support::client::{create, create_body, get, send, Response};
use support::gateway::{Gateway, GatewayConfig, BROKER_TOKEN};
use support::token::{self, Claims, DEFAULT_EMAIL};
use support::upstream::MockUpstream;

const INSTANCES: &str = "/v2/service_instances";
const BINDINGS: &str = "/v2/service_bindings";
const KEYS: &str = "/v2/service_keys";
const T: Duration = Duration::from_secs(10);

fn token_with(scopes: &[&str]) -> String {
    Claims::new().scopes(scopes).sign()
}

/// A gateway and one instance created through it: its guid and broker service id.
async fn gateway_with_instance(
    config: impl FnOnce(GatewayConfig) -> GatewayConfig,
) -> (MockBroker, Gateway, String, String) {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let gw = Gateway::start(config(GatewayConfig::new(&broker.url()))).await;
    let name = format!("h-{}", uuid::Uuid::new_v4().simple());
    let created = create(&gw.url(), Some(&token::valid_token()), create_body(&name)).await;
    assert_eq!(created.status, 201, "{created:?}");
    let guid = created.json()["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let service_id = broker.issued_ids()[0].clone();
    (broker, gw, guid, service_id)
}

async fn call(
    gw: &Gateway,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Response {
    let auth = token.map(|t| format!("bearer {t}"));
    let mut headers = Vec::new();
    if let Some(a) = auth.as_deref() {
        headers.push(("authorization", a));
    }
    let bytes = match body {
        Some(b) => {
            headers.push(("content-type", "application/json"));
            b.to_string().into_bytes()
        }
        None => Vec::new(),
    };
    send(method, &format!("{}{path}", gw.url()), &headers, bytes).await
}

async fn delete_instance(gw: &Gateway, guid: &str, query: &str) -> Response {
    call(
        gw,
        "DELETE",
        &format!("{INSTANCES}/{guid}{query}"),
        Some(&token::valid_token()),
        None,
    )
    .await
}

async fn bind(gw: &Gateway, instance: &str, app: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({"service_instance_guid": instance, "app_guid": app});
    if let Some(p) = parameters {
        body["parameters"] = p;
    }
    call(
        gw,
        "POST",
        BINDINGS,
        Some(&token::valid_token()),
        Some(body),
    )
    .await
}

async fn make_key(gw: &Gateway, instance: &str, name: &str) -> Response {
    let body = json!({"service_instance_guid": instance, "name": name});
    call(gw, "POST", KEYS, Some(&token::valid_token()), Some(body)).await
}

fn guid(resp: &Response) -> String {
    resp.json()["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string()
}

fn assert_no_content(resp: &Response) {
    assert_eq!(resp.status, 204, "{resp:?}");
    assert!(resp.body.is_empty(), "{resp:?}");
    assert!(resp.header("x-vcap-request-id").is_some());
}

// ---------------------------------------------------------------------------------------------
// DELETE /v2/service_instances/:guid

#[tokio::test]
async fn a_delete_deprovisions_on_the_v1_wire_and_answers_an_empty_204() {
    let (broker, gw, guid, service_id) = gateway_with_instance(|c| c).await;
    let resp = delete_instance(&gw, &guid, "?accepts_incomplete=true&async=true").await;
    assert_no_content(&resp);
    let deletes = broker.delete_requests();
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    let d = &deletes[0];
    assert_eq!(d.method, "DELETE");
    assert_eq!(d.path, format!("{CONFIGURATIONS_PATH}/{service_id}"));
    assert_eq!(d.header(TOKEN_HEADER).as_deref(), Some(BROKER_TOKEN));
    assert_eq!(
        d.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        d.header("x-vcap-request-id"),
        resp.header("x-vcap-request-id")
    );
    assert!(!broker.holds_instance(&service_id));
    // Gone: a read, a second delete and the list know nothing of it.
    let read = get(
        &format!("{}{INSTANCES}/{guid}", gw.url()),
        Some(&token::valid_token()),
    )
    .await;
    assert_cc_error(&read, 404, 60004, "CF-ServiceInstanceNotFound");
    let again = delete_instance(&gw, &guid, "").await;
    assert_cc_error(&again, 404, 60004, "CF-ServiceInstanceNotFound");
    let list = get(
        &format!("{}{INSTANCES}", gw.url()),
        Some(&token::valid_token()),
    )
    .await;
    assert_eq!(list.json()["total_results"], 0);
    assert_eq!(broker.delete_count(), 1);
}

#[tokio::test]
async fn a_broker_error_on_delete_is_60011_keeps_the_record_and_a_retry_succeeds() {
    let (broker, gw, guid, _) = gateway_with_instance(|c| c).await;
    broker.set_delete_mode(Mode::error(500, 30500, "backend is down"));
    let resp = delete_instance(&gw, &guid, "").await;
    let body = assert_cc_error(&resp, 409, 60011, "CF-ServiceInstanceDeprovisionFailed");
    assert_eq!(
        body["description"],
        "The service broker reported an error during deprovisioning: backend is down"
    );
    assert_eq!(body["http"]["method"], "DELETE");
    assert_eq!(body["http"]["status"], 500);
    assert!(!resp.text().contains(BROKER_TOKEN));
    let read = get(
        &format!("{}{INSTANCES}/{guid}", gw.url()),
        Some(&token::valid_token()),
    )
    .await;
    assert_eq!(read.status, 200, "the record stays: {read:?}");

    broker.set_delete_mode(Mode::Reset);
    let resp = delete_instance(&gw, &guid, "").await;
    assert_cc_error(&resp, 502, 10001, "CF-ServiceBrokerApiUnreachable");
    let read = get(
        &format!("{}{INSTANCES}/{guid}", gw.url()),
        Some(&token::valid_token()),
    )
    .await;
    assert_eq!(read.status, 200, "the record stays: {read:?}");

    broker.set_delete_mode(Mode::Ok);
    assert_no_content(&delete_instance(&gw, &guid, "").await);
    let read = get(
        &format!("{}{INSTANCES}/{guid}", gw.url()),
        Some(&token::valid_token()),
    )
    .await;
    assert_eq!(read.status, 404);
}

#[tokio::test]
async fn a_broker_that_no_longer_knows_the_instance_counts_as_deleted() {
    for status in [404, 410] {
        let (broker, gw, guid, _) = gateway_with_instance(|c| c).await;
        broker.set_delete_mode(Mode::error(status, 30300, "not found"));
        assert_no_content(&delete_instance(&gw, &guid, "").await);
        let read = get(
            &format!("{}{INSTANCES}/{guid}", gw.url()),
            Some(&token::valid_token()),
        )
        .await;
        assert_eq!(read.status, 404, "{status}");
    }
}

#[tokio::test]
async fn a_delete_needs_write_valid_flags_and_an_owned_guid() {
    let upstream = MockUpstream::start().await;
    let (broker, gw, guid, _) =
        gateway_with_instance(|c| c.upstream(&upstream.url()).static_authorization()).await;
    let read_only = token_with(&["cloud_controller.read"]);
    let resp = call(
        &gw,
        "DELETE",
        &format!("{INSTANCES}/{guid}"),
        Some(&read_only),
        None,
    )
    .await;
    assert_cc_error(&resp, 403, 10007, "CF-InsufficientScope");
    for query in ["?recursive=yes", "?accepts_incomplete=1", "?async=maybe"] {
        let resp = delete_instance(&gw, &guid, query).await;
        assert_cc_error(&resp, 400, 10004, "CF-InvalidRequest");
    }
    assert_eq!(broker.delete_count(), 0);
    // An instance brokergate does not hold is the upstream's, unchanged.
    let resp = delete_instance(&gw, "upstream-guid", "?recursive=true").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].method, "DELETE");
    assert_eq!(
        seen[0].path,
        format!("{INSTANCES}/upstream-guid?recursive=true")
    );
    assert_eq!(broker.delete_count(), 0);
}

#[tokio::test]
async fn ten_concurrent_deletes_make_one_broker_call_and_one_204() {
    let (broker, gw, guid, _) = gateway_with_instance(|c| c).await;
    broker.set_delete_mode(Mode::Delay(Duration::from_millis(800)));
    let url = format!("{}{INSTANCES}/{guid}", gw.url());
    let answers = concurrently(10, "DELETE", url, None).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 204).count(),
        1,
        "{statuses:?}"
    );
    for resp in answers.iter().filter(|r| r.status != 204) {
        // The losers either met the delete in flight or found the instance gone.
        if resp.status == 409 {
            let body = assert_cc_error(
                resp,
                409,
                60016,
                "CF-AsyncServiceInstanceOperationInProgress",
            );
            assert_eq!(
                body["description"],
                format!("An operation for service instance {guid} is in progress.")
            );
        } else {
            assert_cc_error(resp, 404, 60004, "CF-ServiceInstanceNotFound");
        }
    }
    assert_eq!(broker.delete_count(), 1);
}

/// `n` copies of one request, sent at once from their own tasks; the answers, in order.
async fn concurrently(
    n: usize,
    method: &'static str,
    url: String,
    body: Option<Value>,
) -> Vec<Response> {
    let bearer = format!("bearer {}", token::valid_token());
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (url, bearer, body) = (url.clone(), bearer.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut headers = vec![("authorization", bearer.as_str())];
            let bytes = match &body {
                Some(b) => {
                    headers.push(("content-type", "application/json"));
                    b.to_string().into_bytes()
                }
                None => Vec::new(),
            };
            send(method, &url, &headers, bytes).await
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(
            tokio::time::timeout(T * 2, task)
                .await
                .expect("answered in time")
                .unwrap(),
        );
    }
    answers
}

// ---------------------------------------------------------------------------------------------
// Bindings

#[tokio::test]
async fn a_bind_is_a_v1_handle_on_the_wire_and_a_v2_binding_envelope() {
    let (broker, gw, instance, service_id) = gateway_with_instance(|c| c).await;
    // Sent as text: a 30-digit number must reach the broker unrounded.
    let body = format!(
        r#"{{"service_instance_guid":"{instance}","app_guid":"app-1","parameters":{{"read_only": true, "big": 123456789012345678901234567890}}}}"#
    );
    let bearer = format!("bearer {}", token::valid_token());
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let resp = send(
        "POST",
        &format!("{}{BINDINGS}", gw.url()),
        &headers,
        body.into_bytes(),
    )
    .await;
    assert_eq!(resp.status, 201, "{resp:?}");
    let binding = guid(&resp);
    assert_eq!(
        resp.header("location"),
        Some(format!("{BINDINGS}/{binding}"))
    );

    let binds = broker.bind_requests();
    assert_eq!(binds.len(), 1, "{binds:#?}");
    let b = &binds[0];
    assert_eq!(b.method, "POST");
    assert_eq!(
        b.path,
        format!("{CONFIGURATIONS_PATH}/{service_id}/handles")
    );
    assert_eq!(b.header(TOKEN_HEADER).as_deref(), Some(BROKER_TOKEN));
    assert_eq!(
        b.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        b.body_str(),
        format!(
            r#"{{"service_id":"{service_id}","app_id":"app-1","label":"echo-1.0","email":"{DEFAULT_EMAIL}","binding_options":{{"read_only": true, "big": 123456789012345678901234567890}}}}"#
        ),
        "the request's parameters reach the broker as binding_options"
    );

    let handle_id = broker.issued_handles()[0].clone();
    let v = resp.json();
    assert!(
        resp.text().contains(
            r#""binding_options":{"read_only": true, "big": 123456789012345678901234567890}"#
        ),
        "{resp:?}"
    );
    let e = &v["entity"];
    assert_eq!(e["app_guid"], "app-1");
    assert_eq!(e["service_instance_guid"], instance.as_str());
    assert_eq!(e["gateway_name"], handle_id.as_str());
    assert!(
        e["credentials"].is_object() && e["credentials"] != json!({}),
        "{v}"
    );
    assert_eq!(e["binding_options"]["read_only"], true);
    assert_eq!(e["volume_mounts"], json!([]));
    assert_eq!(e["last_operation"]["state"], "succeeded");
    assert_eq!(e["app_url"], "/v2/apps/app-1");
    assert_eq!(e["service_instance_url"], format!("{INSTANCES}/{instance}"));

    // Read back: by guid, in the list by app and instance, and under the instance.
    let token = token::valid_token();
    let read = get(&format!("{}{BINDINGS}/{binding}", gw.url()), Some(&token)).await;
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read.body, resp.body);
    let q = format!("?q=service_instance_guid:{instance}&q=app_guid:app-1");
    let list = get(&format!("{}{BINDINGS}{q}", gw.url()), Some(&token)).await;
    assert_eq!(list.json()["total_results"], 1, "{list:?}");
    assert_eq!(list.json()["resources"][0], v);
    let none = get(
        &format!("{}{BINDINGS}?q=app_guid:other", gw.url()),
        Some(&token),
    )
    .await;
    assert_eq!(none.json()["total_results"], 0);
    let under = get(
        &format!("{}{INSTANCES}/{instance}/service_bindings", gw.url()),
        Some(&token),
    )
    .await;
    assert_eq!(under.json()["resources"][0], v, "{under:?}");
    let bad = get(
        &format!("{}{BINDINGS}?q=credentials:x", gw.url()),
        Some(&token),
    )
    .await;
    assert_cc_error(&bad, 400, 10005, "CF-BadQueryParameter");

    // Read-only callers see no credentials.
    let reader = token_with(&["cloud_controller.read"]);
    let read = get(&format!("{}{BINDINGS}/{binding}", gw.url()), Some(&reader)).await;
    assert_eq!(
        read.json()["entity"]["credentials"],
        json!({"redacted_message": "[PRIVATE DATA HIDDEN]"})
    );
}

#[tokio::test]
async fn email_is_the_user_id_without_an_email_claim_and_options_default_to_empty() {
    let (broker, gw, instance, _) = gateway_with_instance(|c| c).await;
    let no_email = Claims::new()
        .remove("email")
        .set("user_id", "user-without-email")
        .sign();
    let body = json!({"service_instance_guid": instance, "app_guid": "app-9"});
    let resp = call(&gw, "POST", BINDINGS, Some(&no_email), Some(body)).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    let sent = broker.bind_requests()[0].json();
    assert_eq!(sent["email"], "user-without-email");
    assert_eq!(sent["binding_options"], json!({}));
    assert_eq!(resp.json()["entity"]["binding_options"], json!({}));
}

#[tokio::test]
async fn binding_errors_are_the_cloud_controllers() {
    let (broker, gw, instance, _) = gateway_with_instance(|c| c).await;
    assert_eq!(bind(&gw, &instance, "app-1", None).await.status, 201);
    let twice = bind(&gw, &instance, "app-1", None).await;
    let body = assert_cc_error(&twice, 400, 90003, "CF-ServiceBindingAppServiceTaken");
    assert_eq!(
        body["description"],
        "The app is already bound to the service."
    );
    assert_eq!(broker.bind_count(), 1);

    let unknown = bind(&gw, "no-such-instance", "app-2", None).await;
    assert_cc_error(&unknown, 404, 60004, "CF-ServiceInstanceNotFound");
    let missing = call(
        &gw,
        "POST",
        BINDINGS,
        Some(&token::valid_token()),
        Some(json!({"app_guid": "a"})),
    )
    .await;
    let body = assert_cc_error(&missing, 400, 1001, "CF-MessageParseError");
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("service_instance_guid"),
        "{body}"
    );
    let read_only = token_with(&["cloud_controller.read"]);
    let body = json!({"service_instance_guid": instance, "app_guid": "app-3"});
    let resp = call(&gw, "POST", BINDINGS, Some(&read_only), Some(body)).await;
    assert_cc_error(&resp, 403, 10007, "CF-InsufficientScope");

    broker.set_bind_mode(Mode::error(500, 30500, "no capacity"));
    let failed = bind(&gw, &instance, "app-4", None).await;
    let body = assert_cc_error(&failed, 502, 10001, "CF-ServiceBrokerBadResponse");
    assert_eq!(body["http"]["method"], "POST");
    // Nothing is left of a failed bind: the app binds once the broker does.
    broker.set_bind_mode(Mode::Ok);
    assert_eq!(bind(&gw, &instance, "app-4", None).await.status, 201);

    let token = token::valid_token();
    let resp = get(
        &format!("{}{BINDINGS}/no-such-binding", gw.url()),
        Some(&token),
    )
    .await;
    let body = assert_cc_error(&resp, 404, 90004, "CF-ServiceBindingNotFound");
    assert_eq!(
        body["description"],
        "The service binding could not be found: no-such-binding"
    );
    let resp = call(
        &gw,
        "DELETE",
        &format!("{BINDINGS}/no-such-binding"),
        Some(&token),
        None,
    )
    .await;
    assert_cc_error(&resp, 404, 90004, "CF-ServiceBindingNotFound");
}

#[tokio::test]
async fn an_unbind_is_a_delete_with_a_body_on_the_wire_and_204() {
    let (broker, gw, instance, service_id) = gateway_with_instance(|c| c).await;
    let created = bind(&gw, &instance, "app-1", Some(json!({"x": 1}))).await;
    let binding = guid(&created);
    let handle_id = broker.issued_handles()[0].clone();
    let token = token::valid_token();
    let resp = call(
        &gw,
        "DELETE",
        &format!("{BINDINGS}/{binding}?accepts_incomplete=true"),
        Some(&token),
        None,
    )
    .await;
    assert_no_content(&resp);
    let unbinds = broker.unbind_requests();
    assert_eq!(unbinds.len(), 1, "{unbinds:#?}");
    let u = &unbinds[0];
    assert_eq!(u.method, "DELETE");
    assert_eq!(
        u.path,
        format!("{CONFIGURATIONS_PATH}/{service_id}/handles/{handle_id}")
    );
    assert_eq!(u.header(TOKEN_HEADER).as_deref(), Some(BROKER_TOKEN));
    assert_eq!(
        u.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        u.body_str(),
        format!(
            r#"{{"service_id":"{service_id}","handle_id":"{handle_id}","binding_options":{{"x":1}}}}"#
        )
    );
    assert!(broker.live_handles(&service_id).is_empty());
    let read = get(&format!("{}{BINDINGS}/{binding}", gw.url()), Some(&token)).await;
    assert_cc_error(&read, 404, 90004, "CF-ServiceBindingNotFound");
    // The app may bind again.
    assert_eq!(bind(&gw, &instance, "app-1", None).await.status, 201);
}

#[tokio::test]
async fn a_refused_unbind_keeps_the_binding() {
    let (broker, gw, instance, _) = gateway_with_instance(|c| c).await;
    let binding = guid(&bind(&gw, &instance, "app-1", None).await);
    broker.set_unbind_mode(Mode::error(500, 30500, "busy"));
    let token = token::valid_token();
    let path = format!("{BINDINGS}/{binding}");
    let resp = call(&gw, "DELETE", &path, Some(&token), None).await;
    assert_cc_error(&resp, 502, 10001, "CF-ServiceBrokerBadResponse");
    assert_eq!(
        get(&format!("{}{path}", gw.url()), Some(&token))
            .await
            .status,
        200
    );
    broker.set_unbind_mode(Mode::Ok);
    assert_no_content(&call(&gw, "DELETE", &path, Some(&token), None).await);
}

#[tokio::test]
async fn an_unknown_binding_goes_upstream_unchanged() {
    let upstream = MockUpstream::start().await;
    let (broker, gw, _, _) =
        gateway_with_instance(|c| c.upstream(&upstream.url()).static_authorization()).await;
    let token = token::valid_token();
    let body = json!({"service_instance_guid": "their-instance", "app_guid": "app"});
    let resp = call(&gw, "POST", BINDINGS, Some(&token), Some(body.clone())).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let resp = call(
        &gw,
        "DELETE",
        &format!("{BINDINGS}/their-binding?async=true"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let resp = get(&format!("{}{KEYS}/their-key", gw.url()), Some(&token)).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", BINDINGS)
    );
    assert_eq!(seen[0].json(), body);
    assert_eq!(seen[1].path, format!("{BINDINGS}/their-binding?async=true"));
    assert_eq!(seen[2].path, format!("{KEYS}/their-key"));
    assert_eq!(broker.bind_count() + broker.unbind_count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Service keys

#[tokio::test]
async fn a_service_key_is_a_handle_without_an_app() {
    let (broker, gw, instance, service_id) = gateway_with_instance(|c| c).await;
    let resp = make_key(&gw, &instance, "k1").await;
    assert_eq!(resp.status, 201, "{resp:?}");
    let key = guid(&resp);
    assert_eq!(resp.header("location"), Some(format!("{KEYS}/{key}")));
    let sent = &broker.bind_requests()[0];
    assert_eq!(
        sent.path,
        format!("{CONFIGURATIONS_PATH}/{service_id}/handles")
    );
    let body = sent.json();
    assert_eq!(body["service_id"], service_id.as_str());
    assert_eq!(body["label"], "echo-1.0");
    assert_eq!(body["email"], DEFAULT_EMAIL);
    assert_eq!(body["binding_options"], json!({}));
    assert!(body.get("app_id").is_none_or(Value::is_null), "{body}");

    let v = resp.json();
    assert_eq!(v["metadata"]["url"], format!("{KEYS}/{key}"));
    assert_eq!(v["entity"]["name"], "k1");
    assert_eq!(v["entity"]["service_instance_guid"], instance.as_str());
    assert_eq!(
        v["entity"]["service_instance_url"],
        format!("{INSTANCES}/{instance}")
    );
    assert!(v["entity"]["credentials"].is_object());

    let dup = make_key(&gw, &instance, "k1").await;
    let err = assert_cc_error(&dup, 400, 360001, "CF-ServiceKeyNameTaken");
    assert_eq!(err["description"], "The service key name is taken: k1");
    let empty = make_key(&gw, &instance, "").await;
    assert_cc_error(&empty, 400, 360002, "CF-ServiceKeyInvalid");
    assert_eq!(broker.bind_count(), 1);

    let token = token::valid_token();
    let read = get(&format!("{}{KEYS}/{key}", gw.url()), Some(&token)).await;
    assert_eq!(read.body, resp.body);
    let reader = token_with(&["cloud_controller.read"]);
    let hidden = get(&format!("{}{KEYS}/{key}", gw.url()), Some(&reader)).await;
    assert_eq!(
        hidden.json()["entity"]["credentials"],
        json!({"redacted_message": "[PRIVATE DATA HIDDEN]"})
    );
    let q = format!("?q=service_instance_guid:{instance}&q=name:k1");
    let list = get(&format!("{}{KEYS}{q}", gw.url()), Some(&token)).await;
    assert_eq!(list.json()["resources"][0], v, "{list:?}");
    let under = get(
        &format!("{}{INSTANCES}/{instance}/service_keys", gw.url()),
        Some(&reader),
    )
    .await;
    assert_eq!(under.json()["total_results"], 1);
    assert_eq!(
        under.json()["resources"][0]["entity"]["credentials"],
        json!({"redacted_message": "[PRIVATE DATA HIDDEN]"})
    );
    let missing = get(&format!("{}{KEYS}/nope", gw.url()), Some(&token)).await;
    assert_cc_error(&missing, 404, 360003, "CF-ServiceKeyNotFound");
    // A key is not a binding.
    let as_binding = get(&format!("{}{BINDINGS}/{key}", gw.url()), Some(&token)).await;
    assert_cc_error(&as_binding, 404, 90004, "CF-ServiceBindingNotFound");

    let handle_id = broker.issued_handles()[0].clone();
    assert_no_content(&call(&gw, "DELETE", &format!("{KEYS}/{key}"), Some(&token), None).await);
    let unbind = &broker.unbind_requests()[0];
    assert_eq!(
        unbind.path,
        format!("{CONFIGURATIONS_PATH}/{service_id}/handles/{handle_id}")
    );
    assert_eq!(unbind.json()["handle_id"], handle_id.as_str());
    let gone = get(&format!("{}{KEYS}/{key}", gw.url()), Some(&token)).await;
    assert_cc_error(&gone, 404, 360003, "CF-ServiceKeyNotFound");
}

// ---------------------------------------------------------------------------------------------
// Deletes with handles, and races

#[tokio::test]
async fn a_delete_with_handles_needs_recursive_which_unbinds_them_first() {
    let (broker, gw, instance, service_id) = gateway_with_instance(|c| c).await;
    let b1 = guid(&bind(&gw, &instance, "app-1", None).await);
    guid(&bind(&gw, &instance, "app-2", None).await);
    let k1 = guid(&make_key(&gw, &instance, "k1").await);
    let resp = delete_instance(&gw, &instance, "").await;
    let body = assert_cc_error(&resp, 400, 10006, "CF-AssociationNotEmpty");
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .starts_with("Please delete the"),
        "{body}"
    );
    assert_eq!(broker.delete_count() + broker.unbind_count(), 0);

    assert_no_content(&delete_instance(&gw, &instance, "?recursive=true").await);
    assert_eq!(broker.unbind_count(), 3);
    assert!(broker.live_handles(&service_id).is_empty());
    assert_eq!(broker.delete_count(), 1);
    // The handles went before the instance.
    let requests = broker.requests();
    let last = requests.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.clone()),
        ("DELETE", format!("{CONFIGURATIONS_PATH}/{service_id}"))
    );
    let token = token::valid_token();
    let resp = get(&format!("{}{BINDINGS}/{b1}", gw.url()), Some(&token)).await;
    assert_cc_error(&resp, 404, 90004, "CF-ServiceBindingNotFound");
    let resp = get(&format!("{}{KEYS}/{k1}", gw.url()), Some(&token)).await;
    assert_cc_error(&resp, 404, 360003, "CF-ServiceKeyNotFound");
    let list = get(&format!("{}{BINDINGS}", gw.url()), Some(&token)).await;
    assert_eq!(list.json()["total_results"], 0);
}

#[tokio::test]
async fn a_recursive_delete_whose_unbind_fails_keeps_instance_and_remaining_handles() {
    let (broker, gw, instance, _) = gateway_with_instance(|c| c).await;
    let b1 = guid(&bind(&gw, &instance, "app-1", None).await);
    broker.set_unbind_mode(Mode::error(500, 30500, "busy"));
    let resp = delete_instance(&gw, &instance, "?recursive=true").await;
    assert_cc_error(&resp, 502, 10001, "CF-ServiceBrokerBadResponse");
    let token = token::valid_token();
    assert_eq!(
        get(&format!("{}{INSTANCES}/{instance}", gw.url()), Some(&token))
            .await
            .status,
        200
    );
    assert_eq!(
        get(&format!("{}{BINDINGS}/{b1}", gw.url()), Some(&token))
            .await
            .status,
        200
    );
    assert_eq!(broker.delete_count(), 0);
    broker.set_unbind_mode(Mode::Ok);
    assert_no_content(&delete_instance(&gw, &instance, "?recursive=true").await);
}

#[tokio::test]
async fn a_bind_racing_a_delete_is_refused_and_never_reaches_the_broker() {
    let (broker, gw, instance, _) = gateway_with_instance(|c| c).await;
    broker.set_delete_mode(Mode::Delay(Duration::from_millis(800)));
    let url = format!("{}{INSTANCES}/{instance}", gw.url());
    let delete = tokio::spawn(concurrently(1, "DELETE", url.clone(), None));
    assert!(support::wait_until(T, || broker.delete_count() == 1).await);
    // While the broker deprovisions, a read shows the delete in progress.
    let read = get(&url, Some(&token::valid_token())).await;
    assert_eq!(read.status, 200, "{read:?}");
    let op = &read.json()["entity"]["last_operation"];
    assert_eq!(
        (op["type"].as_str(), op["state"].as_str()),
        (Some("delete"), Some("in progress"))
    );
    let resp = bind(&gw, &instance, "app-1", None).await;
    assert_cc_error(
        &resp,
        409,
        60016,
        "CF-AsyncServiceInstanceOperationInProgress",
    );
    let resp = make_key(&gw, &instance, "k").await;
    assert_cc_error(
        &resp,
        409,
        60016,
        "CF-AsyncServiceInstanceOperationInProgress",
    );
    let deleted = delete.await.unwrap();
    assert_no_content(&deleted[0]);
    assert_eq!(broker.bind_count(), 0);
    let list = get(
        &format!("{}{BINDINGS}", gw.url()),
        Some(&token::valid_token()),
    )
    .await;
    assert_eq!(list.json()["total_results"], 0);
}

#[tokio::test]
async fn a_delete_racing_a_bind_is_refused_and_leaves_the_binding_whole() {
    let (broker, gw, instance, _) = gateway_with_instance(|c| c).await;
    broker.set_bind_mode(Mode::Delay(Duration::from_millis(800)));
    let body = json!({"service_instance_guid": instance, "app_guid": "app-1"});
    let binding = tokio::spawn(concurrently(
        1,
        "POST",
        format!("{}{BINDINGS}", gw.url()),
        Some(body),
    ));
    assert!(broker.wait_for_binds(1, T).await);
    for query in ["", "?recursive=true"] {
        let resp = delete_instance(&gw, &instance, query).await;
        assert_cc_error(
            &resp,
            409,
            60016,
            "CF-AsyncServiceInstanceOperationInProgress",
        );
    }
    let bound = binding.await.unwrap();
    assert_eq!(bound[0].status, 201, "{:?}", bound[0]);
    assert_eq!(broker.delete_count(), 0);
    let token = token::valid_token();
    let read = get(
        &format!("{}{BINDINGS}/{}", gw.url(), guid(&bound[0])),
        Some(&token),
    )
    .await;
    assert_eq!(read.status, 200);
}
