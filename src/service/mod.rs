//! The use cases, free of HTTP framing: they take a parsed request, the caller and a config
//! snapshot, talk to two ports ([`BrokerPort`], [`crate::store::Store`]) and return a record
//! or a typed error that the edge renders.

mod provision;
pub mod recovery;

pub use provision::{ProvisionError, Provisioner};

use async_trait::async_trait;

use crate::config::Broker;
use crate::v1::{BrokerCall, BrokerError, ProvisionRequest, ProvisionResponse, V1Client};

/// The v1 broker calls a use case makes.
#[async_trait]
pub trait BrokerPort: Send + Sync {
    async fn provision(
        &self,
        broker: &Broker,
        request_id: &str,
        request: &ProvisionRequest<'_>,
        originating_identity: Option<&str>,
    ) -> (Result<ProvisionResponse, BrokerError>, BrokerCall);

    async fn deprovision(
        &self,
        broker: &Broker,
        request_id: &str,
        service_id: &str,
    ) -> Result<(), BrokerError>;
}

#[async_trait]
impl BrokerPort for V1Client {
    async fn provision(
        &self,
        broker: &Broker,
        request_id: &str,
        request: &ProvisionRequest<'_>,
        originating_identity: Option<&str>,
    ) -> (Result<ProvisionResponse, BrokerError>, BrokerCall) {
        V1Client::provision(self, broker, request_id, request, originating_identity).await
    }

    async fn deprovision(
        &self,
        broker: &Broker,
        request_id: &str,
        service_id: &str,
    ) -> Result<(), BrokerError> {
        V1Client::deprovision(self, broker, request_id, service_id).await
    }
}
