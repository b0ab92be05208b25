//! Tokens verified with keys a UAA publishes: the real binary with `[auth] uaa_url` pointing
//! at a fake UAA on loopback (discovery + `/token_keys`). Covers key discovery, rotation,
//! single-flight and rate-limited refreshes, a UAA that is down at start, the issuer from
//! discovery, and the JWT attacks and claim checks of the Cloud Controller's token decoder.

mod support;

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use support::broker::MockBroker;
use support::cc;
use support::client::{self, create, create_body, Response, FORM_CONTENT_TYPE};
use support::gateway::{Gateway, GatewayConfig, BROKER_TOKEN};
use support::token::{self, Claims};
use support::uaa::{ec_jwk, rsa_jwk, rsa_other_jwk, FakeUaa, KEY_1, TOKEN_KEYS_PATH};

const INVALID_AUTH_TOKEN: &str =
    r#"{"code":1000,"description":"Invalid Auth Token","error_code":"CF-InvalidAuthToken"}"#;
const NOT_AUTHENTICATED: &str =
    r#"{"code":10002,"description":"Authentication error","error_code":"CF-NotAuthenticated"}"#;

/// The refresh interval most tests run with: short, so they need not wait long.
const INTERVAL_SECONDS: u64 = 1;

struct Env {
    broker: MockBroker,
    uaa: FakeUaa,
    gateway: Gateway,
}

/// A broker, a fake UAA (changed by `before` before the gateway starts), and a gateway whose
/// only keys come from that UAA, refreshed at most every `interval` seconds.
async fn start_with(
    interval: u64,
    before: impl FnOnce(&FakeUaa),
    configure: impl FnOnce(GatewayConfig) -> GatewayConfig,
) -> Env {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let uaa = FakeUaa::start().await;
    before(&uaa);
    let config = GatewayConfig::new(&broker.url())
        .symmetric_secrets(&[])
        .env("BROKERGATE__AUTH__UAA_URL", &uaa.url())
        .env(
            "BROKERGATE__AUTH__KEY_REFRESH_MIN_INTERVAL_SECONDS",
            &interval.to_string(),
        );
    let gateway = Gateway::start(configure(config)).await;
    Env {
        broker,
        uaa,
        gateway,
    }
}

async fn start() -> Env {
    start_with(INTERVAL_SECONDS, |_| {}, |c| c).await
}

/// Default admin claims with UAA's issuer.
fn claims(uaa: &FakeUaa) -> Claims {
    Claims::new().set("iss", uaa.issuer())
}

/// RS256 with `keys/rsa_private.pem`, published as [`KEY_1`].
fn key1_token(uaa: &FakeUaa) -> String {
    claims(uaa).sign_rs256(Some(KEY_1))
}

async fn create_as(env: &Env, token: &str, name: &str) -> Response {
    create(&env.gateway.url(), Some(token), create_body(name)).await
}

/// A create for a plan brokergate does not serve: 400 60003 once authentication passed, and
/// neither the broker nor the store is involved.
async fn create_unknown_plan(gateway_url: &str, token: &str) -> Response {
    let mut body = create_body("unknown-plan");
    body["service_plan_guid"] = json!("a-plan-nobody-serves");
    create(gateway_url, Some(token), &body).await
}

/// A CC error ([`cc::assert_cc_error_shape`]) with this body, byte for byte (but for a final
/// newline).
fn assert_auth_error(resp: &Response, status: u16, exact_body: &str) {
    cc::assert_cc_error_shape(resp, status);
    assert_eq!(resp.text().trim_end_matches('\n'), exact_body, "{resp:?}");
}

fn assert_invalid_token(resp: &Response) {
    assert_auth_error(resp, 401, INVALID_AUTH_TOKEN);
}

fn assert_passed_auth(resp: &Response) {
    assert_eq!(resp.status, 400, "{resp:?}");
    assert_eq!(resp.json()["code"], 60003, "{resp:?}");
}

/// The token is refused with 401 InvalidAuthToken and the broker never hears of it.
async fn assert_refused(env: &Env, token: &str) {
    let resp = create_as(env, token, "refused").await;
    assert_invalid_token(&resp);
    assert_eq!(env.broker.provision_count(), 0);
}

/// Past the refresh interval since the last fetch.
async fn after_interval(seconds: u64) {
    tokio::time::sleep(Duration::from_millis(seconds * 1000 + 200)).await;
}

