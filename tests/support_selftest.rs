//! Proves the test-support library itself works, without the gateway binary.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

use support::broker::{refused_url, MockBroker, Mode, TOKEN_HEADER};
use support::cc_v3::{
    self, user_token, FakeCloudController, Question, Role, AUDITOR, DEVELOPER, MANAGER, OUTSIDER,
    V3_JSON,
};
use support::client::{self, create, create_body, send, try_send, FORM_CONTENT_TYPE};
use support::gateway::{
    parse_listening, wait_listening, GatewayConfig, Listening, BROKER_TOKEN, ORG_GUID, PLAN_GUID,
    SPACE_GUID,
};
use support::raw::{keep_alive_pair, parse_response, pipelined, raw_exchange, raw_http};
use support::token::{self, Claims};
use support::upstream::MockUpstream;

const T: Duration = Duration::from_secs(5);

fn provision_body() -> Value {
    json!({"label": "echo-1.0", "name": "my-echo", "plan": "free", "version": "1.0",
           "space_guid": SPACE_GUID, "organization_guid": ORG_GUID})
}

async fn provision(broker: &MockBroker, token: &str, content_type: &str) -> client::Response {
    let url = format!("{}/gateway/v1/configurations", broker.url());
    let headers = [(TOKEN_HEADER, token), ("content-type", content_type)];
    send("POST", &url, &headers, &provision_body()).await
}

async fn unprovision(broker: &MockBroker, id: &str) -> client::Response {
    let url = format!("{}/gateway/v1/configurations/{id}", broker.url());
    let headers = [
        (TOKEN_HEADER, BROKER_TOKEN),
        ("content-type", "application/json"),
    ];
    send("DELETE", &url, &headers, "").await
}

#[test]
fn refused_port_stays_taken_and_refuses() {
    let port = support::refused_port();
    assert_ne!(port, 0);
    assert_ne!(
        support::refused_port(),
        port,
        "each call holds another port"
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpListener::bind(addr).expect_err("the port is held");
    let err = std::net::TcpStream::connect_timeout(&addr, T).expect_err("nothing listens");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err:?}");
}

#[tokio::test]
async fn broker_ok_mode_provisions_and_records() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    assert_eq!(broker.url(), format!("http://{}", broker.addr()));

    let first = provision(&broker, BROKER_TOKEN, "application/json").await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        first.json(),
        json!({"service_id": "svc-1", "configuration": {"plan": "free", "version": "1.0"},
               "credentials": {"host": "127.0.0.1", "port": 5002, "name": "svc-1"},
               "dashboard_url": "http://dashboard.example.com/svc-1"})
    );
    let second = provision(&broker, BROKER_TOKEN, "application/json; charset=utf-8").await;
    assert_eq!(second.json()["service_id"], "svc-2");

    assert_eq!(broker.provision_count(), 2);
    assert_eq!(broker.issued_ids(), vec!["svc-1", "svc-2"]);
    let req = &broker.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/gateway/v1/configurations");
    assert_eq!(req.header(TOKEN_HEADER).as_deref(), Some(BROKER_TOKEN));
    assert_eq!(req.json(), provision_body());
}

#[tokio::test]
async fn broker_checks_content_type_and_token_and_records_rejects() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let bad_token = provision(&broker, "wrong", "application/json").await;
    assert_eq!(bad_token.status, 401);
    assert_eq!(
        bad_token.json(),
        json!({"code": 30100, "description": "Not authorized"})
    );
    let bad_type = provision(&broker, BROKER_TOKEN, FORM_CONTENT_TYPE).await;
    assert_eq!(bad_type.status, 400);
    assert_eq!(
        bad_type.json(),
        json!({"code": 30000, "description": "Invalid Content-Type"})
    );
    assert_eq!(broker.provision_count(), 2);
    assert!(broker.issued_ids().is_empty());

    let other = send("GET", &format!("{}/nope?x=1", broker.url()), &[], "").await;
    assert_eq!(other.status, 404);
    assert_eq!(broker.requests()[2].path, "/nope?x=1");
}

#[tokio::test]
async fn broker_json_and_raw_modes() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    broker.set_mode(Mode::error(500, 12345, "This is what really happened."));
    let r = provision(&broker, BROKER_TOKEN, "application/json").await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["code"], 12345);

    broker.set_mode(Mode::Json(200, json!({"service_id": 5})));
    let r = provision(&broker, BROKER_TOKEN, "application/json").await;
    assert_eq!((r.status, r.json()), (200, json!({"service_id": 5})));

    broker.set_mode(Mode::raw(502, "<html>bad gateway</html>", "text/html"));
    let r = provision(&broker, BROKER_TOKEN, "application/json").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), "<html>bad gateway</html>");
    assert_eq!(r.header("content-type").as_deref(), Some("text/html"));

    broker.set_mode(Mode::raw(200, "not json", ""));
    let r = provision(&broker, BROKER_TOKEN, "application/json").await;
    assert_eq!((r.status, r.text()), (200, "not json".to_string()));
    assert_eq!(r.header("content-type"), None);
}

#[tokio::test]
async fn broker_delete_modes_and_counts() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    provision(&broker, BROKER_TOKEN, "application/json").await;
    assert!(broker.holds_instance("svc-1"));
    let r = unprovision(&broker, "svc-1").await;
    assert_eq!((r.status, r.json()), (200, json!({})));
    assert!(!broker.holds_instance("svc-1"));

    // An instance it does not hold (any more) is not found, as at the echo gateway.
    for id in ["svc-1", "svc-9"] {
        let r = unprovision(&broker, id).await;
        assert_eq!(
            (r.status, r.json()),
            (
                404,
                json!({"code": 32102, "description": format!("Could not find instance: {id}")})
            )
        );
    }

    broker.set_delete_mode(Mode::error(410, 30500, "gone"));
    let r = unprovision(&broker, "svc-10").await;
    assert_eq!(r.status, 410);

    assert_eq!(broker.delete_count(), 4);
    assert_eq!(broker.provision_count(), 1);
    assert_eq!(
        broker.deleted_ids(),
        vec!["svc-1", "svc-1", "svc-9", "svc-10"]
    );
    assert!(broker.wait_for_deletes(4, T).await);
    assert!(!broker.wait_for_deletes(5, Duration::from_millis(100)).await);
}

fn broker_headers(token: &str) -> [(&str, &str); 2] {
    [(TOKEN_HEADER, token), ("content-type", "application/json")]
}

async fn bind(broker: &MockBroker, instance: &str, body: &Value) -> client::Response {
    let url = format!(
        "{}/gateway/v1/configurations/{instance}/handles",
        broker.url()
    );
    send("POST", &url, &broker_headers(BROKER_TOKEN), body).await
}

async fn unbind(
    broker: &MockBroker,
    instance: &str,
    handle: &str,
    body: &Value,
) -> client::Response {
    let url = format!(
        "{}/gateway/v1/configurations/{instance}/handles/{handle}",
        broker.url()
    );
    send("DELETE", &url, &broker_headers(BROKER_TOKEN), body).await
}

fn bind_body(instance: &str) -> Value {
    json!({"service_id": instance, "app_id": "app-1", "label": "echo-1.0",
           "email": "dev@example.com", "binding_options": {"k": "v"}})
}

fn unbind_body(instance: &str, handle: &str) -> Value {
    json!({"service_id": instance, "handle_id": handle, "binding_options": {"k": "v"}})
}

#[tokio::test]
async fn broker_binds_and_unbinds_handles_of_held_instances() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    provision(&broker, BROKER_TOKEN, "application/json").await;

    let first = bind(&broker, "svc-1", &bind_body("svc-1")).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        first.json(),
        json!({"service_id": "handle-1",
               "configuration": {"service_id": "svc-1", "binding_options": {"k": "v"}},
               "credentials": {"host": "127.0.0.1", "port": 5002, "name": "svc-1",
                               "user": "handle-1", "password": "pw-handle-1"}})
    );
    // A service key: no app_id, or a null one (JsonMessage drops nulls).
    let mut key = bind_body("svc-1");
    key["app_id"] = Value::Null;
    let second = bind(&broker, "svc-1", &key).await;
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(second.json()["service_id"], "handle-2");
    assert_ne!(first.json()["credentials"], second.json()["credentials"]);
    key.as_object_mut().unwrap().remove("app_id");
    assert_eq!(
        bind(&broker, "svc-1", &key).await.json()["service_id"],
        "handle-3"
    );

    assert_eq!(
        broker.issued_handles(),
        vec!["handle-1", "handle-2", "handle-3"]
    );
    assert_eq!(
        broker.live_handles("svc-1"),
        vec!["handle-1", "handle-2", "handle-3"]
    );
    assert_eq!(broker.bind_count(), 3);
    let recorded = &broker.bind_requests()[0];
    assert_eq!(recorded.path, "/gateway/v1/configurations/svc-1/handles");
    assert_eq!(recorded.json(), bind_body("svc-1"));
    assert_eq!(broker.provision_count(), 1, "binds are not provisions");

    let r = unbind(
        &broker,
        "svc-1",
        "handle-1",
        &unbind_body("svc-1", "handle-1"),
    )
    .await;
    assert_eq!((r.status, r.json()), (200, json!({})));
    assert_eq!(broker.live_handles("svc-1"), vec!["handle-2", "handle-3"]);
    let r = unbind(
        &broker,
        "svc-1",
        "handle-1",
        &unbind_body("svc-1", "handle-1"),
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (
            404,
            json!({"code": 30300, "description": "handle-1 not found"})
        )
    );
    let r = unbind(
        &broker,
        "svc-7",
        "handle-2",
        &unbind_body("svc-7", "handle-2"),
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (
            404,
            json!({"code": 32102, "description": "Could not find instance: svc-7"})
        )
    );
    assert_eq!(broker.unbind_count(), 3);
    assert_eq!(
        broker.unbind_requests()[0].path,
        "/gateway/v1/configurations/svc-1/handles/handle-1"
    );
    assert_eq!(
        broker.unbind_requests()[0].json(),
        unbind_body("svc-1", "handle-1")
    );
    assert_eq!(broker.delete_count(), 0, "unbinds are not unprovisions");

    // Unprovisioning forgets the instance's handles.
    assert_eq!(unprovision(&broker, "svc-1").await.status, 200);
    assert!(!broker.holds_instance("svc-1"));
    assert!(broker.live_handles("svc-1").is_empty());
    let r = bind(&broker, "svc-1", &bind_body("svc-1")).await;
    assert_eq!(
        (r.status, r.json()),
        (
            404,
            json!({"code": 32102, "description": "Could not find instance: svc-1"})
        )
    );
    let r = unbind(
        &broker,
        "svc-1",
        "handle-2",
        &unbind_body("svc-1", "handle-2"),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(broker.issued_handles().len(), 3);

    assert!(broker.wait_for_binds(4, T).await);
    assert!(!broker.wait_for_binds(5, Duration::from_millis(100)).await);
    assert!(broker.wait_for_unbinds(4, T).await);
    assert!(!broker.wait_for_unbinds(5, Duration::from_millis(100)).await);
}

