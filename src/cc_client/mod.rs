//! The real Cloud Controller as the Upstream port's adapter: one GET per merged list (and per
//! authorization question, for `crate::authz`), sent with the caller's `Authorization` and
//! `X-VCAP-Request-ID` through the outbound client, on pooled connections.

use std::time::Duration;

use async_trait::async_trait;
use http::Method;

use crate::auth::Identity;
use crate::config::Runtime;
use crate::outbound::{self, Idempotency, Limits, Peer, Request};
use crate::service::{Upstream, UpstreamAnswer, UpstreamDown};

/// Largest upstream answer read: a page of 100 offerings with inlined plans, or of 1,000 v3
/// spaces (about 700 KiB), stays far below.
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;
/// How long an idle pooled connection to the Cloud Controller is kept.
const POOL_IDLE: Duration = Duration::from_secs(4);

pub struct CloudControllerClient {
    http: outbound::Client,
}

impl Default for CloudControllerClient {
    fn default() -> Self {
        CloudControllerClient::new()
    }
}

impl CloudControllerClient {
    pub fn new() -> CloudControllerClient {
        CloudControllerClient {
            http: outbound::Client::new(),
        }
    }
}

impl CloudControllerClient {
    /// `GET path_and_query` on `upstream` with `token` (none: no `Authorization`) and
    /// `request_id`, its whole answer read, within `total_timeout` (connecting within the
    /// smaller of it and `[upstream] connect_timeout_seconds`). Any status is `Ok`.
    pub async fn fetch(
        &self,
        upstream: &crate::config::Upstream,
        token: Option<&str>,
        path_and_query: &str,
        request_id: &str,
        total_timeout: Duration,
    ) -> Result<UpstreamAnswer, outbound::Error> {
        let t = &upstream.target;
        let peer = Peer::new(t.addr, t.tls, &t.host, &t.authority).pooled(POOL_IDLE);
        let limits = Limits {
            connect_timeout: upstream.connect_timeout.min(total_timeout),
            total_timeout,
            max_body_bytes: MAX_ANSWER_BYTES,
        };
        let mut request = Request::new(
            Method::GET,
            &format!("{}{path_and_query}", t.base_path),
            Idempotency::Idempotent,
        )
        .header(http::header::ACCEPT, "application/json")
        .header("X-VCAP-Request-ID", request_id);
        if let Some(token) = token {
            request = request.header(http::header::AUTHORIZATION, &format!("bearer {token}"));
        }
        let answer = self.http.send(&peer, &limits, request).await?;
        Ok(UpstreamAnswer {
            status: answer.status.as_u16(),
            body: answer.body,
        })
    }
}

#[async_trait]
impl Upstream for CloudControllerClient {
    async fn get(
        &self,
        rt: &Runtime,
        caller: &Identity,
        path_and_query: &str,
        request_id: &str,
    ) -> Result<UpstreamAnswer, UpstreamDown> {
        let upstream = rt
            .upstream
            .as_ref()
            .ok_or_else(|| UpstreamDown("no upstream is configured".into()))?;
        self.fetch(
            upstream,
            caller.token.expose(),
            path_and_query,
            request_id,
            upstream.timeout,
        )
        .await
        .map_err(|e| UpstreamDown(e.to_string()))
    }
}
