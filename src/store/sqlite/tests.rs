//! What only SQLite promises: the conformance suite on a real file, group commit, a bounded
//! WAL, durability across a reopen, and the migrations.

use std::path::Path;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::*;
use crate::store::conformance::{store_conformance, Subject};
use crate::store::State;

store_conformance!(|| {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.sqlite3"), SqliteOptions::default());
    Subject::keeping(store.unwrap(), dir)
});

fn open(path: &Path, synchronous: Synchronous) -> SqliteStore {
    let options = SqliteOptions {
        synchronous,
        ..SqliteOptions::default()
    };
    SqliteStore::open(path, options).unwrap()
}

fn reservation(guid: &str, name: &str) -> Reservation {
    Reservation {
        guid: guid.into(),
        name: name.into(),
        space_guid: "S".into(),
        organization_guid: Some("O".into()),
        service_plan_guid: "P".into(),
        broker: "echo".into(),
        tags: vec!["t".into()],
        creator_user_id: "u".into(),
        creator_email: None,
        created_at: 1,
    }
}

fn lease() -> Lease {
    Lease {
        owner: "here".into(),
        expires_at: i64::MAX,
    }
}

fn provisioned() -> Provisioned {
    Provisioned {
        broker_service_id: "svc".into(),
        gateway_data: RawValue::from_string(r#"{"plan":"free"}"#.into()).unwrap(),
        credentials: RawValue::from_string(r#"{"pw":"x"}"#.into()).unwrap(),
        dashboard_url: None,
    }
}

/// A normal start after a crash, on this owner.
fn after_a_crash() -> RecoveryPolicy {
    RecoveryPolicy {
        owner: "here".into(),
        now: 2,
        predecessor_gone: true,
    }
}

async fn create(store: &SqliteStore, guid: &str, name: &str) -> Result<(), StoreError> {
    store.reserve(&reservation(guid, name), &lease()).await?;
    store.commit(guid, &provisioned()).await
}

#[tokio::test]
async fn committed_rows_survive_reopen_and_reservations_are_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    {
        let store = open(&path, Synchronous::Full);
        create(&store, "done", "a").await.unwrap();
        store
            .reserve(&reservation("crashed", "b"), &lease())
            .await
            .unwrap();
    }
    let store = open(&path, Synchronous::Full);
    let recovered = store.recover(&after_a_crash()).await.unwrap().instances;
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].guid, "crashed");
    let done = store.get("done").await.unwrap().unwrap();
    let State::Created(p) = done.state else {
        panic!("not created: {:?}", done.state)
    };
    assert_eq!(p.gateway_data.get(), r#"{"plan":"free"}"#);
    assert!(store.get("crashed").await.unwrap().is_none());
    // The recovered name is free again.
    store
        .reserve(&reservation("again", "b"), &lease())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_transactions_and_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir.path().join("s.sqlite3"), Synchronous::Full));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(
                async move { create(&store, &format!("g{i}"), &format!("n{}", i % 100)).await },
            )
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::NameTaken) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 100, "each of the 100 names is created exactly once");
    let mut created = 0;
    for i in 0..200 {
        let record = store.get(&format!("g{i}")).await.unwrap();
        if record.is_some_and(|r| matches!(r.state, State::Created(_))) {
            created += 1;
        }
    }
    assert_eq!(created, 100);
}

/// Steady concurrent writes must not grow the WAL without bound: the checkpointer alone
/// never copies all of it while writes keep coming, so SQLite would never start it over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_steady_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    let mut store = open(&path, Synchronous::Normal);
    // Small limits so a test-sized load crosses them: 64 pages (256 KiB), keep 256 KiB.
    store.wal_limits = WalLimits {
        restart_pages: 64,
        keep_bytes: 256 * 1024,
    };
    let store = Arc::new(store);
    let wal = dir.path().join("s.sqlite3-wal");
    let mut largest = 0;
    for round in 0..40 {
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let guid = format!("g{round}-{i}");
                    create(&store, &guid, &guid).await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        largest = largest.max(std::fs::metadata(&wal).unwrap().len());
    }
    // 4,000 creates write about 5 MiB of WAL when it is never started over (measured),
    // and under 300 KiB when it is.
    assert!(
        largest < 1024 * 1024,
        "WAL reached {largest} bytes with a 64-page limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_beyond_the_pool_wait_for_a_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    let options = SqliteOptions {
        read_connections: 2,
        ..SqliteOptions::default()
    };
    let store = Arc::new(SqliteStore::open(&path, options).unwrap());
    create(&store, "g", "n").await.unwrap();
    let reads: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.get("g").await })
        })
        .collect();
    for r in reads {
        assert!(r.await.unwrap().unwrap().is_some());
    }
    assert!(store.reads.open_connections() <= 2);
}

