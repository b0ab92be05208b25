//! Broker failures, end to end through the real binary: every v1 broker fault maps to its Cloud
//! Controller error body (issue #2 §4), releases the name reservation (§5), and never shows the
//! broker token.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::broker::{refused_url, MockBroker, Mode, CONFIGURATIONS_PATH, TOKEN_HEADER};
use support::cc;
use support::client::{create, create_body, Response};
use support::gateway::{Gateway, GatewayConfig, SPACE_GUID};
use support::store::{assert_no_reserved_rows, rows_named_in};
use support::token;

/// A broker token distinctive enough to grep for in bodies and logs.
const BROKER_SECRET: &str = "brk-tok-9f3a61c2e7d4-do-not-leak";
/// A second, always healthy broker and plan (same space), for faults that leave the first
/// broker unusable (refused, wrong token): the name must still be free for this plan.
const HEALTHY_BROKER: &str = "healthy";
const HEALTHY_PLAN_GUID: &str = "0f9d4c1a-5b7e-4e2a-9c3d-8a6b1e2f3c4d";
const T: Duration = Duration::from_secs(10);

/// The exact description the Cloud Controller gives for a duplicate (60008).
const DUPLICATE_DESCRIPTION: &str = "An instance of this service is already present in this space.  Some services only support one instance per space.";

// ---------------------------------------------------------------------------------------------
// Helpers

/// A mock broker expecting [`BROKER_SECRET`] and a gateway in front of it.
struct Fixture {
    broker: MockBroker,
    gw: Gateway,
    token: String,
}

impl Fixture {
    async fn start(mode: Mode) -> Fixture {
        Fixture::start_with(mode, |c| c).await
    }

    async fn start_with(mode: Mode, tweak: impl FnOnce(GatewayConfig) -> GatewayConfig) -> Fixture {
        let broker = MockBroker::start(BROKER_SECRET).await;
        broker.set_mode(mode);
        let config = tweak(GatewayConfig::new(&broker.url()).broker_token(BROKER_SECRET));
        let gw = Gateway::start(config).await;
        Fixture {
            broker,
            gw,
            token: token::valid_token(),
        }
    }

    async fn create(&self, name: &str) -> Response {
        let resp = create(&self.gw.url(), Some(&self.token), create_body(name)).await;
        assert_no_secret_in_body(&resp);
        resp
    }

    /// `<broker url>/gateway/v1/configurations`
    fn provision_uri(&self) -> String {
        format!("{}{CONFIGURATIONS_PATH}", self.broker.url())
    }

    /// After a failed create: no reservation left, no row for `name`; then, with the broker
    /// healthy again, the same name is created (201): the reservation was released.
    async fn assert_released_and_retry_succeeds(&self, name: &str) {
        assert_no_reserved_rows(self.gw.config());
        assert!(
            rows_named(self.gw.config(), name).is_empty(),
            "a failed create left a row for {name:?}"
        );
        self.broker.set_mode(Mode::Ok);
        let retry = self.create(name).await;
        assert_eq!(retry.status, 201, "retry of {name:?}: {retry:?}");
        assert_eq!(retry.json()["entity"]["name"], name);
        assert_eq!(
            rows_named(self.gw.config(), name)
                .iter()
                .map(|r| r.state.as_str())
                .collect::<Vec<_>>(),
            vec!["created"]
        );
        assert_no_reserved_rows(self.gw.config());
    }

    fn assert_no_secret_in_logs(&self) {
        assert_logs_clean(&self.gw);
    }
}

fn assert_no_secret_in_body(resp: &Response) {
    assert!(
        !resp.text().contains(BROKER_SECRET),
        "the broker token leaked into a response body: {resp:?}"
    );
}

fn assert_logs_clean(gw: &Gateway) {
    let (out, err) = (gw.stdout(), gw.stderr());
    assert!(
        !out.contains(BROKER_SECRET) && !err.contains(BROKER_SECRET),
        "the broker token leaked into the gateway's output:\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
    );
}

/// Status, CC headers, `code`, `error_code`, and the CC key order (code, description,
/// error_code[, http]), see [`cc::assert_cc_error`], plus an `X-VCAP-Request-ID`; returns
/// the body.
fn assert_cc_error(resp: &Response, status: u16, code: u64, error_code: &str) -> Value {
    let body = cc::assert_cc_error(resp, status, code, error_code);
    assert!(resp.header("x-vcap-request-id").is_some(), "{resp:?}");
    body
}

