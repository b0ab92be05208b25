//! Reading UAA's discovery document and `/token_keys` over pingora's HTTP connector (the same
//! client and TLS trust store as the broker calls). Only the two fixed paths under the
//! configured URL are ever read: nothing from a token (`jku`, `x5u`) or a document
//! (`jwks_uri`) is followed, and neither are redirects.

use crate::endpoint::Endpoint;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::jwks;
use crate::auth::keys::VerifyKey;

pub(crate) const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
pub(crate) const TOKEN_KEYS_PATH: &str = "/token_keys";
/// Far above any real discovery document or key set.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// What one fetch asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FetchOptions {
    /// Deadline of the whole fetch, both documents.
    pub timeout: Duration,
}

/// A key set as read from UAA.
pub(crate) struct Fetched {
    pub keys: Vec<VerifyKey>,
    /// From the discovery document.
    pub issuer: String,
    /// Identifies the content, so an unchanged re-read keeps the verification cache.
    pub fingerprint: [u8; 32],
    /// Keys that were left out, and why.
    pub skipped: Vec<String>,
}

/// Where keys come from; a trait so the refresh logic is testable without a network.
#[async_trait]
pub(crate) trait Fetch: Send + Sync {
    async fn fetch(&self, options: FetchOptions) -> Result<Fetched, String>;
}

/// A parsed `uaa_url`. No DNS here: the name is resolved at every fetch, so the gateway starts
/// while UAA's name does not resolve and follows address changes.
/// UAA's address: an [`Endpoint`] without credentials, query or fragment.
pub(crate) fn uaa_endpoint(raw: &str) -> Result<Endpoint, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("not a URL ({e}): {raw:?}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    Endpoint::parse(raw)
}

pub(crate) struct HttpFetcher {
    endpoint: Endpoint,
    /// Made on first use: it loads the platform's CA certificates.
    connector: OnceLock<Connector>,
}

impl HttpFetcher {
    pub(crate) fn new(endpoint: Endpoint) -> HttpFetcher {
        HttpFetcher {
            endpoint,
            connector: OnceLock::new(),
        }
    }

    /// One GET on a fresh connection (fetches are rare, and a pooled connection would be tied
    /// to whichever runtime made it). Only a 200 counts.
    async fn get(&self, path: &str, timeout: Duration) -> Result<BytesMut, String> {
        let e = &self.endpoint;
        let url = format!("{}{path}", e.display);
        let fail = |what: String| format!("GET {url}: {what}");
        let addr = tokio::net::lookup_host((e.host.as_str(), e.port))
            .await
            .map_err(|err| fail(format!("cannot resolve {}: {err}", e.host)))?
            .next()
            .ok_or_else(|| fail(format!("{} resolves to nothing", e.host)))?;
        let mut peer = HttpPeer::new(addr, e.tls, e.host.clone());
        peer.options.connection_timeout = Some(timeout);
        peer.options.total_connection_timeout = Some(timeout);
        peer.options.read_timeout = Some(timeout);
        peer.options.write_timeout = Some(timeout);
        let connector = self.connector.get_or_init(|| Connector::new(None));
        let (mut session, _) = connector
            .get_http_session(&peer)
            .await
            .map_err(|err| fail(err.etype().as_str().to_string()))?;
        let full_path = format!("{}{path}", e.base_path);
        let exchange = async {
            let mut req = RequestHeader::build("GET", full_path.as_bytes(), Some(4))?;
            req.insert_header("Host", &e.authority)?;
            req.insert_header("Accept", "application/json")?;
            req.insert_header("Connection", "close")?;
            session.write_request_header(Box::new(req)).await?;
            session.finish_request_body().await?;
            session.read_response_header().await?;
            let status = session.response_header().map_or(0, |h| h.status.as_u16());
            let mut body = BytesMut::new();
            while let Some(chunk) = session.read_response_body().await? {
                if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                    return Ok((status, None));
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, Box<pingora::Error>>((status, Some(body)))
        };
        match exchange.await {
            Ok((200, Some(body))) => Ok(body),
            Ok((200, None)) => Err(fail(format!("larger than {MAX_DOCUMENT_BYTES} bytes"))),
            Ok((status, _)) => Err(fail(format!("status {status}"))),
            Err(err) => Err(fail(err.etype().as_str().to_string())),
        }
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
}

#[async_trait]
impl Fetch for HttpFetcher {
    async fn fetch(&self, options: FetchOptions) -> Result<Fetched, String> {
        let work = async {
            // Read even when `[auth] issuer` is set: which configuration is in force can change
            // with a reload, the shared key set should not depend on it.
            let body = self.get(DISCOVERY_PATH, options.timeout).await?;
            let doc: Discovery = serde_json::from_slice(&body).map_err(|e| {
                format!("{DISCOVERY_PATH}: no issuer in the discovery document ({e})")
            })?;
            if doc.issuer.is_empty() {
                return Err(format!("{DISCOVERY_PATH}: the issuer is empty"));
            }
            let issuer = doc.issuer;
            let body = self.get(TOKEN_KEYS_PATH, options.timeout).await?;
            let (keys, skipped) = jwks::parse(&body)?;
            let mut h = Sha256::new();
            h.update(issuer.as_bytes());
            h.update([0]);
            h.update(&body);
            Ok(Fetched {
                keys,
                issuer,
                fingerprint: h.finalize().into(),
                skipped,
            })
        };
        tokio::time::timeout(options.timeout, work)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", options.timeout)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keeps_a_base_path_and_refuses_credentials() {
        let e = uaa_endpoint("https://login.example.com/uaa/").unwrap();
        assert!(e.tls);
        assert_eq!((e.host.as_str(), e.port), ("login.example.com", 443));
        assert_eq!(e.base_path, "/uaa");
        assert_eq!(e.display, "https://login.example.com/uaa");
        let e = uaa_endpoint("http://127.0.0.1:8081").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.base_path.as_str()),
            ("127.0.0.1:8081", "")
        );
        assert!(uaa_endpoint("https://user:pw@uaa.example.com").is_err());
        assert!(uaa_endpoint("ftp://uaa.example.com").is_err());
        assert!(uaa_endpoint("https://uaa.example.com/?x=1").is_err());
        assert!(Endpoint::parse("uaa.example.com").is_err());
    }

    #[test]
    fn a_name_that_does_not_resolve_is_not_a_config_error() {
        assert!(Endpoint::parse("https://uaa.invalid").is_ok());
    }
}
