//! Renaming and retagging an instance, in the Cloud Controller's order (`update`): find it,
//! check the scope, refuse a space change, refuse a plan change or `parameters` (v1 gateways
//! cannot update an instance), check the name rules, then change name and tags atomically in
//! the store — the name's uniqueness in its space held by the store, as on create. No broker
//! call: v1 has no update.

use std::sync::Arc;

use super::authorize::{check_writer, Authorizer, AuthzContext, Refusal, Undecided, Verdict};
use super::rules::{self, RuleViolation};
use crate::auth::{Identity, Scope};
use crate::config::Runtime;
use crate::store::{CreatedInstance, InstanceUpdate, Operation, Store, StoreError};

/// `PUT /v2/service_instances/:guid`, as a command.
#[derive(Debug)]
pub struct UpdateInstance<'a> {
    pub guid: &'a str,
    /// Trimmed.
    pub name: Option<String>,
    pub tags: Option<Vec<String>>,
    pub space_guid: Option<String>,
    pub service_plan_guid: Option<String>,
    /// Whether the request carried `parameters`.
    pub parameters: bool,
    pub caller: &'a Identity,
    /// The scope the route needs.
    pub scope: Scope,
    /// Sent on with authorization questions.
    pub request_id: &'a str,
    /// Unix seconds: the update's `updated_at`.
    pub now: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// Not an instance brokergate holds (the edge may pass the request through).
    #[error("no instance {guid}")]
    NotFound { guid: String },
    #[error("token lacks cloud_controller.write")]
    InsufficientScope,
    /// In a space the caller may not see: answered as not found, not passed on.
    #[error("instance {guid} is in a space the caller may not see")]
    Hidden { guid: String },
    /// The caller sees the instance but may not change it.
    #[error("not authorized")]
    NotAuthorized,
    #[error("{0}")]
    AuthorizationUnavailable(Undecided),
    #[error("an instance cannot change space")]
    SpaceChange,
    #[error("v1 plans cannot be changed or given parameters")]
    PlanNotUpdateable,
    /// A name rule; `name` is the instance's name after the update.
    #[error("invalid name or tags: {violation:?}")]
    Invalid {
        violation: RuleViolation,
        name: String,
    },
    #[error("name taken")]
    NameTaken { name: String },
    /// A delete holds the instance.
    #[error("an operation is in progress on {guid}")]
    InProgress { guid: String },
    #[error("{0}")]
    Store(StoreError),
}

impl UpdateError {
    /// What the authorization came to, for the access log: nothing before it was asked.
    pub fn authorization(&self) -> Option<Verdict> {
        match self {
            UpdateError::NotFound { .. } | UpdateError::InsufficientScope => None,
            UpdateError::Hidden { .. } | UpdateError::NotAuthorized => Some(Verdict::Denied),
            UpdateError::AuthorizationUnavailable(_) => Some(Verdict::Unavailable),
            UpdateError::SpaceChange
            | UpdateError::PlanNotUpdateable
            | UpdateError::Invalid { .. }
            | UpdateError::NameTaken { .. }
            | UpdateError::InProgress { .. }
            | UpdateError::Store(_) => Some(Verdict::Allowed),
        }
    }
}

pub struct Updater {
    store: Arc<dyn Store>,
    authorizer: Arc<dyn Authorizer>,
}

impl Updater {
    pub fn new(store: Arc<dyn Store>, authorizer: Arc<dyn Authorizer>) -> Self {
        Updater { store, authorizer }
    }

