//! Reads from a store of 100,000 instances spread over 1,000 spaces: `GET
//! /v2/service_instances?q=space_guid:X` (a page of 50 of the space's 100) and `?q=name:X` (one)
//! beside `GET /v2/service_instances/:guid`, through brokergate over loopback, alternating
//! rounds in one run; then the query plans the store uses for both lists, so a scan would
//! show. First on the embedded SQLite store, then on PostgreSQL (a database of its own on the
//! server the tests use, `BROKERGATE_TEST_POSTGRES_URL`; left out without one).
//!
//! Run: `scripts/cargo.sh bench --bench list_path` (env: BENCH_INSTANCES, default 100000;
//! BENCH_SPACES, default 1000; BENCH_SECONDS per round, default 5; BENCH_CONCURRENCY, default
//! 16; BENCH_ROUNDS, default 3; BENCH_BACKENDS, default "sqlite,postgres"). Prints Markdown.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use serde_json::value::RawValue;

use brokergate::store::{
    InstanceField, Lease, ListQuery, PgOptions, PgStore, Provisioned, Reservation, SqliteOptions,
    SqliteStore, Store, Synchronous,
};
use common::{closed_loop, env_or, median, succeeded, Round};
use support::broker::MockBroker;
use support::gateway::{Gateway, GatewayConfig, BROKER_NAME, BROKER_TOKEN, PLAN_GUID};
use support::postgres::TestDatabase;

fn space(i: u64, spaces: u64) -> String {
    format!("space-{:04}", i % spaces)
}

