//! The provisioning rules with in-memory ports: order of checks, what the broker receives,
//! and that nothing half-done is left in the store or at the broker.

use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::value::RawValue;

use super::*;
use crate::cc::request::decode;
use crate::config::{self, Broker, Runtime};
use crate::service::fake_authorizer::FakeAuthorizer;
use crate::service::{BindOrder, BrokerAnswer, BrokerHandle, BrokerInstance, Removal, UnbindOrder};
use crate::store::{Lease, MemoryStore, State};
use crate::v1::{originating_identity, ProvisionRequest};

const PLAN: &str = "6df3af55-8f97-4dbe-9d6b-098eb53d8c17";
const SPACE: &str = "f24c6904-30e0-4559-9523-06d2d93f0c9c";

fn runtime(extra: &str) -> Runtime {
    runtime_with_plan_keys(extra, "")
}

/// [`runtime`] with `plan_keys` added to the plan's table (e.g. its visibility).
fn runtime_with_plan_keys(extra: &str, plan_keys: &str) -> Runtime {
    let toml = format!(
        r#"
[server]
accept_unknown_spaces = {}
[[brokers]]
name = "echo"
url = "http://127.0.0.1:9"
token = "changeechotoken"
[[plans]]
guid = "{PLAN}"
broker = "echo"
label = "echo"
version = "1.0"
provider = "core"
name = "free"
unique_id = "echo-free"
{plan_keys}
[[spaces]]
guid = "{SPACE}"
organization_guid = "ORG"
"#,
        extra == "accept_unknown_spaces"
    );
    let file = config::parse(&toml, Vec::new()).unwrap();
    Runtime::from_file(&file, &|_| None).unwrap()
}

#[derive(Default)]
struct FakeBroker {
    provisions: Mutex<Vec<(String, serde_json::Value, Option<String>)>>,
    deletes: Mutex<Vec<String>>,
    answer: Mutex<Option<BrokerFailure>>,
}

#[async_trait]
impl BrokerPort for FakeBroker {
    async fn provision(
        &self,
        order: &ProvisionOrder<'_>,
        request_id: &str,
    ) -> BrokerAnswer<BrokerInstance> {
        let call = BrokerCall {
            status: Some(200),
            duration: std::time::Duration::ZERO,
        };
        BrokerAnswer {
            result: self.answer_for(request_id, order),
            call,
        }
    }
    async fn deprovision(
        &self,
        _b: &Broker,
        service_id: &str,
        _rid: &str,
    ) -> BrokerAnswer<Removal> {
        self.deletes.lock().unwrap().push(service_id.into());
        BrokerAnswer {
            result: Ok(Removal::Removed),
            call: BrokerCall {
                status: Some(200),
                duration: std::time::Duration::ZERO,
            },
        }
    }
    async fn bind(&self, _order: &BindOrder<'_>, _rid: &str) -> BrokerAnswer<BrokerHandle> {
        unreachable!("provisioning never binds")
    }
    async fn unbind(&self, _order: &UnbindOrder<'_>, _rid: &str) -> BrokerAnswer<Removal> {
        unreachable!("provisioning never unbinds")
    }
}

