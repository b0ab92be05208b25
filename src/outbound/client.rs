//! Sends one request to one peer within its limits, pooling connections where the peer says
//! so and sending again only what may be sent twice.

use bytes::{Bytes, BytesMut};
use pingora::connectors::TransportConnector;
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::client::HttpSession;
use pingora::upstreams::peer::{HttpPeer, Peer as _};

use super::{Error, ErrorKind, Idempotency, Limits, Peer, Request, Response, Reuse};

/// An HTTP/1.1 client with its own connection pool.
///
/// It sits on pingora's `TransportConnector`, the pooled TCP/TLS layer under
/// `connectors::http::Connector`, and speaks HTTP/1.1 through pingora's `v1` client session,
/// as `http::Connector` does for a peer without HTTP/2 in its ALPN. One layer down because a
/// retry must go out on a new connection, and `http::Connector` would hand out the next
/// pooled one, which is as likely to be stale as the first.
pub struct Client {
    transport: TransportConnector,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

/// Where an attempt's connection comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Connection {
    /// An idle pooled one if the peer is pooled and one is there, else a new one.
    Any,
    New,
}

impl Client {
    /// Loads the system's CA certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured) for TLS
    /// peers: make one and keep it.
    pub fn new() -> Client {
        Client {
            transport: TransportConnector::new(None),
        }
    }

    /// Sends `request` to `peer` and reads the answer, all within `limits`. An
    /// [`Idempotency::Idempotent`] request that fails with [`ErrorKind::Closed`] on a reused
    /// connection is sent once more on a new one; nothing else is ever sent twice. Any 2xx,
    /// 4xx or 5xx answer is `Ok`: what a status means is the caller's business.
    pub async fn send(
        &self,
        peer: &Peer,
        limits: &Limits,
        request: Request,
    ) -> Result<Response, Error> {
        let idempotency = request.idempotency();
        let invalid = |e| Error::new(ErrorKind::InvalidRequest, false, Some(e));
        let (mut header, body) = request.into_parts().map_err(invalid)?;
        header
            .insert_header(http::header::HOST, peer.authority())
            .map_err(invalid)?;
        if peer.reuse() == Reuse::Fresh {
            // The connection is closed after this answer: say so, so the peer does not keep
            // its end open for nothing.
            header
                .insert_header(http::header::CONNECTION, "close")
                .map_err(invalid)?;
        }
        let http_peer = peer.http_peer(limits.connect_timeout);
        let exchange = Exchange {
            transport: &self.transport,
            peer: &http_peer,
            reuse: peer.reuse(),
            body: &body,
            max_body_bytes: limits.max_body_bytes,
        };
        let mut reused = false;
        let attempts = async {
            if idempotency == Idempotency::NotIdempotent {
                // Sent once: the header goes as it is, with no copy kept for a retry.
                return exchange.attempt(header, Connection::Any, &mut reused).await;
            }
            match exchange
                .attempt(header.clone(), Connection::Any, &mut reused)
                .await
            {
                Err(e) if e.reused() && e.kind() == ErrorKind::Closed => {
                    exchange.attempt(header, Connection::New, &mut reused).await
                }
                other => other,
            }
        };
        // Boxed: an attempt's state (pingora's session and connect futures, ~11 KiB) is then
        // moved once, not again at every caller up to the request's own future (measured with
        // callgrind: ~12,000 instructions of memcpy per create).
        match tokio::time::timeout(limits.total_timeout, Box::pin(attempts)).await {
            Ok(result) => result,
            // Dropping the attempt closed its connection: a half-read answer is never pooled.
            Err(_) => Err(Error::new(ErrorKind::Timeout, reused, None)),
        }
    }
}

/// One request, ready to be sent on a connection.
struct Exchange<'a> {
    transport: &'a TransportConnector,
    peer: &'a HttpPeer,
    reuse: Reuse,
    body: &'a Bytes,
    max_body_bytes: usize,
}

impl Exchange<'_> {
    /// One try; `reused` is set as soon as the connection is known, for a timeout to report.
    async fn attempt(
        &self,
        header: RequestHeader,
        from: Connection,
        reused: &mut bool,
    ) -> Result<Response, Error> {
        let pooled = matches!(self.reuse, Reuse::Pooled { .. });
        let connected = if pooled && from == Connection::Any {
            self.transport.get_stream(self.peer).await
        } else {
            self.transport
                .new_stream(self.peer)
                .await
                .map(|s| (s, false))
        };
        let (stream, was_reused) = connected.map_err(|e| Error::from_pingora(e, true, false))?;
        *reused = was_reused;
        let fail = |e| Error::from_pingora(e, false, was_reused);
        let mut session = HttpSession::new_with_options(stream, self.peer);
        session
            .write_request_header(Box::new(header))
            .await
            .map_err(fail)?;
        if !self.body.is_empty() {
            session.write_body(self.body).await.map_err(fail)?;
        }
        session.finish_body().await.map_err(fail)?;
        session.read_response().await.map_err(fail)?;
        let Some(head) = session.resp_header() else {
            // read_response succeeded, so pingora has the header; never taken.
            return Err(Error::new(ErrorKind::Malformed, was_reused, None));
        };
        let (status, headers) = (head.status, head.headers.clone());
        let mut body = BytesMut::new();
        while let Some(chunk) = session.read_body_ref().await.map_err(fail)? {
            let room = self.max_body_bytes.saturating_sub(body.len());
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                let partial = Response {
                    status,
                    headers,
                    body: body.freeze(),
                };
                // The rest is not read: the session is dropped, closing the connection.
                return Err(Error::too_large(partial, was_reused));
            }
            body.extend_from_slice(chunk);
        }
        if let Reuse::Pooled { idle } = self.reuse {
            // Pooled only if the answer was whole and the peer lets us keep the connection.
            session.respect_keepalive();
            if let Some(stream) = session.reuse().await {
                self.transport
                    .release_stream(stream, self.peer.reuse_hash(), Some(idle));
            }
        }
        Ok(Response {
            status,
            headers,
            body: body.freeze(),
        })
    }
}
