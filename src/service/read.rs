//! Reading one instance, as the Cloud Controller's `find_guid_and_validate_access(:read)`:
//! find it (an unknown guid is not found — the edge may pass it upstream), then check the
//! token's scope, then whether the caller may see its space (one it may not see is answered
//! as not found, as the Cloud Controller hides what one may not see), then decide what the
//! caller may see of its secrets. Lists hold only what is in the spaces the caller may see.

use std::sync::Arc;

use super::authorize::{check_visible, Authorizer, AuthzContext, Refusal, Undecided, Verdict};
use super::VisibleSpaces;
use crate::auth::{Identity, Scope};
use crate::config::Runtime;
use crate::store::{
    CreatedInstance, HandleField, HandleKind, HandleQuery, HandleRecord, InstanceField,
    InstanceQuery, Listed, State, Store, StoreError,
};

/// `GET /v2/service_instances/:guid`, as a command.
#[derive(Debug, Clone, Copy)]
pub struct ReadInstance<'a> {
    pub guid: &'a str,
    pub caller: &'a Identity,
    /// The scope the route needs.
    pub scope: Scope,
    /// Sent on with authorization questions.
    pub request_id: &'a str,
}

/// An instance as one caller may see it.
#[derive(Debug)]
pub struct VisibleInstance {
    pub instance: CreatedInstance,
    /// Whether `credentials` and `dashboard_url` are shown: only to tokens that may also
    /// write (or admins); others see them redacted, as the Cloud Controller shows them.
    pub secrets_visible: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Not an instance brokergate holds (or one still being created).
    #[error("no instance {guid}")]
    NotFound { guid: String },
    /// Not a binding or key (of that kind) brokergate holds, or one still being made.
    #[error("no {} {guid}", kind.as_str())]
    HandleNotFound { kind: HandleKind, guid: String },
    #[error("token lacks cloud_controller.read")]
    InsufficientScope,
    /// An instance in a space the caller may not see: answered as not found, not passed on.
    #[error("instance {guid} is in a space the caller may not see")]
    Hidden { guid: String },
    /// A binding or key of an instance in a space the caller may not see.
    #[error("{} {guid} is in a space the caller may not see", kind.as_str())]
    HandleHidden { kind: HandleKind, guid: String },
    #[error("{0}")]
    AuthorizationUnavailable(Undecided),
    #[error("{0}")]
    Store(StoreError),
}

impl ReadError {
    /// What the authorization came to, for the access log: nothing before it was asked.
    pub fn authorization(&self) -> Option<Verdict> {
        match self {
            ReadError::Hidden { .. } | ReadError::HandleHidden { .. } => Some(Verdict::Denied),
            ReadError::AuthorizationUnavailable(_) => Some(Verdict::Unavailable),
            ReadError::NotFound { .. }
            | ReadError::HandleNotFound { .. }
            | ReadError::InsufficientScope
            | ReadError::Store(_) => None,
        }
    }
}

/// `GET /v2/service_instances`, as a command.
#[derive(Debug, Clone, Copy)]
pub struct ListInstances<'a> {
    pub query: &'a InstanceQuery,
    pub caller: &'a Identity,
    /// The scope the route needs.
    pub scope: Scope,
    /// Sent on with authorization questions.
    pub request_id: &'a str,
}

/// A page of instances as one caller may see them.
#[derive(Debug)]
pub struct VisiblePage {
    pub total: u64,
    pub instances: Vec<CreatedInstance>,
    /// As [`VisibleInstance::secrets_visible`], for every instance of the page.
    pub secrets_visible: bool,
}

/// `GET /v2/service_bindings/:guid` or `GET /v2/service_keys/:guid`, as a command.
#[derive(Debug, Clone, Copy)]
pub struct ReadHandle<'a> {
    pub guid: &'a str,
    pub kind: HandleKind,
    pub caller: &'a Identity,
    pub scope: Scope,
    pub request_id: &'a str,
}

/// A binding or key as one caller may see it.
#[derive(Debug)]
pub struct VisibleHandle {
    pub handle: HandleRecord,
    /// As [`VisibleInstance::secrets_visible`].
    pub secrets_visible: bool,
}

