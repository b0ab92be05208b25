//! The [`Store`] promises, written once and run against every backend: each function takes a
//! factory of fresh, empty stores, and `store_conformance!(factory)` (or, for stores made
//! asynchronously, `store_conformance!(async setup)`) turns them all into tests in the
//! backend's test module.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::{
    HandleField, HandleGrant, HandleKind, HandleQuery, HandleReservation, HandleState, Holder,
    InstanceField, InstanceQuery, InstanceUpdate, Lease, ListQuery, Operation, Provisioned,
    RecoveryPolicy, Reservation, State, Store, StoreError,
};

/// A fresh store, and whatever must live as long as it (a temp directory).
pub struct Subject {
    pub store: Arc<dyn Store>,
    _keep: Box<dyn Any + Send + Sync>,
}

impl Subject {
    pub fn new(store: impl Store + 'static) -> Self {
        Subject::keeping(store, ())
    }

    pub fn keeping(store: impl Store + 'static, keep: impl Any + Send + Sync) -> Self {
        Subject {
            store: Arc::new(store),
            _keep: Box::new(keep),
        }
    }
}

/// Generates one test per promise below, each on a fresh store from `$factory` (a closure
/// returning a [`Subject`]). `async $setup`: a future of `Option<impl Factory>` run first in
/// each test, for a backend whose stores are made asynchronously; `None` skips the test.
macro_rules! store_conformance {
    (async $setup:expr) => {
        $crate::store::conformance::store_conformance!(@each $setup;
            reserve_commit_and_get_show_each_state,
            get_of_an_unknown_guid_is_none,
            names_are_unique_per_space_only,
            release_frees_the_name_and_never_removes_a_created_row,
            a_duplicate_guid_is_not_a_taken_name,
            concurrent_reserves_of_one_name_have_one_winner,
            commit_needs_a_reservation,
            a_start_after_a_crash_frees_the_owners_reservations_only,
            an_upgrade_start_frees_only_expired_leases,
            committed_rows_survive_recovery,
            ping_answers,
            lists_filter_page_and_order_created_instances,
            updates_rename_and_retag_keeping_names_unique,
            a_delete_holds_the_instance_until_finished_or_aborted,
            a_delete_waits_for_handles_and_takes_them_only_when_recursive,
            handles_are_reserved_committed_listed_and_unique,
            handles_filter_on_their_instance_space,
            an_unbind_holds_the_handle_until_finished_or_aborted,
            concurrent_deletes_have_one_winner,
            a_delete_racing_a_bind_has_one_winner,
            recovery_frees_handle_reservations_too,
            unfinished_deletes_and_unbinds_are_claimed_once
        );
    };
    ($factory:expr) => {
        $crate::store::conformance::store_conformance!(
            async $crate::store::conformance::ready($factory)
        );
    };
    (@each $setup:expr; $($promise:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $promise() {
            if let Some(factory) = $setup.await {
                $crate::store::conformance::$promise(&factory).await;
            }
        }
    )*};
}
pub(crate) use store_conformance;

/// Makes a fresh, empty store.
pub trait Factory {
    fn make(&self) -> impl Future<Output = Subject>;
}

impl<F, Fut> Factory for F
where
    F: Fn() -> Fut,
    Fut: Future<Output = Subject>,
{
    fn make(&self) -> impl Future<Output = Subject> {
        self()
    }
}

/// A synchronous factory as a [`Factory`], for the macro's plain form.
pub async fn ready(factory: impl Fn() -> Subject) -> Option<impl Factory> {
    Some(move || std::future::ready(factory()))
}

const NOW: i64 = 1_800_000_000;

/// A reservation of `name` in `space`, for tests of the store and of the use cases above it.
pub(crate) fn reservation(guid: &str, space: &str, name: &str) -> Reservation {
    Reservation {
        guid: guid.into(),
        name: name.into(),
        space_guid: space.into(),
        organization_guid: Some("O".into()),
        service_plan_guid: "P".into(),
        broker: "echo".into(),
        tags: vec!["t".into()],
        creator_user_id: "u".into(),
        creator_email: Some("u@example.com".into()),
        created_at: NOW - 5,
    }
}

fn lease(owner: &str, expires_at: i64) -> Lease {
    Lease {
        owner: owner.into(),
        expires_at,
    }
}

/// Held by "a" well past `NOW`.
fn held() -> Lease {
    lease("a", NOW + 150)
}

