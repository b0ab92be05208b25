//! Every instance is recorded, nothing is lost (issue #2 §5): names are reserved before the
//! broker call, a 201 survives `kill -9`, a crash mid-call leaves nothing held after restart,
//! and a commit failure after the broker provisioned is deprovisioned.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::broker::{MockBroker, Mode, CONFIGURATIONS_PATH, TOKEN_HEADER};
use support::cc;
use support::client::{create, create_body, get, send, Response};
use support::gateway::{Gateway, GatewayConfig, BROKER_TOKEN, ORG_GUID, PLAN_GUID, SPACE_GUID};
use support::store::{
    allow_commits, allow_handle_commits, fail_commits, fail_handle_commits, reserved_rows,
    row_by_guid, rows_named,
};
use support::token;

const T: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Helpers

async fn create_named(gw: &Gateway, name: &str) -> Response {
    create(&gw.url(), Some(&token::valid_token()), create_body(name)).await
}

fn name_taken_body(name: &str) -> Value {
    json!({
        "code": 60002,
        "description": format!("The service instance name is taken: {name}"),
        "error_code": "CF-ServiceInstanceNameTaken",
    })
}

fn assert_name_taken(resp: &Response, name: &str) {
    cc::assert_cc_error(resp, 400, 60002, "CF-ServiceInstanceNameTaken");
    assert_eq!(resp.json(), name_taken_body(name), "{resp:?}");
}

fn logs(gw: &Gateway) -> String {
    format!("{}\n{}", gw.stderr(), gw.stdout())
}

// ---------------------------------------------------------------------------------------------
// Concurrency

#[tokio::test]
async fn twenty_concurrent_creates_of_one_name_make_one_broker_call() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    broker.set_mode(Mode::Delay(Duration::from_millis(300)));
    let gw = Gateway::start(GatewayConfig::new(&broker.url())).await;
    let name = "contended-name";
    let url = gw.url();

    let started = Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                create(&url, Some(&token::valid_token()), create_body(name)).await
            })
        })
        .collect();
    let mut responses = Vec::new();
    for task in tasks {
        responses.push(tokio::time::timeout(T * 3, task).await.unwrap().unwrap());
    }
    let elapsed = started.elapsed();

    let created: Vec<&Response> = responses.iter().filter(|r| r.status == 201).collect();
    let taken: Vec<&Response> = responses.iter().filter(|r| r.status == 400).collect();
    assert_eq!(created.len(), 1, "exactly one 201: {responses:#?}");
    assert_eq!(taken.len(), 19, "nineteen 400s: {responses:#?}");
    for r in &taken {
        assert_name_taken(r, name);
    }
    assert_eq!(
        broker.provision_count(),
        1,
        "one broker call: {:#?}",
        broker.provision_requests()
    );
    assert_eq!(broker.delete_count(), 0);

    let winner = created[0].json();
    let rows = rows_named(gw.config(), name);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].guid, winner["metadata"]["guid"]);
    assert_eq!(rows[0].state, "created");
    assert!(reserved_rows(gw.config()).is_empty());
    println!("20 concurrent creates answered in {elapsed:?}");
}

// ---------------------------------------------------------------------------------------------
// Crashes

#[tokio::test]
async fn kill9_right_after_a_201_keeps_the_committed_record() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let mut gw = Gateway::start(GatewayConfig::new(&broker.url())).await;
    let name = "survives-kill9";

    let resp = create_named(&gw, name).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    let status = gw.kill9();
    assert!(!status.success(), "killed, not exited: {status:?}");
    let body = resp.json();
    let guid = body["metadata"]["guid"].as_str().unwrap().to_string();

    let row = row_by_guid(gw.config(), &guid).expect("the 201's row must be in the store");
    let issued = broker.issued_ids();
    assert_eq!(issued.len(), 1);
    assert_eq!(row.state, "created");
    assert_eq!(row.name, name);
    assert_eq!(row.space_guid, SPACE_GUID);
    assert_eq!(row.organization_guid.as_deref(), Some(ORG_GUID));
    assert_eq!(row.service_plan_guid, PLAN_GUID);
    assert_eq!(row.broker, "echo");
    assert_eq!(row.creator_user_id, token::DEFAULT_USER_ID);
    assert_eq!(row.broker_service_id.as_deref(), Some(issued[0].as_str()));
    let stored_credentials: Value =
        serde_json::from_str(row.credentials.as_deref().unwrap()).unwrap();
    let stored_gateway_data: Value =
        serde_json::from_str(row.gateway_data.as_deref().unwrap()).unwrap();
    assert_eq!(stored_credentials, body["entity"]["credentials"]);
    assert_eq!(stored_gateway_data, body["entity"]["gateway_data"]);
    assert_eq!(
        stored_credentials,
        json!({"host": "127.0.0.1", "port": 5002, "name": issued[0]})
    );
    assert_eq!(
        stored_gateway_data,
        json!({"plan": "free", "version": "1.0"})
    );
    assert_eq!(
        row.dashboard_url.as_deref(),
        Some(format!("http://dashboard.example.com/{}", issued[0]).as_str())
    );
    assert!(reserved_rows(gw.config()).is_empty());

    // A new gateway on the same store still holds the name.
    let restarted = Gateway::start(gw.config().clone()).await;
    let again = create_named(&restarted, name).await;
    assert_name_taken(&again, name);
    assert_eq!(broker.provision_count(), 1, "a taken name is not sent");
    assert_eq!(rows_named(restarted.config(), name).len(), 1);
}