    /// The instance as it is after the update.
    pub async fn update(
        &self,
        rt: &Runtime,
        cmd: UpdateInstance<'_>,
    ) -> Result<CreatedInstance, UpdateError> {
        let not_found = || UpdateError::NotFound {
            guid: cmd.guid.to_string(),
        };
        let record = self
            .store
            .get(cmd.guid)
            .await
            .map_err(UpdateError::Store)?
            .ok_or_else(not_found)?;
        let mut instance = CreatedInstance::from_record(record).ok_or_else(not_found)?;
        if !cmd.caller.allows(cmd.scope) {
            return Err(UpdateError::InsufficientScope);
        }
        let cx = AuthzContext {
            rt,
            caller: cmd.caller,
            request_id: cmd.request_id,
        };
        let r = &instance.reservation;
        check_writer(
            self.authorizer.as_ref(),
            &cx,
            &r.space_guid,
            r.organization_guid.as_deref(),
        )
        .await
        .map_err(|refusal| match refusal {
            Refusal::Hidden => UpdateError::Hidden {
                guid: cmd.guid.to_string(),
            },
            Refusal::NotAuthorized => UpdateError::NotAuthorized,
            Refusal::Undecided(u) => UpdateError::AuthorizationUnavailable(u),
        })?;
        let current = &instance.reservation;
        if cmd
            .space_guid
            .as_ref()
            .is_some_and(|s| *s != current.space_guid)
        {
            return Err(UpdateError::SpaceChange);
        }
        let plan_change = cmd
            .service_plan_guid
            .as_ref()
            .is_some_and(|p| *p != current.service_plan_guid);
        if plan_change || cmd.parameters {
            return Err(UpdateError::PlanNotUpdateable);
        }
        let name = cmd.name.clone().unwrap_or_else(|| current.name.clone());
        let tags = cmd.tags.as_deref().unwrap_or(&current.tags);
        rules::check_name_and_tags(&name, tags).map_err(|violation| UpdateError::Invalid {
            violation,
            name: name.clone(),
        })?;

        let update = InstanceUpdate {
            name: cmd.name,
            tags: cmd.tags,
            updated_at: cmd.now,
        };
        self.store
            .update(cmd.guid, &update)
            .await
            .map_err(|e| match e {
                StoreError::NameTaken => UpdateError::NameTaken { name: name.clone() },
                StoreError::InProgress => UpdateError::InProgress {
                    guid: cmd.guid.to_string(),
                },
                // Deleted since it was read.
                StoreError::NotFound => not_found(),
                e => UpdateError::Store(e),
            })?;
        let r = &mut instance.reservation;
        if let Some(new_name) = update.name {
            r.name = new_name;
        }
        if let Some(new_tags) = update.tags {
            r.tags = new_tags;
        }
        instance.last_operation = Operation::Update;
        instance.updated_at = Some(update.updated_at);
        Ok(instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::fake_authorizer::{test_runtime, FakeAuthorizer};
    use crate::store::conformance::reservation;
    use crate::store::{Lease, MemoryStore, Provisioned};
    use serde_json::value::RawValue;

    fn identity(scopes: &[&str]) -> Identity {
        Identity::new("u", None, scopes.iter().map(|s| s.to_string()).collect())
    }

    async fn store_with(names: &[(&str, &str)]) -> Arc<MemoryStore> {
        let store = Arc::new(MemoryStore::new());
        let lease = Lease {
            owner: "o".into(),
            expires_at: i64::MAX,
        };
        for (guid, name) in names {
            store
                .reserve(&reservation(guid, "S", name), &lease)
                .await
                .unwrap();
            let provisioned = Provisioned {
                broker_service_id: format!("svc-{guid}"),
                gateway_data: RawValue::from_string("{}".into()).unwrap(),
                credentials: RawValue::from_string("{}".into()).unwrap(),
                dashboard_url: None,
            };
            store.commit(guid, &provisioned).await.unwrap();
        }
        store
    }

    fn command<'a>(guid: &'a str, caller: &'a Identity) -> UpdateInstance<'a> {
        UpdateInstance {
            guid,
            name: None,
            tags: None,
            space_guid: None,
            service_plan_guid: None,
            parameters: false,
            caller,
            scope: Scope::Write,
            request_id: "rid",
            now: 1_700_000_000,
        }
    }

    fn updater(store: Arc<MemoryStore>) -> (Updater, Arc<FakeAuthorizer>) {
        let authorizer = Arc::new(FakeAuthorizer::default());
        (Updater::new(store, authorizer.clone()), authorizer)
    }

    #[tokio::test]
    async fn renames_and_retags_and_dates_the_update() {
        let store = store_with(&[("g1", "old")]).await;
        let (updater, _) = updater(store.clone());
        let writer = identity(&["cloud_controller.write"]);
        let updated = updater
            .update(
                &test_runtime(),
                UpdateInstance {
                    name: Some("new".into()),
                    tags: Some(vec!["t".into()]),
                    ..command("g1", &writer)
                },
            )
            .await
            .unwrap();
        assert_eq!(updated.reservation.name, "new");
        assert_eq!(updated.last_operation, Operation::Update);
        let stored = store.get("g1").await.unwrap().unwrap();
        assert_eq!(stored.reservation.name, "new");
        assert_eq!(stored.reservation.tags, vec!["t".to_string()]);
        assert_eq!(stored.updated_at, Some(1_700_000_000));
    }

    #[tokio::test]
    async fn refusals_come_in_the_cloud_controllers_order_and_change_nothing() {
        let store = store_with(&[("g1", "one"), ("g2", "two")]).await;
        let (updater, _) = updater(store.clone());
        let writer = identity(&["cloud_controller.write"]);
        let reader = identity(&["cloud_controller.read"]);
        type Expected = fn(&UpdateError) -> bool;
        let cases: Vec<(UpdateInstance, Expected)> = vec![
            (
                UpdateInstance {
                    name: Some(String::new()),
                    ..command("nope", &reader)
                },
                |e| matches!(e, UpdateError::NotFound { .. }),
            ),
            (
                UpdateInstance {
                    space_guid: Some("other".into()),
                    ..command("g1", &reader)
                },
                |e| matches!(e, UpdateError::InsufficientScope),
            ),
            (
                UpdateInstance {
                    space_guid: Some("other".into()),
                    service_plan_guid: Some("P2".into()),
                    ..command("g1", &writer)
                },
                |e| matches!(e, UpdateError::SpaceChange),
            ),
            (
                UpdateInstance {
                    service_plan_guid: Some("P2".into()),
                    name: Some(String::new()),
                    ..command("g1", &writer)
                },
                |e| matches!(e, UpdateError::PlanNotUpdateable),
            ),
            (
                UpdateInstance {
                    parameters: true,
                    ..command("g1", &writer)
                },
                |e| matches!(e, UpdateError::PlanNotUpdateable),
            ),
            (
                UpdateInstance {
                    name: Some(String::new()),
                    ..command("g1", &writer)
                },
                |e| {
                    matches!(
                        e,
                        UpdateError::Invalid {
                            violation: RuleViolation::NameEmpty,
                            ..
                        }
                    )
                },
            ),
            (
                UpdateInstance {
                    name: Some("two".into()),
                    ..command("g1", &writer)
                },
                |e| matches!(e, UpdateError::NameTaken { name } if name == "two"),
            ),
        ];
        for (cmd, expected) in cases {
            let described = format!("{cmd:?}");
            let err = updater.update(&test_runtime(), cmd).await.unwrap_err();
            assert!(expected(&err), "{described}: {err:?}");
        }
        let g1 = store.get("g1").await.unwrap().unwrap();
        assert_eq!(g1.reservation.name, "one");
        assert_eq!(g1.last_operation, Operation::Create);
        assert_eq!(g1.updated_at, None);
    }

    #[tokio::test]
    async fn a_rename_needs_a_developer_of_a_visible_space() {
        let store = store_with(&[("g1", "one")]).await;
        let space = store
            .get("g1")
            .await
            .unwrap()
            .unwrap()
            .reservation
            .space_guid;
        let writer = identity(&["cloud_controller.write"]);
        let rename = |caller| UpdateInstance {
            name: Some("renamed".into()),
            ..command("g1", caller)
        };
        let (updater, authorizer) = updater(store.clone());
        authorizer.deny_developer(&space);
        let err = updater
            .update(&test_runtime(), rename(&writer))
            .await
            .unwrap_err();
        assert!(matches!(err, UpdateError::NotAuthorized), "{err:?}");
        assert_eq!(err.authorization(), Some(Verdict::Denied));
        authorizer.hide(&space);
        let err = updater
            .update(&test_runtime(), rename(&writer))
            .await
            .unwrap_err();
        assert!(matches!(err, UpdateError::Hidden { .. }), "{err:?}");
        authorizer.go_down();
        let err = updater
            .update(&test_runtime(), rename(&writer))
            .await
            .unwrap_err();
        assert!(
            matches!(err, UpdateError::AuthorizationUnavailable(_)),
            "{err:?}"
        );
        assert_eq!(
            store.get("g1").await.unwrap().unwrap().reservation.name,
            "one"
        );
        // An admin is not asked.
        let admin = identity(&["cloud_controller.admin"]);
        let asked = authorizer.asked();
        updater
            .update(&test_runtime(), rename(&admin))
            .await
            .unwrap();
        assert_eq!(authorizer.asked(), asked);
    }

    #[tokio::test]
    async fn the_current_plan_and_space_may_be_repeated() {
        let store = store_with(&[("g1", "one")]).await;
        let current = store.get("g1").await.unwrap().unwrap().reservation;
        let writer = identity(&["cloud_controller.admin"]);
        updater(store)
            .0
            .update(
                &test_runtime(),
                UpdateInstance {
                    space_guid: Some(current.space_guid.clone()),
                    service_plan_guid: Some(current.service_plan_guid.clone()),
                    ..command("g1", &writer)
                },
            )
            .await
            .unwrap();
    }
}
