//! A validated HTTP(S) endpoint: parsed once at load time and resolved to a socket address,
//! so no request ever does blocking DNS (pingora's `HttpPeer::new` would).

use std::net::{SocketAddr, ToSocketAddrs};

use super::ConfigError;
use crate::endpoint::Endpoint;

#[derive(Debug, Clone)]
pub struct Target {
    /// The URL without userinfo or trailing slash, safe to show in errors.
    pub display_url: String,
    pub addr: SocketAddr,
    pub tls: bool,
    /// TLS server name and `Host` header value.
    pub host: String,
    /// `host[:port]` as a client would send it in `Host`.
    pub authority: String,
    /// Path prefix from the URL, without trailing slash ("" for none).
    pub base_path: String,
}

impl Target {
    /// Parses and resolves `raw` (`http://` or `https://`). `key` names the config key in errors.
    pub fn parse(key: &str, raw: &str) -> Result<Target, ConfigError> {
        let e = Endpoint::parse(raw).map_err(|reason| ConfigError::invalid(key, reason))?;
        let addr = (e.host.as_str(), e.port)
            .to_socket_addrs()
            .map_err(|err| ConfigError::invalid(key, format!("cannot resolve {}: {err}", e.host)))?
            .next()
            .ok_or_else(|| ConfigError::invalid(key, format!("{} resolves to nothing", e.host)))?;
        Ok(Target {
            display_url: e.display,
            addr,
            tls: e.tls,
            host: e.host,
            authority: e.authority,
            base_path: e.base_path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_and_keeps_the_display_form() {
        let t = Target::parse("brokers[0].url", "http://user:pw@127.0.0.1:9001/base/").unwrap();
        assert_eq!(t.display_url, "http://127.0.0.1:9001/base");
        assert_eq!(t.addr, "127.0.0.1:9001".parse().unwrap());
    }

    #[test]
    fn errors_name_the_key() {
        let e = Target::parse("upstream.url", "ftp://127.0.0.1").unwrap_err();
        assert!(e.to_string().starts_with("upstream.url:"), "{e}");
        let e = Target::parse("brokers[1].url", "http://no-such-host.invalid").unwrap_err();
        assert!(
            e.to_string().starts_with("brokers[1].url: cannot resolve"),
            "{e}"
        );
    }
}