#[tokio::test]
async fn a_reservation_left_by_a_crash_mid_call_is_released_at_the_next_start() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    broker.set_mode(Mode::Hang);
    let mut gw = Gateway::start(GatewayConfig::new(&broker.url())).await;
    let name = "crashed-mid-call";

    let url = gw.url();
    let pending = tokio::spawn(async move {
        tokio::time::timeout(
            T,
            support::client::try_send(
                "POST",
                &format!("{url}/v2/service_instances"),
                &[
                    ("authorization", &format!("bearer {}", token::valid_token())),
                    ("content-type", "application/json"),
                ],
                create_body(name),
            ),
        )
        .await
    });
    assert!(
        broker.wait_for_provisions(1, T).await,
        "the broker never saw the provision call"
    );
    gw.kill9();
    // The client sees the connection die (or at worst its own timeout); it never got a 201.
    let outcome = tokio::time::timeout(T * 2, pending).await.unwrap().unwrap();
    if let Ok(Ok(resp)) = &outcome {
        panic!("a killed gateway answered: {resp:?}");
    }

    let reserved = reserved_rows(gw.config());
    assert_eq!(reserved.len(), 1, "{reserved:?}");
    assert_eq!(reserved[0].name, name);
    assert!(reserved[0].broker_service_id.is_none());
    let guid = reserved[0].guid.clone();

    broker.set_mode(Mode::Ok);
    let restarted = Gateway::start(gw.config().clone()).await;
    assert!(
        reserved_rows(restarted.config()).is_empty(),
        "the next start must resolve the reservation"
    );
    assert!(rows_named(restarted.config(), name).is_empty());
    // The operator learns which reservation was dropped (the broker may hold an instance).
    let logged = support::wait_until(T, || {
        let l = logs(&restarted);
        l.contains(&guid) || l.contains(name)
    })
    .await;
    assert!(
        logged,
        "the released reservation {guid} ({name}) is not in the new gateway's logs:\n{}",
        logs(&restarted)
    );

    let resp = create_named(&restarted, name).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    let rows = rows_named(restarted.config(), name);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, "created");
    assert_ne!(rows[0].guid, guid);
}

// ---------------------------------------------------------------------------------------------
// Commit failure

#[tokio::test]
async fn a_commit_failure_after_the_broker_provisioned_is_deprovisioned() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let gw = Gateway::start(GatewayConfig::new(&broker.url())).await;
    let name = "commit-fails";

    // The gateway created the schema at start; make every commit of a create fail.
    fail_commits(gw.config());

    let resp = create_named(&gw, name).await;
    cc::assert_cc_error(&resp, 500, 10001, "UnknownError");
    assert_eq!(
        resp.json(),
        json!({"code": 10001, "description": "An unknown error occurred.", "error_code": "UnknownError"})
    );
    assert!(!resp.text().contains("injected"), "{resp:?}");

    let issued = broker.issued_ids();
    assert_eq!(issued.len(), 1, "the broker provisioned once");
    assert!(broker.wait_for_deletes(1, T).await, "no DELETE arrived");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let deletes = broker.delete_requests();
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    let delete = &deletes[0];
    assert_eq!(delete.path, format!("{CONFIGURATIONS_PATH}/{}", issued[0]));
    assert_eq!(delete.header(TOKEN_HEADER).as_deref(), Some(BROKER_TOKEN));
    assert_eq!(
        delete.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        delete.header("x-vcap-request-id"),
        broker.provision_requests()[0].header("x-vcap-request-id")
    );

    let rows = rows_named(gw.config(), name);
    assert!(rows.is_empty(), "neither reserved nor created: {rows:?}");

    allow_commits(gw.config());
    let retry = create_named(&gw, name).await;
    assert_eq!(retry.status, 201, "{retry:?}");
    let rows = rows_named(gw.config(), name);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, "created");
    assert_eq!(rows[0].broker_service_id.as_deref(), Some("svc-2"));
    assert_eq!(broker.delete_count(), 1);
    assert!(!logs(&gw).contains(BROKER_TOKEN), "token in logs");
}

