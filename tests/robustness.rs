//! HTTP robustness at the edge: keep-alive connections stay in sync after early rejections,
//! body limits (413), ambiguous framing (400 + close), hostile JSON (400, never 500),
//! `Expect: 100-continue` and HTTP/1.0.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

use support::broker::MockBroker;
use support::cc::assert_cc_error_shape;
use support::client::{create_body, RawResponse, CREATE_PATH, FORM_CONTENT_TYPE};
use support::gateway::{Gateway, GatewayConfig, BROKER_TOKEN, PLAN_GUID, SPACE_GUID};
use support::raw::{parse_response, request_bytes};
use support::token::{self, Claims};
use support::upstream::MockUpstream;

/// Bound on every single wait.
const T: Duration = Duration::from_secs(15);
/// Sent as the second request on a connection; brokergate (no upstream) answers 404.
const SECOND_ID: &str = "second-request";

// ---------------------------------------------------------------------------------------
// A raw connection that can also tell "closed" from "still open".

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let stream = timeout(T, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Write all of `bytes`; false when the peer has gone (reset/closed).
    async fn send(&mut self, bytes: &[u8]) -> bool {
        matches!(timeout(T, self.stream.write_all(bytes)).await, Ok(Ok(())))
    }

    async fn fill(&mut self, deadline: Instant) -> Result<(), String> {
        let mut chunk = [0u8; 16384];
        match timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => Err(format!(
                "timed out; have {:?}",
                String::from_utf8_lossy(&self.buf)
            )),
            // A reset counts as the end: keep what was read before it.
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.eof = true;
                Ok(())
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }

    /// The next response, 1xx included, within `within`.
    async fn next(&mut self, within: Duration) -> Result<RawResponse, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some((resp, used)) = parse_response(&self.buf, self.eof)? {
                self.buf.drain(..used);
                return Ok(resp);
            }
            if self.eof {
                return Err(format!(
                    "connection closed; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
            self.fill(deadline).await?;
        }
    }

    /// The next final (non-1xx) response.
    async fn response(&mut self) -> Result<RawResponse, String> {
        loop {
            let resp = self.next(T).await?;
            if !(100..200).contains(&resp.status) {
                return Ok(resp);
            }
        }
    }

    /// Reads until the peer closes (bounded): `Ok(bytes received after the last
    /// parsed response)`, or `Err` when the connection is still open after `T`.
    async fn rest_until_eof(&mut self) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + T;
        while !self.eof {
            self.fill(deadline)
                .await
                .map_err(|e| format!("connection still open {T:?} after the answer ({e})"))?;
        }
        Ok(std::mem::take(&mut self.buf))
    }
}

// ---------------------------------------------------------------------------------------
// Requests.

/// `body` as chunks of at most `size` bytes, with the final zero chunk.
fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in body.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A create request with `Authorization: bearer <token>` (when given), the form
/// Content-Type like the seed's curl, and a Content-Length body.
fn create_request(token: Option<&str>, body: &[u8]) -> Vec<u8> {
    let auth = token.map(|t| format!("bearer {t}"));
    let mut headers = vec![
        ("Host", "api.example.org"),
        ("Content-Type", FORM_CONTENT_TYPE),
    ];
    if let Some(auth) = auth.as_deref() {
        headers.push(("Authorization", auth));
    }
    request_bytes("POST", CREATE_PATH, &headers, body)
}

/// The same with a chunked body and no Content-Length.
fn chunked_create_request(token: Option<&str>, body: &[u8], chunk: usize) -> Vec<u8> {
    let auth = token.map(|t| format!("bearer {t}"));
    let mut headers = vec![
        ("Host", "api.example.org"),
        ("Content-Type", FORM_CONTENT_TYPE),
        ("Transfer-Encoding", "chunked"),
    ];
    if let Some(auth) = auth.as_deref() {
        headers.push(("Authorization", auth));
    }
    let mut out = request_bytes("POST", CREATE_PATH, &headers, b"");
    out.extend_from_slice(&chunked(body, chunk));
    out
}

