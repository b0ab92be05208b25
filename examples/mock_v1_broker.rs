//! A small, fast v1 service gateway ("v1 broker") for load tests: a standalone process that
//! answers `POST /gateway/v1/configurations` with a provision answer holding a fresh
//! `service_id`, and `DELETE /gateway/v1/configurations/<id>` with `{}`.
//!
//! Run: `cargo run --release --example mock_v1_broker -- [LISTEN] [TOKEN]`
//! (defaults `127.0.0.1:9001` and `changeechotoken`, the demo config's broker). The load
//! harness (`benches/load/run.sh`) starts it pinned to a core with `taskset`.
//!
//! It does what the in-repo test broker (`tests/support/broker.rs`) does on its `Ok` path —
//! the real gateway's `Content-Type` and `X-VCAP-Service-Token` checks, `configuration`
//! echoing the request's `plan` and `version` — on one thread, without recording requests,
//! so that it stays cheap beside the load generator.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;

const CONFIGURATIONS_PATH: &str = "/gateway/v1/configurations";

struct State {
    token: String,
    next_id: AtomicU64,
    /// Distinguishes the ids of two runs of this process.
    run: u32,
}

/// The fields of the provision request the answer echoes.
#[derive(Deserialize)]
struct Provision<'a> {
    #[serde(borrow, default)]
    plan: Option<&'a str>,
    #[serde(borrow, default)]
    version: Option<&'a str>,
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "null".into())
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let provision = req.method() == Method::POST && path == CONFIGURATIONS_PATH;
    let unprovision = req.method() == Method::DELETE
        && path
            .strip_prefix(CONFIGURATIONS_PATH)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|id| !id.is_empty() && !id.contains('/'));
    if !provision && !unprovision {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            r#"{"code":404,"description":"Not found"}"#,
        ));
    }
    let headers = req.headers();
    let json_type = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    // The real gateway checks the Content-Type of provision requests only.
    if provision && !json_type {
        return Ok(reply(
            StatusCode::BAD_REQUEST,
            r#"{"code":30000,"description":"Invalid Content-Type"}"#,
        ));
    }
    let authorized = headers
        .get("x-vcap-service-token")
        .is_some_and(|v| v.as_bytes() == state.token.as_bytes());
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, "{}")),
    };
    if !authorized {
        return Ok(reply(
            StatusCode::UNAUTHORIZED,
            r#"{"code":30100,"description":"Not authorized"}"#,
        ));
    }
    if unprovision {
        return Ok(reply(StatusCode::OK, "{}"));
    }
    let Ok(sent) = serde_json::from_slice::<Provision<'_>>(&body) else {
        return Ok(reply(
            StatusCode::BAD_REQUEST,
            r#"{"code":30001,"description":"Invalid request body"}"#,
        ));
    };
    let n = state.next_id.fetch_add(1, Ordering::Relaxed);
    let id = format!("svc-{:x}-{n}", state.run);
    let plan = sent.plan.map_or_else(|| "null".into(), json_str);
    let version = sent.version.map_or_else(|| "null".into(), json_str);
    let answer = format!(
        r#"{{"service_id":"{id}","configuration":{{"plan":{plan},"version":{version}}},"credentials":{{"host":"127.0.0.1","port":5002,"name":"{id}"}},"dashboard_url":"http://dashboard.example.com/{id}"}}"#
    );
    Ok(reply(StatusCode::OK, answer))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:9001".into())
        .parse()?;
    let token = args.next().unwrap_or_else(|| "changeechotoken".into());
    let state = Arc::new(State {
        token,
        next_id: AtomicU64::new(1),
        run: std::process::id(),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        eprintln!("mock_v1_broker listening on http://{listen}");
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("mock_v1_broker: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(state.clone(), req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