/// The broker-failure part: 502/504 with code 10001.
fn assert_broker_error(resp: &Response, status: u16, error_code: &str) -> Value {
    assert_cc_error(resp, status, 10001, error_code)
}

/// Rows named `name` in the seeded space.
fn rows_named(config: &GatewayConfig, name: &str) -> Vec<support::store::Row> {
    rows_named_in(config, SPACE_GUID, name)
}

/// TOML for a second broker (at `url`, with the right token) and a plan it serves.
fn healthy_broker_toml(url: &str) -> String {
    format!(
        r#"
[[brokers]]
name = "{HEALTHY_BROKER}"
url = "{url}"
token = "{BROKER_SECRET}"
timeout_seconds = 10
connect_timeout_seconds = 5

[[plans]]
guid = "{HEALTHY_PLAN_GUID}"
broker = "{HEALTHY_BROKER}"
label = "healthy"
version = "1.0"
provider = "core"
name = "free"
unique_id = "healthy-free"
"#
    )
}

/// Create `name` through the healthy plan: 201 proves the name is not held.
async fn create_on_healthy_plan(gw: &Gateway, name: &str) -> Response {
    let mut body = create_body(name);
    body["service_plan_guid"] = json!(HEALTHY_PLAN_GUID);
    let resp = create(&gw.url(), Some(&token::valid_token()), body).await;
    assert_no_secret_in_body(&resp);
    resp
}

// ---------------------------------------------------------------------------------------------
// 5xx

#[tokio::test]
async fn broker_500_with_description_is_bad_response_with_the_cc_body() {
    let f = Fixture::start(Mode::error(500, 12345, "This is what really happened.")).await;
    let resp = f.create("fault-500").await;
    let body = assert_broker_error(&resp, 502, "CF-ServiceBrokerBadResponse");
    assert_eq!(
        body,
        json!({
            "code": 10001,
            "description": "Service broker error: This is what really happened.",
            "error_code": "CF-ServiceBrokerBadResponse",
            "http": {"uri": f.provision_uri(), "method": "POST", "status": 500},
        })
    );
    assert_eq!(f.broker.provision_count(), 1);
    assert_eq!(f.broker.delete_count(), 0);
    f.assert_released_and_retry_succeeds("fault-500").await;
    f.assert_no_secret_in_logs();
}

#[tokio::test]
async fn broker_5xx_without_a_json_description_is_bad_response_naming_uri_and_status() {
    let f = Fixture::start(Mode::Ok).await;
    let cases = [
        (
            Mode::raw(502, "<html>bad gateway</html>", "text/html"),
            502,
            "502 Bad Gateway",
        ),
        (Mode::raw(503, "", ""), 503, "503 Service Unavailable"),
        (
            Mode::Json(500, json!({"code": 30500})),
            500,
            "500 Internal Server Error",
        ),
        // A big error page is cut, not repeated whole.
        (
            Mode::raw(500, "x".repeat(200_000), "text/plain"),
            500,
            "500 Internal Server Error",
        ),
    ];
    for (i, (mode, status, status_line)) in cases.into_iter().enumerate() {
        let name = format!("fault-5xx-{i}");
        f.broker.set_mode(mode.clone());
        let resp = f.create(&name).await;
        let body = assert_broker_error(&resp, 502, "CF-ServiceBrokerBadResponse");
        assert!(
            resp.body.len() < 8192,
            "unbounded error body: {} bytes",
            resp.body.len()
        );
        let description = body["description"].as_str().unwrap();
        assert!(
            description.contains(&f.provision_uri()),
            "{mode:?}: description must name the URI: {description}"
        );
        assert!(
            description.contains(&format!("Status Code: {status_line}")),
            "{mode:?}: description must give the status: {description}"
        );
        assert_eq!(
            body["http"],
            json!({"uri": f.provision_uri(), "method": "POST", "status": status}),
            "{mode:?}"
        );
        f.assert_released_and_retry_succeeds(&name).await;
    }
    assert_eq!(f.broker.delete_count(), 0);
    f.assert_no_secret_in_logs();
}

// ---------------------------------------------------------------------------------------------
// 4xx

