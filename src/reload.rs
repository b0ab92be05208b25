//! Hot reload: on SIGHUP, on a change of the config file (polled every second), or on
//! `POST /-/reload`, load and validate the whole file (the same checks as `check-config`),
//! then swap it in atomically. A request in flight keeps the snapshot it started with. A bad
//! file changes nothing but the reload metrics and a log line naming the problem.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::{self, Runtime, StartSettings};
use crate::metrics::Metrics;

/// How often the config file is checked for changes.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// A changed file must read the same again after this long before it is loaded.
const SETTLE: Duration = Duration::from_millis(200);

pub struct Reloader {
    path: PathBuf,
    /// What the process was started with: a reload never changes it.
    start: StartSettings,
    runtime: Arc<ArcSwap<Runtime>>,
    metrics: Arc<Metrics>,
    /// Hash of the last file content tried, good or bad: a bad file is reported once, not
    /// every poll. The lock also serializes reloads.
    last_tried: tokio::sync::Mutex<String>,
}

impl Reloader {
    /// `initial_hash` is the hash of the configuration `runtime` was started with.
    pub fn new(
        path: PathBuf,
        start: StartSettings,
        runtime: Arc<ArcSwap<Runtime>>,
        metrics: Arc<Metrics>,
        initial_hash: String,
    ) -> Self {
        Reloader {
            path,
            start,
            runtime,
            metrics,
            last_tried: tokio::sync::Mutex::new(initial_hash),
        }
    }

    /// Reloads now. Returns the new configuration's hash, or why it was refused.
    pub async fn reload(&self, trigger: &str) -> Result<String, String> {
        let mut last_tried = self.last_tried.lock().await;
        self.reload_locked(trigger, &mut last_tried).await
    }

    /// Reloads when the file's content differs from the last one tried and has stopped
    /// changing: an editor or `cp` caught halfway through a write is looked at again later.
    async fn reload_if_changed(&self) {
        let mut last_tried = self.last_tried.lock().await;
        let Ok(first) = config::hash_of(&self.path) else {
            return;
        };
        if first == *last_tried {
            return;
        }
        tokio::time::sleep(SETTLE).await;
        if config::hash_of(&self.path).is_ok_and(|second| second == first) {
            let _ = self.reload_locked("file change", &mut last_tried).await;
        }
    }

    async fn reload_locked(
        &self,
        trigger: &str,
        last_tried: &mut String,
    ) -> Result<String, String> {
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || config::load_with_hash(&path))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let (next, hash) = match loaded {
            Ok(ok) => ok,
            Err(reason) => {
                *last_tried = config::hash_of(&self.path).unwrap_or_default();
                self.metrics
                    .config_reloads
                    .with_label_values(&["failure"])
                    .inc();
                self.metrics.config_last_reload_successful.set(0);
                log::error!(
                    "Configuration reload failed; keeping the running configuration. trigger={trigger} file={} error={reason}",
                    self.path.display()
                );
                return Err(reason);
            }
        };
        *last_tried = hash.clone();
        for key in self.start.changed_keys(&next.start) {
            log::warn!("Configuration reload: {key} changed but needs a restart (graceful upgrade); keeping the running value.");
        }
        self.metrics.preregister_config(&next.runtime);
        crate::authz::log_source(&next.runtime);
        self.runtime.store(Arc::new(next.runtime));
        record_success(&self.metrics, &hash);
        self.metrics
            .config_reloads
            .with_label_values(&["success"])
            .inc();
        log::info!("Configuration reloaded. trigger={trigger} config_hash={hash}");
        Ok(hash)
    }
}

/// Marks a configuration as loaded: the gauges operators alert on.
pub fn record_success(metrics: &Metrics, hash: &str) {
    metrics.config_last_reload_successful.set(1);
    metrics
        .config_last_reload_success_timestamp
        .set(crate::clock::now_unix_f64());
    // 48 bits fit a float exactly.
    let prefix = u64::from_str_radix(hash.get(..12).unwrap_or("0"), 16).unwrap_or(0);
    metrics.config_hash.set(prefix as f64);
}

/// Runs the SIGHUP and file-change triggers until shutdown.
pub struct ReloadService(pub Arc<Reloader>);

#[async_trait]
impl BackgroundService for ReloadService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                log::error!(
                    "Cannot listen for SIGHUP; reload by file change or POST /-/reload. error={e}"
                );
                None
            }
        };
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    let _ = self.0.reload("SIGHUP").await;
                }
                _ = poll.tick() => self.0.reload_if_changed().await,
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }
}