/// `GET /v2/info` tagged with [`SECOND_ID`].
fn second_request() -> Vec<u8> {
    request_bytes(
        "GET",
        "/v2/info",
        &[("Host", "x"), ("X-VCAP-Request-ID", SECOND_ID)],
        b"",
    )
}

/// A valid create body for the seeded plan, padded through `parameters` to
/// exactly `len` bytes.
fn padded_create_body(name: &str, len: usize) -> Vec<u8> {
    let mut v = create_body(name);
    v["parameters"] = json!({"pad": ""});
    let base = v.to_string().len();
    assert!(len >= base, "{len} < minimal body {base}");
    v["parameters"]["pad"] = json!("p".repeat(len - base));
    let out = v.to_string().into_bytes();
    assert_eq!(out.len(), len);
    out
}

fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

// ---------------------------------------------------------------------------------------
// Assertions.

/// The proper answer to [`second_request`] from a gateway without upstream.
fn assert_second_answer(resp: &RawResponse) {
    let body = assert_cc_error_shape(resp, 404);
    assert_eq!(
        body,
        json!({"code": 10000, "description": "Unknown request", "error_code": "CF-NotFound"}),
        "{resp:?}"
    );
    let id = resp.header("x-vcap-request-id").unwrap_or_default();
    assert!(
        id.starts_with(SECOND_ID),
        "the answer must be the second request's (X-VCAP-Request-ID {id:?}): {resp:?}"
    );
}

async fn start(max_body: u64) -> (MockBroker, Gateway) {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let gateway = Gateway::start(GatewayConfig::new(&broker.url()).max_body_bytes(max_body)).await;
    (broker, gateway)
}

/// How the requests of a sync check are written.
#[derive(Debug, Clone, Copy)]
enum Writes {
    /// Each request once the previous answer has arrived.
    OneByOne,
    /// The first request's head, a pause, then its body; the next request once
    /// the answer has arrived.
    SplitBody,
    /// All three in one write: the body pipelined with the next requests.
    Pipelined,
}

/// On one connection: `first` (answered `first_status`), then [`second_request`]
/// (404 CF-NotFound tagged with its own request id), then a valid create (201).
///
/// One by one and with a split body, every answer must be the proper answer to
/// its own request. Pipelined, the gateway may instead close right after the
/// first answer (RFC 9112 §9.3.2 lets a server drop pipelined requests; clients
/// retry them), but it must never answer anything else; with `strict_pipelining`
/// it must answer all three.
async fn assert_in_sync(
    addr: SocketAddr,
    first: &[u8],
    first_status: u16,
    how: Writes,
    strict_pipelining: bool,
) {
    let third = create_request(
        Some(&token::valid_token()),
        &create_body(&unique_name("after")).to_string().into_bytes(),
    );
    let second = second_request();
    let mut conn = Conn::open(addr).await;
    match how {
        Writes::OneByOne => {
            assert!(conn.send(first).await);
        }
        Writes::SplitBody => {
            let head_end = first.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            assert!(conn.send(&first[..head_end]).await);
            tokio::time::sleep(Duration::from_millis(150)).await;
            assert!(conn.send(&first[head_end..]).await);
        }
        Writes::Pipelined => {
            assert!(conn.send(&[first, &second, &third].concat()).await);
        }
    }
    let one = conn
        .response()
        .await
        .unwrap_or_else(|e| panic!("{how:?}: first: {e}"));
    assert_cc_error_shape(&one, first_status);

    if matches!(how, Writes::Pipelined) {
        let rest: [&[u8]; 2] = [&second, &third];
        for (i, request) in rest.iter().enumerate() {
            match conn.response().await {
                Ok(resp) => assert_follow_up(i, &resp),
                Err(e) if conn.eof && conn.buf.is_empty() && !strict_pipelining => {
                    // Dropped, not misread: a client retries on a new connection.
                    eprintln!(
                        "pipelined request {} after a {first_status} was dropped: {e}",
                        i + 2
                    );
                    let mut retry = Conn::open(addr).await;
                    for (j, request) in rest.iter().enumerate().skip(i) {
                        assert!(retry.send(request).await);
                        assert_follow_up(j, &retry.response().await.unwrap());
                    }
                    return;
                }
                Err(e) => panic!(
                    "{how:?}: no proper answer to pipelined request {} ({:?}) after {one:?}: {e}",
                    i + 2,
                    String::from_utf8_lossy(request)
                ),
            }
        }
        return;
    }

    assert!(
        conn.send(&second).await,
        "{how:?}: connection gone after {one:?}"
    );
    let two = conn
        .response()
        .await
        .unwrap_or_else(|e| panic!("{how:?}: second, after {one:?}: {e}"));
    assert_second_answer(&two);
    assert!(conn.send(&third).await);
    let three = conn
        .response()
        .await
        .unwrap_or_else(|e| panic!("{how:?}: third: {e}"));
    assert_eq!(three.status, 201, "{how:?}: {three:?}");
}

