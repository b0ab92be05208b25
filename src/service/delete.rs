//! Deleting an instance, as the Cloud Controller's `delete`: find it, check the scope, refuse
//! one with bindings or keys unless `recursive`, then — with the instance and its handles held
//! as deleting in the store, so no bind, unbind or second delete can reach the broker meanwhile
//! — unbind every handle and deprovision at the broker, removing each row only once the broker
//! confirmed.
//!
//! A broker that refuses puts everything that is left back as it was (the instance stays, with
//! the handles not yet unbound). A store that fails after the broker acted leaves the rows
//! deleting under this process's lease: the finisher (`service::finisher`) completes them —
//! both broker calls are idempotent.

use std::sync::Arc;

use serde_json::value::RawValue;

use super::authorize::{check_writer, Authorizer, AuthzContext, Refusal, Undecided, Verdict};
use super::broker::{BrokerError, BrokerFailure, BrokerPort, Removal, UnbindOrder};
use super::lease::LeasePolicy;
use super::provision::{Outcome, Trace};
use crate::auth::{Identity, Scope};
use crate::config::{Broker, Runtime};
use crate::metrics::Metrics;
use crate::store::{
    HandleField, HandleKind, HandleQuery, HandleRecord, InstanceRecord, ListQuery, State, Store,
    StoreError,
};

/// `DELETE /v2/service_instances/:guid[?recursive=true]`, as a command.
#[derive(Debug, Clone, Copy)]
pub struct DeleteInstance<'a> {
    pub guid: &'a str,
    /// Unbind and delete the instance's bindings and keys first.
    pub recursive: bool,
    pub caller: &'a Identity,
    /// The scope the route needs.
    pub scope: Scope,
    /// Sent to the broker as `X-VCAP-Request-ID`.
    pub request_id: &'a str,
    /// Unix seconds.
    pub now: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// Not an instance brokergate holds (the edge may pass the request through).
    #[error("no instance {guid}")]
    NotFound { guid: String },
    #[error("token lacks cloud_controller.write")]
    InsufficientScope,
    /// In a space the caller may not see: answered as not found, not passed on.
    #[error("instance {guid} is in a space the caller may not see")]
    Hidden { guid: String },
    /// The caller sees the instance but may not delete it.
    #[error("not authorized")]
    NotAuthorized,
    #[error("{0}")]
    AuthorizationUnavailable(Undecided),
    #[error("the instance has bindings or service keys")]
    NotEmpty,
    /// Another delete, a bind or an unbind holds the instance.
    #[error("an operation is in progress on {guid}")]
    InProgress { guid: String },
    /// The instance's broker is no longer in the configuration.
    #[error("broker {broker} is not configured")]
    BrokerNotConfigured { broker: String },
    /// The broker answered the deprovision with an error: the instance stays.
    #[error("deprovision refused: {0}")]
    Refused(BrokerError),
    /// No usable answer to the deprovision, or an unbind of a recursive delete failed.
    #[error("broker: {0}")]
    Broker(BrokerError),
    #[error("{0}")]
    Store(StoreError),
}

/// Most handles one page of a recursive delete's listing holds.
const HANDLE_PAGE: u32 = 100;

pub struct Deleter {
    store: Arc<dyn Store>,
    brokers: Arc<dyn BrokerPort>,
    authorizer: Arc<dyn Authorizer>,
    metrics: Arc<Metrics>,
    /// Whose leases this process takes, and for how long.
    leases: LeasePolicy,
}

impl Deleter {
    pub fn new(
        store: Arc<dyn Store>,
        brokers: Arc<dyn BrokerPort>,
        authorizer: Arc<dyn Authorizer>,
        metrics: Arc<Metrics>,
        leases: impl Into<LeasePolicy>,
    ) -> Self {
        Deleter {
            store,
            brokers,
            authorizer,
            metrics,
            leases: leases.into(),
        }
    }

    pub async fn delete(&self, rt: &Runtime, cmd: DeleteInstance<'_>) -> Outcome<(), DeleteError> {
        let mut trace = Trace::default();
        let result = self.run(rt, cmd, &mut trace).await;
        Outcome { result, trace }
    }

    async fn run(
        &self,
        rt: &Runtime,
        cmd: DeleteInstance<'_>,
        trace: &mut Trace,
    ) -> Result<(), DeleteError> {
        let not_found = || DeleteError::NotFound {
            guid: cmd.guid.to_string(),
        };
        let in_progress = || DeleteError::InProgress {
            guid: cmd.guid.to_string(),
        };
        let record = self
            .store
            .get(cmd.guid)
            .await
            .map_err(DeleteError::Store)?
            .ok_or_else(not_found)?;
        match record.state {
            State::Reserved(_) => return Err(not_found()),
            State::Deleting(..) => return Err(in_progress()),
            State::Created(_) => {}
        }
        if !cmd.caller.allows(cmd.scope) {
            return Err(DeleteError::InsufficientScope);
        }
        let cx = AuthzContext {
            rt,
            caller: cmd.caller,
            request_id: cmd.request_id,
        };
        let r = &record.reservation;
        let access = check_writer(
            self.authorizer.as_ref(),
            &cx,
            &r.space_guid,
            r.organization_guid.as_deref(),
        )
        .await;
        trace.authorization = Some(
            access
                .as_ref()
                .map_or_else(Refusal::verdict, |()| Verdict::Allowed),
        );
        access.map_err(|refusal| match refusal {
            Refusal::Hidden => DeleteError::Hidden {
                guid: cmd.guid.to_string(),
            },
            Refusal::NotAuthorized => DeleteError::NotAuthorized,
            Refusal::Undecided(u) => DeleteError::AuthorizationUnavailable(u),
        })?;
        let broker_name = &record.reservation.broker;
        trace.broker = Some(broker_name.clone());
        let broker = rt
            .brokers
            .iter()
            .find(|b| b.name == *broker_name)
            .ok_or_else(|| DeleteError::BrokerNotConfigured {
                broker: broker_name.clone(),
            })?;

        // The lease covers every unbind and the deprovision.
        let handle_count = if cmd.recursive {
            self.handle_count(cmd.guid).await?
        } else {
            0
        };
        let lease = self.leases.for_calls(broker, cmd.now, handle_count + 1);
        self.store
            .begin_delete(cmd.guid, &lease, cmd.recursive)
            .await
            .map_err(|e| match e {
                StoreError::NotEmpty => DeleteError::NotEmpty,
                StoreError::InProgress => in_progress(),
                StoreError::NotFound => not_found(),
                e => DeleteError::Store(e),
            })?;
        let handles = match self.handles_of(cmd.guid).await {
            Ok(handles) => handles,
            Err(e) => {
                self.abort(cmd.guid).await;
                return Err(DeleteError::Store(e));
            }
        };
        self.complete(broker, &record, &handles, cmd.request_id, trace)
            .await
    }

