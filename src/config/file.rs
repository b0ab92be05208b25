//! The config file model: exactly what an operator writes in TOML (or overrides from the
//! environment). Nothing here is validated beyond types; `runtime.rs` turns it into a
//! checked [`crate::config::Runtime`].

use serde::Deserialize;

/// The whole file. Every section has defaults, so a file may name only what it changes,
/// and keys added by later versions never break an older file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub server: ServerSection,
    pub log: LogSection,
    pub auth: AuthSection,
    pub store: StoreSection,
    pub upstream: Option<UpstreamSection>,
    pub authorization: AuthorizationSection,
    pub brokers: Vec<BrokerSection>,
    pub services: Vec<ServiceSection>,
    pub plans: Vec<PlanSection>,
    pub spaces: Vec<SpaceSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// API listener (clients talk to this).
    pub listen: String,
    /// Operations listener: /metrics, /healthz, /readyz, POST /-/reload.
    pub admin_listen: String,
    /// Largest accepted request body; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Provision into spaces that `[[spaces]]` does not list, with a null organization.
    pub accept_unknown_spaces: bool,
    /// Worker threads of the API service.
    pub threads: usize,
    /// Let idle worker threads take tasks queued on busy ones (tokio's multi-thread scheduler);
    /// off: one single-threaded runtime per thread, each connection on a random one.
    pub work_stealing: bool,
    /// How long SIGTERM waits for in-flight requests before exiting.
    pub grace_period_seconds: u64,
    /// Pingora's graceful-upgrade socket (SIGQUIT + `run --upgrade`).
    pub upgrade_sock: String,
    /// Pingora's pid file (used by daemon mode and upgrades).
    pub pid_file: String,
    /// Largest accepted bearer token, in bytes.
    pub max_token_bytes: usize,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:9102".into(),
            max_body_bytes: 65536,
            accept_unknown_spaces: false,
            threads: 2,
            work_stealing: false,
            grace_period_seconds: 10,
            upgrade_sock: "/tmp/brokergate_upgrade.sock".into(),
            pid_file: "/tmp/brokergate.pid".into(),
            max_token_bytes: 16 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// Level of the diagnostic log on stderr (`RUST_LOG`, when set, wins).
    pub level: String,
    /// `text` or `json` for the diagnostic log.
    pub format: String,
    /// One JSON line per request on stdout.
    pub access_log: bool,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
            format: "text".into(),
            access_log: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// Required member of the token's `aud` (the Cloud Controller's UAA resource id).
    pub audience: String,
    /// Required `iss` when not empty.
    pub issuer: String,
    /// HMAC secrets (HS256/384/512); two allow rotation.
    pub symmetric_secrets: Vec<String>,
    /// PEM files holding RSA or EC public keys.
    pub public_key_files: Vec<String>,
    /// Clock leeway for `exp`/`nbf`, in seconds.
    pub leeway_seconds: u64,
    /// UAA base URL: keys from `/token_keys`, the issuer from discovery. Empty: no UAA.
    pub uaa_url: String,
    /// A token with an unknown key starts a UAA key refresh at most this often.
    pub key_refresh_min_interval_seconds: u64,
    /// UAA keys are re-read in the background this long after the last read; 0: only when a
    /// token needs it.
    pub key_max_age_seconds: u64,
    /// Deadline of one UAA fetch (discovery and keys).
    pub uaa_timeout_seconds: u64,
    /// Verified tokens remembered (by SHA-256) until their `exp`; 0 turns the cache off.
    pub verified_token_cache_size: usize,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            audience: "cloud_controller".into(),
            issuer: String::new(),
            symmetric_secrets: Vec::new(),
            public_key_files: Vec::new(),
            leeway_seconds: 0,
            uaa_url: String::new(),
            key_refresh_min_interval_seconds: 30,
            key_max_age_seconds: 600,
            uaa_timeout_seconds: 10,
            verified_token_cache_size: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    pub sqlite_path: String,
    /// `full` (default): a 201 survives power loss. `normal`: survives a process crash only.
    pub synchronous: String,
    /// Who holds this process's reservations; empty: the host name. Processes sharing one
    /// database need distinct owners.
    pub owner: String,
    /// Most read connections open at once.
    pub read_connections: usize,
    /// What a lease adds to the broker calls it covers (store latency, clock skew between
    /// replicas); past it another process may resolve the row.
    pub lease_margin_seconds: u64,
    /// How often expired reservations are released and expired deletes and unbinds finished.
    pub reaper_interval_seconds: u64,
    /// PostgreSQL instead of the embedded SQLite: `postgres://user@host:port/db`, with
    /// `?sslmode=require` or `verify-full` for TLS. Empty: SQLite at `sqlite_path`.
    pub url: String,
    /// The environment variable holding the database password (instead of one in `url`).
    pub password_env: String,
    /// Most PostgreSQL connections this process opens.
    pub pool_size: usize,
    /// Longest a request waits for a pooled connection (connecting included) before 503.
    pub acquire_timeout_seconds: u64,
    /// Longest a new connection may take to be established.
    pub connect_timeout_seconds: u64,
    /// The server cancels a statement running longer (`statement_timeout`).
    pub statement_timeout_seconds: u64,
    /// A connection older than this is closed instead of reused.
    pub max_lifetime_seconds: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            sqlite_path: "data/brokergate.sqlite3".into(),
            synchronous: "full".into(),
            owner: String::new(),
            read_connections: 4,
            lease_margin_seconds: 30,
            reaper_interval_seconds: 30,
            url: String::new(),
            password_env: String::new(),
            pool_size: 16,
            acquire_timeout_seconds: 2,
            connect_timeout_seconds: 2,
            statement_timeout_seconds: 5,
            max_lifetime_seconds: 1800,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// The real Cloud Controller; requests brokergate does not own go here unchanged.
    pub url: String,
    #[serde(default = "default_upstream_connect_timeout")]
    pub connect_timeout_seconds: u64,
    #[serde(default = "default_upstream_timeout")]
    pub timeout_seconds: u64,
}