// ---------------------------------------------------------------------------------------------
// Keys from UAA
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn rs256_and_es256_tokens_verify_with_keys_from_token_keys() {
    let env = start_with(
        INTERVAL_SECONDS,
        |uaa| uaa.publish(vec![rsa_jwk(KEY_1), ec_jwk("ec-1")]),
        |c| c,
    )
    .await;
    let resp = create_as(&env, &key1_token(&env.uaa), "rs256").await;
    assert_eq!(resp.status, 201, "{resp:?}");
    let es256 = claims(&env.uaa).sign_es256(Some("ec-1"));
    let resp = create_as(&env, &es256, "es256").await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(env.broker.provision_count(), 2);
    // One read of each document served both.
    assert_eq!(env.uaa.token_keys_fetches(), 1);
    assert_eq!(env.uaa.discovery_fetches(), 1);
}

#[tokio::test]
async fn rotation_new_kid_after_one_fetch_and_removed_kid_rejected_even_if_cached() {
    let env = start().await;
    let old = key1_token(&env.uaa);
    let resp = create_as(&env, &old, "before-rotation").await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(env.uaa.token_keys_fetches(), 1);

    after_interval(INTERVAL_SECONDS).await;
    env.uaa.publish(vec![rsa_other_jwk("key-2")]);
    let new = token::sign_rs256_other_key(claims(&env.uaa).value(), Some("key-2"));
    let resp = create_as(&env, &new, "after-rotation").await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(env.uaa.token_keys_fetches(), 2, "one fetch for the new kid");

    // The same token string was verified (and cached) before: the refresh dropped both.
    let resp = create_as(&env, &old, "old-cached").await;
    assert_invalid_token(&resp);
    let resp = create_as(&env, &key1_token(&env.uaa), "old-fresh").await;
    assert_invalid_token(&resp);
    assert_eq!(env.broker.provision_count(), 2);
}

#[tokio::test]
async fn a_thousand_concurrent_requests_with_a_new_kid_make_one_fetch() {
    let env = start().await;
    let resp = create_unknown_plan(&env.gateway.url(), &key1_token(&env.uaa)).await;
    assert_passed_auth(&resp);
    assert_eq!(env.uaa.token_keys_fetches(), 1);

    after_interval(INTERVAL_SECONDS).await;
    env.uaa
        .publish(vec![rsa_jwk(KEY_1), rsa_other_jwk("key-2")]);
    // A slow answer keeps the fetch in flight while the requests pile up behind it.
    env.uaa.set_token_keys_delay(Duration::from_millis(500));
    let new = token::sign_rs256_other_key(claims(&env.uaa).value(), Some("key-2"));
    let url = env.gateway.url();
    let requests: Vec<_> = (0..1000)
        .map(|_| {
            let (url, new) = (url.clone(), new.clone());
            tokio::spawn(async move { create_unknown_plan(&url, &new).await })
        })
        .collect();
    for r in requests {
        // Every one passes: none was turned away while the fetch ran.
        assert_passed_auth(&r.await.unwrap());
    }
    assert_eq!(
        env.uaa.token_keys_fetches(),
        2,
        "exactly one fetch for 1,000 requests"
    );
}

#[tokio::test]
async fn uaa_down_at_start_then_up() {
    let env = start_with(INTERVAL_SECONDS, |uaa| uaa.set_down(true), |c| c).await;
    // The gateway is listening although UAA is unreachable, and says why tokens fail.
    let token = key1_token(&env.uaa);
    let resp = create_as(&env, &token, "while-down").await;
    assert_invalid_token(&resp);
    assert!(
        support::wait_until(Duration::from_secs(10), || env
            .gateway
            .stderr()
            .contains("UAA keys not loaded yet"))
        .await,
        "{}",
        env.gateway.stderr()
    );

    env.uaa.set_down(false);
    // The background retries (1 s backoff here) load the keys without any request.
    let fetches = env.uaa.token_keys_fetches();
    assert!(
        support::wait_until(Duration::from_secs(15), || {
            env.gateway.stderr().contains("UAA keys loaded")
                && env.uaa.token_keys_fetches() > fetches
        })
        .await,
        "{}",
        env.gateway.stderr()
    );
    let resp = create_as(&env, &token, "after-up").await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert!(!env.gateway.stderr().contains(&token), "token in the log");
    assert!(!env.gateway.stdout().contains(&token), "token in the log");
}

