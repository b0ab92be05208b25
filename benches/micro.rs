//! Criterion micro benchmarks of the create path's CPU steps, each alone:
//!
//! - `parse_validate`: `cc::request::decode` + `service::rules::check_name_and_tags` of the documented
//!   request body, minimal and with parameters/tags/gateway_data;
//! - `v1_body_build`: serializing the `v1::ProvisionRequest` sent to the broker;
//! - `envelope_render`: `cc::envelope::render_instance`, the 201 body;
//! - `store_insert`: `SqliteStore` reserve + commit of one instance in a temp dir, with
//!   `synchronous = full` (a 201 survives power loss: an fsync per transaction) and `normal`
//!   (survives a process crash) — the store's cost is the disk's, so compare the two.
//!
//! Token verification (cached and uncached) is in `benches/token_verify.rs`.
//!
//! Run: `scripts/cargo.sh bench --bench micro` (all), or with a filter, e.g.
//! `scripts/cargo.sh bench --bench micro -- store_insert`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use brokergate::cc::envelope::{render_instance, Credentials, InstanceView, LastOperationView};
use brokergate::cc::request::decode;
use brokergate::service::rules::check_name_and_tags;
use brokergate::store::{
    Lease, Provisioned, Reservation, SqliteOptions, SqliteStore, Store, Synchronous,
};
use brokergate::v1::ProvisionRequest;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::value::RawValue;

const PLAN_GUID: &str = "6df3af55-8f97-4dbe-9d6b-098eb53d8c17";
const SPACE_GUID: &str = "f24c6904-30e0-4559-9523-06d2d93f0c9c";
const ORG_GUID: &str = "b8c5a6a4-1cc8-4ae5-8a8f-3d4e5b6c7d8e";

/// The documented request (what the load harness sends).
const MINIMAL: &str = r#"{"space_guid":"f24c6904-30e0-4559-9523-06d2d93f0c9c","name":"my-service-instance","service_plan_guid":"6df3af55-8f97-4dbe-9d6b-098eb53d8c17"}"#;
/// Every optional field, as the README shows them.
const FULL: &str = r#"{"name":"my-service-instance","space_guid":"f24c6904-30e0-4559-9523-06d2d93f0c9c","service_plan_guid":"6df3af55-8f97-4dbe-9d6b-098eb53d8c17","parameters":{"size":"small","replicas":3,"options":{"backup":true,"window":"02:00-03:00"}},"tags":["mysql","db","staging"],"gateway_data":{"plan":"free","extra":[1,2,3]}}"#;

fn parse_validate(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_validate");
    for (name, body) in [("minimal", MINIMAL), ("full", FULL)] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let req = decode(black_box(body.as_bytes())).expect("valid body");
                check_name_and_tags(&req.name, &req.tags).expect("valid name");
                req
            })
        });
    }
    g.finish();
}

fn v1_body_build(c: &mut Criterion) {
    let mut g = c.benchmark_group("v1_body_build");
    let full = decode(FULL.as_bytes()).expect("valid body");
    for (name, with_options) in [("minimal", false), ("full", true)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let body = ProvisionRequest {
                    label: format!("{}-{}", "echo", "1.0"),
                    email: Some("email-148@somedomain.com"),
                    plan: "free",
                    version: "1.0",
                    provider: Some("core"),
                    space_guid: black_box(SPACE_GUID),
                    organization_guid: Some(ORG_GUID),
                    unique_id: "echo-free",
                    name: black_box("my-service-instance"),
                    plan_option: full.gateway_data.as_deref().filter(|_| with_options),
                    parameters: full.parameters.as_deref().filter(|_| with_options),
                };
                serde_json::to_vec(&body).expect("serializable")
            })
        });
    }
    g.finish();
}

fn envelope_render(c: &mut Criterion) {
    let credentials = RawValue::from_string(
        r#"{"host":"127.0.0.1","port":5002,"name":"svc-1","username":"u","password":"p"}"#.into(),
    )
    .expect("json");
    let gateway_data =
        RawValue::from_string(r#"{"plan":"free","version":"1.0"}"#.into()).expect("json");
    let tags = vec!["mysql".to_string(), "db".to_string()];
    c.bench_function("envelope_render", |b| {
        b.iter(|| {
            render_instance(black_box(&InstanceView {
                guid: "2c4c1a86-3b5e-4f6a-9d0e-8f1b2c3d4e5f",
                name: "my-service-instance",
                credentials: Credentials::Shown(&credentials),
                service_plan_guid: PLAN_GUID,
                space_guid: SPACE_GUID,
                gateway_data: &gateway_data,
                dashboard_url: Some("http://dashboard.example.com/svc-1"),
                tags: &tags,
                service_guid: Some("3dcca525-780d-5783-84f7-8a1c014e5780"),
                last_operation: LastOperationView::succeeded("create"),
                created_at: 1_795_792_284,
                updated_at: None,
                inline: None,
            }))
        })
    });
}

fn store_insert(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let provisioned = Provisioned {
        broker_service_id: "svc-1".into(),
        gateway_data: RawValue::from_string(r#"{"plan":"free","version":"1.0"}"#.into())
            .expect("json"),
        credentials: RawValue::from_string(r#"{"host":"127.0.0.1","port":5002}"#.into())
            .expect("json"),
        dashboard_url: Some("http://dashboard.example.com/svc-1".into()),
    };
    let mut g = c.benchmark_group("store_insert");
    // An fsync per transaction makes `full` slow on most disks: fewer, longer samples.
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    let lease = Lease {
        owner: "bench".into(),
        expires_at: i64::MAX,
    };
    for (sync, synchronous) in [("full", Synchronous::Full), ("normal", Synchronous::Normal)] {
        // Under target/ (a real disk, as the server's store would be), not a tmpfs /tmp.
        let dir = tempfile::Builder::new()
            .prefix("micro-store-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("tempdir");
        let options = SqliteOptions {
            synchronous,
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open(&dir.path().join("store.sqlite3"), options).expect("store");
        let n = AtomicU64::new(0);
        g.bench_function(format!("reserve_commit_synchronous_{sync}"), |b| {
            b.iter_batched(
                || {
                    let i = n.fetch_add(1, Ordering::Relaxed);
                    Reservation {
                        guid: format!("guid-{i}"),
                        name: format!("name-{i}"),
                        space_guid: SPACE_GUID.into(),
                        organization_guid: Some(ORG_GUID.into()),
                        service_plan_guid: PLAN_GUID.into(),
                        broker: "echo".into(),
                        tags: Vec::new(),
                        creator_user_id: "uaa-id-207".into(),
                        creator_email: Some("email-148@somedomain.com".into()),
                        created_at: 1_795_792_284,
                    }
                },
                |r| {
                    rt.block_on(async {
                        store.reserve(&r, &lease).await.expect("reserve");
                        store.commit(&r.guid, &provisioned).await.expect("commit");
                    })
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    parse_validate,
    v1_body_build,
    envelope_render,
    store_insert
);
criterion_main!(benches);