fn provisioned() -> Provisioned {
    Provisioned {
        broker_service_id: "svc".into(),
        gateway_data: RawValue::from_string(r#"{"plan":"free"}"#.into()).unwrap(),
        credentials: RawValue::from_string(r#"{"pw":"x"}"#.into()).unwrap(),
        dashboard_url: Some("http://dash".into()),
    }
}

fn policy(owner: &str, predecessor_gone: bool) -> RecoveryPolicy {
    RecoveryPolicy {
        owner: owner.into(),
        now: NOW,
        predecessor_gone,
    }
}

async fn reserve(store: &dyn Store, guid: &str, name: &str, lease: Lease) {
    store
        .reserve(&reservation(guid, "S", name), &lease)
        .await
        .unwrap();
}

async fn guids(store: &dyn Store, policy: &RecoveryPolicy) -> Vec<String> {
    let removed = store.recover(policy).await.unwrap().instances;
    removed.into_iter().map(|r| r.guid).collect()
}

pub async fn reserve_commit_and_get_show_each_state(factory: &impl Factory) {
    let s = factory.make().await;
    let r = reservation("g1", "S", "n");
    s.store.reserve(&r, &held()).await.unwrap();
    let got = s.store.get("g1").await.unwrap().unwrap();
    assert_eq!(got.reservation, r);
    assert!(matches!(got.state, State::Reserved(l) if l == held()));

    s.store.commit("g1", &provisioned()).await.unwrap();
    let got = s.store.get("g1").await.unwrap().unwrap();
    assert_eq!(got.reservation, r);
    let State::Created(p) = got.state else {
        panic!("not created: {:?}", got.state)
    };
    assert_eq!(p.broker_service_id, "svc");
    assert_eq!(p.gateway_data.get(), r#"{"plan":"free"}"#);
    assert_eq!(p.credentials.get(), r#"{"pw":"x"}"#);
    assert_eq!(p.dashboard_url.as_deref(), Some("http://dash"));
}

pub async fn get_of_an_unknown_guid_is_none(factory: &impl Factory) {
    assert!(factory
        .make()
        .await
        .store
        .get("nope")
        .await
        .unwrap()
        .is_none());
}

pub async fn names_are_unique_per_space_only(factory: &impl Factory) {
    let s = factory.make().await;
    reserve(&*s.store, "g1", "n", held()).await;
    let again = s.store.reserve(&reservation("g2", "S", "n"), &held()).await;
    assert!(matches!(again, Err(StoreError::NameTaken)), "{again:?}");
    // The same name in another space is another instance.
    let elsewhere = reservation("g3", "T", "n");
    s.store.reserve(&elsewhere, &held()).await.unwrap();
    // A created instance holds its name too.
    s.store.commit("g1", &provisioned()).await.unwrap();
    let again = s.store.reserve(&reservation("g4", "S", "n"), &held()).await;
    assert!(matches!(again, Err(StoreError::NameTaken)), "{again:?}");
}

pub async fn release_frees_the_name_and_never_removes_a_created_row(factory: &impl Factory) {
    let s = factory.make().await;
    reserve(&*s.store, "g1", "n", held()).await;
    s.store.release("g1").await.unwrap();
    assert!(s.store.get("g1").await.unwrap().is_none());
    reserve(&*s.store, "g2", "n", held()).await;
    // Releasing what is not there is no error.
    s.store.release("g1").await.unwrap();
    s.store.release("never").await.unwrap();

    s.store.commit("g2", &provisioned()).await.unwrap();
    s.store.release("g2").await.unwrap();
    let kept = s.store.get("g2").await.unwrap().unwrap();
    assert!(matches!(kept.state, State::Created(_)));
}

pub async fn a_duplicate_guid_is_not_a_taken_name(factory: &impl Factory) {
    let s = factory.make().await;
    reserve(&*s.store, "g1", "n", held()).await;
    let dup = s.store.reserve(&reservation("g1", "S", "m"), &held()).await;
    assert!(matches!(dup, Err(StoreError::Backend(_))), "{dup:?}");
}

pub async fn concurrent_reserves_of_one_name_have_one_winner(factory: &impl Factory) {
    let s = factory.make().await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = s.store.clone();
            tokio::spawn(async move {
                store
                    .reserve(&reservation(&format!("g{i}"), "S", "contended"), &held())
                    .await
            })
        })
        .collect();
    let (mut won, mut taken) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(StoreError::NameTaken) => taken += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((won, taken), (1, 19));
}

pub async fn commit_needs_a_reservation(factory: &impl Factory) {
    let s = factory.make().await;
    let missing = s.store.commit("nope", &provisioned()).await;
    assert!(
        matches!(missing, Err(StoreError::NoReservation(ref g)) if g == "nope"),
        "{missing:?}"
    );
    reserve(&*s.store, "g1", "n", held()).await;
    s.store.commit("g1", &provisioned()).await.unwrap();
    let twice = s.store.commit("g1", &provisioned()).await;
    assert!(
        matches!(twice, Err(StoreError::NoReservation(_))),
        "{twice:?}"
    );
}

pub async fn a_start_after_a_crash_frees_the_owners_reservations_only(factory: &impl Factory) {
    let s = factory.make().await;
    reserve(&*s.store, "mine", "a", held()).await;
    reserve(&*s.store, "theirs", "b", lease("b", NOW + 150)).await;
    reserve(&*s.store, "theirs-expired", "c", lease("b", NOW - 1)).await;

    let removed = s.store.recover(&policy("a", true)).await.unwrap().instances;
    let mut got: Vec<_> = removed.iter().map(|r| r.guid.as_str()).collect();
    got.sort_unstable();
    assert_eq!(got, ["mine", "theirs-expired"]);
    assert_eq!(
        removed[0],
        reservation(&removed[0].guid, "S", &removed[0].name)
    );
    // Another replica's reservation, still in its lease, survives a start.
    assert!(s.store.get("theirs").await.unwrap().is_some());
    // The recovered names are free again.
    reserve(&*s.store, "again", "a", held()).await;
    reserve(&*s.store, "again-c", "c", held()).await;
    assert!(guids(&*s.store, &policy("a", false)).await.is_empty());
}

pub async fn an_upgrade_start_frees_only_expired_leases(factory: &impl Factory) {
    let s = factory.make().await;
    reserve(&*s.store, "mine", "a", held()).await;
    reserve(&*s.store, "mine-expired", "b", lease("a", NOW - 1)).await;
    // A lease ends at `expires_at`.
    reserve(&*s.store, "ends-now", "c", lease("b", NOW)).await;
    reserve(&*s.store, "theirs", "d", lease("b", NOW + 1)).await;

    let mut got = guids(&*s.store, &policy("a", false)).await;
    got.sort_unstable();
    assert_eq!(got, ["ends-now", "mine-expired"]);
    assert!(s.store.get("mine").await.unwrap().is_some());
    assert!(s.store.get("theirs").await.unwrap().is_some());
}

pub async fn committed_rows_survive_recovery(factory: &impl Factory) {
    let s = factory.make().await;
    reserve(&*s.store, "done", "a", lease("a", NOW - 100)).await;
    s.store.commit("done", &provisioned()).await.unwrap();
    let everything = RecoveryPolicy {
        now: i64::MAX,
        ..policy("a", true)
    };
    assert!(guids(&*s.store, &everything).await.is_empty());
    let kept = s.store.get("done").await.unwrap().unwrap();
    assert!(matches!(kept.state, State::Created(_)));
}

pub async fn ping_answers(factory: &impl Factory) {
    factory.make().await.store.ping().await.unwrap();
}

/// A created instance `guid` named `name` in `space`, made `age` seconds before `NOW`.
async fn created(store: &dyn Store, guid: &str, space: &str, name: &str, age: i64) {
    let r = Reservation {
        created_at: NOW - age,
        ..reservation(guid, space, name)
    };
    store.reserve(&r, &held()).await.unwrap();
    let p = Provisioned {
        broker_service_id: format!("svc-{guid}"),
        ..provisioned()
    };
    store.commit(guid, &p).await.unwrap();
}

fn query(conditions: Vec<(InstanceField, Vec<&str>)>) -> InstanceQuery {
    ListQuery {
        conditions: conditions
            .into_iter()
            .map(|(f, v)| (f, v.into_iter().map(String::from).collect()))
            .collect(),
        descending: false,
        offset: 0,
        limit: 50,
    }
}

async fn listed(store: &dyn Store, q: &InstanceQuery) -> (u64, Vec<String>) {
    let page = store.list(q).await.unwrap();
    let guids = page.items.into_iter().map(|r| r.reservation.guid).collect();
    (page.total, guids)
}

fn binding(guid: &str, instance: &str, app: &str) -> HandleReservation {
    HandleReservation {
        guid: guid.into(),
        instance_guid: instance.into(),
        holder: Holder::App {
            app_guid: app.into(),
            name: None,
        },
        binding_options: "{}".into(),
        creator_user_id: "u".into(),
        created_at: NOW - 1,
    }
}

fn key(guid: &str, instance: &str, name: &str) -> HandleReservation {
    HandleReservation {
        holder: Holder::Key { name: name.into() },
        ..binding(guid, instance, "")
    }
}

fn grant(handle_id: &str) -> HandleGrant {
    HandleGrant {
        handle_id: handle_id.into(),
        configuration: RawValue::from_string("{}".into()).unwrap(),
        credentials: RawValue::from_string(r#"{"user":"k"}"#.into()).unwrap(),
        syslog_drain_url: None,
    }
}

async fn bound(store: &dyn Store, h: &HandleReservation) {
    store.reserve_handle(h, &held()).await.unwrap();
    store
        .commit_handle(&h.guid, &grant(&format!("h-{}", h.guid)))
        .await
        .unwrap();
}

fn handles(kind: HandleKind, conditions: Vec<(HandleField, &str)>) -> HandleQuery {
    HandleQuery {
        kind,
        list: ListQuery {
            conditions: conditions
                .into_iter()
                .map(|(f, v)| (f, vec![v.to_string()]))
                .collect(),
            descending: false,
            offset: 0,
            limit: 50,
        },
    }
}

async fn handle_guids(store: &dyn Store, q: &HandleQuery) -> (u64, Vec<String>) {
    let page = store.list_handles(q).await.unwrap();
    let guids = page.items.into_iter().map(|h| h.reservation.guid).collect();
    (page.total, guids)
}

pub async fn lists_filter_page_and_order_created_instances(factory: &impl Factory) {
    let s = factory.make().await;
    let store = &*s.store;
    created(store, "a", "S", "one", 50).await;
    created(store, "b", "S", "two", 40).await;
    created(store, "c", "T", "one", 30).await;
    created(store, "d", "T", "three", 20).await;
    // Two in one second keep their guid order.
    created(store, "e", "S", "four", 20).await;
    // Reservations are not instances yet.
    reserve(store, "r", "pending", held()).await;

    assert_eq!(
        listed(store, &query(vec![])).await,
        (
            5,
            vec!["a", "b", "c", "d", "e"]
                .into_iter()
                .map(String::from)
                .collect()
        )
    );
    let q = query(vec![(InstanceField::SpaceGuid, vec!["S"])]);
    assert_eq!(listed(store, &q).await.1, ["a", "b", "e"]);
    let q = query(vec![(InstanceField::Name, vec!["one", "three"])]);
    assert_eq!(listed(store, &q).await.1, ["a", "c", "d"]);
    // Conditions combine with AND.
    let q = query(vec![
        (InstanceField::Name, vec!["one", "three"]),
        (InstanceField::SpaceGuid, vec!["T"]),
    ]);
    assert_eq!(listed(store, &q).await.1, ["c", "d"]);
    let q = query(vec![(InstanceField::GatewayName, vec!["svc-b"])]);
    assert_eq!(listed(store, &q).await.1, ["b"]);
    let q = query(vec![
        (InstanceField::OrganizationGuid, vec!["O"]),
        (InstanceField::ServicePlanGuid, vec!["P"]),
    ]);
    assert_eq!(listed(store, &q).await.0, 5);
    let q = query(vec![(InstanceField::OrganizationGuid, vec!["other"])]);
    assert_eq!(listed(store, &q).await, (0, vec![]));

    // Pages: the total counts every match, the page holds at most `limit` after `offset`.
    let page = ListQuery {
        offset: 1,
        limit: 2,
        ..query(vec![])
    };
    assert_eq!(
        listed(store, &page).await,
        (5, vec!["b".into(), "c".into()])
    );
    let newest_first = ListQuery {
        descending: true,
        ..page
    };
    assert_eq!(
        listed(store, &newest_first).await,
        (5, vec!["d".into(), "c".into()])
    );
    let past_the_end = ListQuery {
        offset: 10,
        ..query(vec![])
    };
    assert_eq!(listed(store, &past_the_end).await, (5, vec![]));
}

pub async fn updates_rename_and_retag_keeping_names_unique(factory: &impl Factory) {
    let s = factory.make().await;
    let store = &*s.store;
    created(store, "a", "S", "one", 10).await;
    created(store, "b", "S", "two", 10).await;
    reserve(store, "r", "pending", held()).await;

    let rename = InstanceUpdate {
        name: Some("renamed".into()),
        tags: None,
        updated_at: NOW,
    };
    store.update("a", &rename).await.unwrap();
    let got = store.get("a").await.unwrap().unwrap();
    assert_eq!(got.reservation.name, "renamed");
    assert_eq!(got.reservation.tags, ["t"]);
    assert_eq!(got.last_operation, Operation::Update);
    assert_eq!(got.updated_at, Some(NOW));
    assert!(matches!(got.state, State::Created(_)));
    // The old name is free, the new one taken.
    reserve(store, "c", "one", held()).await;
    let taken = store
        .reserve(&reservation("d", "S", "renamed"), &held())
        .await;
    assert!(matches!(taken, Err(StoreError::NameTaken)), "{taken:?}");

    let retag = InstanceUpdate {
        name: Some("renamed".into()),
        tags: Some(vec!["x".into(), "y".into()]),
        updated_at: NOW + 1,
    };
    store.update("a", &retag).await.unwrap();
    let got = store.get("a").await.unwrap().unwrap();
    assert_eq!(got.reservation.tags, ["x", "y"]);
    assert_eq!(got.updated_at, Some(NOW + 1));

    // Into a name taken in the space, by a created or a reserved row: nothing changes.
    for taken_name in ["two", "pending"] {
        let into_taken = InstanceUpdate {
            name: Some(taken_name.into()),
            tags: Some(vec![]),
            updated_at: NOW + 2,
        };
        let refused = store.update("a", &into_taken).await;
        assert!(matches!(refused, Err(StoreError::NameTaken)), "{refused:?}");
        let got = store.get("a").await.unwrap().unwrap();
        assert_eq!(
            (got.reservation.name.as_str(), got.updated_at),
            ("renamed", Some(NOW + 1))
        );
    }
    for missing in ["nope", "r"] {
        let refused = store.update(missing, &rename).await;
        assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}");
    }
    store.begin_delete("b", &held(), false).await.unwrap();
    let refused = store.update("b", &rename).await;
    assert!(
        matches!(refused, Err(StoreError::InProgress)),
        "{refused:?}"
    );
}

pub async fn a_delete_holds_the_instance_until_finished_or_aborted(factory: &impl Factory) {
    let s = factory.make().await;
    let store = &*s.store;
    created(store, "a", "S", "one", 10).await;
    reserve(store, "r", "pending", held()).await;

    store.begin_delete("a", &held(), false).await.unwrap();
    let got = store.get("a").await.unwrap().unwrap();
    assert!(matches!(got.state, State::Deleting(_, ref l) if *l == held()));
    // Still listed, as the Cloud Controller lists an instance being deleted.
    assert_eq!(listed(store, &query(vec![])).await.0, 1);
    let again = store.begin_delete("a", &held(), true).await;
    assert!(matches!(again, Err(StoreError::InProgress)), "{again:?}");

    store.abort_delete("a").await.unwrap();
    assert!(matches!(
        store.get("a").await.unwrap().unwrap().state,
        State::Created(_)
    ));
    // Aborting what is not deleting changes nothing.
    store.abort_delete("a").await.unwrap();
    let not_deleting = store.finish_delete("a").await;
    assert!(
        matches!(not_deleting, Err(StoreError::NotFound)),
        "{not_deleting:?}"
    );

    store.begin_delete("a", &held(), false).await.unwrap();
    store.finish_delete("a").await.unwrap();
    assert!(store.get("a").await.unwrap().is_none());
    store.finish_delete("a").await.unwrap();
    // The name is free again.
    reserve(store, "b", "one", held()).await;

    for missing in ["nope", "r"] {
        let refused = store.begin_delete(missing, &held(), true).await;
        assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}");
    }
}

pub async fn a_delete_waits_for_handles_and_takes_them_only_when_recursive(factory: &impl Factory) {
    let s = factory.make().await;
    let store = &*s.store;
    created(store, "i", "S", "one", 10).await;
    // A bind in flight: the delete waits.
    store
        .reserve_handle(&binding("b1", "i", "app-1"), &held())
        .await
        .unwrap();
    for recursive in [false, true] {
        let busy = store.begin_delete("i", &held(), recursive).await;
        assert!(matches!(busy, Err(StoreError::InProgress)), "{busy:?}");
    }
    store.commit_handle("b1", &grant("h1")).await.unwrap();
    bound(store, &key("k1", "i", "key-1")).await;
    let not_empty = store.begin_delete("i", &held(), false).await;
    assert!(
        matches!(not_empty, Err(StoreError::NotEmpty)),
        "{not_empty:?}"
    );
    assert!(matches!(
        store.get("i").await.unwrap().unwrap().state,
        State::Created(_)
    ));

    store.begin_delete("i", &held(), true).await.unwrap();
    for h in ["b1", "k1"] {
        let got = store.get_handle(h).await.unwrap().unwrap();
        assert!(matches!(got.state, HandleState::Deleting(..)), "{h}");
    }
    // An unbind of a handle whose instance is being deleted waits too.
    let busy = store.begin_unbind("b1", &held()).await;
    assert!(matches!(busy, Err(StoreError::InProgress)), "{busy:?}");
    // A rollback gives every handle back.
    store.abort_delete("i").await.unwrap();
    for h in ["b1", "k1"] {
        let got = store.get_handle(h).await.unwrap().unwrap();
        assert!(matches!(got.state, HandleState::Created(_)), "{h}");
    }

    store.begin_delete("i", &held(), true).await.unwrap();
    store.finish_unbind("b1").await.unwrap();
    let left = store.finish_delete("i").await;
    assert!(matches!(left, Err(StoreError::NotEmpty)), "{left:?}");
    store.finish_unbind("k1").await.unwrap();
    store.finish_delete("i").await.unwrap();
    assert!(store.get("i").await.unwrap().is_none());
    assert!(store.get_handle("k1").await.unwrap().is_none());
}

pub async fn handles_are_reserved_committed_listed_and_unique(factory: &impl Factory) {
    let s = factory.make().await;
    let store = &*s.store;
    created(store, "i", "S", "one", 10).await;
    created(store, "j", "S", "two", 10).await;
    reserve(store, "r", "pending", held()).await;

    let b = binding("b1", "i", "app-1");
    store.reserve_handle(&b, &held()).await.unwrap();
    let got = store.get_handle("b1").await.unwrap().unwrap();
    assert_eq!(got.reservation, b);
    assert!(matches!(got.state, HandleState::Reserved(ref l) if *l == held()));
    // A bind in flight is not listed yet, and holds the app's place.
    let of_i = handles(HandleKind::Binding, vec![(HandleField::InstanceGuid, "i")]);
    assert_eq!(handle_guids(store, &of_i).await, (0, vec![]));
    let twice = store
        .reserve_handle(&binding("b2", "i", "app-1"), &held())
        .await;
    assert!(matches!(twice, Err(StoreError::AppBound)), "{twice:?}");

    store.commit_handle("b1", &grant("h1")).await.unwrap();
    let got = store.get_handle("b1").await.unwrap().unwrap();
    let HandleState::Created(g) = &got.state else {
        panic!("not created: {:?}", got.state)
    };
    assert_eq!(g.handle_id, "h1");
    assert_eq!(g.credentials.get(), r#"{"user":"k"}"#);
    let again = store.commit_handle("b1", &grant("h1")).await;
    assert!(
        matches!(again, Err(StoreError::NoReservation(_))),
        "{again:?}"
    );
    let twice = store
        .reserve_handle(&binding("b2", "i", "app-1"), &held())
        .await;
    assert!(matches!(twice, Err(StoreError::AppBound)), "{twice:?}");

    // The same app on another instance, another app on this one.
    bound(store, &binding("b3", "j", "app-1")).await;
    bound(store, &binding("b4", "i", "app-2")).await;
    // Keys: names unique per instance, apart from bindings.
    bound(store, &key("k1", "i", "key")).await;
    bound(store, &key("k2", "j", "key")).await;
    let taken = store.reserve_handle(&key("k3", "i", "key"), &held()).await;
    assert!(matches!(taken, Err(StoreError::KeyNameTaken)), "{taken:?}");

    assert_eq!(
        handle_guids(store, &of_i).await,
        (2, vec!["b1".into(), "b4".into()])
    );
    let of_app = handles(HandleKind::Binding, vec![(HandleField::AppGuid, "app-1")]);
    assert_eq!(handle_guids(store, &of_app).await.1, ["b1", "b3"]);
    let keys_of_i = handles(HandleKind::Key, vec![(HandleField::InstanceGuid, "i")]);
    assert_eq!(handle_guids(store, &keys_of_i).await.1, ["k1"]);
    let by_name = handles(
        HandleKind::Key,
        vec![(HandleField::Name, "key"), (HandleField::InstanceGuid, "j")],
    );
    assert_eq!(handle_guids(store, &by_name).await.1, ["k2"]);

    // A released reservation frees the app's place; a created handle is never released.
    store
        .reserve_handle(&binding("b5", "j", "app-9"), &held())
        .await
        .unwrap();
    store.release_handle("b5").await.unwrap();
    assert!(store.get_handle("b5").await.unwrap().is_none());
    bound(store, &binding("b6", "j", "app-9")).await;
    store.release_handle("b6").await.unwrap();
    store.release_handle("never").await.unwrap();
    assert!(store.get_handle("b6").await.unwrap().is_some());

    // Only created instances take handles.
    for (instance, expected) in [("nope", "NotFound"), ("r", "NotFound")] {
        let refused = store
            .reserve_handle(&binding("x", instance, "app-1"), &held())
            .await;
        assert!(
            matches!(refused, Err(StoreError::NotFound)),
            "{instance}: {refused:?}, wanted {expected}"
        );
    }
    created(store, "d", "S", "doomed", 10).await;
    store.begin_delete("d", &held(), false).await.unwrap();
    let refused = store
        .reserve_handle(&binding("x", "d", "app-1"), &held())
        .await;
    assert!(
        matches!(refused, Err(StoreError::InProgress)),
        "{refused:?}"
    );
}

/// What a caller who may see some spaces only is shown: the handles of instances there.
pub async fn handles_filter_on_their_instance_space(factory: &impl Factory) {
    let s = factory.make().await;
    let store = &*s.store;
    created(store, "i", "S1", "one", 10).await;
    created(store, "j", "S2", "two", 10).await;
    created(store, "k", "S3", "three", 10).await;
    bound(store, &binding("b1", "i", "app-1")).await;
    bound(store, &binding("b2", "j", "app-1")).await;
    bound(store, &binding("b3", "k", "app-1")).await;
    bound(store, &key("k1", "j", "key")).await;
    let in_spaces = |kind, spaces: &[&str]| HandleQuery {
        kind,
        list: ListQuery {
            conditions: vec![(
                HandleField::SpaceGuid,
                spaces.iter().map(|s| s.to_string()).collect(),
            )],
            descending: false,
            offset: 0,
            limit: 50,
        },
    };
    let seen = handle_guids(store, &in_spaces(HandleKind::Binding, &["S1", "S3"])).await;
    assert_eq!(seen, (2, vec!["b1".into(), "b3".into()]));
    let seen = handle_guids(store, &in_spaces(HandleKind::Key, &["S2"])).await;
    assert_eq!(seen, (1, vec!["k1".into()]));
    // No visible space: nothing, and no error.
    let seen = handle_guids(store, &in_spaces(HandleKind::Binding, &[])).await;
    assert_eq!(seen, (0, vec![]));
}

pub async fn an_unbind_holds_the_handle_until_finished_or_aborted(factory: &impl Factory) {
    let s = factory.make().await;
    let store = &*s.store;
    created(store, "i", "S", "one", 10).await;
    bound(store, &binding("b1", "i", "app-1")).await;
    store
        .reserve_handle(&binding("b2", "i", "app-2"), &held())
        .await
        .unwrap();

    store.begin_unbind("b1", &held()).await.unwrap();
    assert!(matches!(
        store.get_handle("b1").await.unwrap().unwrap().state,
        HandleState::Deleting(..)
    ));
    let again = store.begin_unbind("b1", &held()).await;
    assert!(matches!(again, Err(StoreError::InProgress)), "{again:?}");
    // The instance waits for it.
    let busy = store.begin_delete("i", &held(), true).await;
    assert!(matches!(busy, Err(StoreError::InProgress)), "{busy:?}");

    store.abort_unbind("b1").await.unwrap();
    assert!(matches!(
        store.get_handle("b1").await.unwrap().unwrap().state,
        HandleState::Created(_)
    ));
    let not_deleting = store.finish_unbind("b1").await;
    assert!(
        matches!(not_deleting, Err(StoreError::NotFound)),
        "{not_deleting:?}"
    );
    store.begin_unbind("b1", &held()).await.unwrap();
    store.finish_unbind("b1").await.unwrap();
    assert!(store.get_handle("b1").await.unwrap().is_none());
    store.finish_unbind("b1").await.unwrap();
    // The app may bind again.
    bound(store, &binding("b3", "i", "app-1")).await;

    for missing in ["nope", "b2"] {
        let refused = store.begin_unbind(missing, &held()).await;
        assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}");
    }
}

pub async fn concurrent_deletes_have_one_winner(factory: &impl Factory) {
    let s = factory.make().await;
    created(&*s.store, "i", "S", "one", 10).await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = s.store.clone();
            tokio::spawn(async move { store.begin_delete("i", &held(), true).await })
        })
        .collect();
    let (mut won, mut busy) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(StoreError::InProgress) => busy += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((won, busy), (1, 9));
}