#[tokio::test]
async fn unknown_kid_is_rejected_without_a_fetch_storm() {
    let interval = 2;
    let env = start_with(interval, |_| {}, |c| c).await;
    assert_passed_auth(&create_unknown_plan(&env.gateway.url(), &key1_token(&env.uaa)).await);
    after_interval(interval).await;

    let before = env.uaa.token_keys_fetches();
    let started = Instant::now();
    let unknown = token::sign_rs256_other_key(claims(&env.uaa).value(), Some("key-unknown"));
    for _ in 0..30 {
        assert_invalid_token(&create_unknown_plan(&env.gateway.url(), &unknown).await);
    }
    let url = env.gateway.url();
    let burst: Vec<_> = (0..100)
        .map(|_| {
            let (url, unknown) = (url.clone(), unknown.clone());
            tokio::spawn(async move { create_unknown_plan(&url, &unknown).await })
        })
        .collect();
    for r in burst {
        assert_invalid_token(&r.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs();
    let fetches = env.uaa.token_keys_fetches() - before;
    // One refresh for the unknown kid, then at most one per interval.
    assert!(fetches >= 1, "the unknown kid caused no refresh");
    assert!(
        fetches as u64 <= 1 + elapsed / interval,
        "{fetches} fetches in {elapsed} s"
    );
}

#[tokio::test]
async fn jku_and_x5u_headers_are_never_fetched() {
    let env = start().await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("attacker-key".into());
    header.jku = Some(format!("{}/attacker/jwks", env.uaa.url()));
    header.x5u = Some(format!("{}/attacker/x5u", env.uaa.url()));
    let pem = std::fs::read(token::key_path("rsa_other_private.pem")).unwrap();
    let key = EncodingKey::from_rsa_pem(&pem).unwrap();
    let forged = token::sign_with(&header, claims(&env.uaa).value(), &key);
    assert_refused(&env, &forged).await;
    let paths: Vec<String> = env.uaa.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        paths.iter().all(|p| !p.starts_with("/attacker")),
        "{paths:?}"
    );
    assert!(paths.iter().any(|p| p == TOKEN_KEYS_PATH), "{paths:?}");
}

#[tokio::test]
async fn reload_keeps_the_uaa_keys_and_applies_new_secrets() {
    let env = start_with(
        INTERVAL_SECONDS,
        |_| {},
        |c| c.symmetric_secrets(&["first-secret"]),
    )
    .await;
    let rs256 = key1_token(&env.uaa);
    let hs_first = claims(&env.uaa).sign_with_secret("first-secret");
    assert_eq!(create_as(&env, &rs256, "rs-before").await.status, 201);
    assert_eq!(create_as(&env, &hs_first, "hs-before").await.status, 201);
    assert_eq!(env.uaa.token_keys_fetches(), 1);

    let path = env.gateway.config_path();
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains("\"first-secret\""), "{text}");
    let tmp = path.with_extension("next");
    std::fs::write(&tmp, text.replace("\"first-secret\"", "\"second-secret\"")).unwrap();
    std::fs::rename(&tmp, path).unwrap();
    let url = format!("{}/-/reload", env.gateway.admin_url());
    let resp = client::send("POST", &url, &[], Vec::new()).await;
    assert_eq!(resp.status, 200, "{resp:?}");

    // The old secret is gone, even for a token verified (and cached) before the reload.
    assert_invalid_token(&create_as(&env, &hs_first, "hs-old").await);
    let hs_second = claims(&env.uaa).sign_with_secret("second-secret");
    assert_eq!(create_as(&env, &hs_second, "hs-new").await.status, 201);
    // The UAA keys survived the reload: no new fetch was needed.
    assert_eq!(create_as(&env, &rs256, "rs-after").await.status, 201);
    let fresh = key1_token(&env.uaa);
    assert_eq!(create_as(&env, &fresh, "rs-fresh").await.status, 201);
    assert_eq!(env.uaa.token_keys_fetches(), 1);
    assert_eq!(env.uaa.discovery_fetches(), 1);
}

// ---------------------------------------------------------------------------------------------
// Issuer
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wrong_issuer_is_rejected_and_discovery_is_reread_once() {
    let env = start().await;
    let resp = create_as(&env, &key1_token(&env.uaa), "right-issuer").await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(env.uaa.discovery_fetches(), 1);

    after_interval(INTERVAL_SECONDS).await;
    let evil = Claims::new()
        .set("iss", "https://evil.example.com/oauth/token")
        .sign_rs256(Some(KEY_1));
    for _ in 0..5 {
        let resp = create_as(&env, &evil, "wrong-issuer").await;
        assert_invalid_token(&resp);
    }
    assert_eq!(
        env.uaa.discovery_fetches(),
        2,
        "re-read once, not per token"
    );

    // UAA's issuer changes: after the next re-read its tokens pass.
    after_interval(INTERVAL_SECONDS).await;
    env.uaa
        .set_issuer("https://uaa.new.example.com/oauth/token");
    let moved = claims(&env.uaa).sign_rs256(Some(KEY_1));
    let resp = create_as(&env, &moved, "moved-issuer").await;
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(env.broker.provision_count(), 2);
}

