//! Small reqwest helpers speaking to the gateway the way the seed's curl
//! does; raw-socket helpers are re-exported from [`super::raw`].

use std::time::Duration;

use serde_json::{json, Value};

#[allow(unused_imports)] // not every test file uses them
pub use super::raw::{keep_alive_pair, pipelined, raw_exchange, raw_http, RawResponse};

/// The endpoint the gateway serves itself.
pub const CREATE_PATH: &str = "/v2/service_instances";
/// What the seed's curl sends as Content-Type.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
/// Upper bound on any one request from these helpers.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A fully read response.
#[derive(Clone)]
pub struct Response {
    pub status: u16,
    /// Lower-case names, in reqwest's (grouped) order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Shows the body as text: byte lists are unreadable in assertion failures.
impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &self.text())
            .finish()
    }
}

impl Response {
    /// The body as JSON; panics (with status and body) when it is not JSON.
    pub fn json(&self) -> Value {
        self.try_json().unwrap_or_else(|| {
            panic!(
                "response body is not JSON (status {}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    pub fn try_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// Anything usable as a request body: JSON values are serialized, text and
/// bytes are sent verbatim (so malformed JSON can be sent).
pub trait IntoBody {
    fn into_body(self) -> Vec<u8>;
}

impl IntoBody for &Value {
    fn into_body(self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl IntoBody for Value {
    fn into_body(self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl IntoBody for &str {
    fn into_body(self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl IntoBody for String {
    fn into_body(self) -> Vec<u8> {
        self.into_bytes()
    }
}

impl IntoBody for &[u8] {
    fn into_body(self) -> Vec<u8> {
        self.to_vec()
    }
}

impl IntoBody for Vec<u8> {
    fn into_body(self) -> Vec<u8> {
        self
    }
}

/// A reqwest client that ignores proxy settings from the environment.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .expect("reqwest client")
}

/// A valid create body for the seeded plan and space.
pub fn create_body(name: &str) -> Value {
    json!({
        "name": name,
        "space_guid": super::gateway::SPACE_GUID,
        "service_plan_guid": super::gateway::PLAN_GUID,
    })
}

/// `POST {base_url}/v2/service_instances` with `Authorization: bearer <token>`
/// (when given) and the form Content-Type, like the seed's curl.
pub async fn create(base_url: &str, token: Option<&str>, body: impl IntoBody) -> Response {
    let mut headers = vec![("content-type", FORM_CONTENT_TYPE.to_string())];
    if let Some(token) = token {
        headers.push(("authorization", format!("bearer {token}")));
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    send("POST", &join(base_url, CREATE_PATH), &headers, body).await
}

/// `GET {url}` with an optional bearer token.
pub async fn get(url: &str, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    send("GET", url, &headers, Vec::new()).await
}

/// Any request, panicking on transport errors.
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl IntoBody,
) -> Response {
    try_send(method, url, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e:?}"))
}

/// Any request; transport errors (refused, reset, timeout) come back as `Err`.
pub async fn try_send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl IntoBody,
) -> Result<Response, reqwest::Error> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("valid method");
    let bodyless = method == reqwest::Method::GET || method == reqwest::Method::HEAD;
    let mut req = http_client().request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = body.into_body();
    // GET/HEAD with nothing to send go out without a body (no Content-Length).
    if !(bodyless && body.is_empty()) {
        req = req.body(body);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp.bytes().await?.to_vec();
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// `base` without a trailing slash, then `path`.
pub fn join(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}