// ---------------------------------------------------------------------------------------------
// Migrations

/// A reserved and a created row, as the code before migrations wrote them (e236fb1), on its
/// schema: migration 1's, marked `user_version = 1`, without `schema_migrations`.
const BEFORE_MIGRATIONS: &str = "
PRAGMA user_version = 1;
INSERT INTO service_instances (guid, name, space_guid, organization_guid, service_plan_guid,
    broker, tags, creator_user_id, creator_email, state, created_at)
VALUES ('r1', 'held', 'S', 'O', 'P', 'echo', '[]', 'u', NULL, 'reserved', 10);
INSERT INTO service_instances (guid, name, space_guid, organization_guid, service_plan_guid,
    broker, tags, creator_user_id, creator_email, state, created_at, broker_service_id,
    gateway_data, credentials, dashboard_url)
VALUES ('c1', 'made', 'S', 'O', 'P', 'echo', '[\"a\"]', 'u', 'u@x', 'created', 11, 'svc',
    '{\"plan\":\"free\"}', '{\"pw\":\"x\"}', NULL);
";

fn versions(path: &Path) -> (u32, Vec<u32>) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let user_version = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let mut stmt = conn
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .unwrap();
    let applied = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    (user_version, applied)
}

#[test]
fn migrations_are_numbered_from_one_in_order() {
    for (i, m) in schema::MIGRATIONS.iter().enumerate() {
        assert_eq!(m.version as usize, i + 1, "{}", m.description);
    }
}

#[tokio::test]
async fn a_new_store_is_created_at_the_latest_schema_and_reopens_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    let store = open(&path, Synchronous::Full);
    let latest = schema::LATEST;
    assert_eq!(
        store.schema(),
        SchemaVersion {
            found: 0,
            reached: latest
        }
    );
    drop(store);
    let store = open(&path, Synchronous::Full);
    assert_eq!(store.schema().found, latest);
    assert_eq!(versions(&path), (latest, (1..=latest).collect()));
}

#[tokio::test]
async fn a_store_from_before_migrations_migrates_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(schema::MIGRATIONS[0].sql).unwrap();
    conn.execute_batch(BEFORE_MIGRATIONS).unwrap();
    drop(conn);

    let store = open(&path, Synchronous::Full);
    assert_eq!(store.schema().found, 1, "recognised as version 1");
    let latest = schema::LATEST;
    assert_eq!(versions(&path), (latest, (1..=latest).collect()));
    let made = store.get("c1").await.unwrap().unwrap();
    assert_eq!(made.last_operation, crate::store::Operation::Create);
    assert_eq!(made.updated_at, None);
    assert_eq!(made.reservation.tags, ["a"]);
    assert_eq!(made.reservation.creator_email.as_deref(), Some("u@x"));
    assert!(matches!(made.state, State::Created(ref p) if p.credentials.get() == r#"{"pw":"x"}"#));
    let held = store.get("r1").await.unwrap().unwrap();
    assert!(
        matches!(held.state, State::Reserved(ref l) if l.owner.is_empty() && l.expires_at == 0)
    );

    // Its reservation has no lease: even a start that leaves others' leases alone resolves it.
    let upgrade = RecoveryPolicy {
        predecessor_gone: false,
        ..after_a_crash()
    };
    let recovered = store.recover(&upgrade).await.unwrap().instances;
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].name, "held");
    // The name constraint is still per space.
    let taken = store.reserve(&reservation("n1", "made"), &lease()).await;
    assert!(matches!(taken, Err(StoreError::NameTaken)), "{taken:?}");
    create(&store, "n2", "held").await.unwrap();
}