// ---------------------------------------------------------------------------------------------
// Attacks and claim checks
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn alg_none_is_rejected() {
    let env = start().await;
    let none = token::alg_none_token(claims(&env.uaa).value());
    assert_refused(&env, &none).await;
    // Control: the same claims, signed, pass.
    assert_eq!(
        create_as(&env, &key1_token(&env.uaa), "ok").await.status,
        201
    );
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_rejected() {
    let env = start().await;
    let pem = std::fs::read(token::rsa_public_key_path()).unwrap();
    let n = rsa_jwk(KEY_1)["n"].as_str().unwrap().to_string();
    for secret in [pem.as_slice(), n.as_bytes()] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(KEY_1.into());
        let forged = token::sign_with(
            &header,
            claims(&env.uaa).value(),
            &EncodingKey::from_secret(secret),
        );
        assert_refused(&env, &forged).await;
    }
}

#[tokio::test]
async fn token_for_another_audience_is_rejected() {
    let env = start().await;
    let token = claims(&env.uaa)
        .set("aud", json!(["uaa", "openid"]))
        .sign_rs256(Some(KEY_1));
    assert_refused(&env, &token).await;
}

#[tokio::test]
async fn expired_token_is_rejected() {
    let env = start().await;
    let token = claims(&env.uaa).expires_in(-1).sign_rs256(Some(KEY_1));
    assert_refused(&env, &token).await;
}

#[tokio::test]
async fn token_not_valid_before_a_future_nbf_is_rejected() {
    let env = start().await;
    let token = claims(&env.uaa)
        .set("nbf", token::now() + 300)
        .sign_rs256(Some(KEY_1));
    assert_refused(&env, &token).await;
}

#[tokio::test]
async fn exp_as_a_string_is_rejected() {
    let env = start().await;
    let token = claims(&env.uaa)
        .set("exp", (token::now() + 600).to_string())
        .sign_rs256(Some(KEY_1));
    assert_refused(&env, &token).await;
}

#[tokio::test]
async fn refresh_token_is_rejected() {
    let env = start().await;
    let token = claims(&env.uaa)
        .set("jti", "0a1b2c3d-r")
        .sign_rs256(Some(KEY_1));
    assert_refused(&env, &token).await;
}

#[tokio::test]
async fn token_without_user_id_or_client_id_is_rejected() {
    let env = start().await;
    let token = claims(&env.uaa)
        .remove("user_id")
        .remove("client_id")
        .sign_rs256(Some(KEY_1));
    assert_refused(&env, &token).await;
}

#[tokio::test]
async fn missing_write_scope_is_403_insufficient_scope() {
    let env = start().await;
    for scopes in [&["cloud_controller.read"][..], &[]] {
        let token = claims(&env.uaa).scopes(scopes).sign_rs256(Some(KEY_1));
        let resp = create_as(&env, &token, "no-write").await;
        cc::assert_cc_error(&resp, 403, 10007, "CF-InsufficientScope");
    }
    let writer = claims(&env.uaa)
        .scopes(&["cloud_controller.write"])
        .sign_rs256(Some(KEY_1));
    assert_eq!(create_as(&env, &writer, "writer").await.status, 201);
    assert_eq!(env.broker.provision_count(), 1);
}

#[tokio::test]
async fn oversized_or_garbage_tokens_are_rejected() {
    let env = start().await;
    let oversized = claims(&env.uaa)
        .set("padding", "x".repeat(20 * 1024))
        .sign_rs256(Some(KEY_1));
    assert!(oversized.len() > 16 * 1024);
    assert_refused(&env, &oversized).await;
    for garbage in ["garbage", "a.b.c", "....", "eyJhbGciOiJSUzI1NiJ9.e30."] {
        assert_refused(&env, garbage).await;
    }
    // Neither asked UAA for anything beyond the first load.
    assert_eq!(env.uaa.token_keys_fetches(), 1);
}

#[tokio::test]
async fn bearer_scheme_in_any_case_and_a_missing_token() {
    let env = start().await;
    let token = key1_token(&env.uaa);
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let headers = [
            ("content-type", FORM_CONTENT_TYPE.to_string()),
            ("authorization", format!("{scheme} {token}")),
        ];
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let url = client::join(&env.gateway.url(), client::CREATE_PATH);
        let body: Value = create_body(&format!("scheme-{scheme}"));
        let resp = client::send("POST", &url, &headers, &body).await;
        assert_eq!(resp.status, 201, "{scheme}: {resp:?}");
    }
    for authorization in [
        "bearer",
        "Basic dXNlcjpwdw==",
        &format!("bearer {token} extra"),
    ] {
        let headers = [
            ("content-type", FORM_CONTENT_TYPE),
            ("authorization", authorization),
        ];
        let url = client::join(&env.gateway.url(), client::CREATE_PATH);
        let resp = client::send("POST", &url, &headers, create_body("malformed")).await;
        assert_auth_error(&resp, 401, NOT_AUTHENTICATED);
    }
    assert_eq!(env.broker.provision_count(), 3);
}
