//! The pingora `ProxyHttp` implementation: the route table (`routes`) says which requests
//! brokergate owns; the dispatcher (`dispatch`) answers those inside `request_filter` through
//! their handlers (`instances`); everything else passes, unchanged, to the upstream Cloud
//! Controller (or gets 404 when there is none).

mod catalog;
mod dispatch;
mod errors;
mod handler;
mod handles;
mod instances;
mod reply;
mod routes;
mod summary;

pub use handler::UseCases;

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::HeaderValue;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::ErrorSource;

use crate::access_log;
use crate::cc::request_id::request_id;
use crate::cc::ApiError;
use crate::config::Runtime;
use crate::metrics::Metrics;
use crate::service::{BrokerCall, Verdict};

/// The gateway service: a config that reloads swap, and the use cases.
pub struct Gateway {
    runtime: Arc<ArcSwap<Runtime>>,
    use_cases: UseCases,
    metrics: Arc<Metrics>,
}

impl Gateway {
    pub fn new(runtime: Arc<ArcSwap<Runtime>>, use_cases: UseCases, metrics: Arc<Metrics>) -> Self {
        Gateway {
            runtime,
            use_cases,
            metrics,
        }
    }
}

/// Per-request state. The config snapshot is taken once, so a reload never changes the
/// config a request sees halfway through.
pub struct Ctx {
    rt: Arc<Runtime>,
    /// The route template (metrics label): [`routes::NOT_OWNED`] unless an entry matched.
    route: &'static str,
    started: Instant,
    /// The id brokergate answers with and sends to brokers; empty until assigned (requests
    /// passed through keep the client's own).
    request_id: String,
    outcome: Outcome,
    _in_flight: InFlight,
}

impl Ctx {
    /// Assigns the request id from the client's headers, once.
    fn assign_request_id(&mut self, session: &Session) {
        if self.request_id.is_empty() {
            let (vcap, plain) = client_request_ids(session);
            self.request_id = request_id(vcap.map(|v| v.as_bytes()), plain.map(|v| v.as_bytes()));
        }
    }
}

/// The client's `X-VCAP-Request-ID` and `X-Request-ID`: the one place they are read.
fn client_request_ids(session: &Session) -> (Option<&HeaderValue>, Option<&HeaderValue>) {
    let h = &session.req_header().headers;
    (h.get("x-vcap-request-id"), h.get("x-request-id"))
}

/// What brokergate decided, for the access log and metrics.
#[derive(Debug, Default)]
pub struct Outcome {
    status: u16,
    user_id: Option<String>,
    broker: Option<String>,
    broker_call: Option<BrokerCall>,
    /// A `reason` label of `brokergate_auth_failures_total`.
    auth_failure: Option<&'static str>,
    /// What the authorization came to, once asked.
    authorization: Option<Verdict>,
    error: Option<String>,
}

/// Counts a request in flight from its first phase until its context is dropped, whatever
/// path it took.
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn new(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Bounded `method` label values.
fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            rt: self.runtime.load_full(),
            route: routes::NOT_OWNED,
            started: Instant::now(),
            request_id: String::new(),
            outcome: Outcome::default(),
            _in_flight: InFlight::new(&self.metrics.http_requests_in_flight),
        }
    }

    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        // Answer requests a client pipelined behind this one instead of dropping them.
        session.as_downstream_mut().set_pipelining_enabled(true);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if reply::ambiguous_framing(session) {
            ctx.assign_request_id(session);
            let err = ApiError::ambiguous_framing();
            ctx.outcome.status = err.status;
            reply::error_and_close(session, &err, &ctx.request_id).await?;
            return Ok(true);
        }
        dispatch::dispatch(self, session, ctx).await
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(upstream) = ctx.rt.upstream.as_ref() else {
            return Error::e_explain(HTTPStatus(404), "no upstream configured");
        };
        let t = &upstream.target;
        let mut peer = HttpPeer::new(t.addr, t.tls, t.host.clone());
        peer.options.connection_timeout = Some(upstream.connect_timeout);
        peer.options.total_connection_timeout = Some(upstream.connect_timeout);
        peer.options.read_timeout = Some(upstream.timeout);
        peer.options.write_timeout = Some(upstream.timeout);
        Ok(Box::new(peer))
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy
    where
        Ctx: Send + Sync,
    {
        let err = match (e.etype(), e.esource()) {
            (HTTPStatus(404), _) => Some(ApiError::not_found()),
            (HTTPStatus(_), _) => Some(ApiError::invalid_request()),
            (_, ErrorSource::Upstream) => Some(ApiError::upstream_unavailable()),
            (ReadError | WriteError | ConnectionClosed, ErrorSource::Downstream) => None,
            (_, ErrorSource::Downstream) => Some(ApiError::invalid_request()),
            _ => Some(ApiError::unknown()),
        };
        let Some(err) = err else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        ctx.assign_request_id(session);
        ctx.outcome.error = Some(e.etype().as_str().to_string());
        if session.response_written().is_none() {
            if let Err(write_err) = reply::error_and_close(session, &err, &ctx.request_id).await {
                log::debug!("Could not send an error answer: {write_err}");
            }
        }
        FailToProxy {
            error_code: err.status,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, error: &Error) -> bool {
        // A client hanging up is not the gateway's error.
        error.esource() == &ErrorSource::Downstream
            && matches!(error.etype(), ReadError | WriteError | ConnectionClosed)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map_or(ctx.outcome.status, |r| r.status.as_u16());
        let duration = ctx.started.elapsed().as_secs_f64();
        let method = method_label(&session.req_header().method);
        let route = ctx.route;
        let m = &self.metrics;
        m.http_requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        m.http_request_duration
            .with_label_values(&[method, route])
            .observe(duration);
        if let Some(reason) = ctx.outcome.auth_failure {
            m.auth_failures.with_label_values(&[reason]).inc();
        }
        if !ctx.rt.access_log {
            return;
        }
        // Pass-through requests keep the client's id, if any; brokergate assigned none.
        let request_id = if ctx.request_id.is_empty() {
            client_request_ids(session)
                .0
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        } else {
            Some(ctx.request_id.clone())
        };
        let error = ctx
            .outcome
            .error
            .as_deref()
            .or(e.map(|e| e.etype().as_str()));
        access_log::write(&access_log::AccessLine {
            ts: access_log::now_rfc3339(),
            request_id: request_id.as_deref(),
            method,
            route,
            status,
            duration_seconds: duration,
            bytes_sent: session.body_bytes_sent(),
            broker: ctx.outcome.broker.as_deref(),
            broker_status: ctx.outcome.broker_call.and_then(|c| c.status),
            broker_duration_seconds: ctx.outcome.broker_call.map(|c| c.duration.as_secs_f64()),
            user_id: ctx.outcome.user_id.as_deref(),
            authorization: ctx.outcome.authorization.map(Verdict::as_str),
            error,
        });
    }
}
