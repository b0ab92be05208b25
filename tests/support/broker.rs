//! A fake v1 service gateway ("v1 broker"): provision and unprovision with the
//! token and Content-Type checks of the real one, and a switchable [`Mode`]
//! for every failure the gateway has to survive.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::recorded::RecordedRequest;
use super::server::{Handler, Reply, TestServer};

/// Provision endpoint of a v1 gateway (`POST`); unprovision is `DELETE <this>/<id>`.
pub const CONFIGURATIONS_PATH: &str = "/gateway/v1/configurations";
/// Header carrying the broker token.
pub const TOKEN_HEADER: &str = "X-VCAP-Service-Token";

/// How the broker answers. Applies to provision via [`MockBroker::set_mode`]
/// and to unprovision via [`MockBroker::set_delete_mode`].
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Provision: 200 with a fresh `svc-N` service; unprovision: 200 `{}`.
    Ok,
    /// This status with this JSON body (`Content-Type: application/json`).
    Json(u16, Value),
    /// This status, body and Content-Type (empty Content-Type: none sent).
    Raw(u16, String, String),
    /// Sleep, then answer like `Ok`.
    Delay(Duration),
    /// Read the request, never answer; held until the broker drops.
    Hang,
    /// Read the request, close the connection without answering (FIN).
    CloseConnection,
    /// Read the request, abort the connection without answering (RST).
    Reset,
}

impl Mode {
    /// A v1 error body: `status` with `{"code":code,"description":description}`.
    pub fn error(status: u16, code: i64, description: &str) -> Mode {
        Mode::Json(status, json!({"code": code, "description": description}))
    }

    /// [`Mode::Raw`] without the `to_string()` noise.
    pub fn raw(status: u16, body: impl Into<String>, content_type: impl Into<String>) -> Mode {
        Mode::Raw(status, body.into(), content_type.into())
    }

    /// Transport-level failures happen before any HTTP-level checks.
    fn is_transport_failure(&self) -> bool {
        matches!(self, Mode::Hang | Mode::CloseConnection | Mode::Reset)
    }
}

struct State {
    token: String,
    mode: Mutex<Mode>,
    delete_mode: Mutex<Mode>,
    next_id: AtomicU64,
    issued: Mutex<Vec<String>>,
}

/// A running fake broker on 127.0.0.1; stops when dropped.
pub struct MockBroker {
    server: TestServer,
    state: Arc<State>,
}

impl MockBroker {
    /// Start a broker accepting `token` in `X-VCAP-Service-Token`, in `Mode::Ok`.
    pub async fn start(token: &str) -> MockBroker {
        let state = Arc::new(State {
            token: token.to_string(),
            mode: Mutex::new(Mode::Ok),
            delete_mode: Mutex::new(Mode::Ok),
            next_id: AtomicU64::new(1),
            issued: Mutex::new(Vec::new()),
        });
        let handler_state = state.clone();
        let handler: Handler = Arc::new(move |req| {
            let state = handler_state.clone();
            Box::pin(async move { handle(&state, req).await })
        });
        MockBroker {
            server: TestServer::start(handler).await,
            state,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// How `POST /gateway/v1/configurations` answers from now on.
    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().expect("mode lock") = mode;
    }

    /// How `DELETE /gateway/v1/configurations/<id>` answers from now on.
    pub fn set_delete_mode(&self, mode: Mode) {
        *self.state.delete_mode.lock().expect("mode lock") = mode;
    }

    /// Every request received (rejected ones too), in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }

    pub fn clear_requests(&self) {
        self.server.clear_requests();
    }

    /// The `POST /gateway/v1/configurations` requests.
    pub fn provision_requests(&self) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(is_provision).collect()
    }

