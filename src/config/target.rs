//! A validated HTTP(S) endpoint: parsed once at load time and resolved to a socket address,
//! so no request ever does blocking DNS (pingora's `HttpPeer::new` would).

use std::net::{SocketAddr, ToSocketAddrs};

use super::ConfigError;

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
        let url = url::Url::parse(raw)
            .map_err(|e| ConfigError::invalid(key, format!("not a URL ({e}): {raw:?}")))?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(ConfigError::invalid(
                    key,
                    format!("scheme must be http or https, not {other:?}"),
                ))
            }
        };
        let host = url
            .host_str()
            .ok_or_else(|| ConfigError::invalid(key, "URL has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| ConfigError::invalid(key, "URL has no port"))?;
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| ConfigError::invalid(key, format!("cannot resolve {host}: {e}")))?
            .next()
            .ok_or_else(|| ConfigError::invalid(key, format!("{host} resolves to nothing")))?;
        let authority = match url.port() {
            Some(p) if host.contains(':') => format!("[{host}]:{p}"),
            Some(p) => format!("{host}:{p}"),
            None if host.contains(':') => format!("[{host}]"),
            None => host.clone(),
        };
        let base_path = url.path().trim_end_matches('/').to_string();
        let display_url = format!("{}://{}{}", url.scheme(), authority, base_path);
        Ok(Target {
            display_url,
            addr,
            tls,
            host,
            authority,
            base_path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_userinfo_and_trailing_slash() {
        let t = Target::parse("brokers[0].url", "http://user:pw@127.0.0.1:9001/base/").unwrap();
        assert_eq!(t.display_url, "http://127.0.0.1:9001/base");
        assert_eq!(t.base_path, "/base");
        assert!(!t.tls);
        assert_eq!(t.addr.port(), 9001);
    }

    #[test]
    fn default_ports_and_ipv6() {
        let t = Target::parse("k", "https://[::1]").unwrap();
        assert!(t.tls);
        assert_eq!(t.addr.port(), 443);
        assert_eq!(t.authority, "[::1]");
        assert_eq!(t.host, "::1");
    }

    #[test]
    fn rejects_other_schemes_and_names_the_key() {
        let e = Target::parse("upstream.url", "ftp://127.0.0.1").unwrap_err();
        assert!(e.to_string().starts_with("upstream.url:"), "{e}");
    }
}