#[tokio::test]
async fn broker_decodes_bind_and_unbind_bodies_strictly() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    provision(&broker, BROKER_TOKEN, "application/json").await;
    let malformed = json!({"code": 30001, "description": "Malformatted request"});

    let mut bad_binds = Vec::new();
    for (key, value) in [
        ("email", Value::Null),
        ("email", json!(5)),
        ("label", Value::Null),
        ("service_id", json!(1)),
        ("binding_options", Value::Null),
        ("app_id", json!(7)),
    ] {
        let mut body = bind_body("svc-1");
        body[key] = value.clone();
        bad_binds.push((format!("{key}: {value}"), body));
    }
    let mut missing = bind_body("svc-1");
    missing.as_object_mut().unwrap().remove("email");
    bad_binds.push(("no email".into(), missing));
    bad_binds.push(("an array".into(), json!([bind_body("svc-1")])));
    for (what, body) in &bad_binds {
        let r = bind(&broker, "svc-1", body).await;
        assert_eq!((r.status, r.json()), (400, malformed.clone()), "{what}");
    }
    let url = format!("{}/gateway/v1/configurations/svc-1/handles", broker.url());
    let r = send("POST", &url, &broker_headers(BROKER_TOKEN), "not json").await;
    assert_eq!((r.status, r.json()), (400, malformed.clone()));
    // Unknown keys are ignored.
    let mut extra = bind_body("svc-1");
    extra["plan"] = json!("free");
    assert_eq!(bind(&broker, "svc-1", &extra).await.status, 200);

    for key in ["service_id", "handle_id", "binding_options"] {
        let mut body = unbind_body("svc-1", "handle-1");
        body.as_object_mut().unwrap().remove(key);
        let r = unbind(&broker, "svc-1", "handle-1", &body).await;
        assert_eq!((r.status, r.json()), (400, malformed.clone()), "no {key}");
    }
    let url = format!(
        "{}/gateway/v1/configurations/svc-1/handles/handle-1",
        broker.url()
    );
    let r = send("DELETE", &url, &broker_headers(BROKER_TOKEN), "").await;
    assert_eq!(
        (r.status, r.json()),
        (400, malformed),
        "a DELETE without a body"
    );
    assert_eq!(broker.live_handles("svc-1"), vec!["handle-1"]);

    // The gateway's before filter comes first: Content-Type, then the token.
    let wrong_token = send(
        "POST",
        &format!("{}/gateway/v1/configurations/svc-1/handles", broker.url()),
        &broker_headers("wrong"),
        "not json",
    )
    .await;
    assert_eq!(
        (wrong_token.status, wrong_token.json()),
        (401, json!({"code": 30100, "description": "Not authorized"}))
    );
    let form = [
        (TOKEN_HEADER, BROKER_TOKEN),
        ("content-type", FORM_CONTENT_TYPE),
    ];
    let wrong_type = send("DELETE", &url, &form, &unbind_body("svc-1", "handle-1")).await;
    assert_eq!(
        (wrong_type.status, wrong_type.json()),
        (
            400,
            json!({"code": 30000, "description": "Invalid Content-Type"})
        )
    );
    assert_eq!(broker.live_handles("svc-1"), vec!["handle-1"]);
}

#[tokio::test]
async fn broker_bind_and_unbind_modes() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    provision(&broker, BROKER_TOKEN, "application/json").await;

    broker.set_bind_mode(Mode::error(500, 30500, "Internal Error"));
    let r = bind(&broker, "svc-1", &bind_body("svc-1")).await;
    assert_eq!((r.status, r.json()["code"].clone()), (500, json!(30500)));
    assert!(broker.issued_handles().is_empty());

    broker.set_bind_mode(Mode::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    let r = bind(&broker, "svc-1", &bind_body("svc-1")).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.json()["service_id"], "handle-1");

    broker.set_bind_mode(Mode::CloseConnection);
    let url = format!("{}/gateway/v1/configurations/svc-1/handles", broker.url());
    let r = try_send(
        "POST",
        &url,
        &broker_headers(BROKER_TOKEN),
        &bind_body("svc-1"),
    )
    .await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(broker.bind_count(), 3, "all three were recorded");

    broker.set_unbind_mode(Mode::Json(
        410,
        json!({"code": 30300, "description": "gone"}),
    ));
    let r = unbind(
        &broker,
        "svc-1",
        "handle-1",
        &unbind_body("svc-1", "handle-1"),
    )
    .await;
    assert_eq!(r.status, 410);
    assert_eq!(
        broker.live_handles("svc-1"),
        vec!["handle-1"],
        "a scripted answer changes nothing"
    );
    broker.set_unbind_mode(Mode::Ok);
    let r = unbind(
        &broker,
        "svc-1",
        "handle-1",
        &unbind_body("svc-1", "handle-1"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(broker.live_handles("svc-1").is_empty());
    assert_eq!(broker.unbind_count(), 2);
    // The other modes stayed as they were.
    assert_eq!(
        provision(&broker, BROKER_TOKEN, "application/json")
            .await
            .status,
        200
    );
    assert_eq!(unprovision(&broker, "svc-2").await.status, 200);
}

#[tokio::test]
async fn broker_delay_hang_close_reset() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    broker.set_mode(Mode::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    let r = provision(&broker, BROKER_TOKEN, "application/json").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.json()["service_id"], "svc-1");

    broker.set_mode(Mode::Hang);
    let url = format!("{}/gateway/v1/configurations", broker.url());
    let headers = [
        (TOKEN_HEADER, BROKER_TOKEN),
        ("content-type", "application/json"),
    ];
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        try_send("POST", &url, &headers, &provision_body()),
    )
    .await;
    assert!(hung.is_err(), "hang mode must not answer");

    for mode in [Mode::CloseConnection, Mode::Reset] {
        broker.set_mode(mode.clone());
        let r = try_send("POST", &url, &headers, &provision_body()).await;
        assert!(r.is_err(), "{mode:?} must fail the request, got {r:?}");
    }
    assert_eq!(broker.provision_count(), 4, "all four were recorded");
}

#[tokio::test]
async fn dropping_broker_stops_it_and_frees_hung_connections() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    broker.set_mode(Mode::Hang);
    let addr = broker.addr();
    let request = b"POST /gateway/v1/configurations HTTP/1.1\r\nhost: x\r\n\
content-type: application/json\r\nx-vcap-service-token: changeechotoken\r\n\
content-length: 2\r\n\r\n{}";
    let hung = tokio::spawn(raw_http(addr, request, Duration::from_secs(10)));
    assert!(broker.wait_for_provisions(1, T).await);
    drop(broker);

    let started = Instant::now();
    let got = hung.await.unwrap();
    assert!(got.is_empty(), "no answer expected, got {got:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "connection closed on drop"
    );
    let refused = support::wait_until_async(T, || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(refused, "listener must be gone after drop");
}

#[tokio::test]
async fn refused_url_refuses() {
    let err = try_send("GET", &refused_url(), &[], "").await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
}

#[tokio::test]
async fn upstream_answers_and_records() {
    let upstream = MockUpstream::start().await;
    let r = send(
        "PUT",
        &format!("{}/v2/apps/1?inline-relations-depth=1", upstream.url()),
        &[("x-first", "1"), ("x-second", "Two Words")],
        "payload",
    )
    .await;
    assert_eq!(
        r.json(),
        json!({"from": "upstream", "method": "PUT", "path": "/v2/apps/1?inline-relations-depth=1"})
    );
    let info = client::get(&format!("{}/v2/info", upstream.url()), None).await;
    assert_eq!(info.json(), support::upstream::info_body());

    let reqs = upstream.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].body, b"payload");
    assert_eq!(reqs[0].header("X-Second").as_deref(), Some("Two Words"));
    let names: Vec<&str> = reqs[0].headers.iter().map(|(k, _)| k.as_str()).collect();
    let first = names.iter().position(|n| *n == "x-first").unwrap();
    let second = names.iter().position(|n| *n == "x-second").unwrap();
    assert!(first < second, "headers keep received order: {names:?}");
    assert!(
        reqs[1].header("content-length").is_none(),
        "GET has no body"
    );

    upstream.set_reply(Some((404, json!({"code": 10000}))));
    let r = client::get(&upstream.url(), None).await;
    assert_eq!((r.status, r.json()), (404, json!({"code": 10000})));
}

#[tokio::test]
async fn create_sends_like_the_seed_curl() {
    let upstream = MockUpstream::start().await;
    let r = create(&upstream.url(), Some("tok"), &create_body("x")).await;
    assert_eq!(r.json()["path"], "/v2/service_instances");
    let req = &upstream.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.header("authorization").as_deref(), Some("bearer tok"));
    assert_eq!(
        req.header("content-type").as_deref(),
        Some(FORM_CONTENT_TYPE)
    );
    assert_eq!(req.json()["service_plan_guid"], PLAN_GUID);

    create(&upstream.url(), None, "{not json").await;
    let req = &upstream.requests()[1];
    assert_eq!(req.header("authorization"), None);
    assert_eq!(req.body, b"{not json");
}

#[tokio::test]
async fn raw_helpers_exchange_keep_alive_and_pipeline() {
    let upstream = MockUpstream::start().await;
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();

    let one = raw_exchange(upstream.addr(), &get("/a"), T).await.unwrap();
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["path"], "/a");

    let (a, b) = keep_alive_pair(upstream.addr(), &get("/first"), &get("/second"), T).await;
    assert_eq!(a.unwrap().json()["path"], "/first");
    assert_eq!(b.unwrap().json()["path"], "/second");

    let both = [get("/p1"), get("/p2")].concat();
    let responses = pipelined(upstream.addr(), &both, 2, T).await;
    let paths: Vec<Value> = responses.iter().map(|r| r.json()["path"].clone()).collect();
    assert_eq!(paths, vec![json!("/p1"), json!("/p2")]);

    let closing = b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let bytes = raw_http(upstream.addr(), closing, T).await;
    assert!(bytes.starts_with(b"HTTP/1.1 200"), "{bytes:?}");
}

