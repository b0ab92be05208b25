//! The create path end to end, beside its limit: `POST /v2/service_instances` through
//! brokergate (auth, validate, reserve, broker call on loopback, commit, render) on the embedded
//! SQLite store — with static authorization, and asking a (fake, loopback) Cloud Controller
//! as a space developer, its answers cached and not —, on PostgreSQL with one replica and with
//! two replicas sharing the database (clients alternate between them), versus a direct
//! `POST /gateway/v1/configurations` to the same in-process mock v1 broker — in one run,
//! alternating rounds. Closed loop, fixed
//! concurrency. CPU per create is read from /proc: the gateways' own, and PostgreSQL's (every
//! `postgres` process on the machine: the test server is the machine's).
//!
//! Run: `scripts/cargo.sh bench --bench create_path` (env: BENCH_SECONDS per round, default 5;
//! BENCH_CONCURRENCY, default 16; BENCH_ROUNDS, default 3; PostgreSQL as the tests find it —
//! `BROKERGATE_TEST_POSTGRES_URL` — else its rows are left out). Prints a Markdown table.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use common::{closed_loop, env_or, median, succeeded, Round};

use std::sync::Arc;

use support::broker::{MockBroker, Mode};
use support::cc_v3::{user_token, FakeCloudController, DEVELOPER};
use support::gateway::{Gateway, GatewayConfig, BROKER_TOKEN, ORG_GUID, PLAN_GUID, SPACE_GUID};
use support::postgres::TestDatabase;

/// Clock ticks per second of /proc's utime and stime (USER_HZ is 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds `pid` has used (user + system), from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the name.
    (tick(11) + tick(12)) / TICKS_PER_SECOND
}

/// Pids of every process named `postgres`.
fn postgres_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim() == "postgres")
                .unwrap_or(false)
        })
        .collect()
}

fn postgres_cpu() -> f64 {
    postgres_pids().into_iter().map(cpu_seconds).sum()
}

