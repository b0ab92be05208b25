//! What is sent: method, path, headers, body, and whether it may be sent twice.

use bytes::Bytes;
use http::Method;
use pingora::http::{IntoCaseHeaderName, RequestHeader};

/// Whether a request may be sent again after its connection broke. Said by every caller,
/// because only the caller knows what the request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Sending it twice does what sending it once does (a GET; a DELETE of one named
    /// resource). When it fails with [`ErrorKind::Closed`](super::ErrorKind::Closed) on a
    /// reused pooled connection (most likely one the peer closed while it sat idle), it is
    /// sent once more, on a new connection, within the same deadline.
    Idempotent,
    /// Never sent twice: the peer may have read and acted on it before the connection broke,
    /// and a replay could act twice (a broker POST could provision two instances).
    NotIdempotent,
}

/// One request. Header errors are kept until [`Client::send`](super::Client::send), which
/// fails with [`ErrorKind::InvalidRequest`](super::ErrorKind::InvalidRequest) before
/// connecting, so a request is built without a `?` per header.
#[derive(Debug)]
pub struct Request {
    header: Result<RequestHeader, Box<pingora::Error>>,
    body: Option<Bytes>,
    idempotency: Idempotency,
}

impl Request {
    /// `path` is the request target sent on the wire (path and query). `Host` is added from
    /// the peer when sent.
    pub fn new(method: Method, path: &str, idempotency: Idempotency) -> Request {
        Request {
            header: RequestHeader::build(method, path.as_bytes(), Some(8)),
            body: None,
            idempotency,
        }
    }

    /// Sets `name` to `value`, replacing an earlier value.
    pub fn header(mut self, name: impl IntoCaseHeaderName, value: &str) -> Request {
        if let Ok(h) = &mut self.header {
            if let Err(e) = h.insert_header(name, value) {
                self.header = Err(e);
            }
        }
        self
    }

    /// The body, sent with its `Content-Length` (also when empty: some servers want
    /// `Content-Length: 0` on a DELETE). Without a body no `Content-Length` is sent.
    pub fn body(mut self, body: Bytes) -> Request {
        self.body = Some(body);
        self
    }

    pub fn idempotency(&self) -> Idempotency {
        self.idempotency
    }

    /// The header as sent (with `Content-Length` last) and the body.
    pub(super) fn into_parts(self) -> Result<(RequestHeader, Bytes), Box<pingora::Error>> {
        let mut header = self.header?;
        if let Some(body) = &self.body {
            header.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        }
        Ok((header, self.body.unwrap_or_default()))
    }
}
