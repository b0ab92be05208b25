//! Binding and unbinding: a v1 handle made for an app (a service binding) or for nobody (a
//! service key), and removed again. As for instances, the store holds the row before the
//! broker is called — a handle reservation for a bind, a deleting handle for an unbind — so a
//! racing delete, bind or unbind of the same instance or handle is refused rather than sent,
//! and nothing is removed from the store unless the broker confirmed it.
//!
//! A bind whose commit fails is unbound at the broker (orphan mitigation); a crash before the
//! commit leaves a handle reservation that the next start reports (`service::recovery`).

use std::sync::Arc;

use serde_json::value::RawValue;

use super::authorize::{check_writer, Authorizer, AuthzContext, Refusal, Undecided, Verdict};
use super::broker::{BindOrder, BrokerError, BrokerPort, UnbindOrder};
use super::delete::binding_options;
use super::lease::LeasePolicy;
use super::provision::{Outcome, Trace};
use crate::auth::{Identity, Scope};
use crate::config::{Plan, Runtime};
use crate::metrics::Metrics;
use crate::store::{
    HandleGrant, HandleKind, HandleRecord, HandleReservation, HandleState, Holder, InstanceRecord,
    Provisioned, State, Store, StoreError,
};

/// `POST /v2/service_bindings` or `POST /v2/service_keys`, as a command.
#[derive(Debug)]
pub struct Bind<'a> {
    pub instance_guid: &'a str,
    pub holder: Holder,
    /// The request's `parameters` (a JSON object), verbatim: v1's `binding_options`.
    pub parameters: Option<Box<RawValue>>,
    pub caller: &'a Identity,
    /// The scope the route needs.
    pub scope: Scope,
    /// Sent to the broker as `X-VCAP-Request-ID`.
    pub request_id: &'a str,
    /// Unix seconds.
    pub now: i64,
}

/// `DELETE /v2/service_bindings/:guid` or `DELETE /v2/service_keys/:guid`, as a command.
#[derive(Debug, Clone, Copy)]
pub struct Unbind<'a> {
    pub guid: &'a str,
    pub kind: HandleKind,
    pub caller: &'a Identity,
    /// The scope the route needs.
    pub scope: Scope,
    pub request_id: &'a str,
    /// Unix seconds.
    pub now: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Not an instance brokergate holds (the edge may pass the request through).
    #[error("no instance {guid}")]
    InstanceNotFound { guid: String },
    /// Not a binding or key (of the kind asked for) brokergate holds.
    #[error("no {} {guid}", kind.as_str())]
    HandleNotFound { kind: HandleKind, guid: String },
    #[error("token lacks cloud_controller.write")]
    InsufficientScope,
    /// The instance is in a space the caller may not see: answered as not found.
    #[error("instance {guid} is in a space the caller may not see")]
    InstanceHidden { guid: String },
    /// The binding's or key's instance is in a space the caller may not see.
    #[error("{} {guid} is in a space the caller may not see", kind.as_str())]
    HandleHidden { kind: HandleKind, guid: String },
    /// The caller sees the instance but may not change it.
    #[error("not authorized")]
    NotAuthorized,
    #[error("{0}")]
    AuthorizationUnavailable(Undecided),
    /// A delete holds the instance, or an unbind the handle.
    #[error("an operation is in progress on instance {instance_guid}")]
    InProgress { instance_guid: String },
    #[error("the app is bound to the instance already")]
    AppBound,
    #[error("the service key name is taken: {name}")]
    KeyNameTaken { name: String },
    /// The key's model validation (its name present, at most [`MAX_KEY_NAME_CHARS`]).
    #[error("the service key is invalid: {detail}")]
    KeyInvalid { detail: &'static str },
    /// The instance's plan (for a bind) or broker (for an unbind) is no longer configured.
    #[error("{what} is not configured")]
    NotConfigured { what: String },
    #[error("broker: {0}")]
    Broker(BrokerError),
    #[error("{0}")]
    Store(StoreError),
}

/// Longest service key name, in characters (the Cloud Controller's column).
pub const MAX_KEY_NAME_CHARS: usize = 255;

