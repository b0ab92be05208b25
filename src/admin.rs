//! The operations listener, separate from the API port: `GET /metrics`, `GET /healthz`,
//! `GET /readyz`, `POST /-/reload`, and nothing else. It runs as a background service with its
//! own accept loop, so it keeps answering (readiness 503) through a graceful shutdown, when
//! pingora's listeners have stopped accepting.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::Runtime;
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::store::Store;

/// Longest a readiness probe waits on the store.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the admin endpoints read.
pub struct AdminState {
    pub runtime: Arc<ArcSwap<Runtime>>,
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn Store>,
    /// `None` when there is no config file to reload (the demo).
    pub reloader: Option<Arc<Reloader>>,
    pub shutting_down: AtomicBool,
}

pub struct AdminService {
    listener: Mutex<Option<std::net::TcpListener>>,
    state: Arc<AdminState>,
}

/// Binds the admin address now, so a taken port fails the start. `SO_REUSEPORT` lets the new
/// process of a graceful upgrade (`upgrading`) bind it while the old one still answers there;
/// because the kernel would then silently share the port with anyone else who set it too, a
/// normal start first checks that nothing answers on the port.
pub fn bind(addr: SocketAddr, upgrading: bool) -> Result<std::net::TcpListener, String> {
    let fail = |e: std::io::Error| format!("server.admin_listen: cannot listen on {addr}: {e}");
    if !upgrading && someone_listens(addr) {
        return Err(format!("server.admin_listen: {addr} is already in use"));
    }
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    socket.set_reuse_port(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(128).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    Ok(socket.into())
}

/// True when a connection to `addr` (or loopback, for a wildcard address) is accepted.
fn someone_listens(addr: SocketAddr) -> bool {
    let mut probe = addr;
    if probe.ip().is_unspecified() {
        probe.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    std::net::TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok()
}

impl AdminService {
    pub fn new(listener: std::net::TcpListener, state: Arc<AdminState>) -> Self {
        AdminService {
            listener: Mutex::new(Some(listener)),
            state,
        }
    }
}

#[async_trait]
impl BackgroundService for AdminService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let std_listener = self.listener.lock().ok().and_then(|mut l| l.take());
        let Some(listener) = std_listener.and_then(|l| tokio::net::TcpListener::from_std(l).ok())
        else {
            log::error!("Admin listener unavailable; /metrics, /healthz, /readyz and /-/reload are not served.");
            return;
        };
        let mut watching = true;
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let state = self.state.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                    });
                }
                changed = shutdown.changed(), if watching => {
                    // Keep serving until the process exits; readiness now says 503.
                    if changed.is_err() || *shutdown.borrow() {
                        self.state.shutting_down.store(true, Ordering::SeqCst);
                        watching = false;
                    }
                }
            }
        }
    }
}

fn reply(
    status: u16,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = body.into();
    Ok(Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .header("Content-Length", body.len())
        .body(Full::new(body))
        .unwrap_or_default())
}

fn json(status: u16, value: serde_json::Value) -> Result<Response<Full<Bytes>>, Infallible> {
    reply(status, "application/json", value.to_string())
}

async fn handle(
    state: Arc<AdminState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => reply(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            state.metrics.render(),
        ),
        (&Method::GET, "/healthz") => json(200, serde_json::json!({"status": "ok"})),
        (&Method::GET, "/readyz") => match not_ready_reason(&state).await {
            None => json(200, serde_json::json!({"status": "ready"})),
            Some(reason) => json(
                503,
                serde_json::json!({"status": "not ready", "reason": reason}),
            ),
        },
        (&Method::POST, "/-/reload") => match &state.reloader {
            None => json(
                400,
                serde_json::json!({"status": "failed", "error": "no config file to reload"}),
            ),
            Some(reloader) => match reloader.reload("POST /-/reload").await {
                Ok(hash) => json(
                    200,
                    serde_json::json!({"status": "reloaded", "config_hash": hash}),
                ),
                Err(error) => json(400, serde_json::json!({"status": "failed", "error": error})),
            },
        },
        (_, "/metrics" | "/healthz" | "/readyz" | "/-/reload") => {
            json(405, serde_json::json!({"status": "method not allowed"}))
        }
        _ => json(404, serde_json::json!({"status": "not found"})),
    }
}

/// Why the gateway should not get traffic now, or `None` when it should.
async fn not_ready_reason(state: &AdminState) -> Option<String> {
    if state.shutting_down.load(Ordering::SeqCst) {
        return Some("shutting down".into());
    }
    match tokio::time::timeout(STORE_PROBE_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Some(format!("store unavailable: {e}")),
        Err(_) => return Some("store unavailable: no answer within 2 s".into()),
    }
    if !state.runtime.load().keys.keys_loaded() {
        return Some("UAA keys not loaded yet".into());
    }
    // A validated configuration is always loaded once serving: reloads only swap in valid ones.
    None
}
