//! Provisioning a v1-backed instance, in the Cloud Controller's order of checks (reference
//! §1.3), after the edge has authenticated the caller (0), decoded the body (1) and checked
//! `accepts_incomplete` (2):
//!
//! 3. the plan is one brokergate serves;
//! 4. the space exists for the caller (the authorizer's answer);
//! 5. the token has the route's scope; then, unless the caller is an admin, the
//!    `service_instance_creation` feature flag is on, the organization is not suspended, and
//!    the caller is a space developer; then the plan is visible to the organization (admins
//!    too);
//! 6. the model validations: name, tags, and the name's uniqueness in the space — held by a
//!    reservation before any broker call, so two creates of one name make one broker call;
//! 8. the broker provisions;
//! 9. the answer is committed; if that fails, the broker's instance is deprovisioned (orphan
//!    mitigation) and the commit's error is the answer.
//!
//! Nothing half-done is left: every failure after the reservation releases it.

use std::sync::Arc;

use serde_json::value::RawValue;

use super::authorize::{Authorizer, AuthzContext, FeatureFlag, Undecided, Verdict};
use super::broker::{BrokerCall, BrokerError, BrokerFailure, BrokerPort, ProvisionOrder};
use super::lease::LeasePolicy;
use super::rules::{self, RuleViolation};
use crate::auth::{Identity, Scope};
use crate::config::{Plan, Runtime};
use crate::metrics::Metrics;
use crate::store::{CreatedInstance, Operation, Provisioned, Reservation, Store, StoreError};

/// `POST /v2/service_instances`, as a command.
#[derive(Debug)]
pub struct Provision<'a> {
    pub name: String,
    pub space_guid: String,
    pub service_plan_guid: String,
    pub tags: Vec<String>,
    /// A JSON object, verbatim.
    pub parameters: Option<Box<RawValue>>,
    /// Any JSON, verbatim: v1's `plan_option`.
    pub gateway_data: Option<Box<RawValue>>,
    pub caller: &'a Identity,
    /// The scope the route needs.
    pub scope: Scope,
    /// Sent to the broker as `X-VCAP-Request-ID`.
    pub request_id: &'a str,
    /// Unix seconds: the instance's `created_at`.
    pub now: i64,
}

/// What a use case did, whatever its result, for the access log and metrics.
#[derive(Debug)]
pub struct Outcome<T, E> {
    pub result: Result<T, E>,
    pub trace: Trace,
}

/// Which broker a use case chose and the call it made.
#[derive(Debug, Default, Clone)]
pub struct Trace {
    /// The plan's broker, once the plan was known.
    pub broker: Option<String>,
    /// The broker call that decided the result, when one was made.
    pub broker_call: Option<BrokerCall>,
    /// What the authorization came to, once it was asked.
    pub authorization: Option<Verdict>,
}

/// Why provisioning did not happen, in the use case's terms; the edge renders each as a Cloud
/// Controller error.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// Not a plan brokergate serves (the edge may pass the request through).
    #[error("not a plan brokergate serves")]
    UnknownPlan,
    /// brokergate's, but it (or its offering) is inactive.
    #[error("the plan is inactive")]
    InactivePlan,
    #[error("not a configured space")]
    UnknownSpace,
    #[error("token lacks cloud_controller.write")]
    InsufficientScope,
    /// `service_instance_creation` is off (for a caller who is not an admin).
    #[error("feature disabled: service_instance_creation")]
    FeatureDisabled { custom_message: Option<String> },
    /// Not a space developer, or the organization is suspended.
    #[error("not authorized")]
    NotAuthorized,
    #[error("{0}")]
    AuthorizationUnavailable(Undecided),
    /// `public = false` and the space's organization is not among the plan's.
    #[error("the plan is not visible to the space's organization")]
    PlanNotVisible,
    #[error("the name is empty")]
    NameEmpty,
    #[error("the name is longer than {limit} characters")]
    NameTooLong { limit: usize },
    #[error("the tags are longer than {limit} characters combined")]
    TagsTooLong { name: String, limit: usize },
    #[error("name taken")]
    NameTaken { name: String },
    #[error("broker: {0}")]
    Broker(BrokerError),
    #[error("{0}")]
    Store(StoreError),
}

pub struct Provisioner {
    store: Arc<dyn Store>,
    brokers: Arc<dyn BrokerPort>,
    authorizer: Arc<dyn Authorizer>,
    metrics: Arc<Metrics>,
    /// Whose reservations this process takes, and for how long.
    leases: LeasePolicy,
}