#[test]
fn parse_response_handles_framing() {
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\nHTTP/1.1";
    let (r, used) = parse_response(chunked, false).unwrap().unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"abcde"[..]));
    assert_eq!(&chunked[used..], b"HTTP/1.1");

    let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab";
    assert!(parse_response(partial, false).unwrap().is_none());
    let until_close = b"HTTP/1.0 502 Bad Gateway\r\n\r\n<html>";
    assert!(parse_response(until_close, false).unwrap().is_none());
    let (r, _) = parse_response(until_close, true).unwrap().unwrap();
    assert_eq!(
        (r.status, r.reason.as_str(), r.text()),
        (502, "Bad Gateway", "<html>".into())
    );
    assert!(parse_response(b"SSH-2.0\r\n\r\n", true).is_err());
}

fn hs256_validation() -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    v.set_audience(&["cloud_controller"]);
    v
}

#[test]
fn token_default_claims_decode_with_jsonwebtoken() {
    let tok = token::valid_token();
    let key = DecodingKey::from_secret(token::DEFAULT_SECRET.as_bytes());
    let data = decode::<Value>(&tok, &key, &hs256_validation()).unwrap();
    let c = data.claims;
    assert_eq!(c["user_id"], "uaa-id-207");
    assert_eq!(c["email"], "email-148@somedomain.com");
    assert_eq!(c["scope"], json!(["cloud_controller.admin"]));
    assert_eq!(c["aud"], json!(["cloud_controller"]));
    assert_eq!(c["client_id"], "cf");
    assert!(c["exp"].as_i64().unwrap() > token::now() + 500);
    assert!(uuid::Uuid::parse_str(c["jti"].as_str().unwrap()).is_ok());

    let other = Claims::new().sign_with_secret("othersecret");
    assert!(decode::<Value>(&other, &key, &hs256_validation()).is_err());
}

#[test]
fn token_claims_overrides_and_removal() {
    let c = Claims::new()
        .patch(json!({"email": null, "user_id": "u-1"}))
        .remove("jti")
        .set("exp", "9999999999")
        .scopes(&["cloud_controller.read"]);
    let v = c.value();
    assert!(v.get("email").is_none() && v.get("jti").is_none());
    assert_eq!(v["user_id"], "u-1");
    assert_eq!(v["exp"], "9999999999");
    assert_eq!(v["scope"], json!(["cloud_controller.read"]));
    assert_eq!(Claims::empty().value(), &json!({}));

    let expired = Claims::new().expires_in(-600).sign();
    let key = DecodingKey::from_secret(b"tokensecret");
    assert!(decode::<Value>(&expired, &key, &hs256_validation()).is_err());
}

#[test]
fn token_rs256_and_es256_verify_with_checked_in_public_keys() {
    let claims = token::default_claims();
    let rsa_pem = std::fs::read(token::rsa_public_key_path()).unwrap();
    let ec_pem = std::fs::read(token::ec_public_key_path()).unwrap();

    let rs = token::sign_rs256(&claims, Some("key-1"));
    assert_eq!(decode_header(&rs).unwrap().kid.as_deref(), Some("key-1"));
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&["cloud_controller"]);
    let rsa_key = DecodingKey::from_rsa_pem(&rsa_pem).unwrap();
    decode::<Value>(&rs, &rsa_key, &v).unwrap();
    let wrong = token::sign_rs256_other_key(&claims, None);
    assert!(decode::<Value>(&wrong, &rsa_key, &v).is_err());

    let es = Claims::new().sign_es256(None);
    assert_eq!(decode_header(&es).unwrap().alg, Algorithm::ES256);
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&["cloud_controller"]);
    decode::<Value>(&es, &DecodingKey::from_ec_pem(&ec_pem).unwrap(), &v).unwrap();
}

#[test]
fn token_raw_builders() {
    assert_eq!(token::b64url(b""), "");
    assert_eq!(token::b64url(b"f"), "Zg");
    assert_eq!(token::b64url(b"fo"), "Zm8");
    assert_eq!(token::b64url(b"foo"), "Zm9v");
    assert_eq!(token::b64url(&[0xfb, 0xff]), "-_8");

    let none = token::alg_none_token(&json!({"user_id": "x"}));
    assert!(none.ends_with('.'));
    assert_eq!(
        decode_header(&none).ok().map(|h| h.alg),
        None,
        "alg none is not an Algorithm"
    );

    // A correct HMAC over hand-written JSON text is accepted by jsonwebtoken.
    let payload = token::default_claims().to_string();
    let tok = token::raw_hs256(r#"{"alg":"HS256","typ":"JWT"}"#, &payload, "tokensecret");
    let key = DecodingKey::from_secret(b"tokensecret");
    decode::<Value>(&tok, &key, &hs256_validation()).unwrap();

    let same = token::sign_hs256(&token::default_claims(), "tokensecret");
    assert_eq!(same.split('.').count(), 3);
    let forged = token::raw_token(r#"{"alg":"HS256"}"#, "{}", "AAAA");
    assert!(forged.starts_with("eyJhbGciOiJIUzI1NiJ9.e30.AAAA"));
}

#[test]
fn gateway_config_renders_the_contract_toml() {
    let cfg = GatewayConfig::new("http://127.0.0.1:9001")
        .upstream("http://127.0.0.1:9000")
        .broker_timeout_seconds(2)
        .max_body_bytes(1024)
        .accept_unknown_spaces(true)
        .public_key_files(vec![token::rsa_public_key_path()])
        .issuer("uaa")
        .broker_token_env("ECHO_BROKER_TOKEN")
        .env("ECHO_BROKER_TOKEN", "t")
        .extra_toml("[[spaces]]\nguid = \"s2\"\norganization_guid = \"o2\"");
    let text = cfg.clone().port(4567).admin_port(4568).render();
    let parsed: Value = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .build()
        .unwrap()
        .try_deserialize()
        .unwrap();
    assert_eq!(parsed["server"]["listen"], "127.0.0.1:4567");
    assert_eq!(parsed["server"]["admin_listen"], "127.0.0.1:4568");
    assert_eq!(parsed["server"]["max_body_bytes"], 1024);
    assert_eq!(parsed["server"]["accept_unknown_spaces"], true);
    assert_eq!(parsed["server"]["grace_period_seconds"], 1);
    assert_eq!(parsed["auth"]["audience"], "cloud_controller");
    assert_eq!(parsed["auth"]["issuer"], "uaa");
    assert_eq!(parsed["auth"]["symmetric_secrets"], json!(["tokensecret"]));
    assert_eq!(
        parsed["auth"]["public_key_files"][0],
        token::rsa_public_key_path().to_string_lossy().as_ref()
    );
    assert_eq!(
        parsed["store"]["sqlite_path"],
        cfg.sqlite_path().to_string_lossy().as_ref()
    );
    assert_eq!(parsed["upstream"]["url"], "http://127.0.0.1:9000");
    let broker = &parsed["brokers"][0];
    assert_eq!(broker["name"], "echo");
    assert_eq!(broker["token_env"], "ECHO_BROKER_TOKEN");
    assert!(broker.get("token").is_none());
    assert_eq!(broker["timeout_seconds"], 2);
    assert_eq!(broker["connect_timeout_seconds"], 5);
    assert_eq!(parsed["plans"][0]["guid"], PLAN_GUID);
    assert_eq!(parsed["plans"][0]["unique_id"], "echo-free");
    assert_eq!(parsed["spaces"][0]["guid"], SPACE_GUID);
    assert_eq!(parsed["spaces"][0]["organization_guid"], ORG_GUID);
    assert_eq!(parsed["spaces"][1]["guid"], "s2");

    let plain = GatewayConfig::new("http://b").render();
    // Unpinned, both listeners ask for port 0: the gateway picks and reports them.
    assert!(plain.contains("\nlisten = \"127.0.0.1:0\"\n"), "{plain}");
    assert!(
        plain.contains("\nadmin_listen = \"127.0.0.1:0\"\n"),
        "{plain}"
    );
    assert!(!plain.contains("[upstream]"));
    assert!(plain.contains("token = \"changeechotoken\""));
    assert!(plain.contains("issuer = \"\""));
    // Clones share the directory, hence the store.
    assert_eq!(cfg.clone().sqlite_path(), cfg.sqlite_path());
}

#[tokio::test]
async fn close_sends_fin_and_reset_sends_rst() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let request = b"POST /gateway/v1/configurations HTTP/1.1\r\nhost: x\r\n\
content-type: application/json\r\nx-vcap-service-token: changeechotoken\r\n\
content-length: 2\r\n\r\n{}";
    broker.set_mode(Mode::CloseConnection);
    let err = raw_exchange(broker.addr(), request, T).await.unwrap_err();
    assert!(err.contains("closed"), "{err}");
    broker.set_mode(Mode::Reset);
    let err = raw_exchange(broker.addr(), request, T).await.unwrap_err();
    assert!(err.contains("reset"), "{err}");
}

#[test]
fn the_listening_line_is_read_in_text_and_json_format() {
    let api: SocketAddr = "127.0.0.1:41001".parse().unwrap();
    let admin: SocketAddr = "127.0.0.1:41002".parse().unwrap();
    let expected = Some(Listening { api, admin });
    let text = "[2024-05-01T10:00:00Z INFO  brokergate::server] Listening. \
api=127.0.0.1:41001 admin=127.0.0.1:41002\n";
    let before = "[2024-05-01T10:00:00Z INFO  brokergate] Starting.\n";
    assert_eq!(parse_listening(&format!("{before}{text}")), expected);
    let json = json!({"ts": "2024-05-01T10:00:00Z", "level": "INFO",
                      "target": "brokergate::server",
                      "message": "Listening. api=127.0.0.1:41001 admin=127.0.0.1:41002"});
    assert_eq!(parse_listening(&format!("{json}\n")), expected);
    // The first report counts; a line still being written does not.
    let later = text.replace("41001", "42001");
    assert_eq!(parse_listening(&format!("{text}{later}")), expected);
    assert_eq!(parse_listening(text.trim_end()), None);
    assert_eq!(parse_listening(before), None);
    assert_eq!(parse_listening("Listening. api=127.0.0.1:41001\n"), None);
}

#[tokio::test]
async fn wait_listening_reads_the_report_or_fails_when_the_child_exits() {
    let dir = tempfile::TempDir::new().unwrap();
    let log = dir.path().join("stderr.log");
    let line = "[x INFO  brokergate::server] Listening. api=127.0.0.1:1 admin=127.0.0.1:2";
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("sleep 0.2; echo '{line}' >&2; exec sleep 30"))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let got = wait_listening(&mut child, &log, T).await;
    let _ = child.kill();
    let _ = child.wait();
    let want = Listening {
        api: "127.0.0.1:1".parse().unwrap(),
        admin: "127.0.0.1:2".parse().unwrap(),
    };
    assert_eq!(got, Ok(want));

    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("echo 'bind failed' >&2; exit 3")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let err = wait_listening(&mut child, &log, T).await.unwrap_err();
    let _ = child.wait();
    assert!(err.contains("exited with"), "{err}");
}

