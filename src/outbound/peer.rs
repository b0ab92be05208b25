//! Where a request goes: an address resolved beforehand (no DNS on the request path), TLS or
//! not, the names it is sent under, and whether its connections are pooled.

use std::net::SocketAddr;
use std::time::Duration;

use pingora::upstreams::peer::HttpPeer;

/// Whether a peer's connections outlive one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// A new connection per request, sent with `Connection: close` and closed after the
    /// answer. For rare requests, and for callers on a short-lived runtime: a pooled
    /// connection is watched by a task on the runtime that released it.
    Fresh,
    /// A connection is taken from the pool when one is idle and, after a whole answer the
    /// peer lets us keep, put back for `idle`; then it is closed. Keep `idle` below the
    /// peer's own keep-alive timeout, so the peer rarely closes a connection just as it is
    /// reused.
    Pooled { idle: Duration },
}

/// One HTTP(S) server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    addr: SocketAddr,
    tls: bool,
    server_name: String,
    authority: String,
    reuse: Reuse,
}

impl Peer {
    /// `addr` as resolved by the caller; `server_name` is the TLS SNI and the name the
    /// certificate must carry; `authority` (`host[:port]`) is sent as `Host`. Fresh
    /// connections unless [`Peer::pooled`].
    pub fn new(
        addr: SocketAddr,
        tls: bool,
        server_name: impl Into<String>,
        authority: impl Into<String>,
    ) -> Peer {
        Peer {
            addr,
            tls,
            server_name: server_name.into(),
            authority: authority.into(),
            reuse: Reuse::Fresh,
        }
    }

    /// Pools this peer's connections, each kept `idle` at most between requests.
    pub fn pooled(mut self, idle: Duration) -> Peer {
        self.reuse = Reuse::Pooled { idle };
        self
    }

    pub fn reuse(&self) -> Reuse {
        self.reuse
    }

    pub(super) fn authority(&self) -> &str {
        &self.authority
    }

    /// pingora's view of the peer. Only peers equal in address, TLS and name share pooled
    /// connections.
    pub(super) fn http_peer(&self, connect_timeout: Duration) -> HttpPeer {
        let mut peer = HttpPeer::new(self.addr, self.tls, self.server_name.clone());
        // TCP connect, and TCP connect plus TLS handshake: both bounded by the one limit.
        peer.options.connection_timeout = Some(connect_timeout);
        peer.options.total_connection_timeout = Some(connect_timeout);
        if let Reuse::Pooled { idle } = self.reuse {
            peer.options.idle_timeout = Some(idle);
        }
        peer
    }
}
