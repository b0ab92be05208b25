//! The API listener's address. `server.listen` may name port 0: brokergate then picks a free
//! port itself and reports it (the `Listening.` log line), without the race of "find a free
//! port, release it, hope nobody takes it before the gateway binds it".
//!
//! pingora binds its listeners only once the server runs, and reports no address, so for port
//! 0 a placeholder socket is bound first — `SO_REUSEPORT`, never listening, so it receives no
//! connection — to learn a free port and keep it taken; pingora then binds the same port with
//! `SO_REUSEPORT` too. The placeholder is held until the process exits: while it is bound the
//! kernel hands the port to no other `bind(0)` and picks it as no connection's source port.

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora::listeners::TcpSocketOptions;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

/// Where the API listens, and the placeholder holding a port brokergate picked.
pub struct ApiAddress {
    pub addr: SocketAddr,
    placeholder: Option<socket2::Socket>,
}

impl ApiAddress {
    /// `configured` as is, or, for port 0, a free port on the same IP.
    pub fn choose(configured: SocketAddr) -> Result<ApiAddress, String> {
        if configured.port() != 0 {
            return Ok(ApiAddress {
                addr: configured,
                placeholder: None,
            });
        }
        let fail =
            |e: std::io::Error| format!("server.listen: cannot pick a port on {configured}: {e}");
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(configured),
            socket2::Type::STREAM,
            None,
        )
        .map_err(fail)?;
        socket.set_reuse_port(true).map_err(fail)?;
        socket.bind(&configured.into()).map_err(fail)?;
        let addr = socket
            .local_addr()
            .map_err(fail)?
            .as_socket()
            .ok_or_else(|| format!("server.listen: {configured} is not an IP address"))?;
        Ok(ApiAddress {
            addr,
            placeholder: Some(socket),
        })
    }

    /// The socket options pingora's listener needs to share the placeholder's port.
    pub fn socket_options(&self) -> Option<TcpSocketOptions> {
        self.placeholder.as_ref().map(|_| {
            let mut options = TcpSocketOptions::default();
            options.so_reuseport = Some(true);
            options
        })
    }

    /// A service that holds the placeholder (if any) for the life of the process.
    pub fn holder(self) -> PortHolder {
        PortHolder {
            _held: self.placeholder,
        }
    }
}

/// Keeps a picked port taken until shutdown.
pub struct PortHolder {
    _held: Option<socket2::Socket>,
}

#[async_trait]
impl BackgroundService for PortHolder {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Nothing to do but outlive pingora's listener setup; the socket closes on drop.
        while shutdown.changed().await.is_ok() && !*shutdown.borrow() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_port_is_kept() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let chosen = ApiAddress::choose(addr).unwrap();
        assert_eq!(chosen.addr, addr);
        assert!(chosen.socket_options().is_none());
    }

    #[test]
    fn port_zero_picks_a_held_port_a_reuseport_listener_can_share() {
        let chosen = ApiAddress::choose("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(chosen.addr.port(), 0);
        assert_eq!(chosen.socket_options().unwrap().so_reuseport, Some(true));
        // Nobody else gets it from bind(0) while it is held...
        for _ in 0..200 {
            let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            assert_ne!(other.local_addr().unwrap().port(), chosen.addr.port());
        }
        // ...and a plain bind of it fails, while a SO_REUSEPORT listener (pingora's) succeeds.
        assert!(std::net::TcpListener::bind(chosen.addr).is_err());
        let listener =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        listener.set_reuse_port(true).unwrap();
        listener.bind(&chosen.addr.into()).unwrap();
        listener.listen(8).unwrap();
        let client = std::net::TcpStream::connect(chosen.addr).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer.as_socket(), client.local_addr().ok());
    }
}
