//! The v1 service gateway wire: the provision request and response (`wire`) and the HTTP
//! client that talks to brokers over pingora's pooled connector (`client`).

mod client;
mod wire;

pub use client::{BrokerCall, V1Client};
pub use wire::{
    interpret_provision, BrokerError, BrokerFailure, ProvisionRequest, ProvisionResponse,
};

/// The provision path, appended to a broker's base URL.
pub const CONFIGURATIONS_PATH: &str = "/gateway/v1/configurations";
