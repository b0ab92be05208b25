//! The dispatcher: for a request the route table owns, run once what every owned route shares,
//! in the Cloud Controller's order — assign the request id, authenticate, read the bounded
//! body — then hand over to the route's handler and carry out its [`Disposition`].

use std::time::Duration;

use bytes::BytesMut;
use pingora::proxy::Session;
use pingora::Result;

use super::handler::{Answer, Disposition, Request};
use super::routes::{self, Body, Route};
use super::{errors, reply, Ctx, Gateway};
use crate::auth::{bearer_token, AuthError, Identity, Scope};
use crate::cc::ApiError;

/// Longest a client may take to send its (small) body.
const BODY_DEADLINE: Duration = Duration::from_secs(30);

/// Answers the request when brokergate owns it (`Ok(true)`); `Ok(false)` sends it upstream.
pub async fn dispatch(gw: &Gateway, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
    let header = session.req_header();
    let Some((route, params)) = routes::find(routes::ROUTES, &header.method, header.uri.path())
    else {
        return not_owned(session, ctx, ApiError::not_found()).await;
    };
    ctx.route = route.template;
    ctx.assign_request_id(session);
    let rt = ctx.rt.clone();

    // 0. Authentication, before anything else on an owned route.
    let caller = match authenticate(session, ctx, route).await {
        Ok(caller) => caller,
        Err(e) => {
            ctx.outcome.error = Some(e.to_string());
            ctx.outcome.auth_failure = Some(errors::auth_failure_reason(e));
            return answer_early(session, ctx, errors::from_auth(e)).await;
        }
    };
    if route.scope != Scope::None {
        ctx.outcome.user_id = Some(caller.user_id.clone());
    }

    // 1. The body: bounded, and kept for replay in case the request is passed through.
    let body = match route.body {
        Body::None => BytesMut::new(),
        Body::Json => match read_body(session, rt.max_body_bytes).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                let err = ApiError::body_too_large(rt.max_body_bytes);
                ctx.outcome.status = err.status;
                reply::error_and_close(session, &err, &ctx.request_id).await?;
                return Ok(true);
            }
            Err(BodyError::Read(e)) => return Err(e),
        },
    };

    let request = Request {
        rt: &rt,
        caller: &caller,
        scope: route.scope,
        params: &params,
        path: session.req_header().uri.path(),
        query: session.req_header().uri.query(),
        body: &body,
        request_id: &ctx.request_id,
    };
    match (route.handler)(&gw.use_cases, request, &mut ctx.outcome).await {
        Disposition::NotOurs(err) => not_owned(session, ctx, err).await,
        Disposition::Reply(answer) if route.body == Body::Json => {
            // The body was read in full: the connection is in sync.
            ctx.outcome.status = answer.status;
            let Answer {
                status,
                body,
                location,
            } = answer;
            reply::json(session, status, body, &ctx.request_id, location.as_deref()).await?;
            Ok(true)
        }
        Disposition::Reply(answer) => {
            ctx.outcome.status = answer.status;
            reply::after_drain(session, answer, &ctx.request_id, rt.max_body_bytes).await?;
            Ok(true)
        }
    }
}

/// A request brokergate does not serve: the upstream's, or `err` when there is none.
async fn not_owned(session: &mut Session, ctx: &mut Ctx, err: ApiError) -> Result<bool> {
    if ctx.rt.upstream.is_some() {
        return Ok(false);
    }
    ctx.assign_request_id(session);
    answer_early(session, ctx, err).await
}

/// The caller behind the bearer token; routes that need no token get the anonymous caller.
/// Verification may wait for one UAA key refresh (a token signed with a new key).
async fn authenticate(session: &Session, ctx: &Ctx, route: &Route) -> Result<Identity, AuthError> {
    if route.scope == Scope::None {
        return Ok(Identity::anonymous());
    }
    let header = session
        .req_header()
        .headers
        .get(http::header::AUTHORIZATION)
        .map(|h| h.as_bytes());
    let token = bearer_token(header, ctx.rt.max_token_bytes)?;
    ctx.rt.keys.verify(token).await
}

/// An error answer before the body was read: drain it within bounds, or close.
async fn answer_early(session: &mut Session, ctx: &mut Ctx, err: ApiError) -> Result<bool> {
    ctx.outcome.status = err.status;
    reply::error_after_drain(session, &err, &ctx.request_id, ctx.rt.max_body_bytes).await?;
    Ok(true)
}

enum BodyError {
    TooLarge,
    Read(Box<pingora::Error>),
}

/// Reads the whole body, at most `max` bytes, within [`BODY_DEADLINE`]. Retry buffering is
/// switched on first so pingora can replay the body if the request is passed through.
async fn read_body(session: &mut Session, max: usize) -> Result<BytesMut, BodyError> {
    if reply::declared_length(session).is_some_and(|n| n > max) {
        return Err(BodyError::TooLarge);
    }
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