async fn v3_get(cc: &FakeCloudController, path: &str, token: Option<&str>) -> client::Response {
    client::get(&format!("{}{path}", cc.url()), token).await
}

/// A v3 answer: this status, the v3 Content-Type, a JSON body.
fn v3_body(r: &client::Response, status: u16) -> Value {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.header("content-type").as_deref(), Some(V3_JSON), "{r:?}");
    r.json()
}

fn not_found_body(what: &str) -> Value {
    cc_v3::v3_error_body(&format!("{what} not found"), "CF-ResourceNotFound", 10010)
}

fn guids(list: &Value) -> Vec<String> {
    list["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r["guid"].as_str().expect("guid").to_string())
        .collect()
}

#[tokio::test]
async fn cc_v3_space_is_seen_through_a_role_or_a_global_scope() {
    let cc = FakeCloudController::with_default_world().await;
    let path = format!("/v3/spaces/{SPACE_GUID}");
    for user in [DEVELOPER, AUDITOR, MANAGER] {
        let body = v3_body(&v3_get(&cc, &path, Some(&user_token(user))).await, 200);
        assert_eq!(
            body,
            json!({
                "guid": SPACE_GUID, "name": cc_v3::SPACE_NAME,
                "created_at": cc_v3::TIMESTAMP, "updated_at": cc_v3::TIMESTAMP,
                "relationships": {"organization": {"data": {"guid": ORG_GUID}}},
                "metadata": {"labels": {}, "annotations": {}},
                "links": {
                    "self": {"href": format!("{}/v3/spaces/{SPACE_GUID}", cc.url())},
                    "organization": {"href": format!("{}/v3/organizations/{ORG_GUID}", cc.url())},
                },
            }),
            "{user}"
        );
    }
    let outsider = v3_get(&cc, &path, Some(&user_token(OUTSIDER))).await;
    assert_eq!(v3_body(&outsider, 404), not_found_body("Space"));
    let missing = v3_get(&cc, "/v3/spaces/no-such-space", Some(&token::valid_token())).await;
    assert_eq!(v3_body(&missing, 404), not_found_body("Space"));

    // The default token is an admin; the other global scopes see everything too.
    assert_eq!(
        v3_get(&cc, &path, Some(&token::valid_token())).await.status,
        200
    );
    for scope in cc_v3::GLOBAL_SCOPES {
        let t = cc_v3::user_claims(OUTSIDER).scopes(&[scope]).sign();
        assert_eq!(v3_get(&cc, &path, Some(&t)).await.status, 200, "{scope}");
    }
    // An organization manager sees the organization's spaces; an organization
    // user does not; a client token is known by its client_id.
    cc.grant("org-boss", Role::OrgManager, ORG_GUID);
    cc.grant("org-member", Role::OrgUser, ORG_GUID);
    let r = v3_get(&cc, &path, Some(&user_token("org-boss"))).await;
    assert_eq!(r.status, 200);
    let r = v3_get(&cc, &path, Some(&user_token("org-member"))).await;
    assert_eq!(r.status, 404);
    cc.grant("a-client", Role::SpaceSupporter, SPACE_GUID);
    let client_token = Claims::new()
        .remove("user_id")
        .set("client_id", "a-client")
        .scopes(&["cloud_controller.read"])
        .sign();
    assert_eq!(v3_get(&cc, &path, Some(&client_token)).await.status, 200);

    // Revoked, the developer sees nothing.
    assert!(cc.revoke(DEVELOPER, Role::SpaceDeveloper, SPACE_GUID));
    assert!(!cc.revoke(DEVELOPER, Role::SpaceDeveloper, SPACE_GUID));
    let r = v3_get(&cc, &path, Some(&user_token(DEVELOPER))).await;
    assert_eq!(r.status, 404);

    // No token, another scheme, or a payload that is no JSON: not authenticated.
    let unauthenticated =
        cc_v3::v3_error_body("Authentication error", "CF-NotAuthenticated", 10002);
    let url = format!("{}{path}", cc.url());
    let garbage = token::raw_token("{}", "not json", "sig");
    for auth in [
        None,
        Some("basic dXNlcjpwdw==".to_string()),
        Some(format!("bearer {garbage}")),
        Some("bearer x".to_string()),
    ] {
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let r = send("GET", &url, &headers, "").await;
        assert_eq!(v3_body(&r, 401), unauthenticated, "{auth:?}");
    }
    assert_eq!(cc.calls(Question::Space), 17);
    assert_eq!(
        cc.last_authorization(Question::Space).as_deref(),
        Some("bearer x")
    );
}

#[tokio::test]
async fn cc_v3_spaces_list_pages_through_the_visible_spaces() {
    let cc = FakeCloudController::start().await;
    cc.add_org("org-a", "a");
    cc.add_org("org-b", "b");
    for (guid, org) in [
        ("s-1", "org-a"),
        ("s-2", "org-b"),
        ("s-3", "org-a"),
        ("hidden", "org-a"),
    ] {
        cc.add_space(guid, &format!("name-{guid}"), org);
    }
    for guid in ["s-1", "s-2", "s-3"] {
        cc.grant(DEVELOPER, Role::SpaceDeveloper, guid);
    }
    let dev = user_token(DEVELOPER);
    let href =
        |page: usize| json!({"href": format!("{}/v3/spaces?page={page}&per_page=1", cc.url())});

    let mut seen = Vec::new();
    let mut next = Some(format!("{}/v3/spaces?per_page=1", cc.url()));
    for page in 1..=3 {
        let url = next.take().expect("a next page");
        let body = v3_body(&client::get(&url, Some(&dev)).await, 200);
        let p = &body["pagination"];
        assert_eq!(
            (p["total_results"].clone(), p["total_pages"].clone()),
            (json!(3), json!(3))
        );
        assert_eq!((p["first"].clone(), p["last"].clone()), (href(1), href(3)));
        let previous = if page > 1 {
            href(page - 1)
        } else {
            Value::Null
        };
        assert_eq!(p["previous"], previous, "page {page}");
        seen.extend(guids(&body));
        next = p["next"]["href"].as_str().map(str::to_string);
        if page < 3 {
            assert_eq!(p["next"], href(page + 1));
        }
    }
    assert_eq!(next, None, "the last page has no next");
    assert_eq!(
        seen,
        ["s-1", "s-2", "s-3"],
        "every visible space once, in order"
    );

    // Defaults, a page beyond the last, filters.
    let all = v3_body(
        &v3_get(&cc, "/v3/spaces?order_by=name", Some(&dev)).await,
        200,
    );
    assert_eq!(guids(&all), ["s-1", "s-2", "s-3"]);
    assert_eq!(
        all["pagination"]["first"]["href"],
        format!("{}/v3/spaces?page=1&per_page=50", cc.url())
    );
    assert_eq!(all["pagination"]["next"], Value::Null);
    assert_eq!(
        all["resources"][1]["relationships"]["organization"]["data"]["guid"],
        "org-b"
    );
    let beyond = v3_body(&v3_get(&cc, "/v3/spaces?page=9", Some(&dev)).await, 200);
    assert_eq!(
        (
            guids(&beyond).len(),
            beyond["pagination"]["total_results"].clone()
        ),
        (0, json!(3))
    );
    let admin = v3_body(
        &v3_get(
            &cc,
            "/v3/spaces?organization_guids=org-a",
            Some(&token::valid_token()),
        )
        .await,
        200,
    );
    assert_eq!(guids(&admin), ["s-1", "s-3", "hidden"]);
    let filtered = v3_body(
        &v3_get(&cc, "/v3/spaces?guids=s-3,hidden,s-2", Some(&dev)).await,
        200,
    );
    assert_eq!(guids(&filtered), ["s-2", "s-3"]);
    assert_eq!(
        filtered["pagination"]["last"]["href"],
        format!(
            "{}/v3/spaces?guids=s-3%2Chidden%2Cs-2&page=1&per_page=50",
            cc.url()
        )
    );
    // An outsider sees no space, yet one (empty) page.
    let none = v3_body(
        &v3_get(&cc, "/v3/spaces", Some(&user_token(OUTSIDER))).await,
        200,
    );
    assert_eq!(none["resources"], json!([]));
    assert_eq!(
        (
            none["pagination"]["total_results"].clone(),
            none["pagination"]["total_pages"].clone()
        ),
        (json!(0), json!(1))
    );

    for query in ["per_page=0", "per_page=5001", "per_page=x", "page=0"] {
        let r = v3_get(&cc, &format!("/v3/spaces?{query}"), Some(&dev)).await;
        let body = v3_body(&r, 400);
        assert_eq!(
            body["errors"][0]["title"], "CF-BadQueryParameter",
            "{query}"
        );
        assert_eq!(body["errors"][0]["code"], 10005, "{query}");
    }
    assert_eq!(
        v3_get(&cc, "/v3/spaces?per_page=5000", Some(&dev))
            .await
            .status,
        200
    );
    assert_eq!(cc.calls(Question::SpacesList), 13);
    assert_eq!(cc.calls(Question::Space), 0);
}

#[tokio::test]
async fn cc_v3_roles_filter_by_type_space_and_user() {
    let cc = FakeCloudController::with_default_world().await;
    cc.add_space("other-space", "other", ORG_GUID);
    let other_dev = cc.grant(OUTSIDER, Role::SpaceDeveloper, "other-space");
    let dev = cc.grant(DEVELOPER, Role::SpaceDeveloper, SPACE_GUID);
    assert_eq!(
        cc.grant(DEVELOPER, Role::SpaceDeveloper, SPACE_GUID),
        dev,
        "granting twice is one role"
    );
    let admin = token::valid_token();
    let roles = |query: String, token: String| {
        let cc = &cc;
        async move {
            v3_body(
                &v3_get(cc, &format!("/v3/roles{query}"), Some(&token)).await,
                200,
            )
        }
    };

    let all = roles(String::new(), admin.clone()).await;
    assert_eq!(all["pagination"]["total_results"], 4);
    let developers = roles("?types=space_developer".into(), admin.clone()).await;
    assert_eq!(guids(&developers), [dev.clone(), other_dev.clone()]);
    assert_eq!(
        developers["resources"][0],
        json!({
            "guid": dev, "type": "space_developer",
            "created_at": cc_v3::TIMESTAMP, "updated_at": cc_v3::TIMESTAMP,
            "relationships": {
                "user": {"data": {"guid": DEVELOPER}},
                "space": {"data": {"guid": SPACE_GUID}},
                "organization": {"data": null},
            },
            "links": {
                "self": {"href": format!("{}/v3/roles/{dev}", cc.url())},
                "user": {"href": format!("{}/v3/users/{DEVELOPER}", cc.url())},
                "space": {"href": format!("{}/v3/spaces/{SPACE_GUID}", cc.url())},
            },
        })
    );
    let in_space = roles(
        format!("?space_guids={SPACE_GUID}&types=space_auditor,space_manager"),
        admin.clone(),
    )
    .await;
    let types: Vec<&Value> = in_space["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["type"])
        .collect();
    assert_eq!(types, [&json!("space_auditor"), &json!("space_manager")]);
    assert_eq!(
        in_space["pagination"]["first"]["href"],
        format!("{}/v3/roles?page=1&per_page=50&space_guids={SPACE_GUID}&types=space_auditor%2Cspace_manager", cc.url())
    );
    let by_user = roles(
        format!("?user_guids={DEVELOPER},{OUTSIDER}&space_guids=other-space"),
        admin.clone(),
    )
    .await;
    assert_eq!(guids(&by_user), vec![other_dev.clone()]);

    // An organization role is in no space; a non-admin sees only the roles
    // where it sees the space (or the organization).
    let boss = cc.grant("org-boss", Role::OrgAuditor, ORG_GUID);
    let org_roles = roles(format!("?organization_guids={ORG_GUID}"), admin.clone()).await;
    assert_eq!(guids(&org_roles), vec![boss]);
    assert_eq!(
        org_roles["resources"][0]["relationships"]["space"]["data"],
        Value::Null
    );
    assert_eq!(
        org_roles["resources"][0]["relationships"]["organization"]["data"]["guid"],
        ORG_GUID
    );
    let seen_by_auditor = roles(String::new(), user_token(AUDITOR)).await;
    assert_eq!(
        seen_by_auditor["pagination"]["total_results"], 4,
        "three in its space and the org role"
    );
    assert!(!guids(&seen_by_auditor).contains(&other_dev));
    let seen_by_outsider = roles("?types=space_developer".into(), user_token(OUTSIDER)).await;
    assert_eq!(guids(&seen_by_outsider), [other_dev]);

    let paged = roles("?per_page=2&page=2".into(), admin).await;
    assert_eq!(paged["pagination"]["total_pages"], 3);
    assert_eq!(guids(&paged).len(), 2);
    assert_eq!(v3_get(&cc, "/v3/roles", None).await.status, 401);
    assert_eq!(cc.calls(Question::Roles), 9);
}

#[tokio::test]
async fn cc_v3_feature_flags_toggle_with_a_message() {
    let cc = FakeCloudController::start().await;
    let user = user_token(OUTSIDER);
    let path = "/v3/feature_flags/service_instance_creation";
    let flag = |enabled: bool, message: Value| {
        json!({"name": "service_instance_creation", "enabled": enabled, "updated_at": null,
               "custom_error_message": message,
               "links": {"self": {"href": format!("{}{path}", cc.url())}}})
    };
    assert_eq!(
        v3_body(&v3_get(&cc, path, Some(&user)).await, 200),
        flag(true, Value::Null)
    );
    cc.set_feature_flag("service_instance_creation", false, Some("Ask your admin."));
    assert_eq!(
        v3_body(&v3_get(&cc, path, Some(&user)).await, 200),
        flag(false, json!("Ask your admin."))
    );
    cc.set_feature_flag("service_instance_creation", true, None);
    assert_eq!(
        v3_body(&v3_get(&cc, path, Some(&user)).await, 200),
        flag(true, Value::Null)
    );

    let unknown = v3_get(&cc, "/v3/feature_flags/no_such_flag", Some(&user)).await;
    assert_eq!(v3_body(&unknown, 404), not_found_body("Feature flag"));
    cc.set_feature_flag("no_such_flag", false, None);
    assert_eq!(
        v3_body(
            &v3_get(&cc, "/v3/feature_flags/no_such_flag", Some(&user)).await,
            200
        )["enabled"],
        false
    );
    assert_eq!(v3_get(&cc, path, None).await.status, 401);
    assert_eq!(cc.calls(Question::FeatureFlag), 6);
}

#[tokio::test]
async fn cc_v3_organizations_show_suspension_to_those_who_see_them() {
    let cc = FakeCloudController::with_default_world().await;
    cc.add_org("empty-org", "empty");
    cc.grant("org-auditor", Role::OrgAuditor, "empty-org");
    let path = format!("/v3/organizations/{ORG_GUID}");
    let body = v3_body(&v3_get(&cc, &path, Some(&user_token(DEVELOPER))).await, 200);
    assert_eq!(
        body,
        json!({
            "guid": ORG_GUID, "name": cc_v3::ORG_NAME, "suspended": false,
            "created_at": cc_v3::TIMESTAMP, "updated_at": cc_v3::TIMESTAMP,
            "relationships": {"quota": {"data": {"guid": cc_v3::QUOTA_GUID}}},
            "metadata": {"labels": {}, "annotations": {}},
            "links": {
                "self": {"href": format!("{}{path}", cc.url())},
                "domains": {"href": format!("{}{path}/domains", cc.url())},
                "default_domain": {"href": format!("{}{path}/domains/default", cc.url())},
                "quota": {"href": format!("{}/v3/organization_quotas/{}", cc.url(), cc_v3::QUOTA_GUID)},
            },
        })
    );
    cc.suspend_org(ORG_GUID, true);
    let body = v3_body(&v3_get(&cc, &path, Some(&user_token(AUDITOR))).await, 200);
    assert_eq!(body["suspended"], true);
    let outsider = v3_get(&cc, &path, Some(&user_token(OUTSIDER))).await;
    assert_eq!(v3_body(&outsider, 404), not_found_body("Organization"));

    // An organization role alone shows the organization, not its spaces.
    let auditor = user_token("org-auditor");
    assert_eq!(
        v3_get(&cc, "/v3/organizations/empty-org", Some(&auditor))
            .await
            .status,
        200
    );
    assert_eq!(v3_get(&cc, &path, Some(&auditor)).await.status, 404);
    let admin = token::valid_token();
    assert_eq!(
        v3_get(&cc, "/v3/organizations/empty-org", Some(&admin))
            .await
            .json()["suspended"],
        false
    );
    let missing = v3_get(&cc, "/v3/organizations/nope", Some(&admin)).await;
    assert_eq!(v3_body(&missing, 404), not_found_body("Organization"));
    cc.suspend_org(ORG_GUID, false);
    assert_eq!(
        v3_get(&cc, &path, Some(&admin)).await.json()["suspended"],
        false
    );
    assert_eq!(cc.calls(Question::Organization), 8);
}

#[tokio::test]
async fn cc_v3_modes_break_only_v3_and_every_call_is_counted() {
    let cc = FakeCloudController::with_default_world().await;
    let dev = user_token(DEVELOPER);
    let space_url = format!("{}/v3/spaces/{SPACE_GUID}", cc.url());
    let auth = format!("bearer {dev}");
    let headers = [("authorization", auth.as_str())];

    for mode in [cc_v3::Mode::Down, cc_v3::Mode::Reset] {
        cc.set_mode(mode);
        let r = try_send("GET", &space_url, &headers, "").await;
        assert!(r.is_err(), "{mode:?} must fail the request, got {r:?}");
        let info = client::get(&format!("{}/v2/info", cc.url()), None).await;
        assert_eq!(
            info.json(),
            support::upstream::info_body(),
            "{mode:?} leaves v2 alone"
        );
    }
    cc.set_mode(cc_v3::Mode::Hang);
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        try_send("GET", &space_url, &headers, ""),
    )
    .await;
    assert!(hung.is_err(), "hang mode must not answer");

    cc.set_mode(cc_v3::Mode::Slow(Duration::from_millis(300)));
    let started = Instant::now();
    let r = try_send("GET", &space_url, &headers, "").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(v3_body(&r, 200)["guid"], SPACE_GUID);

    cc.set_mode(cc_v3::Mode::Status(503));
    for path in ["/v3/roles", "/v3/feature_flags/service_instance_creation"] {
        let r = v3_get(&cc, path, Some(&dev)).await;
        assert_eq!(
            v3_body(&r, 503),
            cc_v3::v3_error_body("Server error", "CF-ServerError", 10001),
            "{path}"
        );
    }
    let passthrough = v3_get(&cc, "/v2/apps", None).await;
    assert_eq!(passthrough.json()["from"], "upstream");

    cc.set_mode(cc_v3::Mode::Normal);
    assert_eq!(v3_get(&cc, "/v3/spaces", Some(&dev)).await.status, 200);
    let unknown = v3_get(&cc, "/v3/apps", Some(&dev)).await;
    assert_eq!(
        v3_body(&unknown, 404),
        cc_v3::v3_error_body("Unknown request", "CF-NotFound", 10000)
    );

    assert_eq!(
        cc.calls(Question::Space),
        4,
        "closed, reset, hung and slow ones alike"
    );
    assert_eq!(cc.calls(Question::Roles), 1);
    assert_eq!(cc.calls(Question::FeatureFlag), 1);
    assert_eq!(cc.calls(Question::SpacesList), 1);
    assert_eq!(cc.calls(Question::Organization), 0);
    assert_eq!(cc.last_authorization(Question::Space), Some(auth.clone()));
    assert_eq!(cc.last_authorization(Question::Organization), None);
    cc.reset_calls();
    assert_eq!(cc.calls(Question::Space), 0);
    assert_eq!(cc.last_authorization(Question::Space), None);
    assert_eq!(
        cc.requests().len(),
        11,
        "reset_calls keeps the recorded requests"
    );
}

#[tokio::test]
async fn cc_v3_answers_everything_else_like_mock_upstream() {
    let cc = FakeCloudController::start().await;
    assert_eq!(cc.url(), format!("http://{}", cc.addr()));
    let r = send(
        "PUT",
        &format!("{}/v2/apps/1?inline-relations-depth=1", cc.url()),
        &[("x-first", "1")],
        "payload",
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (
            200,
            json!({"from": "upstream", "method": "PUT", "path": "/v2/apps/1?inline-relations-depth=1"})
        )
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let info = client::get(&format!("{}/v2/info", cc.url()), None).await;
    assert_eq!(info.json(), support::upstream::info_body());
    // "/v3x" is not under /v3/.
    assert_eq!(
        client::get(&format!("{}/v3x", cc.url()), None).await.json()["from"],
        "upstream"
    );

    let reqs = cc.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].body.as_slice()),
        ("PUT", &b"payload"[..])
    );
    assert_eq!(reqs[0].header("x-first").as_deref(), Some("1"));
    cc.clear_requests();
    assert!(cc.requests().is_empty());
    assert!(
        Question::ALL.iter().all(|q| cc.calls(*q) == 0),
        "non-v3 is not counted"
    );
}

