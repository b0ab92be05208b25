//! Configuration: the file model (`file`), loading it from TOML plus `BROKERGATE__SECTION__KEY`
//! environment overrides (`load`), and validating it into the [`Runtime`] every request reads.

mod file;
mod runtime;
mod target;

pub use file::FileConfig;
pub use runtime::{Broker, Plan, Runtime, Secret};
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

/// Loads and validates in one step: what `run` and `check-config` do.
pub fn load_runtime(path: &Path) -> Result<Runtime, ConfigError> {
    let file = load_file(path)?;
    Runtime::from_file(&file, &|name| std::env::var(name).ok())
}
