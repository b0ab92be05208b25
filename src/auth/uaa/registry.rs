//! The UAA key sets in use, one per `uaa_url`, shared by every configuration built from the
//! same URL: a reload that keeps `uaa_url` keeps the loaded keys (and their single flight),
//! and the background refresher finds every set that is still in use here.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::fetch::HttpFetcher;
use super::source::{SourceSettings, UaaSource};
use crate::endpoint::Endpoint;

/// Weak: a set lives as long as a configuration (an `Arc<Runtime>`) uses it.
static SOURCES: Mutex<Vec<Weak<UaaSource>>> = Mutex::new(Vec::new());

/// The set for `endpoint`, made (with `settings`) on first use. An existing set keeps its
/// settings: a configuration being built may still be refused, so its settings are applied
/// only once it is in use ([`UaaSource::update`]).
pub(crate) fn source(endpoint: Endpoint, settings: SourceSettings) -> Arc<UaaSource> {
    let mut all = SOURCES.lock().unwrap_or_else(PoisonError::into_inner);
    all.retain(|s| s.strong_count() > 0);
    if let Some(existing) = all
        .iter()
        .filter_map(Weak::upgrade)
        .find(|s| s.url == endpoint.display)
    {
        return existing;
    }
    let url = endpoint.display.clone();
    let source = Arc::new(UaaSource::new(
        url,
        settings,
        Box::new(HttpFetcher::new(endpoint)),
    ));
    all.push(Arc::downgrade(&source));
    source
}

/// Every set some configuration still uses.
pub(crate) fn live() -> Vec<Arc<UaaSource>> {
    let all = SOURCES.lock().unwrap_or_else(PoisonError::into_inner);
    all.iter().filter_map(Weak::upgrade).collect()
}

#[cfg(test)]
mod tests {
    use super::super::source::tests::settings;
    use super::*;
    use std::time::Duration;

    #[test]
    fn same_url_same_set_until_no_configuration_uses_it() {
        let endpoint = || Endpoint::parse("http://registry-test.invalid:1/uaa/").unwrap();
        let a = source(endpoint(), settings(Duration::from_secs(30)));
        let b = source(endpoint(), settings(Duration::from_secs(5)));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(
            b.settings(),
            settings(Duration::from_secs(30)),
            "not yet in use"
        );
        assert!(live().iter().any(|s| Arc::ptr_eq(s, &a)));
        let other = source(
            Endpoint::parse("http://registry-test-other.invalid:1").unwrap(),
            settings(Duration::from_secs(30)),
        );
        assert!(!Arc::ptr_eq(&a, &other));
        drop((a, b));
        assert!(!live()
            .iter()
            .any(|s| s.url == "http://registry-test.invalid:1/uaa"));
    }
}
