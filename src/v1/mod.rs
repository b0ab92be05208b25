//! The v1 service gateway wire: the provision request and response (`wire`) and the broker
//! port's adapter that talks to brokers through the outbound client (`client`).

mod client;
mod wire;

pub use client::V1Client;
pub use wire::{interpret_provision, originating_identity, ProvisionRequest};

/// The provision path, appended to a broker's base URL.
pub const CONFIGURATIONS_PATH: &str = "/gateway/v1/configurations";
