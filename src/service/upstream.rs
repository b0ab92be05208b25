//! The Upstream port: the real Cloud Controller, asked on the caller's behalf for the lists
//! brokergate merges its own entries into. The adapter is `crate::cc_client`.

use async_trait::async_trait;
use bytes::Bytes;

use crate::auth::Identity;
use crate::config::Runtime;

/// What the upstream answered, whatever the status.
#[derive(Debug, Clone)]
pub struct UpstreamAnswer {
    pub status: u16,
    pub body: Bytes,
}

/// The upstream could not be asked or did not answer in time. Safe to log: never a token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the upstream Cloud Controller did not answer: {0}")]
pub struct UpstreamDown(pub String);

#[async_trait]
pub trait Upstream: Send + Sync {
    /// `GET path_and_query` (the client's own path and query) with the caller's token and
    /// `request_id`, within `[upstream]`'s deadlines. Only called when `rt.upstream` is set.
    async fn get(
        &self,
        rt: &Runtime,
        caller: &Identity,
        path_and_query: &str,
        request_id: &str,
    ) -> Result<UpstreamAnswer, UpstreamDown>;
}