pub struct Binder {
    store: Arc<dyn Store>,
    brokers: Arc<dyn BrokerPort>,
    authorizer: Arc<dyn Authorizer>,
    metrics: Arc<Metrics>,
    /// Whose leases this process takes, and for how long.
    leases: LeasePolicy,
}

impl Binder {
    pub fn new(
        store: Arc<dyn Store>,
        brokers: Arc<dyn BrokerPort>,
        authorizer: Arc<dyn Authorizer>,
        metrics: Arc<Metrics>,
        leases: impl Into<LeasePolicy>,
    ) -> Self {
        Binder {
            store,
            brokers,
            authorizer,
            metrics,
            leases: leases.into(),
        }
    }

    /// The handle as committed.
    pub async fn bind(&self, rt: &Runtime, cmd: Bind<'_>) -> Outcome<HandleRecord, BindError> {
        let mut trace = Trace::default();
        let result = self.run_bind(rt, cmd, &mut trace).await;
        Outcome { result, trace }
    }

    async fn run_bind(
        &self,
        rt: &Runtime,
        cmd: Bind<'_>,
        trace: &mut Trace,
    ) -> Result<HandleRecord, BindError> {
        let instance = self.instance(cmd.instance_guid).await?;
        let State::Created(provisioned) = &instance.state else {
            return Err(BindError::InProgress {
                instance_guid: cmd.instance_guid.to_string(),
            });
        };
        if !cmd.caller.allows(cmd.scope) {
            return Err(BindError::InsufficientScope);
        }
        let cx = AuthzContext {
            rt,
            caller: cmd.caller,
            request_id: cmd.request_id,
        };
        self.check_writer(&cx, &instance, trace, || BindError::InstanceHidden {
            guid: cmd.instance_guid.to_string(),
        })
        .await?;
        if let Holder::Key { name } = &cmd.holder {
            if name.is_empty() {
                return Err(BindError::KeyInvalid {
                    detail: "name presence",
                });
            }
            if name.chars().count() > MAX_KEY_NAME_CHARS {
                return Err(BindError::KeyInvalid {
                    detail: "name max_length",
                });
            }
        }
        let plan = plan_of(rt, &instance)?;
        trace.broker = Some(plan.broker.name.clone());

        let binding_options = cmd
            .parameters
            .unwrap_or_else(|| RawValue::from_string("{}".to_string()).unwrap_or_default());
        let reservation = HandleReservation {
            guid: uuid::Uuid::now_v7().to_string(),
            instance_guid: cmd.instance_guid.to_string(),
            holder: cmd.holder,
            binding_options: binding_options.get().to_string(),
            creator_user_id: cmd.caller.user_id.clone(),
            created_at: cmd.now,
        };
        // The bind, and the unbind that follows a failed commit.
        let lease = self.leases.for_calls(&plan.broker, cmd.now, 2);
        self.store
            .reserve_handle(&reservation, &lease)
            .await
            .map_err(|e| match e {
                StoreError::AppBound => BindError::AppBound,
                StoreError::KeyNameTaken => BindError::KeyNameTaken {
                    name: match &reservation.holder {
                        Holder::Key { name } => name.clone(),
                        Holder::App { .. } => String::new(),
                    },
                },
                StoreError::InProgress => BindError::InProgress {
                    instance_guid: cmd.instance_guid.to_string(),
                },
                StoreError::NotFound => BindError::InstanceNotFound {
                    guid: cmd.instance_guid.to_string(),
                },
                e => BindError::Store(e),
            })?;

        let label = format!("{}-{}", plan.service.label, plan.service.version);
        // v1 gateways decode `email` as a string: the token's email, else its user id.
        let email = cmd.caller.email.as_deref().unwrap_or(&cmd.caller.user_id);
        let app_id = match &reservation.holder {
            Holder::App { app_guid, .. } => Some(app_guid.as_str()),
            Holder::Key { .. } => None,
        };
        let order = BindOrder {
            broker: &plan.broker,
            service_id: &provisioned.broker_service_id,
            app_id,
            label: &label,
            email,
            binding_options: &binding_options,
            user_id: &cmd.caller.user_id,
        };
        let answer = self.brokers.bind(&order, cmd.request_id).await;
        trace.broker_call = Some(answer.call);
        let handle = match answer.result {
            Ok(handle) => handle,
            Err(e) => {
                self.release(&reservation.guid).await;
                return Err(BindError::Broker(e));
            }
        };
        let grant = HandleGrant {
            handle_id: handle.handle_id,
            configuration: handle.configuration,
            credentials: handle.credentials,
            syslog_drain_url: handle.syslog_drain_url,
        };
        if let Err(e) = self.store.commit_handle(&reservation.guid, &grant).await {
            log::error!(
                "Commit failed after the broker bound; unbinding. handle_guid={} broker={} error={e}",
                reservation.guid,
                plan.broker.name
            );
            self.mitigate_orphan(plan, provisioned, &grant, &binding_options, cmd.request_id)
                .await;
            self.release(&reservation.guid).await;
            return Err(BindError::Store(e));
        }
        let kind = reservation.holder.kind();
        self.metrics
            .handles_created
            .with_label_values(&[&plan.broker.name, kind.as_str()])
            .inc();
        Ok(HandleRecord {
            reservation,
            state: HandleState::Created(grant),
        })
    }

