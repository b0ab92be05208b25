//! Provisioning, in the Cloud Controller's check order after the body is decoded: plan,
//! space, scope, name rules; then reserve the name, call the broker, commit. A broker success
//! that cannot be committed is deprovisioned, so nothing is left half-done.

use std::sync::Arc;

use base64::Engine;

use super::BrokerPort;
use crate::auth::Identity;
use crate::cc::request::{validate_name_and_tags, CreateServiceInstance};
use crate::cc::ApiError;
use crate::config::{Broker, Plan, Runtime};
use crate::metrics::Metrics;
use crate::store::{CreatedInstance, Lease, Provisioned, Reservation, Store, StoreError};
use crate::v1::{BrokerCall, BrokerError, BrokerFailure, ProvisionRequest};

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// Not a plan brokergate serves (the edge may pass the request through).
    #[error("not a plan brokergate serves")]
    UnknownPlan,
    #[error("not a configured space")]
    UnknownSpace,
    #[error("token lacks cloud_controller.write")]
    InsufficientScope,
    /// A Cloud Controller validation failure (name rules).
    #[error("{}", .0.description)]
    Invalid(ApiError),
    #[error("name taken")]
    NameTaken(String),
    #[error("broker: {0}")]
    Broker(BrokerError),
    #[error("{0}")]
    Store(StoreError),
}

/// What a reservation's lease adds to the broker call and the deprovision that may follow a
/// failed commit: store latency and clock skew between replicas.
const LEASE_MARGIN_SECONDS: i64 = 30;

pub struct Provisioner {
    store: Arc<dyn Store>,
    brokers: Arc<dyn BrokerPort>,
    metrics: Arc<Metrics>,
    /// Holder of this process's reservations (`[store] owner`).
    owner: String,
}

impl Provisioner {
    pub fn new(
        store: Arc<dyn Store>,
        brokers: Arc<dyn BrokerPort>,
        metrics: Arc<Metrics>,
        owner: String,
    ) -> Self {
        Provisioner {
            store,
            brokers,
            metrics,
            owner,
        }
    }

