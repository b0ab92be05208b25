//! Pass-through: everything brokergate does not own (other routes, and creates for plans
//! outside its catalog) reaches the upstream Cloud Controller unchanged, and the upstream's
//! answer comes back; without `[upstream]` those requests get CC's own 404 / 400 answers.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::time::Duration;

use serde_json::json;

use support::broker::{refused_url, MockBroker};
use support::cc::{assert_cc_error, assert_cc_error_shape, CC_JSON};
use support::client::{self, create, create_body, RawResponse, CREATE_PATH, FORM_CONTENT_TYPE};
use support::gateway::{Gateway, GatewayConfig, BROKER_TOKEN, SPACE_GUID};
use support::raw::{raw_exchange, request_bytes};
use support::recorded::RecordedRequest;
use support::token::{self, Claims};
use support::upstream::{info_body, MockUpstream};

/// Bound on each exchange.
const T: Duration = Duration::from_secs(20);
/// A plan the gateway's catalog does not hold (the real Cloud Controller's).
const UNKNOWN_PLAN: &str = "0d1b8bd4-5c6d-4b3f-9f4e-8f2a5b3c1d00";
const NOT_FOUND_BODY: &str =
    r#"{"code":10000,"description":"Unknown request","error_code":"CF-NotFound"}"#;

/// A broker, an upstream, and a gateway in front of both.
async fn with_upstream() -> (MockBroker, MockUpstream, Gateway) {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let upstream = MockUpstream::start().await;
    let gateway = Gateway::start(
        GatewayConfig::new(&broker.url())
            .upstream(&upstream.url())
            .static_authorization(),
    )
    .await;
    (broker, upstream, gateway)
}

/// A broker and a gateway without `[upstream]`.
async fn without_upstream() -> (MockBroker, Gateway) {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let gateway = Gateway::start(GatewayConfig::new(&broker.url())).await;
    (broker, gateway)
}

/// Every header the client sent arrived at the upstream once, with the same value.
fn assert_headers_forwarded(got: &RecordedRequest, sent: &[(&str, &str)], body_len: usize) {
    for (k, v) in sent {
        assert_eq!(
            got.header_all(k),
            vec![v.to_string()],
            "header {k} must reach the upstream unchanged; got {got:?}"
        );
    }
    if body_len > 0 {
        assert_eq!(
            got.header_all("content-length"),
            vec![body_len.to_string()],
            "{got:?}"
        );
    }
    let added: Vec<&(String, String)> = got
        .headers
        .iter()
        .filter(|(k, _)| {
            k != "content-length" && !sent.iter().any(|(s, _)| s.eq_ignore_ascii_case(k))
        })
        .collect();
    assert!(added.is_empty(), "headers added on the way: {added:?}");
}

#[tokio::test]
async fn unowned_requests_reach_the_upstream_unchanged_and_its_answer_comes_back() {
    let (broker, upstream, gateway) = with_upstream().await;
    let auth = "bearer some.opaque.token";
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("GET", "/v2/info?x=1", Vec::new()),
        (
            "PUT",
            "/v2/apps/abc?async=true&inline-relations-depth=1",
            br#"{ "name": "my-app",  "instances": 2.50 }"#.to_vec(),
        ),
        (
            "DELETE",
            "/v2/apps/xyz?recursive=true&purge=true",
            Vec::new(),
        ),
        // Instance, binding and key routes are brokergate's, with a guid it does not hold
        // passed on (tests/lifecycle.rs, tests/handles.rs); other sub-resources are not.
        ("GET", "/v2/service_instances/xyz/routes?page=2", Vec::new()),
        (
            "PUT",
            "/v2/service_instances/xyz/routes/r1",
            br#"{"name":"renamed"}"#.to_vec(),
        ),
        ("DELETE", "/v2/service_bindings/xyz/parameters", Vec::new()),
        // Another POST than the create route, with a non-JSON body.
        ("POST", "/v2/apps", b"name=a&x=%20y".to_vec()),
        // Not the create route: a sub-resource of it.
        (
            "POST",
            "/v2/service_instances/xyz/routes",
            b"{\"a\":1}".to_vec(),
        ),
    ];
    for (method, target, body) in cases {
        upstream.clear_requests();
        let headers = [
            ("Host", "api.example.org"),
            ("Authorization", auth),
            ("X-Custom-Header", "Two  Words; and=more"),
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        ];
        let resp = raw_exchange(
            gateway.addr(),
            &request_bytes(method, target, &headers, &body),
            T,
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {target}: {e}"));

        let got = upstream.requests();
        assert_eq!(got.len(), 1, "{method} {target}: one upstream request");
        let got = &got[0];
        assert_eq!(got.method, method);
        assert_eq!(got.path, target, "path and query unchanged");
        assert_eq!(
            got.body, body,
            "{method} {target}: body bytes unchanged; got {got:?}"
        );
        assert_headers_forwarded(got, &headers, body.len());

        assert_eq!(resp.status, 200, "{method} {target}: {resp:?}");
        let expected = if target.starts_with("/v2/info") {
            info_body()
        } else {
            json!({"from": "upstream", "method": method, "path": target})
        };
        assert_eq!(resp.json(), expected, "{method} {target}");
        assert_eq!(
            resp.header("content-type").as_deref(),
            Some("application/json"),
            "the upstream's headers come back"
        );
    }
    assert!(broker.requests().is_empty(), "the broker gets nothing");
}

