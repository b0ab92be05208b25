//! brokergate: the Cloud Controller v2 `POST /v2/service_instances` endpoint in front of
//! legacy v1 service brokers, on pingora. `main.rs` only wires these rooms together.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod auth;
pub mod authz;
pub mod cc;
pub mod cc_client;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod endpoint;
pub mod finish;
pub mod listen;
pub mod logging;
pub mod metrics;
pub mod outbound;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod service;
pub mod store;
pub mod v1;
