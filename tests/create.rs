//! Black-box loopback tests of `POST /v2/service_instances`: the real binary in front of the
//! mock v1 broker. Covers the seed request and its 201 envelope, the exact v1 request on the
//! wire, `X-VCAP-Request-ID`, request validation, authentication and its check order, and
//! that tokens never leak into logs or error bodies.

mod support;

use base64::Engine;
use serde_json::{json, Value};

use support::broker::{MockBroker, Mode, CONFIGURATIONS_PATH};
use support::cc::{self, CC_JSON};
use support::client::{self, create, create_body, IntoBody, Response, FORM_CONTENT_TYPE};
use support::gateway::{Gateway, GatewayConfig, BROKER_TOKEN, ORG_GUID, PLAN_GUID, SPACE_GUID};
use support::json::{keys, members, raw, value};
use support::recorded::RecordedRequest;
use support::token::{self, Claims, DEFAULT_EMAIL, DEFAULT_USER_ID};
use support::upstream::MockUpstream;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The seed's request body, byte for byte.
const SEED_BODY: &str = "{\n\
\"space_guid\": \"f24c6904-30e0-4559-9523-06d2d93f0c9c\",\n\
\"name\": \"my-service-instance\",\n\
\"service_plan_guid\": \"6df3af55-8f97-4dbe-9d6b-098eb53d8c17\"\n\
}";

/// A broker answer whose `configuration` would change if re-serialized (key order, `2.50`).
const BROKER_CONFIGURATION: &str = r#"{"z":1,"a":2.50}"#;
const BROKER_CREDENTIALS: &str = r#"{"creds-key-327":"creds-val-327"}"#;
const BROKER_DASHBOARD: &str = "http://dashboard.example.com";

const INVALID_AUTH_TOKEN: &str =
    r#"{"code":1000,"description":"Invalid Auth Token","error_code":"CF-InvalidAuthToken"}"#;
const NOT_AUTHENTICATED: &str =
    r#"{"code":10002,"description":"Authentication error","error_code":"CF-NotAuthenticated"}"#;

const V1_KEYS: [&str; 9] = [
    "label",
    "email",
    "plan",
    "version",
    "provider",
    "space_guid",
    "organization_guid",
    "unique_id",
    "name",
];

/// A broker plus a gateway on the seed config, changed by `configure`.
async fn start_with(
    configure: impl FnOnce(GatewayConfig) -> GatewayConfig,
) -> (MockBroker, Gateway) {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let gateway = Gateway::start(configure(GatewayConfig::new(&broker.url()))).await;
    (broker, gateway)
}

/// A broker plus a gateway on the seed config.
async fn start() -> (MockBroker, Gateway) {
    start_with(|c| c).await
}

/// The broker answers the seed's credentials and dashboard, and [`BROKER_CONFIGURATION`].
fn seed_broker_mode() -> Mode {
    Mode::raw(
        200,
        format!(
            r#"{{"service_id":"svc-seed","configuration":{BROKER_CONFIGURATION},"credentials":{BROKER_CREDENTIALS},"dashboard_url":"{BROKER_DASHBOARD}"}}"#
        ),
        "application/json",
    )
}

/// The seed token's claims shape: user_id, email, admin scope, aud, exp.
fn seed_claims() -> Claims {
    Claims::new().remove("jti").remove("client_id")
}

/// `POST <path_and_query>` with the form Content-Type, `Authorization: <authorization>` when
/// given, and `extra` headers.
async fn post(
    gateway: &Gateway,
    path_and_query: &str,
    authorization: Option<&str>,
    extra: &[(&str, &str)],
    body: impl IntoBody,
) -> Response {
    let mut headers = vec![("content-type", FORM_CONTENT_TYPE)];
    if let Some(a) = authorization {
        headers.push(("authorization", a));
    }
    headers.extend_from_slice(extra);
    let url = client::join(&gateway.url(), path_and_query);
    client::send("POST", &url, &headers, body).await
}

/// A create with `Authorization: bearer <token>`.
async fn create_as(gateway: &Gateway, token: &str, body: impl IntoBody) -> Response {
    create(&gateway.url(), Some(token), body).await
}

/// A create with a valid admin token.
async fn create_ok(gateway: &Gateway, body: impl IntoBody) -> Response {
    create_as(gateway, &token::valid_token(), body).await
}

/// A lower-case hyphenated uuid.
fn assert_uuid(s: &str) {
    let parsed = uuid::Uuid::parse_str(s).unwrap_or_else(|e| panic!("not a uuid ({e}): {s:?}"));
    assert_eq!(parsed.hyphenated().to_string(), s, "uuid in canonical form");
}

/// The seed's timestamp form, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$`.
fn is_seed_timestamp(s: &str) -> bool {
    const FORM: &[u8] = b"dddd-dd-ddTdd:dd:dd+00:00";
    s.len() == FORM.len()
        && s.bytes().zip(FORM).all(|(c, f)| match f {
            b'd' => c.is_ascii_digit(),
            _ => c == *f,
        })
}

/// Now, in the seed's form (whole seconds, so lexicographic order is time order).
fn now_stamp() -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+00:00");
    time::OffsetDateTime::now_utc()
        .format(format)
        .expect("format now")
}

/// A timestamp in the seed's form, taken between `before` and `after`.
fn assert_timestamp_between(s: &str, before: &str, after: &str) {
    assert!(is_seed_timestamp(s), "not in the seed's form: {s:?}");
    assert!(
        before <= s && s <= after,
        "{s} not within [{before}, {after}]"
    );
}