#[tokio::test]
async fn upstream_status_and_body_are_returned_as_is() {
    let (_broker, upstream, gateway) = with_upstream().await;
    let answer = json!({"code": 100004, "description": "The app could not be found: abc",
                        "error_code": "CF-AppNotFound"});
    upstream.set_reply(Some((404, answer.clone())));
    let r = client::get(&format!("{}/v2/apps/abc", gateway.url()), Some("t")).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.json(), answer);

    upstream.set_reply(Some((503, json!({"upstream": "unavailable"}))));
    let r = client::send("DELETE", &format!("{}/v2/apps/xyz", gateway.url()), &[], "").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json(), json!({"upstream": "unavailable"}));
    assert_eq!(upstream.requests().len(), 2);
}

/// A pretty-printed body in an unusual key order, with a float whose text a
/// re-serialisation would change, unicode, and `gateway_data`.
fn pretty_unknown_plan_body() -> Vec<u8> {
    format!(
        "{{\n  \"space_guid\" :  \"{SPACE_GUID}\",\n  \"gateway_data\": {{ \"plan\": \"custom\", \
         \"nested\": [1, 2.50, \"\\u00e9t\u{e9}\"] }},\n\t\"name\": \"pass-through-instance\",\n  \
         \"service_plan_guid\": \"{UNKNOWN_PLAN}\",\n  \"parameters\": {{\"b\": 1, \"a\": 2}},\n  \
         \"tags\": [\"x\"]\n}}\n"
    )
    .into_bytes()
}

/// Sends a create for a plan outside the catalog with `token`, and checks the
/// upstream got exactly the client's request and the client the upstream's answer.
async fn assert_unknown_plan_passes_through(token: &str) {
    let (broker, upstream, gateway) = with_upstream().await;
    let upstream_answer = json!({"metadata": {"guid": "from-the-real-cloud-controller"},
                                 "entity": {"name": "pass-through-instance"}});
    upstream.set_reply(Some((201, upstream_answer.clone())));

    let body = pretty_unknown_plan_body();
    let authorization = format!("bearer {token}");
    let headers = [
        ("Host", "api.example.org"),
        ("Authorization", authorization.as_str()),
        ("Content-Type", FORM_CONTENT_TYPE),
        ("X-Custom-Header", "kept"),
        ("X-VCAP-Request-ID", "client-chosen-id"),
    ];
    let target = "/v2/service_instances?accepts_incomplete=true";
    let resp = raw_exchange(
        gateway.addr(),
        &request_bytes("POST", target, &headers, &body),
        T,
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(resp.json(), upstream_answer, "the upstream's answer");

    let got = upstream.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    let got = &got[0];
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, target);
    assert_eq!(
        got.body_str(),
        String::from_utf8(body.clone()).unwrap(),
        "body byte-for-byte"
    );
    assert_eq!(got.body, body);
    assert_headers_forwarded(got, &headers, body.len());
    assert!(
        broker.requests().is_empty(),
        "broker got {:?}",
        broker.requests()
    );

    // The same with a chunked body (no Content-Length): same bytes upstream.
    upstream.clear_requests();
    let mut chunked = request_bytes(
        "POST",
        CREATE_PATH,
        &[
            ("Host", "api.example.org"),
            ("Authorization", authorization.as_str()),
            ("Transfer-Encoding", "chunked"),
        ],
        b"",
    );
    let (a, b) = body.split_at(body.len() / 2);
    for part in [a, b] {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let resp = raw_exchange(gateway.addr(), &chunked, T).await.unwrap();
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(resp.json(), upstream_answer);
    let got = upstream.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].body, body,
        "chunked body reaches the upstream intact"
    );
    assert_eq!(
        got[0].header("authorization").as_deref(),
        Some(authorization.as_str())
    );
    assert!(broker.requests().is_empty());
}

#[tokio::test]
async fn create_for_a_plan_outside_the_catalog_passes_through_byte_for_byte() {
    assert_unknown_plan_passes_through(&token::valid_token()).await;
}

#[tokio::test]
async fn create_for_a_plan_outside_the_catalog_passes_through_without_write_scope() {
    // The plan check precedes the scope check: the real Cloud Controller decides.
    let read_only = Claims::new().scopes(&["cloud_controller.read"]).sign();
    assert_unknown_plan_passes_through(&read_only).await;
}