#[tokio::test]
async fn broker_4xx_is_request_rejected_with_its_description() {
    let f = Fixture::start(Mode::Json(422, json!({"description": "bad plan"}))).await;
    let resp = f.create("fault-422").await;
    let body = assert_broker_error(&resp, 502, "CF-ServiceBrokerRequestRejected");
    assert_eq!(
        body,
        json!({
            "code": 10001,
            "description": "Service broker error: bad plan",
            "error_code": "CF-ServiceBrokerRequestRejected",
            "http": {"uri": f.provision_uri(), "method": "POST", "status": 422},
        })
    );
    f.assert_released_and_retry_succeeds("fault-422").await;

    // A 4xx without a description names the URI and the status instead.
    f.broker
        .set_mode(Mode::raw(404, "no such thing", "text/plain"));
    let resp = f.create("fault-404").await;
    let body = assert_broker_error(&resp, 502, "CF-ServiceBrokerRequestRejected");
    let description = body["description"].as_str().unwrap();
    assert!(
        description.contains(&f.provision_uri()) && description.contains("Status Code: 404"),
        "{description}"
    );
    assert_eq!(body["http"]["status"], 404);
    f.assert_released_and_retry_succeeds("fault-404").await;
    assert_eq!(f.broker.delete_count(), 0);
    f.assert_no_secret_in_logs();
}

#[tokio::test]
async fn broker_rejecting_the_gateway_token_is_request_rejected() {
    let healthy = MockBroker::start(BROKER_SECRET).await;
    let broker = MockBroker::start(BROKER_SECRET).await;
    let config = GatewayConfig::new(&broker.url())
        .broker_token("a-wrong-broker-token")
        .extra_toml(&healthy_broker_toml(&healthy.url()));
    let gw = Gateway::start(config).await;

    let resp = create(
        &gw.url(),
        Some(&token::valid_token()),
        create_body("fault-401"),
    )
    .await;
    assert_no_secret_in_body(&resp);
    let body = assert_broker_error(&resp, 502, "CF-ServiceBrokerRequestRejected");
    assert_eq!(
        body,
        json!({
            "code": 10001,
            "description": "Service broker error: Not authorized",
            "error_code": "CF-ServiceBrokerRequestRejected",
            "http": {
                "uri": format!("{}{CONFIGURATIONS_PATH}", broker.url()),
                "method": "POST",
                "status": 401,
            },
        })
    );
    assert!(!resp.text().contains("a-wrong-broker-token"), "{resp:?}");
    // The broker did see (and refuse) the wrong token.
    let sent = broker.provision_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].header(TOKEN_HEADER).as_deref(),
        Some("a-wrong-broker-token")
    );

    assert_no_reserved_rows(gw.config());
    assert!(rows_named(gw.config(), "fault-401").is_empty());
    let retry = create_on_healthy_plan(&gw, "fault-401").await;
    assert_eq!(retry.status, 201, "{retry:?}");
    assert_eq!(healthy.provision_count(), 1);
    assert_no_reserved_rows(gw.config());
    let (out, err) = (gw.stdout(), gw.stderr());
    assert!(
        !out.contains("a-wrong-broker-token") && !err.contains("a-wrong-broker-token"),
        "token in logs:\n{out}\n{err}"
    );
    assert_logs_clean(&gw);
}

// ---------------------------------------------------------------------------------------------
// 33106

#[tokio::test]
async fn integer_code_33106_at_any_error_status_is_duplicate_not_allowed() {
    let f = Fixture::start(Mode::Ok).await;
    for status in [400, 403, 409, 422, 500, 502, 503] {
        let name = format!("dup-{status}");
        f.broker.set_mode(Mode::error(
            status,
            33106,
            "edition already present for this space",
        ));
        let resp = f.create(&name).await;
        let body = assert_cc_error(&resp, 400, 60008, "CF-ServiceInstanceDuplicateNotAllowed");
        assert_eq!(
            body,
            json!({
                "code": 60008,
                "description": DUPLICATE_DESCRIPTION,
                "error_code": "CF-ServiceInstanceDuplicateNotAllowed",
            }),
            "broker status {status}"
        );
        f.assert_released_and_retry_succeeds(&name).await;
    }
    assert_eq!(f.broker.delete_count(), 0);
    f.assert_no_secret_in_logs();
}