// --- The fake Cloud Controller's own v2 catalog ---

use support::cc::CC_JSON;
use support::cc_v3::{
    v2_error_body, UPSTREAM_BROKER_GUID, UPSTREAM_MYSQL_GUID, UPSTREAM_MYSQL_LABEL,
    UPSTREAM_MYSQL_PLAN_GUID, UPSTREAM_MYSQL_PLAN_NAME, UPSTREAM_REDIS_GUID, UPSTREAM_REDIS_LABEL,
    UPSTREAM_REDIS_PLAN_GUID, UPSTREAM_REDIS_PLAN_NAME,
};

/// `GET` on the fake with the default (admin) token.
async fn v2_get(cc: &FakeCloudController, path: &str) -> client::Response {
    client::get(&format!("{}{path}", cc.url()), Some(&token::valid_token())).await
}

/// A v2 answer: this status, CC's Content-Type, a JSON body.
fn v2_body(r: &client::Response, status: u16) -> Value {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.header("content-type").as_deref(), Some(CC_JSON), "{r:?}");
    r.json()
}

fn v2_guids(list: &Value) -> Vec<String> {
    list["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r["metadata"]["guid"].as_str().expect("guid").to_string())
        .collect()
}

fn bad_query(detail: &str) -> Value {
    v2_error_body(
        10005,
        &format!("The query parameter is invalid: {detail}"),
        "CF-BadQueryParameter",
    )
}

/// Follows `next_url` from `first` (a relative link) to the last page, checking
/// each page's `prev_url` against the link that led to it; the guids in order.
async fn v2_walk(cc: &FakeCloudController, first: &str) -> (Vec<String>, Vec<Value>) {
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut next = Some(first.to_string());
    let mut prev_link: Option<String> = None;
    while let Some(link) = next {
        assert!(pages.len() < 20, "too many pages from {first}");
        let page = v2_body(&v2_get(cc, &link).await, 200);
        if pages.is_empty() {
            assert_eq!(page["prev_url"], Value::Null, "{link}");
        } else {
            let prev = page["prev_url"].as_str().expect("a prev_url after page 1");
            let back = v2_body(&v2_get(cc, prev).await, 200);
            assert_eq!(
                v2_guids(&back),
                v2_guids(&pages[pages.len() - 1]),
                "prev_url of {link} goes back to {prev_link:?}"
            );
        }
        seen.extend(v2_guids(&page));
        next = page["next_url"].as_str().map(str::to_string);
        prev_link = Some(link);
        pages.push(page);
    }
    (seen, pages)
}

#[tokio::test]
async fn cc_v2_catalog_renders_offerings_and_plans_as_cc_does() {
    let cc = FakeCloudController::with_default_world().await;
    let r = v2_get(&cc, "/v2/services").await;
    let list = v2_body(&r, 200);
    assert_eq!(
        support::json::keys(&support::json::members(&r.body)),
        [
            "total_results",
            "total_pages",
            "prev_url",
            "next_url",
            "resources"
        ]
    );
    assert_eq!(
        (
            &list["total_results"],
            &list["total_pages"],
            &list["prev_url"],
            &list["next_url"]
        ),
        (&json!(2), &json!(1), &Value::Null, &Value::Null)
    );
    assert_eq!(
        v2_guids(&list),
        [UPSTREAM_MYSQL_GUID, UPSTREAM_REDIS_GUID],
        "in the order added"
    );
    let mysql = &list["resources"][0];
    assert_eq!(*mysql, cc.v2_service_resource(UPSTREAM_MYSQL_GUID));
    assert_eq!(
        *mysql,
        json!({
            "metadata": {
                "guid": UPSTREAM_MYSQL_GUID,
                "url": format!("/v2/services/{UPSTREAM_MYSQL_GUID}"),
                "created_at": cc_v3::TIMESTAMP, "updated_at": cc_v3::TIMESTAMP,
            },
            "entity": {
                "label": UPSTREAM_MYSQL_LABEL, "provider": null, "url": null,
                "description": "upstream-mysql from the upstream", "long_description": null,
                "version": null, "info_url": null, "active": true, "bindable": true,
                "unique_id": "upstream-mysql-id",
                "extra": "{\"displayName\":\"upstream-mysql\"}",
                "tags": ["upstream"], "requires": [], "documentation_url": null,
                "service_broker_guid": UPSTREAM_BROKER_GUID, "plan_updateable": false,
                "service_plans_url": format!("/v2/services/{UPSTREAM_MYSQL_GUID}/service_plans"),
            },
        })
    );
    let redis = &list["resources"][1]["entity"];
    assert_eq!(redis["label"], UPSTREAM_REDIS_LABEL);
    assert_eq!(redis["extra"], Value::Null);
    assert_eq!(redis["documentation_url"], "https://redis.example.com/docs");

    // Key order, as CC renders a resource.
    let one = v2_get(&cc, &format!("/v2/services/{UPSTREAM_MYSQL_GUID}")).await;
    assert_eq!(v2_body(&one, 200), *mysql);
    let members = support::json::members(&one.body);
    assert_eq!(support::json::keys(&members), ["metadata", "entity"]);
    let entity = support::json::members(support::json::raw(&members, "entity"));
    assert_eq!(
        support::json::keys(&entity),
        [
            "label",
            "provider",
            "url",
            "description",
            "long_description",
            "version",
            "info_url",
            "active",
            "bindable",
            "unique_id",
            "extra",
            "tags",
            "requires",
            "documentation_url",
            "service_broker_guid",
            "plan_updateable",
            "service_plans_url"
        ]
    );

    let plan = v2_get(
        &cc,
        &format!("/v2/service_plans/{UPSTREAM_MYSQL_PLAN_GUID}"),
    )
    .await;
    assert_eq!(
        v2_body(&plan, 200),
        json!({
            "metadata": {
                "guid": UPSTREAM_MYSQL_PLAN_GUID,
                "url": format!("/v2/service_plans/{UPSTREAM_MYSQL_PLAN_GUID}"),
                "created_at": cc_v3::TIMESTAMP, "updated_at": cc_v3::TIMESTAMP,
            },
            "entity": {
                "name": UPSTREAM_MYSQL_PLAN_NAME, "free": false,
                "description": "small plan of upstream-mysql",
                "service_guid": UPSTREAM_MYSQL_GUID, "extra": null,
                "unique_id": "upstream-mysql-small-id", "public": true, "active": true,
                "bindable": true,
                "service_url": format!("/v2/services/{UPSTREAM_MYSQL_GUID}"),
                "service_instances_url":
                    format!("/v2/service_plans/{UPSTREAM_MYSQL_PLAN_GUID}/service_instances"),
            },
        })
    );
    let members = support::json::members(&plan.body);
    let entity = support::json::members(support::json::raw(&members, "entity"));
    assert_eq!(
        support::json::keys(&entity),
        [
            "name",
            "free",
            "description",
            "service_guid",
            "extra",
            "unique_id",
            "public",
            "active",
            "bindable",
            "service_url",
            "service_instances_url"
        ]
    );
    let redis_plan = cc.v2_plan_resource(UPSTREAM_REDIS_PLAN_GUID);
    assert_eq!(redis_plan["entity"]["name"], UPSTREAM_REDIS_PLAN_NAME);
    assert_eq!(redis_plan["entity"]["free"], true);
    assert!(redis_plan["entity"]["extra"].is_string(), "{redis_plan}");

    let plans = v2_body(&v2_get(&cc, "/v2/service_plans").await, 200);
    assert_eq!(
        v2_guids(&plans),
        [UPSTREAM_MYSQL_PLAN_GUID, UPSTREAM_REDIS_PLAN_GUID]
    );
    assert_eq!(plans["resources"][1], redis_plan);
    let of_redis = v2_body(
        &v2_get(
            &cc,
            &format!("/v2/services/{UPSTREAM_REDIS_GUID}/service_plans"),
        )
        .await,
        200,
    );
    assert_eq!(v2_guids(&of_redis), [UPSTREAM_REDIS_PLAN_GUID]);
    assert_eq!(of_redis["total_results"], 1);

    let in_space = v2_body(
        &v2_get(&cc, &format!("/v2/spaces/{SPACE_GUID}/services")).await,
        200,
    );
    assert_eq!(in_space, list, "every offering in every known space");

    // Changed, added and removed while it runs.
    cc.update_v2_service(UPSTREAM_REDIS_GUID, |s| {
        s.provider = Some("redis-labs".into());
        s.active = false;
    });
    cc.add_v2_service("svc-3", "third");
    cc.add_v2_plan("plan-3", "svc-3", "tiny");
    assert_eq!(cc.v2_services().len(), 3);
    let third = v2_body(&v2_get(&cc, "/v2/services/svc-3").await, 200);
    assert_eq!(third["entity"]["label"], "third");
    let redis = v2_body(
        &v2_get(&cc, &format!("/v2/services/{UPSTREAM_REDIS_GUID}")).await,
        200,
    );
    assert_eq!(
        (&redis["entity"]["provider"], &redis["entity"]["active"]),
        (&json!("redis-labs"), &json!(false))
    );
    assert!(cc.remove_v2_service("svc-3"));
    assert!(!cc.remove_v2_service("svc-3"));
    assert!(
        cc.v2_plans().iter().all(|p| p.guid != "plan-3"),
        "its plans go with it"
    );
    assert!(cc.remove_v2_plan(UPSTREAM_REDIS_PLAN_GUID));
    assert_eq!(cc.v2_plans().len(), 1);

    // A bare start has no catalog.
    let empty = FakeCloudController::start().await;
    let none = v2_body(&v2_get(&empty, "/v2/services").await, 200);
    assert_eq!(
        (
            &none["total_results"],
            &none["total_pages"],
            &none["resources"]
        ),
        (&json!(0), &json!(1), &json!([]))
    );
}

#[tokio::test]
async fn cc_v2_catalog_pages_each_item_once_both_ways() {
    let cc = FakeCloudController::with_default_world().await;
    for i in 3..=5 {
        cc.add_v2_service(&format!("svc-{i}"), &format!("offering-{i}"));
        cc.add_v2_plan(&format!("plan-{i}"), &format!("svc-{i}"), "p");
    }
    let all_services: Vec<String> = cc.v2_services().into_iter().map(|s| s.guid).collect();
    let all_plans: Vec<String> = cc.v2_plans().into_iter().map(|p| p.guid).collect();
    assert_eq!(all_services.len(), 5);
    for per_page in [1, 2, 3, 5, 7] {
        for (path, all) in [
            ("/v2/services".to_string(), &all_services),
            ("/v2/service_plans".to_string(), &all_plans),
            (format!("/v2/spaces/{SPACE_GUID}/services"), &all_services),
        ] {
            let first = format!("{path}?results-per-page={per_page}");
            let (seen, pages) = v2_walk(&cc, &first).await;
            assert_eq!(&seen, all, "{first}");
            assert_eq!(pages.len(), 5usize.div_ceil(per_page), "{first}");
            for page in &pages {
                assert_eq!(page["total_results"], 5, "{first}");
                assert_eq!(page["total_pages"], pages.len(), "{first}");
            }
            let first_desc = format!("{path}?order-direction=desc&results-per-page={per_page}");
            let (seen, _) = v2_walk(&cc, &first_desc).await;
            let mut reversed = all.clone();
            reversed.reverse();
            assert_eq!(seen, reversed, "{first_desc}");
        }
    }

    // The links, exactly.
    let page2 = v2_body(
        &v2_get(&cc, "/v2/services?page=2&results-per-page=2").await,
        200,
    );
    assert_eq!(
        page2["prev_url"],
        "/v2/services?order-direction=asc&page=1&results-per-page=2"
    );
    assert_eq!(
        page2["next_url"],
        "/v2/services?order-direction=asc&page=3&results-per-page=2"
    );
    assert_eq!(v2_guids(&page2), ["svc-3", "svc-4"]);
    let filtered = v2_body(
        &v2_get(
            &cc,
            "/v2/services?q=active:true&q=label+IN+offering-3,offering-4&results-per-page=1&order-direction=desc",
        )
        .await,
        200,
    );
    assert_eq!(v2_guids(&filtered), ["svc-4"]);
    assert_eq!(
        filtered["next_url"],
        "/v2/services?order-direction=desc&page=2&q=active:true&q=label%20IN%20offering-3,offering-4&results-per-page=1"
    );
    let next = v2_get(&cc, filtered["next_url"].as_str().unwrap()).await;
    let next = v2_body(&next, 200);
    assert_eq!(
        v2_guids(&next),
        ["svc-3"],
        "the filters carried by the links"
    );
    assert_eq!(next["next_url"], Value::Null);

    // Past the end: no resources, a prev_url to the page before it.
    let past = v2_body(
        &v2_get(&cc, "/v2/service_plans?page=9&results-per-page=2").await,
        200,
    );
    assert_eq!(past["resources"], json!([]));
    assert_eq!(past["total_pages"], 3);
    assert_eq!(
        past["prev_url"],
        "/v2/service_plans?order-direction=asc&page=8&results-per-page=2"
    );
    assert_eq!(past["next_url"], Value::Null);

    // Defaults and bounds.
    let default = v2_body(&v2_get(&cc, "/v2/services").await, 200);
    assert_eq!(default["resources"].as_array().unwrap().len(), 5);
    assert_eq!(
        v2_body(&v2_get(&cc, "/v2/services?results-per-page=100").await, 200)["total_pages"],
        1
    );
    for (query, detail) in [
        ("results-per-page=101", "results_per_page must be <= 100"),
        ("results-per-page=0", "results_per_page must be >= 1"),
        ("results-per-page=x", "results_per_page must be an integer"),
        ("page=0", "page must be >= 1"),
        ("page=two", "page must be an integer"),
        (
            "order-direction=up",
            "order_direction must be 'asc' or 'desc' but was 'up'",
        ),
    ] {
        for path in ["/v2/services", "/v2/service_plans"] {
            let r = v2_get(&cc, &format!("{path}?{query}")).await;
            assert_eq!(v2_body(&r, 400), bad_query(detail), "{path}?{query}");
        }
    }
}

#[tokio::test]
async fn cc_v2_catalog_filters_by_q() {
    let cc = FakeCloudController::with_default_world().await;
    cc.update_v2_service(UPSTREAM_REDIS_GUID, |s| {
        s.provider = Some("redis-labs".into());
        s.active = false;
    });
    cc.add_v2_plan("mysql-large", UPSTREAM_MYSQL_GUID, "large");
    cc.update_v2_plan("mysql-large", |p| p.active = false);

    let services = |query: &'static str| {
        let cc = &cc;
        async move {
            let r = v2_get(cc, &format!("/v2/services?{query}")).await;
            let body = v2_body(&r, 200);
            assert_eq!(
                body["total_results"],
                v2_guids(&body).len(),
                "{query}: total_results is the filtered count"
            );
            v2_guids(&body)
        }
    };
    assert_eq!(
        services("q=label:upstream-mysql").await,
        [UPSTREAM_MYSQL_GUID]
    );
    assert_eq!(
        services("q=label%3Aupstream-redis").await,
        [UPSTREAM_REDIS_GUID]
    );
    assert!(services("q=label:echo").await.is_empty());
    assert_eq!(
        services("q=provider:redis-labs").await,
        [UPSTREAM_REDIS_GUID]
    );
    assert!(
        services("q=provider:").await.is_empty(),
        "a null provider matches nothing"
    );
    assert_eq!(services("q=active:true").await, [UPSTREAM_MYSQL_GUID]);
    assert_eq!(services("q=active:false").await, [UPSTREAM_REDIS_GUID]);
    assert_eq!(services("q=active:t").await, [UPSTREAM_MYSQL_GUID]);
    assert_eq!(
        services("q=label+IN+upstream-mysql,upstream-redis").await,
        [UPSTREAM_MYSQL_GUID, UPSTREAM_REDIS_GUID]
    );
    assert!(
        services("q=label:upstream-redis&q=active:true")
            .await
            .is_empty(),
        "q's are ANDed"
    );
    assert!(services("q=label:upstream-redis;active:true")
        .await
        .is_empty());
    assert_eq!(
        services("q=unique_id:upstream-mysql-id").await,
        [UPSTREAM_MYSQL_GUID]
    );
    assert_eq!(
        services("q=service_broker_guid:a1b2c3d4-0000-4000-8000-0000000b0000").await,
        [UPSTREAM_MYSQL_GUID, UPSTREAM_REDIS_GUID]
    );

    let space = v2_body(
        &v2_get(
            &cc,
            &format!("/v2/spaces/{SPACE_GUID}/services?q=label:upstream-redis"),
        )
        .await,
        200,
    );
    assert_eq!(v2_guids(&space), [UPSTREAM_REDIS_GUID]);

    let plans = |query: String| {
        let cc = &cc;
        async move { v2_guids(&v2_body(&v2_get(cc, &query).await, 200)) }
    };
    assert_eq!(
        plans(format!(
            "/v2/service_plans?q=service_guid:{UPSTREAM_MYSQL_GUID}"
        ))
        .await,
        [UPSTREAM_MYSQL_PLAN_GUID, "mysql-large"]
    );
    assert_eq!(
        plans(format!(
            "/v2/service_plans?q=service_guid:{UPSTREAM_MYSQL_GUID}&q=active:true"
        ))
        .await,
        [UPSTREAM_MYSQL_PLAN_GUID]
    );
    assert!(plans("/v2/service_plans?q=service_guid:nope".into())
        .await
        .is_empty());
    assert_eq!(
        plans("/v2/service_plans?q=unique_id:upstream-redis-shared-id".into()).await,
        [UPSTREAM_REDIS_PLAN_GUID]
    );
    assert_eq!(
        plans(format!(
            "/v2/services/{UPSTREAM_MYSQL_GUID}/service_plans?q=active:false"
        ))
        .await,
        ["mysql-large"]
    );

    // Fields the collection does not filter by.
    for (path, field) in [
        ("/v2/services?q=name:x", "name"),
        ("/v2/services?q=service_guid:x", "service_guid"),
        ("/v2/service_plans?q=label:x", "label"),
        ("/v2/service_plans?q=name:free", "name"),
        ("/v2/services?q=label", "label"),
    ] {
        let r = v2_get(&cc, path).await;
        assert_eq!(v2_body(&r, 400), bad_query(field), "{path}");
    }
    let r = v2_get(
        &cc,
        &format!("/v2/spaces/{SPACE_GUID}/services?q=service_guid:x"),
    )
    .await;
    assert_eq!(v2_body(&r, 400), bad_query("service_guid"));
}