fn default_upstream_connect_timeout() -> u64 {
    5
}
fn default_upstream_timeout() -> u64 {
    60
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSection {
    pub name: String,
    /// Base URL of the v1 gateway; `/gateway/v1/configurations` is appended.
    pub url: String,
    /// The `X-VCAP-Service-Token`, inline ...
    #[serde(default)]
    pub token: Option<String>,
    /// ... or read from this environment variable.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Whole-response deadline of one broker call.
    #[serde(default = "default_broker_timeout")]
    pub timeout_seconds: u64,
    /// TCP (and TLS) connect deadline.
    #[serde(default = "default_broker_timeout")]
    pub connect_timeout_seconds: u64,
}

fn default_broker_timeout() -> u64 {
    60
}

/// A service offering: what the Cloud Controller calls a service, and v1 a label and version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// The Cloud Controller service guid (instances show it as `service_guid`).
    pub guid: String,
    pub label: String,
    #[serde(default)]
    pub provider: Option<String>,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// The v1 gateway that provisions it.
    pub broker: String,
    /// The offering's URL as the catalog shows it; default: its broker's URL (without
    /// credentials), what a v1 gateway advertised.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub long_description: Option<String>,
    #[serde(default)]
    pub info_url: Option<String>,
    #[serde(default)]
    pub documentation_url: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// A JSON document, shown as a string (`extra`), as the Cloud Controller keeps it.
    #[serde(default)]
    pub extra: Option<String>,
    /// Default: the service guid.
    #[serde(default)]
    pub unique_id: Option<String>,
    #[serde(default = "default_true")]
    pub bindable: bool,
    /// `false`: shown, but no new instances of its plans.
    #[serde(default = "default_true")]
    pub active: bool,
}

/// A plan. It names its offering with `service`, or — the older form — carries the offering's
/// `broker`, `label`, `version` and `provider` itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSection {
    /// The Cloud Controller plan guid clients send as `service_plan_guid`.
    pub guid: String,
    /// The guid of a `[[services]]` entry.
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub broker: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    /// The plan name sent as `plan`.
    pub name: String,
    /// The plan's unique id sent as `unique_id`.
    pub unique_id: String,
    /// Visible to every organization (the default); `false`: only to `organizations`.
    #[serde(default = "default_true")]
    pub public: bool,
    /// The organizations a plan with `public = false` is visible to.
    #[serde(default)]
    pub organizations: Vec<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_true")]
    pub free: bool,
    /// A JSON document, shown as a string (`extra`).
    #[serde(default)]
    pub extra: Option<String>,
    /// `false`: shown, but no new instances (400 60003 `not a valid service plan`).
    #[serde(default = "default_true")]
    pub active: bool,
}

fn default_true() -> bool {
    true
}

/// A space brokergate provisions into under `[authorization] source = "static"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceSection {
    pub guid: String,
    pub organization_guid: String,
    /// User ids that may create, change and delete instances here (space developers). When
    /// none of the three lists is given, every token with the route's scope may.
    #[serde(default)]
    pub developers: Option<Vec<String>>,
    /// User ids that may only read (space auditors).
    #[serde(default)]
    pub auditors: Option<Vec<String>>,
    /// User ids that may only read (space managers).
    #[serde(default)]
    pub managers: Option<Vec<String>>,
}

/// Who decides whether a caller may act in a space.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorizationSection {
    /// `cloud_controller` (ask `[upstream]`'s v3 API with the caller's token) or `static`
    /// (`[[spaces]]` and their role lists). Unset: `cloud_controller` when `[upstream]` is
    /// configured, else `static`.
    pub source: Option<String>,
    /// How long an answer of the Cloud Controller is reused for the same user and question
    /// (never beyond the token's `exp`); 0 turns caching off.
    pub cache_seconds: u64,
    /// Most answers remembered.
    pub cache_size: usize,
    /// Deadline of one Cloud Controller call (connect included); past it: 503.
    pub timeout_seconds: u64,
}

impl Default for AuthorizationSection {
    fn default() -> Self {
        AuthorizationSection {
            source: None,
            cache_seconds: 10,
            cache_size: 10_000,
            timeout_seconds: 5,
        }
    }
}
