//! A tiny HTTP/1.1 server on 127.0.0.1 for the outbound client's tests and its callers':
//! it answers by script, with bytes as raw as a test wants them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::Peer;

/// What the server does with a request it has read.
#[derive(Clone)]
pub(crate) enum Answer {
    /// Writes these bytes and waits for the next request on the connection.
    Raw(Bytes),
    /// Never answers.
    Hang,
    /// Closes the connection without answering.
    Close,
}

impl Answer {
    /// A keep-alive answer with this status and body.
    pub(crate) fn status(status: u16, body: &str) -> Answer {
        Answer::Raw(Bytes::from(format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )))
    }
}

type Script = dyn Fn(usize, usize) -> Answer + Send + Sync;

/// One request as read: its head exactly as sent (request line and headers, up to and with
/// the blank line) and its body's bytes.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

/// Answers each request by (connection number, request number on that connection), both
/// from 0, and remembers every request it read. Stops when dropped.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub(crate) async fn start(
        script: impl Fn(usize, usize) -> Answer + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (connections.clone(), received.clone());
        let script: Arc<Script> = Arc::new(script);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, conn, script.clone(), seen.clone()));
            }
        });
        Server {
            addr,
            connections,
            received,
            task,
        }
    }

    /// This server as a fresh-connection peer.
    pub(crate) fn peer(&self) -> Peer {
        Peer::new(self.addr, false, "127.0.0.1", self.addr.to_string())
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Every request head read so far, lower-cased.
    pub(crate) fn heads(&self) -> Vec<String> {
        self.received()
            .into_iter()
            .map(|r| r.head.to_lowercase())
            .collect()
    }

    /// Every request read so far, head as sent and body, in arrival order.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn serve(
    mut stream: TcpStream,
    conn: usize,
    script: Arc<Script>,
    received: Arc<Mutex<Vec<Received>>>,
) {
    for n in 0.. {
        let Some(request) = read_request(&mut stream).await else {
            return;
        };
        received.lock().unwrap().push(request);
        match script(conn, n) {
            Answer::Raw(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Answer::Hang => std::future::pending().await,
            Answer::Close => return,
        }
    }
}

/// One request (a `Content-Length` body at most); `None` at end of stream.
async fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 1024];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length: usize = head
        .to_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut rest = vec![0u8; (end + length).saturating_sub(buf.len())];
    stream.read_exact(&mut rest).await.ok()?;
    let mut body = buf[end..].to_vec();
    body.extend_from_slice(&rest);
    // Bytes past this body belong to a pipelined request, which these tests never send.
    body.truncate(length);
    Some(Received { head, body })
}