    pub async fn unbind(&self, rt: &Runtime, cmd: Unbind<'_>) -> Outcome<(), BindError> {
        let mut trace = Trace::default();
        let result = self.run_unbind(rt, cmd, &mut trace).await;
        Outcome { result, trace }
    }

    async fn run_unbind(
        &self,
        rt: &Runtime,
        cmd: Unbind<'_>,
        trace: &mut Trace,
    ) -> Result<(), BindError> {
        let not_found = || BindError::HandleNotFound {
            kind: cmd.kind,
            guid: cmd.guid.to_string(),
        };
        let handle = self
            .store
            .get_handle(cmd.guid)
            .await
            .map_err(BindError::Store)?
            .filter(|h| h.reservation.holder.kind() == cmd.kind)
            .ok_or_else(not_found)?;
        let in_progress = || BindError::InProgress {
            instance_guid: handle.reservation.instance_guid.clone(),
        };
        match handle.state {
            HandleState::Reserved(_) => return Err(not_found()),
            HandleState::Deleting(..) => return Err(in_progress()),
            HandleState::Created(_) => {}
        }
        if !cmd.caller.allows(cmd.scope) {
            return Err(BindError::InsufficientScope);
        }
        let instance = self.instance(&handle.reservation.instance_guid).await?;
        let cx = AuthzContext {
            rt,
            caller: cmd.caller,
            request_id: cmd.request_id,
        };
        self.check_writer(&cx, &instance, trace, || BindError::HandleHidden {
            kind: cmd.kind,
            guid: cmd.guid.to_string(),
        })
        .await?;
        let Some(provisioned) = instance.provisioned() else {
            return Err(not_found());
        };
        let broker_name = &instance.reservation.broker;
        trace.broker = Some(broker_name.clone());
        let broker = rt
            .brokers
            .iter()
            .find(|b| b.name == *broker_name)
            .ok_or_else(|| BindError::NotConfigured {
                what: format!("broker {broker_name}"),
            })?;
        let lease = self.leases.for_calls(broker, cmd.now, 1);
        self.store
            .begin_unbind(cmd.guid, &lease)
            .await
            .map_err(|e| match e {
                StoreError::InProgress => in_progress(),
                StoreError::NotFound => not_found(),
                e => BindError::Store(e),
            })?;
        let result = self
            .complete_unbind(broker, provisioned, &handle, cmd.request_id, trace)
            .await;
        if let Err(BindError::Broker(_)) = &result {
            // The broker refused or could not be asked: the handle stays as it was.
            if let Err(e) = self.store.abort_unbind(cmd.guid).await {
                log::error!("Could not restore a handle after a failed unbind; the finisher will retry it. handle_guid={} error={e}", cmd.guid);
            }
        }
        result
    }

