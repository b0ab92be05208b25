//! One UAA's key set: the keys last read, and the refresh rules around them.
//!
//! - A refresh replaces the whole set and bumps its generation (so verifications cached under
//!   the old set are dropped); an identical re-read changes nothing.
//! - Single flight: while a fetch runs, every caller waits for it instead of starting another.
//! - Requests may start a fetch at most once per `min_interval`; the background refresher
//!   (initial load with backoff, periodic re-read) is not limited by it but shares the flight.
//! - A failed fetch keeps the last good keys.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::fetch::{Fetch, FetchOptions, Fetched};
use crate::auth::keys::VerifyKey;

/// The keys of one generation. Generation 0 is "never loaded" and has no keys.
#[derive(Debug, Default)]
pub(crate) struct KeyState {
    pub generation: u64,
    pub keys: Vec<VerifyKey>,
    /// From the discovery document; `None` until it was read.
    pub issuer: Option<String>,
    fingerprint: Option<[u8; 32]>,
}

impl KeyState {
    pub(crate) fn loaded(&self) -> bool {
        self.generation > 0
    }
}

/// Settings a reload may change without losing the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SourceSettings {
    pub min_interval: Duration,
    /// Re-read this long after a successful read; `None`: only when a token asks for it.
    pub max_age: Option<Duration>,
    pub fetch: FetchOptions,
}

pub(crate) struct UaaSource {
    /// For logs and the registry; never holds credentials.
    pub(crate) url: String,
    fetcher: Box<dyn Fetch>,
    state: ArcSwap<KeyState>,
    control: Mutex<Control>,
}

struct Control {
    settings: SourceSettings,
    /// The running fetch; its receiver sees `true` once it is over.
    in_flight: Option<watch::Receiver<bool>>,
    last_attempt: Option<Instant>,
    failures: u32,
    /// When the background refresher should fetch next; `None`: never.
    next_background: Option<Instant>,
}

impl std::fmt::Debug for UaaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UaaSource")
            .field("url", &self.url)
            .field("generation", &self.state.load().generation)
            .finish_non_exhaustive()
    }
}

impl UaaSource {
    pub(crate) fn new(url: String, settings: SourceSettings, fetcher: Box<dyn Fetch>) -> Self {
        UaaSource {
            url,
            fetcher,
            state: ArcSwap::from_pointee(KeyState::default()),
            control: Mutex::new(Control {
                settings,
                in_flight: None,
                last_attempt: None,
                failures: 0,
                next_background: Some(Instant::now()),
            }),
        }
    }

    pub(crate) fn current(&self) -> Arc<KeyState> {
        self.state.load_full()
    }

    pub(crate) fn loaded(&self) -> bool {
        self.state.load().loaded()
    }

    /// A poisoned lock only means a panic elsewhere; the data is still consistent.
    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the settings of the configuration now in use (a reload keeps the keys).
    pub(crate) fn update(&self, settings: SourceSettings) {
        let mut c = self.control();
        if c.settings == settings {
            return;
        }
        if c.settings.max_age != settings.max_age && self.loaded() && c.failures == 0 {
            c.next_background = settings.max_age.map(|age| Instant::now() + age);
        }
        c.settings = settings;
    }

    #[cfg(test)]
    pub(crate) fn settings(&self) -> SourceSettings {
        self.control().settings
    }

    /// After a token failed against generation `seen`: returns a newer key set if there is
    /// one, waiting for the running fetch or starting one when the last attempt is at least
    /// `min_interval` old. Otherwise returns the current set unchanged.
    pub(crate) async fn refresh_after(self: &Arc<Self>, seen: u64) -> Arc<KeyState> {
        let done = {
            let mut c = self.control();
            let current = self.current();
            if current.generation != seen {
                return current;
            }
            match running(&c) {
                Some(rx) => rx,
                None if c
                    .last_attempt
                    .is_some_and(|t| t.elapsed() < c.settings.min_interval) =>
                {
                    return current
                }
                None => self.start(&mut c),
            }
        };
        wait(done).await;
        self.current()
    }

    /// When the background refresher should call [`Self::refresh_in_background`].
    pub(crate) fn background_due(&self) -> Option<Instant> {
        self.control().next_background
    }

    /// A fetch now (or the one running), whatever the request rate limit says.
    pub(crate) async fn refresh_in_background(self: &Arc<Self>) {
        let done = {
            let mut c = self.control();
            match running(&c) {
                Some(rx) => rx,
                None => self.start(&mut c),
            }
        };
        wait(done).await;
    }