#[tokio::test]
async fn cc_v2_catalog_not_found_and_unauthenticated_as_cc_says() {
    let cc = FakeCloudController::with_default_world().await;
    let cases = [
        (
            "/v2/services/no-such".to_string(),
            v2_error_body(
                120003,
                "The service could not be found: no-such",
                "CF-ServiceNotFound",
            ),
        ),
        (
            "/v2/services/no-such/service_plans".to_string(),
            v2_error_body(
                120003,
                "The service could not be found: no-such",
                "CF-ServiceNotFound",
            ),
        ),
        (
            "/v2/service_plans/no-such".to_string(),
            v2_error_body(
                110003,
                "The service plan could not be found: no-such",
                "CF-ServicePlanNotFound",
            ),
        ),
        (
            "/v2/spaces/no-such/services".to_string(),
            v2_error_body(
                40004,
                "The app space could not be found: no-such",
                "CF-SpaceNotFound",
            ),
        ),
    ];
    for (path, body) in &cases {
        let r = v2_get(&cc, path).await;
        assert_eq!(v2_body(&r, 404), *body, "{path}");
        let (code, error_code) = (body["code"].as_u64().unwrap(), &body["error_code"]);
        support::cc::assert_cc_error(&r, 404, code, error_code.as_str().unwrap());
    }
    // A space the v3 world gains is known to v2 too.
    cc.add_space("space-2", "second", ORG_GUID);
    assert_eq!(v2_get(&cc, "/v2/spaces/space-2/services").await.status, 200);
    assert!(cc.remove_space("space-2"));
    assert_eq!(v2_get(&cc, "/v2/spaces/space-2/services").await.status, 404);

    // A token is needed (any decodable one: the gateway verified it).
    let url = format!("{}/v2/services", cc.url());
    let unauthenticated = v2_error_body(10002, "Authentication error", "CF-NotAuthenticated");
    let none = client::get(&url, None).await;
    assert_eq!(v2_body(&none, 401), unauthenticated);
    let basic = send("GET", &url, &[("authorization", "basic dTpw")], "").await;
    assert_eq!(v2_body(&basic, 401), unauthenticated);
    let user = client::get(&url, Some(&user_token(OUTSIDER))).await;
    assert_eq!(
        v2_guids(&v2_body(&user, 200)).len(),
        2,
        "any user sees it all"
    );
}

