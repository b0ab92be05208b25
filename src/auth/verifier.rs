//! Token verification as a request sees it: the verified-token cache first, then the
//! configured keys and the UAA keys, and, when a token names a key brokergate does not have
//! (or fails every key, or names another issuer than discovery said), one refresh of the UAA
//! key set and one more try.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use jsonwebtoken::Header;

use super::cache::{self, TokenCache};
use super::claims::{verify_with, Checks, Verified};
use super::keys::{self, Family, VerifyKey, MAX_KID_BYTES};
use super::uaa::{self, KeyState, SourceSettings, UaaSettings, UaaSource};
use super::{AuthError, Identity, InvalidReason};

/// Claim checks and cache size shared by every key.
#[derive(Debug, Clone)]
pub struct VerifierSettings {
    pub audience: String,
    /// `[auth] issuer`; when `None` and a UAA is configured, the discovery document's.
    pub issuer: Option<String>,
    pub leeway_seconds: u64,
    /// Verified tokens kept; 0 turns the cache off.
    pub cache_size: usize,
}

/// Every key a configuration trusts, and the verified-token cache. Built anew by every
/// (re)load, so changed secrets or PEM keys take effect and cached verifications go with the
/// old configuration; the UAA key set itself is shared across reloads.
pub struct Verifier {
    settings: VerifierSettings,
    configured: Vec<VerifyKey>,
    /// The shared key set, and this configuration's refresh settings for it.
    uaa: Option<(Arc<UaaSource>, SourceSettings)>,
    /// Whether the settings were given to the shared key set: on first use, because a
    /// configuration that a reload refuses must change nothing.
    in_use: AtomicBool,
    cache: Option<TokenCache>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("settings", &self.settings)
            .field("configured_keys", &self.configured.len())
            .field("uaa_url", &self.uaa.as_ref().map(|(u, _)| &u.url))
            .finish_non_exhaustive()
    }
}

/// Why one attempt failed, and whether fresher UAA keys could change the answer.
struct Failure {
    reason: InvalidReason,
    refresh: bool,
}

impl Failure {
    fn last(reason: InvalidReason) -> Failure {
        Failure {
            reason,
            refresh: false,
        }
    }
}

/// What `iss` must be.
enum Issuer<'a> {
    Any,
    Exactly(&'a str),
    /// From discovery, which has not been read yet: no token passes.
    NotYetKnown,
}

impl Verifier {
    /// Secrets and PEMs as in [`keys::configured`]; errors name the config key.
    pub fn build(
        settings: VerifierSettings,
        secrets: &[String],
        pems: &[(String, Vec<u8>)],
        uaa: Option<&UaaSettings>,
    ) -> Result<Verifier, (String, String)> {
        let configured = keys::configured(secrets, pems)?;
        let uaa = uaa
            .map(uaa::source)
            .transpose()
            .map_err(|reason| ("auth.uaa_url".to_string(), reason))?;
        Ok(Verifier::assemble(settings, configured, uaa))
    }

    fn assemble(
        settings: VerifierSettings,
        configured: Vec<VerifyKey>,
        uaa: Option<(Arc<UaaSource>, SourceSettings)>,
    ) -> Verifier {
        let cache = TokenCache::new(settings.cache_size);
        Verifier {
            settings,
            configured,
            uaa,
            in_use: AtomicBool::new(false),
            cache,
        }
    }

    /// The shared key set, given this configuration's settings on first use.
    fn source(&self) -> Option<&Arc<UaaSource>> {
        let (source, settings) = self.uaa.as_ref()?;
        if !self.in_use.load(Ordering::Relaxed) {
            source.update(*settings);
            self.in_use.store(true, Ordering::Relaxed);
        }
        Some(source)
    }

    /// False while a configured UAA's keys have never been read: readiness should say so.
    pub fn keys_loaded(&self) -> bool {
        self.uaa.as_ref().is_none_or(|(u, _)| u.loaded())
    }

