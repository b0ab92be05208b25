//! Criterion benchmarks of bearer-token verification, `Verifier::verify`:
//!
//! - `rs256_uncached`: every call checks the RS256 signature and the claims (cache off);
//! - `rs256_cached`: the same token again, answered from the verified-token cache (SHA-256
//!   of the token, one shard lock, an `Identity` clone);
//! - `hs256_uncached`: HMAC, for scale.
//!
//! The token is UAA-shaped (about 900 bytes: scopes, jti, client and user ids). The future is
//! polled once with a no-op waker: these paths never wait, so no runtime is measured.
//!
//! Run: `scripts/cargo.sh bench --bench token_verify`.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

use brokergate::auth::{AuthError, Identity, Verifier, VerifierSettings};
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/keys");

fn claims() -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    json!({
        "jti": "4d4ab3f3c7a54cbdbc4f7e1f2b8a9c10",
        "sub": "3a8ef2b4-6c1d-4d3b-9a57-2b1f0c9e8d71",
        "scope": ["cloud_controller.read", "cloud_controller.write", "openid",
                  "password.write", "scim.read", "uaa.user", "cloud_controller.admin"],
        "client_id": "cf", "cid": "cf", "azp": "cf", "grant_type": "password",
        "user_id": "3a8ef2b4-6c1d-4d3b-9a57-2b1f0c9e8d71", "origin": "uaa",
        "user_name": "admin", "email": "admin@example.com", "auth_time": now,
        "rev_sig": "9a1b2c3d", "iat": now, "exp": now + 3600,
        "iss": "https://uaa.example.com/oauth/token", "zid": "uaa",
        "aud": ["scim", "cloud_controller", "password", "cf", "uaa", "openid"],
    })
}

fn verifier(secrets: &[String], pems: &[(String, Vec<u8>)], cache_size: usize) -> Verifier {
    let settings = VerifierSettings {
        audience: "cloud_controller".into(),
        issuer: Some("https://uaa.example.com/oauth/token".into()),
        leeway_seconds: 0,
        cache_size,
    };
    Verifier::build(settings, secrets, pems, None).expect("verifier")
}

/// Polls `verify` once: the measured paths complete without waiting.
fn verify_now(v: &Verifier, token: &str) -> Result<Identity, AuthError> {
    let mut fut = pin!(v.verify(token));
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("verification waited"),
    }
}

fn bench(c: &mut Criterion) {
    let private = std::fs::read(format!("{KEYS}/rsa_private.pem")).expect("rsa key");
    let public = std::fs::read(format!("{KEYS}/rsa_public.pem")).expect("rsa public key");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("key-1".into());
    let rs256 = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_rsa_pem(&private).expect("rsa key"),
    )
    .expect("sign");
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(b"tokensecret"),
    )
    .expect("sign");
    let pems = [("key".to_string(), public)];

    let mut g = c.benchmark_group("token_verify");
    let uncached = verifier(&[], &pems, 0);
    verify_now(&uncached, &rs256).expect("valid token");
    g.bench_function("rs256_uncached", |b| {
        b.iter(|| verify_now(&uncached, black_box(&rs256)))
    });

    let cached = verifier(&[], &pems, 10_000);
    verify_now(&cached, &rs256).expect("valid token");
    g.bench_function("rs256_cached", |b| {
        b.iter(|| verify_now(&cached, black_box(&rs256)))
    });

    let hmac = verifier(&["tokensecret".into()], &[], 0);
    verify_now(&hmac, &hs256).expect("valid token");
    g.bench_function("hs256_uncached", |b| {
        b.iter(|| verify_now(&hmac, black_box(&hs256)))
    });
    g.finish();
    println!("token bytes: rs256 {}, hs256 {}", rs256.len(), hs256.len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
