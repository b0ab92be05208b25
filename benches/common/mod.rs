//! What the HTTP benches share: a closed loop of concurrent clients and its latencies.
#![allow(dead_code)] // each bench uses what it needs

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub struct Round {
    pub ok: usize,
    pub failed: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Round {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    pub fn percentile(&self, p: f64) -> Duration {
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(i).copied().unwrap_or_default()
    }
}

/// Runs `concurrency` workers for `seconds`; each calls `request(n)` with a unique n.
pub async fn closed_loop<F, Fut>(concurrency: u64, seconds: u64, request: F) -> Round
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (request, counter) = (request.clone(), counter.clone());
        workers.push(tokio::spawn(async move {
            let (mut lat, mut failed) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                if request(n).await {
                    lat.push(t.elapsed());
                } else {
                    failed += 1;
                }
            }
            (lat, failed)
        }));
    }
    let mut round = Round {
        ok: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for w in workers {
        let (lat, failed) = w.await.unwrap_or_default();
        round.latencies.extend(lat);
        round.failed += failed;
    }
    round.elapsed = start.elapsed();
    round.ok = round.latencies.len();
    round.latencies.sort();
    round
}

/// Sends, reads the whole body, and checks the status.
pub async fn succeeded(req: reqwest::RequestBuilder, status: u16) -> bool {
    match req.send().await {
        Ok(r) => r.status() == status && r.bytes().await.is_ok(),
        Err(_) => false,
    }
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}