#[tokio::test]
async fn string_code_33106_is_not_the_duplicate_case() {
    let f = Fixture::start(Mode::Json(
        400,
        json!({"code": "33106", "description": "dup as a string"}),
    ))
    .await;
    let resp = f.create("dup-string-400").await;
    let body = assert_broker_error(&resp, 502, "CF-ServiceBrokerRequestRejected");
    assert_eq!(body["description"], "Service broker error: dup as a string");
    assert_eq!(body["http"]["status"], 400);
    f.assert_released_and_retry_succeeds("dup-string-400").await;

    f.broker.set_mode(Mode::Json(
        500,
        json!({"code": "33106", "description": "dup as a string"}),
    ));
    let resp = f.create("dup-string-500").await;
    let body = assert_broker_error(&resp, 502, "CF-ServiceBrokerBadResponse");
    assert_eq!(body["description"], "Service broker error: dup as a string");
    assert_eq!(body["http"]["status"], 500);
    f.assert_released_and_retry_succeeds("dup-string-500").await;

    // A non-integer code is not the duplicate case either.
    f.broker.set_mode(Mode::Json(
        409,
        json!({"code": 33106.5, "description": "dup as a float"}),
    ));
    let resp = f.create("dup-float").await;
    assert_broker_error(&resp, 502, "CF-ServiceBrokerRequestRejected");
    f.assert_released_and_retry_succeeds("dup-float").await;
    f.assert_no_secret_in_logs();
}

// ---------------------------------------------------------------------------------------------
// Malformed 2xx

#[tokio::test]
async fn malformed_2xx_answers_are_response_malformed_without_a_delete() {
    let f = Fixture::start(Mode::Ok).await;
    let cases = [
        Mode::raw(200, "not json", ""),
        Mode::raw(200, "not json", "application/json"),
        Mode::Json(200, json!({})),
        Mode::Json(200, json!([])),
        Mode::Json(
            200,
            json!({"service_id": 5, "configuration": {}, "credentials": {}}),
        ),
        Mode::Json(
            201,
            json!({"service_id": null, "configuration": {}, "credentials": {}}),
        ),
        Mode::raw(200, "", ""),
        Mode::raw(204, "", ""),
    ];
    for (i, mode) in cases.into_iter().enumerate() {
        let name = format!("malformed-{i}");
        f.broker.set_mode(mode.clone());
        let resp = f.create(&name).await;
        let body = assert_broker_error(&resp, 502, "CF-ServiceBrokerResponseMalformed");
        assert!(body.get("http").is_none() || body["http"]["uri"] == f.provision_uri());
        assert_eq!(
            f.broker.delete_count(),
            0,
            "{mode:?}: nothing to deprovision"
        );
        f.assert_released_and_retry_succeeds(&name).await;
    }
    f.assert_no_secret_in_logs();
}

