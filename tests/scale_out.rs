//! Several replicas on one PostgreSQL database: one broker call per operation across
//! replicas, a crashed replica's work taken over once its lease expires, migrations applied
//! once by replicas starting together, and a database that stops and comes back.
//!
//! Each test makes its own database (or, to stop the server, a cluster of its own) and drops
//! it; without PostgreSQL they skip outside CI and fail in CI (`tests/support/postgres.rs`).
#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;

use support::broker::{MockBroker, Mode};
use support::cc::assert_cc_error;
use support::client::{create, create_body, get, send, Response};
use support::gateway::{Gateway, GatewayConfig, BROKER_TOKEN};
use support::postgres::{OwnCluster, TestDatabase};
use support::token;

const INSTANCES: &str = "/v2/service_instances";
const T: Duration = Duration::from_secs(20);

/// A replica on `db`: its own owner (replicas sharing a database must not share one) and, for
/// the takeover tests, short leases and reaper passes.
fn replica(broker: &MockBroker, db_url: &str, owner: &str) -> GatewayConfig {
    GatewayConfig::new(&broker.url())
        .store_key("url", db_url)
        .store_key("owner", owner)
        .store_key("pool_size", 8u64)
}

async fn replicas(broker: &MockBroker, db: &TestDatabase, n: usize) -> Vec<Gateway> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(Gateway::start(replica(broker, db.url(), &format!("replica-{i}"))).await);
    }
    out
}

fn guid_of(resp: &Response) -> String {
    resp.json()["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn delete(base_url: &str, guid: &str) -> Response {
    let bearer = format!("bearer {}", token::valid_token());
    send(
        "DELETE",
        &format!("{base_url}{INSTANCES}/{guid}"),
        &[("authorization", bearer.as_str())],
        Vec::new(),
    )
    .await
}

fn logs(gw: &Gateway) -> String {
    format!("{}\n{}", gw.stderr(), gw.stdout())
}

#[tokio::test]
async fn sixty_creates_of_twenty_names_over_three_replicas_make_twenty_broker_calls() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let broker = MockBroker::start(BROKER_TOKEN).await;
    // Slow enough that the creates of one name overlap at the broker, were they let through.
    broker.set_mode(Mode::Delay(Duration::from_millis(200)));
    let gws = replicas(&broker, &db, 3).await;
    let urls: Vec<String> = gws.iter().map(|g| g.url()).collect();

    let tasks: Vec<_> = (0..60)
        .map(|i| {
            // Each name goes to all three replicas at once.
            let url = urls[i % 3].clone();
            let name = format!("shared-{}", i / 3);
            tokio::spawn(async move {
                create(&url, Some(&token::valid_token()), create_body(&name)).await
            })
        })
        .collect();
    let mut responses = Vec::new();
    for task in tasks {
        responses.push(tokio::time::timeout(T, task).await.unwrap().unwrap());
    }
    let created = responses.iter().filter(|r| r.status == 201).count();
    assert_eq!(created, 20, "{responses:#?}");
    for r in responses.iter().filter(|r| r.status != 201) {
        assert_cc_error(r, 400, 60002, "CF-ServiceInstanceNameTaken");
    }
    assert_eq!(broker.provision_count(), 20);
    assert_eq!(
        db.query(
            "SELECT count(*), count(DISTINCT name) FROM service_instances WHERE state = 'created'"
        ),
        "20|20"
    );
    // Every replica lists all twenty.
    for url in &urls {
        let list = get(
            &format!("{url}{INSTANCES}?results-per-page=100"),
            Some(&token::valid_token()),
        )
        .await;
        assert_eq!(list.json()["total_results"], 20, "{list:?}");
    }
}

#[tokio::test]
async fn ten_deletes_of_one_instance_over_three_replicas_make_one_broker_call() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let gws = replicas(&broker, &db, 3).await;
    let made = create(
        &gws[0].url(),
        Some(&token::valid_token()),
        create_body("doomed"),
    )
    .await;
    assert_eq!(made.status, 201, "{made:?}");
    let guid = guid_of(&made);
    broker.set_delete_mode(Mode::Delay(Duration::from_millis(300)));

    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let (url, guid) = (gws[i % 3].url(), guid.clone());
            tokio::spawn(async move { delete(&url, &guid).await })
        })
        .collect();
    let mut responses = Vec::new();
    for task in tasks {
        responses.push(tokio::time::timeout(T, task).await.unwrap().unwrap());
    }
    let deleted = responses.iter().filter(|r| r.status == 204).count();
    assert_eq!(deleted, 1, "{responses:#?}");
    for r in responses.iter().filter(|r| r.status != 204) {
        // At the broker meanwhile: 409 60016; already gone: 404 60004.
        match r.status {
            409 => assert_cc_error(r, 409, 60016, "CF-AsyncServiceInstanceOperationInProgress"),
            _ => assert_cc_error(r, 404, 60004, "CF-ServiceInstanceNotFound"),
        };
    }
    assert_eq!(broker.delete_count(), 1);
    assert_eq!(db.query("SELECT count(*) FROM service_instances"), "0");
}