#[tokio::test]
async fn a_row_written_without_a_lease_reads_as_expired() {
    // What a brokergate from before leases, still running beside a migrated store, writes.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    let store = open(&path, Synchronous::Full);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "INSERT INTO service_instances (guid, name, space_guid, organization_guid,
                 service_plan_guid, broker, tags, creator_user_id, creator_email, state, created_at)
             VALUES ('old', 'n', 'S', 'O', 'P', 'echo', '[]', 'u', NULL, 'reserved', 10);",
        )
        .unwrap();
    let got = store.get("old").await.unwrap().unwrap();
    assert!(matches!(got.state, State::Reserved(ref l) if l.expires_at == 0));
    let upgrade = RecoveryPolicy {
        predecessor_gone: false,
        ..after_a_crash()
    };
    assert_eq!(store.recover(&upgrade).await.unwrap().instances.len(), 1);
}

#[test]
fn a_store_newer_than_the_binary_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    drop(open(&path, Synchronous::Full));
    let future = schema::LATEST + 1;
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?1, 'x', 0)",
            [future],
        )
        .unwrap();
    let Err(e) = SqliteStore::open(&path, SqliteOptions::default()) else {
        panic!("a newer store opened");
    };
    let message = e.to_string();
    assert!(
        message.contains(&format!("version {future}"))
            && message.contains(&format!("brokergate's {}", schema::LATEST)),
        "{message}"
    );
}

#[tokio::test]
async fn the_checked_in_store_from_before_migrations_migrates() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1.sqlite3");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    std::fs::copy(&fixture, &path).unwrap();
    let store = open(&path, Synchronous::Full);
    assert_eq!(
        store.schema(),
        SchemaVersion {
            found: 1,
            reached: schema::LATEST
        }
    );
    // The fixture's rows (tests/fixtures/README.md), read back through the Store.
    for guid in ["created-1", "created-2"] {
        let record = store.get(guid).await.unwrap().unwrap();
        let State::Created(p) = record.state else {
            panic!("{guid}: {:?}", record.state)
        };
        assert_eq!(p.broker_service_id, format!("svc-{guid}"));
        assert_eq!(p.gateway_data.get(), r#"{"plan":"free"}"#);
        assert_eq!(record.reservation.space_guid, "space-1");
    }
    for guid in ["reserved-1", "reserved-2"] {
        let record = store.get(guid).await.unwrap().unwrap();
        assert!(
            matches!(record.state, State::Reserved(ref l) if l.expires_at == 0),
            "{guid}: {:?}",
            record.state
        );
    }
    let recovered = store.recover(&after_a_crash()).await.unwrap().instances;
    let names: Vec<_> = recovered.iter().map(|r| r.guid.as_str()).collect();
    assert_eq!(names, ["reserved-1", "reserved-2"]);
    assert!(store.get("created-1").await.unwrap().is_some());
}

#[test]
fn lists_by_space_name_or_plan_are_served_from_indexes() {
    use crate::store::{InstanceField, ListQuery};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    drop(open(&path, Synchronous::Full));
    let conn = rusqlite::Connection::open(&path).unwrap();
    // Statistics as a store with many rows has them, so the planner weighs the indexes.
    conn.execute_batch("ANALYZE").unwrap();
    for field in [
        InstanceField::SpaceGuid,
        InstanceField::Name,
        InstanceField::ServicePlanGuid,
        InstanceField::GatewayName,
        InstanceField::OrganizationGuid,
    ] {
        let query = ListQuery {
            conditions: vec![(field, vec!["x".into()])],
            descending: false,
            offset: 0,
            limit: 50,
        };
        let plans = reads::instance_list_plans(&conn, &query).unwrap();
        assert!(
            plans
                .iter()
                .all(|step| !step.starts_with("SCAN service_instances")),
            "{field:?}: {plans:#?}"
        );
        assert!(
            plans.iter().any(|step| step.contains("USING INDEX")),
            "{field:?}: {plans:#?}"
        );
    }
    // The whole list in creation order walks its index instead of sorting the table.
    let everything = ListQuery {
        conditions: vec![],
        descending: true,
        offset: 0,
        limit: 50,
    };
    let plans = reads::instance_list_plans(&conn, &everything).unwrap();
    assert!(
        plans.iter().all(|step| !step.contains("TEMP B-TREE")),
        "{plans:#?}"
    );
}
