//! The keys tokens are verified with, and the verification itself. The algorithm allow-list
//! comes from the key type, never from the token: HMAC only with configured secrets, RSA/EC
//! only with public keys, and `none` never (jsonwebtoken cannot even parse it).

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{AuthError, Identity, InvalidReason};

/// Claim checks shared by every key.
#[derive(Debug, Clone)]
pub struct VerifierSettings {
    pub audience: String,
    pub issuer: Option<String>,
    pub leeway_seconds: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    Hmac,
    Rsa,
    Ec,
}

impl Family {
    fn of(alg: Algorithm) -> Option<Family> {
        match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Some(Family::Hmac),
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => Some(Family::Rsa),
            Algorithm::ES256 | Algorithm::ES384 => Some(Family::Ec),
            _ => None,
        }
    }
}

/// Every verification key, with the claim settings.
pub struct KeySet {
    keys: Vec<(Family, DecodingKey)>,
    settings: VerifierSettings,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field(
                "keys",
                &self.keys.iter().map(|(fam, _)| fam).collect::<Vec<_>>(),
            )
            .field("settings", &self.settings)
            .finish()
    }
}

/// The claims brokergate reads. `exp` is an integer: a string or float `exp` fails to
/// deserialize, so a wrongly typed expiry can never be skipped.
#[derive(Deserialize)]
struct Claims {
    #[allow(dead_code)]
    exp: i64,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    scope: Option<Scope>,
    #[serde(default)]
    jti: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Scope {
    List(Vec<String>),
    Spaced(String),
}

impl KeySet {
    /// Builds the set from secrets and PEM public keys (each named by its config key, which
    /// an error names back).
    pub fn build(
        settings: VerifierSettings,
        secrets: &[String],
        pems: &[(String, Vec<u8>)],
    ) -> Result<KeySet, (String, String)> {
        let mut keys = Vec::new();
        for (i, s) in secrets.iter().enumerate() {
            if s.is_empty() {
                return Err((
                    format!("auth.symmetric_secrets[{i}]"),
                    "must not be empty".into(),
                ));
            }
            keys.push((Family::Hmac, DecodingKey::from_secret(s.as_bytes())));
        }
        for (name, pem) in pems {
            let key = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
                (Family::Rsa, k)
            } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
                (Family::Ec, k)
            } else {
                return Err((name.clone(), "not a PEM RSA or EC public key".into()));
            };
            keys.push(key);
        }
        Ok(KeySet { keys, settings })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.set_audience(&[&self.settings.audience]);
        if let Some(iss) = &self.settings.issuer {
            v.set_issuer(&[iss]);
        }
        v.set_required_spec_claims(&["exp", "aud"]);
        v.validate_exp = true;
        v.validate_nbf = true;
        v.leeway = self.settings.leeway_seconds;
        v
    }

    /// Verifies the token and returns the caller.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let invalid = |r| Err(AuthError::Invalid(r));
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            Err(_) => return invalid(InvalidReason::Malformed),
        };
        let Some(family) = Family::of(header.alg) else {
            return invalid(InvalidReason::AlgNotAllowed);
        };
        let validation = self.validation(header.alg);
        let mut outcome = invalid(InvalidReason::AlgNotAllowed);
        for (_, key) in self.keys.iter().filter(|(f, _)| *f == family) {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return identity(data.claims),
                Err(e) => {
                    let reason = reason_of(e.kind());
                    outcome = invalid(reason);
                    // A claim failure means the signature matched this key: no other key helps.
                    if reason != InvalidReason::BadSignature {
                        return outcome;
                    }
                }
            }
        }
        outcome
    }
}

fn reason_of(kind: &ErrorKind) -> InvalidReason {
    match kind {
        ErrorKind::InvalidSignature => InvalidReason::BadSignature,
        ErrorKind::ExpiredSignature => InvalidReason::Expired,
        ErrorKind::ImmatureSignature => InvalidReason::NotYetValid,
        ErrorKind::InvalidAudience => InvalidReason::WrongAudience,
        ErrorKind::InvalidIssuer => InvalidReason::WrongIssuer,
        ErrorKind::InvalidAlgorithm => InvalidReason::AlgNotAllowed,
        _ => InvalidReason::Malformed,
    }
}