#[tokio::test]
async fn cc_v2_mode_breaks_only_the_v2_catalog_and_every_call_is_counted() {
    let cc = FakeCloudController::with_default_world().await;
    let admin = token::valid_token();
    let auth = format!("bearer {admin}");
    let services_url = format!("{}/v2/services", cc.url());
    let headers = [
        ("authorization", auth.as_str()),
        ("x-vcap-request-id", "req-1"),
    ];

    for mode in [cc_v3::Mode::Down, cc_v3::Mode::Reset] {
        cc.set_v2_mode(mode);
        let r = try_send("GET", &services_url, &headers, "").await;
        assert!(r.is_err(), "{mode:?} must fail the request, got {r:?}");
        let space = v3_get(&cc, &format!("/v3/spaces/{SPACE_GUID}"), Some(&admin)).await;
        assert_eq!(
            v3_body(&space, 200)["guid"],
            SPACE_GUID,
            "{mode:?} leaves v3 alone"
        );
        let other = v3_get(&cc, "/v2/apps", None).await;
        assert_eq!(other.json()["from"], "upstream", "and the rest of v2");
    }
    cc.set_v2_mode(cc_v3::Mode::Hang);
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        try_send("GET", &services_url, &headers, ""),
    )
    .await;
    assert!(hung.is_err(), "hang mode must not answer");

    cc.set_v2_mode(cc_v3::Mode::Slow(Duration::from_millis(300)));
    let started = Instant::now();
    let r = try_send("GET", &services_url, &headers, "").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(v2_body(&r, 200)["total_results"], 2);

    cc.set_v2_mode(cc_v3::Mode::Status(500));
    for path in [
        "/v2/services".to_string(),
        format!("/v2/services/{UPSTREAM_MYSQL_GUID}"),
        format!("/v2/services/{UPSTREAM_MYSQL_GUID}/service_plans"),
        "/v2/service_plans?q=service_guid:x".to_string(),
        format!("/v2/service_plans/{UPSTREAM_MYSQL_PLAN_GUID}"),
        format!("/v2/spaces/{SPACE_GUID}/services?q=label:echo"),
        "/v2/spaces/no-such/services".to_string(),
    ] {
        let r = send(
            "GET",
            &format!("{}{path}", cc.url()),
            &[
                ("authorization", auth.as_str()),
                ("x-vcap-request-id", path.as_str()),
            ],
            "",
        )
        .await;
        assert_eq!(
            v2_body(&r, 500),
            v2_error_body(10001, "Server error", "CF-ServerError"),
            "{path}"
        );
        assert_eq!(cc.last_v2_request_id().as_deref(), Some(path.as_str()));
    }
    // Not catalog requests: answered as before.
    let post = send("POST", &services_url, &headers, "{}").await;
    assert_eq!(
        post.json(),
        json!({"from": "upstream", "method": "POST", "path": "/v2/services"})
    );
    let instances = v3_get(
        &cc,
        &format!("/v2/service_plans/{UPSTREAM_MYSQL_PLAN_GUID}/service_instances"),
        Some(&admin),
    )
    .await;
    assert_eq!(instances.json()["from"], "upstream");
    let v3 = v3_get(&cc, "/v3/roles", Some(&admin)).await;
    assert_eq!(v3.status, 200, "the v2 mode leaves v3 alone");

    // And the v3 mode leaves v2 alone.
    cc.set_v2_mode(cc_v3::Mode::Normal);
    cc.set_mode(cc_v3::Mode::Status(503));
    let plans = client::get(&format!("{}/v2/service_plans", cc.url()), Some(&admin)).await;
    assert_eq!(plans.status, 200);
    assert_eq!(v3_get(&cc, "/v3/roles", Some(&admin)).await.status, 503);
    cc.set_mode(cc_v3::Mode::Normal);

    assert_eq!(
        cc.v2_calls(""),
        2 + 1 + 1 + 7 + 1,
        "closed, reset, hung, slow, failed"
    );
    assert_eq!(
        cc.v2_calls("/v2/services"),
        4 + 3,
        "lists and singles alike"
    );
    assert_eq!(cc.v2_calls("/v2/services?"), 0);
    assert_eq!(cc.v2_calls("/v2/service_plans"), 3);
    assert_eq!(cc.v2_calls("/v2/service_plans?q=service_guid:"), 1);
    assert_eq!(cc.v2_calls("/v2/spaces/"), 2);
    assert_eq!(
        cc.calls(Question::Roles),
        2,
        "catalog calls are not v3 questions"
    );
    let last = cc.v2_requests().pop().unwrap();
    assert_eq!(last.path, "/v2/service_plans");
    assert_eq!(cc.last_v2_authorization(), Some(auth));
    assert_eq!(cc.last_v2_request_id(), None, "the last one had none");
    cc.reset_v2_calls();
    assert_eq!(cc.v2_calls(""), 0);
    assert_eq!(cc.last_v2_authorization(), None);
    assert!(cc.requests().len() > 12, "the recorded requests stay");
}