/// Checks the answer to the second (`i == 0`) or third (`i == 1`) request of a sync check.
fn assert_follow_up(i: usize, resp: &RawResponse) {
    if i == 0 {
        assert_second_answer(resp);
    } else {
        assert_eq!(resp.status, 201, "third request: {resp:?}");
    }
}

async fn assert_in_sync_every_way(addr: SocketAddr, first: &[u8], first_status: u16) {
    for how in [Writes::OneByOne, Writes::SplitBody, Writes::Pipelined] {
        assert_in_sync(addr, first, first_status, how, false).await;
    }
}

// ---------------------------------------------------------------------------------------
// Keep-alive stays in sync after early answers.

#[tokio::test]
async fn keep_alive_in_sync_after_401_without_token() {
    let (_broker, gateway) = start(65536).await;
    let body = create_body("no-token").to_string().into_bytes();
    assert_in_sync_every_way(gateway.addr(), &create_request(None, &body), 401).await;
}

#[tokio::test]
async fn keep_alive_in_sync_after_401_with_invalid_or_expired_token() {
    let (_broker, gateway) = start(65536).await;
    let body = create_body("bad-token").to_string().into_bytes();
    let forged = Claims::new().sign_with_secret("wrong-secret");
    assert_in_sync_every_way(gateway.addr(), &create_request(Some(&forged), &body), 401).await;
    // The Python client's case: an expired token, retried on the same connection.
    let expired = Claims::new().expires_in(-600).sign();
    assert_in_sync_every_way(gateway.addr(), &create_request(Some(&expired), &body), 401).await;
}

#[tokio::test]
async fn keep_alive_in_sync_after_401_with_large_and_chunked_bodies() {
    let (_broker, gateway) = start(65536).await;
    // Larger than one read buffer, still under the limit: drained over several reads.
    let big = padded_create_body("big-no-token", 40_000);
    assert_in_sync_every_way(gateway.addr(), &create_request(None, &big), 401).await;
    let body = create_body("chunked-no-token").to_string().into_bytes();
    assert_in_sync_every_way(gateway.addr(), &chunked_create_request(None, &body, 7), 401).await;
    assert_in_sync_every_way(
        gateway.addr(),
        &chunked_create_request(None, &big, 4096),
        401,
    )
    .await;
}

#[tokio::test]
async fn keep_alive_in_sync_after_404_on_unowned_post_with_body() {
    let (_broker, gateway) = start(65536).await;
    let headers = [("Host", "x"), ("Content-Type", "application/json")];
    let body = br#"{"name":"my-app","space_guid":"s"}"#;
    let post = request_bytes("POST", "/v2/apps", &headers, body);
    assert_in_sync_every_way(gateway.addr(), &post, 404).await;
    let put = request_bytes("PUT", "/v2/apps/abc", &headers, body);
    assert_in_sync_every_way(gateway.addr(), &put, 404).await;
    let mut chunked_post = request_bytes(
        "POST",
        "/v2/apps",
        &[("Host", "x"), ("Transfer-Encoding", "chunked")],
        b"",
    );
    chunked_post.extend_from_slice(&chunked(body, 5));
    assert_in_sync_every_way(gateway.addr(), &chunked_post, 404).await;
}

