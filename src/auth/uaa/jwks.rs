//! UAA's `/token_keys` document (a JWKS) into verification keys. Only signing keys of the
//! accepted shapes are kept: RSA of at least 2048 bits (RS256/384/512) and EC P-256/P-384
//! (ES256/ES384). Symmetric keys are never taken from the network: HMAC is only ever verified
//! with configured secrets.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::auth::keys::{single, VerifyKey, EC_ALGS, MAX_KID_BYTES, RSA_ALGS};

/// More keys than any UAA publishes; a bound on the work one kid-less token can cause.
pub(crate) const MAX_KEYS: usize = 64;
const MIN_RSA_MODULUS_BYTES: usize = 256;

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

/// The usable keys, and a note for each key that was skipped (never key material).
pub(crate) fn parse(body: &[u8]) -> Result<(Vec<VerifyKey>, Vec<String>), String> {
    let doc: Document = serde_json::from_slice(body)
        .map_err(|e| format!("token_keys is not a JWKS document ({e})"))?;
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (i, raw) in doc.keys.into_iter().enumerate() {
        if keys.len() == MAX_KEYS {
            skipped.push(format!("keys[{i}] and later: more than {MAX_KEYS} keys"));
            break;
        }
        match key(raw) {
            Ok(k) => keys.push(k),
            Err(why) => skipped.push(format!("keys[{i}]: {why}")),
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "token_keys has no usable signing key ({})",
            if skipped.is_empty() {
                "empty".to_string()
            } else {
                skipped.join("; ")
            }
        ));
    }
    Ok((keys, skipped))
}

fn key(raw: serde_json::Value) -> Result<VerifyKey, String> {
    let jwk: Jwk = serde_json::from_value(raw).map_err(|_| "not a supported JWK".to_string())?;
    let kid = jwk.common.key_id.clone();
    let name = || {
        kid.as_deref()
            .map_or(String::new(), |k| format!(" (kid {k:?})"))
    };
    if kid.as_ref().is_some_and(|k| k.len() > MAX_KID_BYTES) {
        return Err(format!("kid longer than {MAX_KID_BYTES} bytes"));
    }
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return Err(format!("not a signing key{}", name()));
    }
    let named = jwk.common.key_algorithm.map(algorithm);
    let (allowed, key) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = URL_SAFE_NO_PAD
                .decode(p.n.trim_end_matches('='))
                .map_err(|_| format!("RSA modulus is not base64url{}", name()))?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err(format!("RSA key shorter than 2048 bits{}", name()));
            }
            let key = DecodingKey::from_rsa_components(&p.n, &p.e)
                .map_err(|_| format!("bad RSA key{}", name()))?;
            (RSA_ALGS, key)
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let alg = match p.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return Err(format!("unsupported curve{}", name())),
            };
            let key = DecodingKey::from_ec_components(&p.x, &p.y)
                .map_err(|_| format!("bad EC key{}", name()))?;
            // The curve fixes the algorithm, whatever `alg` says.
            if named.is_some_and(|a| a != Some(alg)) {
                return Err(format!("alg does not match the curve{}", name()));
            }
            debug_assert!(EC_ALGS.contains(&alg));
            (single(alg), key)
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err(format!("symmetric keys are never taken from UAA{}", name()))
        }
        AlgorithmParameters::OctetKeyPair(_) => {
            return Err(format!("unsupported key type{}", name()))
        }
    };
    let algs = match named {
        None => allowed,
        Some(Some(alg)) if allowed.contains(&alg) => single(alg),
        Some(_) => return Err(format!("alg not allowed for this key type{}", name())),
    };
    Ok(VerifyKey { kid, algs, key })
}

