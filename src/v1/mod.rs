//! The v1 service gateway wire: provision, bind and unbind requests and answers (`wire`),
//! and the broker port's adapter that talks to brokers through the outbound client
//! (`client`).

mod client;
mod wire;

pub use client::V1Client;
pub use wire::{
    interpret_bind, interpret_provision, originating_identity, BindRequest, ProvisionRequest,
    UnbindRequest,
};

/// The provision path, appended to a broker's base URL.
pub const CONFIGURATIONS_PATH: &str = "/gateway/v1/configurations";