fn identity(claims: Claims) -> Result<Identity, AuthError> {
    // A refresh token (UAA marks its jti with "-r") is never accepted as an access token.
    if claims.jti.as_deref().is_some_and(|j| j.ends_with("-r")) {
        return Err(AuthError::Invalid(InvalidReason::RefreshToken));
    }
    let user_id = claims
        .user_id
        .or(claims.client_id)
        .filter(|s| !s.is_empty())
        .ok_or(AuthError::Invalid(InvalidReason::NoIdentity))?;
    let scopes = match claims.scope {
        Some(Scope::List(l)) => l,
        Some(Scope::Spaced(s)) => s.split_whitespace().map(str::to_string).collect(),
        None => Vec::new(),
    };
    Ok(Identity {
        user_id,
        email: claims.email,
        scopes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn set() -> KeySet {
        let s = VerifierSettings {
            audience: "cloud_controller".into(),
            issuer: None,
            leeway_seconds: 0,
        };
        KeySet::build(s, &["tokensecret".into(), "second".into()], &[]).unwrap()
    }

    fn hs(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn claims() -> serde_json::Value {
        json!({"user_id":"u1","email":"a@b.c","scope":["cloud_controller.write"],
               "aud":["cloud_controller"],"exp": now() + 60})
    }

    #[test]
    fn accepts_either_rotating_secret() {
        for secret in ["tokensecret", "second"] {
            let id = set().verify(&hs(claims(), secret)).unwrap();
            assert_eq!(id.user_id, "u1");
            assert_eq!(id.email.as_deref(), Some("a@b.c"));
            assert!(id.can_write() && !id.can_read());
        }
    }

    #[test]
    fn rejects_wrong_secret_expired_audience_and_string_exp() {
        let ks = set();
        let bad = |c, s| ks.verify(&hs(c, s)).unwrap_err();
        assert_eq!(
            bad(claims(), "nope"),
            AuthError::Invalid(InvalidReason::BadSignature)
        );
        let mut c = claims();
        c["exp"] = json!(now() - 1);
        assert_eq!(
            bad(c, "tokensecret"),
            AuthError::Invalid(InvalidReason::Expired)
        );
        let mut c = claims();
        c["aud"] = json!(["uaa"]);
        assert_eq!(
            bad(c, "tokensecret"),
            AuthError::Invalid(InvalidReason::WrongAudience)
        );
        let mut c = claims();
        c["exp"] = json!((now() + 60).to_string());
        assert!(matches!(bad(c, "tokensecret"), AuthError::Invalid(_)));
        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        assert!(matches!(bad(c, "tokensecret"), AuthError::Invalid(_)));
    }

    #[test]
    fn client_id_stands_in_for_user_id_and_none_is_rejected() {
        let mut c = claims();
        c.as_object_mut().unwrap().remove("user_id");
        c["client_id"] = json!("cf");
        assert_eq!(
            set().verify(&hs(c.clone(), "tokensecret")).unwrap().user_id,
            "cf"
        );
        c.as_object_mut().unwrap().remove("client_id");
        assert_eq!(
            set().verify(&hs(c, "tokensecret")),
            Err(AuthError::Invalid(InvalidReason::NoIdentity))
        );
    }

    #[test]
    fn refresh_tokens_and_future_nbf_are_rejected() {
        let mut c = claims();
        c["jti"] = json!("abc-r");
        assert_eq!(
            set().verify(&hs(c, "tokensecret")),
            Err(AuthError::Invalid(InvalidReason::RefreshToken))
        );
        let mut c = claims();
        c["nbf"] = json!(now() + 60);
        assert_eq!(
            set().verify(&hs(c, "tokensecret")),
            Err(AuthError::Invalid(InvalidReason::NotYetValid))
        );
    }

    #[test]
    fn alg_none_and_garbage_are_invalid() {
        use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
        let h = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let p = B64.encode(claims().to_string());
        let none = format!("{h}.{p}.");
        assert!(matches!(set().verify(&none), Err(AuthError::Invalid(_))));
        assert!(matches!(
            set().verify("garbage"),
            Err(AuthError::Invalid(_))
        ));
    }
}
