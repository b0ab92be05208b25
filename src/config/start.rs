//! Settings bound at start: sockets, threads and scheduler, shutdown timing, the store, the
//! diagnostic log. A reload never changes them — they are not part of the [`Runtime`] a reload
//! swaps in — and names the ones a new file changed, which take a restart (graceful upgrade).
//!
//! [`Runtime`]: super::Runtime

use std::net::SocketAddr;
use std::time::Duration;

use super::file::{FileConfig, StoreSection};
use super::{ConfigError, Secret};
use crate::store::{PgOptions, SqliteOptions, Synchronous};

/// The diagnostic log's line format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The diagnostic log (the access log's switch is live: `Runtime::access_log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `RUST_LOG`, when set, wins.
    pub level: log::LevelFilter,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: log::LevelFilter::Info,
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StartSettings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub threads: usize,
    pub work_stealing: bool,
    pub grace_period_seconds: u64,
    pub upgrade_sock: String,
    pub pid_file: String,
    pub store: StoreSettings,
    pub log: LogSettings,
}

impl StartSettings {
    /// Checks the start-time sections; `env` looks up `store.password_env`.
    pub fn from_file(
        file: &FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<StartSettings, ConfigError> {
        let server = &file.server;
        let address = |key: &str, value: &str| {
            value
                .parse::<SocketAddr>()
                .map_err(|e| ConfigError::invalid(key, format!("{e}: {value:?}")))
        };
        let format = match file.log.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::invalid(
                    "log.format",
                    format!("must be \"text\" or \"json\", not {other:?}"),
                ))
            }
        };
        let level = file.log.level.parse::<log::LevelFilter>().map_err(|_| {
            ConfigError::invalid(
                "log.level",
                format!(
                    "not a level (error, warn, info, debug): {:?}",
                    file.log.level
                ),
            )
        })?;
        if server.threads == 0 {
            return Err(ConfigError::invalid("server.threads", "must be at least 1"));
        }
        Ok(StartSettings {
            listen: address("server.listen", &server.listen)?,
            admin_listen: address("server.admin_listen", &server.admin_listen)?,
            threads: server.threads,
            work_stealing: server.work_stealing,
            grace_period_seconds: server.grace_period_seconds,
            upgrade_sock: server.upgrade_sock.clone(),
            pid_file: server.pid_file.clone(),
            store: StoreSettings::from_section(&file.store, env)?,
            log: LogSettings { level, format },
        })
    }

    /// The keys whose value differs in `other`, as an operator writes them.
    pub fn changed_keys(&self, other: &StartSettings) -> Vec<&'static str> {
        let s = self;
        [
            (s.listen != other.listen, "server.listen"),
            (s.admin_listen != other.admin_listen, "server.admin_listen"),
            (s.threads != other.threads, "server.threads"),
            (
                s.work_stealing != other.work_stealing,
                "server.work_stealing",
            ),
            (
                s.grace_period_seconds != other.grace_period_seconds,
                "server.grace_period_seconds",
            ),
            (s.upgrade_sock != other.upgrade_sock, "server.upgrade_sock"),
            (s.pid_file != other.pid_file, "server.pid_file"),
            (
                s.store.sqlite_path != other.store.sqlite_path,
                "store.sqlite_path",
            ),
            (
                s.store.synchronous != other.store.synchronous,
                "store.synchronous",
            ),
            (s.store.owner != other.store.owner, "store.owner"),
            (
                s.store.read_connections != other.store.read_connections,
                "store.read_connections",
            ),
            (s.store.postgres != other.store.postgres, "store.url"),
            (
                s.store.lease_margin_seconds != other.store.lease_margin_seconds,
                "store.lease_margin_seconds",
            ),
            (
                s.store.reaper_interval != other.store.reaper_interval,
                "store.reaper_interval_seconds",
            ),
            (s.log.level != other.log.level, "log.level"),
            (s.log.format != other.log.format, "log.format"),
        ]
        .into_iter()
        .filter_map(|(changed, key)| changed.then_some(key))
        .collect()
    }
}

/// The `[store]` section, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    pub sqlite_path: String,
    pub synchronous: Synchronous,
    /// This process's lease owner: `[store] owner`, else the host name.
    pub owner: String,
    pub read_connections: usize,
    pub lease_margin_seconds: i64,
    pub reaper_interval: Duration,
    /// `[store] url` set: PostgreSQL, and `sqlite_path` is unused.
    pub postgres: Option<PostgresSettings>,
}

/// Where the PostgreSQL store is and how its pool behaves (`[store] url` and the keys beside).
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresSettings {
    /// The URL as configured: it may hold a password, so only [`Self::display`] is logged.
    pub url: Secret,
    /// `postgres://user@host:port/db`: the URL without password or query.
    pub display: String,
    /// From `password_env`; `None`: the URL's own, or none (trust, peer or TLS auth).
    pub password: Option<Secret>,
    pub pool_size: usize,
    pub acquire_timeout: Duration,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    pub max_lifetime: Duration,
}

