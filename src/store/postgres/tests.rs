//! What only PostgreSQL promises: the conformance suite on a real server, and what separate
//! processes (here: separate stores, each with its own pool) sharing one database get —
//! one winner per race, migrations applied once, recovery claims never shared — and that an
//! unreachable server fails fast.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::test_db::{reachable_or_skip, TestDb};
use super::*;
use crate::store::conformance::{store_conformance, Factory, Subject};
use crate::store::{HandleReservation, Holder, ListQuery, State};

async fn setup() -> Option<impl Factory> {
    reachable_or_skip().await?;
    Some(fresh)
}

async fn fresh() -> Subject {
    let db = TestDb::create().await.unwrap();
    let store = PgStore::open(&options(&db.url)).await.unwrap();
    Subject::keeping(store, db)
}

store_conformance!(async setup());

fn options(url: &str) -> PgOptions {
    PgOptions {
        url: url.into(),
        ..PgOptions::default()
    }
}

/// A database of its own and `n` stores on it: `n` replicas.
async fn replicas(n: usize) -> Option<(TestDb, Vec<Arc<PgStore>>)> {
    reachable_or_skip().await?;
    let db = TestDb::create().await.unwrap();
    let mut stores = Vec::new();
    for _ in 0..n {
        stores.push(Arc::new(PgStore::open(&options(&db.url)).await.unwrap()));
    }
    Some((db, stores))
}

const NOW: i64 = 1_800_000_000;

fn reservation(guid: &str, name: &str) -> Reservation {
    Reservation {
        guid: guid.into(),
        name: name.into(),
        space_guid: "S".into(),
        organization_guid: None,
        service_plan_guid: "P".into(),
        broker: "echo".into(),
        tags: vec![],
        creator_user_id: "u".into(),
        creator_email: None,
        created_at: NOW,
    }
}

fn lease(owner: &str, expires_at: i64) -> Lease {
    Lease {
        owner: owner.into(),
        expires_at,
    }
}

fn provisioned(credentials: &str) -> Provisioned {
    Provisioned {
        broker_service_id: "svc".into(),
        gateway_data: RawValue::from_string("{}".into()).unwrap(),
        credentials: RawValue::from_string(credentials.into()).unwrap(),
        dashboard_url: None,
    }
}

async fn created(store: &PgStore, guid: &str, name: &str) {
    let held = lease("a", NOW + 100);
    store
        .reserve(&reservation(guid, name), &held)
        .await
        .unwrap();
    store.commit(guid, &provisioned("{}")).await.unwrap();
}

/// Who won a race of calls that each either pass or are refused with `loser`.
fn winners(results: Vec<Result<(), StoreError>>, loser: fn(&StoreError) -> bool) -> usize {
    results
        .into_iter()
        .filter(|r| match r {
            Ok(()) => true,
            Err(e) if loser(e) => false,
            Err(e) => panic!("{e:?}"),
        })
        .count()
}

