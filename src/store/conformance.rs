//! The [`Store`] promises, written once and run against every backend: each function takes a
//! factory of fresh, empty stores, and `store_conformance!(factory)` turns them all into tests
//! in the backend's test module.

use std::any::Any;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::{Lease, Provisioned, RecoveryPolicy, Reservation, State, Store, StoreError};

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

/// Generates one test per promise below, each on a fresh store from `$factory`.
macro_rules! store_conformance {
    ($factory:expr) => {
        $crate::store::conformance::store_conformance!(@each $factory;
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
            ping_answers
        );
    };
    (@each $factory:expr; $($promise:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $promise() {
            $crate::store::conformance::$promise(&$factory).await;
        }
    )*};
}
pub(crate) use store_conformance;

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
    let removed = store.recover(policy).await.unwrap();
    removed.into_iter().map(|r| r.guid).collect()
}

pub async fn reserve_commit_and_get_show_each_state(factory: &impl Fn() -> Subject) {
    let s = factory();
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

pub async fn get_of_an_unknown_guid_is_none(factory: &impl Fn() -> Subject) {
    assert!(factory().store.get("nope").await.unwrap().is_none());
}

pub async fn names_are_unique_per_space_only(factory: &impl Fn() -> Subject) {
    let s = factory();
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

pub async fn release_frees_the_name_and_never_removes_a_created_row(
    factory: &impl Fn() -> Subject,
) {
    let s = factory();
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

pub async fn a_duplicate_guid_is_not_a_taken_name(factory: &impl Fn() -> Subject) {
    let s = factory();
    reserve(&*s.store, "g1", "n", held()).await;
    let dup = s.store.reserve(&reservation("g1", "S", "m"), &held()).await;
    assert!(matches!(dup, Err(StoreError::Backend(_))), "{dup:?}");
}

pub async fn concurrent_reserves_of_one_name_have_one_winner(factory: &impl Fn() -> Subject) {
    let s = factory();
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

pub async fn commit_needs_a_reservation(factory: &impl Fn() -> Subject) {
    let s = factory();
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

pub async fn a_start_after_a_crash_frees_the_owners_reservations_only(
    factory: &impl Fn() -> Subject,
) {
    let s = factory();
    reserve(&*s.store, "mine", "a", held()).await;
    reserve(&*s.store, "theirs", "b", lease("b", NOW + 150)).await;
    reserve(&*s.store, "theirs-expired", "c", lease("b", NOW - 1)).await;

    let removed = s.store.recover(&policy("a", true)).await.unwrap();
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

pub async fn an_upgrade_start_frees_only_expired_leases(factory: &impl Fn() -> Subject) {
    let s = factory();
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

pub async fn committed_rows_survive_recovery(factory: &impl Fn() -> Subject) {
    let s = factory();
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

pub async fn ping_answers(factory: &impl Fn() -> Subject) {
    factory().store.ping().await.unwrap();
}
