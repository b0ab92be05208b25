//! One token against one key: the signature, then the claims the Cloud Controller checks
//! (`exp` required and an integer, `nbf`, `aud`, `iss`, refresh tokens, who is calling).

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{Identity, InvalidReason};

/// The claim checks of one verification.
pub(crate) struct Checks<'a> {
    pub audience: &'a str,
    /// `iss` must equal this when set.
    pub issuer: Option<&'a str>,
    pub leeway_seconds: u64,
    /// Seconds since the Unix epoch.
    pub now: i64,
}

/// A token that passed: the caller and when the token stops being valid.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub identity: Identity,
    pub exp: i64,
}

/// The claims brokergate reads. `exp` is an integer: a string or float `exp` fails to
/// deserialize, so a wrongly typed expiry can never be skipped (CVE-2026-25537 shape).
#[derive(Deserialize)]
struct Claims {
    exp: i64,
    #[serde(default)]
    iss: Option<String>,
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

/// Verifies `token` (whose header says `alg`) with `key`. `BadSignature` means "not this
/// key"; any other error means the signature matched and the token itself is refused.
pub(crate) fn verify_with(
    token: &str,
    alg: Algorithm,
    key: &DecodingKey,
    checks: &Checks<'_>,
) -> Result<Verified, InvalidReason> {
    let mut v = Validation::new(alg);
    v.set_audience(&[checks.audience]);
    v.set_required_spec_claims(&["exp", "aud"]);
    v.validate_exp = true;
    v.validate_nbf = true;
    v.leeway = checks.leeway_seconds;
    let claims = jsonwebtoken::decode::<Claims>(token, key, &v)
        .map_err(|e| reason_of(e.kind()))?
        .claims;
    // CC wants `exp` strictly after now; jsonwebtoken still accepts `exp == now`.
    let leeway = i64::try_from(checks.leeway_seconds).unwrap_or(i64::MAX);
    if claims.exp <= checks.now.saturating_sub(leeway) {
        return Err(InvalidReason::Expired);
    }
    if let Some(expected) = checks.issuer {
        if claims.iss.as_deref() != Some(expected) {
            return Err(InvalidReason::WrongIssuer);
        }
    }
    let exp = claims.exp;
    identity(claims).map(|identity| Verified { identity, exp })
}

fn reason_of(kind: &ErrorKind) -> InvalidReason {
    match kind {
        // A key of the wrong shape for this token (say a P-256 key for ES384) is "not this key".
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => InvalidReason::BadSignature,
        ErrorKind::ExpiredSignature => InvalidReason::Expired,
        ErrorKind::ImmatureSignature => InvalidReason::NotYetValid,
        ErrorKind::InvalidAudience => InvalidReason::WrongAudience,
        ErrorKind::InvalidIssuer => InvalidReason::WrongIssuer,
        ErrorKind::InvalidAlgorithm => InvalidReason::AlgNotAllowed,
        _ => InvalidReason::Malformed,
    }
}

fn identity(claims: Claims) -> Result<Identity, InvalidReason> {
    // A refresh token (UAA marks its jti with "-r") is never accepted as an access token.
    if claims.jti.as_deref().is_some_and(|j| j.ends_with("-r")) {
        return Err(InvalidReason::RefreshToken);
    }
    let user_id = claims
        .user_id
        .or(claims.client_id)
        .filter(|s| !s.is_empty())
        .ok_or(InvalidReason::NoIdentity)?;
    let scopes = match claims.scope {
        Some(Scope::List(l)) => l,
        Some(Scope::Spaced(s)) => s.split_whitespace().map(str::to_string).collect(),
        None => Vec::new(),
    };
    Ok(Identity {
        user_id,
        email: claims.email,
        scopes,
        expires_at: claims.exp,
        token: super::BearerToken::default(),
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

    fn checks(issuer: Option<&str>) -> Checks<'_> {
        Checks {
            audience: "cloud_controller",
            issuer,
            leeway_seconds: 0,
            now: now(),
        }
    }

    fn hs(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"tokensecret"),
        )
        .unwrap()
    }

    fn claims() -> serde_json::Value {
        json!({"user_id":"u1","email":"a@b.c","scope":["cloud_controller.write"],
               "aud":["cloud_controller"],"exp": now() + 60})
    }

    fn check(c: serde_json::Value, issuer: Option<&str>) -> Result<Verified, InvalidReason> {
        let key = DecodingKey::from_secret(b"tokensecret");
        verify_with(&hs(c), Algorithm::HS256, &key, &checks(issuer))
    }

    #[test]
    fn valid_token_gives_identity_and_exp() {
        let c = claims();
        let v = check(c.clone(), None).unwrap();
        assert_eq!(v.identity.user_id, "u1");
        assert_eq!(v.identity.email.as_deref(), Some("a@b.c"));
        assert!(v.identity.can_write() && !v.identity.can_read());
        assert_eq!(v.exp, c["exp"].as_i64().unwrap());
    }

    #[test]
    fn claim_failures_have_their_reasons() {
        let key = DecodingKey::from_secret(b"other");
        assert_eq!(
            verify_with(&hs(claims()), Algorithm::HS256, &key, &checks(None)).unwrap_err(),
            InvalidReason::BadSignature
        );
        let mut c = claims();
        c["exp"] = json!(now());
        assert_eq!(check(c, None).unwrap_err(), InvalidReason::Expired);
        let mut c = claims();
        c["aud"] = json!(["uaa"]);
        assert_eq!(check(c, None).unwrap_err(), InvalidReason::WrongAudience);
        let mut c = claims();
        c["exp"] = json!((now() + 60).to_string());
        assert_eq!(check(c, None).unwrap_err(), InvalidReason::Malformed);
        let mut c = claims();
        c["exp"] = json!(now() as f64 + 60.5);
        assert_eq!(check(c, None).unwrap_err(), InvalidReason::Malformed);
        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        assert!(check(c, None).is_err());
        let mut c = claims();
        c["nbf"] = json!(now() + 60);
        assert_eq!(check(c, None).unwrap_err(), InvalidReason::NotYetValid);
        let mut c = claims();
        c["jti"] = json!("abc-r");
        assert_eq!(check(c, None).unwrap_err(), InvalidReason::RefreshToken);
    }

    #[test]
    fn issuer_must_match_when_expected() {
        let mut c = claims();
        assert_eq!(
            check(c.clone(), Some("https://uaa/oauth/token")).unwrap_err(),
            InvalidReason::WrongIssuer
        );
        c["iss"] = json!("https://uaa/oauth/token");
        assert!(check(c.clone(), Some("https://uaa/oauth/token")).is_ok());
        assert_eq!(
            check(c, Some("https://other/oauth/token")).unwrap_err(),
            InvalidReason::WrongIssuer
        );
    }

    #[test]
    fn client_id_stands_in_for_user_id_and_none_is_rejected() {
        let mut c = claims();
        c.as_object_mut().unwrap().remove("user_id");
        c["client_id"] = json!("cf");
        assert_eq!(check(c.clone(), None).unwrap().identity.user_id, "cf");
        c.as_object_mut().unwrap().remove("client_id");
        assert_eq!(check(c, None).unwrap_err(), InvalidReason::NoIdentity);
    }

    #[test]
    fn spaced_scope_string_is_split() {
        let mut c = claims();
        c["scope"] = json!("cloud_controller.read cloud_controller.admin");
        let id = check(c, None).unwrap().identity;
        assert!(id.is_admin() && id.can_read());
    }
}
