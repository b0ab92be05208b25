//! Settings bound at start: sockets, threads and scheduler, shutdown timing, the store, the
//! diagnostic log. A reload never changes them — they are not part of the [`Runtime`] a reload
//! swaps in — and names the ones a new file changed, which take a restart (graceful upgrade).
//!
//! [`Runtime`]: super::Runtime

use std::net::SocketAddr;

use super::file::{FileConfig, StoreSection};
use super::ConfigError;
use crate::store::{SqliteOptions, Synchronous};

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
    pub fn from_file(file: &FileConfig) -> Result<StartSettings, ConfigError> {
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
            store: StoreSettings::from_section(&file.store)?,
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
}

/// Largest `store.read_connections`: SQLite readers are cheap, but each holds a file handle
/// and a page cache.
const MAX_READ_CONNECTIONS: usize = 64;

impl StoreSettings {
    pub fn from_section(section: &StoreSection) -> Result<StoreSettings, ConfigError> {
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
        if section.sqlite_path.is_empty() {
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
        })
    }

    /// How the SQLite store at `sqlite_path` is opened.
    pub fn sqlite_options(&self) -> SqliteOptions {
        SqliteOptions {
            synchronous: self.synchronous,
            read_connections: self.read_connections,
        }
    }
}
