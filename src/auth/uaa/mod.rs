//! Keys from a UAA: discovery (`/.well-known/openid-configuration`, for the issuer) and
//! `/token_keys` (the JWKS), read in the background and on demand, cached, and shared across
//! reloads.

mod fetch;
mod jwks;
mod refresher;
mod registry;
mod source;

use std::sync::Arc;
use std::time::Duration;

pub use refresher::KeyRefresher;

pub(crate) use source::{KeyState, SourceSettings, UaaSource};

/// `[auth]` settings of the UAA key source.
#[derive(Debug, Clone)]
pub struct UaaSettings {
    /// `uaa_url`: `https://uaa.example.com` (a path prefix is kept).
    pub url: String,
    /// Requests start a refresh at most this often.
    pub min_refresh_interval: Duration,
    /// Keys are re-read in the background this long after the last read; `None`: never.
    pub max_age: Option<Duration>,
    /// Deadline of one fetch (discovery and keys).
    pub timeout: Duration,
}

/// The shared source for `settings.url`, and the settings to give it once the configuration
/// is in use. Errors are the reason `uaa_url` is refused.
pub(crate) fn source(settings: &UaaSettings) -> Result<(Arc<UaaSource>, SourceSettings), String> {
    let endpoint = fetch::uaa_endpoint(&settings.url)?;
    let settings = SourceSettings {
        min_interval: settings.min_refresh_interval,
        max_age: settings.max_age,
        fetch: fetch::FetchOptions {
            timeout: settings.timeout,
        },
    };
    Ok((registry::source(endpoint, settings), settings))
}

#[cfg(test)]
pub(crate) mod test_support {
    pub(crate) use super::fetch::{Fetch, FetchOptions, Fetched};
    pub(crate) use super::jwks::parse as parse_jwks;
    pub(crate) use super::jwks::tests::{jwk, EC_PRIVATE, RSA_OTHER_PRIVATE, RSA_PRIVATE};
    pub(crate) use super::source::tests::settings;
}