    /// Verifies the token and returns the caller. May wait for one UAA key refresh.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let invalid = |reason| AuthError::Invalid(reason);
        let now = crate::clock::now_unix();
        let state = self.source().map(|u| u.current());
        let generation = state.as_ref().map_or(0, |s| s.generation);
        let digest = self.cache.as_ref().map(|_| cache::digest(token));
        if let (Some(cache), Some(digest)) = (&self.cache, &digest) {
            if let Some(mut identity) = cache.get(digest, generation, now) {
                identity.token = super::BearerToken::new(token);
                return Ok(identity);
            }
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| invalid(InvalidReason::Malformed))?;
        let (verified, generation) = match self.attempt(token, &header, state.as_deref(), now) {
            Ok(v) => (v, generation),
            Err(Failure {
                reason,
                refresh: true,
            }) => {
                let Some(uaa) = self.source() else {
                    return Err(invalid(reason));
                };
                let fresh = uaa.refresh_after(generation).await;
                if fresh.generation == generation {
                    return Err(invalid(reason));
                }
                let v = self
                    .attempt(token, &header, Some(&fresh), crate::clock::now_unix())
                    .map_err(|f| invalid(f.reason))?;
                (v, fresh.generation)
            }
            Err(f) => return Err(invalid(f.reason)),
        };
        if let (Some(cache), Some(digest)) = (&self.cache, digest) {
            cache.insert(
                digest,
                verified.identity.clone(),
                verified.exp,
                generation,
                now,
            );
        }
        let mut identity = verified.identity;
        identity.token = super::BearerToken::new(token);
        Ok(identity)
    }

    /// One try with the keys at hand.
    fn attempt(
        &self,
        token: &str,
        header: &Header,
        state: Option<&KeyState>,
        now: i64,
    ) -> Result<Verified, Failure> {
        let alg = header.alg;
        let family = Family::of(alg).ok_or(Failure::last(InvalidReason::AlgNotAllowed))?;
        let kid = header.kid.as_deref();
        if kid.is_some_and(|k| k.len() > MAX_KID_BYTES) {
            return Err(Failure::last(InvalidReason::Malformed));
        }
        // UAA never supplies HMAC keys, so only RSA/EC tokens can gain from a refresh.
        let remote = self.uaa.is_some() && family != Family::Hmac;
        let published: &[VerifyKey] = state.map_or(&[], |s| &s.keys);
        let kid_known = kid.is_some_and(|k| published.iter().any(|p| p.kid.as_deref() == Some(k)));
        let candidates = published
            .iter()
            .filter(|p| kid.is_none() || p.kid.as_deref() == kid)
            .chain(&self.configured)
            .filter(|k| k.allows(alg));
        let issuer = self.issuer(state);
        let checks = Checks {
            audience: &self.settings.audience,
            issuer: match issuer {
                Issuer::Exactly(iss) => Some(iss),
                Issuer::Any | Issuer::NotYetKnown => None,
            },
            leeway_seconds: self.settings.leeway_seconds,
            now,
        };
        // Only an issuer read from discovery can change by re-reading it.
        let discovered = self.uaa.is_some() && self.settings.issuer.is_none();
        let mut tried = false;
        for key in candidates {
            tried = true;
            match verify_with(token, alg, &key.key, &checks) {
                Ok(_) if matches!(issuer, Issuer::NotYetKnown) => {
                    return Err(Failure {
                        reason: InvalidReason::WrongIssuer,
                        refresh: true,
                    })
                }
                Ok(v) => return Ok(v),
                Err(InvalidReason::BadSignature) => continue,
                Err(InvalidReason::WrongIssuer) => {
                    return Err(Failure {
                        reason: InvalidReason::WrongIssuer,
                        refresh: discovered,
                    })
                }
                // The signature matched: the token itself is refused, no key will change that.
                Err(reason) => return Err(Failure::last(reason)),
            }
        }
        let unknown_kid = remote && !kid_known && (kid.is_some() || !tried);
        let reason = if unknown_kid {
            InvalidReason::UnknownKey
        } else if tried {
            InvalidReason::BadSignature
        } else {
            InvalidReason::AlgNotAllowed
        };
        Err(Failure {
            reason,
            refresh: remote,
        })
    }

    fn issuer<'a>(&'a self, state: Option<&'a KeyState>) -> Issuer<'a> {
        if let Some(iss) = &self.settings.issuer {
            return Issuer::Exactly(iss);
        }
        match state {
            None => Issuer::Any,
            Some(KeyState {
                issuer: Some(iss), ..
            }) => Issuer::Exactly(iss),
            Some(_) => Issuer::NotYetKnown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::uaa::test_support::*;
    use async_trait::async_trait;
    use jsonwebtoken::{encode, Algorithm, EncodingKey};
    use serde_json::{json, Value};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    const ISSUER: &str = "https://uaa.test/oauth/token";

    /// A UAA serving `doc` (a JWKS), or down when it is `None`.
    struct FakeUaa {
        doc: Mutex<Option<Value>>,
        issuer: Mutex<String>,
        fetches: AtomicUsize,
    }

    #[async_trait]
    impl Fetch for Arc<FakeUaa> {
        async fn fetch(&self, options: FetchOptions) -> Result<Fetched, String> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let doc = self.doc.lock().unwrap().clone().ok_or("down")?;
            assert!(options.timeout > Duration::ZERO);
            let issuer = self.issuer.lock().unwrap().clone();
            let text = doc.to_string();
            let (keys, skipped) = parse_jwks(text.as_bytes())?;
            Ok(Fetched {
                keys,
                fingerprint: cache::digest(&format!("{text}{issuer:?}")),
                issuer,
                skipped,
            })
        }
    }

    impl FakeUaa {
        fn publish(&self, keys: &[Value]) {
            *self.doc.lock().unwrap() = Some(json!({ "keys": keys }));
        }
        fn count(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    fn key1() -> Value {
        jwk(RSA_PRIVATE, Algorithm::RS256, "key-1")
    }
    fn key2() -> Value {
        jwk(RSA_OTHER_PRIVATE, Algorithm::RS256, "key-2")
    }

    struct Setup {
        uaa: Arc<FakeUaa>,
        verifier: Verifier,
    }

    fn setup(secrets: &[&str], issuer: Option<&str>, cache_size: usize) -> Setup {
        let uaa = Arc::new(FakeUaa {
            doc: Mutex::new(Some(json!({ "keys": [key1()] }))),
            issuer: Mutex::new(ISSUER.into()),
            fetches: AtomicUsize::new(0),
        });
        let s = settings(Duration::ZERO);
        let source = Arc::new(UaaSource::new(
            "http://uaa.test".into(),
            s,
            Box::new(uaa.clone()),
        ));
        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        let settings = VerifierSettings {
            audience: "cloud_controller".into(),
            issuer: issuer.map(str::to_string),
            leeway_seconds: 0,
            cache_size,
        };
        let configured = keys::configured(&secrets, &[]).unwrap();
        Setup {
            uaa,
            verifier: Verifier::assemble(settings, configured, Some((source, s))),
        }
    }

    fn claims() -> Value {
        json!({"user_id": "u1", "scope": ["cloud_controller.write"], "iss": ISSUER,
               "aud": ["cloud_controller"], "exp": crate::clock::now_unix() + 600, "jti": "abc"})
    }

    fn sign(alg: Algorithm, pem: &[u8], kid: Option<&str>, claims: &Value) -> String {
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem).unwrap(),
            _ => EncodingKey::from_rsa_pem(pem).unwrap(),
        };
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        encode(&header, claims, &key).unwrap()
    }

    fn rs(kid: Option<&str>) -> String {
        sign(Algorithm::RS256, RSA_PRIVATE, kid, &claims())
    }

    fn err(reason: InvalidReason) -> Result<Identity, AuthError> {
        Err(AuthError::Invalid(reason))
    }

    #[tokio::test]
    async fn jwks_key_verifies_by_kid_after_one_load() {
        let s = setup(&[], None, 100);
        assert!(!s.verifier.keys_loaded());
        let id = s.verifier.verify(&rs(Some("key-1"))).await.unwrap();
        assert_eq!(id.user_id, "u1");
        assert!(s.verifier.keys_loaded());
        // A token without kid is tried against every published key.
        assert!(s.verifier.verify(&rs(None)).await.is_ok());
        assert_eq!(s.uaa.count(), 1);
    }

    #[tokio::test]
    async fn rotation_accepts_the_new_kid_and_drops_the_removed_one_and_its_cache() {
        let s = setup(&[], None, 100);
        let old = rs(Some("key-1"));
        assert!(s.verifier.verify(&old).await.is_ok());
        assert!(s.verifier.verify(&old).await.is_ok(), "now from the cache");
        s.uaa.publish(&[key2()]);
        let new = sign(
            Algorithm::RS256,
            RSA_OTHER_PRIVATE,
            Some("key-2"),
            &claims(),
        );
        assert!(s.verifier.verify(&new).await.is_ok());
        assert_eq!(s.uaa.count(), 2, "one load, one refresh");
        assert_eq!(
            s.verifier.verify(&old).await,
            err(InvalidReason::UnknownKey)
        );
    }

    #[tokio::test]
    async fn unknown_kid_is_refused_after_one_refresh() {
        let s = setup(&[], None, 100);
        assert!(s.verifier.verify(&rs(Some("key-1"))).await.is_ok());
        let forged = sign(Algorithm::RS256, RSA_OTHER_PRIVATE, Some("nope"), &claims());
        assert_eq!(
            s.verifier.verify(&forged).await,
            err(InvalidReason::UnknownKey)
        );
        assert_eq!(s.uaa.count(), 2);
        // Signed by another key under a published kid: bad signature.
        let wrong = sign(
            Algorithm::RS256,
            RSA_OTHER_PRIVATE,
            Some("key-1"),
            &claims(),
        );
        assert_eq!(
            s.verifier.verify(&wrong).await,
            err(InvalidReason::BadSignature)
        );
    }

    #[tokio::test]
    async fn hs256_signed_with_the_public_key_never_uses_rsa_keys() {
        let s = setup(&[], None, 100);
        assert!(s.verifier.verify(&rs(Some("key-1"))).await.is_ok());
        let n = key1()["n"].as_str().unwrap().to_string();
        for secret in [n.as_bytes(), RSA_PRIVATE] {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("key-1".into());
            let t = encode(&header, &claims(), &EncodingKey::from_secret(secret)).unwrap();
            assert_eq!(
                s.verifier.verify(&t).await,
                err(InvalidReason::AlgNotAllowed)
            );
        }
        assert_eq!(s.uaa.count(), 1, "HMAC tokens never refresh UAA keys");
        // With a configured secret beside UAA, HS256 is verified with that secret only.
        let s = setup(&["tokensecret"], None, 100);
        let t = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(n.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            s.verifier.verify(&t).await,
            err(InvalidReason::BadSignature)
        );
        let t = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"tokensecret"),
        )
        .unwrap();
        assert!(s.verifier.verify(&t).await.is_ok());
    }

    #[tokio::test]
    async fn issuer_comes_from_discovery_and_is_reread_once_on_mismatch() {
        let s = setup(&[], None, 100);
        assert!(s.verifier.verify(&rs(Some("key-1"))).await.is_ok());
        let mut c = claims();
        c["iss"] = json!("https://evil/oauth/token");
        let evil = sign(Algorithm::RS256, RSA_PRIVATE, Some("key-1"), &c);
        assert_eq!(
            s.verifier.verify(&evil).await,
            err(InvalidReason::WrongIssuer)
        );
        assert_eq!(s.uaa.count(), 2, "discovery re-read once");
        // UAA's issuer changes: the re-read picks it up.
        *s.uaa.issuer.lock().unwrap() = "https://new/oauth/token".into();
        c["iss"] = json!("https://new/oauth/token");
        let moved = sign(Algorithm::RS256, RSA_PRIVATE, Some("key-1"), &c);
        assert!(s.verifier.verify(&moved).await.is_ok());
    }

    #[tokio::test]
    async fn configured_issuer_wins_over_discovery() {
        let s = setup(&[], Some("https://configured/oauth/token"), 100);
        assert_eq!(
            s.verifier.verify(&rs(Some("key-1"))).await,
            err(InvalidReason::WrongIssuer)
        );
        let mut c = claims();
        c["iss"] = json!("https://configured/oauth/token");
        let t = sign(Algorithm::RS256, RSA_PRIVATE, Some("key-1"), &c);
        assert!(s.verifier.verify(&t).await.is_ok());
    }

    #[tokio::test]
    async fn uaa_down_then_up() {
        let s = setup(&[], None, 100);
        *s.uaa.doc.lock().unwrap() = None;
        assert_eq!(
            s.verifier.verify(&rs(Some("key-1"))).await,
            err(InvalidReason::UnknownKey)
        );
        assert!(!s.verifier.keys_loaded());
        s.uaa.publish(&[key1()]);
        assert!(s.verifier.verify(&rs(Some("key-1"))).await.is_ok());
        assert!(s.verifier.keys_loaded());
        // Down again: the last good keys stay.
        *s.uaa.doc.lock().unwrap() = None;
        let unknown = sign(
            Algorithm::RS256,
            RSA_OTHER_PRIVATE,
            Some("key-9"),
            &claims(),
        );
        assert_eq!(
            s.verifier.verify(&unknown).await,
            err(InvalidReason::UnknownKey)
        );
        assert!(s.verifier.verify(&rs(Some("key-1"))).await.is_ok());
    }

    #[tokio::test]
    async fn ec_keys_from_jwks_verify_es256_only() {
        let s = setup(&[], None, 0);
        s.uaa.publish(&[jwk(EC_PRIVATE, Algorithm::ES256, "ec-1")]);
        let t = sign(Algorithm::ES256, EC_PRIVATE, Some("ec-1"), &claims());
        assert!(s.verifier.verify(&t).await.is_ok());
        let rs_with_ec_kid = sign(Algorithm::RS256, RSA_PRIVATE, Some("ec-1"), &claims());
        assert_eq!(
            s.verifier.verify(&rs_with_ec_kid).await,
            err(InvalidReason::AlgNotAllowed)
        );
    }

    #[tokio::test]
    async fn kid_is_bounded_and_garbage_is_malformed() {
        let s = setup(&[], None, 100);
        let long = "k".repeat(MAX_KID_BYTES + 1);
        assert_eq!(
            s.verifier.verify(&rs(Some(&long))).await,
            err(InvalidReason::Malformed)
        );
        assert_eq!(
            s.verifier.verify("garbage").await,
            err(InvalidReason::Malformed)
        );
        assert_eq!(s.uaa.count(), 0);
    }

    #[tokio::test]
    async fn cached_tokens_still_expire_and_a_new_configuration_starts_empty() {
        let s = setup(&[], None, 100);
        let mut c = claims();
        c["exp"] = json!(crate::clock::now_unix() + 2);
        let t = sign(Algorithm::RS256, RSA_PRIVATE, Some("key-1"), &c);
        assert!(s.verifier.verify(&t).await.is_ok());
        assert!(s.verifier.verify(&t).await.is_ok());
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(s.verifier.verify(&t).await, err(InvalidReason::Expired));
    }

    #[tokio::test]
    async fn a_configuration_changes_the_shared_key_set_only_once_in_use() {
        let build = |interval: u64| {
            let settings = VerifierSettings {
                audience: "cloud_controller".into(),
                issuer: None,
                leeway_seconds: 0,
                cache_size: 10,
            };
            let uaa = UaaSettings {
                url: "http://verifier-in-use.invalid:1".into(),
                min_refresh_interval: Duration::from_secs(interval),
                max_age: None,
                timeout: Duration::from_secs(1),
            };
            Verifier::build(settings, &[], &[], Some(&uaa)).unwrap()
        };
        let interval = |v: &Verifier| v.uaa.as_ref().unwrap().0.settings().min_interval;
        let running = build(30);
        // A reload builds the next configuration (it may still be refused): nothing changes.
        let next = build(5);
        assert!(Arc::ptr_eq(
            &running.uaa.as_ref().unwrap().0,
            &next.uaa.as_ref().unwrap().0
        ));
        assert_eq!(interval(&running), Duration::from_secs(30));
        // Swapped in, it serves a request: now its settings apply.
        assert!(next.verify("garbage").await.is_err());
        assert_eq!(interval(&running), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn static_only_verifier_is_always_loaded() {
        let settings = VerifierSettings {
            audience: "cloud_controller".into(),
            issuer: None,
            leeway_seconds: 0,
            cache_size: 10,
        };
        let v = Verifier::build(settings, &["tokensecret".into()], &[], None).unwrap();
        assert!(v.keys_loaded());
        let t = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"tokensecret"),
        )
        .unwrap();
        assert!(v.verify(&t).await.is_ok());
        let rs = rs(None);
        assert_eq!(v.verify(&rs).await, err(InvalidReason::AlgNotAllowed));
    }
}