/// The `sslmode` values libpq knows; brokergate verifies the server's certificate against
/// the system roots for `require` and stronger.
const SSL_MODES: [&str; 5] = ["disable", "prefer", "require", "verify-ca", "verify-full"];

/// Largest `store.read_connections`: SQLite readers are cheap, but each holds a file handle
/// and a page cache.
const MAX_READ_CONNECTIONS: usize = 64;

impl StoreSettings {
    pub fn from_section(
        section: &StoreSection,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<StoreSettings, ConfigError> {
        let synchronous = match section.synchronous.as_str() {
            "full" => Synchronous::Full,
            "normal" => Synchronous::Normal,
            other => {
                return Err(ConfigError::invalid(
                    "store.synchronous",
                    format!("must be \"full\" or \"normal\", not {other:?}"),
                ))
            }
        };
        let postgres = PostgresSettings::from_section(section, env)?;
        if postgres.is_none() && section.sqlite_path.is_empty() {
            return Err(ConfigError::invalid(
                "store.sqlite_path",
                "must not be empty",
            ));
        }
        if !(1..=MAX_READ_CONNECTIONS).contains(&section.read_connections) {
            return Err(ConfigError::invalid(
                "store.read_connections",
                format!("must be between 1 and {MAX_READ_CONNECTIONS}"),
            ));
        }
        let owner = if section.owner.is_empty() {
            gethostname::gethostname().to_string_lossy().into_owned()
        } else {
            section.owner.clone()
        };
        if owner.is_empty() {
            return Err(ConfigError::invalid(
                "store.owner",
                "the host name is empty: set an owner",
            ));
        }
        Ok(StoreSettings {
            sqlite_path: section.sqlite_path.clone(),
            synchronous,
            owner,
            read_connections: section.read_connections,
            lease_margin_seconds: bounded(
                "store.lease_margin_seconds",
                section.lease_margin_seconds,
                1..=3600,
            )?
            .as_secs() as i64,
            reaper_interval: bounded(
                "store.reaper_interval_seconds",
                section.reaper_interval_seconds,
                1..=3600,
            )?,
            postgres,
        })
    }

    /// How the store is named in logs and `migrate`'s output: the SQLite path or the
    /// PostgreSQL URL without its secrets.
    pub fn describe(&self) -> &str {
        match &self.postgres {
            Some(pg) => &pg.display,
            None => &self.sqlite_path,
        }
    }

    /// How the SQLite store at `sqlite_path` is opened.
    pub fn sqlite_options(&self) -> SqliteOptions {
        SqliteOptions {
            synchronous: self.synchronous,
            read_connections: self.read_connections,
        }
    }
}

impl PostgresSettings {
    /// How the PostgreSQL store is opened.
    pub fn options(&self) -> PgOptions {
        PgOptions {
            url: self.url.expose().to_string(),
            password: self.password.as_ref().map(|p| p.expose().to_string()),
            pool_size: self.pool_size,
            acquire_timeout: self.acquire_timeout,
            connect_timeout: self.connect_timeout,
            statement_timeout: self.statement_timeout,
            max_lifetime: self.max_lifetime,
        }
    }

    /// `None` when `url` is empty (SQLite).
    fn from_section(
        section: &StoreSection,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<PostgresSettings>, ConfigError> {
        if section.url.is_empty() {
            if !section.password_env.is_empty() {
                return Err(ConfigError::invalid(
                    "store.password_env",
                    "set without store.url",
                ));
            }
            return Ok(None);
        }
        // The parser's message may quote the URL, password and all: name the part instead.
        let bad = |why: &str| ConfigError::invalid("store.url", why.to_string());
        let url = url::Url::parse(&section.url).map_err(|e| {
            bad(&format!(
                "not a URL ({e}); expected postgres://user@host:port/db"
            ))
        })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(bad("the scheme must be postgres:// or postgresql://"));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        let database = url.path().trim_start_matches('/');
        if database.is_empty() {
            return Err(bad("no database name (postgres://user@host:port/DATABASE)"));
        }
        for (key, value) in url.query_pairs() {
            if key == "sslmode" && !SSL_MODES.contains(&value.as_ref()) {
                return Err(bad(&format!(
                    "sslmode must be one of {}, not {value:?}",
                    SSL_MODES.join(", ")
                )));
            }
        }
        let password = if section.password_env.is_empty() {
            None
        } else {
            if url.password().is_some() {
                return Err(ConfigError::invalid(
                    "store.password_env",
                    "the URL holds a password already: set one or the other",
                ));
            }
            let value = env(&section.password_env).ok_or_else(|| {
                ConfigError::invalid(
                    "store.password_env",
                    format!("environment variable {} is not set", section.password_env),
                )
            })?;
            Some(Secret::new(value))
        };
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let user = match url.username() {
            "" => String::new(),
            u => format!("{u}@"),
        };
        if !(1..=MAX_POOL_SIZE).contains(&section.pool_size) {
            return Err(ConfigError::invalid(
                "store.pool_size",
                format!("must be between 1 and {MAX_POOL_SIZE}"),
            ));
        }
        Ok(Some(PostgresSettings {
            url: Secret::new(section.url.clone()),
            display: format!("{}://{user}{host}{port}/{database}", url.scheme()),
            password,
            pool_size: section.pool_size,
            acquire_timeout: bounded(
                "store.acquire_timeout_seconds",
                section.acquire_timeout_seconds,
                1..=60,
            )?,
            connect_timeout: bounded(
                "store.connect_timeout_seconds",
                section.connect_timeout_seconds,
                1..=60,
            )?,
            statement_timeout: bounded(
                "store.statement_timeout_seconds",
                section.statement_timeout_seconds,
                1..=3600,
            )?,
            max_lifetime: bounded(
                "store.max_lifetime_seconds",
                section.max_lifetime_seconds,
                60..=86_400,
            )?,
        }))
    }
}

/// `value` seconds, when within `range`.
fn bounded(
    key: &str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    if range.contains(&value) {
        Ok(Duration::from_secs(value))
    } else {
        Err(ConfigError::invalid(
            key,
            format!("must be between {} and {}", range.start(), range.end()),
        ))
    }
}

/// Largest `store.pool_size`: PostgreSQL's default `max_connections` is 100, shared by every
/// replica.
const MAX_POOL_SIZE: usize = 256;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap
    use super::*;

