//! The validated configuration every request reads: brokers resolved, tokens loaded, keys
//! parsed, plans and spaces indexed. A `Runtime` is immutable; reloads build a new one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::file::FileConfig;
use super::offerings;
use super::{ConfigError, Target};
use crate::auth::{UaaSettings, Verifier, VerifierSettings};

/// A secret string whose `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// One v1 gateway.
#[derive(Debug)]
pub struct Broker {
    pub name: String,
    pub target: Target,
    pub token: Secret,
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

/// A service offering: the v1 label, version and provider, and the broker behind it.
#[derive(Debug)]
pub struct Service {
    /// The Cloud Controller service guid: declared, or derived from label and version.
    pub guid: String,
    pub label: String,
    pub provider: Option<String>,
    pub version: String,
    pub description: String,
    pub broker: Arc<Broker>,
    /// What the catalog shows of it.
    pub listing: ServiceListing,
}

/// An offering's catalog fields beyond what provisioning needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceListing {
    pub url: String,
    pub long_description: Option<String>,
    pub info_url: Option<String>,
    pub documentation_url: Option<String>,
    pub tags: Vec<String>,
    /// JSON text, validated at load.
    pub extra: Option<String>,
    pub unique_id: String,
    pub bindable: bool,
    pub active: bool,
}

/// One plan brokergate serves, with everything the v1 provision request needs.
#[derive(Debug)]
pub struct Plan {
    pub guid: String,
    pub service: Arc<Service>,
    /// The offering's broker.
    pub broker: Arc<Broker>,
    pub name: String,
    pub unique_id: String,
    pub visibility: Visibility,
    pub description: String,
    pub free: bool,
    /// JSON text, validated at load.
    pub extra: Option<String>,
    /// `false` (or an inactive offering): no new instances.
    pub active: bool,
}

/// Which organizations may create instances of a plan (`[[plans]] public`, `organizations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    Public,
    /// `public = false`: these organizations only.
    Organizations(Vec<String>),
}

impl Visibility {
    /// Whether the plan may be used in `organization`; an unknown organization (a space
    /// `accept_unknown_spaces` let through) sees public plans only.
    pub fn admits(&self, organization: Option<&str>) -> bool {
        match self {
            Visibility::Public => true,
            Visibility::Organizations(orgs) => {
                organization.is_some_and(|o| orgs.iter().any(|g| g == o))
            }
        }
    }
}

/// Who decides whether a caller may act in a space (`[authorization] source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationSource {
    /// `[[spaces]]` and their optional role lists; scopes only where a space has none.
    Static,
    /// The `[upstream]` Cloud Controller's v3 API, asked with the caller's own token.
    CloudController,
}

/// `[authorization]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub source: AuthorizationSource,
    /// How long an answer is reused; zero: not at all.
    pub cache_ttl: Duration,
    pub cache_size: u64,
    /// Deadline of one Cloud Controller call, connecting included.
    pub timeout: Duration,
}

/// A space of `[[spaces]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceEntry {
    pub organization_guid: String,
    /// The space's role lists, when any was given.
    pub roles: Option<SpaceRoles>,
}

/// Who holds which role in a static space (user ids).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpaceRoles {
    pub developers: Vec<String>,
    pub auditors: Vec<String>,
    pub managers: Vec<String>,
}

impl SpaceRoles {
    pub fn is_developer(&self, user_id: &str) -> bool {
        self.developers.iter().any(|u| u == user_id)
    }

    /// Any role lets a user see the space.
    pub fn is_member(&self, user_id: &str) -> bool {
        [&self.developers, &self.auditors, &self.managers]
            .iter()
            .any(|list| list.iter().any(|u| u == user_id))
    }
}

