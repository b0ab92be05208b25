//! What can go wrong with one outbound exchange, kept as a kind a caller can map (to a Cloud
//! Controller error, a log line) without parsing strings.

use std::fmt;

use pingora::ErrorType;

use super::Response;

/// Why an exchange failed. Each kind says how far the exchange got, which is what a caller
/// needs to decide what the peer may have done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No connection: refused, no route, TLS handshake or certificate refused. Nothing was
    /// sent.
    Connect,
    /// The connect timeout or the total deadline passed. The request may have been received.
    Timeout,
    /// The connection was closed or reset before the whole answer came. The request may have
    /// been received.
    Closed,
    /// The answer's body is longer than [`Limits::max_body_bytes`](super::Limits); the
    /// status, headers and the body up to the limit are in [`Error::partial`].
    TooLarge,
    /// The answer is not valid HTTP/1.x.
    Malformed,
    /// The request could not be built (a method, path or header value HTTP does not allow).
    /// Nothing was sent.
    InvalidRequest,
}

impl ErrorKind {
    /// A short fixed label, for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Closed => "closed",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Malformed => "malformed",
            ErrorKind::InvalidRequest => "invalid_request",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ErrorKind::Connect => "cannot connect",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Closed => "connection closed or reset before a whole answer",
            ErrorKind::TooLarge => "answer body larger than the limit",
            ErrorKind::Malformed => "answer is not valid HTTP",
            ErrorKind::InvalidRequest => "request is not valid HTTP",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// A failed exchange. Its `Display` names the kind, pingora's error type and whether the
/// connection was reused, never a header, body or URL, so it carries no token or credential.
/// The pingora error is kept as `source`; its own text may quote the peer's bytes.
#[derive(Debug, thiserror::Error)]
#[error("{kind}{}{}", etype_note(.source.as_deref()), reused_note(.reused))]
pub struct Error {
    kind: ErrorKind,
    reused: bool,
    partial: Option<Box<Response>>,
    source: Option<Box<pingora::Error>>,
}

fn etype_note(source: Option<&pingora::Error>) -> String {
    source.map_or_else(String::new, |e| format!(" ({})", e.etype().as_str()))
}

fn reused_note(reused: &bool) -> &'static str {
    if *reused {
        " on a reused connection"
    } else {
        ""
    }
}

impl Error {
    pub(super) fn new(kind: ErrorKind, reused: bool, source: Option<Box<pingora::Error>>) -> Error {
        Error {
            kind,
            reused,
            partial: None,
            source,
        }
    }

    /// A pingora error met while connecting (`connecting`) or during the exchange, by its type.
    pub(super) fn from_pingora(e: Box<pingora::Error>, connecting: bool, reused: bool) -> Error {
        let kind = match e.etype() {
            ErrorType::ConnectTimedout
            | ErrorType::TLSHandshakeTimedout
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout => ErrorKind::Timeout,
            _ if connecting => ErrorKind::Connect,
            ErrorType::InvalidHTTPHeader
            | ErrorType::H1Error
            | ErrorType::H2Error
            | ErrorType::InvalidH2
            | ErrorType::H2Downgrade => ErrorKind::Malformed,
            // ReadError, WriteError, ConnectionClosed, and whatever else breaks an established
            // connection.
            _ => ErrorKind::Closed,
        };
        Error::new(kind, reused, Some(e))
    }

    pub(super) fn too_large(partial: Response, reused: bool) -> Error {
        Error {
            kind: ErrorKind::TooLarge,
            reused,
            partial: Some(Box::new(partial)),
            source: None,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the failing attempt ran on a pooled connection used before.
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// For [`ErrorKind::TooLarge`]: the answer's status and headers, and its body cut at the
    /// limit. `None` for every other kind.
    pub fn partial(&self) -> Option<&Response> {
        self.partial.as_deref()
    }
}