#[tokio::test]
async fn keep_alive_in_sync_after_403_read_only_token() {
    let (broker, gateway) = start(65536).await;
    let read_only = Claims::new().scopes(&["cloud_controller.read"]).sign();
    let body = create_body("read-only").to_string().into_bytes();
    assert_in_sync_every_way(
        gateway.addr(),
        &create_request(Some(&read_only), &body),
        403,
    )
    .await;
    // Only the three valid creates reached the broker.
    assert_eq!(broker.provision_count(), 3);
}

#[tokio::test]
async fn keep_alive_in_sync_after_400_parse_error() {
    let (_broker, gateway) = start(65536).await;
    let first = create_request(Some(&token::valid_token()), b"{\"name\": ");
    assert_in_sync_every_way(gateway.addr(), &first, 400).await;
}

#[tokio::test]
async fn early_401_with_body_over_the_limit_never_desyncs() {
    // The body cannot be drained within bounds: the gateway must close, and
    // whatever happens the body must never be parsed as a request.
    let (_broker, gateway) = start(1024).await;
    let body = padded_create_body("too-big-no-token", 8000);
    let mut conn = Conn::open(gateway.addr()).await;
    conn.send(&[create_request(None, &body), second_request()].concat())
        .await;
    let one = conn.response().await.unwrap();
    assert_cc_error_shape(&one, 401);
    match conn.response().await {
        Ok(two) => assert_second_answer(&two),
        Err(e) => {
            assert!(conn.eof, "neither closed nor answered: {e}");
            eprintln!("closed after the 401 (body over the drain limit)");
        }
    }
}

#[tokio::test]
async fn pipelined_requests_behind_an_early_answer_are_all_answered() {
    // Stricter than RFC 9112 requires: the requests pipelined behind the early
    // answer's body are answered in order on the same connection.
    let (_broker, gateway) = start(65536).await;
    let body = create_body("pipelined").to_string().into_bytes();
    let read_only = Claims::new().scopes(&["cloud_controller.read"]).sign();
    let unowned = request_bytes("POST", "/v2/apps", &[("Host", "x")], &body);
    for (first, status) in [
        (create_request(None, &body), 401),
        (create_request(Some(&read_only), &body), 403),
        (unowned, 404),
    ] {
        assert_in_sync(gateway.addr(), &first, status, Writes::Pipelined, true).await;
    }
}

// ---------------------------------------------------------------------------------------
// Body limit.

