//! The pingora background service that loads UAA keys without waiting for a request: at
//! start (retrying with backoff while UAA is unreachable, so the gateway starts anyway), and
//! again every `key_max_age_seconds`. It serves every key set in use, including one a reload
//! introduced.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::registry;

/// How often new key sets (from a reload) are looked for.
const TICK: Duration = Duration::from_secs(1);

/// Add with `server.add_service(background_service("uaa keys", KeyRefresher))`.
pub struct KeyRefresher;

#[async_trait]
impl BackgroundService for KeyRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let now = Instant::now();
            for source in registry::live() {
                if source.background_due().is_some_and(|due| due <= now) {
                    source.refresh_in_background().await;
                }
            }
            let next = registry::live()
                .iter()
                .filter_map(|s| s.background_due())
                .fold(Instant::now() + TICK, Instant::min);
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep_until(next.into()) => {}
            }
        }
    }
}