impl FakeBroker {
    /// Records what the v1 adapter would put on the wire for `order`.
    fn answer_for(
        &self,
        request_id: &str,
        order: &ProvisionOrder<'_>,
    ) -> Result<BrokerInstance, BrokerError> {
        self.provisions.lock().unwrap().push((
            request_id.into(),
            serde_json::to_value(ProvisionRequest::from_order(order)).unwrap(),
            Some(originating_identity(order.user_id)),
        ));
        if let Some(kind) = self.answer.lock().unwrap().take() {
            return Err(BrokerError {
                uri: "http://127.0.0.1:9/gateway/v1/configurations".into(),
                method: "POST",
                kind,
            });
        }
        Ok(BrokerInstance {
            service_id: "svc-1".into(),
            configuration: RawValue::from_string(r#"{"plan":"free"}"#.into()).unwrap(),
            credentials: RawValue::from_string(r#"{"user":"u"}"#.into()).unwrap(),
            dashboard_url: Some("http://dash".into()),
        })
    }
}

fn writer() -> Identity {
    Identity::new(
        "uaa-id-207",
        Some("email-148@somedomain.com"),
        vec!["cloud_controller.write".into()],
    )
}

fn seed() -> serde_json::Value {
    serde_json::json!({"space_guid": SPACE, "name": "my-service-instance", "service_plan_guid": PLAN})
}

async fn run(
    rt: &Runtime,
    store: Arc<MemoryStore>,
    broker: Arc<FakeBroker>,
    identity: &Identity,
    body: serde_json::Value,
) -> Result<crate::store::CreatedInstance, ProvisionError> {
    let authorizer = Arc::new(FakeAuthorizer::default());
    run_authorized(
        rt,
        store,
        broker,
        identity,
        body,
        &Arc::new(Metrics::new()),
        authorizer,
    )
    .await
}

/// [`run`] with the caller's metrics, for tests of what is counted.
async fn run_counted(
    rt: &Runtime,
    store: Arc<MemoryStore>,
    broker: Arc<FakeBroker>,
    identity: &Identity,
    body: serde_json::Value,
    metrics: &Arc<Metrics>,
) -> Result<crate::store::CreatedInstance, ProvisionError> {
    let authorizer = Arc::new(FakeAuthorizer::default());
    run_authorized(rt, store, broker, identity, body, metrics, authorizer).await
}

/// [`run_counted`] with the caller's authorizer.
async fn run_authorized(
    rt: &Runtime,
    store: Arc<MemoryStore>,
    broker: Arc<FakeBroker>,
    identity: &Identity,
    body: serde_json::Value,
    metrics: &Arc<Metrics>,
    authorizer: Arc<FakeAuthorizer>,
) -> Result<crate::store::CreatedInstance, ProvisionError> {
    let p = Provisioner::new(store, broker, authorizer, metrics.clone(), "test-owner");
    let req = decode(body.to_string().as_bytes()).unwrap();
    let command = Provision {
        name: req.name,
        space_guid: req.space_guid,
        service_plan_guid: req.service_plan_guid,
        tags: req.tags,
        parameters: req.parameters,
        gateway_data: req.gateway_data,
        caller: identity,
        scope: Scope::Write,
        request_id: "rid-1",
        now: 1_421_718_743,
    };
    p.provision(rt, command).await.result
}

/// The in-memory ports and metrics of one test, for tests that look at all three.
struct Ports {
    store: Arc<MemoryStore>,
    broker: Arc<FakeBroker>,
    metrics: Arc<Metrics>,
}

impl Ports {
    fn new() -> Ports {
        Ports {
            store: Arc::new(MemoryStore::new()),
            broker: Arc::new(FakeBroker::default()),
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// The seed create, by a writer.
    async fn create_seed(
        &self,
        rt: &Runtime,
    ) -> Result<crate::store::CreatedInstance, ProvisionError> {
        let (store, broker) = (self.store.clone(), self.broker.clone());
        run_counted(rt, store, broker, &writer(), seed(), &self.metrics).await
    }
}

fn orphan_mitigations(metrics: &Metrics, result: &str) -> u64 {
    metrics
        .orphan_mitigations
        .with_label_values(&["echo", result])
        .get()
}

#[tokio::test]
async fn sends_the_enriched_v1_request_and_commits() {
    let rt = runtime("");
    let (store, broker) = (
        Arc::new(MemoryStore::new()),
        Arc::new(FakeBroker::default()),
    );
    let mut body = seed();
    body["gateway_data"] = serde_json::json!({"size": "L"});
    body["parameters"] = serde_json::json!({"p": 1});
    body["tags"] = serde_json::json!(["a"]);
    let record = run(&rt, store.clone(), broker.clone(), &writer(), body)
        .await
        .unwrap();

    let row = store.get(&record.reservation.guid).await.unwrap().unwrap();
    let calls = broker.provisions.lock().unwrap();
    assert_eq!(calls.len(), 1);
    let (rid, sent, identity) = &calls[0];
    assert_eq!(rid, "rid-1");
    assert_eq!(
        sent.to_string(),
        serde_json::json!({
            "label": "echo-1.0", "email": "email-148@somedomain.com", "plan": "free", "version": "1.0",
            "provider": "core", "space_guid": SPACE, "organization_guid": "ORG", "unique_id": "echo-free",
            "name": "my-service-instance", "plan_option": {"size": "L"}, "parameters": {"p": 1}
        })
        .to_string()
    );
    // base64 of {"user_id":"uaa-id-207"}
    assert_eq!(
        identity.as_deref(),
        Some("cloudfoundry eyJ1c2VyX2lkIjoidWFhLWlkLTIwNyJ9")
    );

    assert_eq!(row.reservation.tags, vec!["a".to_string()]);
    let State::Created(p) = row.state else {
        panic!("not committed: {:?}", row.state)
    };
    assert_eq!(p.broker_service_id, "svc-1");
}

#[tokio::test]
async fn checks_run_in_cloud_controller_order_without_touching_the_broker() {
    let rt = runtime("");
    let reader = Identity {
        scopes: vec!["cloud_controller.read".into()],
        ..writer()
    };
    let writer = writer();
    let cases: Vec<(serde_json::Value, &Identity, &str)> = vec![
        // Unknown plan beats bad space, scope and name.
        (
            serde_json::json!({"space_guid": "nope", "name": "", "service_plan_guid": "nope"}),
            &reader,
            "plan",
        ),
        // Unknown space beats scope and name.
        (
            serde_json::json!({"space_guid": "nope", "name": "", "service_plan_guid": PLAN}),
            &reader,
            "space",
        ),
        // Scope beats name rules.
        (
            serde_json::json!({"space_guid": SPACE, "name": "", "service_plan_guid": PLAN}),
            &reader,
            "scope",
        ),
        (
            serde_json::json!({"space_guid": SPACE, "name": "  ", "service_plan_guid": PLAN}),
            &writer,
            "60001",
        ),
    ];
    for (body, identity, want) in cases {
        let broker = Arc::new(FakeBroker::default());
        let err = run(
            &rt,
            Arc::new(MemoryStore::new()),
            broker.clone(),
            identity,
            body,
        )
        .await
        .unwrap_err();
        let got = match &err {
            ProvisionError::UnknownPlan => "plan",
            ProvisionError::UnknownSpace => "space",
            ProvisionError::InsufficientScope => "scope",
            ProvisionError::NameEmpty => "60001",
            other => panic!("{other:?}"),
        };
        assert_eq!(got, want);
        assert!(broker.provisions.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn unknown_space_is_accepted_with_null_org_when_configured() {
    let rt = runtime("accept_unknown_spaces");
    let broker = Arc::new(FakeBroker::default());
    let mut body = seed();
    body["space_guid"] = "elsewhere".into();
    run(
        &rt,
        Arc::new(MemoryStore::new()),
        broker.clone(),
        &writer(),
        body,
    )
    .await
    .unwrap();
    assert_eq!(
        broker.provisions.lock().unwrap()[0].1["organization_guid"],
        serde_json::Value::Null
    );
}

#[tokio::test]
async fn a_taken_name_never_reaches_the_broker() {
    let rt = runtime("");
    let (store, broker) = (
        Arc::new(MemoryStore::new()),
        Arc::new(FakeBroker::default()),
    );
    run(&rt, store.clone(), broker.clone(), &writer(), seed())
        .await
        .unwrap();
    let err = run(&rt, store, broker.clone(), &writer(), seed())
        .await
        .unwrap_err();
    assert!(matches!(err, ProvisionError::NameTaken { ref name } if name == "my-service-instance"));
    assert_eq!(broker.provisions.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failed_broker_call_releases_the_name() {
    let rt = runtime("");
    let (store, broker) = (
        Arc::new(MemoryStore::new()),
        Arc::new(FakeBroker::default()),
    );
    *broker.answer.lock().unwrap() = Some(BrokerFailure::Timeout);
    let err = run(&rt, store.clone(), broker.clone(), &writer(), seed())
        .await
        .unwrap_err();
    assert!(matches!(err, ProvisionError::Broker(_)));
    assert!(store.is_empty());
    assert!(broker.deletes.lock().unwrap().is_empty());
    run(&rt, store, broker, &writer(), seed()).await.unwrap();
}

#[tokio::test]
async fn a_malformed_answer_naming_an_instance_is_deprovisioned() {
    let rt = runtime("");
    let ports = Ports::new();
    *ports.broker.answer.lock().unwrap() = Some(BrokerFailure::Malformed {
        status: 200,
        detail: "no credentials".into(),
        service_id: Some("svc-9".into()),
    });
    ports.create_seed(&rt).await.unwrap_err();
    assert_eq!(
        *ports.broker.deletes.lock().unwrap(),
        vec!["svc-9".to_string()]
    );
    assert!(ports.store.is_empty());
    assert_eq!(orphan_mitigations(&ports.metrics, "success"), 1);
}

#[tokio::test]
async fn a_commit_failure_deprovisions_and_reports_the_commit_error() {
    let rt = runtime("");
    let ports = Ports::new();
    ports.store.fail_commits(true);
    let err = ports.create_seed(&rt).await.unwrap_err();
    assert!(matches!(err, ProvisionError::Store(StoreError::Backend(_))));
    assert_eq!(
        *ports.broker.deletes.lock().unwrap(),
        vec!["svc-1".to_string()]
    );
    assert!(ports.store.is_empty());
    // The mitigation is counted, by result.
    assert_eq!(orphan_mitigations(&ports.metrics, "success"), 1);
    assert_eq!(orphan_mitigations(&ports.metrics, "failure"), 0);
}

#[test]
fn a_reservation_is_leased_for_two_broker_calls_and_a_margin() {
    let rt = runtime("");
    let broker = &rt.plan(PLAN).unwrap().broker;
    // The broker's default timeout is 60 s.
    assert_eq!(
        LeasePolicy::from("here").for_calls(broker, 1_421_718_743, 2),
        Lease {
            owner: "here".into(),
            expires_at: 1_421_718_743 + 2 * 60 + 30
        }
    );
}

#[tokio::test]
async fn a_plan_restricted_to_other_organizations_is_60010_after_scope_and_before_names() {
    let ports = Ports::new();
    let rt = runtime_with_plan_keys("", "public = false\norganizations = [\"OTHER-ORG\"]");
    let got = ports.create_seed(&rt).await;
    assert!(
        matches!(got, Err(ProvisionError::PlanNotVisible)),
        "{got:?}"
    );
    assert!(ports.broker.provisions.lock().unwrap().is_empty());
    assert!(ports.store.is_empty(), "nothing reserved");

    // After the scope check: a reader is refused for its scope first.
    let reader = Identity {
        scopes: vec!["cloud_controller.read".into()],
        ..writer()
    };
    let got = run(
        &rt,
        ports.store.clone(),
        ports.broker.clone(),
        &reader,
        seed(),
    )
    .await;
    assert!(
        matches!(got, Err(ProvisionError::InsufficientScope)),
        "{got:?}"
    );
    // Before the names: an empty name is refused for the plan first.
    let mut nameless = seed();
    nameless["name"] = serde_json::json!("");
    let got = run(
        &rt,
        ports.store.clone(),
        ports.broker.clone(),
        &writer(),
        nameless,
    )
    .await;
    assert!(
        matches!(got, Err(ProvisionError::PlanNotVisible)),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_plan_restricted_to_the_spaces_organization_is_created() {
    let ports = Ports::new();
    let rt = runtime_with_plan_keys(
        "",
        "public = false\norganizations = [\"OTHER-ORG\", \"ORG\"]",
    );
    ports.create_seed(&rt).await.unwrap();
    // An unknown space (no organization) sees public plans only.
    let rt = runtime_with_plan_keys(
        "accept_unknown_spaces",
        "public = false\norganizations = [\"ORG\"]",
    );
    let mut elsewhere = seed();
    elsewhere["space_guid"] = serde_json::json!("unlisted-space");
    let got = run(
        &rt,
        ports.store.clone(),
        ports.broker.clone(),
        &writer(),
        elsewhere,
    )
    .await;
    assert!(
        matches!(got, Err(ProvisionError::PlanNotVisible)),
        "{got:?}"
    );
}

/// A create by a writer with `authorizer`'s answers; the broker's provision count beside.
async fn create_as(
    authorizer: &Arc<FakeAuthorizer>,
    identity: &Identity,
    body: serde_json::Value,
    rt: &Runtime,
) -> (Result<crate::store::CreatedInstance, ProvisionError>, usize) {
    let broker = Arc::new(FakeBroker::default());
    let store = Arc::new(MemoryStore::new());
    let metrics = Arc::new(Metrics::new());
    let got = run_authorized(
        rt,
        store.clone(),
        broker.clone(),
        identity,
        body,
        &metrics,
        authorizer.clone(),
    )
    .await;
    if got.is_err() {
        assert!(store.is_empty(), "a refused create reserves nothing");
    }
    let provisions = broker.provisions.lock().unwrap().len();
    (got, provisions)
}

fn admin() -> Identity {
    Identity::new("admin", None, vec!["cloud_controller.admin".into()])
}

#[tokio::test]
async fn a_create_needs_the_flag_an_active_organization_and_the_developer_role() {
    let rt = runtime("");
    // A developer of a space in an active organization, with the flag on.
    let authorizer = Arc::new(FakeAuthorizer::default());
    let (got, provisions) = create_as(&authorizer, &writer(), seed(), &rt).await;
    got.unwrap();
    assert_eq!(provisions, 1);

    let not_developer = Arc::new(FakeAuthorizer::default());
    not_developer.deny_developer(SPACE);
    let (got, provisions) = create_as(&not_developer, &writer(), seed(), &rt).await;
    assert!(matches!(got, Err(ProvisionError::NotAuthorized)), "{got:?}");
    assert_eq!(provisions, 0);

    let suspended = Arc::new(FakeAuthorizer::default());
    suspended.suspend("ORG");
    let (got, _) = create_as(&suspended, &writer(), seed(), &rt).await;
    assert!(matches!(got, Err(ProvisionError::NotAuthorized)), "{got:?}");

    let flag_off = Arc::new(FakeAuthorizer::default());
    flag_off.disable_creation(Some("ask the operators"));
    let (got, _) = create_as(&flag_off, &writer(), seed(), &rt).await;
    assert!(
        matches!(&got, Err(ProvisionError::FeatureDisabled { custom_message: Some(m) }) if m == "ask the operators"),
        "{got:?}"
    );

    // An admin is asked none of the three.
    for authorizer in [not_developer, suspended, flag_off] {
        let (got, provisions) = create_as(&authorizer, &admin(), seed(), &rt).await;
        got.unwrap();
        assert_eq!(provisions, 1);
    }

    // A space the caller may not see is no space at all, for admins too (it does not exist).
    let hidden = Arc::new(FakeAuthorizer::default());
    hidden.hide(SPACE);
    let (got, _) = create_as(&hidden, &writer(), seed(), &rt).await;
    assert!(matches!(got, Err(ProvisionError::UnknownSpace)), "{got:?}");
}

#[tokio::test]
async fn the_checks_after_the_scope_come_in_the_cloud_controllers_order() {
    let rt = runtime_with_plan_keys("", "public = false\norganizations = [\"OTHER-ORG\"]");
    let reader = Identity::new("r", None, vec!["cloud_controller.read".into()]);
    // Everything denied: the flag is the first of this issue's checks to answer.
    let all_denied = || {
        let a = Arc::new(FakeAuthorizer::default());
        a.disable_creation(None);
        a.suspend("ORG");
        a.deny_developer(SPACE);
        a
    };
    let mut nameless = seed();
    nameless["name"] = serde_json::json!("");
    // The scope beats them all.
    let (got, _) = create_as(&all_denied(), &reader, nameless.clone(), &rt).await;
    assert!(
        matches!(got, Err(ProvisionError::InsufficientScope)),
        "{got:?}"
    );
    // Flag, then suspended organization, then role, then plan visibility, then names.
    let a = all_denied();
    let (got, _) = create_as(&a, &writer(), nameless.clone(), &rt).await;
    assert!(
        matches!(
            got,
            Err(ProvisionError::FeatureDisabled {
                custom_message: None
            })
        ),
        "{got:?}"
    );
    *a.flag_message.lock().unwrap() = None;
    let (got, _) = create_as(&a, &writer(), nameless.clone(), &rt).await;
    assert!(matches!(got, Err(ProvisionError::NotAuthorized)), "{got:?}");
    a.suspended.lock().unwrap().clear();
    let (got, _) = create_as(&a, &writer(), nameless.clone(), &rt).await;
    assert!(matches!(got, Err(ProvisionError::NotAuthorized)), "{got:?}");
    a.not_developer.lock().unwrap().clear();
    let (got, _) = create_as(&a, &writer(), nameless.clone(), &rt).await;
    assert!(
        matches!(got, Err(ProvisionError::PlanNotVisible)),
        "{got:?}"
    );
    let rt = runtime("");
    let (got, _) = create_as(&a, &writer(), nameless, &rt).await;
    assert!(matches!(got, Err(ProvisionError::NameEmpty)), "{got:?}");
}

#[tokio::test]
async fn an_undecided_authorization_refuses_without_a_broker_call() {
    let rt = runtime("");
    let down = Arc::new(FakeAuthorizer::default());
    down.go_down();
    for identity in [writer(), admin()] {
        let (got, provisions) = create_as(&down, &identity, seed(), &rt).await;
        assert!(
            matches!(got, Err(ProvisionError::AuthorizationUnavailable(_))),
            "{got:?}"
        );
        assert_eq!(provisions, 0);
    }
}

#[tokio::test]
async fn an_inactive_plan_or_offering_takes_no_new_instances() {
    for plan_keys in ["active = false", ""] {
        let rt = if plan_keys.is_empty() {
            // The offering inactive: a plan naming a [[services]] entry.
            let toml = format!(
                r#"
[[brokers]]
name = "echo"
url = "http://127.0.0.1:9"
token = "t"
[[services]]
guid = "SVC"
label = "echo"
version = "1.0"
broker = "echo"
active = false
[[plans]]
guid = "{PLAN}"
service = "SVC"
name = "free"
unique_id = "echo-free"
[[spaces]]
guid = "{SPACE}"
organization_guid = "ORG"
"#
            );
            Runtime::from_file(&config::parse(&toml, Vec::new()).unwrap(), &|_| None).unwrap()
        } else {
            runtime_with_plan_keys("", plan_keys)
        };
        let (got, provisions) =
            create_as(&Arc::new(FakeAuthorizer::default()), &writer(), seed(), &rt).await;
        assert!(matches!(got, Err(ProvisionError::InactivePlan)), "{got:?}");
        assert_eq!(provisions, 0);
    }
}
