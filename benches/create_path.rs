//! The create path end to end, beside its limit: `POST /v2/service_instances` through
//! brokergate (auth, validate, reserve, broker call on loopback, commit, render) versus a
//! direct `POST /gateway/v1/configurations` to the same in-process mock v1 broker, in one run,
//! alternating rounds. Closed loop, fixed concurrency.
//!
//! Run: `scripts/cargo.sh bench --bench create_path` (env: BENCH_SECONDS per round, default 5;
//! BENCH_CONCURRENCY, default 16; BENCH_ROUNDS, default 3). Prints a Markdown table.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use common::{closed_loop, env_or, median, succeeded, Round};

use std::sync::Arc;

use support::broker::{MockBroker, Mode};
use support::gateway::{Gateway, GatewayConfig, BROKER_TOKEN, ORG_GUID, PLAN_GUID, SPACE_GUID};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: run briefly.
    let seconds = env_or("BENCH_SECONDS", 5);
    let concurrency = env_or("BENCH_CONCURRENCY", 16);
    let rounds = env_or("BENCH_ROUNDS", 3);

    let broker = MockBroker::start(BROKER_TOKEN).await;
    broker.set_mode(Mode::Ok);
    let gateway = Gateway::start(GatewayConfig::new(&broker.url())).await;
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
