//! The create path end to end, beside its limit: `POST /v2/service_instances` through
//! brokergate (auth, validate, reserve, broker call on loopback, commit, render) versus a
//! direct `POST /gateway/v1/configurations` to the same in-process mock v1 broker, in one run,
//! alternating rounds. Closed loop, fixed concurrency.
//!
//! Run: `scripts/cargo.sh bench --bench create_path` (env: BENCH_SECONDS per round, default 5;
//! BENCH_CONCURRENCY, default 16; BENCH_ROUNDS, default 3). Prints a Markdown table.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::broker::{MockBroker, Mode};
use support::gateway::{Gateway, GatewayConfig, BROKER_TOKEN, ORG_GUID, PLAN_GUID, SPACE_GUID};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Round {
    ok: usize,
    failed: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Round {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> Duration {
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(i).copied().unwrap_or_default()
    }
}

/// Runs `concurrency` workers for `seconds`; each calls `request(n)` with a unique n.
async fn closed_loop<F, Fut>(concurrency: u64, seconds: u64, request: F) -> Round
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
async fn succeeded(req: reqwest::RequestBuilder, status: u16) -> bool {
    match req.send().await {
        Ok(r) => r.status() == status && r.bytes().await.is_ok(),
        Err(_) => false,
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: run briefly.
    let seconds = env_or("BENCH_SECONDS", 5);
    let concurrency = env_or("BENCH_CONCURRENCY", 16);
    let rounds = env_or("BENCH_ROUNDS", 3);

    let broker = MockBroker::start(BROKER_TOKEN).await;
    broker.set_mode(Mode::Ok);
    let gateway = Gateway::start(GatewayConfig::new(&broker.url()).env("RUST_LOG", "warn")).await;
    let token = support::token::valid_token();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency as usize)
        .build()
        .expect("client");

    let direct = {
        let (client, url) = (
            client.clone(),
            format!("{}/gateway/v1/configurations", broker.url()),
        );
        move |n: u64| {
            let body = serde_json::json!({
                "label": "echo-1.0", "email": "email-148@somedomain.com", "plan": "free",
                "version": "1.0", "provider": "core", "space_guid": SPACE_GUID,
                "organization_guid": ORG_GUID, "unique_id": "echo-free", "name": format!("direct-{n}"),
            });
            let req = client
                .post(&url)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .header("X-VCAP-Request-ID", format!("bench-{n}"))
                .header("X-VCAP-Service-Token", BROKER_TOKEN)
                .body(body.to_string());
            async move { succeeded(req, 200).await }
        }
    };
    let through = {
        let (client, url) = (
            client.clone(),
            format!("{}/v2/service_instances", gateway.url()),
        );
        let auth = format!("bearer {token}");
        move |n: u64| {
            let body = serde_json::json!({
                "space_guid": SPACE_GUID, "name": format!("bench-{n}-{}", std::process::id()),
                "service_plan_guid": PLAN_GUID,
            });
            let req = client
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body.to_string());
            async move { succeeded(req, 201).await }
        }
    };

    let direct = Arc::new(direct);
    let through = Arc::new(through);
    // Warm-up: pools, page cache, the store's first pages.
    let d = direct.clone();
    closed_loop(concurrency, 1, move |n| d(n)).await;
    let t = through.clone();
    closed_loop(concurrency, 1, move |n| t(n + 1_000_000_000)).await;

    let mut rows: Vec<(&str, Vec<Round>)> = vec![
        ("direct POST to the v1 broker", Vec::new()),
        ("brokergate create", Vec::new()),
    ];
    for round in 0..rounds {
        let d = direct.clone();
        rows[0]
            .1
            .push(closed_loop(concurrency, seconds, move |n| d(n + round * 10_000_000)).await);
        let t = through.clone();
        rows[1]
            .1
            .push(closed_loop(concurrency, seconds, move |n| t(n + round * 10_000_000)).await);
    }

    println!("\ncreate path, {rounds} rounds x {seconds} s, {concurrency} concurrent clients (medians of rounds)\n");
    println!("| candidate | requests/s | p50 ms | p99 ms | failed |");
    println!("|---|---:|---:|---:|---:|");
    let mut medians = Vec::new();
    for (name, rs) in &rows {
        let rps = median(rs.iter().map(Round::rps).collect());
        let p50 = median(
            rs.iter()
                .map(|r| r.percentile(0.50).as_secs_f64() * 1e3)
                .collect(),
        );
        let p99 = median(
            rs.iter()
                .map(|r| r.percentile(0.99).as_secs_f64() * 1e3)
                .collect(),
        );
        let failed: usize = rs.iter().map(|r| r.failed).sum();
        println!("| {name} | {rps:.0} | {p50:.2} | {p99:.2} | {failed} |");
        medians.push(rps);
    }
    if medians[0] > 0.0 {
        println!(
            "\nbrokergate / direct throughput: {:.2}",
            medians[1] / medians[0]
        );
    }
    drop(gateway);
}