#[tokio::test]
async fn malformed_2xx_naming_a_service_id_is_deprovisioned_once() {
    let f = Fixture::start(Mode::Json(
        200,
        json!({"service_id": "svc-x", "credentials": {}}),
    ))
    .await;
    let resp = f.create("malformed-named").await;
    assert_broker_error(&resp, 502, "CF-ServiceBrokerResponseMalformed");

    assert!(f.broker.wait_for_deletes(1, T).await, "no DELETE arrived");
    // Nothing more trickles in.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let deletes = f.broker.delete_requests();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    let delete = &deletes[0];
    assert_eq!(delete.method, "DELETE");
    assert_eq!(delete.path, format!("{CONFIGURATIONS_PATH}/svc-x"));
    assert_eq!(delete.header(TOKEN_HEADER).as_deref(), Some(BROKER_SECRET));
    assert_eq!(
        delete.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(delete.header("accept").as_deref(), Some("application/json"));
    let provision = &f.broker.provision_requests()[0];
    assert!(delete.header("x-vcap-request-id").is_some());
    assert_eq!(
        delete.header("x-vcap-request-id"),
        provision.header("x-vcap-request-id"),
        "the DELETE belongs to the same request"
    );
    assert_eq!(f.broker.deleted_ids(), vec!["svc-x"]);
    f.assert_released_and_retry_succeeds("malformed-named")
        .await;
    assert_eq!(f.broker.delete_count(), 1);
    f.assert_no_secret_in_logs();
}

/// `%XX` decoding only: in a URL path `+` is a literal plus, not a space.
fn percent_decode_path(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&segment[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn deprovision_path_carries_the_service_id_exactly() {
    // Whatever the broker named, the DELETE must address that id once the broker decodes
    // its path (RFC 3986: `%XX` only; `+` is a literal plus in a path, not a space).
    let mut wrong = Vec::new();
    for id in ["svc with space", "a/b", "plus+sign", "ünï", "q?x#y"] {
        let f = Fixture::start(Mode::Json(
            200,
            json!({"service_id": id, "credentials": {}}),
        ))
        .await;
        let resp = f.create("odd-id").await;
        assert_broker_error(&resp, 502, "CF-ServiceBrokerResponseMalformed");
        let deletes: Vec<_> = f
            .broker
            .requests()
            .into_iter()
            .filter(|r| r.method == "DELETE")
            .collect();
        assert_eq!(deletes.len(), 1, "{id:?}: {deletes:#?}");
        let path = deletes[0].path.clone();
        let segment = path
            .strip_prefix(&format!("{CONFIGURATIONS_PATH}/"))
            .unwrap_or_else(|| panic!("{id:?}: DELETE went to {path}"));
        if segment.contains(['/', '?', '#']) || percent_decode_path(segment) != id {
            wrong.push(format!("{id:?} -> DELETE {path}"));
        }
        f.assert_released_and_retry_succeeds("odd-id").await;
    }
    assert!(
        wrong.is_empty(),
        "DELETE paths that address another instance: {wrong:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Transport failures

#[tokio::test]
async fn refused_connection_is_api_unreachable() {
    let healthy = MockBroker::start(BROKER_SECRET).await;
    let refused = refused_url();
    let config = GatewayConfig::new(&refused)
        .broker_token(BROKER_SECRET)
        .connect_timeout_seconds(5)
        .extra_toml(&healthy_broker_toml(&healthy.url()));
    let gw = Gateway::start(config).await;

    let started = Instant::now();
    let resp = create(
        &gw.url(),
        Some(&token::valid_token()),
        create_body("refused"),
    )
    .await;
    assert_no_secret_in_body(&resp);
    let body = assert_broker_error(&resp, 502, "CF-ServiceBrokerApiUnreachable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused must fail fast"
    );
    let description = body["description"].as_str().unwrap();
    assert!(
        description.contains(&format!("{refused}{CONFIGURATIONS_PATH}")),
        "{description}"
    );

    assert_no_reserved_rows(gw.config());
    assert!(rows_named(gw.config(), "refused").is_empty());
    let retry = create_on_healthy_plan(&gw, "refused").await;
    assert_eq!(retry.status, 201, "{retry:?}");
    assert_no_reserved_rows(gw.config());
    assert_logs_clean(&gw);
}

#[tokio::test]
async fn broker_closing_or_resetting_without_answering_is_api_unreachable() {
    // A fresh gateway per mode, so the failing call is on a fresh broker connection.
    for mode in [Mode::CloseConnection, Mode::Reset] {
        let f = Fixture::start(mode.clone()).await;
        let name = format!("{mode:?}").to_lowercase();
        let started = Instant::now();
        let resp = f.create(&name).await;
        assert_broker_error(&resp, 502, "CF-ServiceBrokerApiUnreachable");
        assert!(started.elapsed() < Duration::from_secs(5), "{mode:?}");
        assert_eq!(f.broker.provision_count(), 1, "{mode:?}: one attempt");
        f.assert_released_and_retry_succeeds(&name).await;
        f.assert_no_secret_in_logs();
    }
}

/// First a good call, so the gateway pools the broker connection; then the broker reads the
/// next POST on that connection and drops it (FIN or RST) without answering. The broker has
/// received the request, so sending it again could provision a second instance: the gateway
/// must report the failure, not replay the POST.
async fn reused_connection_dropped_after_the_post(mode: Mode) {
    let f = Fixture::start(Mode::Ok).await;
    let warm = f.create("warm-up").await;
    assert_eq!(warm.status, 201, "{warm:?}");
    f.broker.set_mode(mode.clone());
    let name = format!("reused-{mode:?}").to_lowercase();
    let resp = f.create(&name).await;
    let posts: Vec<String> = f.broker.provision_requests()[1..]
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.header("x-vcap-request-id").unwrap_or_default(),
                r.body_str()
            )
        })
        .collect();
    assert_eq!(
        posts.len(),
        1,
        "{mode:?}: the POST the broker read was sent {} times (answer: {} {}): {posts:#?}",
        posts.len(),
        resp.status,
        resp.text()
    );
    assert_broker_error(&resp, 502, "CF-ServiceBrokerApiUnreachable");
    f.assert_released_and_retry_succeeds(&name).await;
}

#[tokio::test]
async fn broker_closing_a_reused_connection_after_reading_the_post_is_not_replayed() {
    reused_connection_dropped_after_the_post(Mode::CloseConnection).await;
}

#[tokio::test]
async fn broker_resetting_a_reused_connection_after_reading_the_post_is_not_replayed() {
    reused_connection_dropped_after_the_post(Mode::Reset).await;
}

#[tokio::test]
async fn broker_slower_than_its_timeout_is_api_timeout() {
    for mode in [Mode::Delay(Duration::from_secs(3)), Mode::Hang] {
        let f = Fixture::start_with(mode.clone(), |c| c.broker_timeout_seconds(1)).await;
        let name = format!("slow-{}", if mode == Mode::Hang { "hang" } else { "delay" });
        let started = Instant::now();
        let resp = f.create(&name).await;
        let elapsed = started.elapsed();
        let body = assert_broker_error(&resp, 504, "CF-ServiceBrokerApiTimeout");
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
            "{mode:?}: answered after {elapsed:?}"
        );
        let description = body["description"].as_str().unwrap();
        assert!(description.contains(&f.provision_uri()), "{description}");
        assert_eq!(f.broker.provision_count(), 1, "{mode:?}: no retry");
        f.assert_released_and_retry_succeeds(&name).await;
        f.assert_no_secret_in_logs();
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets

#[tokio::test]
async fn broker_userinfo_and_token_never_appear_in_errors_or_logs() {
    let broker = MockBroker::start(BROKER_SECRET).await;
    let port = broker.addr().port();
    let url = format!("http://user:secret@127.0.0.1:{port}");
    let gw = Gateway::start(GatewayConfig::new(&url).broker_token(BROKER_SECRET)).await;
    let clean_uri = format!("http://127.0.0.1:{port}{CONFIGURATIONS_PATH}");
    let modes = [
        (
            Mode::error(500, 1, "boom"),
            502,
            "CF-ServiceBrokerBadResponse",
        ),
        (
            Mode::raw(503, "down", "text/plain"),
            502,
            "CF-ServiceBrokerBadResponse",
        ),
        (
            Mode::Json(422, json!({"description": "bad plan"})),
            502,
            "CF-ServiceBrokerRequestRejected",
        ),
        (
            Mode::raw(200, "not json", ""),
            502,
            "CF-ServiceBrokerResponseMalformed",
        ),
        (Mode::Reset, 502, "CF-ServiceBrokerApiUnreachable"),
    ];
    for (i, (mode, status, error_code)) in modes.into_iter().enumerate() {
        broker.set_mode(mode.clone());
        let resp = create(
            &gw.url(),
            Some(&token::valid_token()),
            create_body(&format!("userinfo-{i}")),
        )
        .await;
        assert_no_secret_in_body(&resp);
        let body = assert_broker_error(&resp, status, error_code);
        let text = resp.text();
        assert!(
            !text.contains("secret") && !text.contains("user:"),
            "{mode:?}: userinfo leaked: {text}"
        );
        if let Some(http) = body.get("http") {
            assert_eq!(http["uri"], clean_uri, "{mode:?}");
        }
        let description = body["description"].as_str().unwrap();
        if description.contains("http://") {
            assert!(description.contains(&clean_uri), "{mode:?}: {description}");
        }
    }
    // Every request still went to the configured broker, with the configured token.
    for req in broker.provision_requests() {
        assert_eq!(req.header(TOKEN_HEADER).as_deref(), Some(BROKER_SECRET));
    }
    assert_no_reserved_rows(gw.config());
    let (out, err) = (gw.stdout(), gw.stderr());
    assert!(
        !out.contains("user:secret") && !err.contains("user:secret"),
        "userinfo in logs:\n{out}\n{err}"
    );
    assert_logs_clean(&gw);
}
