//! The hyper-based loopback server under both mocks: records every request,
//! asks a handler how to reply (answer, hang, close, reset), and stops with
//! all its connections when the handle drops.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

use super::recorded::RecordedRequest;

/// What a handler wants done with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer with this status, headers and body.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Never answer; the connection stays open until the server drops.
    Hang,
    /// Close the connection (FIN) without answering.
    Close,
    /// Abort the connection (RST, via SO_LINGER=0) without answering.
    Reset,
}

impl Reply {
    /// `status` with a JSON body and `Content-Type: application/json`.
    pub fn json(status: u16, body: &serde_json::Value) -> Reply {
        Reply::raw(status, body.to_string(), "application/json")
    }

    /// `status` with `body` verbatim; an empty `content_type` sends none.
    pub fn raw(status: u16, body: impl Into<Vec<u8>>, content_type: &str) -> Reply {
        let mut headers = Vec::new();
        if !content_type.is_empty() {
            headers.push(("content-type".to_string(), content_type.to_string()));
        }
        Reply::Respond {
            status,
            headers,
            body: body.into(),
        }
    }
}

/// Boxed future a handler returns.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Decides the reply for each (already recorded) request.
pub type Handler = Arc<dyn Fn(RecordedRequest) -> ReplyFuture + Send + Sync>;

/// A running loopback server; dropping it aborts the accept loop and every
/// connection task (hanging ones included).
pub struct TestServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Bind 127.0.0.1:0 and serve on the current tokio runtime; [`Self::addr`]
    /// is the port the kernel picked.
    pub async fn start(handler: Handler) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(accept_loop(listener, handler, requests.clone()));
        TestServer {
            addr,
            requests,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// Forget the requests received so far.
    pub fn clear_requests(&self) {
        self.requests.lock().expect("requests lock").clear();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts until aborted; the `JoinSet` owns the connection tasks so that
/// aborting this task aborts them too.
async fn accept_loop(
    listener: TcpListener,
    handler: Handler,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, _)) => {
                conns.spawn(serve_connection(stream, handler.clone(), requests.clone()));
            }
            // e.g. EMFILE: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// How a handler's Close/Reset reaches the connection task.
#[derive(Default)]
struct Abort {
    notify: Notify,
    reset: AtomicBool,
}

async fn serve_connection(
    stream: TcpStream,
    handler: Handler,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
) {
    // A second descriptor of the same socket: after hyper's is gone, it lets
    // a Reset set SO_LINGER=0 so the final close sends RST.
    let Ok((stream, twin)) = split_twin(stream) else {
        return;
    };
    let abort = Arc::new(Abort::default());
    let service_abort = abort.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        let requests = requests.clone();
        let abort = service_abort.clone();
        async move {
            let recorded = record(req).await?;
            requests
                .lock()
                .expect("requests lock")
                .push(recorded.clone());
            match handler(recorded).await {
                Reply::Respond {
                    status,
                    headers,
                    body,
                } => Ok::<_, hyper::Error>(build_response(status, &headers, body)),
                Reply::Hang => std::future::pending().await,
                reply @ (Reply::Close | Reply::Reset) => {
                    abort
                        .reset
                        .store(matches!(reply, Reply::Reset), Ordering::SeqCst);
                    abort.notify.notify_one();
                    std::future::pending().await
                }
            }
        }
    });
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = abort.notify.notified() => {}
    }
    if abort.reset.load(Ordering::SeqCst) {
        if let Ok(twin) = TcpStream::from_std(twin) {
            let _ = twin.set_zero_linger();
        }
    }
}

fn split_twin(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let twin = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, twin))
}

/// Read the whole request (hyper has already parsed the head).
async fn record(req: Request<Incoming>) -> Result<RecordedRequest, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes().to_vec();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| parts.uri.to_string());
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    Ok(RecordedRequest {
        method: parts.method.as_str().to_string(),
        path,
        headers,
        body,
    })
}

fn build_response(
    status: u16,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(status);
    for (k, v) in headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .expect("mock response must be valid (status 100..=999, valid header names)")
}