    /// Whether the caller may change `instance`'s bindings and keys (see
    /// [`check_writer`]); `hidden` is the error when it may not even see them.
    async fn check_writer(
        &self,
        cx: &AuthzContext<'_>,
        instance: &InstanceRecord,
        trace: &mut Trace,
        hidden: impl FnOnce() -> BindError,
    ) -> Result<(), BindError> {
        let r = &instance.reservation;
        let access = check_writer(
            self.authorizer.as_ref(),
            cx,
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
            Refusal::Hidden => hidden(),
            Refusal::NotAuthorized => BindError::NotAuthorized,
            Refusal::Undecided(u) => BindError::AuthorizationUnavailable(u),
        })
    }

    /// Unbinds `handle` (held deleting by the caller) at `broker` and removes it once the
    /// broker confirmed. Also how the finisher completes an unbind a gone process left.
    pub async fn complete_unbind(
        &self,
        broker: &crate::config::Broker,
        instance: &Provisioned,
        handle: &HandleRecord,
        request_id: &str,
        trace: &mut Trace,
    ) -> Result<(), BindError> {
        let guid = &handle.reservation.guid;
        let Some(grant) = handle.grant() else {
            return Err(BindError::HandleNotFound {
                kind: handle.reservation.holder.kind(),
                guid: guid.clone(),
            });
        };
        let options = binding_options(&handle.reservation.binding_options);
        let order = UnbindOrder {
            broker,
            service_id: &instance.broker_service_id,
            handle_id: &grant.handle_id,
            binding_options: &options,
        };
        let answer = self.brokers.unbind(&order, request_id).await;
        trace.broker_call = Some(answer.call);
        answer.result.map_err(BindError::Broker)?;
        // A store failure here leaves the handle deleting: the finisher removes it later.
        self.store
            .finish_unbind(guid)
            .await
            .map_err(BindError::Store)?;
        self.metrics
            .handles_deleted
            .with_label_values(&[&broker.name, handle.reservation.holder.kind().as_str()])
            .inc();
        Ok(())
    }

    /// The instance a bind or unbind is for: created or deleting, never a reservation.
    async fn instance(&self, guid: &str) -> Result<InstanceRecord, BindError> {
        let not_found = || BindError::InstanceNotFound {
            guid: guid.to_string(),
        };
        let record = self
            .store
            .get(guid)
            .await
            .map_err(BindError::Store)?
            .ok_or_else(not_found)?;
        if matches!(record.state, State::Reserved(_)) {
            return Err(not_found());
        }
        Ok(record)
    }

    async fn release(&self, guid: &str) {
        if let Err(e) = self.store.release_handle(guid).await {
            log::error!("Could not release a handle reservation; the next start removes it. handle_guid={guid} error={e}");
        }
    }

    /// Unbinds a handle the broker made but brokergate cannot keep; a failure is logged with
    /// the broker's ids so an operator can act.
    async fn mitigate_orphan(
        &self,
        plan: &Plan,
        instance: &Provisioned,
        grant: &HandleGrant,
        binding_options: &RawValue,
        request_id: &str,
    ) {
        let broker = &plan.broker.name;
        let order = UnbindOrder {
            broker: &plan.broker,
            service_id: &instance.broker_service_id,
            handle_id: &grant.handle_id,
            binding_options,
        };
        let answer = self.brokers.unbind(&order, request_id).await;
        let result = match answer.result {
            Ok(_) => {
                log::warn!(
                    "Orphan handle mitigated. broker={broker} handle_id={}",
                    grant.handle_id
                );
                "success"
            }
            Err(e) => {
                log::error!(
                    "Orphan handle mitigation failed; the broker may still hold the handle. broker={broker} service_id={} handle_id={} error={e}",
                    instance.broker_service_id,
                    grant.handle_id
                );
                "failure"
            }
        };
        self.metrics
            .orphan_mitigations
            .with_label_values(&[broker, result])
            .inc();
    }
}

/// The configured plan of an instance: a bind needs its offering's label and version.
fn plan_of<'rt>(rt: &'rt Runtime, instance: &InstanceRecord) -> Result<&'rt Plan, BindError> {
    let guid = &instance.reservation.service_plan_guid;
    rt.plan(guid).ok_or_else(|| BindError::NotConfigured {
        what: format!("plan {guid}"),
    })
}