impl Provisioner {
    pub fn new(
        store: Arc<dyn Store>,
        brokers: Arc<dyn BrokerPort>,
        authorizer: Arc<dyn Authorizer>,
        metrics: Arc<Metrics>,
        leases: impl Into<LeasePolicy>,
    ) -> Self {
        Provisioner {
            store,
            brokers,
            authorizer,
            metrics,
            leases: leases.into(),
        }
    }

    /// Runs the command against the configuration `rt`.
    pub async fn provision(
        &self,
        rt: &Runtime,
        cmd: Provision<'_>,
    ) -> Outcome<CreatedInstance, ProvisionError> {
        let mut trace = Trace::default();
        let result = self.run(rt, cmd, &mut trace).await;
        Outcome { result, trace }
    }

    async fn run(
        &self,
        rt: &Runtime,
        cmd: Provision<'_>,
        trace: &mut Trace,
    ) -> Result<CreatedInstance, ProvisionError> {
        // 3. The plan.
        let plan = rt
            .plan(&cmd.service_plan_guid)
            .ok_or(ProvisionError::UnknownPlan)?;
        trace.broker = Some(plan.broker.name.clone());
        // An inactive plan or offering is brokergate's but takes no new instances (the Cloud
        // Controller's `ServicePlan` lookup filters on `active`).
        if !plan.active || !plan.service.listing.active {
            return Err(ProvisionError::InactivePlan);
        }
        // 4. The space, as the caller sees it.
        let cx = AuthzContext {
            rt,
            caller: cmd.caller,
            request_id: cmd.request_id,
        };
        let unavailable = |u| ProvisionError::AuthorizationUnavailable(u);
        let space = self.authorizer.space(&cx, &cmd.space_guid).await;
        trace.authorization = Some(verdict_of(&space.as_ref().map(Option::is_some)));
        let organization_guid = space
            .map_err(unavailable)?
            .ok_or(ProvisionError::UnknownSpace)?
            .organization_guid;
        // 5. Access: the scope, then the Cloud Controller's `ServiceInstanceAccess#create?`.
        if !cmd.caller.allows(cmd.scope) {
            return Err(ProvisionError::InsufficientScope);
        }
        let access = self
            .check_access(&cx, &cmd.space_guid, organization_guid.as_deref())
            .await;
        trace.authorization = Some(match &access {
            Ok(()) => Verdict::Allowed,
            Err(ProvisionError::AuthorizationUnavailable(_)) => Verdict::Unavailable,
            Err(_) => Verdict::Denied,
        });
        access?;
        // Plan visibility, for admins too (the Cloud Controller's `organization_visible`).
        if !plan.visibility.admits(organization_guid.as_deref()) {
            trace.authorization = Some(Verdict::Denied);
            return Err(ProvisionError::PlanNotVisible);
        }
        // 6. Validations, uniqueness last: it is the reservation.
        rules::check_name_and_tags(&cmd.name, &cmd.tags).map_err(|v| match v {
            RuleViolation::NameEmpty => ProvisionError::NameEmpty,
            RuleViolation::NameTooLong { limit } => ProvisionError::NameTooLong { limit },
            RuleViolation::TagsTooLong { limit } => ProvisionError::TagsTooLong {
                name: cmd.name.clone(),
                limit,
            },
        })?;
        let reservation = Reservation {
            // Time-ordered (v7): new rows land at the right edge of the store's index instead
            // of dirtying a random page each. Clients treat the guid as opaque.
            guid: uuid::Uuid::now_v7().to_string(),
            name: cmd.name.clone(),
            space_guid: cmd.space_guid.clone(),
            organization_guid,
            service_plan_guid: plan.guid.clone(),
            broker: plan.broker.name.clone(),
            tags: cmd.tags.clone(),
            creator_user_id: cmd.caller.user_id.clone(),
            creator_email: cmd.caller.email.clone(),
            created_at: cmd.now,
        };
        // Held across the broker call and, when the commit fails, the deprovision after it.
        let lease = self.leases.for_calls(&plan.broker, cmd.now, 2);
        self.store
            .reserve(&reservation, &lease)
            .await
            .map_err(|e| match e {
                StoreError::NameTaken => ProvisionError::NameTaken {
                    name: cmd.name.clone(),
                },
                other => ProvisionError::Store(other),
            })?;

        // 8. The broker call.
        let order = ProvisionOrder {
            plan,
            space_guid: &reservation.space_guid,
            organization_guid: reservation.organization_guid.as_deref(),
            name: &reservation.name,
            email: cmd.caller.email.as_deref(),
            user_id: &cmd.caller.user_id,
            gateway_data: cmd.gateway_data.as_deref(),
            parameters: cmd.parameters.as_deref(),
        };
        let answer = self.brokers.provision(&order, cmd.request_id).await;
        trace.broker_call = Some(answer.call);
        let instance = match answer.result {
            Ok(instance) => instance,
            Err(err) => {
                self.release(&reservation.guid).await;
                if let BrokerFailure::Malformed {
                    service_id: Some(service_id),
                    ..
                } = &err.kind
                {
                    // The broker named an instance in an answer we cannot use: remove it.
                    self.mitigate_orphan(plan, cmd.request_id, service_id).await;
                }
                return Err(ProvisionError::Broker(err));
            }
        };

        // 9. Save.
        let provisioned = Provisioned {
            broker_service_id: instance.service_id,
            gateway_data: instance.configuration,
            credentials: instance.credentials,
            dashboard_url: instance.dashboard_url,
        };
        if let Err(e) = self.store.commit(&reservation.guid, &provisioned).await {
            log::error!(
                "Commit failed after the broker provisioned; deprovisioning. instance_guid={} broker={} error={e}",
                reservation.guid,
                plan.broker.name
            );
            self.mitigate_orphan(plan, cmd.request_id, &provisioned.broker_service_id)
                .await;
            self.release(&reservation.guid).await;
            return Err(ProvisionError::Store(e));
        }
        self.metrics
            .instances_created
            .with_label_values(&[&plan.broker.name, &plan.guid])
            .inc();
        Ok(CreatedInstance {
            reservation,
            provisioned,
            last_operation: Operation::Create,
            deleting: false,
            updated_at: None,
        })
    }

