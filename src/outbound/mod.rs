//! One outbound HTTP client, for every server brokergate asks: v1 brokers, UAA, and later the
//! real Cloud Controller. A caller says where ([`Peer`]: a resolved address, pooled or fresh
//! connections), what ([`Request`], with its [`Idempotency`]) and within what bounds
//! ([`Limits`]); it gets a [`Response`] or an [`Error`] whose [`ErrorKind`] it maps to its own
//! errors. No DNS here: callers resolve names where it suits them.

mod client;
mod error;
mod limits;
mod peer;
mod request;
mod response;
#[cfg(test)]
pub(crate) mod test_server;
#[cfg(test)]
mod tests;

pub use client::Client;
pub use error::{Error, ErrorKind};
pub use limits::Limits;
pub use peer::{Peer, Reuse};
pub use request::{Idempotency, Request};
pub use response::Response;