/// Short leases: a broker call's lease is its timeout per call plus the margin, so a crashed
/// replica's rows are free for the others after a few seconds.
fn short_leases(config: GatewayConfig) -> GatewayConfig {
    config
        .broker_timeout_seconds(2)
        .store_key("lease_margin_seconds", 1u64)
        .store_key("reaper_interval_seconds", 1u64)
}

#[tokio::test]
async fn a_create_cut_by_kill_9_is_released_by_another_replica_once_its_lease_expires() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let mut a = Gateway::start(short_leases(replica(&broker, db.url(), "replica-a"))).await;
    let b = Gateway::start(short_leases(replica(&broker, db.url(), "replica-b"))).await;
    let kept = create(&b.url(), Some(&token::valid_token()), create_body("kept")).await;
    assert_eq!(kept.status, 201);

    broker.set_mode(Mode::Delay(Duration::from_millis(1500)));
    let url = a.url();
    let cut = tokio::spawn(async move {
        create(&url, Some(&token::valid_token()), create_body("cut-short")).await
    });
    assert!(broker.wait_for_provisions(2, T).await);
    a.kill9();
    let _ = cut.await;
    assert_eq!(
        db.query("SELECT state, lease_owner FROM service_instances WHERE name = 'cut-short'"),
        "reserved|replica-a"
    );
    // While the lease runs, the name stays held, on every replica.
    broker.set_mode(Mode::Ok);
    let held = create(
        &b.url(),
        Some(&token::valid_token()),
        create_body("cut-short"),
    )
    .await;
    assert_cc_error(&held, 400, 60002, "CF-ServiceInstanceNameTaken");

    // Past the lease (2 calls × 2 s + 1 s), replica b's reaper releases it and says so.
    let released = support::wait_until(T, || {
        db.query("SELECT count(*) FROM service_instances WHERE name = 'cut-short'") == "0"
    })
    .await;
    assert!(released, "{}", logs(&b));
    assert!(logs(&b).contains("Released a reservation whose holder is gone"));
    let retry = create(
        &b.url(),
        Some(&token::valid_token()),
        create_body("cut-short"),
    )
    .await;
    assert_eq!(retry.status, 201, "{retry:?}");

    // No record without its broker instance, and no broker instance without a record. (The
    // mock abandons a provision whose caller hung up; a gateway that carried on would hold one
    // instance whose answer died with replica a — v1 has no lookup by name, so the reaper's log
    // line above is what names it; see the README.)
    let recorded: Vec<String> = db
        .query("SELECT broker_service_id FROM service_instances ORDER BY seq")
        .lines()
        .map(String::from)
        .collect();
    let held: Vec<String> = broker
        .issued_ids()
        .into_iter()
        .filter(|id| broker.holds_instance(id))
        .collect();
    assert_eq!(recorded, held);
    assert_eq!(recorded.len(), 2);
}

#[tokio::test]
async fn a_delete_cut_by_kill_9_is_finished_by_another_replica_once_its_lease_expires() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let mut a = Gateway::start(short_leases(replica(&broker, db.url(), "replica-a"))).await;
    let b = Gateway::start(short_leases(replica(&broker, db.url(), "replica-b"))).await;
    let made = create(
        &a.url(),
        Some(&token::valid_token()),
        create_body("half-deleted"),
    )
    .await;
    assert_eq!(made.status, 201);
    let guid = guid_of(&made);
    let service_id = broker.issued_ids()[0].clone();

    broker.set_delete_mode(Mode::Delay(Duration::from_millis(1500)));
    let url = a.url();
    let g = guid.clone();
    let cut = tokio::spawn(async move { delete(&url, &g).await });
    assert!(broker.wait_for_deletes(1, T).await);
    a.kill9();
    let _ = cut.await;
    assert_eq!(
        db.query(&format!(
            "SELECT state FROM service_instances WHERE guid = '{guid}'"
        )),
        "deleting"
    );
    // Replica b shows the delete in progress while the lease runs.
    let read = get(
        &format!("{}{INSTANCES}/{guid}", b.url()),
        Some(&token::valid_token()),
    )
    .await;
    assert_eq!(read.json()["entity"]["last_operation"]["type"], "delete");

    let finished = support::wait_until(T, || {
        db.query("SELECT count(*) FROM service_instances") == "0"
    })
    .await;
    assert!(finished, "{}", logs(&b));
    assert!(logs(&b).contains("Finished a delete a previous process left"));
    // The broker finished the first deprovision; the takeover's found it gone (404 = done).
    assert!(!broker.holds_instance(&service_id));
    assert!(broker
        .issued_ids()
        .iter()
        .all(|id| !broker.holds_instance(id)));
    let gone = get(
        &format!("{}{INSTANCES}/{guid}", b.url()),
        Some(&token::valid_token()),
    )
    .await;
    assert_cc_error(&gone, 404, 60004, "CF-ServiceInstanceNotFound");
}

