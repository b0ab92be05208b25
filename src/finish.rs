//! The pingora background service that runs the finisher (`service::Finisher`): once at start
//! — taking over every delete and unbind this owner's previous process left, unless this is a
//! graceful upgrade whose predecessor is still finishing its own — and then every
//! `[store] reaper_interval_seconds`, releasing the reservations and taking over the deletes
//! and unbinds whose lease expired, whoever held them (another replica that crashed).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::clock;
use crate::config::Runtime;
use crate::metrics::Metrics;
use crate::service::{recovery, Finisher};
use crate::store::{RecoveryPolicy, Store};

pub struct FinishService {
    pub finisher: Finisher,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Between passes.
    pub interval: Duration,
    pub runtime: Arc<ArcSwap<Runtime>>,
    pub owner: String,
    /// A graceful upgrade: the previous process of this owner may still be working.
    pub upgrade: bool,
}

impl FinishService {
    async fn pass(&self, predecessor_gone: bool) {
        let policy = RecoveryPolicy {
            owner: self.owner.clone(),
            now: clock::now_unix(),
            predecessor_gone,
        };
        // The start released this owner's reservations before serving; later passes release
        // the expired ones of any owner.
        if !predecessor_gone {
            if let Err(e) = recovery::recover(&*self.store, &self.metrics, &policy).await {
                log::error!(
                    "Releasing expired reservations failed; retried next interval. error={e}"
                );
            }
        }
        let rt = self.runtime.load_full();
        match self.finisher.finish(&rt, &policy).await {
            Ok(done) if done != Default::default() => log::info!(
                "Finisher pass. deletes={} unbinds={} failed={}",
                done.deletes,
                done.unbinds,
                done.failed
            ),
            Ok(_) => {}
            Err(e) => log::error!("Finisher pass failed; retried next interval. error={e}"),
        }
    }
}

#[async_trait]
impl BackgroundService for FinishService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.pass(!self.upgrade).await;
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => self.pass(false).await,
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }
}
