//! UAA-style bearer tokens for the tests: well-formed ones through
//! `jsonwebtoken` (HS256 / RS256 / ES256 with the PEMs in `keys/`) and
//! hand-assembled ones for attack tests (alg none, odd headers, raw JSON text).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};

/// The gateway's default `symmetric_secrets` entry.
pub const DEFAULT_SECRET: &str = "tokensecret";
pub const DEFAULT_AUDIENCE: &str = "cloud_controller";
pub const DEFAULT_USER_ID: &str = "uaa-id-207";
pub const DEFAULT_EMAIL: &str = "email-148@somedomain.com";

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// The claims of a valid Cloud Controller admin token, expiring in 10 minutes.
pub fn default_claims() -> Value {
    json!({
        "user_id": DEFAULT_USER_ID,
        "email": DEFAULT_EMAIL,
        "scope": ["cloud_controller.admin"],
        "aud": [DEFAULT_AUDIENCE],
        "exp": now() + 600,
        "jti": uuid::Uuid::new_v4().to_string(),
        "client_id": "cf",
    })
}

/// Shallow-merge `patch` (an object) into `base` (an object): keys with a
/// `null` value are removed, others set.
pub fn patch_object(base: &mut Value, patch: Value) {
    let Value::Object(patch) = patch else {
        panic!("claims patch must be a JSON object, got {patch}");
    };
    let base = base.as_object_mut().expect("claims must be a JSON object");
    for (k, v) in patch {
        if v.is_null() {
            base.remove(&k);
        } else {
            base.insert(k, v);
        }
    }
}

/// Builder over a claims object, starting from [`default_claims`].
#[derive(Debug, Clone, PartialEq)]
pub struct Claims(Value);

impl Default for Claims {
    fn default() -> Self {
        Claims(default_claims())
    }
}

impl Claims {
    pub fn new() -> Claims {
        Claims::default()
    }

    /// No claims at all: `{}`.
    pub fn empty() -> Claims {
        Claims(Value::Object(Map::new()))
    }

    /// Set one claim to any JSON value (a string `exp`, a number `aud`...).
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Claims {
        self.0
            .as_object_mut()
            .expect("object")
            .insert(key.to_string(), value.into());
        self
    }

    /// Drop one claim.
    pub fn remove(mut self, key: &str) -> Claims {
        self.0.as_object_mut().expect("object").remove(key);
        self
    }

    /// See [`patch_object`]: `null` removes, anything else sets.
    pub fn patch(mut self, patch: Value) -> Claims {
        patch_object(&mut self.0, patch);
        self
    }

    /// `exp = now + secs` (negative: already expired).
    pub fn expires_in(self, secs: i64) -> Claims {
        self.set("exp", now() + secs)
    }

    /// Replace `scope`.
    pub fn scopes(self, scopes: &[&str]) -> Claims {
        self.set("scope", scopes.to_vec())
    }

    pub fn value(&self) -> &Value {
        &self.0
    }

    pub fn into_value(self) -> Value {
        self.0
    }

    /// HS256 with [`DEFAULT_SECRET`].
    pub fn sign(&self) -> String {
        sign_hs256(&self.0, DEFAULT_SECRET)
    }

    /// HS256 with `secret`.
    pub fn sign_with_secret(&self, secret: impl AsRef<[u8]>) -> String {
        sign_hs256(&self.0, secret)
    }

    pub fn sign_rs256(&self, kid: Option<&str>) -> String {
        sign_rs256(&self.0, kid)
    }

    pub fn sign_es256(&self, kid: Option<&str>) -> String {
        sign_es256(&self.0, kid)
    }
}

impl From<Claims> for Value {
    fn from(c: Claims) -> Value {
        c.0
    }
}

/// A valid admin token: default claims, HS256, default secret.
pub fn valid_token() -> String {
    Claims::new().sign()
}

/// Sign `claims` exactly as given (no validation) with `header` and `key`.
pub fn sign_with(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).expect("jsonwebtoken::encode")
}

/// HS256 with any secret (e.g. an RSA public key PEM, for alg-confusion tests).
pub fn sign_hs256(claims: &Value, secret: impl AsRef<[u8]>) -> String {
    sign_with(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_ref()),
    )
}

/// RS256 with `keys/rsa_private.pem` (verifies with [`rsa_public_key_path`]).
pub fn sign_rs256(claims: &Value, kid: Option<&str>) -> String {
    sign_pem(Algorithm::RS256, "rsa_private.pem", claims, kid)
}

/// RS256 with `keys/rsa_other_private.pem`: a key the gateway is not told about.
pub fn sign_rs256_other_key(claims: &Value, kid: Option<&str>) -> String {
    sign_pem(Algorithm::RS256, "rsa_other_private.pem", claims, kid)
}

/// ES256 with `keys/ec_private.pem` (verifies with [`ec_public_key_path`]).
pub fn sign_es256(claims: &Value, kid: Option<&str>) -> String {
    sign_pem(Algorithm::ES256, "ec_private.pem", claims, kid)
}

fn sign_pem(alg: Algorithm, file: &str, claims: &Value, kid: Option<&str>) -> String {
    let pem = std::fs::read(key_path(file)).expect("read test key");
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .expect("parse test key");
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    sign_with(&header, claims, &key)
}

/// `tests/support/keys/<file>`.
pub fn key_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/keys")
        .join(file)
}

/// SPKI PEM of the RS256 signing key.
pub fn rsa_public_key_path() -> PathBuf {
    key_path("rsa_public.pem")
}

/// SPKI PEM of the key behind [`sign_rs256_other_key`].
pub fn rsa_other_public_key_path() -> PathBuf {
    key_path("rsa_other_public.pem")
}

/// SPKI PEM of the ES256 signing key.
pub fn ec_public_key_path() -> PathBuf {
    key_path("ec_public.pem")
}

pub fn rsa_private_key_path() -> PathBuf {
    key_path("rsa_private.pem")
}

pub fn ec_private_key_path() -> PathBuf {
    key_path("ec_private.pem")
}

/// Unpadded base64url, as JWTs use.
pub fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// `b64url(header).b64url(payload).signature`, segments taken as raw text
/// (so duplicate keys or non-JSON survive); `signature` is used verbatim.
pub fn raw_token(header: &str, payload: &str, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64url(header.as_bytes()),
        b64url(payload.as_bytes())
    )
}

/// [`raw_token`] from JSON values.
pub fn raw_json_token(header: &Value, payload: &Value, signature: &str) -> String {
    raw_token(&header.to_string(), &payload.to_string(), signature)
}

/// [`raw_token`] with a correct HMAC-SHA256 signature over whatever header
/// and payload text is given (e.g. `{"alg":"HS256","crit":["x"]}`).
pub fn raw_hs256(header: &str, payload: &str, secret: impl AsRef<[u8]>) -> String {
    let signing_input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(payload.as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &EncodingKey::from_secret(secret.as_ref()),
        Algorithm::HS256,
    )
    .expect("hmac sign");
    format!("{signing_input}.{sig}")
}

/// An unsigned token: header `{"alg":"none","typ":"JWT"}`, empty signature.
pub fn alg_none_token(claims: &Value) -> String {
    raw_json_token(&json!({"alg": "none", "typ": "JWT"}), claims, "")
}
