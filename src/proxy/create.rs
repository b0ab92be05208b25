//! `POST /v2/service_instances` at the edge: authenticate, read the bounded body, decode,
//! then either pass an unknown plan through unchanged or provision and answer 201.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use pingora::proxy::Session;
use pingora::Result;

use super::{errors, reply, Ctx, Gateway};
use crate::auth::bearer_token;
use crate::cc::envelope::{instance_url, render_created, InstanceView};
use crate::cc::{request, ApiError};
use crate::service::{ProvisionError, Provisioner};

/// Longest a client may take to send its (small) body.
const BODY_DEADLINE: Duration = Duration::from_secs(30);

/// Returns `Ok(true)` when answered here, `Ok(false)` to pass the request to the upstream.
pub async fn handle(gw: &Gateway, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
    let rt = ctx.rt.clone();
    let max_body = rt.max_body_bytes;

    // 0. Authentication, before anything else on this route.
    let header = session
        .req_header()
        .headers
        .get(http::header::AUTHORIZATION);
    // Verification may wait for one UAA key refresh (a token signed with a new key).
    let verified = match bearer_token(header.map(|h| h.as_bytes()), rt.max_token_bytes) {
        Ok(token) => rt.keys.verify(token).await,
        Err(e) => Err(e),
    };
    let identity = match verified {
        Ok(identity) => identity,
        Err(e) => {
            ctx.outcome.error = Some(e.to_string());
            ctx.outcome.auth_failure = Some(errors::auth_failure_reason(e));
            return answer_early(session, ctx, &errors::from_auth(e)).await;
        }
    };
    ctx.outcome.user_id = Some(identity.user_id.clone());

    // 1. The body: bounded, and kept for replay in case the plan is passed through.
    if reply::declared_length(session).is_some_and(|n| n > max_body) {
        return answer_and_close(session, ctx, &ApiError::body_too_large(max_body)).await;
    }
    let body = match read_body(session, max_body).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return answer_and_close(session, ctx, &ApiError::body_too_large(max_body)).await
        }
        Err(BodyError::Read(e)) => return Err(e),
    };
    let req = match request::decode(&body) {
        Ok(req) => req,
        Err(e) => return answer(session, ctx, &e).await,
    };
    // 2. accepts_incomplete: validated, otherwise meaningless for synchronous v1 brokers.
    if let Err(e) = request::accepts_incomplete(session.req_header().uri.query()) {
        return answer(session, ctx, &e).await;
    }
    // 3. The plan: one of ours, or the real Cloud Controller's.
    let plan = match Provisioner::plan(&rt, &req) {
        Ok(plan) => plan,
        Err(ProvisionError::UnknownPlan) if rt.upstream.is_some() => return Ok(false),
        Err(e) => return answer(session, ctx, &errors::from_provision(&e)).await,
    };
    ctx.outcome.broker = Some(plan.broker.name.clone());

    // 4+. Space, scope, name rules, reserve, broker call, commit.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let provisioned = gw
        .provisioner
        .provision(
            &rt,
            plan,
            &identity,
            req,
            &ctx.request_id,
            now,
            &mut ctx.outcome.broker_call,
        )
        .await;
    match provisioned {
        Ok(record) => {
            let (r, p) = (&record.reservation, &record.provisioned);
            let body = render_created(&InstanceView {
                guid: &r.guid,
                name: &r.name,
                credentials: &p.credentials,
                service_plan_guid: &r.service_plan_guid,
                space_guid: &r.space_guid,
                gateway_data: &p.gateway_data,
                dashboard_url: p.dashboard_url.as_deref(),
                tags: &r.tags,
                created_at: r.created_at,
            });
            ctx.outcome.status = 201;
            let location = instance_url(&r.guid);
            reply::json(session, 201, body, &ctx.request_id, Some(&location)).await?;
            Ok(true)
        }
        Err(e) => {
            if matches!(e, ProvisionError::InsufficientScope) {
                ctx.outcome.auth_failure = Some("insufficient_scope");
            }
            if let ProvisionError::Store(store_err) = &e {
                log::error!(
                    "Store failure. request_id={} error={store_err}",
                    ctx.request_id
                );
            }
            ctx.outcome.error = Some(e.to_string());
            answer(session, ctx, &errors::from_provision(&e)).await
        }
    }
}

enum BodyError {
    TooLarge,
    Read(Box<pingora::Error>),
}

/// Reads the whole body, at most `max` bytes, within [`BODY_DEADLINE`]. Retry buffering is
/// switched on first so pingora can replay the body if the request is passed through.
async fn read_body(session: &mut Session, max: usize) -> Result<BytesMut, BodyError> {
    session.as_downstream_mut().enable_retry_buffering();
    let read = async {
        let mut body = BytesMut::new();
        while let Some(chunk) = session.read_request_body().await.map_err(BodyError::Read)? {
            if body.len() + chunk.len() > max {
                return Err(BodyError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    match tokio::time::timeout(BODY_DEADLINE, read).await {
        Ok(result) => result,
        Err(_) => Err(BodyError::Read(pingora::Error::explain(
            pingora::ErrorType::ReadTimedout,
            "request body deadline",
        ))),
    }
}

/// An answer once the body has been read in full: the connection stays in sync.
async fn answer(session: &mut Session, ctx: &mut Ctx, err: &ApiError) -> Result<bool> {
    ctx.outcome.status = err.status;
    reply::json(session, err.status, err.body(), &ctx.request_id, None).await?;
    Ok(true)
}

/// An answer before the body was read: drain it within bounds, or close.
async fn answer_early(session: &mut Session, ctx: &mut Ctx, err: &ApiError) -> Result<bool> {
    ctx.outcome.status = err.status;
    reply::error_after_drain(session, err, &ctx.request_id, ctx.rt.max_body_bytes).await?;
    Ok(true)
}

async fn answer_and_close(session: &mut Session, ctx: &mut Ctx, err: &ApiError) -> Result<bool> {
    ctx.outcome.status = err.status;
    reply::error_and_close(session, err, &ctx.request_id).await?;
    Ok(true)
}