/// Writes `n` created instances straight into the store file, many writes in flight at once so
/// the writer group-commits them.
async fn fill(store: Arc<dyn Store>, n: u64, spaces: u64) -> Vec<String> {
    let lease = Lease {
        owner: "bench".into(),
        expires_at: i64::MAX,
    };
    let mut guids = Vec::with_capacity(n as usize);
    let batch = 2_000;
    for start in (0..n).step_by(batch) {
        let mut tasks = Vec::new();
        for i in start..(start + batch as u64).min(n) {
            let (store, lease) = (store.clone(), lease.clone());
            tasks.push(tokio::spawn(async move {
                let guid = uuid::Uuid::now_v7().to_string();
                let reservation = Reservation {
                    guid: guid.clone(),
                    name: format!("inst-{i}"),
                    space_guid: space(i, spaces),
                    organization_guid: Some("org".into()),
                    service_plan_guid: PLAN_GUID.into(),
                    broker: BROKER_NAME.into(),
                    tags: vec![],
                    creator_user_id: "bench".into(),
                    creator_email: None,
                    created_at: 1_795_000_000,
                };
                store.reserve(&reservation, &lease).await.expect("reserve");
                let raw = |s: &str| RawValue::from_string(s.to_string()).expect("json");
                let provisioned = Provisioned {
                    broker_service_id: format!("svc-{i}"),
                    gateway_data: raw(r#"{"plan":"free"}"#),
                    credentials: raw(r#"{"user":"u","password":"p"}"#),
                    dashboard_url: None,
                };
                store.commit(&guid, &provisioned).await.expect("commit");
                guid
            }));
        }
        for t in tasks {
            guids.push(t.await.expect("fill task"));
        }
    }
    guids
}

fn list_query(field: InstanceField, value: &str) -> ListQuery<InstanceField> {
    ListQuery {
        conditions: vec![(field, vec![value.to_string()])],
        descending: false,
        offset: 0,
        limit: 50,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    for backend in backends.split(',') {
        match backend {
            "sqlite" => run_sqlite().await,
            "postgres" => match TestDatabase::create() {
                Some(db) => run_postgres(&db).await,
                None => println!("\n(PostgreSQL left out: no server)"),
            },
            other => panic!("BENCH_BACKENDS: unknown backend {other:?}"),
        }
    }
}

async fn run_sqlite() {
    let (n, spaces) = (
        env_or("BENCH_INSTANCES", 100_000),
        env_or("BENCH_SPACES", 1_000),
    );
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let config = GatewayConfig::new(&broker.url());
    let options = SqliteOptions {
        synchronous: Synchronous::Normal,
        ..SqliteOptions::default()
    };
    let store = Arc::new(SqliteStore::open(&config.sqlite_path(), options).expect("store"));
    let began = Instant::now();
    let guids = fill(store.clone(), n, spaces).await;
    eprintln!(
        "sqlite: filled {n} instances in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    let plan = |field, value: &str| {
        store
            .explain_list(&list_query(field, value))
            .expect("explain")
    };
    let plans = (
        plan(InstanceField::SpaceGuid, &space(7, spaces)),
        plan(InstanceField::Name, "inst-7"),
    );
    drop(store);
    measure("SQLite", config, guids, plans).await;
}

async fn run_postgres(db: &TestDatabase) {
    let (n, spaces) = (
        env_or("BENCH_INSTANCES", 100_000),
        env_or("BENCH_SPACES", 1_000),
    );
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let options = PgOptions {
        url: db.url().to_string(),
        pool_size: 32,
        ..PgOptions::default()
    };
    let store = Arc::new(PgStore::open(&options).await.expect("store"));
    let began = Instant::now();
    let guids = fill(store.clone(), n, spaces).await;
    eprintln!(
        "postgres: filled {n} instances in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    // Fresh statistics, as autovacuum would gather them in time.
    db.query("ANALYZE");
    let space_plan = store
        .explain_list(&list_query(InstanceField::SpaceGuid, &space(7, spaces)))
        .await
        .expect("explain");
    let name_plan = store
        .explain_list(&list_query(InstanceField::Name, "inst-7"))
        .await
        .expect("explain");
    drop(store);
    let config = GatewayConfig::new(&broker.url()).store_key("url", db.url());
    measure("PostgreSQL", config, guids, (space_plan, name_plan)).await;
}

/// Drives the three reads through a gateway on `config`'s store and prints their table and the
/// store's plans.
async fn measure(
    backend: &str,
    config: GatewayConfig,
    guids: Vec<String>,
    (space_plan, name_plan): (Vec<String>, Vec<String>),
) {
    let n = env_or("BENCH_INSTANCES", 100_000);
    let spaces = env_or("BENCH_SPACES", 1_000);
    let seconds = env_or("BENCH_SECONDS", 5);
    let concurrency = env_or("BENCH_CONCURRENCY", 16);
    let rounds = env_or("BENCH_ROUNDS", 3);
    let gateway = Gateway::start(config).await;
    let auth = format!("bearer {}", support::token::valid_token());
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency as usize)
        .build()
        .expect("client");
    let base = gateway.url();
    let get = |path: Arc<dyn Fn(u64) -> String + Send + Sync>| {
        let (client, auth, base) = (client.clone(), auth.clone(), base.clone());
        Arc::new(move |i: u64| {
            let req = client
                .get(format!("{base}{}", path(i)))
                .header("Authorization", &auth);
            async move { succeeded(req, 200).await }
        })
    };
    let guids = Arc::new(guids);
    let by_guid = {
        let guids = guids.clone();
        get(Arc::new(move |i| {
            format!(
                "/v2/service_instances/{}",
                guids[(i as usize * 7919) % guids.len()]
            )
        }))
    };
    let by_space = get(Arc::new(move |i| {
        format!(
            "/v2/service_instances?q=space_guid:{}",
            space(i * 7919, spaces)
        )
    }));
    let by_name = get(Arc::new(move |i| {
        format!("/v2/service_instances?q=name:inst-{}", (i * 7919) % n)
    }));

    let candidates = [
        ("GET /v2/service_instances/:guid", by_guid),
        (
            "GET /v2/service_instances?q=space_guid:X (50 of 100)",
            by_space,
        ),
        ("GET /v2/service_instances?q=name:X", by_name),
    ];
    for (_, request) in &candidates {
        let r = request.clone();
        closed_loop(concurrency, 1, move |i| r(i)).await;
    }
    let mut results: Vec<Vec<Round>> = candidates.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (k, (_, request)) in candidates.iter().enumerate() {
            let r = request.clone();
            let offset = round * 1_000_003;
            results[k].push(closed_loop(concurrency, seconds, move |i| r(i + offset)).await);
        }
    }

    println!("\n{backend}: {n} instances over {spaces} spaces, {rounds} rounds x {seconds} s, {concurrency} concurrent clients (medians of rounds)\n");
    println!("| request | requests/s | p50 ms | p99 ms | failed |");
    println!("|---|---:|---:|---:|---:|");
    for ((name, _), rs) in candidates.iter().zip(&results) {
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
    }
    println!("\nQuery plans (count, then page):\n");
    println!("q=space_guid: {space_plan:#?}");
    println!("q=name: {name_plan:#?}");
}