    /// Starts a fetch in its own task, so a caller that goes away (a client hanging up) does
    /// not cancel it for the others.
    fn start(self: &Arc<Self>, c: &mut Control) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        c.in_flight = Some(rx.clone());
        c.last_attempt = Some(Instant::now());
        let options = c.settings.fetch;
        let source = self.clone();
        let task = async move {
            // Dropped last, even on panic: clears the flight and wakes the waiters.
            let _flight = Flight {
                source: source.clone(),
                tx,
            };
            let result = source.fetcher.fetch(options).await;
            source.apply(result);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(task);
            }
            // No runtime, no fetch: dropping the task closes the channel and frees the flight.
            Err(_) => drop(task),
        }
        rx
    }

    fn apply(&self, result: Result<Fetched, String>) {
        let mut c = self.control();
        let now = Instant::now();
        let current = self.current();
        match result {
            Ok(fetched) => {
                c.failures = 0;
                c.next_background = c.settings.max_age.map(|age| now + age);
                if current.fingerprint == Some(fetched.fingerprint) {
                    log::debug!("UAA keys unchanged. uaa_url={}", self.url);
                    return;
                }
                for why in &fetched.skipped {
                    log::warn!("UAA key skipped. uaa_url={} reason={why}", self.url);
                }
                let kids: Vec<&str> = fetched
                    .keys
                    .iter()
                    .map(|k| k.kid.as_deref().unwrap_or("-"))
                    .collect();
                log::info!(
                    "UAA keys {}. uaa_url={} kids={kids:?} issuer={}",
                    if current.loaded() {
                        "changed"
                    } else {
                        "loaded"
                    },
                    self.url,
                    fetched.issuer,
                );
                self.state.store(Arc::new(KeyState {
                    generation: current.generation + 1,
                    keys: fetched.keys,
                    issuer: Some(fetched.issuer),
                    fingerprint: Some(fetched.fingerprint),
                }));
            }
            Err(error) => {
                c.failures = c.failures.saturating_add(1);
                let backoff = backoff(c.failures, c.settings.min_interval);
                let keep_trying = !current.loaded() || c.settings.max_age.is_some();
                c.next_background = keep_trying.then(|| now + backoff);
                if current.loaded() {
                    log::warn!(
                        "UAA key refresh failed; keeping the last good keys. uaa_url={} error={error}",
                        self.url
                    );
                } else {
                    log::warn!(
                        "UAA keys not loaded yet: tokens that need them are rejected (401) and the gateway is not ready. uaa_url={} error={error} retry_in_seconds={}",
                        self.url,
                        backoff.as_secs_f64()
                    );
                }
            }
        }
    }
}

/// 1 s, 2 s, 4 s ... up to `cap` (at least 1 s).
fn backoff(failures: u32, cap: Duration) -> Duration {
    let exp = Duration::from_secs(1u64 << failures.saturating_sub(1).min(16));
    exp.min(cap.max(Duration::from_secs(1)))
}

/// The running fetch, unless its task is gone without clearing it.
fn running(c: &Control) -> Option<watch::Receiver<bool>> {
    c.in_flight
        .as_ref()
        .filter(|rx| rx.has_changed().is_ok() && !*rx.borrow())
        .cloned()
}

async fn wait(mut done: watch::Receiver<bool>) {
    // An error means the fetch task is gone: it is over either way.
    let _ = done.wait_for(|over| *over).await;
}

struct Flight {
    source: Arc<UaaSource>,
    tx: watch::Sender<bool>,
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.source.control().in_flight = None;
        self.tx.send_replace(true);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::keys::HMAC_ALGS;
    use async_trait::async_trait;
    use jsonwebtoken::DecodingKey;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Serves whatever `keys` holds (a list of kids) after `delay`; counts fetches.
    pub(crate) struct FakeFetch {
        pub fetches: AtomicUsize,
        pub delay: Duration,
        pub kids: Mutex<Option<Vec<String>>>,
        pub issuer: Mutex<Option<String>>,
    }

    impl FakeFetch {
        pub(crate) fn new(kids: &[&str], delay: Duration) -> Arc<FakeFetch> {
            Arc::new(FakeFetch {
                fetches: AtomicUsize::new(0),
                delay,
                kids: Mutex::new(Some(kids.iter().map(|k| k.to_string()).collect())),
                issuer: Mutex::new(Some("https://uaa/oauth/token".into())),
            })
        }
        pub(crate) fn count(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
        /// `None`: UAA is down.
        pub(crate) fn serve(&self, kids: Option<&[&str]>) {
            *self.kids.lock().unwrap() = kids.map(|k| k.iter().map(|s| s.to_string()).collect());
        }
    }

    #[async_trait]
    impl Fetch for Arc<FakeFetch> {
        async fn fetch(&self, _options: FetchOptions) -> Result<Fetched, String> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            let kids = self.kids.lock().unwrap().clone().ok_or("down")?;
            let issuer = self.issuer.lock().unwrap().clone().unwrap_or_default();
            let keys = kids
                .iter()
                .map(|kid| VerifyKey {
                    kid: Some(kid.clone()),
                    algs: HMAC_ALGS,
                    key: DecodingKey::from_secret(kid.as_bytes()),
                })
                .collect();
            let fingerprint = crate::auth::cache::digest(&format!("{kids:?}{issuer:?}"));
            Ok(Fetched {
                keys,
                issuer,
                fingerprint,
                skipped: Vec::new(),
            })
        }
    }