pub async fn a_delete_racing_a_bind_has_one_winner(factory: &impl Factory) {
    for round in 0..10 {
        let s = factory.make().await;
        created(&*s.store, "i", "S", "one", 10).await;
        let store = s.store.clone();
        let delete = tokio::spawn(async move { store.begin_delete("i", &held(), true).await });
        let store = s.store.clone();
        let bind = tokio::spawn(async move {
            store
                .reserve_handle(&binding("b", "i", "app"), &held())
                .await
        });
        let (delete, bind) = (delete.await.unwrap(), bind.await.unwrap());
        match (&delete, &bind) {
            (Ok(()), Err(StoreError::InProgress)) => {
                assert!(s.store.get_handle("b").await.unwrap().is_none())
            }
            (Err(StoreError::InProgress), Ok(())) => assert!(matches!(
                s.store.get("i").await.unwrap().unwrap().state,
                State::Created(_)
            )),
            _ => panic!("round {round}: delete {delete:?}, bind {bind:?}"),
        }
    }
}

pub async fn recovery_frees_handle_reservations_too(factory: &impl Factory) {
    let s = factory.make().await;
    let store = &*s.store;
    created(store, "i", "S", "one", 10).await;
    store
        .reserve_handle(&binding("mine", "i", "app-1"), &held())
        .await
        .unwrap();
    let theirs = lease("b", NOW + 150);
    store
        .reserve_handle(&key("theirs", "i", "k"), &theirs)
        .await
        .unwrap();
    bound(store, &binding("done", "i", "app-2")).await;

    let recovered = store.recover(&policy("a", true)).await.unwrap();
    assert!(recovered.instances.is_empty());
    assert_eq!(recovered.handles, [binding("mine", "i", "app-1")]);
    assert!(store.get_handle("mine").await.unwrap().is_none());
    assert!(store.get_handle("theirs").await.unwrap().is_some());
    assert!(store.get_handle("done").await.unwrap().is_some());
}