    /// An admin may; anyone else needs the feature flag on, an organization that is not
    /// suspended, and the space developer role — asked in that order, each only if the one
    /// before allowed.
    async fn check_access(
        &self,
        cx: &AuthzContext<'_>,
        space_guid: &str,
        organization_guid: Option<&str>,
    ) -> Result<(), ProvisionError> {
        if cx.caller.is_admin() {
            return Ok(());
        }
        let unavailable = ProvisionError::AuthorizationUnavailable;
        if let FeatureFlag::Disabled { custom_message } = self
            .authorizer
            .instance_creation(cx)
            .await
            .map_err(unavailable)?
        {
            return Err(ProvisionError::FeatureDisabled { custom_message });
        }
        if let Some(org) = organization_guid {
            if self
                .authorizer
                .organization_suspended(cx, org)
                .await
                .map_err(unavailable)?
            {
                return Err(ProvisionError::NotAuthorized);
            }
        }
        if !self
            .authorizer
            .is_space_developer(cx, space_guid)
            .await
            .map_err(unavailable)?
        {
            return Err(ProvisionError::NotAuthorized);
        }
        Ok(())
    }

    async fn release(&self, guid: &str) {
        if let Err(e) = self.store.release(guid).await {
            log::error!("Could not release a reservation; the name stays taken until restart. instance_guid={guid} error={e}");
        }
    }

    /// Deprovisions an instance the broker created but brokergate cannot keep, and counts the
    /// result; a failure is logged with the broker's id so an operator can act.
    async fn mitigate_orphan(&self, plan: &Plan, request_id: &str, service_id: &str) {
        let broker = &plan.broker.name;
        let answer = self
            .brokers
            .deprovision(&plan.broker, service_id, request_id)
            .await;
        let result = match answer.result {
            // A broker that no longer knows the instance holds no orphan either.
            Ok(_) => {
                log::warn!("Orphan mitigated. broker={broker} service_id={service_id}");
                "success"
            }
            Err(e) => {
                log::error!(
                    "Orphan mitigation failed; the broker may still hold the instance. broker={broker} service_id={service_id} error={e}"
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

/// A yes-or-no answer, or none, as the access log shows it.
fn verdict_of(answer: &Result<bool, &Undecided>) -> Verdict {
    match answer {
        Ok(true) => Verdict::Allowed,
        Ok(false) => Verdict::Denied,
        Err(_) => Verdict::Unavailable,
    }
}

#[cfg(test)]
mod tests;
