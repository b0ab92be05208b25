//! The use cases, free of HTTP framing: each takes one command value, the caller and a config
//! snapshot, talks to ports ([`BrokerPort`], [`crate::store::Store`]) and returns one
//! [`Outcome`] — its result (or a domain error the edge renders) and what it did at the broker.

mod broker;
mod provision;
mod read;
pub mod recovery;
pub mod rules;

pub use broker::{
    BindOrder, BrokerAnswer, BrokerCall, BrokerError, BrokerFailure, BrokerHandle, BrokerInstance,
    BrokerPort, ProvisionOrder, Removal, UnbindOrder,
};
pub use provision::{Outcome, Provision, ProvisionError, Provisioner, Trace};
pub use read::{ListInstances, ReadError, ReadInstance, Reader, VisibleInstance, VisiblePage};
