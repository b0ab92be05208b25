//! Reading one instance, as the Cloud Controller's `find_guid_and_validate_access(:read)`:
//! find it (an unknown guid is not found — the edge may pass it upstream), then check the
//! token's scope, then decide what the caller may see of its secrets.

use std::sync::Arc;

use crate::auth::{Identity, Scope};
use crate::store::{
    CreatedInstance, HandleKind, HandleQuery, HandleRecord, InstanceQuery, Listed, State, Store,
    StoreError,
};

/// `GET /v2/service_instances/:guid`, as a command.
#[derive(Debug, Clone, Copy)]
pub struct ReadInstance<'a> {
    pub guid: &'a str,
    pub caller: &'a Identity,
    /// The scope the route needs.
    pub scope: Scope,
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
    #[error("{0}")]
    Store(StoreError),
}

/// `GET /v2/service_instances`, as a command.
#[derive(Debug, Clone, Copy)]
pub struct ListInstances<'a> {
    pub query: &'a InstanceQuery,
    pub caller: &'a Identity,
    /// The scope the route needs.
    pub scope: Scope,
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
}

impl Reader {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Reader { store }
    }

    pub async fn read(&self, cmd: ReadInstance<'_>) -> Result<VisibleInstance, ReadError> {
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
        Ok(VisibleInstance {
            instance,
            secrets_visible: cmd.caller.allows(Scope::Write),
        })
    }
}

impl Reader {
    /// The scope first (a list has nothing to find), then one page from the store: the
    /// instances brokergate holds, created or being deleted.
    pub async fn list(&self, cmd: ListInstances<'_>) -> Result<VisiblePage, ReadError> {
        if !cmd.caller.allows(cmd.scope) {
            return Err(ReadError::InsufficientScope);
        }
        let Listed { total, items } = self.store.list(cmd.query).await.map_err(ReadError::Store)?;
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
    /// Found (a handle still being bound is not), then the scope, as for an instance.
    pub async fn read_handle(&self, cmd: ReadHandle<'_>) -> Result<VisibleHandle, ReadError> {
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
        Ok(VisibleHandle {
            handle,
            secrets_visible: cmd.caller.allows(Scope::Write),
        })
    }

    /// For one instance's handles, the instance is found first (not found: not ours); then the
    /// scope, then one page.
    pub async fn list_handles(&self, cmd: ListHandles<'_>) -> Result<VisibleHandles, ReadError> {
        if let Some(guid) = cmd.instance_guid {
            let found = self.store.get(guid).await.map_err(ReadError::Store)?;
            if found.is_none_or(|r| matches!(r.state, State::Reserved(_))) {
                return Err(ReadError::NotFound {
                    guid: guid.to_string(),
                });
            }
        }
        if !cmd.caller.allows(cmd.scope) {
            return Err(ReadError::InsufficientScope);
        }
        let Listed { total, items } = self
            .store
            .list_handles(cmd.query)
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
    use crate::store::{Lease, MemoryStore, Provisioned, Reservation};
    use serde_json::value::RawValue;

    fn identity(scopes: &[&str]) -> Identity {
        Identity {
            user_id: "u".into(),
            email: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
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
        };
        reader.read(cmd).await
    }

    #[tokio::test]
    async fn found_then_scope_then_secrets() {
        let reader = Reader::new(store_with("g1", "g2").await);
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
}