#[tokio::test]
async fn cc_v3_organizations_list_holds_those_the_caller_sees() {
    let cc = FakeCloudController::with_default_world().await;
    cc.add_org("org-2", "second");
    cc.add_space("space-2", "second-space", "org-2");
    cc.add_org("org-3", "third");
    cc.grant(OUTSIDER, Role::SpaceDeveloper, "space-2");
    cc.grant(AUDITOR, Role::OrgUser, "org-3");

    let list = |path: &'static str, who: String| {
        let cc = &cc;
        async move { guids(&v3_body(&v3_get(cc, path, Some(&who)).await, 200)) }
    };
    assert_eq!(
        list("/v3/organizations", token::valid_token()).await,
        [ORG_GUID, "org-2", "org-3"]
    );
    assert_eq!(
        list("/v3/organizations", user_token(DEVELOPER)).await,
        [ORG_GUID]
    );
    assert_eq!(
        list("/v3/organizations", user_token(OUTSIDER)).await,
        ["org-2"]
    );
    assert_eq!(
        list("/v3/organizations", user_token(AUDITOR)).await,
        [ORG_GUID, "org-3"],
        "through a space role and an organization role"
    );
    assert!(list("/v3/organizations", user_token("user-nobody"))
        .await
        .is_empty());
    assert_eq!(
        list("/v3/organizations?names=third,second", token::valid_token()).await,
        ["org-2", "org-3"]
    );
    let page = v3_body(
        &v3_get(
            &cc,
            "/v3/organizations?per_page=1&page=2",
            Some(&token::valid_token()),
        )
        .await,
        200,
    );
    assert_eq!(guids(&page), ["org-2"]);
    assert_eq!(page["pagination"]["total_results"], 3);
    assert_eq!(
        page["pagination"]["next"]["href"],
        format!("{}/v3/organizations?page=3&per_page=1", cc.url())
    );
    assert_eq!(cc.calls(Question::OrganizationsList), 7);
    assert_eq!(cc.calls(Question::Organization), 0);
}

#[tokio::test]
async fn cc_v2_instance_lists_are_empty_v2_lists() {
    let cc = FakeCloudController::with_default_world().await;
    let list = v2_body(&v2_get(&cc, "/v2/service_instances").await, 200);
    assert_eq!(
        list,
        json!({"total_results": 0, "total_pages": 1, "prev_url": null, "next_url": null,
               "resources": []})
    );
    let page = v2_body(
        &v2_get(
            &cc,
            &format!(
                "/v2/spaces/{SPACE_GUID}/service_instances?q=name:x&page=2&results-per-page=5"
            ),
        )
        .await,
        200,
    );
    assert_eq!(
        page["prev_url"],
        format!("/v2/spaces/{SPACE_GUID}/service_instances?order-direction=asc&page=1&q=name:x&results-per-page=5")
    );
    let r = v2_get(&cc, "/v2/spaces/no-such/service_instances").await;
    assert_eq!(
        v2_body(&r, 404),
        v2_error_body(
            40004,
            "The app space could not be found: no-such",
            "CF-SpaceNotFound"
        )
    );
    let r = v2_get(&cc, "/v2/service_instances?q=label:x").await;
    assert_eq!(v2_body(&r, 400), bad_query("label"));
    cc.set_v2_mode(cc_v3::Mode::Status(503));
    assert_eq!(v2_get(&cc, "/v2/service_instances").await.status, 503);
    assert_eq!(cc.v2_calls("/v2/service_instances"), 3);
    assert_eq!(cc.v2_calls("/v2/spaces/"), 2);
    // Not a list: passed as before.
    cc.set_v2_mode(cc_v3::Mode::Normal);
    let one = v2_get(&cc, "/v2/service_instances/abc").await;
    assert_eq!(one.json()["from"], "upstream");
}
