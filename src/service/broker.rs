//! The broker port: what the use cases ask of a v1 broker, in their own terms, and what
//! comes back. Its adapter (`crate::v1::V1Client`) turns an order into the v1 wire and the
//! broker's answer into these types; the edge turns a [`BrokerFailure`] into a CC error.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;

use crate::config::{Broker, Plan};

/// An instance to provision: the plan (and so the broker) and everything the Cloud Controller
/// enriched the request with.
#[derive(Debug, Clone, Copy)]
pub struct ProvisionOrder<'a> {
    pub plan: &'a Plan,
    pub space_guid: &'a str,
    pub organization_guid: Option<&'a str>,
    pub name: &'a str,
    /// The caller's `email` claim.
    pub email: Option<&'a str>,
    /// The caller, for the originating-identity header.
    pub user_id: &'a str,
    /// The request's `gateway_data`, verbatim (v1's `plan_option`).
    pub gateway_data: Option<&'a RawValue>,
    /// The request's `parameters`, verbatim.
    pub parameters: Option<&'a RawValue>,
}

/// What a broker provisioned. `configuration` and `credentials` stay raw JSON so they are
/// stored and returned exactly as the broker sent them.
#[derive(Debug)]
pub struct BrokerInstance {
    pub service_id: String,
    pub configuration: Box<RawValue>,
    pub credentials: Box<RawValue>,
    pub dashboard_url: Option<String>,
}

/// A binding (`app_id` set) or a service key (`app_id` `None`) to create at the broker that
/// holds `service_id`: what the v1 bind request carries, and the caller.
#[derive(Debug, Clone, Copy)]
pub struct BindOrder<'a> {
    pub broker: &'a Broker,
    /// The broker's id of the instance.
    pub service_id: &'a str,
    /// The app bound; `None` for a service key.
    pub app_id: Option<&'a str>,
    /// `<label>-<version>`.
    pub label: &'a str,
    /// The caller's `email` claim.
    pub email: &'a str,
    /// The request's `parameters` (v1's `binding_options`), verbatim.
    pub binding_options: &'a RawValue,
    /// The caller, for the originating-identity header.
    pub user_id: &'a str,
}

/// What a broker answered a bind with (v1's `GatewayHandleResponse`). `configuration` and
/// `credentials` stay raw JSON so they are stored and returned exactly as sent.
#[derive(Debug)]
pub struct BrokerHandle {
    /// The broker's id of the binding (the response's `service_id`).
    pub handle_id: String,
    pub configuration: Box<RawValue>,
    pub credentials: Box<RawValue>,
    pub syslog_drain_url: Option<String>,
}

/// A binding or service key to remove: the v1 unbind request's contents.
#[derive(Debug, Clone, Copy)]
pub struct UnbindOrder<'a> {
    pub broker: &'a Broker,
    /// The broker's id of the instance.
    pub service_id: &'a str,
    /// The broker's id of the binding.
    pub handle_id: &'a str,
    /// The `binding_options` the bind sent; v1 sends them again on unbind.
    pub binding_options: &'a RawValue,
}

/// How a removal ended. A broker that answers 404 or 410 no longer knows the thing, which is
/// what removing it asked for; the Cloud Controller's v1 client treats it as deleted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Removed,
    AlreadyGone,
}

/// What one broker call looked like, for the access log and metrics.
#[derive(Debug, Clone, Copy)]
pub struct BrokerCall {
    /// The broker's HTTP status; `None` when no answer came.
    pub status: Option<u16>,
    pub duration: Duration,
}

/// Every broker operation answers the same way: what happened, and what the call looked like.
#[derive(Debug)]
pub struct BrokerAnswer<T> {
    pub result: Result<T, BrokerError>,
    pub call: BrokerCall,
}

/// The v1 broker calls the use cases make. Each returns once the broker answered, failed or
/// ran out of its `timeout_seconds`; neither is retried after the broker may have acted on it.
#[async_trait]
pub trait BrokerPort: Send + Sync {
    /// Provisions `order` at its plan's broker. Never sent twice.
    async fn provision(
        &self,
        order: &ProvisionOrder<'_>,
        request_id: &str,
    ) -> BrokerAnswer<BrokerInstance>;

    /// Removes the broker's instance `service_id`. Idempotent; a broker that no longer knows
    /// it answers [`Removal::AlreadyGone`].
    async fn deprovision(
        &self,
        broker: &Broker,
        service_id: &str,
        request_id: &str,
    ) -> BrokerAnswer<Removal>;

    /// Creates a binding or service key. Never sent twice: a replay could create a second
    /// handle with its own credentials.
    async fn bind(&self, order: &BindOrder<'_>, request_id: &str) -> BrokerAnswer<BrokerHandle>;

    /// Removes a binding or service key. Idempotent, as deprovision.
    async fn unbind(&self, order: &UnbindOrder<'_>, request_id: &str) -> BrokerAnswer<Removal>;
}

/// A failed broker call, with the request it was (URL without credentials).
#[derive(Debug, thiserror::Error)]
#[error("{method} {uri}: {kind}")]
pub struct BrokerError {
    pub uri: String,
    pub method: &'static str,
    pub kind: BrokerFailure,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerFailure {
    /// Non-2xx with integer `code` 33106: the service allows one instance per space.
    #[error("duplicate instance (33106)")]
    Duplicate,
    /// 4xx.
    #[error("rejected with {status}")]
    Rejected {
        status: u16,
        description: Option<String>,
        body: String,
    },
    /// 5xx, or any other non-2xx.
    #[error("failed with {status}")]
    BadResponse {
        status: u16,
        description: Option<String>,
        body: String,
    },
    /// 2xx whose body is not a valid answer; `service_id` if the broker still named one (for
    /// a bind, the handle id it named).
    #[error("malformed {status} answer: {detail}")]
    Malformed {
        status: u16,
        detail: String,
        service_id: Option<String>,
    },
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("timed out")]
    Timeout,
}

impl BrokerFailure {
    /// Bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            BrokerFailure::Duplicate | BrokerFailure::Rejected { .. } => "rejected",
            BrokerFailure::BadResponse { .. } => "bad_response",
            BrokerFailure::Malformed { .. } => "malformed",
            BrokerFailure::Unreachable(_) => "connect",
            BrokerFailure::Timeout => "timeout",
        }
    }
}