/// A list of bindings or keys, as a command: all of them, or (`instance_guid`) those of one
/// instance, which must then be one brokergate holds.
#[derive(Debug, Clone, Copy)]
pub struct ListHandles<'a> {
    pub query: &'a HandleQuery,
    pub instance_guid: Option<&'a str>,
    pub caller: &'a Identity,
    pub scope: Scope,
    pub request_id: &'a str,
}

/// A page of bindings or keys as one caller may see them.
#[derive(Debug)]
pub struct VisibleHandles {
    pub total: u64,
    pub handles: Vec<HandleRecord>,
    pub secrets_visible: bool,
}

pub struct Reader {
    store: Arc<dyn Store>,
    authorizer: Arc<dyn Authorizer>,
}

impl Reader {
    pub fn new(store: Arc<dyn Store>, authorizer: Arc<dyn Authorizer>) -> Self {
        Reader { store, authorizer }
    }

    /// Whether the caller may see what is in `space_guid`; `hidden` is the error if not.
    async fn check_visible(
        &self,
        cx: &AuthzContext<'_>,
        space_guid: &str,
        hidden: impl FnOnce() -> ReadError,
    ) -> Result<(), ReadError> {
        check_visible(self.authorizer.as_ref(), cx, space_guid)
            .await
            .map_err(|refusal| match refusal {
                Refusal::Undecided(u) => ReadError::AuthorizationUnavailable(u),
                Refusal::Hidden | Refusal::NotAuthorized => hidden(),
            })
    }

    pub async fn read(
        &self,
        rt: &Runtime,
        cmd: ReadInstance<'_>,
    ) -> Result<VisibleInstance, ReadError> {
        let not_found = || ReadError::NotFound {
            guid: cmd.guid.to_string(),
        };
        let record = self
            .store
            .get(cmd.guid)
            .await
            .map_err(ReadError::Store)?
            .ok_or_else(not_found)?;
        // A reservation is a create still waiting for its broker: no instance yet.
        let instance = CreatedInstance::from_record(record).ok_or_else(not_found)?;
        if !cmd.caller.allows(cmd.scope) {
            return Err(ReadError::InsufficientScope);
        }
        let cx = AuthzContext {
            rt,
            caller: cmd.caller,
            request_id: cmd.request_id,
        };
        self.check_visible(&cx, &instance.reservation.space_guid, || {
            ReadError::Hidden {
                guid: cmd.guid.to_string(),
            }
        })
        .await?;
        Ok(VisibleInstance {
            instance,
            secrets_visible: cmd.caller.allows(Scope::Write),
        })
    }
}

impl Reader {
    /// The scope first (a list has nothing to find), then the spaces the caller may see,
    /// then one page from the store: the instances brokergate holds there, created or being
    /// deleted.
    pub async fn list(
        &self,
        rt: &Runtime,
        cmd: ListInstances<'_>,
    ) -> Result<VisiblePage, ReadError> {
        if !cmd.caller.allows(cmd.scope) {
            return Err(ReadError::InsufficientScope);
        }
        let cx = AuthzContext {
            rt,
            caller: cmd.caller,
            request_id: cmd.request_id,
        };
        let mut query = cmd.query.clone();
        if let Some(spaces) = self.visible_spaces(&cx).await? {
            query.conditions.push((InstanceField::SpaceGuid, spaces));
        }
        let Listed { total, items } = self.store.list(&query).await.map_err(ReadError::Store)?;
        let instances = items
            .into_iter()
            .filter_map(CreatedInstance::from_record)
            .collect();
        Ok(VisiblePage {
            total,
            instances,
            secrets_visible: cmd.caller.allows(Scope::Write),
        })
    }
}

impl Reader {
    /// Whether brokergate holds the instance (created, or being deleted): a list filtered on
    /// such instances only needs no upstream. A store failure counts as not held, so the
    /// upstream is asked.
    pub async fn holds_instance(&self, guid: &str) -> bool {
        matches!(
            self.store.get(guid).await,
            Ok(Some(r)) if !matches!(r.state, State::Reserved(_))
        )
    }