#[tokio::test]
async fn a_commit_failure_whose_deprovision_fails_still_frees_the_name() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    broker.set_delete_mode(Mode::error(500, 30500, "cannot delete now"));
    let gw = Gateway::start(GatewayConfig::new(&broker.url())).await;
    let name = "commit-and-delete-fail";
    fail_commits(gw.config());

    let resp = create_named(&gw, name).await;
    // CC re-raises the save error, not the deprovision error.
    cc::assert_cc_error(&resp, 500, 10001, "UnknownError");
    assert_eq!(broker.delete_count(), 1);
    assert!(rows_named(gw.config(), name).is_empty());
    // The broker's id is logged so an operator can clean up by hand.
    let issued = broker.issued_ids();
    assert!(
        support::wait_until(T, || logs(&gw).contains(&issued[0])).await,
        "the orphaned service_id {} is not logged:\n{}",
        issued[0],
        logs(&gw)
    );

    allow_commits(gw.config());
    let retry = create_named(&gw, name).await;
    assert_eq!(retry.status, 201, "{retry:?}");
}

#[tokio::test]
async fn a_bind_whose_commit_fails_is_unbound_at_the_broker_and_leaves_no_binding() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let gw = Gateway::start(GatewayConfig::new(&broker.url())).await;
    let created = create_named(&gw, "bound-then-lost").await;
    assert_eq!(created.status, 201, "{created:?}");
    let instance = created.json()["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let service_id = broker.issued_ids()[0].clone();
    fail_handle_commits(gw.config());

    let bearer = format!("bearer {}", token::valid_token());
    let body = json!({"service_instance_guid": instance, "app_guid": "app-1"});
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let url = format!("{}/v2/service_bindings", gw.url());
    let resp = send("POST", &url, &headers, body.to_string().into_bytes()).await;
    cc::assert_cc_error(&resp, 500, 10001, "UnknownError");
    assert!(!resp.text().contains("injected"), "{resp:?}");

    // The handle the broker made is unbound at once, with the ids it issued.
    let handles = broker.issued_handles();
    assert_eq!(handles.len(), 1, "the broker bound once");
    assert!(broker.wait_for_unbinds(1, T).await, "no unbind arrived");
    let unbind = &broker.unbind_requests()[0];
    assert_eq!(
        unbind.path,
        format!("{CONFIGURATIONS_PATH}/{service_id}/handles/{}", handles[0])
    );
    assert!(broker.live_handles(&service_id).is_empty());
    let list = get(&url, Some(&token::valid_token())).await;
    assert_eq!(list.json()["total_results"], 0, "{list:?}");

    // Nothing is held: a retry binds once more and is kept.
    allow_handle_commits(gw.config());
    let retry = send("POST", &url, &headers, body.to_string().into_bytes()).await;
    assert_eq!(retry.status, 201, "{retry:?}");
    assert_eq!(broker.live_handles(&service_id).len(), 1);
    assert_eq!(broker.unbind_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// A delete cut short by a crash

#[tokio::test]
async fn a_delete_cut_short_by_a_crash_is_finished_at_the_next_start() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let mut gw = Gateway::start(GatewayConfig::new(&broker.url())).await;
    let created = create_named(&gw, "crash-mid-delete").await;
    assert_eq!(created.status, 201, "{created:?}");
    let guid = created.json()["metadata"]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let service_id = broker.issued_ids()[0].clone();
    let bearer = format!("bearer {}", token::valid_token());
    let bind_body = json!({"service_instance_guid": guid, "app_guid": "app-1"}).to_string();
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let bound = support::client::send(
        "POST",
        &format!("{}/v2/service_bindings", gw.url()),
        &headers,
        bind_body,
    )
    .await;
    assert_eq!(bound.status, 201, "{bound:?}");

    // The recursive delete unbinds, then the deprovision hangs at the broker: the crash comes
    // after the broker may have acted and before the store heard of it.
    broker.set_delete_mode(Mode::Hang);
    let url = format!("{}/v2/service_instances/{guid}?recursive=true", gw.url());
    let auth = bearer.clone();
    let pending = tokio::spawn(async move {
        support::client::try_send(
            "DELETE",
            &url,
            &[("authorization", auth.as_str())],
            Vec::new(),
        )
        .await
    });
    assert!(
        broker.wait_for_deletes(1, T).await,
        "the deprovision never arrived"
    );
    assert_eq!(broker.unbind_count(), 1);
    gw.kill9();
    let _ = pending.await;
    let row = row_by_guid(gw.config(), &guid).expect("the instance is still recorded");
    assert_eq!(row.state, "deleting");

    broker.set_delete_mode(Mode::Ok);
    let restarted = Gateway::start(gw.config().clone()).await;
    assert!(
        support::wait_until(T, || row_by_guid(restarted.config(), &guid).is_none()).await,
        "the finisher did not finish the delete:\n{}",
        logs(&restarted)
    );
    assert_eq!(broker.delete_count(), 2, "sent again after the crash");
    assert!(!broker.holds_instance(&service_id));
    let deletes = broker.delete_requests();
    assert_eq!(
        deletes[1].path,
        format!("{CONFIGURATIONS_PATH}/{service_id}")
    );
    let read = support::client::get(
        &format!("{}/v2/service_instances/{guid}", restarted.url()),
        Some(&token::valid_token()),
    )
    .await;
    cc::assert_cc_error(&read, 404, 60004, "CF-ServiceInstanceNotFound");
}
