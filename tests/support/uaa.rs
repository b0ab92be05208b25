//! A fake UAA on 127.0.0.1: the discovery document and `/token_keys` (JWKS built from the
//! test keys in `keys/`), with knobs to rotate keys, change the issuer, go down and come back,
//! and slow the key answer down; it counts what it was asked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

use super::recorded::RecordedRequest;
use super::server::{Handler, Reply, TestServer};
use super::token;

pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
pub const TOKEN_KEYS_PATH: &str = "/token_keys";

/// The kid of the first key the fake publishes (`keys/rsa_private.pem`).
pub const KEY_1: &str = "key-1";

struct State {
    keys: Vec<Value>,
    issuer: String,
    down: bool,
    token_keys_delay: Duration,
}

/// A running fake UAA; stops when dropped.
pub struct FakeUaa {
    server: TestServer,
    state: Arc<Mutex<State>>,
}

impl FakeUaa {
    /// Up, publishing [`rsa_jwk`]`(KEY_1)`, with issuer `<url>/oauth/token`.
    pub async fn start() -> FakeUaa {
        let state = Arc::new(Mutex::new(State {
            keys: vec![rsa_jwk(KEY_1)],
            issuer: String::new(),
            down: false,
            token_keys_delay: Duration::ZERO,
        }));
        let handler_state = state.clone();
        let handler: Handler = Arc::new(move |req: RecordedRequest| {
            let state = handler_state.clone();
            Box::pin(async move {
                let (down, delay, keys, issuer) = {
                    let s = state.lock().expect("uaa state");
                    (s.down, s.token_keys_delay, s.keys.clone(), s.issuer.clone())
                };
                if down {
                    return Reply::Close;
                }
                match req.path_only() {
                    DISCOVERY_PATH => Reply::json(
                        200,
                        &json!({
                            "issuer": issuer,
                            "jwks_uri": "https://evil.example.com/token_keys",
                            "token_endpoint": issuer,
                        }),
                    ),
                    TOKEN_KEYS_PATH => {
                        tokio::time::sleep(delay).await;
                        Reply::json(200, &json!({ "keys": keys }))
                    }
                    _ => Reply::json(404, &json!({"error": "not_found"})),
                }
            })
        });
        let server = TestServer::start(handler).await;
        state.lock().expect("uaa state").issuer = format!("{}/oauth/token", server.url());
        FakeUaa { server, state }
    }

    /// `http://127.0.0.1:PORT`: the gateway's `uaa_url`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// What discovery says `iss` is.
    pub fn issuer(&self) -> String {
        self.state.lock().expect("uaa state").issuer.clone()
    }

    pub fn set_issuer(&self, issuer: &str) {
        self.state.lock().expect("uaa state").issuer = issuer.to_string();
    }

    /// Replace the published key set (JWKs, e.g. from [`rsa_jwk`]).
    pub fn publish(&self, keys: Vec<Value>) {
        self.state.lock().expect("uaa state").keys = keys;
    }

    /// Down: every connection is closed without an answer.
    pub fn set_down(&self, down: bool) {
        self.state.lock().expect("uaa state").down = down;
    }

    /// Delay before each `/token_keys` answer.
    pub fn set_token_keys_delay(&self, delay: Duration) {
        self.state.lock().expect("uaa state").token_keys_delay = delay;
    }

    /// `GET /token_keys` requests received (answered or not).
    pub fn token_keys_fetches(&self) -> usize {
        self.count(TOKEN_KEYS_PATH)
    }

    /// Discovery requests received (answered or not).
    pub fn discovery_fetches(&self) -> usize {
        self.count(DISCOVERY_PATH)
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }

    fn count(&self, path: &str) -> usize {
        self.server
            .requests()
            .iter()
            .filter(|r| r.path_only() == path)
            .count()
    }
}

/// The public JWK of `keys/rsa_private.pem` (signs with [`token::sign_rs256`]), UAA style.
pub fn rsa_jwk(kid: &str) -> Value {
    jwk("rsa_private.pem", Algorithm::RS256, kid)
}

/// The public JWK of `keys/rsa_other_private.pem` (signs with [`token::sign_rs256_other_key`]).
pub fn rsa_other_jwk(kid: &str) -> Value {
    jwk("rsa_other_private.pem", Algorithm::RS256, kid)
}

/// The public JWK of `keys/ec_private.pem` (signs with [`token::sign_es256`]).
pub fn ec_jwk(kid: &str) -> Value {
    jwk("ec_private.pem", Algorithm::ES256, kid)
}

fn jwk(private_file: &str, alg: Algorithm, kid: &str) -> Value {
    let pem = std::fs::read(token::key_path(private_file)).expect("read test key");
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .expect("parse test key");
    let mut v =
        serde_json::to_value(Jwk::from_encoding_key(&key, alg).expect("jwk")).expect("jwk to json");
    v["kid"] = json!(kid);
    v["use"] = json!("sig");
    v
}
