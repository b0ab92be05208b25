//! An HTTP(S) endpoint parsed from a configured URL: what a client needs to reach it (`host`,
//! `port`, TLS), what it sends (`Host` header, path prefix), and how to show it in errors and
//! logs (without userinfo). No DNS here: callers resolve when it suits them.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    /// Without IPv6 brackets; also the TLS server name.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as a client sends it in `Host`.
    pub authority: String,
    /// Path prefix from the URL, without trailing slash ("" for none).
    pub base_path: String,
    /// The URL without userinfo or trailing slash, safe to show.
    pub display: String,
}

impl Endpoint {
    /// Parses an `http://` or `https://` URL; the error says what is wrong with it.
    pub fn parse(raw: &str) -> Result<Endpoint, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("not a URL ({e}): {raw:?}"))?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(format!("scheme must be http or https, not {other:?}")),
        };
        let host = url
            .host_str()
            .ok_or("URL has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port_or_known_default().ok_or("URL has no port")?;
        let authority = match url.port() {
            Some(p) if host.contains(':') => format!("[{host}]:{p}"),
            Some(p) => format!("{host}:{p}"),
            None if host.contains(':') => format!("[{host}]"),
            None => host.clone(),
        };
        let base_path = url.path().trim_end_matches('/').to_string();
        let display = format!("{}://{authority}{base_path}", url.scheme());
        Ok(Endpoint {
            tls,
            host,
            port,
            authority,
            base_path,
            display,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_userinfo_and_trailing_slash() {
        let e = Endpoint::parse("http://user:pw@127.0.0.1:9001/base/").unwrap();
        assert_eq!(e.display, "http://127.0.0.1:9001/base");
        assert_eq!(
            (e.base_path.as_str(), e.port, e.tls),
            ("/base", 9001, false)
        );
    }

    #[test]
    fn default_ports_and_ipv6() {
        let e = Endpoint::parse("https://[::1]").unwrap();
        assert_eq!((e.port, e.tls), (443, true));
        assert_eq!((e.authority.as_str(), e.host.as_str()), ("[::1]", "::1"));
    }

    #[test]
    fn other_schemes_are_refused() {
        assert!(Endpoint::parse("ftp://127.0.0.1").is_err());
        assert!(Endpoint::parse("127.0.0.1:9001").is_err());
    }
}
