//! Reading UAA's discovery document and `/token_keys` through the outbound client (the same
//! client and TLS trust store as the broker calls). Only the two fixed paths under the
//! configured URL are ever read: nothing from a token (`jku`, `x5u`) or a document
//! (`jwks_uri`) is followed, and neither are redirects.

use crate::endpoint::Endpoint;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::jwks;
use crate::auth::keys::VerifyKey;
use crate::outbound::{Client, ErrorKind, Idempotency, Limits, Peer, Request};

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
    client: OnceLock<Client>,
}

impl HttpFetcher {
    pub(crate) fn new(endpoint: Endpoint) -> HttpFetcher {
        HttpFetcher {
            endpoint,
            client: OnceLock::new(),
        }
    }

    /// One GET on a fresh connection (fetches are rare, and a pooled connection would be tied
    /// to whichever runtime made it). Only a 200 counts; a redirect is just another status.
    async fn get(&self, path: &str, timeout: Duration) -> Result<Bytes, String> {
        let e = &self.endpoint;
        let url = format!("{}{path}", e.display);
        let fail = |what: String| format!("GET {url}: {what}");
        let addr = tokio::net::lookup_host((e.host.as_str(), e.port))
            .await
            .map_err(|err| fail(format!("cannot resolve {}: {err}", e.host)))?
            .next()
            .ok_or_else(|| fail(format!("{} resolves to nothing", e.host)))?;
        let peer = Peer::new(addr, e.tls, e.host.as_str(), e.authority.as_str());
        let limits = Limits {
            connect_timeout: timeout,
            total_timeout: timeout,
            max_body_bytes: MAX_DOCUMENT_BYTES,
        };
        let full_path = format!("{}{path}", e.base_path);
        let request = Request::new(Method::GET, &full_path, Idempotency::Idempotent)
            .header("Accept", "application/json");
        let client = self.client.get_or_init(Client::new);
        match client.send(&peer, &limits, request).await {
            Ok(r) if r.status == StatusCode::OK => Ok(r.body),
            Ok(r) => Err(fail(format!("status {}", r.status.as_u16()))),
            Err(err) if err.kind() == ErrorKind::TooLarge => {
                Err(fail(format!("larger than {MAX_DOCUMENT_BYTES} bytes")))
            }
            Err(err) => Err(fail(err.to_string())),
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
    use crate::outbound::test_server::{Answer, Server};

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

    fn fetcher(server: &Server) -> HttpFetcher {
        HttpFetcher::new(uaa_endpoint(&format!("http://{}/uaa", server.addr)).unwrap())
    }

    #[tokio::test]
    async fn only_a_200_counts_and_a_redirect_is_not_followed() {
        let server = Server::start(|_, _| {
            Answer::Raw(Bytes::from_static(
                b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n",
            ))
        })
        .await;
        let e = fetcher(&server)
            .get(TOKEN_KEYS_PATH, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.ends_with("/uaa/token_keys: status 302"), "{e}");
        let heads = server.heads();
        assert_eq!(heads.len(), 1, "{heads:#?}");
        assert!(heads[0].starts_with("get /uaa/token_keys "), "{heads:#?}");
        assert!(heads[0].contains("\r\nconnection: close\r\n"), "{heads:#?}");
    }

    #[tokio::test]
    async fn a_document_over_one_mib_is_refused() {
        let answer = Answer::status(200, &" ".repeat(MAX_DOCUMENT_BYTES + 1));
        let server = Server::start(move |_, _| answer.clone()).await;
        let e = fetcher(&server)
            .get(DISCOVERY_PATH, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.ends_with("larger than 1048576 bytes"), "{e}");
    }
}
