//! The Cloud Controller v2 wire: the request messages and their validation (`request`), the
//! instance envelope (`envelope`), the offering and plan resources (`catalog`), the binding and key resources (`handles`), the list query
//! and paginated collection (`list`), the upstream's list merged with brokergate's (`merge`),
//! the error catalogue and body (`error`), and the request id (`request_id`). Nothing here knows
//! about v1 brokers or pingora.

pub mod catalog;
pub mod envelope;
pub mod error;
pub mod handles;
pub mod list;
pub mod merge;
pub mod request;
pub mod request_id;

pub use error::ApiError;