    pub(crate) fn settings(min_interval: Duration) -> SourceSettings {
        SourceSettings {
            min_interval,
            max_age: None,
            fetch: FetchOptions {
                timeout: Duration::from_secs(5),
            },
        }
    }

    pub(crate) fn source(fake: &Arc<FakeFetch>, min_interval: Duration) -> Arc<UaaSource> {
        Arc::new(UaaSource::new(
            "http://uaa.test".into(),
            settings(min_interval),
            Box::new(fake.clone()),
        ))
    }

    fn kids(state: &KeyState) -> Vec<&str> {
        state.keys.iter().filter_map(|k| k.kid.as_deref()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thousand_concurrent_refreshes_make_one_fetch() {
        let fake = FakeFetch::new(&["k1"], Duration::from_millis(200));
        let src = source(&fake, Duration::from_secs(30));
        let waiters: Vec<_> = (0..1000)
            .map(|_| {
                let src = src.clone();
                tokio::spawn(async move { src.refresh_after(0).await.generation })
            })
            .collect();
        for w in waiters {
            assert_eq!(w.await.unwrap(), 1);
        }
        assert_eq!(fake.count(), 1);
        assert_eq!(kids(&src.current()), ["k1"]);
    }

    #[tokio::test]
    async fn requests_refresh_at_most_once_per_interval() {
        let fake = FakeFetch::new(&["k1"], Duration::ZERO);
        let src = source(&fake, Duration::from_millis(300));
        assert_eq!(src.refresh_after(0).await.generation, 1);
        fake.serve(Some(&["k1", "k2"]));
        // Within the interval: no fetch, the same set comes back.
        for _ in 0..20 {
            assert_eq!(src.refresh_after(1).await.generation, 1);
        }
        assert_eq!(fake.count(), 1);
        tokio::time::sleep(Duration::from_millis(350)).await;
        let state = src.refresh_after(1).await;
        assert_eq!((state.generation, kids(&state)), (2, vec!["k1", "k2"]));
        assert_eq!(fake.count(), 2);
        // A caller that saw an older set gets the newer one without a fetch.
        assert_eq!(src.refresh_after(1).await.generation, 2);
        assert_eq!(fake.count(), 2);
    }

    #[tokio::test]
    async fn a_refresh_replaces_the_whole_set_and_an_identical_one_changes_nothing() {
        let fake = FakeFetch::new(&["k1", "k2"], Duration::ZERO);
        let src = source(&fake, Duration::ZERO);
        src.refresh_in_background().await;
        assert_eq!(kids(&src.current()), ["k1", "k2"]);
        src.refresh_in_background().await;
        assert_eq!(src.current().generation, 1, "same content, same generation");
        fake.serve(Some(&["k3"]));
        src.refresh_in_background().await;
        let state = src.current();
        assert_eq!((state.generation, kids(&state)), (2, vec!["k3"]));
    }

    #[tokio::test]
    async fn a_failed_fetch_keeps_the_last_good_keys() {
        let fake = FakeFetch::new(&["k1"], Duration::ZERO);
        let src = source(&fake, Duration::ZERO);
        src.refresh_in_background().await;
        fake.serve(None);
        src.refresh_in_background().await;
        assert_eq!(src.refresh_after(1).await.generation, 1);
        assert_eq!(fake.count(), 3);
        assert!(src.loaded());
        assert_eq!(kids(&src.current()), ["k1"]);
    }

    #[tokio::test]
    async fn background_retries_with_backoff_until_loaded() {
        let fake = FakeFetch::new(&["k1"], Duration::ZERO);
        fake.serve(None);
        let src = source(&fake, Duration::from_secs(30));
        let start = Instant::now();
        assert!(src.background_due().is_some_and(|d| d <= Instant::now()));
        src.refresh_in_background().await;
        assert!(!src.loaded());
        let due = src.background_due().unwrap();
        assert!(
            due >= start + Duration::from_millis(900),
            "1 s after the first failure"
        );
        src.refresh_in_background().await;
        assert!(src.background_due().unwrap() >= start + Duration::from_millis(1900));
        fake.serve(Some(&["k1"]));
        src.refresh_in_background().await;
        assert!(src.loaded());
        assert_eq!(
            src.background_due(),
            None,
            "no max_age: no periodic re-read"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let cap = Duration::from_secs(30);
        let secs: Vec<u64> = (1..=7).map(|n| backoff(n, cap).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff(100, Duration::ZERO), Duration::from_secs(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_that_goes_away_does_not_cancel_the_fetch() {
        let fake = FakeFetch::new(&["k1"], Duration::from_millis(100));
        let src = source(&fake, Duration::from_secs(30));
        let first = tokio::spawn({
            let src = src.clone();
            async move { src.refresh_after(0).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        first.abort();
        assert_eq!(src.refresh_after(0).await.generation, 1);
        assert_eq!(fake.count(), 1);
    }
}
