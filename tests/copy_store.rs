//! `brokergate copy-store`: a store made through the API on SQLite, copied into PostgreSQL,
//! answers the same from a gateway on PostgreSQL — every read and list, byte for byte, in the
//! same order; a second copy into the now non-empty database is refused and changes nothing;
//! rows in flight are refused; a bad `--from` is a clear error. Skipped outside CI without a
//! PostgreSQL server.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use support::broker::MockBroker;
use support::client::{create, create_body, get, send, Response};
use support::gateway::{Gateway, GatewayConfig, BROKER_TOKEN};
use support::postgres::TestDatabase;
use support::token;

const BIN: &str = env!("CARGO_BIN_EXE_brokergate");
const INSTANCES: &str = "/v2/service_instances";
const BINDINGS: &str = "/v2/service_bindings";
const KEYS: &str = "/v2/service_keys";

/// `brokergate copy-store ARGS…`, without inherited `BROKERGATE*` overrides.
fn copy_store(args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("copy-store").args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("BROKERGATE") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("run brokergate copy-store")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn call(gw: &Gateway, method: &str, path: &str, body: Value) -> Response {
    let auth = format!("bearer {}", token::valid_token());
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let url = format!("{}{path}", gw.url());
    send(method, &url, &headers, body.to_string().into_bytes()).await
}

async fn read(gw: &Gateway, path: &str) -> Response {
    get(&format!("{}{path}", gw.url()), Some(&token::valid_token())).await
}

fn guid(resp: &Response) -> String {
    resp.json()["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every answer the copy must keep: each instance, binding and key read, and the three lists,
/// as (path, status, body).
async fn answers(gw: &Gateway, paths: &[String]) -> Vec<(String, u16, String)> {
    let mut seen = Vec::new();
    for path in paths {
        let resp = read(gw, path).await;
        assert_eq!(resp.status, 200, "{path}: {resp:?}");
        seen.push((path.clone(), resp.status, resp.text()));
    }
    seen
}

/// The rows of both tables, in creation order, as one text (for "changed nothing").
fn dump(db: &TestDatabase) -> String {
    db.query(
        "SELECT (SELECT string_agg(i::text, E'\\n' ORDER BY seq) FROM service_instances i)
             || E'\\n--\\n' ||
                (SELECT string_agg(h::text, E'\\n' ORDER BY seq) FROM service_handles h)",
    )
}

#[tokio::test]
async fn a_sqlite_store_copied_to_postgres_answers_the_same() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let broker = MockBroker::start(BROKER_TOKEN).await;

    // On SQLite: three instances (one renamed and retagged), two bindings and a key.
    let config = GatewayConfig::new(&broker.url());
    let sqlite = config.sqlite_path();
    let mut gw = Gateway::start(config).await;
    let mut instances = Vec::new();
    for n in 0..3 {
        let name = format!("copy-{n}-{}", uuid::Uuid::new_v4().simple());
        let created = create(&gw.url(), Some(&token::valid_token()), create_body(&name)).await;
        assert_eq!(created.status, 201, "{created:?}");
        instances.push(guid(&created));
    }
    let renamed = call(
        &gw,
        "PUT",
        &format!("{INSTANCES}/{}", instances[1]),
        json!({"name": "renamed", "tags": ["b", "a", "é"]}),
    )
    .await;
    assert_eq!(renamed.status, 201, "{renamed:?}");
    let mut handles = Vec::new();
    for (instance, app) in [(&instances[2], "app-1"), (&instances[0], "app-2")] {
        let body = json!({"service_instance_guid": instance, "app_guid": app,
                          "parameters": {"z": 1, "a": [true, null]}});
        let bound = call(&gw, "POST", BINDINGS, body).await;
        assert_eq!(bound.status, 201, "{bound:?}");
        handles.push(format!("{BINDINGS}/{}", guid(&bound)));
    }
    let key = call(
        &gw,
        "POST",
        KEYS,
        json!({"service_instance_guid": instances[1], "name": "k1"}),
    )
    .await;
    assert_eq!(key.status, 201, "{key:?}");
    handles.push(format!("{KEYS}/{}", guid(&key)));

    let mut paths: Vec<String> = instances
        .iter()
        .map(|g| format!("{INSTANCES}/{g}"))
        .collect();
    paths.extend(handles);
    paths.extend([INSTANCES.to_string(), BINDINGS.into(), KEYS.into()]);
    paths.push(format!("{INSTANCES}?order-direction=desc"));
    let on_sqlite = answers(&gw, &paths).await;
    let listed = &on_sqlite[paths.len() - 4].2;
    assert!(
        listed.find(&instances[0]) < listed.find(&instances[1])
            && listed.find(&instances[1]) < listed.find(&instances[2]),
        "created order: {listed}"
    );
    gw.signal("TERM");
    assert!(gw.wait_exit(Duration::from_secs(10)).await.is_some());

    // Copy.
    let from = format!("sqlite:{}", sqlite.display());
    let out = copy_store(&["--from", &from, "--to", db.url()]);
    assert!(out.status.success(), "{out:?}");
    let line = text(&out.stdout);
    assert!(
        line.starts_with(&format!(
            "copied 3 instances, 2 bindings, 1 service key from {from} to postgres://"
        )),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1, "{line}");
    let copied = dump(&db);

    // On PostgreSQL: the same answers.
    let pg = GatewayConfig::new(&broker.url()).store_key("url", db.url());
    let gw = Gateway::start(pg).await;
    let on_postgres = answers(&gw, &paths).await;
    for (a, b) in on_sqlite.iter().zip(&on_postgres) {
        assert_eq!(a, b, "the same answer to GET {}", a.0);
    }
    assert_eq!(on_sqlite.len(), on_postgres.len());
    drop(gw);

    // A second copy into the now non-empty database: refused, nothing changed.
    let again = copy_store(&["--from", &from, "--to", db.url()]);
    assert!(!again.status.success(), "{again:?}");
    let said = text(&again.stderr);
    assert!(
        said.contains("already holds 3 instances and 3 bindings or service keys"),
        "{said}"
    );
    assert!(said.contains("Nothing was copied"), "{said}");
    assert!(text(&again.stdout).is_empty(), "{again:?}");
    assert_eq!(dump(&db), copied);

    // Rows in flight: refused before the target is reached.
    let fresh = TestDatabase::create().unwrap();
    {
        let conn = rusqlite::Connection::open(&sqlite).unwrap();
        conn.execute(
            "UPDATE service_instances SET state = 'deleting' WHERE guid = ?1",
            [&instances[0]],
        )
        .unwrap();
    }
    let in_flight = copy_store(&["--from", &from, "--to", fresh.url()]);
    assert!(!in_flight.status.success(), "{in_flight:?}");
    let said = text(&in_flight.stderr);
    assert!(
        said.contains("holds rows in flight (1 instance being deleted)"),
        "{said}"
    );
    assert!(said.contains("Stop brokergate"), "{said}");
    assert_eq!(
        fresh.query("SELECT count(*) FROM pg_tables WHERE tablename = 'service_instances'"),
        "0",
        "the target was not touched"
    );
}

#[test]
fn a_bad_from_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let target = "postgres://u:s3cret@127.0.0.1:1/db";

    let no_scheme = copy_store(&["--from", &missing.to_string_lossy(), "--to", target]);
    assert!(!no_scheme.status.success());
    let said = text(&no_scheme.stderr);
    assert!(said.contains("--from must be sqlite:PATH"), "{said}");

    let from = format!("sqlite:{}", missing.display());
    let no_file = copy_store(&["--from", &from, "--to", target]);
    assert!(!no_file.status.success());
    let said = text(&no_file.stderr);
    assert_eq!(
        said.trim(),
        format!(
            "brokergate: {from}: no such file (the [store] sqlite_path of the gateway to copy \
             from)"
        )
    );
    assert!(!missing.exists(), "no store was created");
    assert!(!said.contains("s3cret"));

    let no_to = copy_store(&["--from", &from]);
    assert!(!no_to.status.success());
    assert!(text(&no_to.stderr).contains("--to"), "{no_to:?}");
}
