//! Writing brokergate's own answers: JSON with an exact `Content-Length`, CC's headers, and a
//! connection that stays in sync (body drained within bounds, otherwise closed).

use std::time::Duration;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use super::handler::Answer;
use crate::cc::ApiError;

/// How long an early reply waits to drain an unread request body before closing instead.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// Writes a complete JSON answer; a 204 (a delete) has neither body nor body headers, as
/// RFC 9110 asks and the npm client expects.
pub async fn json(
    session: &mut Session,
    status: u16,
    body: Vec<u8>,
    request_id: &str,
    location: Option<&str>,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(6))?;
    if status == 204 {
        resp.insert_header("X-VCAP-Request-ID", request_id)?;
        resp.insert_header("X-Content-Type-Options", "nosniff")?;
        session.write_response_header(Box::new(resp), true).await?;
        return Ok(());
    }
    resp.insert_header("Content-Type", "application/json;charset=utf-8")?;
    resp.insert_header("Content-Length", body.len().to_string())?;
    resp.insert_header("X-VCAP-Request-ID", request_id)?;
    resp.insert_header("X-Content-Type-Options", "nosniff")?;
    if let Some(location) = location {
        resp.insert_header("Location", location)?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await?;
    Ok(())
}

/// Answers after draining the unread request body (up to `max_body` bytes within a deadline),
/// so a keep-alive connection stays usable; past either bound the connection is closed instead
/// of leaving bytes to be parsed as the next request.
pub async fn after_drain(
    session: &mut Session,
    answer: Answer,
    request_id: &str,
    max_body: usize,
) -> Result<()> {
    if !drain(session, max_body).await {
        session.set_keepalive(None);
    }
    let Answer {
        status,
        body,
        location,
    } = answer;
    json(session, status, body, request_id, location.as_deref()).await
}

/// A CC error, after draining the unread body as [`after_drain`] does.
pub async fn error_after_drain(
    session: &mut Session,
    err: &ApiError,
    request_id: &str,
    max_body: usize,
) -> Result<()> {
    after_drain(session, Answer::from(err), request_id, max_body).await
}

/// Answers with a CC error and closes the connection (framing or size problems).
pub async fn error_and_close(
    session: &mut Session,
    err: &ApiError,
    request_id: &str,
) -> Result<()> {
    session.set_keepalive(None);
    json(session, err.status, err.body(), request_id, None).await
}

/// Reads and discards the request body. True when it ended within the bounds.
async fn drain(session: &mut Session, max_body: usize) -> bool {
    if declared_length(session).is_some_and(|n| n > max_body) {
        return false;
    }
    let read_all = async {
        let mut seen = 0usize;
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    seen += chunk.len();
                    if seen > max_body {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    };
    tokio::time::timeout(DRAIN_DEADLINE, read_all)
        .await
        .unwrap_or(false)
}

/// The request's `Content-Length`, when present and numeric.
pub fn declared_length(session: &Session) -> Option<usize> {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// True when the request carried both `Content-Length` and `Transfer-Encoding`. Pingora
/// drops the `Content-Length` before filters run, so the raw header block is consulted.
pub fn ambiguous_framing(session: &Session) -> bool {
    if !session
        .req_header()
        .headers
        .contains_key(http::header::TRANSFER_ENCODING)
    {
        return false;
    }
    let Some(h1) = session.as_downstream().as_http1() else {
        return false;
    };
    let raw = h1.get_headers_raw_bytes();
    raw.split(|b| *b == b'\n').skip(1).any(|line| {
        let name = line.split(|b| *b == b':').next().unwrap_or_default();
        name.trim_ascii().eq_ignore_ascii_case(b"content-length")
    })
}