#[derive(Debug)]
pub struct Upstream {
    pub target: Target,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

/// The live configuration every request reads: what a reload swaps in. Settings bound at
/// start are not here but in [`super::StartSettings`].
#[derive(Debug)]
pub struct Runtime {
    /// One JSON line per request on stdout.
    pub access_log: bool,
    pub max_body_bytes: usize,
    pub max_token_bytes: usize,
    pub accept_unknown_spaces: bool,
    /// Token verification; `keys.keys_loaded()` is false until a configured UAA was read.
    pub keys: Verifier,
    pub upstream: Option<Upstream>,
    pub brokers: Vec<Arc<Broker>>,
    pub authorization: Authorization,
    /// Distinct for every configuration loaded by this process: what a cache of answers that
    /// depend on the configuration (the authorization cache) compares to empty itself.
    pub generation: u64,
    /// When this configuration was loaded (Unix seconds): the `created_at` the catalog shows
    /// for the offerings and plans it defines.
    pub loaded_at: i64,
    plans: HashMap<String, Plan>,
    spaces: HashMap<String, SpaceEntry>,
    /// Whether any space has role lists.
    static_roles: bool,
}

/// Numbers the configurations this process loads.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Pingora replays a body it already read (for pass-through) only from its 64 KiB retry buffer.
pub const MAX_BODY_LIMIT: usize = 64 * 1024;

impl Runtime {
    /// Validates everything a request could trip over later. Relative paths are relative to
    /// the working directory; `env` looks up `token_env` variables.
    pub fn from_file(
        file: &FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Runtime, ConfigError> {
        let server = &file.server;
        if server.max_body_bytes == 0 || server.max_body_bytes > MAX_BODY_LIMIT {
            return Err(ConfigError::invalid(
                "server.max_body_bytes",
                format!("must be between 1 and {MAX_BODY_LIMIT}"),
            ));
        }

        let keys = load_keys(file)?;
        let upstream = file
            .upstream
            .as_ref()
            .map(|u| {
                Ok::<_, ConfigError>(Upstream {
                    target: Target::parse("upstream.url", &u.url)?,
                    connect_timeout: seconds(
                        "upstream.connect_timeout_seconds",
                        u.connect_timeout_seconds,
                    )?,
                    timeout: seconds("upstream.timeout_seconds", u.timeout_seconds)?,
                })
            })
            .transpose()?;

        let mut brokers: HashMap<&str, Arc<Broker>> = HashMap::new();
        let mut broker_list = Vec::new();
        for (i, b) in file.brokers.iter().enumerate() {
            let key = |k: &str| format!("brokers[{i}].{k}");
            if b.name.is_empty() {
                return Err(ConfigError::invalid(key("name"), "must not be empty"));
            }
            let token = match (&b.token, &b.token_env) {
                (Some(t), None) if !t.is_empty() => Secret::new(t.clone()),
                (None, Some(var)) => {
                    Secret::new(env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                        ConfigError::invalid(
                            key("token_env"),
                            format!("environment variable {var} is not set"),
                        )
                    })?)
                }
                (Some(_), Some(_)) => {
                    return Err(ConfigError::invalid(
                        key("token"),
                        "set token or token_env, not both",
                    ))
                }
                _ => {
                    return Err(ConfigError::invalid(
                        key("token"),
                        "missing (set token or token_env)",
                    ))
                }
            };
            let broker = Arc::new(Broker {
                name: b.name.clone(),
                target: Target::parse(&key("url"), &b.url)?,
                token,
                timeout: seconds(&key("timeout_seconds"), b.timeout_seconds)?,
                connect_timeout: seconds(
                    &key("connect_timeout_seconds"),
                    b.connect_timeout_seconds,
                )?,
            });
            if brokers.insert(&b.name, broker.clone()).is_some() {
                return Err(ConfigError::invalid(
                    key("name"),
                    format!("duplicate broker {:?}", b.name),
                ));
            }
            broker_list.push(broker);
        }

        let plans = offerings::resolve(&file.services, &file.plans, &brokers)?;

        let authorization = authorization(file)?;
        let mut spaces = HashMap::new();
        for (i, s) in file.spaces.iter().enumerate() {
            if s.guid.is_empty() {
                return Err(ConfigError::invalid(
                    format!("spaces[{i}].guid"),
                    "must not be empty",
                ));
            }
            let listed = [&s.developers, &s.auditors, &s.managers];
            let roles = listed.iter().any(|l| l.is_some()).then(|| SpaceRoles {
                developers: s.developers.clone().unwrap_or_default(),
                auditors: s.auditors.clone().unwrap_or_default(),
                managers: s.managers.clone().unwrap_or_default(),
            });
            let entry = SpaceEntry {
                organization_guid: s.organization_guid.clone(),
                roles,
            };
            if spaces.insert(s.guid.clone(), entry).is_some() {
                return Err(ConfigError::invalid(
                    format!("spaces[{i}].guid"),
                    format!("duplicate space guid {:?}", s.guid),
                ));
            }
        }

        Ok(Runtime {
            access_log: file.log.access_log,
            max_body_bytes: server.max_body_bytes,
            max_token_bytes: server.max_token_bytes,
            accept_unknown_spaces: server.accept_unknown_spaces,
            keys,
            upstream,
            brokers: broker_list,
            authorization,
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            loaded_at: crate::clock::now_unix(),
            static_roles: spaces.values().any(|s| s.roles.is_some()),
            plans,
            spaces,
        })
    }

    pub fn plans(&self) -> impl Iterator<Item = &Plan> {
        self.plans.values()
    }

    pub fn plan(&self, guid: &str) -> Option<&Plan> {
        self.plans.get(guid)
    }

    /// The organization of a configured space.
    pub fn space_organization(&self, space_guid: &str) -> Option<&str> {
        self.spaces
            .get(space_guid)
            .map(|s| s.organization_guid.as_str())
    }