    /// Step 3 of CC's order, on its own so the edge can decide pass-through before anything else.
    pub fn plan<'a>(
        rt: &'a Runtime,
        req: &CreateServiceInstance,
    ) -> Result<&'a Plan, ProvisionError> {
        rt.plan(&req.service_plan_guid)
            .ok_or(ProvisionError::UnknownPlan)
    }

    /// Steps 4 onwards for a known plan. Returns the committed record; `call` receives the
    /// broker call's status and duration when one was made.
    #[allow(clippy::too_many_arguments)]
    pub async fn provision(
        &self,
        rt: &Runtime,
        plan: &Plan,
        identity: &Identity,
        req: CreateServiceInstance,
        request_id: &str,
        now_unix: i64,
        call: &mut Option<BrokerCall>,
    ) -> Result<CreatedInstance, ProvisionError> {
        let organization_guid = match rt.space_organization(&req.space_guid) {
            Some(org) => Some(org.to_string()),
            None if rt.accept_unknown_spaces => None,
            None => return Err(ProvisionError::UnknownSpace),
        };
        if !identity.can_write() {
            return Err(ProvisionError::InsufficientScope);
        }
        validate_name_and_tags(&req).map_err(ProvisionError::Invalid)?;

        let reservation = Reservation {
            // Time-ordered (v7): new rows land at the right edge of the store's index instead of
            // dirtying a random page each. Clients treat the guid as opaque.
            guid: uuid::Uuid::now_v7().to_string(),
            name: req.name.clone(),
            space_guid: req.space_guid.clone(),
            organization_guid,
            service_plan_guid: plan.guid.clone(),
            broker: plan.broker.name.clone(),
            tags: req.tags.clone(),
            creator_user_id: identity.user_id.clone(),
            creator_email: identity.email.clone(),
            created_at: now_unix,
        };
        let lease = lease(&self.owner, &plan.broker, now_unix);
        self.store
            .reserve(&reservation, &lease)
            .await
            .map_err(|e| match e {
                StoreError::NameTaken => ProvisionError::NameTaken(req.name.clone()),
                other => ProvisionError::Store(other),
            })?;

        let v1_request = ProvisionRequest {
            label: format!("{}-{}", plan.label, plan.version),
            email: identity.email.as_deref(),
            plan: &plan.name,
            version: &plan.version,
            provider: plan.provider.as_deref(),
            space_guid: &reservation.space_guid,
            organization_guid: reservation.organization_guid.as_deref(),
            unique_id: &plan.unique_id,
            name: &reservation.name,
            plan_option: req.gateway_data.as_deref(),
            parameters: req.parameters.as_deref(),
        };
        let identity_header = originating_identity(&identity.user_id);
        let (answer, broker_call) = self
            .brokers
            .provision(
                &plan.broker,
                request_id,
                &v1_request,
                Some(&identity_header),
            )
            .await;
        *call = Some(broker_call);
        let answer = match answer {
            Ok(answer) => answer,
            Err(err) => {
                self.release(&reservation.guid).await;
                if let BrokerFailure::Malformed {
                    service_id: Some(service_id),
                    ..
                } = &err.kind
                {
                    // The broker named an instance in an answer we cannot use: remove it.
                    self.mitigate_orphan(plan, request_id, service_id).await;
                }
                return Err(ProvisionError::Broker(err));
            }
        };

        let provisioned = Provisioned {
            broker_service_id: answer.service_id,
            gateway_data: answer.configuration,
            credentials: answer.credentials,
            dashboard_url: answer.dashboard_url,
        };
        if let Err(e) = self.store.commit(&reservation.guid, &provisioned).await {
            log::error!(
                "Commit failed after the broker provisioned; deprovisioning. instance_guid={} broker={} error={e}",
                reservation.guid,
                plan.broker.name
            );
            self.mitigate_orphan(plan, request_id, &provisioned.broker_service_id)
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
        })
    }

    async fn release(&self, guid: &str) {
        if let Err(e) = self.store.release(guid).await {
            log::error!("Could not release a reservation; the name stays taken until restart. instance_guid={guid} error={e}");
        }
    }

    /// Deprovisions an instance the broker created but brokergate cannot keep. Returns whether
    /// the broker confirmed; a failure is logged with the broker's id so an operator can act.
    async fn mitigate_orphan(&self, plan: &Plan, request_id: &str, service_id: &str) -> bool {
        match self
            .brokers
            .deprovision(&plan.broker, request_id, service_id)
            .await
        {
            Ok(()) => {
                log::warn!(
                    "Orphan mitigated. broker={} service_id={service_id}",
                    plan.broker.name
                );
                true
            }
            Err(e) => {
                log::error!(
                    "Orphan mitigation failed; the broker may still hold the instance. broker={} service_id={service_id} error={e}",
                    plan.broker.name
                );
                false
            }
        }
    }
}

/// A reservation is held across the broker call and, when the commit fails, the deprovision
/// that follows; each lasts at most the broker's timeout.
fn lease(owner: &str, broker: &Broker, now_unix: i64) -> Lease {
    let timeout = i64::try_from(broker.timeout.as_secs()).unwrap_or(i64::MAX);
    Lease {
        owner: owner.to_string(),
        expires_at: now_unix
            .saturating_add(timeout.saturating_mul(2))
            .saturating_add(LEASE_MARGIN_SECONDS),
    }
}

/// `X-Broker-API-Originating-Identity: cloudfoundry <base64 {"user_id": …}>`.
fn originating_identity(user_id: &str) -> String {
    let json = serde_json::json!({ "user_id": user_id }).to_string();
    format!(
        "cloudfoundry {}",
        base64::engine::general_purpose::STANDARD.encode(json)
    )
}

#[cfg(test)]
mod tests;