    /// The `DELETE /gateway/v1/configurations/<id>` requests.
    pub fn delete_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| delete_id(r).is_some())
            .collect()
    }

    pub fn provision_count(&self) -> usize {
        self.provision_requests().len()
    }

    pub fn delete_count(&self) -> usize {
        self.delete_requests().len()
    }

    /// The `<id>`s of the DELETE requests, in arrival order.
    pub fn deleted_ids(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter_map(|r| delete_id(r).map(str::to_string))
            .collect()
    }

    /// The `service_id`s this broker handed out in `Ok`/`Delay` answers.
    pub fn issued_ids(&self) -> Vec<String> {
        self.state.issued.lock().expect("issued lock").clone()
    }

    /// Wait (bounded) until at least `n` provision requests arrived.
    pub async fn wait_for_provisions(&self, n: usize, timeout: Duration) -> bool {
        super::wait_until(timeout, || self.provision_count() >= n).await
    }

    /// Wait (bounded) until at least `n` delete requests arrived.
    pub async fn wait_for_deletes(&self, n: usize, timeout: Duration) -> bool {
        super::wait_until(timeout, || self.delete_count() >= n).await
    }
}

/// A loopback URL with nothing listening, for the rest of the test binary:
/// connecting is refused (see [`super::refused_port`]).
pub fn refused_url() -> String {
    format!("http://127.0.0.1:{}", super::refused_port())
}

fn is_provision(req: &RecordedRequest) -> bool {
    req.method == "POST" && req.path_only() == CONFIGURATIONS_PATH
}

fn delete_id(req: &RecordedRequest) -> Option<&str> {
    if req.method != "DELETE" {
        return None;
    }
    let id = req
        .path_only()
        .strip_prefix(CONFIGURATIONS_PATH)?
        .strip_prefix('/')?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

async fn handle(state: &State, req: RecordedRequest) -> Reply {
    let provision = is_provision(&req);
    let mode = if provision {
        state.mode.lock().expect("mode lock").clone()
    } else if delete_id(&req).is_some() {
        state.delete_mode.lock().expect("mode lock").clone()
    } else {
        return Reply::json(404, &json!({"code": 404, "description": "Not found"}));
    };
    if mode.is_transport_failure() {
        return transport_failure(&mode);
    }
    if let Some(reject) = check(state, &req) {
        return reject;
    }
    match mode {
        Mode::Ok => ok_reply(state, &req, provision),
        Mode::Delay(d) => {
            tokio::time::sleep(d).await;
            ok_reply(state, &req, provision)
        }
        Mode::Json(status, body) => Reply::json(status, &body),
        Mode::Raw(status, body, content_type) => Reply::raw(status, body, &content_type),
        Mode::Hang | Mode::CloseConnection | Mode::Reset => transport_failure(&mode),
    }
}

fn transport_failure(mode: &Mode) -> Reply {
    match mode {
        Mode::Hang => Reply::Hang,
        Mode::Reset => Reply::Reset,
        _ => Reply::Close,
    }
}

/// The real gateway's `before` filter: Content-Type first, then the token.
fn check(state: &State, req: &RecordedRequest) -> Option<Reply> {
    let media_type = req.header("content-type").map(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    if media_type.as_deref() != Some("application/json") {
        return Some(Reply::json(
            400,
            &json!({"code": 30000, "description": "Invalid Content-Type"}),
        ));
    }
    if req.header(TOKEN_HEADER).as_deref() != Some(state.token.as_str()) {
        return Some(Reply::json(
            401,
            &json!({"code": 30100, "description": "Not authorized"}),
        ));
    }
    None
}

fn ok_reply(state: &State, req: &RecordedRequest, provision: bool) -> Reply {
    if !provision {
        return Reply::json(200, &json!({}));
    }
    let sent = req.try_json().unwrap_or(Value::Null);
    let id = format!("svc-{}", state.next_id.fetch_add(1, Ordering::SeqCst));
    state.issued.lock().expect("issued lock").push(id.clone());
    Reply::json(
        200,
        &json!({
            "service_id": id,
            "configuration": {"plan": sent["plan"], "version": sent["version"]},
            "credentials": {"host": "127.0.0.1", "port": 5002, "name": id},
            "dashboard_url": format!("http://dashboard.example.com/{id}"),
        }),
    )
}