    /// The spaces to hold a list to; `None`: every space.
    async fn visible_spaces(
        &self,
        cx: &AuthzContext<'_>,
    ) -> Result<Option<Vec<String>>, ReadError> {
        if cx.caller.reads_everything() {
            return Ok(None);
        }
        match self.authorizer.visible_spaces(cx).await {
            Ok(VisibleSpaces::All) => Ok(None),
            Ok(VisibleSpaces::Only(spaces)) => Ok(Some(spaces)),
            Err(u) => Err(ReadError::AuthorizationUnavailable(u)),
        }
    }

    /// Found (a handle still being bound is not), then the scope, then the instance's space
    /// is one the caller may see, as for an instance.
    pub async fn read_handle(
        &self,
        rt: &Runtime,
        cmd: ReadHandle<'_>,
    ) -> Result<VisibleHandle, ReadError> {
        let not_found = || ReadError::HandleNotFound {
            kind: cmd.kind,
            guid: cmd.guid.to_string(),
        };
        let handle = self
            .store
            .get_handle(cmd.guid)
            .await
            .map_err(ReadError::Store)?
            .filter(|h| h.reservation.holder.kind() == cmd.kind && h.grant().is_some())
            .ok_or_else(not_found)?;
        if !cmd.caller.allows(cmd.scope) {
            return Err(ReadError::InsufficientScope);
        }
        let cx = AuthzContext {
            rt,
            caller: cmd.caller,
            request_id: cmd.request_id,
        };
        if !cmd.caller.reads_everything() {
            // The handle's instance knows its space; one gone meanwhile hides the handle.
            let instance = self
                .store
                .get(&handle.reservation.instance_guid)
                .await
                .map_err(ReadError::Store)?
                .ok_or_else(not_found)?;
            self.check_visible(&cx, &instance.reservation.space_guid, || {
                ReadError::HandleHidden {
                    kind: cmd.kind,
                    guid: cmd.guid.to_string(),
                }
            })
            .await?;
        }
        Ok(VisibleHandle {
            handle,
            secrets_visible: cmd.caller.allows(Scope::Write),
        })
    }

