//! Raw-socket HTTP/1.1 for the tests reqwest can't express: malformed bytes,
//! several requests on one keep-alive connection, pipelining. Every read is
//! bounded by a deadline.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// One parsed HTTP/1.x response.
#[derive(Clone, PartialEq, Eq)]
pub struct RawResponse {
    pub status: u16,
    pub reason: String,
    /// In received order, names as sent.
    pub headers: Vec<(String, String)>,
    /// De-chunked when the response was chunked.
    pub body: Vec<u8>,
}

/// Shows the body as text: byte lists are unreadable in assertion failures.
impl std::fmt::Debug for RawResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawResponse")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("headers", &self.headers)
            .field("body", &self.text())
            .finish()
    }
}

impl RawResponse {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics (with the body) when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", self.text()))
    }
}

/// Write `bytes`, then return everything read until the peer closes or
/// One HTTP/1.1 request as bytes: the request line, `headers` in order, then
/// `Content-Length` when there is a body, then the body.
pub fn request_bytes(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// `timeout` passes (no panic on timeout: the partial bytes are returned).
pub async fn raw_http(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(addr, deadline).await;
    write(&mut stream, bytes, deadline).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(Ok(n)) = timeout_at(deadline, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// Write `bytes`, read one response.
pub async fn raw_exchange(
    addr: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> Result<RawResponse, String> {
    let deadline = Instant::now() + timeout;
    let mut conn = Connection::open(addr, deadline).await;
    conn.send(bytes, deadline).await;
    conn.read_response(deadline).await
}

/// Two requests on one connection, one after the other: write `first`, read
/// its response, write `second`, read its response. `timeout` bounds each.
pub async fn keep_alive_pair(
    addr: SocketAddr,
    first: &[u8],
    second: &[u8],
    timeout: Duration,
) -> (Result<RawResponse, String>, Result<RawResponse, String>) {
    let mut conn = Connection::open(addr, Instant::now() + timeout).await;
    conn.send(first, Instant::now() + timeout).await;
    let one = conn.read_response(Instant::now() + timeout).await;
    if one.is_err() {
        return (one, Err("first exchange failed".to_string()));
    }
    conn.try_send(second, Instant::now() + timeout).await;
    let two = conn.read_response(Instant::now() + timeout).await;
    (one, two)
}

/// Write `bytes` (several requests) in one go, then read up to `count`
/// responses; stops early at close/timeout/garbage, so check `len()`.
pub async fn pipelined(
    addr: SocketAddr,
    bytes: &[u8],
    count: usize,
    timeout: Duration,
) -> Vec<RawResponse> {
    let deadline = Instant::now() + timeout;
    let mut conn = Connection::open(addr, deadline).await;
    conn.send(bytes, deadline).await;
    let mut out = Vec::new();
    while out.len() < count {
        match conn.read_response(deadline).await {
            Ok(r) => out.push(r),
            Err(e) => {
                eprintln!("pipelined: stopped after {} responses: {e}", out.len());
                break;
            }
        }
    }
    out
}

/// A client connection with a read buffer, for custom sequences.
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Connection {
    pub async fn open(addr: SocketAddr, deadline: Instant) -> Connection {
        Connection {
            stream: connect(addr, deadline).await,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Write all of `bytes`; panics on error or deadline.
    pub async fn send(&mut self, bytes: &[u8], deadline: Instant) {
        write(&mut self.stream, bytes, deadline).await;
    }

    /// Write all of `bytes`; false on error or deadline (peer may have closed).
    pub async fn try_send(&mut self, bytes: &[u8], deadline: Instant) -> bool {
        matches!(
            timeout_at(deadline, self.stream.write_all(bytes)).await,
            Ok(Ok(()))
        )
    }

    /// Read the next non-1xx response.
    pub async fn read_response(&mut self, deadline: Instant) -> Result<RawResponse, String> {
        loop {
            match parse_response(&self.buf, self.eof)? {
                Some((resp, used)) => {
                    self.buf.drain(..used);
                    if (100..200).contains(&resp.status) {
                        continue;
                    }
                    return Ok(resp);
                }
                None if self.eof => {
                    return Err(format!(
                        "connection closed mid-response; have {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ))
                }
                None => self.fill(deadline).await?,
            }
        }
    }

    async fn fill(&mut self, deadline: Instant) -> Result<(), String> {
        let mut chunk = [0u8; 8192];
        match timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => Err(format!(
                "timed out waiting for a response; have {:?}",
                String::from_utf8_lossy(&self.buf)
            )),
            Ok(Err(e)) if self.buf.is_empty() => Err(format!("read error: {e}")),
            // A reset after some bytes: parse what we have as if closed.
            Ok(Err(_)) | Ok(Ok(0)) => {
                self.eof = true;
                Ok(())
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }
}

async fn connect(addr: SocketAddr, deadline: Instant) -> TcpStream {
    timeout_at(deadline, TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| panic!("connect {addr}: timed out"))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

async fn write(stream: &mut TcpStream, bytes: &[u8], deadline: Instant) {
    timeout_at(deadline, stream.write_all(bytes))
        .await
        .expect("write timed out")
        .expect("write failed");
}

/// Parse one response from the front of `buf`: `Ok(None)` when more bytes
/// are needed, `Ok(Some((response, bytes_used)))` when complete. With
/// `eof`, a response without length framing ends at the end of `buf`.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<(RawResponse, usize)>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 status line: {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {status_line:?}"))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line: {line:?}"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let body_start = head_end + 4;
    let rest = &buf[body_start..];
    let value = |name: &str| {
        headers
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let (body, used) = if (100..200).contains(&status) || status == 204 || status == 304 {
        (Vec::new(), 0)
    } else if value("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        match dechunk(rest)? {
            Some(done) => done,
            None => return Ok(None),
        }
    } else if let Some(len) = value("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad Content-Length: {len:?}"))?;
        if rest.len() < len {
            return Ok(None);
        }
        (rest[..len].to_vec(), len)
    } else if eof {
        (rest.to_vec(), rest.len())
    } else {
        return Ok(None);
    };
    let response = RawResponse {
        status,
        reason,
        headers,
        body,
    };
    Ok(Some((response, body_start + used)))
}

/// Decode a chunked body: `Ok(None)` when incomplete, else (body, bytes used).
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line_end) = find(&buf[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&buf[pos..pos + line_end]).into_owned();
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size line: {line:?}"))?;
        pos += line_end + 2;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let Some(end) = find(&buf[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += end + 2;
                if end == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