    fn section(url: &str, password_env: &str) -> StoreSection {
        StoreSection {
            url: url.into(),
            password_env: password_env.into(),
            owner: "o".into(),
            ..StoreSection::default()
        }
    }

    fn store(
        s: &StoreSection,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<StoreSettings, ConfigError> {
        StoreSettings::from_section(s, env)
    }

    #[test]
    fn no_url_is_sqlite() {
        let s = store(&section("", ""), &|_| None).unwrap();
        assert!(s.postgres.is_none());
        assert_eq!(s.describe(), "data/brokergate.sqlite3");
    }

    #[test]
    fn a_url_is_postgres_with_the_pool_defaults_and_no_secret_in_its_description() {
        let s = store(
            &section(
                "postgres://bg:hunter2@db.example:5433/brokergate?sslmode=require",
                "",
            ),
            &|_| None,
        )
        .unwrap();
        let pg = s.postgres.as_ref().unwrap();
        assert_eq!(s.describe(), "postgres://bg@db.example:5433/brokergate");
        assert_eq!(pg.pool_size, 16);
        assert_eq!(pg.acquire_timeout, Duration::from_secs(2));
        assert_eq!(pg.statement_timeout, Duration::from_secs(5));
        assert_eq!(pg.max_lifetime, Duration::from_secs(1800));
        assert!(!format!("{s:?}").contains("hunter2"), "{s:?}");
    }

    #[test]
    fn the_password_comes_from_password_env_and_never_shows() {
        let env = |name: &str| (name == "PGPASS").then(|| "s3cret".to_string());
        let s = store(&section("postgres://bg@127.0.0.1/db", "PGPASS"), &env).unwrap();
        let pg = s.postgres.as_ref().unwrap();
        assert_eq!(pg.password.as_ref().unwrap().expose(), "s3cret");
        assert!(!format!("{s:?}").contains("s3cret"));

        let e = store(&section("postgres://bg@127.0.0.1/db", "UNSET"), &env).unwrap_err();
        assert!(e.to_string().contains("store.password_env"), "{e}");
        let e = store(&section("postgres://bg:x@127.0.0.1/db", "PGPASS"), &env).unwrap_err();
        assert!(e.to_string().contains("one or the other"), "{e}");
        let e = store(&section("", "PGPASS"), &env).unwrap_err();
        assert!(e.to_string().contains("without store.url"), "{e}");
    }

    #[test]
    fn bad_urls_name_the_key_and_never_echo_the_password() {
        for (url, why) in [
            ("mysql://u:pw@h/db", "scheme"),
            ("postgres://u:pw@h", "database"),
            ("postgres://u:pw@h/db?sslmode=maybe", "sslmode"),
            ("not a url pw", "not a URL"),
        ] {
            let e = store(&section(url, ""), &|_| None).unwrap_err().to_string();
            assert!(e.contains("store.url") && e.contains(why), "{url}: {e}");
            assert!(!e.contains("pw"), "{url}: {e}");
        }
    }

    #[test]
    fn the_url_may_come_from_the_environment() {
        let env = [(
            "BROKERGATE__STORE__URL".to_string(),
            "postgres://bg@127.0.0.1:5432/brokergate".to_string(),
        )];
        let file = crate::config::parse("[store]\nowner = \"o\"\n", env).unwrap();
        let s = store(&file.store, &|_| None).unwrap();
        assert_eq!(s.describe(), "postgres://bg@127.0.0.1:5432/brokergate");
    }

    #[test]
    fn pool_limits_are_bounded() {
        let mut s = section("postgres://h/db", "");
        s.pool_size = 0;
        assert!(store(&s, &|_| None)
            .unwrap_err()
            .to_string()
            .contains("store.pool_size"));
        let mut s = section("postgres://h/db", "");
        s.acquire_timeout_seconds = 0;
        let e = store(&s, &|_| None).unwrap_err().to_string();
        assert!(e.contains("store.acquire_timeout_seconds"), "{e}");
    }
}