    /// For one instance's handles, the instance is found first (not found: not ours); then the
    /// scope, then the instance's space (or, for all handles, the spaces the caller may see),
    /// then one page.
    pub async fn list_handles(
        &self,
        rt: &Runtime,
        cmd: ListHandles<'_>,
    ) -> Result<VisibleHandles, ReadError> {
        let mut instance_space = None;
        if let Some(guid) = cmd.instance_guid {
            let found = self.store.get(guid).await.map_err(ReadError::Store)?;
            match found {
                Some(r) if !matches!(r.state, State::Reserved(_)) => {
                    instance_space = Some(r.reservation.space_guid);
                }
                _ => {
                    return Err(ReadError::NotFound {
                        guid: guid.to_string(),
                    })
                }
            }
        }
        if !cmd.caller.allows(cmd.scope) {
            return Err(ReadError::InsufficientScope);
        }
        let cx = AuthzContext {
            rt,
            caller: cmd.caller,
            request_id: cmd.request_id,
        };
        let mut query = cmd.query.clone();
        match (cmd.instance_guid, instance_space) {
            (Some(guid), Some(space)) => {
                self.check_visible(&cx, &space, || ReadError::Hidden {
                    guid: guid.to_string(),
                })
                .await?;
            }
            _ => {
                if let Some(spaces) = self.visible_spaces(&cx).await? {
                    query.list.conditions.push((HandleField::SpaceGuid, spaces));
                }
            }
        }
        let Listed { total, items } = self
            .store
            .list_handles(&query)
            .await
            .map_err(ReadError::Store)?;
        Ok(VisibleHandles {
            total,
            handles: items,
            secrets_visible: cmd.caller.allows(Scope::Write),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::fake_authorizer::{test_runtime, FakeAuthorizer};
    use crate::store::{Lease, MemoryStore, Provisioned, Reservation};
    use serde_json::value::RawValue;

    fn identity(scopes: &[&str]) -> Identity {
        Identity::new("u", None, scopes.iter().map(|s| s.to_string()).collect())
    }

    fn reservation(guid: &str) -> Reservation {
        crate::store::conformance::reservation(guid, "S", &format!("name-{guid}"))
    }

    async fn store_with(created: &str, reserved: &str) -> Arc<MemoryStore> {
        let store = Arc::new(MemoryStore::new());
        let lease = Lease {
            owner: "o".into(),
            expires_at: i64::MAX,
        };
        store.reserve(&reservation(created), &lease).await.unwrap();
        let provisioned = Provisioned {
            broker_service_id: "svc".into(),
            gateway_data: RawValue::from_string("{}".into()).unwrap(),
            credentials: RawValue::from_string(r#"{"pw":"x"}"#.into()).unwrap(),
            dashboard_url: None,
        };
        store.commit(created, &provisioned).await.unwrap();
        store.reserve(&reservation(reserved), &lease).await.unwrap();
        store
    }

    async fn read(
        reader: &Reader,
        guid: &str,
        caller: &Identity,
    ) -> Result<VisibleInstance, ReadError> {
        let cmd = ReadInstance {
            guid,
            caller,
            scope: Scope::Read,
            request_id: "rid",
        };
        reader.read(&test_runtime(), cmd).await
    }

    #[tokio::test]
    async fn found_then_scope_then_secrets() {
        let reader = Reader::new(
            store_with("g1", "g2").await,
            Arc::new(FakeAuthorizer::default()),
        );
        let admin = identity(&["cloud_controller.admin"]);
        let reader_only = identity(&["cloud_controller.read"]);
        let read_write = identity(&["cloud_controller.read", "cloud_controller.write"]);
        let write_only = identity(&["cloud_controller.write"]);

        assert!(read(&reader, "g1", &admin).await.unwrap().secrets_visible);
        assert!(
            read(&reader, "g1", &read_write)
                .await
                .unwrap()
                .secrets_visible
        );
        let seen = read(&reader, "g1", &reader_only).await.unwrap();
        assert!(!seen.secrets_visible);
        assert_eq!(seen.instance.reservation.name, "name-g1");
        assert!(matches!(
            read(&reader, "g1", &write_only).await,
            Err(ReadError::InsufficientScope)
        ));
        // Not found comes before the scope, and a reservation is not an instance yet.
        for guid in ["nope", "g2"] {
            assert!(matches!(
                read(&reader, guid, &write_only).await,
                Err(ReadError::NotFound { guid: g }) if g == guid
            ));
        }
    }

    #[tokio::test]
    async fn a_hidden_space_hides_its_instances_from_reads_and_lists() {
        let store = store_with("g1", "g2").await;
        let authorizer = Arc::new(FakeAuthorizer::default());
        let reader = Reader::new(store, authorizer.clone());
        let user = identity(&["cloud_controller.read"]);
        let auditor = identity(&["cloud_controller.global_auditor", "cloud_controller.read"]);
        let query = InstanceQuery {
            conditions: vec![],
            descending: false,
            offset: 0,
            limit: 50,
        };
        let list = |caller| ListInstances {
            query: &query,
            caller,
            scope: Scope::Read,
            request_id: "rid",
        };
        let rt = test_runtime();
        assert_eq!(reader.list(&rt, list(&user)).await.unwrap().total, 1);
        authorizer.hide("S");
        let err = read(&reader, "g1", &user).await.unwrap_err();
        assert!(
            matches!(err, ReadError::Hidden { ref guid } if guid == "g1"),
            "{err:?}"
        );
        assert_eq!(err.authorization(), Some(Verdict::Denied));
        let page = reader.list(&rt, list(&user)).await.unwrap();
        assert_eq!((page.total, page.instances.len()), (0, 0));
        // A global auditor sees everything without asking.
        let asked = authorizer.asked();
        read(&reader, "g1", &auditor).await.unwrap();
        assert_eq!(reader.list(&rt, list(&auditor)).await.unwrap().total, 1);
        assert_eq!(authorizer.asked(), asked);
        authorizer.go_down();
        let err = read(&reader, "g1", &user).await.unwrap_err();
        assert!(
            matches!(err, ReadError::AuthorizationUnavailable(_)),
            "{err:?}"
        );
        let err = reader.list(&rt, list(&user)).await.unwrap_err();
        assert!(
            matches!(err, ReadError::AuthorizationUnavailable(_)),
            "{err:?}"
        );
    }
}