    /// A space of `[[spaces]]`.
    pub fn space(&self, space_guid: &str) -> Option<&SpaceEntry> {
        self.spaces.get(space_guid)
    }

    /// Every space of `[[spaces]]`, by guid.
    pub fn spaces(&self) -> impl Iterator<Item = (&str, &SpaceEntry)> {
        self.spaces.iter().map(|(guid, s)| (guid.as_str(), s))
    }

    /// Whether any `[[spaces]]` entry has role lists: then a space without an entry is
    /// open to read-all tokens only.
    pub fn static_roles(&self) -> bool {
        self.static_roles
    }

    pub fn plan_count(&self) -> usize {
        self.plans.len()
    }

    pub fn space_count(&self) -> usize {
        self.spaces.len()
    }
}

fn seconds(key: &str, value: u64) -> Result<Duration, ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(key, "must be at least 1 second"));
    }
    Ok(Duration::from_secs(value))
}

/// Largest `authorization.cache_seconds`: past an hour a revoked role would linger too long.
const MAX_AUTHORIZATION_CACHE_SECONDS: u64 = 3600;
/// Largest `authorization.cache_size`.
const MAX_AUTHORIZATION_CACHE: usize = 1_000_000;

fn authorization(file: &FileConfig) -> Result<Authorization, ConfigError> {
    let a = &file.authorization;
    let source = match a.source.as_deref() {
        None if file.upstream.is_some() => AuthorizationSource::CloudController,
        None => AuthorizationSource::Static,
        Some("static") => AuthorizationSource::Static,
        Some("cloud_controller") if file.upstream.is_some() => AuthorizationSource::CloudController,
        Some("cloud_controller") => {
            return Err(ConfigError::invalid(
                "authorization.source",
                "cloud_controller needs [upstream] (the Cloud Controller to ask)",
            ))
        }
        Some(other) => {
            return Err(ConfigError::invalid(
                "authorization.source",
                format!("must be cloud_controller or static, not {other:?}"),
            ))
        }
    };
    if a.cache_seconds > MAX_AUTHORIZATION_CACHE_SECONDS {
        return Err(ConfigError::invalid(
            "authorization.cache_seconds",
            format!("must be at most {MAX_AUTHORIZATION_CACHE_SECONDS}"),
        ));
    }
    if a.cache_seconds > 0 && !(1..=MAX_AUTHORIZATION_CACHE).contains(&a.cache_size) {
        return Err(ConfigError::invalid(
            "authorization.cache_size",
            format!("must be between 1 and {MAX_AUTHORIZATION_CACHE} (or cache_seconds 0)"),
        ));
    }
    Ok(Authorization {
        source,
        cache_ttl: Duration::from_secs(a.cache_seconds),
        cache_size: a.cache_size as u64,
        timeout: seconds("authorization.timeout_seconds", a.timeout_seconds)?,
    })
}

/// Largest `auth.verified_token_cache_size`: about 200 bytes an entry.
const MAX_TOKEN_CACHE: usize = 1_000_000;

fn load_keys(file: &FileConfig) -> Result<Verifier, ConfigError> {
    let auth = &file.auth;
    if auth.audience.is_empty() {
        return Err(ConfigError::invalid("auth.audience", "must not be empty"));
    }
    let mut pems = Vec::new();
    for (i, f) in auth.public_key_files.iter().enumerate() {
        let pem = std::fs::read(f).map_err(|e| {
            ConfigError::invalid(format!("auth.public_key_files[{i}]"), format!("{f}: {e}"))
        })?;
        pems.push((format!("auth.public_key_files[{i}]"), pem));
    }
    if auth.verified_token_cache_size > MAX_TOKEN_CACHE {
        return Err(ConfigError::invalid(
            "auth.verified_token_cache_size",
            format!("must be at most {MAX_TOKEN_CACHE}"),
        ));
    }
    let uaa = if auth.uaa_url.is_empty() {
        None
    } else {
        Some(UaaSettings {
            url: auth.uaa_url.clone(),
            // 0 would let every bad token fetch from UAA.
            min_refresh_interval: seconds(
                "auth.key_refresh_min_interval_seconds",
                auth.key_refresh_min_interval_seconds,
            )?,
            max_age: (auth.key_max_age_seconds > 0)
                .then(|| Duration::from_secs(auth.key_max_age_seconds)),
            timeout: seconds("auth.uaa_timeout_seconds", auth.uaa_timeout_seconds)?,
        })
    };
    let settings = VerifierSettings {
        audience: auth.audience.clone(),
        issuer: Some(auth.issuer.clone()).filter(|s| !s.is_empty()),
        leeway_seconds: auth.leeway_seconds,
        cache_size: auth.verified_token_cache_size,
    };
    Verifier::build(settings, &auth.symmetric_secrets, &pems, uaa.as_ref())
        .map_err(|(key, reason)| ConfigError::invalid(key, reason))
}