/// One request of a candidate, numbered.
type Request = Arc<
    dyn Fn(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send + Sync,
>;

/// A candidate: its name, its request, the gateway pids whose CPU it uses, whether it uses
/// PostgreSQL.
type Candidate = (&'static str, Request, Vec<u32>, bool);

fn boxed<F, Fut>(f: F) -> Request
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    Arc::new(move |n| Box::pin(f(n)))
}

/// One candidate's rounds and the CPU they used (gateway, database), in seconds.
#[derive(Default)]
struct Measured {
    rounds: Vec<Round>,
    gateway_cpu: f64,
    database_cpu: f64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: run briefly.
    let seconds = env_or("BENCH_SECONDS", 5);
    let concurrency = env_or("BENCH_CONCURRENCY", 16);
    let rounds = env_or("BENCH_ROUNDS", 3);

    let broker = MockBroker::start(BROKER_TOKEN).await;
    broker.set_mode(Mode::Ok);
    let sqlite = Gateway::start(GatewayConfig::new(&broker.url())).await;
    // The Cloud Controller asked for every create's space, flag, organization and role.
    let cc = FakeCloudController::with_default_world().await;
    let cc_cached = Gateway::start(GatewayConfig::new(&broker.url()).upstream(&cc.url())).await;
    let cc_uncached = Gateway::start(
        GatewayConfig::new(&broker.url())
            .upstream(&cc.url())
            .authorization_key("cache_seconds", 0u64),
    )
    .await;
    let db = TestDatabase::create();
    let mut postgres = Vec::new();
    if let Some(db) = &db {
        for owner in ["bench-a", "bench-b"] {
            let config = GatewayConfig::new(&broker.url())
                .store_key("url", db.url())
                .store_key("owner", owner);
            postgres.push(Gateway::start(config).await);
        }
    }
    let token = support::token::valid_token();
    let developer = user_token(DEVELOPER);
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
    // Creates of unique names through the gateways at `bases`, request n to bases[n % len], by
    // the caller of `token`.
    let through_as = |bases: Vec<String>, token: &str| {
        let client = client.clone();
        let auth = format!("bearer {token}");
        move |n: u64| {
            let url = format!("{}/v2/service_instances", bases[n as usize % bases.len()]);
            let body = serde_json::json!({
                "space_guid": SPACE_GUID, "name": format!("bench-{n}-{}", std::process::id()),
                "service_plan_guid": PLAN_GUID,
            });
            let req = client
                .post(url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body.to_string());
            async move { succeeded(req, 201).await }
        }
    };
    let through = |bases: Vec<String>| through_as(bases, &token);

    let mut candidates: Vec<Candidate> = vec![
        (
            "direct POST to the v1 broker",
            boxed(direct),
            Vec::new(),
            false,
        ),
        (
            "brokergate create, SQLite (synchronous = full)",
            boxed(through(vec![sqlite.url()])),
            vec![sqlite.pid()],
            false,
        ),
        (
            "… as a space developer, the Cloud Controller authorizing, answers cached",
            boxed(through_as(vec![cc_cached.url()], &developer)),
            vec![cc_cached.pid()],
            false,
        ),
        (
            "… as a space developer, the Cloud Controller asked 4 times per create",
            boxed(through_as(vec![cc_uncached.url()], &developer)),
            vec![cc_uncached.pid()],
            false,
        ),
    ];
    if let [a, b] = postgres.as_slice() {
        candidates.push((
            "brokergate create, PostgreSQL, 1 replica",
            boxed(through(vec![a.url()])),
            vec![a.pid()],
            true,
        ));
        candidates.push((
            "brokergate create, PostgreSQL, 2 replicas",
            boxed(through(vec![a.url(), b.url()])),
            vec![a.pid(), b.pid()],
            true,
        ));
    }

    // Warm-up: pools, page cache, the store's first pages.
    for (i, (_, request, _, _)) in candidates.iter().enumerate() {
        let r = request.clone();
        let offset = 1_000_000_000 * (i as u64 + 1);
        closed_loop(concurrency, 1, move |n| r(n + offset)).await;
    }

    let mut measured: Vec<Measured> = candidates.iter().map(|_| Measured::default()).collect();
    for round in 0..rounds {
        for (i, (_, request, pids, uses_postgres)) in candidates.iter().enumerate() {
            let r = request.clone();
            let cpu_before: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
            let db_before = if *uses_postgres { postgres_cpu() } else { 0.0 };
            let offset = round * 10_000_000 + i as u64 * 100_000_000_000;
            let done = closed_loop(concurrency, seconds, move |n| r(n + offset)).await;
            let m = &mut measured[i];
            m.gateway_cpu += pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - cpu_before;
            if *uses_postgres {
                m.database_cpu += postgres_cpu() - db_before;
            }
            m.rounds.push(done);
        }
    }

    println!("\ncreate path, {rounds} rounds x {seconds} s, {concurrency} concurrent clients (medians of rounds; CPU over all rounds)\n");
    println!("| candidate | requests/s | p50 ms | p99 ms | gateway CPU µs/create | PostgreSQL CPU µs/create | failed |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut medians = Vec::new();
    for ((name, _, pids, uses_postgres), m) in candidates.iter().zip(&measured) {
        let rs = &m.rounds;
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
        let ok: usize = rs.iter().map(|r| r.ok).sum();
        let per = |cpu: f64| {
            if ok == 0 {
                "—".to_string()
            } else {
                format!("{:.0}", cpu * 1e6 / ok as f64)
            }
        };
        let gateway = if pids.is_empty() {
            "—".into()
        } else {
            per(m.gateway_cpu)
        };
        let database = if *uses_postgres {
            per(m.database_cpu)
        } else {
            "—".into()
        };
        println!("| {name} | {rps:.0} | {p50:.2} | {p99:.2} | {gateway} | {database} | {failed} |");
        medians.push(rps);
    }
    if medians[0] > 0.0 {
        println!(
            "\nbrokergate (SQLite) / direct throughput: {:.2}",
            medians[1] / medians[0]
        );
    }
    if db.is_none() {
        println!("\n(PostgreSQL rows left out: no server)");
    }
    drop(postgres);
    drop(sqlite);
}