async fn joined<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reserving_one_name_have_one_winner() {
    let Some((_db, stores)) = replicas(4).await else {
        return;
    };
    let tasks = (0..24)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            tokio::spawn(async move {
                let r = reservation(&format!("g{i}"), "contended");
                store.reserve(&r, &lease("a", NOW + 100)).await
            })
        })
        .collect();
    let results = joined(tasks).await;
    assert_eq!(winners(results, |e| matches!(e, StoreError::NameTaken)), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_deleting_one_instance_have_one_winner() {
    let Some((_db, stores)) = replicas(2).await else {
        return;
    };
    for round in 0..5 {
        let guid = format!("i{round}");
        created(&stores[0], &guid, &guid).await;
        let tasks = (0..6)
            .map(|i| {
                let (store, guid) = (stores[i % 2].clone(), guid.clone());
                tokio::spawn(async move {
                    store
                        .begin_delete(&guid, &lease("a", NOW + 100), true)
                        .await
                })
            })
            .collect();
        let results = joined(tasks).await;
        let won = winners(results, |e| matches!(e, StoreError::InProgress));
        assert_eq!(won, 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_binding_and_deleting_one_instance_have_one_winner() {
    let Some((_db, stores)) = replicas(2).await else {
        return;
    };
    for round in 0..5 {
        let guid = format!("i{round}");
        created(&stores[0], &guid, &guid).await;
        let (store, instance) = (stores[0].clone(), guid.clone());
        let delete = tokio::spawn(async move {
            store
                .begin_delete(&instance, &lease("a", NOW + 100), true)
                .await
        });
        let (store, instance) = (stores[1].clone(), guid.clone());
        let bind = tokio::spawn(async move {
            let handle = HandleReservation {
                guid: format!("b{round}"),
                instance_guid: instance,
                holder: Holder::App {
                    app_guid: "app".into(),
                    name: None,
                },
                binding_options: "{}".into(),
                creator_user_id: "u".into(),
                created_at: NOW,
            };
            store.reserve_handle(&handle, &lease("a", NOW + 100)).await
        });
        let results = vec![delete.await.unwrap(), bind.await.unwrap()];
        let won = winners(results, |e| matches!(e, StoreError::InProgress));
        assert_eq!(won, 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_opening_at_once_apply_each_migration_once() {
    if reachable_or_skip().await.is_none() {
        return;
    }
    let db = TestDb::create().await.unwrap();
    let opens = (0..5)
        .map(|_| {
            let options = options(&db.url);
            tokio::spawn(async move { PgStore::open(&options).await.map(|s| s.schema()) })
        })
        .collect();
    let versions: Vec<SchemaVersion> = joined(opens)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let latest = schema::LATEST as u32;
    assert!(versions.iter().all(|v| v.reached == latest), "{versions:?}");
    // One migrated from nothing; the others waited for it and found it done.
    assert_eq!(versions.iter().filter(|v| v.found == 0).count(), 1);

    let (client, task) = connect(&db.url).await;
    let rows = client
        .query(
            "SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    let counts: Vec<(i32, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected: Vec<(i32, i64)> = (1..=schema::LATEST).map(|v| (v, 1)).collect();
    assert_eq!(counts, expected);
    drop(client);
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_a_newer_brokergate_is_refused() {
    let Some((db, _stores)) = replicas(1).await else {
        return;
    };
    let (client, task) = connect(&db.url).await;
    client
        .execute(
            "INSERT INTO schema_migrations (version, description) VALUES ($1, 'from the future')",
            &[&(schema::LATEST + 1)],
        )
        .await
        .unwrap();
    drop(client);
    task.await.unwrap();
    for refused in [
        PgStore::open(&options(&db.url)).await.map(drop),
        PgStore::migrate(&options(&db.url)).await.map(drop),
    ] {
        let Err(e) = refused else {
            panic!("opened a newer schema")
        };
        assert!(matches!(e, StoreError::Backend(_)), "{e:?}");
        assert!(e.to_string().contains("newer than this brokergate"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_claiming_at_once_never_share_a_row() {
    let Some((_db, stores)) = replicas(2).await else {
        return;
    };
    let gone = lease("gone", NOW - 1);
    let mut expected = HashSet::new();
    for i in 0..30 {
        let guid = format!("i{i}");
        created(&stores[0], &guid, &guid).await;
        stores[0].begin_delete(&guid, &gone, true).await.unwrap();
        expected.insert(guid);
    }
    for round in 0..3 {
        let tasks = ["x", "y"]
            .into_iter()
            .enumerate()
            .map(|(i, owner)| {
                let store = stores[i].clone();
                tokio::spawn(async move {
                    let policy = RecoveryPolicy {
                        owner: owner.into(),
                        now: NOW + round * 1000,
                        predecessor_gone: false,
                    };
                    // Expires before the next round's `now`: each round claims all again.
                    let claimed = store
                        .claim_unfinished(&policy, &lease(owner, NOW + round * 1000 + 500))
                        .await
                        .unwrap();
                    claimed
                        .deletes
                        .into_iter()
                        .map(|(i, _)| i.reservation.guid)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let claims = joined(tasks).await;
        let mut seen = HashSet::new();
        for guid in claims.into_iter().flatten() {
            assert!(
                seen.insert(guid.clone()),
                "round {round}: {guid} claimed twice"
            );
        }
        assert_eq!(seen, expected, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_back_byte_for_byte() {
    let Some((_db, stores)) = replicas(1).await else {
        return;
    };
    let store = &stores[0];
    // Key order, duplicates, spacing and escapes a JSONB column would not keep.
    let odd = r#"{ "z":1,"a" : [3, 1],"z":2, "u":"\u00e9\n" }"#;
    store
        .reserve(&reservation("g", "n"), &lease("a", NOW + 100))
        .await
        .unwrap();
    store.commit("g", &provisioned(odd)).await.unwrap();
    let got = store.get("g").await.unwrap().unwrap();
    let State::Created(p) = got.state else {
        panic!("{:?}", got.state)
    };
    assert_eq!(p.credentials.get(), odd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_leaves_no_connection_behind_its_runtime() {
    let Some((db, _stores)) = replicas(0).await else {
        return;
    };
    let url = db.url.clone();
    // As the gateway does before the fork: open on a runtime that then ends.
    let store = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(PgStore::open(&options(&url))).unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(store.pool_status().size, 0);
    assert_eq!(sessions_on(&db).await, 0);
    // The pool opens connections on the runtime that uses it.
    store.ping().await.unwrap();
    let status = store.pool_status();
    assert_eq!((status.size, status.in_use, status.max), (1, 0, 16));
    assert!(!store
        .explain_list(&ListQuery {
            conditions: vec![],
            descending: false,
            offset: 0,
            limit: 50,
        })
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_server_ended_is_replaced() {
    let Some((db, stores)) = replicas(1).await else {
        return;
    };
    let store = &stores[0];
    store.ping().await.unwrap();
    let (client, task) = connect(&test_db::admin_url()).await;
    client
        .execute(
            // Waits (up to 5 s) for each to exit.
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = $1",
            &[&db.name],
        )
        .await
        .unwrap();
    drop(client);
    task.await.unwrap();
    // The pool may not have seen the close yet: one call may fail, as retryable.
    match store.get("g").await {
        Ok(_) => {}
        Err(e) => assert!(e.is_retryable(), "{e:?}"),
    }
    store.get("g").await.unwrap();
}

#[tokio::test]
async fn a_closed_port_is_unavailable_within_the_acquire_timeout() {
    let options = PgOptions {
        url: "postgres://app:s3cret@127.0.0.1:1/db".into(),
        password: Some("0ther-s3cret".into()),
        acquire_timeout: Duration::from_millis(500),
        ..PgOptions::default()
    };
    let started = Instant::now();
    let Err(e) = PgStore::open(&options).await else {
        panic!("opened a closed port")
    };
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
    // A pool already built (the server went away after the start) fails the same way.
    let target = Target::of(&options).unwrap();
    let store = PgStore {
        connections: Connections::new(target, &options).unwrap(),
        schema: SchemaVersion {
            found: 0,
            reached: 0,
        },
    };
    let pinged = store.ping().await;
    let got = store.get("g").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    for e in [Err(e), pinged.map(|_| None), got]
        .into_iter()
        .filter_map(Result::err)
    {
        assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}

/// A plain connection, for what a test checks or changes behind the store's back.
async fn connect(url: &str) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, task)
}

/// Sessions connected to the test database, once those closing have gone (a backend leaves
/// `pg_stat_activity` a moment after its client closed).
async fn sessions_on(db: &TestDb) -> i64 {
    let (client, task) = connect(&test_db::admin_url()).await;
    let mut n = 0;
    for _ in 0..20 {
        n = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&db.name],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(client);
    task.await.unwrap();
    n
}

/// On a server with TLS: `require` encrypts without checking the certificate (libpq's
/// meaning), `verify-full` refuses one the system's roots do not vouch for (a test server's
/// self-signed one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_encrypts_and_verify_full_checks_the_certificate() {
    let Some((db, _stores)) = replicas(0).await else {
        return;
    };
    let (client, task) = connect(&db.url).await;
    let ssl: String = client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    drop(client);
    task.await.unwrap();
    if ssl != "on" {
        eprintln!("sslmode test skipped: the server has no TLS");
        return;
    }
    let join = if db.url.contains('?') { '&' } else { '?' };
    let with = |mode: &str| options(&format!("{}{join}sslmode={mode}", db.url));
    let store = PgStore::open(&with("require")).await.unwrap();
    // A pooled connection, held open while its session is looked at.
    store.ping().await.unwrap();
    let (client, task) = connect(&test_db::admin_url()).await;
    let sessions: Vec<bool> = client
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.datname = $1",
            &[&db.name],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    drop(client);
    task.await.unwrap();
    // Every session the store holds (the pool may hold more than the one pinged) is TLS.
    assert!(
        !sessions.is_empty() && sessions.iter().all(|ssl| *ssl),
        "{sessions:?}"
    );
    let refused = PgStore::open(&with("verify-full")).await.map(drop);
    assert!(
        matches!(refused, Err(StoreError::Unavailable { .. })),
        "{refused:?}"
    );
}