/// The accepted algorithm a JWK `alg` names, if any.
fn algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        _ => return None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::EncodingKey;
    use serde_json::{json, Value};

    pub(crate) const RSA_PRIVATE: &[u8] =
        include_bytes!("../../../tests/support/keys/rsa_private.pem");
    pub(crate) const RSA_OTHER_PRIVATE: &[u8] =
        include_bytes!("../../../tests/support/keys/rsa_other_private.pem");
    pub(crate) const EC_PRIVATE: &[u8] =
        include_bytes!("../../../tests/support/keys/ec_private.pem");

    /// The public JWK of a test private key, the way UAA publishes it.
    pub(crate) fn jwk(private_pem: &[u8], alg: Algorithm, kid: &str) -> Value {
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(private_pem),
            _ => EncodingKey::from_rsa_pem(private_pem),
        }
        .unwrap();
        let mut v = serde_json::to_value(Jwk::from_encoding_key(&key, alg).unwrap()).unwrap();
        v["kid"] = json!(kid);
        v["use"] = json!("sig");
        v
    }

    fn parse_keys(keys: Vec<Value>) -> Result<(Vec<VerifyKey>, Vec<String>), String> {
        parse(json!({ "keys": keys }).to_string().as_bytes())
    }

    #[test]
    fn uaa_shaped_rsa_and_ec_keys_are_accepted() {
        let mut rsa = jwk(RSA_PRIVATE, Algorithm::RS256, "key-1");
        // UAA adds the PEM as `value`; unknown members are ignored.
        rsa["value"] = json!("-----BEGIN PUBLIC KEY-----\n...");
        let ec = jwk(EC_PRIVATE, Algorithm::ES256, "ec-1");
        let (keys, skipped) = parse_keys(vec![rsa, ec]).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(keys[0].kid.as_deref(), Some("key-1"));
        assert_eq!(keys[0].algs, [Algorithm::RS256]);
        assert_eq!(keys[1].algs, [Algorithm::ES256]);
    }

    #[test]
    fn rsa_key_without_alg_allows_the_rsa_family_only() {
        let mut rsa = jwk(RSA_PRIVATE, Algorithm::RS256, "k");
        rsa.as_object_mut().unwrap().remove("alg");
        let (keys, _) = parse_keys(vec![rsa]).unwrap();
        assert_eq!(keys[0].algs, RSA_ALGS);
    }

    #[test]
    fn unusable_keys_are_skipped_with_a_reason() {
        let good = jwk(RSA_PRIVATE, Algorithm::RS256, "good");
        let mut enc = jwk(RSA_PRIVATE, Algorithm::RS256, "enc");
        enc["use"] = json!("enc");
        let mut hs = jwk(RSA_PRIVATE, Algorithm::RS256, "hs");
        hs["alg"] = json!("HS256");
        let oct = json!({"kty": "oct", "k": "c2VjcmV0", "kid": "oct"});
        let mac = json!({"kty": "MAC", "alg": "HS256", "value": "secret", "kid": "mac"});
        let mut small = jwk(RSA_PRIVATE, Algorithm::RS256, "small");
        small["n"] = json!(URL_SAFE_NO_PAD.encode([0xffu8; 128]));
        let mut long_kid = jwk(RSA_PRIVATE, Algorithm::RS256, "x");
        long_kid["kid"] = json!("k".repeat(MAX_KID_BYTES + 1));
        let mut ec_wrong_alg = jwk(EC_PRIVATE, Algorithm::ES256, "ec");
        ec_wrong_alg["alg"] = json!("ES384");
        let (keys, skipped) =
            parse_keys(vec![good, enc, hs, oct, mac, small, long_kid, ec_wrong_alg]).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("good"));
        assert_eq!(skipped.len(), 7, "{skipped:?}");
        assert!(
            skipped.iter().any(|s| s.contains("symmetric")),
            "{skipped:?}"
        );
        assert!(skipped.iter().any(|s| s.contains("2048")), "{skipped:?}");
    }

    #[test]
    fn a_document_without_usable_keys_is_an_error() {
        assert!(parse(b"not json").is_err());
        assert!(parse(br#"{"keys": []}"#).is_err());
        assert!(parse(br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).is_err());
        assert!(parse(br#"{"value": "-----BEGIN PUBLIC KEY-----"}"#).is_err());
    }

    #[test]
    fn the_number_of_keys_is_bounded() {
        let many: Vec<Value> = (0..MAX_KEYS + 5)
            .map(|i| jwk(RSA_PRIVATE, Algorithm::RS256, &format!("k{i}")))
            .collect();
        let (keys, skipped) = parse_keys(many).unwrap();
        assert_eq!(keys.len(), MAX_KEYS);
        assert_eq!(skipped.len(), 1);
    }

    #[test]
    fn other_key_is_distinct() {
        let a = jwk(RSA_PRIVATE, Algorithm::RS256, "a");
        let b = jwk(RSA_OTHER_PRIVATE, Algorithm::RS256, "b");
        assert_ne!(a["n"], b["n"]);
    }
}
