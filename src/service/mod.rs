//! The use cases, free of HTTP framing: each takes one command value, the caller and a config
//! snapshot, talks to ports ([`BrokerPort`], [`crate::store::Store`]) and returns one
//! [`Outcome`] — its result (or a domain error the edge renders) and what it did at the broker.

mod authorize;
mod bind;
mod broker;
mod catalog;
mod delete;
#[cfg(test)]
pub(crate) mod fake_authorizer;
mod finisher;
mod lease;
mod provision;
mod read;
pub mod recovery;
pub mod rules;
mod update;
mod upstream;

pub use authorize::{
    Authorizer, AuthzContext, FeatureFlag, Question, SpaceFacts, Undecided, Verdict,
    VisibleOrganizations, VisibleSpaces,
};
pub use bind::{Bind, BindError, Binder, Unbind};
pub use broker::{
    BindOrder, BrokerAnswer, BrokerCall, BrokerError, BrokerFailure, BrokerHandle, BrokerInstance,
    BrokerPort, ProvisionOrder, Removal, UnbindOrder,
};
pub use catalog::{
    plan_matches, Catalog, CatalogError, CatalogPage, MergedList, PlanFilter, ServiceFilter,
};
pub use delete::{binding_options, DeleteError, DeleteInstance, Deleter};
pub use finisher::{Finished, Finisher};
pub use lease::{LeasePolicy, LEASE_MARGIN_SECONDS};
pub use provision::{Outcome, Provision, ProvisionError, Provisioner, Trace};
pub use read::{
    ListHandles, ListInstances, ReadError, ReadHandle, ReadInstance, Reader, VisibleHandle,
    VisibleHandles, VisibleInstance, VisiblePage,
};
pub use rules::RuleViolation;
pub use update::{UpdateError, UpdateInstance, Updater};
pub use upstream::{Upstream, UpstreamAnswer, UpstreamDown};
