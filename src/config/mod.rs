//! Configuration: the file model (`file`), loading it from TOML plus `BROKERGATE__SECTION__KEY`
//! environment overrides (`load`), and validating it into the [`Runtime`] every request reads.

mod file;
mod offerings;
mod runtime;
mod start;
mod target;

pub use file::{FileConfig, StoreSection};
pub use offerings::derived_service_guid;
pub use runtime::{
    Authorization, AuthorizationSource, Broker, Plan, Runtime, Secret, Service, ServiceListing,
    SpaceEntry, SpaceRoles, Upstream, Visibility,
};
pub use start::{LogFormat, LogSettings, PostgresSettings, StartSettings, StoreSettings};
pub use target::Target;

use std::path::Path;

/// Why a configuration was refused. The message names the key that is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Reads the file, applies environment overrides, and deserializes the result.
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    parse(&text, std::env::vars())
}

/// Parses TOML text with the given environment (so tests need not touch the process env).
pub fn parse(
    toml_text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<FileConfig, ConfigError> {
    let env: config::Map<String, String> = env.into_iter().collect();
    let built = config::Config::builder()
        .add_source(config::File::from_str(toml_text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("BROKERGATE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("auth.symmetric_secrets")
                .with_list_parse_key("auth.public_key_files")
                .source(Some(env)),
        )
        .build()
        .map_err(|e| ConfigError::invalid("config", e.to_string()))?;
    built
        .try_deserialize()
        .map_err(|e| ConfigError::invalid("config", e.to_string()))
}

/// A whole validated configuration: what is bound at start, and what a reload may change.
#[derive(Debug)]
pub struct Settings {
    pub start: StartSettings,
    pub runtime: Runtime,
}

impl Settings {
    /// Validates both parts; `env` looks up `token_env` variables.
    pub fn from_file(
        file: &FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        Ok(Settings {
            start: StartSettings::from_file(file, env)?,
            runtime: Runtime::from_file(file, env)?,
        })
    }
}

/// Loads and validates in one step: what `run` and `check-config` do.
pub fn load_settings(path: &Path) -> Result<Settings, ConfigError> {
    load_with_hash(path).map(|(settings, _)| settings)
}

/// Loads the file and validates only its `[store]` section: what `migrate` needs, so it runs
/// without the brokers' secrets or key files.
pub fn load_store_settings(path: &Path) -> Result<StoreSettings, ConfigError> {
    StoreSettings::from_section(&load_file(path)?.store, &|name| std::env::var(name).ok())
}

/// Loads and validates, and returns the hex SHA-256 of what was loaded (the file's bytes and
/// the `BROKERGATE__` overrides), which identifies a configuration in metrics and reloads.
pub fn load_with_hash(path: &Path) -> Result<(Settings, String), ConfigError> {
    let read = read(path)?;
    let file = parse(&read.text, read.overrides)?;
    let settings = Settings::from_file(&file, &|name| std::env::var(name).ok())?;
    Ok((settings, read.hash))
}

/// The hash [`load_with_hash`] would report, without parsing: cheap enough to poll.
pub fn hash_of(path: &Path) -> Result<String, ConfigError> {
    read(path).map(|r| r.hash)
}

/// A config file's text, the environment overrides that apply, and their joint hash.
struct Read {
    text: String,
    overrides: Vec<(String, String)>,
    hash: String,
}

fn read(path: &Path) -> Result<Read, ConfigError> {
    let unreadable = |reason: String| ConfigError::Read {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| unreadable("not UTF-8".into()))?;
    let mut overrides: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("BROKERGATE__"))
        .collect();
    overrides.sort();
    let hash = content_hash(&text, &overrides);
    Ok(Read {
        text,
        overrides,
        hash,
    })
}

fn content_hash(text: &str, overrides: &[(String, String)]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    for (k, v) in overrides {
        h.update([0]);
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
