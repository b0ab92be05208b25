//! What came back: the status, the headers and the bounded body.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

/// A whole answer, its body no longer than [`Limits::max_body_bytes`](super::Limits).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}