#[tokio::test]
async fn five_replicas_starting_at_once_on_an_empty_database_migrate_it_once() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let mut starting: Vec<Gateway> = (0..5)
        .map(|i| Gateway::spawn(replica(&broker, db.url(), &format!("r{i}"))))
        .collect();
    for gw in &mut starting {
        gw.wait_ready(T).await.unwrap();
    }
    assert_eq!(
        db.query(
            "SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version"
        ),
        "1|1"
    );
    assert_eq!(
        db.query("SELECT count(*) FROM pg_tables WHERE tablename = 'service_instances'"),
        "1"
    );
    let made = create(
        &starting[4].url(),
        Some(&token::valid_token()),
        create_body("after"),
    )
    .await;
    assert_eq!(made.status, 201, "{made:?}");
}

#[tokio::test]
async fn a_database_that_stops_under_load_gives_prompt_503s_and_service_resumes_when_it_returns() {
    let Some(cluster) = OwnCluster::start() else {
        return;
    };
    let db = cluster.database();
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let gw = Gateway::start(
        replica(&broker, db.url(), "only")
            .store_key("acquire_timeout_seconds", 1u64)
            .store_key("connect_timeout_seconds", 1u64),
    )
    .await;
    let token = token::valid_token();
    let mut committed = Vec::new();
    for i in 0..5 {
        let r = create(&gw.url(), Some(&token), create_body(&format!("before-{i}"))).await;
        assert_eq!(r.status, 201, "{r:?}");
        committed.push(guid_of(&r));
    }

    cluster.stop_immediate();
    // Every request that needs the store is a prompt 503 10015, never a hang; /readyz says why.
    for i in 0..6 {
        let started = Instant::now();
        let r = create(&gw.url(), Some(&token), create_body(&format!("during-{i}"))).await;
        let took = started.elapsed();
        assert_cc_error(&r, 503, 10015, "CF-ServiceUnavailable");
        assert!(!r.text().contains("postgres://"), "{r:?}");
        assert!(took < Duration::from_secs(4), "took {took:?}");
        let read = get(
            &format!("{}{INSTANCES}/{}", gw.url(), committed[0]),
            Some(&token),
        )
        .await;
        assert_cc_error(&read, 503, 10015, "CF-ServiceUnavailable");
    }
    let ready = get(&format!("{}/readyz", gw.admin_url()), None).await;
    assert_eq!(ready.status, 503, "{ready:?}");
    assert!(ready.text().contains("store unavailable"), "{ready:?}");
    assert_eq!(
        broker.provision_count(),
        5,
        "no broker call without a reservation"
    );

    cluster.start_server();
    // Service resumes by itself: no restart.
    let resumed = support::wait_until_async(T, || {
        let url = gw.url();
        let token = token.clone();
        async move {
            create(&url, Some(&token), create_body("after-restart"))
                .await
                .status
                == 201
        }
    })
    .await;
    assert!(resumed, "{}", logs(&gw));
    let ready = get(&format!("{}/readyz", gw.admin_url()), None).await;
    assert_eq!(ready.status, 200, "{ready:?}");
    // Nothing a client saw as 201 is lost.
    for guid in &committed {
        let read = get(&format!("{}{INSTANCES}/{guid}", gw.url()), Some(&token)).await;
        assert_eq!(read.status, 200, "{read:?}");
    }
    let list = get(&format!("{}{INSTANCES}", gw.url()), Some(&token)).await;
    let body: Value = list.json();
    let names: Vec<&str> = body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["entity"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "before-0",
            "before-1",
            "before-2",
            "before-3",
            "before-4",
            "after-restart"
        ]
    );
}