/// `resp` is a 413 in CC's shape and the connection then closes without another answer.
async fn assert_413_then_closed(conn: &mut Conn) {
    let resp = conn.response().await.unwrap();
    assert_cc_error_shape(&resp, 413);
    let rest = conn.rest_until_eof().await.unwrap();
    assert!(
        rest.is_empty(),
        "nothing may follow the 413: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test]
async fn body_over_max_body_bytes_is_413_and_closes() {
    let (broker, gateway) = start(1024).await;
    let tok = token::valid_token();

    // Exactly at the limit: served.
    let at_limit = padded_create_body(&unique_name("at-limit"), 1024);
    let mut conn = Conn::open(gateway.addr()).await;
    conn.send(&create_request(Some(&tok), &at_limit)).await;
    let resp = conn.response().await.unwrap();
    assert_eq!(resp.status, 201, "{resp:?}");

    // One byte over, with a pipelined request behind it that must not be answered.
    let over = padded_create_body(&unique_name("over"), 1025);
    let mut conn = Conn::open(gateway.addr()).await;
    conn.send(&[create_request(Some(&tok), &over), second_request()].concat())
        .await;
    assert_413_then_closed(&mut conn).await;

    // Declared too large: answered without waiting for the body.
    let mut head = create_request(Some(&tok), b"");
    head.truncate(head.len() - 2);
    head.extend_from_slice(b"Content-Length: 5000\r\n\r\n");
    let mut conn = Conn::open(gateway.addr()).await;
    conn.send(&head).await;
    assert_413_then_closed(&mut conn).await;

    assert_eq!(broker.provision_count(), 1, "only the body at the limit");
}

#[tokio::test]
async fn chunked_body_over_max_body_bytes_is_413_and_closes() {
    let (broker, gateway) = start(1024).await;
    let tok = token::valid_token();
    for chunk in [100, 1500] {
        let over = padded_create_body(&unique_name("chunked-over"), 1500);
        let mut conn = Conn::open(gateway.addr()).await;
        conn.send(
            &[
                chunked_create_request(Some(&tok), &over, chunk),
                second_request(),
            ]
            .concat(),
        )
        .await;
        assert_413_then_closed(&mut conn).await;
    }
    // Chunked under the limit is fine.
    let ok = padded_create_body(&unique_name("chunked-ok"), 1000);
    let mut conn = Conn::open(gateway.addr()).await;
    conn.send(&chunked_create_request(Some(&tok), &ok, 64))
        .await;
    let resp = conn.response().await.unwrap();
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(broker.provision_count(), 1);
}

// ---------------------------------------------------------------------------------------
// Ambiguous framing.

/// A request with both framings whose chunked reading ends early, hiding a
/// second request (tagged `smuggled`) in what Content-Length counts as body.
fn smuggling_request(
    method: &str,
    target: &str,
    extra: &[(&str, &str)],
    te_first: bool,
) -> Vec<u8> {
    let hidden = "GET /v2/info HTTP/1.1\r\nHost: x\r\nX-VCAP-Request-ID: smuggled\r\n\r\n";
    let body = format!("0\r\n\r\n{hidden}");
    let cl = body.len().to_string();
    let mut headers: Vec<(&str, &str)> = vec![("Host", "x")];
    headers.extend_from_slice(extra);
    if te_first {
        headers.push(("Transfer-Encoding", "chunked"));
        headers.push(("Content-Length", &cl));
    } else {
        headers.push(("Content-Length", &cl));
        headers.push(("Transfer-Encoding", "chunked"));
    }
    let mut out = request_bytes(method, target, &headers, b"");
    out.extend_from_slice(body.as_bytes());
    out
}

/// Exactly one answer, a CC 400, then the connection closes.
async fn assert_framing_rejected(addr: SocketAddr, request: &[u8]) {
    let mut conn = Conn::open(addr).await;
    conn.send(request).await;
    let resp = conn
        .response()
        .await
        .unwrap_or_else(|e| panic!("no answer to {:?}: {e}", String::from_utf8_lossy(request)));
    assert_cc_error_shape(&resp, 400);
    let rest = conn
        .rest_until_eof()
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(request)));
    assert!(
        rest.is_empty(),
        "a second answer (smuggled request?) followed: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_400_and_closes() {
    let (broker, gateway) = start(65536).await;
    let tok = format!("bearer {}", token::valid_token());
    for te_first in [false, true] {
        // No token: framing is checked before authentication.
        let r = smuggling_request("POST", CREATE_PATH, &[], te_first);
        assert_framing_rejected(gateway.addr(), &r).await;
        let r = smuggling_request("POST", CREATE_PATH, &[("Authorization", &tok)], te_first);
        assert_framing_rejected(gateway.addr(), &r).await;
        // Routes brokergate does not own.
        let r = smuggling_request("GET", "/v2/info", &[], te_first);
        assert_framing_rejected(gateway.addr(), &r).await;
        let r = smuggling_request("POST", "/v2/apps", &[], te_first);
        assert_framing_rejected(gateway.addr(), &r).await;
    }
    // Content-Length: 0 with a chunked body.
    let mut r = request_bytes(
        "POST",
        CREATE_PATH,
        &[
            ("Host", "x"),
            ("Authorization", &tok),
            ("Content-Length", "0"),
            ("Transfer-Encoding", "chunked"),
        ],
        b"",
    );
    r.extend_from_slice(&chunked(
        &create_body(&unique_name("cl0")).to_string().into_bytes(),
        16,
    ));
    assert_framing_rejected(gateway.addr(), &r).await;
    assert_eq!(broker.provision_count(), 0, "{:?}", broker.requests());
}

#[tokio::test]
async fn content_length_with_transfer_encoding_never_reaches_the_upstream() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let upstream = MockUpstream::start().await;
    let gateway = Gateway::start(
        GatewayConfig::new(&broker.url())
            .upstream(&upstream.url())
            .static_authorization(),
    )
    .await;
    for te_first in [false, true] {
        for (method, target) in [("POST", "/v2/apps"), ("GET", "/v2/info")] {
            let r = smuggling_request(method, target, &[], te_first);
            assert_framing_rejected(gateway.addr(), &r).await;
        }
    }
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
}

