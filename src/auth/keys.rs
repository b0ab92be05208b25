//! Verification keys and the algorithms each may verify. The allow-list comes from the key,
//! never from the token: HMAC only with configured secrets, RSA/EC only with public keys, and
//! `none` never (jsonwebtoken cannot even parse it).

use jsonwebtoken::{Algorithm, DecodingKey};

pub(crate) const HMAC_ALGS: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
pub(crate) const RSA_ALGS: &[Algorithm] = &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512];
pub(crate) const EC_ALGS: &[Algorithm] = &[Algorithm::ES256, Algorithm::ES384];

/// Longest `kid` accepted, in a token or a JWKS: it is only ever a map key.
pub(crate) const MAX_KID_BYTES: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Family {
    Hmac,
    Rsa,
    Ec,
}

impl Family {
    /// The family of an accepted algorithm; `None` for every other (PS*, EdDSA).
    pub(crate) fn of(alg: Algorithm) -> Option<Family> {
        if HMAC_ALGS.contains(&alg) {
            Some(Family::Hmac)
        } else if RSA_ALGS.contains(&alg) {
            Some(Family::Rsa)
        } else if EC_ALGS.contains(&alg) {
            Some(Family::Ec)
        } else {
            None
        }
    }
}

/// One key. `kid` is set for keys from a JWKS; configured keys have none and are tried for
/// every token of their family.
pub(crate) struct VerifyKey {
    pub kid: Option<String>,
    pub algs: &'static [Algorithm],
    pub key: DecodingKey,
}

impl VerifyKey {
    pub(crate) fn allows(&self, alg: Algorithm) -> bool {
        self.algs.contains(&alg)
    }
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algs", &self.algs)
            .finish_non_exhaustive()
    }
}

/// The one-algorithm allow-list a JWK's `alg` names, as a `'static` slice.
pub(crate) fn single(alg: Algorithm) -> &'static [Algorithm] {
    match alg {
        Algorithm::HS256 => &[Algorithm::HS256],
        Algorithm::HS384 => &[Algorithm::HS384],
        Algorithm::HS512 => &[Algorithm::HS512],
        Algorithm::RS256 => &[Algorithm::RS256],
        Algorithm::RS384 => &[Algorithm::RS384],
        Algorithm::RS512 => &[Algorithm::RS512],
        Algorithm::ES256 => &[Algorithm::ES256],
        Algorithm::ES384 => &[Algorithm::ES384],
        _ => &[],
    }
}

/// Keys from the config: HMAC secrets and PEM public keys (each named by its config key, which
/// an error names back).
pub(crate) fn configured(
    secrets: &[String],
    pems: &[(String, Vec<u8>)],
) -> Result<Vec<VerifyKey>, (String, String)> {
    let mut keys = Vec::new();
    for (i, s) in secrets.iter().enumerate() {
        if s.is_empty() {
            return Err((
                format!("auth.symmetric_secrets[{i}]"),
                "must not be empty".into(),
            ));
        }
        keys.push(VerifyKey {
            kid: None,
            algs: HMAC_ALGS,
            key: DecodingKey::from_secret(s.as_bytes()),
        });
    }
    for (name, pem) in pems {
        let (algs, key) = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            (RSA_ALGS, k)
        } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
            (EC_ALGS, k)
        } else {
            return Err((name.clone(), "not a PEM RSA or EC public key".into()));
        };
        keys.push(VerifyKey {
            kid: None,
            algs,
            key,
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_exclude_none_pss_and_eddsa() {
        assert_eq!(Family::of(Algorithm::HS384), Some(Family::Hmac));
        assert_eq!(Family::of(Algorithm::RS512), Some(Family::Rsa));
        assert_eq!(Family::of(Algorithm::ES256), Some(Family::Ec));
        for alg in [Algorithm::PS256, Algorithm::EdDSA] {
            assert_eq!(Family::of(alg), None);
        }
    }

    #[test]
    fn configured_keys_name_the_bad_entry() {
        let err = configured(&["".into()], &[]).unwrap_err();
        assert_eq!(err.0, "auth.symmetric_secrets[0]");
        let err = configured(
            &[],
            &[("auth.public_key_files[0]".into(), b"nope".to_vec())],
        )
        .unwrap_err();
        assert_eq!(err.0, "auth.public_key_files[0]");
        let rsa = include_bytes!("../../tests/support/keys/rsa_public.pem").to_vec();
        let ec = include_bytes!("../../tests/support/keys/ec_public.pem").to_vec();
        let keys = configured(&["s".into()], &[("a".into(), rsa), ("b".into(), ec)]).unwrap();
        let algs: Vec<_> = keys.iter().map(|k| k.algs).collect();
        assert_eq!(algs, [HMAC_ALGS, RSA_ALGS, EC_ALGS]);
    }
}