#[tokio::test]
async fn bad_token_on_the_create_route_is_answered_here_even_for_unknown_plans() {
    let (broker, upstream, gateway) = with_upstream().await;
    let mut body = create_body("bad-token");
    body["service_plan_guid"] = json!(UNKNOWN_PLAN);

    let r = create(&gateway.url(), None, &body).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        r.json(),
        json!({"code": 10002, "description": "Authentication error",
               "error_code": "CF-NotAuthenticated"})
    );
    let forged = Claims::new().sign_with_secret("not-the-secret");
    let r = create(&gateway.url(), Some(&forged), &body).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        r.json(),
        json!({"code": 1000, "description": "Invalid Auth Token",
               "error_code": "CF-InvalidAuthToken"})
    );
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
    assert!(broker.requests().is_empty());
}

#[tokio::test]
async fn known_plan_is_served_here_not_by_the_upstream() {
    let (broker, upstream, gateway) = with_upstream().await;
    let r = create(
        &gateway.url(),
        Some(&token::valid_token()),
        &create_body("ours"),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(broker.provision_count(), 1);
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
}

#[tokio::test]
async fn without_upstream_unowned_routes_get_cc_not_found() {
    let (broker, gateway) = without_upstream().await;
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("GET", "/v2/info?x=1", Vec::new()),
        ("GET", "/", Vec::new()),
        ("PUT", "/v2/apps/abc", br#"{"name":"x"}"#.to_vec()),
        ("DELETE", "/v2/apps/xyz", Vec::new()),
        ("GET", "/v2/service_instances/xyz/routes", Vec::new()),
        ("POST", "/v2/apps", br#"{"name":"x"}"#.to_vec()),
        ("PATCH", "/v3/service_instances", br#"{}"#.to_vec()),
    ];
    for (method, target, body) in cases {
        let headers = [("Host", "x"), ("Authorization", "bearer whatever")];
        let resp = raw_exchange(
            gateway.addr(),
            &request_bytes(method, target, &headers, &body),
            T,
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {target}: {e}"));
        assert_cc_error(&resp, 404, 10000, "CF-NotFound");
        assert_eq!(resp.text().trim_end(), NOT_FOUND_BODY, "{method} {target}");
        assert_eq!(
            resp.header("content-length"),
            Some(resp.body.len().to_string()),
            "exact Content-Length"
        );
        assert!(resp.header("x-vcap-request-id").is_some(), "{resp:?}");
    }
    assert!(broker.requests().is_empty());
}

#[tokio::test]
async fn without_upstream_an_unknown_plan_is_60003() {
    let (broker, gateway) = without_upstream().await;
    let mut body = create_body("nowhere");
    body["service_plan_guid"] = json!(UNKNOWN_PLAN);
    let r = create(&gateway.url(), Some(&token::valid_token()), &body).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.header("content-type").as_deref(), Some(CC_JSON));
    assert_eq!(
        r.json(),
        json!({"code": 60003,
               "description": "The service instance is invalid: not a valid service plan",
               "error_code": "CF-ServiceInstanceInvalid"})
    );
    assert!(broker.requests().is_empty());
}

/// 502 with a CC error body: integer `code`, `CF-…` `error_code`, a description.
fn assert_cc_shaped_502(resp: &RawResponse) {
    assert_cc_error_shape(resp, 502);
}

#[tokio::test]
async fn upstream_down_gives_a_cc_shaped_502() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let down = refused_url();
    // Static authorization: with the Cloud Controller down, `cloud_controller` would refuse
    // every create (tests/authorization.rs); this test is about pass-through.
    let gateway = Gateway::start(
        GatewayConfig::new(&broker.url())
            .upstream(&down)
            .static_authorization(),
    )
    .await;

    let resp = raw_exchange(
        gateway.addr(),
        &request_bytes("GET", "/v2/info", &[("Host", "x")], b""),
        T,
    )
    .await
    .unwrap();
    assert_cc_shaped_502(&resp);

    // A create for a plan outside the catalog is passed through, so it fails the same way.
    let mut create_json = create_body("unreachable");
    create_json["service_plan_guid"] = json!(UNKNOWN_PLAN);
    let raw = create_json.to_string();
    let token = format!("bearer {}", token::valid_token());
    let resp = raw_exchange(
        gateway.addr(),
        &request_bytes(
            "POST",
            CREATE_PATH,
            &[("Host", "x"), ("Authorization", &token)],
            raw.as_bytes(),
        ),
        T,
    )
    .await
    .unwrap();
    assert_cc_shaped_502(&resp);

    // The gateway itself is fine: a create it owns still works.
    let r = create(
        &gateway.url(),
        Some(&token::valid_token()),
        &create_body("ok"),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
}