pub async fn unfinished_deletes_and_unbinds_are_claimed_once(factory: &impl Factory) {
    let s = factory.make().await;
    let store = &*s.store;
    created(store, "gone", "S", "one", 10).await;
    bound(store, &binding("gone-b", "gone", "app-1")).await;
    created(store, "other", "S", "two", 10).await;
    bound(store, &binding("other-b", "other", "app-1")).await;
    bound(store, &binding("other-c", "other", "app-2")).await;
    created(store, "live", "S", "three", 10).await;

    let expired = lease("b", NOW - 1);
    store.begin_delete("gone", &expired, true).await.unwrap();
    store.begin_unbind("other-b", &expired).await.unwrap();
    // Held by a live process: left alone.
    store
        .begin_unbind("other-c", &lease("b", NOW + 150))
        .await
        .unwrap();
    store
        .begin_delete("live", &lease("b", NOW + 150), false)
        .await
        .unwrap();

    let ours = lease("a", NOW + 300);
    let claimed = store
        .claim_unfinished(&policy("a", false), &ours)
        .await
        .unwrap();
    assert_eq!(claimed.deletes.len(), 1);
    let (instance, its_handles) = &claimed.deletes[0];
    assert_eq!(instance.reservation.guid, "gone");
    assert!(matches!(instance.state, State::Deleting(_, ref l) if *l == ours));
    assert_eq!(its_handles.len(), 1);
    assert_eq!(its_handles[0].reservation.guid, "gone-b");
    assert!(matches!(its_handles[0].state, HandleState::Deleting(_, ref l) if *l == ours));
    let unbinds: Vec<_> = claimed
        .unbinds
        .iter()
        .map(|h| h.reservation.guid.as_str())
        .collect();
    assert_eq!(unbinds, ["other-b"]);
    assert!(matches!(
        store.get_handle("other-b").await.unwrap().unwrap().state,
        HandleState::Deleting(_, ref l) if *l == ours
    ));

    // Claimed once: a second claimant before our lease ends gets nothing.
    let again = store
        .claim_unfinished(&policy("c", false), &lease("c", NOW + 300))
        .await
        .unwrap();
    assert!(again.deletes.is_empty() && again.unbinds.is_empty());
}