    /// Unbinds `handles` and deprovisions `instance` (held deleting by the caller) at `broker`,
    /// removing each row once the broker confirmed. Also how the finisher completes a delete a
    /// gone process left half done.
    pub async fn complete(
        &self,
        broker: &Broker,
        instance: &InstanceRecord,
        handles: &[HandleRecord],
        request_id: &str,
        trace: &mut Trace,
    ) -> Result<(), DeleteError> {
        let guid = &instance.reservation.guid;
        let Some(provisioned) = instance.provisioned() else {
            return Err(DeleteError::NotFound { guid: guid.clone() });
        };
        let service_id = &provisioned.broker_service_id;
        for handle in handles {
            let Some(grant) = handle.grant() else {
                continue;
            };
            let options = binding_options(&handle.reservation.binding_options);
            let order = UnbindOrder {
                broker,
                service_id,
                handle_id: &grant.handle_id,
                binding_options: &options,
            };
            let answer = self.brokers.unbind(&order, request_id).await;
            trace.broker_call = Some(answer.call);
            if let Err(e) = answer.result {
                self.abort(guid).await;
                return Err(DeleteError::Broker(e));
            }
            self.store
                .finish_unbind(&handle.reservation.guid)
                .await
                .map_err(DeleteError::Store)?;
        }
        let answer = self
            .brokers
            .deprovision(broker, service_id, request_id)
            .await;
        trace.broker_call = Some(answer.call);
        match answer.result {
            Ok(removal) => {
                if removal == Removal::AlreadyGone {
                    log::info!("The broker no longer knew the instance; deleted. instance_guid={guid} service_id={service_id}");
                }
                self.store
                    .finish_delete(guid)
                    .await
                    .map_err(DeleteError::Store)?;
                self.metrics
                    .instances_deleted
                    .with_label_values(&[&broker.name])
                    .inc();
                Ok(())
            }
            Err(e) => {
                self.abort(guid).await;
                Err(match e.kind {
                    BrokerFailure::Rejected { .. }
                    | BrokerFailure::BadResponse { .. }
                    | BrokerFailure::Duplicate => DeleteError::Refused(e),
                    _ => DeleteError::Broker(e),
                })
            }
        }
    }

    /// Puts what is left of a refused delete back; a failure leaves it for the finisher.
    async fn abort(&self, guid: &str) {
        if let Err(e) = self.store.abort_delete(guid).await {
            log::error!("Could not restore an instance after a failed delete; the finisher will retry it. instance_guid={guid} error={e}");
        }
    }

    async fn handle_count(&self, instance_guid: &str) -> Result<u64, DeleteError> {
        let mut total = 0;
        for kind in [HandleKind::Binding, HandleKind::Key] {
            let listed = self
                .store
                .list_handles(&handles_query(kind, instance_guid, 0, 1))
                .await
                .map_err(DeleteError::Store)?;
            total += listed.total;
        }
        Ok(total)
    }

    /// Every binding and key of an instance, a page at a time.
    async fn handles_of(&self, instance_guid: &str) -> Result<Vec<HandleRecord>, StoreError> {
        let mut all = Vec::new();
        for kind in [HandleKind::Binding, HandleKind::Key] {
            let mut offset = 0;
            loop {
                let query = handles_query(kind, instance_guid, offset, HANDLE_PAGE);
                let page = self.store.list_handles(&query).await?;
                let fetched = page.items.len() as u64;
                all.extend(page.items);
                offset += fetched;
                if fetched == 0 || offset >= page.total {
                    break;
                }
            }
        }
        Ok(all)
    }
}

fn handles_query(kind: HandleKind, instance_guid: &str, offset: u64, limit: u32) -> HandleQuery {
    HandleQuery {
        kind,
        list: ListQuery {
            conditions: vec![(HandleField::InstanceGuid, vec![instance_guid.to_string()])],
            descending: false,
            offset,
            limit,
        },
    }
}

/// A handle's stored `binding_options` as raw JSON; the store only holds what a bind accepted
/// as JSON, so the fallback `{}` is for a row written by hand.
pub fn binding_options(stored: &str) -> Box<RawValue> {
    RawValue::from_string(stored.to_string())
        .or_else(|_| RawValue::from_string("{}".to_string()))
        .unwrap_or_default()
}