/// `Content-Length` present and equal to the body length; no chunking.
fn assert_exact_length(resp: &Response) {
    assert_eq!(
        resp.header("content-length"),
        Some(resp.body.len().to_string()),
        "{resp:?}"
    );
    assert_eq!(resp.header("transfer-encoding"), None, "{resp:?}");
}

/// A CC error ([`cc::assert_cc_error`]) with the exact body `{code, description, error_code}`
/// and an exact `Content-Length`.
fn assert_cc_error(resp: &Response, status: u16, code: u64, error_code: &str, description: &str) {
    cc::assert_cc_error(resp, status, code, error_code);
    assert_eq!(
        resp.json(),
        json!({"code": code, "description": description, "error_code": error_code}),
        "{resp:?}"
    );
    assert_exact_length(resp);
}

/// A CC error ([`cc::assert_cc_error`]) with only its three members; returns its description
/// for further checks.
fn cc_error_description(resp: &Response, status: u16, code: u64, error_code: &str) -> String {
    let body = cc::assert_cc_error(resp, status, code, error_code);
    assert_eq!(body.as_object().map(|o| o.len()), Some(3), "{resp:?}");
    body["description"]
        .as_str()
        .unwrap_or_else(|| panic!("description is not a string: {resp:?}"))
        .to_string()
}

/// 400 CF-MessageParseError with exactly this detail.
fn assert_parse_error(resp: &Response, detail: &str) {
    let description = format!("Request invalid due to parse error: {detail}");
    assert_cc_error(resp, 400, 1001, "CF-MessageParseError", &description);
}

/// 400 CF-MessageParseError, whatever the detail.
fn assert_some_parse_error(resp: &Response) {
    let description = cc_error_description(resp, 400, 1001, "CF-MessageParseError");
    assert!(
        description.starts_with("Request invalid due to parse error: "),
        "{resp:?}"
    );
}

/// An auth error ([`cc::assert_cc_error_shape`]) body, byte for byte (CC's bodies end with a
/// newline, which is allowed).
fn assert_auth_error(resp: &Response, status: u16, exact_body: &str) {
    cc::assert_cc_error_shape(resp, status);
    assert_eq!(resp.text().trim_end_matches('\n'), exact_body, "{resp:?}");
    assert_exact_length(resp);
}

/// The broker was never called, for anything.
fn assert_no_broker_call(broker: &MockBroker) {
    assert_eq!(broker.provision_count(), 0, "{:?}", broker.requests());
    assert!(broker.requests().is_empty(), "{:?}", broker.requests());
}

/// The one provision request the broker received.
fn only_provision(broker: &MockBroker) -> RecordedRequest {
    let mut reqs = broker.provision_requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    reqs.remove(0)
}

/// A 201 whose entity is parsed; panics with the response otherwise.
fn created_entity(resp: &Response) -> Value {
    assert_eq!(resp.status, 201, "{resp:?}");
    resp.json()["entity"].clone()
}

/// The 401 InvalidAuthToken for `token` on a gateway built by `configure`, no broker call.
async fn assert_token_rejected(
    configure: impl FnOnce(GatewayConfig) -> GatewayConfig,
    token: &str,
) {
    let (broker, gateway) = start_with(configure).await;
    let resp = create_as(&gateway, token, create_body("rejected")).await;
    assert_auth_error(&resp, 401, INVALID_AUTH_TOKEN);
    assert_no_broker_call(&broker);
}

/// Everything a 201 for the seed plan and space must hold, with the given name, tags and the
/// broker's `credentials`/`configuration`/`dashboard_url` raw texts.
struct Expected<'a> {
    name: &'a str,
    tags: &'a str,
    credentials: &'a str,
    gateway_data: &'a str,
    dashboard_url: &'a str,
}

/// Checks the envelope field by field and in order; returns the instance guid.
fn assert_created(resp: &Response, expected: &Expected<'_>, before: &str, after: &str) -> String {
    assert_eq!(resp.status, 201, "{resp:?}");
    let text = resp.text();
    let top = members(&text);
    assert_eq!(keys(&top), ["metadata", "entity"], "{text}");

    let metadata = members(raw(&top, "metadata"));
    assert_eq!(
        keys(&metadata),
        ["guid", "url", "created_at", "updated_at"],
        "{text}"
    );
    let guid = value(&metadata, "guid")
        .as_str()
        .expect("guid is a string")
        .to_string();
    assert_uuid(&guid);
    let url = format!("/v2/service_instances/{guid}");
    assert_eq!(value(&metadata, "url"), json!(url));
    let created_at = value(&metadata, "created_at");
    assert_timestamp_between(created_at.as_str().expect("string"), before, after);
    assert_eq!(raw(&metadata, "updated_at"), "null");

    let entity = members(raw(&top, "entity"));
    assert_eq!(
        keys(&entity),
        [
            "name",
            "credentials",
            "service_plan_guid",
            "space_guid",
            "gateway_data",
            "dashboard_url",
            "type",
            "state",
            "state_description",
            "last_operation",
            "tags",
            "service_guid",
            "space_url",
            "service_plan_url",
            "service_bindings_url",
            "service_keys_url",
            "routes_url",
        ],
        "{text}"
    );
    assert_eq!(value(&entity, "name"), json!(expected.name));
    assert_eq!(raw(&entity, "credentials"), expected.credentials);
    assert_eq!(value(&entity, "service_plan_guid"), json!(PLAN_GUID));
    assert_eq!(value(&entity, "space_guid"), json!(SPACE_GUID));
    assert_eq!(raw(&entity, "gateway_data"), expected.gateway_data);
    assert_eq!(raw(&entity, "dashboard_url"), expected.dashboard_url);
    assert_eq!(value(&entity, "type"), json!("managed_service_instance"));
    assert_eq!(raw(&entity, "state"), "null");
    assert_eq!(raw(&entity, "state_description"), "null");

    let last_operation = members(raw(&entity, "last_operation"));
    assert_eq!(
        keys(&last_operation),
        ["type", "state", "description", "created_at", "updated_at"],
        "{text}"
    );
    assert_eq!(value(&last_operation, "type"), json!("create"));
    assert_eq!(value(&last_operation, "state"), json!("succeeded"));
    assert_eq!(value(&last_operation, "description"), json!(""));
    let op_created = value(&last_operation, "created_at");
    assert_timestamp_between(op_created.as_str().expect("string"), before, after);
    assert_eq!(raw(&last_operation, "updated_at"), "null");

    assert_eq!(
        value(&entity, "tags"),
        serde_json::from_str::<Value>(expected.tags).expect("expected tags are JSON")
    );
    // The plan's offering: the test config's plan carries label `echo` and version `1.0`, so
    // its guid is the one derived from them (see the README's configuration section).
    assert_eq!(
        value(&entity, "service_guid"),
        json!("3dcca525-780d-5783-84f7-8a1c014e5780")
    );
    assert_eq!(
        value(&entity, "space_url"),
        json!(format!("/v2/spaces/{SPACE_GUID}"))
    );
    assert_eq!(
        value(&entity, "service_plan_url"),
        json!(format!("/v2/service_plans/{PLAN_GUID}"))
    );
    assert_eq!(
        value(&entity, "service_bindings_url"),
        json!(format!("{url}/service_bindings"))
    );
    assert_eq!(
        value(&entity, "service_keys_url"),
        json!(format!("{url}/service_keys"))
    );
    assert_eq!(value(&entity, "routes_url"), json!(format!("{url}/routes")));

    assert_eq!(resp.header("location"), Some(url));
    assert_eq!(resp.header("content-type").as_deref(), Some(CC_JSON));
    assert_exact_length(resp);
    guid
}