// ---------------------------------------------------------------------------------------
// Hostile JSON.

async fn post_create(addr: SocketAddr, body: &[u8]) -> RawResponse {
    let mut conn = Conn::open(addr).await;
    conn.send(&create_request(Some(&token::valid_token()), body))
        .await;
    conn.response()
        .await
        .unwrap_or_else(|e| panic!("no answer to {:?}: {e}", String::from_utf8_lossy(body)))
}

fn assert_parse_error(resp: &RawResponse, what: &str) {
    assert_eq!(resp.status, 400, "{what}: {resp:?}");
    let body = assert_cc_error_shape(resp, 400);
    assert_eq!(body["code"], 1001, "{what}: {resp:?}");
    assert_eq!(
        body["error_code"], "CF-MessageParseError",
        "{what}: {resp:?}"
    );
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .starts_with("Request invalid due to parse error: "),
        "{what}: {resp:?}"
    );
}

/// The rest of a valid body after `"name": <value>`.
fn rest_fields() -> String {
    format!(r#""space_guid":"{SPACE_GUID}","service_plan_guid":"{PLAN_GUID}""#)
}

#[tokio::test]
async fn malformed_json_is_400_message_parse_error_and_the_gateway_keeps_serving() {
    let (broker, gateway) = start(65536).await;
    let rest = rest_fields();
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("truncated".into(), b"{\"name\": \"x\", ".to_vec()),
        ("open brace".into(), b"{".to_vec()),
        (
            "trailing comma".into(),
            format!(r#"{{"name":"x",{rest},}}"#).into_bytes(),
        ),
        (
            "missing comma".into(),
            format!(r#"{{"name":"x" {rest}}}"#).into_bytes(),
        ),
        ("not json".into(), b"name=x&space_guid=y".to_vec()),
        ("single quotes".into(), b"{'name':'x'}".to_vec()),
        (
            "trailing garbage".into(),
            format!(r#"{{"name":"x",{rest}}} {{}}"#).into_bytes(),
        ),
        ("empty".into(), Vec::new()),
        ("whitespace".into(), b"  \n ".to_vec()),
        ("array".into(), b"[]".to_vec()),
        ("string".into(), b"\"x\"".to_vec()),
        ("number".into(), b"5".to_vec()),
        ("null".into(), b"null".to_vec()),
        ("true".into(), b"true".to_vec()),
        (
            "nan".into(),
            format!(r#"{{"name":NaN,{rest}}}"#).into_bytes(),
        ),
        ("nul byte".into(), b"{\"name\":\"x\"\0}".to_vec()),
        (
            "lone surrogate".into(),
            format!(r#"{{"name":"\ud800",{rest}}}"#).into_bytes(),
        ),
        (
            "10000 nested arrays".into(),
            "[".repeat(10_000).into_bytes(),
        ),
        (
            "10000 closed nested arrays".into(),
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
        ),
        (
            "deeply nested parameters".into(),
            format!(
                r#"{{"name":"deep",{rest},"parameters":{}1{}}}"#,
                "{\"a\":".repeat(5000),
                "}".repeat(5000)
            )
            .into_bytes(),
        ),
        (
            "deeply nested gateway_data".into(),
            format!(
                r#"{{"name":"deep2",{rest},"gateway_data":{}{}}}"#,
                "[".repeat(3000),
                "]".repeat(3000)
            )
            .into_bytes(),
        ),
        (
            "huge exponent name".into(),
            format!(r#"{{"name":1e999,{rest}}}"#).into_bytes(),
        ),
        (
            "huge integer name".into(),
            format!(r#"{{"name":{},{rest}}}"#, "9".repeat(500)).into_bytes(),
        ),
        (
            "negative huge exponent in tags".into(),
            format!(r#"{{"name":"h",{rest},"tags":[-1e999]}}"#).into_bytes(),
        ),
        (
            "wrong types".into(),
            json!({"name": 5, "space_guid": [], "service_plan_guid": {}, "parameters": "x",
                   "tags": "t"})
            .to_string()
            .into_bytes(),
        ),
    ];
    let mut bad_utf8 = b"{\"name\":\"".to_vec();
    bad_utf8.extend_from_slice(b"\xff\xfe\xc3\x28");
    bad_utf8.extend_from_slice(format!("\",{rest}}}").as_bytes());
    cases.push(("non-UTF-8 in a string".into(), bad_utf8));
    let mut latin1 = b"{\"name\":\"caf".to_vec();
    latin1.push(0xe9);
    latin1.extend_from_slice(format!("\",{rest}}}").as_bytes());
    cases.push(("latin-1 text".into(), latin1));
    cases.push(("bare 0xff".into(), vec![0xff, 0xfe, 0xfd]));

    for (what, body) in &cases {
        let resp = post_create(gateway.addr(), body).await;
        assert_parse_error(&resp, what);
    }
    assert!(
        gateway_alive(&gateway),
        "gateway died: {}",
        gateway.stderr()
    );
    assert_eq!(broker.provision_count(), 0, "{:?}", broker.requests());

    let resp = post_create(
        gateway.addr(),
        &create_body(&unique_name("still-serving"))
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(resp.status, 201, "{resp:?}");
}

fn gateway_alive(gateway: &Gateway) -> bool {
    // `try_exit_status` needs `&mut`; a connect is enough to prove it listens.
    std::net::TcpStream::connect_timeout(&gateway.addr(), Duration::from_secs(2)).is_ok()
}

#[tokio::test]
async fn duplicate_top_level_keys_are_400_message_parse_error() {
    // Two readers of one body must never disagree on which value counts.
    let (broker, gateway) = start(65536).await;
    let rest = rest_fields();
    let cases = [
        format!(r#"{{"name":"first","name":"second",{rest}}}"#),
        format!(r#"{{"name":"dup-plan",{rest},"service_plan_guid":"{PLAN_GUID}"}}"#),
    ];
    for body in &cases {
        let resp = post_create(gateway.addr(), body.as_bytes()).await;
        assert_parse_error(&resp, body);
    }
    assert_eq!(
        broker.provision_count(),
        0,
        "{:?}",
        broker.provision_requests()
    );
}

#[tokio::test]
async fn parameters_reach_the_broker_byte_for_byte_even_with_duplicate_keys() {
    // `parameters` is the broker's business: forwarded exactly, never re-serialized.
    let (broker, gateway) = start(65536).await;
    let params = r#"{"a":1,"a":2, "b" : [1.50]}"#;
    let body = format!(
        r#"{{"name":"{}",{},"parameters":{params}}}"#,
        unique_name("dup-params"),
        rest_fields()
    );
    let resp = post_create(gateway.addr(), body.as_bytes()).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    let sent = broker.provision_requests();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0]
            .body_str()
            .contains(&format!(r#""parameters":{params}"#)),
        "{}",
        sent[0].body_str()
    );
}

#[tokio::test]
async fn huge_integer_in_parameters_is_rejected_or_forwarded_exactly() {
    // Never a 500; and never silently rounded on the way to the broker.
    let (broker, gateway) = start(65536).await;
    // Valid JSON numbers beyond f64 (a 30-digit integer, 1e400) are the broker's to read.
    let digits = "123456789012345678901234567890,\"e\":1e400";
    let body = format!(
        r#"{{"name":"{}",{},"parameters":{{"n":{digits}}}}}"#,
        unique_name("huge-int"),
        rest_fields()
    );
    let resp = post_create(gateway.addr(), body.as_bytes()).await;
    if resp.status == 400 {
        assert_parse_error(&resp, "huge integer");
        return;
    }
    assert_eq!(resp.status, 201, "{resp:?}");
    let sent = broker.provision_requests();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].body_str().contains(&format!(":{digits}")),
        "the broker must get the number as the client sent it, got {:?}",
        sent[0].body_str()
    );
}

// ---------------------------------------------------------------------------------------
// Expect: 100-continue and HTTP/1.0.

#[tokio::test]
async fn expect_100_continue_completes_with_201() {
    let (broker, gateway) = start(65536).await;
    let tok = format!("bearer {}", token::valid_token());
    let headers = |len: usize| {
        format!(
            "POST {CREATE_PATH} HTTP/1.1\r\nHost: api.example.org\r\nUser-Agent: curl/8.5.0\r\n\
             Accept: */*\r\nAuthorization: {tok}\r\nContent-Type: {FORM_CONTENT_TYPE}\r\n\
             Content-Length: {len}\r\nExpect: 100-continue\r\n\r\n"
        )
    };

    // As curl does it: the head, up to 1 s for "100 Continue", then the body anyway.
    let body = padded_create_body(&unique_name("expect"), 6000);
    let mut conn = Conn::open(gateway.addr()).await;
    conn.send(headers(body.len()).as_bytes()).await;
    match conn.next(Duration::from_secs(1)).await {
        Ok(interim) => assert_eq!(
            interim.status, 100,
            "no final answer before the body was sent: {interim:?}"
        ),
        Err(e) => {
            assert!(e.starts_with("timed out"), "{e}");
            eprintln!("no 100 Continue within 1 s; the body goes anyway, as curl does");
        }
    }
    assert!(conn.send(&body).await);
    let resp = conn.response().await.unwrap();
    assert_eq!(resp.status, 201, "{resp:?}");
    assert!(!resp.json()["entity"]["name"].as_str().unwrap().is_empty());
    // Still in sync.
    assert!(conn.send(&second_request()).await);
    assert_second_answer(&conn.response().await.unwrap());

    // Head and body in one write.
    let body = padded_create_body(&unique_name("expect-one-write"), 3000);
    let mut conn = Conn::open(gateway.addr()).await;
    conn.send(&[headers(body.len()).as_bytes(), &body].concat())
        .await;
    let resp = conn.response().await.unwrap();
    assert_eq!(resp.status, 201, "{resp:?}");

    let sent = broker.provision_requests();
    assert_eq!(sent.len(), 2);
    assert!(sent[0].json()["parameters"]["pad"].as_str().unwrap().len() > 4000);
}

#[tokio::test]
async fn http_1_0_without_keep_alive_is_answered_and_closed() {
    let (_broker, gateway) = start(65536).await;

    let mut conn = Conn::open(gateway.addr()).await;
    conn.send(b"GET /v2/info HTTP/1.0\r\nHost: x\r\n\r\n").await;
    let resp = conn.response().await.unwrap();
    assert_cc_error_shape(&resp, 404);
    assert_eq!(conn.rest_until_eof().await.unwrap(), b"");

    let body = create_body(&unique_name("http10")).to_string();
    let request = format!(
        "POST {CREATE_PATH} HTTP/1.0\r\nHost: x\r\nAuthorization: bearer {}\r\n\
         Content-Type: {FORM_CONTENT_TYPE}\r\nContent-Length: {}\r\n\r\n{body}",
        token::valid_token(),
        body.len()
    );
    let mut conn = Conn::open(gateway.addr()).await;
    conn.send(request.as_bytes()).await;
    let resp = conn.response().await.unwrap();
    assert_eq!(resp.status, 201, "{resp:?}");
    assert_eq!(conn.rest_until_eof().await.unwrap(), b"");

    let request = format!(
        "POST {CREATE_PATH} HTTP/1.0\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut conn = Conn::open(gateway.addr()).await;
    conn.send(request.as_bytes()).await;
    let resp = conn.response().await.unwrap();
    assert_cc_error_shape(&resp, 401);
    assert_eq!(conn.rest_until_eof().await.unwrap(), b"");
}
