//! How long an exchange may take and how much of an answer is read.

use std::time::Duration;

/// The bounds of one exchange, given with each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// TCP connect plus TLS handshake of a new connection; past it the exchange fails with
    /// [`ErrorKind::Timeout`](super::ErrorKind::Timeout) and nothing was sent.
    pub connect_timeout: Duration,
    /// The whole exchange, from asking for a connection to the last body byte, a retry
    /// included; past it the exchange is abandoned (its connection closed) and fails with
    /// [`ErrorKind::Timeout`](super::ErrorKind::Timeout).
    pub total_timeout: Duration,
    /// The most body bytes read. A longer answer fails with
    /// [`ErrorKind::TooLarge`](super::ErrorKind::TooLarge) as soon as it passes this, and its
    /// connection is closed rather than read to the end.
    pub max_body_bytes: usize,
}