// ---------------------------------------------------------------------------------------------
// 1. The seed request and the 201 envelope
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn seed_request_yields_201_with_the_seed_shape_field_by_field() {
    let (broker, gateway) = start().await;
    broker.set_mode(seed_broker_mode());
    let bearer = format!("bearer {}", seed_claims().sign());

    let before = now_stamp();
    let resp = post(
        &gateway,
        "/v2/service_instances",
        Some(&bearer),
        &[("host", "example.org")],
        SEED_BODY,
    )
    .await;
    let after = now_stamp();

    assert_created(
        &resp,
        &Expected {
            name: "my-service-instance",
            tags: "[]",
            credentials: BROKER_CREDENTIALS,
            gateway_data: BROKER_CONFIGURATION,
            dashboard_url: &format!("\"{BROKER_DASHBOARD}\""),
        },
        &before,
        &after,
    );
    // The broker's configuration reaches the client byte for byte.
    assert!(
        resp.text()
            .contains(&format!(r#""gateway_data":{BROKER_CONFIGURATION}"#)),
        "{resp:?}"
    );
    let request_id = resp.header("x-vcap-request-id").expect("X-VCAP-Request-ID");
    assert_uuid(&request_id);
    assert_eq!(broker.provision_count(), 1);
}

#[tokio::test]
async fn default_broker_answer_is_returned_as_credentials_gateway_data_and_dashboard() {
    let (broker, gateway) = start().await;
    let entity = created_entity(&create_ok(&gateway, create_body("from-broker")).await);
    // The mock's Ok answer (compared as values: its key order is serde_json's business).
    assert_eq!(
        entity["credentials"],
        json!({"host": "127.0.0.1", "port": 5002, "name": "svc-1"})
    );
    assert_eq!(
        entity["gateway_data"],
        json!({"plan": "free", "version": "1.0"})
    );
    assert_eq!(
        entity["dashboard_url"],
        "http://dashboard.example.com/svc-1"
    );
    assert_eq!(broker.issued_ids(), ["svc-1"]);
}

#[tokio::test]
async fn given_tags_are_echoed_in_order() {
    let (_broker, gateway) = start().await;
    let mut body = create_body("tagged");
    body["tags"] = json!(["mysql", "relational", "mysql"]);
    let entity = created_entity(&create_ok(&gateway, &body).await);
    assert_eq!(entity["tags"], json!(["mysql", "relational", "mysql"]));
}

#[tokio::test]
async fn name_is_trimmed_in_the_reply_and_the_broker_request() {
    let (broker, gateway) = start().await;
    let entity = created_entity(&create_ok(&gateway, create_body("  \t padded-name \n ")).await);
    assert_eq!(entity["name"], "padded-name");
    assert_eq!(only_provision(&broker).json()["name"], "padded-name");
}

// ---------------------------------------------------------------------------------------------
// 2. The v1 request on the wire
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn v1_request_on_the_wire_is_exact() {
    let (broker, gateway) = start().await;
    let bearer_token = token::valid_token();
    let resp = create_as(&gateway, &bearer_token, create_body("wire-instance")).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    let client_request_id = resp.header("x-vcap-request-id").expect("request id");

    let req = only_provision(&broker);
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, CONFIGURATIONS_PATH);
    assert_eq!(req.path, "/gateway/v1/configurations");
    assert_eq!(req.header_all("content-type"), ["application/json"]);
    assert_eq!(req.header_all("accept"), ["application/json"]);
    assert_eq!(req.header_all("x-vcap-service-token"), [BROKER_TOKEN]);
    assert_eq!(req.header_all("x-vcap-request-id"), [client_request_id]);
    assert_eq!(
        req.header("authorization"),
        None,
        "the bearer token stays here"
    );
    assert_eq!(
        req.header("content-length"),
        Some(req.body.len().to_string())
    );

    let identity = req
        .header("x-broker-api-originating-identity")
        .expect("X-Broker-API-Originating-Identity");
    let encoded = identity
        .strip_prefix("cloudfoundry ")
        .unwrap_or_else(|| panic!("not 'cloudfoundry <base64>': {identity:?}"));
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("standard base64");
    let decoded: Value = serde_json::from_slice(&decoded).expect("base64 of JSON");
    assert_eq!(decoded, json!({"user_id": DEFAULT_USER_ID}));

    let body = members(&req.body_str());
    assert_eq!(keys(&body), V1_KEYS, "{:?}", req.body_str());
    assert_eq!(value(&body, "label"), json!("echo-1.0"));
    assert_eq!(value(&body, "email"), json!(DEFAULT_EMAIL));
    assert_eq!(value(&body, "plan"), json!("free"));
    assert_eq!(value(&body, "version"), json!("1.0"));
    assert_eq!(value(&body, "provider"), json!("core"));
    assert_eq!(value(&body, "space_guid"), json!(SPACE_GUID));
    assert_eq!(value(&body, "organization_guid"), json!(ORG_GUID));
    assert_eq!(value(&body, "unique_id"), json!("echo-free"));
    assert_eq!(value(&body, "name"), json!("wire-instance"));
}

#[tokio::test]
async fn v1_request_carries_plan_option_and_parameters_when_given() {
    let (broker, gateway) = start().await;
    let mut body = create_body("with-options");
    body["gateway_data"] = json!({"size": "big", "nodes": 3});
    body["parameters"] = json!({"a": {"b": [1, 2]}, "flag": true});
    let resp = create_ok(&gateway, &body).await;
    assert_eq!(resp.status, 201, "{resp:?}");

    let req = only_provision(&broker);
    let sent = members(&req.body_str());
    let mut expected_keys = V1_KEYS.to_vec();
    expected_keys.extend(["plan_option", "parameters"]);
    assert_eq!(keys(&sent), expected_keys, "{:?}", req.body_str());
    assert_eq!(
        value(&sent, "plan_option"),
        json!({"size": "big", "nodes": 3})
    );
    assert_eq!(
        value(&sent, "parameters"),
        json!({"a": {"b": [1, 2]}, "flag": true})
    );
}

#[tokio::test]
async fn v1_request_plan_option_may_be_any_json() {
    let (broker, gateway) = start().await;
    let mut body = create_body("string-option");
    body["gateway_data"] = json!("CONFIGURATION");
    assert_eq!(create_ok(&gateway, &body).await.status, 201);
    let sent = members(&only_provision(&broker).body_str());
    assert_eq!(value(&sent, "plan_option"), json!("CONFIGURATION"));
    assert!(!keys(&sent).contains(&"parameters"));
}

#[tokio::test]
async fn v1_request_email_is_null_for_a_token_without_email() {
    let (broker, gateway) = start().await;
    let no_email = Claims::new().remove("email").sign();
    let resp = create_as(&gateway, &no_email, create_body("no-email")).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    let sent = members(&only_provision(&broker).body_str());
    assert_eq!(keys(&sent), V1_KEYS);
    assert_eq!(raw(&sent, "email"), "null");
}

// ---------------------------------------------------------------------------------------------
// 3. X-VCAP-Request-ID
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn client_request_id_is_sanitised_suffixed_and_forwarded() {
    let (broker, gateway) = start().await;
    let bearer = format!("bearer {}", token::valid_token());
    let resp = post(
        &gateway,
        "/v2/service_instances",
        Some(&bearer),
        &[("x-vcap-request-id", "abc/def<>")],
        create_body("with-request-id"),
    )
    .await;
    assert_eq!(resp.status, 201, "{resp:?}");
    let id = resp.header("x-vcap-request-id").expect("request id");
    let suffix = id
        .strip_prefix("abcdef::")
        .unwrap_or_else(|| panic!("not abcdef::<uuid>: {id:?}"));
    assert_uuid(suffix);
    assert_eq!(
        only_provision(&broker).header_all("x-vcap-request-id"),
        [id]
    );
}

#[tokio::test]
async fn request_id_is_a_fresh_uuid_without_a_client_value() {
    let (broker, gateway) = start().await;
    let first = create_ok(&gateway, create_body("fresh-1")).await;
    let second = create_ok(&gateway, create_body("fresh-2")).await;
    let one = first.header("x-vcap-request-id").expect("request id");
    let two = second.header("x-vcap-request-id").expect("request id");
    assert_uuid(&one);
    assert_uuid(&two);
    assert_ne!(one, two);
    let sent: Vec<String> = broker
        .provision_requests()
        .iter()
        .map(|r| r.header("x-vcap-request-id").expect("forwarded"))
        .collect();
    assert_eq!(sent, [one, two]);
}

// ---------------------------------------------------------------------------------------------
// 4. Request validation (never a broker call)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn missing_fields_are_all_listed_in_cc_order() {
    let (broker, gateway) = start().await;
    let resp = create_ok(&gateway, json!({"tags": ["x"]})).await;
    assert_parse_error(
        &resp,
        "Field: name, Error: Missing field name, \
         Field: space_guid, Error: Missing field space_guid, \
         Field: service_plan_guid, Error: Missing field service_plan_guid",
    );
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn parameters_that_are_not_an_object_are_a_parse_error() {
    let (broker, gateway) = start().await;
    let mut body = create_body("bad-parameters");
    body["parameters"] = json!("foo");
    let resp = create_ok(&gateway, &body).await;
    assert_parse_error(
        &resp,
        "Field: parameters, Error: Expected instance of Hash, given an instance of String",
    );
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn malformed_json_is_a_parse_error() {
    let (broker, gateway) = start().await;
    let resp = create_ok(&gateway, r#"{"name": "x", "space_guid": "#).await;
    assert_some_parse_error(&resp);
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn json_that_is_not_an_object_is_a_400_parse_error() {
    let (broker, gateway) = start().await;
    for body in [
        r#"["a", "b"]"#,
        r#""a string""#,
        "42",
        "3.5",
        "true",
        "null",
    ] {
        let resp = create_ok(&gateway, body).await;
        assert_some_parse_error(&resp);
    }
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn empty_body_is_a_parse_error() {
    let (broker, gateway) = start().await;
    let resp = create_ok(&gateway, "").await;
    assert_some_parse_error(&resp);
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn invalid_accepts_incomplete_is_10004() {
    let (broker, gateway) = start().await;
    let bearer = format!("bearer {}", token::valid_token());
    let resp = post(
        &gateway,
        "/v2/service_instances?accepts_incomplete=lol",
        Some(&bearer),
        &[],
        create_body("incomplete-lol"),
    )
    .await;
    assert_cc_error(
        &resp,
        400,
        10004,
        "CF-InvalidRequest",
        "The request is invalid",
    );
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn accepts_incomplete_true_and_false_give_201() {
    let (broker, gateway) = start().await;
    let bearer = format!("bearer {}", token::valid_token());
    for flag in ["true", "false"] {
        let path = format!("/v2/service_instances?accepts_incomplete={flag}");
        let body = create_body(&format!("incomplete-{flag}"));
        let resp = post(&gateway, &path, Some(&bearer), &[], body).await;
        assert_eq!(resp.status, 201, "accepts_incomplete={flag}: {resp:?}");
        assert_eq!(
            resp.json()["entity"]["last_operation"]["state"],
            "succeeded"
        );
    }
    assert_eq!(broker.provision_count(), 2);
}

#[tokio::test]
async fn unknown_plan_without_upstream_is_60003() {
    let (broker, gateway) = start().await;
    let mut body = create_body("unknown-plan");
    body["service_plan_guid"] = json!("bad-guid");
    let resp = create_ok(&gateway, &body).await;
    assert_cc_error(
        &resp,
        400,
        60003,
        "CF-ServiceInstanceInvalid",
        "The service instance is invalid: not a valid service plan",
    );
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn unknown_space_is_60003() {
    let (broker, gateway) = start().await;
    let mut body = create_body("unknown-space");
    body["space_guid"] = json!("no-such-space");
    let resp = create_ok(&gateway, &body).await;
    assert_cc_error(
        &resp,
        400,
        60003,
        "CF-ServiceInstanceInvalid",
        "The service instance is invalid: not a valid space",
    );
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn unknown_space_is_accepted_when_configured_with_a_null_organization() {
    let (broker, gateway) = start_with(|c| c.accept_unknown_spaces(true)).await;
    let mut body = create_body("elsewhere");
    body["space_guid"] = json!("11111111-2222-3333-4444-555555555555");
    let entity = created_entity(&create_ok(&gateway, &body).await);
    assert_eq!(entity["space_guid"], "11111111-2222-3333-4444-555555555555");
    assert_eq!(
        entity["space_url"],
        "/v2/spaces/11111111-2222-3333-4444-555555555555"
    );
    let sent = members(&only_provision(&broker).body_str());
    assert_eq!(keys(&sent), V1_KEYS);
    assert_eq!(raw(&sent, "organization_guid"), "null");
    assert_eq!(
        value(&sent, "space_guid"),
        json!("11111111-2222-3333-4444-555555555555")
    );
}

#[tokio::test]
async fn blank_name_is_60001() {
    let (broker, gateway) = start().await;
    let resp = create_ok(&gateway, create_body("   ")).await;
    assert_cc_error(
        &resp,
        400,
        60001,
        "CF-ServiceInstanceNameEmpty",
        "Service instance name is required.",
    );
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn name_of_256_characters_is_60009() {
    let (broker, gateway) = start().await;
    let resp = create_ok(&gateway, create_body(&"s".repeat(256))).await;
    let description = cc_error_description(&resp, 400, 60009, "CF-ServiceInstanceNameTooLong");
    assert!(description.contains("255"), "{description}");
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn name_of_255_characters_is_accepted() {
    let (broker, gateway) = start().await;
    let name = "s".repeat(255);
    let entity = created_entity(&create_ok(&gateway, create_body(&name)).await);
    assert_eq!(entity["name"], name.as_str());
    assert_eq!(only_provision(&broker).json()["name"], name.as_str());
}

#[tokio::test]
async fn tags_longer_than_2048_characters_combined_are_60015() {
    let (broker, gateway) = start().await;
    let mut body = create_body("long-tags");
    body["tags"] = json!(["a".repeat(1024), "b".repeat(1025)]);
    let resp = create_ok(&gateway, &body).await;
    assert_cc_error(
        &resp,
        400,
        60015,
        "CF-ServiceInstanceTagsTooLong",
        "Combined length of tags for service long-tags must be 2048 characters or less.",
    );
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn tags_of_exactly_2048_characters_combined_are_accepted() {
    let (_broker, gateway) = start().await;
    let mut body = create_body("max-tags");
    body["tags"] = json!(["a".repeat(1024), "b".repeat(1024)]);
    let entity = created_entity(&create_ok(&gateway, &body).await);
    assert_eq!(entity["tags"], body["tags"]);
}

#[tokio::test]
async fn null_fields_are_treated_as_absent() {
    let (broker, gateway) = start().await;
    let mut body = create_body("nulls");
    body["parameters"] = Value::Null;
    body["tags"] = Value::Null;
    body["gateway_data"] = Value::Null;
    let entity = created_entity(&create_ok(&gateway, &body).await);
    assert_eq!(entity["tags"], json!([]));
    let sent = members(&only_provision(&broker).body_str());
    assert_eq!(keys(&sent), V1_KEYS, "no plan_option or parameters");

    // A null required field is a missing one.
    let mut body = create_body("ignored");
    body["name"] = Value::Null;
    let resp = create_ok(&gateway, &body).await;
    assert_parse_error(&resp, "Field: name, Error: Missing field name");
    assert_eq!(broker.provision_count(), 1);
}

#[tokio::test]
async fn unknown_keys_are_ignored() {
    let (broker, gateway) = start().await;
    let mut body = create_body("unknown-keys");
    body["colour"] = json!("blue");
    body["nested"] = json!({"deep": [1, {"x": null}]});
    let entity = created_entity(&create_ok(&gateway, &body).await);
    assert_eq!(entity["name"], "unknown-keys");
    let sent = members(&only_provision(&broker).body_str());
    assert_eq!(keys(&sent), V1_KEYS, "unknown keys are not forwarded");
}

#[tokio::test]
async fn name_and_tags_are_limited_in_characters_not_bytes() {
    let (broker, gateway) = start().await;
    let name = "é".repeat(255); // 510 bytes
    let mut body = create_body(&name);
    body["tags"] = json!(["ü".repeat(2048)]); // 4096 bytes
    let entity = created_entity(&create_ok(&gateway, &body).await);
    assert_eq!(entity["name"], name.as_str());
    assert_eq!(only_provision(&broker).json()["name"], name.as_str());
}

#[tokio::test]
async fn body_is_checked_before_accepts_incomplete() {
    let (broker, gateway) = start().await;
    let bearer = format!("bearer {}", token::valid_token());
    let path = "/v2/service_instances?accepts_incomplete=lol";
    let resp = post(&gateway, path, Some(&bearer), &[], "{not json").await;
    assert_some_parse_error(&resp);
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn accepts_incomplete_is_checked_before_the_plan() {
    let (broker, gateway) = start().await;
    let bearer = format!("bearer {}", token::valid_token());
    let mut body = create_body("lol-and-bad-plan");
    body["service_plan_guid"] = json!("bad-guid");
    let path = "/v2/service_instances?accepts_incomplete=lol";
    let resp = post(&gateway, path, Some(&bearer), &[], &body).await;
    assert_cc_error(
        &resp,
        400,
        10004,
        "CF-InvalidRequest",
        "The request is invalid",
    );
    assert_no_broker_call(&broker);
}

// ---------------------------------------------------------------------------------------------
// 5. Authentication, scope and the order of checks
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn missing_authorization_is_401_not_authenticated() {
    let (broker, gateway) = start().await;
    let resp = post(
        &gateway,
        "/v2/service_instances",
        None,
        &[],
        create_body("anon"),
    )
    .await;
    assert_auth_error(&resp, 401, NOT_AUTHENTICATED);
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn basic_authorization_is_401_not_authenticated() {
    let (broker, gateway) = start().await;
    let resp = post(
        &gateway,
        "/v2/service_instances",
        Some("Basic dXNlcjpwYXNzd29yZA=="),
        &[],
        create_body("basic"),
    )
    .await;
    assert_auth_error(&resp, 401, NOT_AUTHENTICATED);
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn token_with_a_bad_signature_is_401_invalid_auth_token() {
    assert_token_rejected(|c| c, &Claims::new().sign_with_secret("not-the-secret")).await;
}

#[tokio::test]
async fn expired_token_is_401_invalid_auth_token() {
    assert_token_rejected(|c| c, &Claims::new().expires_in(-600).sign()).await;
}

#[tokio::test]
async fn token_for_another_audience_is_401_invalid_auth_token() {
    let token = Claims::new().set("aud", json!(["uaa", "openid"])).sign();
    assert_token_rejected(|c| c, &token).await;
}

#[tokio::test]
async fn token_from_another_issuer_is_401_invalid_auth_token() {
    let issuer = "https://uaa.example.com/oauth/token";
    let (broker, gateway) = start_with(|c| c.issuer(issuer)).await;
    let other = Claims::new()
        .set("iss", "https://evil.example.com/oauth/token")
        .sign();
    let resp = create_as(&gateway, &other, create_body("other-issuer")).await;
    assert_auth_error(&resp, 401, INVALID_AUTH_TOKEN);
    assert_no_broker_call(&broker);

    // The configured issuer itself is accepted.
    let right = Claims::new().set("iss", issuer).sign();
    let resp = create_as(&gateway, &right, create_body("right-issuer")).await;
    assert_eq!(resp.status, 201, "{resp:?}");
}

#[tokio::test]
async fn unsigned_alg_none_token_is_401_invalid_auth_token() {
    assert_token_rejected(|c| c, &token::alg_none_token(&token::default_claims())).await;
}

#[tokio::test]
async fn token_with_a_string_exp_is_401_invalid_auth_token() {
    let token = Claims::new()
        .set("exp", (token::now() + 600).to_string())
        .sign();
    assert_token_rejected(|c| c, &token).await;
}

#[tokio::test]
async fn garbage_token_is_401_invalid_auth_token() {
    assert_token_rejected(|c| c, "garbage").await;
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let (broker, gateway) = start().await;
    let token = token::valid_token();
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let authorization = format!("{scheme} {token}");
        let body = create_body(&format!("scheme-{scheme}"));
        let resp = post(
            &gateway,
            "/v2/service_instances",
            Some(&authorization),
            &[],
            body,
        )
        .await;
        assert_eq!(resp.status, 201, "{scheme}: {resp:?}");
    }
    assert_eq!(broker.provision_count(), 3);
}

#[tokio::test]
async fn read_only_scope_is_403_insufficient_scope() {
    let (broker, gateway) = start().await;
    let read_only = Claims::new().scopes(&["cloud_controller.read"]).sign();
    let resp = create_as(&gateway, &read_only, create_body("read-only")).await;
    assert_cc_error(
        &resp,
        403,
        10007,
        "CF-InsufficientScope",
        "Your token lacks the necessary scopes to access this resource.",
    );
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn write_scope_without_admin_is_201() {
    let (broker, gateway) = start().await;
    let writer = Claims::new()
        .scopes(&["cloud_controller.read", "cloud_controller.write"])
        .sign();
    let resp = create_as(&gateway, &writer, create_body("writer")).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(broker.provision_count(), 1);
}

#[tokio::test]
async fn client_id_stands_in_for_a_missing_user_id() {
    let (broker, gateway) = start().await;
    let client_token = Claims::new()
        .remove("user_id")
        .remove("email")
        .set("client_id", "cf-automation")
        .sign();
    let resp = create_as(&gateway, &client_token, create_body("client-token")).await;
    assert_eq!(resp.status, 201, "{resp:?}");

    let req = only_provision(&broker);
    let identity = req
        .header("x-broker-api-originating-identity")
        .expect("originating identity");
    let encoded = identity.strip_prefix("cloudfoundry ").expect("prefix");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64");
    let decoded: Value = serde_json::from_slice(&decoded).expect("JSON");
    assert_eq!(decoded, json!({"user_id": "cf-automation"}));
    assert_eq!(raw(&members(&req.body_str()), "email"), "null");
}

#[tokio::test]
async fn token_without_user_id_or_client_id_is_401_invalid_auth_token() {
    let token = Claims::new().remove("user_id").remove("client_id").sign();
    assert_token_rejected(|c| c, &token).await;
}

#[tokio::test]
async fn bad_token_for_an_unknown_plan_gets_401_even_with_an_upstream() {
    let upstream = MockUpstream::start().await;
    let upstream_url = upstream.url();
    let (broker, gateway) = start_with(|c| c.upstream(&upstream_url).static_authorization()).await;
    let mut body = create_body("passed-through");
    body["service_plan_guid"] = json!("a-plan-the-real-cc-serves");

    let bad = Claims::new().sign_with_secret("not-the-secret");
    let resp = create_as(&gateway, &bad, &body).await;
    assert_auth_error(&resp, 401, INVALID_AUTH_TOKEN);
    let resp = post(&gateway, "/v2/service_instances", None, &[], &body).await;
    assert_auth_error(&resp, 401, NOT_AUTHENTICATED);
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
    assert_no_broker_call(&broker);

    // Control: with a valid token the same request does reach the upstream.
    let resp = create_ok(&gateway, &body).await;
    assert_eq!(resp.json()["from"], "upstream", "{resp:?}");
    assert_eq!(upstream.requests().len(), 1);
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn plan_is_checked_before_scope() {
    let (broker, gateway) = start().await;
    let read_only = Claims::new().scopes(&["cloud_controller.read"]).sign();
    let mut body = create_body("read-only-bad-plan");
    body["service_plan_guid"] = json!("bad-guid");
    let resp = create_as(&gateway, &read_only, &body).await;
    assert_cc_error(
        &resp,
        400,
        60003,
        "CF-ServiceInstanceInvalid",
        "The service instance is invalid: not a valid service plan",
    );
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn space_is_checked_before_scope() {
    let (broker, gateway) = start().await;
    let read_only = Claims::new().scopes(&["cloud_controller.read"]).sign();
    let mut body = create_body("read-only-bad-space");
    body["space_guid"] = json!("no-such-space");
    let resp = create_as(&gateway, &read_only, &body).await;
    assert_cc_error(
        &resp,
        400,
        60003,
        "CF-ServiceInstanceInvalid",
        "The service instance is invalid: not a valid space",
    );
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn scope_is_checked_before_the_name_rules() {
    let (broker, gateway) = start().await;
    let read_only = Claims::new().scopes(&["cloud_controller.read"]).sign();
    let resp = create_as(&gateway, &read_only, create_body("   ")).await;
    cc_error_description(&resp, 403, 10007, "CF-InsufficientScope");
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn authentication_is_checked_before_the_body() {
    let (broker, gateway) = start().await;
    let forged = Claims::new().sign_with_secret("not-the-secret");
    let resp = create_as(&gateway, &forged, "{not json").await;
    assert_auth_error(&resp, 401, INVALID_AUTH_TOKEN);
    assert_no_broker_call(&broker);
}

#[tokio::test]
async fn rs256_token_verifies_with_a_configured_public_key() {
    let key = token::rsa_public_key_path();
    let (broker, gateway) = start_with(|c| c.public_key_files([key])).await;
    let rs256 = Claims::new().sign_rs256(None);
    let resp = create_as(&gateway, &rs256, create_body("rs256")).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(broker.provision_count(), 1);
}

#[tokio::test]
async fn rs256_token_from_an_unknown_key_is_401_invalid_auth_token() {
    let key = token::rsa_public_key_path();
    let other = token::sign_rs256_other_key(&token::default_claims(), None);
    assert_token_rejected(|c| c.public_key_files([key]), &other).await;
}

#[tokio::test]
async fn hs256_token_signed_with_the_rsa_public_key_is_401_invalid_auth_token() {
    let key = token::rsa_public_key_path();
    let pem = std::fs::read(&key).expect("read the RSA public key");
    let confused = Claims::new().sign_with_secret(&pem);
    assert_token_rejected(|c| c.public_key_files([key]), &confused).await;
}

// ---------------------------------------------------------------------------------------------
// 6. Tokens and secrets never leak
// ---------------------------------------------------------------------------------------------

/// Runs requests that succeed, fail auth, fail validation and fail at the broker on a gateway
/// built by `configure`; no bearer token (nor its signature) and no broker token may appear in
/// any answer or in the gateway's stdout/stderr.
async fn assert_tokens_never_leak(configure: impl FnOnce(GatewayConfig) -> GatewayConfig) {
    let (broker, gateway) = start_with(configure).await;
    let valid = token::valid_token();
    let expired = Claims::new().expires_in(-600).sign();
    let forged = Claims::new().sign_with_secret("not-the-secret");
    let read_only = Claims::new().scopes(&["cloud_controller.read"]).sign();

    let mut responses = vec![
        create_as(&gateway, &valid, create_body("leak-ok")).await,
        create_as(&gateway, &expired, create_body("leak-expired")).await,
        create_as(&gateway, &forged, create_body("leak-forged")).await,
        create_as(&gateway, &read_only, create_body("leak-read-only")).await,
        create_as(&gateway, &valid, json!({"name": 5})).await,
        create_as(&gateway, &valid, create_body("leak-ok")).await, // name taken
    ];
    broker.set_mode(Mode::error(500, 12345, "This is what really happened."));
    responses.push(create_as(&gateway, &valid, create_body("leak-500")).await);
    broker.set_mode(Mode::error(403, 30100, "Not authorized"));
    responses.push(create_as(&gateway, &valid, create_body("leak-403")).await);
    broker.set_mode(Mode::raw(200, "not json", "text/plain"));
    responses.push(create_as(&gateway, &valid, create_body("leak-malformed")).await);

    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [201, 401, 401, 403, 400, 400, 502, 502, 502],
        "{responses:?}"
    );

    let secrets: Vec<&str> = [&valid, &expired, &forged, &read_only]
        .into_iter()
        .flat_map(|t| [t.as_str(), t.rsplit('.').next().expect("signature")])
        .chain([BROKER_TOKEN])
        .collect();
    for resp in &responses {
        let text = resp.text();
        for secret in &secrets {
            assert!(!text.contains(secret), "{secret:?} leaked into {resp:?}");
        }
        for (name, v) in &resp.headers {
            for secret in &secrets {
                assert!(!v.contains(secret), "{secret:?} leaked into header {name}");
            }
        }
    }

    // The log does record the requests (so this is the right place to look)...
    let request_id = responses[0]
        .header("x-vcap-request-id")
        .expect("request id");
    let logged = support::wait_until(std::time::Duration::from_secs(5), || {
        (gateway.stdout() + &gateway.stderr()).contains(&request_id)
    })
    .await;
    let logs = gateway.stdout() + &gateway.stderr();
    assert!(logged, "the request log names the request id:\n{logs}");
    // ...and never a token or the broker secret.
    for secret in &secrets {
        if let Some(line) = logs.lines().find(|l| l.contains(secret)) {
            panic!("{secret:?} leaked into the logs: {line}");
        }
    }
}

#[tokio::test]
async fn tokens_never_appear_in_logs_or_error_bodies() {
    assert_tokens_never_leak(|c| c).await;
}

#[tokio::test]
async fn tokens_never_appear_in_debug_logs() {
    assert_tokens_never_leak(|c| c.env("RUST_LOG", "debug")).await;
}

#[tokio::test]
async fn tokens_never_appear_in_trace_logs() {
    assert_tokens_never_leak(|c| c.env("RUST_LOG", "trace")).await;
}

#[tokio::test]
async fn a_plan_restricted_to_other_organizations_is_403_60010_with_no_broker_call() {
    const RESTRICTED: &str = "0b6a3e4c-7f0e-4c59-9f0a-3c1d2e5b6a70";
    const OPEN_TO_SEED_ORG: &str = "5c2d7e91-1a4b-4f6e-8d3c-2b9a0f1e4d57";
    let (broker, gateway) = start_with(|c| {
        c.extra_toml(&format!(
            r#"[[plans]]
guid = "{RESTRICTED}"
broker = "echo"
label = "echo"
version = "1.0"
provider = "core"
name = "private"
unique_id = "echo-private"
public = false
organizations = ["another-org"]

[[plans]]
guid = "{OPEN_TO_SEED_ORG}"
broker = "echo"
label = "echo"
version = "1.0"
provider = "core"
name = "partner"
unique_id = "echo-partner"
public = false
organizations = ["another-org", "{ORG_GUID}"]
"#
        ))
    })
    .await;
    let mut body = create_body("restricted");
    body["service_plan_guid"] = json!(RESTRICTED);
    let resp = create_ok_or(&gateway, body.clone()).await;
    assert_cc_error(
        &resp,
        403,
        60010,
        "CF-ServiceInstanceOrganizationNotAuthorized",
        "A service instance for the selected plan cannot be created in this organization. The plan is visible because another organization you belong to has access to it.",
    );
    assert_no_broker_call(&broker);
    // An admin is held to the plan's visibility too.
    let admin = Claims::new().scopes(&["cloud_controller.admin"]).sign();
    let resp = create_as(&gateway, &admin, body).await;
    assert_eq!(resp.status, 403, "{resp:?}");
    assert_no_broker_call(&broker);

    let mut body = create_body("partner");
    body["service_plan_guid"] = json!(OPEN_TO_SEED_ORG);
    let resp = create_ok_or(&gateway, body).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(only_provision(&broker).json()["plan"], "partner");
}

/// A create with the seed writer's token, whatever it answers.
async fn create_ok_or(gateway: &Gateway, body: Value) -> Response {
    create_as(gateway, &token::valid_token(), body).await
}
