//! A fake v1 service gateway ("v1 broker"): provision, unprovision, bind and
//! unbind with the token and Content-Type checks of the real one, bind and
//! unbind bodies decoded as strictly as vcap-common's `JsonMessage`, the
//! instances and handles it holds, and a switchable [`Mode`] per operation for
//! every failure the gateway has to survive.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::recorded::RecordedRequest;
use super::server::{Handler, Reply, TestServer};

/// Provision endpoint of a v1 gateway (`POST`); unprovision is `DELETE <this>/<id>`,
/// bind `POST <this>/<id>/handles`, unbind `DELETE <this>/<id>/handles/<handle_id>`.
pub const CONFIGURATIONS_PATH: &str = "/gateway/v1/configurations";
/// Header carrying the broker token.
pub const TOKEN_HEADER: &str = "X-VCAP-Service-Token";

/// How the broker answers. Applies to provision via [`MockBroker::set_mode`],
/// to unprovision via [`MockBroker::set_delete_mode`], to bind via
/// [`MockBroker::set_bind_mode`] and to unbind via [`MockBroker::set_unbind_mode`].
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Provision: 200 with a fresh `svc-N` service. Unprovision: 200 `{}` for a
    /// held instance (forgetting its handles), 404 for any other. Bind: 200 with a
    /// fresh `handle-N` on a held instance. Unbind: 200 `{}` for a live handle.
    /// Bind and unbind decode the body strictly first (400, code 30001).
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
    bind_mode: Mutex<Mode>,
    unbind_mode: Mutex<Mode>,
    next_id: AtomicU64,
    next_handle: AtomicU64,
    held: Mutex<Held>,
}

/// What the broker handed out, and what of it still exists.
#[derive(Default)]
struct Held {
    /// Every `service_id` issued, in order.
    issued: Vec<String>,
    /// Every handle id issued, in order.
    issued_handles: Vec<String>,
    /// Live instances and, for each, its live handles in creation order.
    instances: BTreeMap<String, Vec<String>>,
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
            bind_mode: Mutex::new(Mode::Ok),
            unbind_mode: Mutex::new(Mode::Ok),
            next_id: AtomicU64::new(1),
            next_handle: AtomicU64::new(1),
            held: Mutex::new(Held::default()),
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

    /// How `POST /gateway/v1/configurations/<id>/handles` answers from now on.
    pub fn set_bind_mode(&self, mode: Mode) {
        *self.state.bind_mode.lock().expect("mode lock") = mode;
    }

    /// How `DELETE /gateway/v1/configurations/<id>/handles/<handle_id>` answers from now on.
    pub fn set_unbind_mode(&self, mode: Mode) {
        *self.state.unbind_mode.lock().expect("mode lock") = mode;
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
        self.state.held().issued.clone()
    }

    /// The `POST /gateway/v1/configurations/<id>/handles` requests (rejected ones too).
    pub fn bind_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| bind_instance(r).is_some())
            .collect()
    }

    /// The `DELETE /gateway/v1/configurations/<id>/handles/<handle_id>` requests.
    pub fn unbind_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| unbind_target(r).is_some())
            .collect()
    }

    pub fn bind_count(&self) -> usize {
        self.bind_requests().len()
    }

    pub fn unbind_count(&self) -> usize {
        self.unbind_requests().len()
    }

    /// The handle ids this broker handed out in `Ok`/`Delay` bind answers.
    pub fn issued_handles(&self) -> Vec<String> {
        self.state.held().issued_handles.clone()
    }

    /// Whether instance `id` was provisioned here and not unprovisioned since.
    pub fn holds_instance(&self, id: &str) -> bool {
        self.state.held().instances.contains_key(id)
    }

    /// The live handles of instance `instance_id`, in creation order (none for an
    /// instance it does not hold).
    pub fn live_handles(&self, instance_id: &str) -> Vec<String> {
        self.state
            .held()
            .instances
            .get(instance_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Wait (bounded) until at least `n` bind requests arrived.
    pub async fn wait_for_binds(&self, n: usize, timeout: Duration) -> bool {
        super::wait_until(timeout, || self.bind_count() >= n).await
    }

    /// Wait (bounded) until at least `n` unbind requests arrived.
    pub async fn wait_for_unbinds(&self, n: usize, timeout: Duration) -> bool {
        super::wait_until(timeout, || self.unbind_count() >= n).await
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

impl State {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().expect("held lock")
    }
}

/// Which endpoint a request is for; ids are the path segments as sent.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Endpoint<'a> {
    Provision,
    Unprovision(&'a str),
    Bind(&'a str),
    Unbind(&'a str, &'a str),
}

fn endpoint(req: &RecordedRequest) -> Option<Endpoint<'_>> {
    let path = req.path_only().strip_prefix(CONFIGURATIONS_PATH)?;
    if path.is_empty() {
        return (req.method == "POST").then_some(Endpoint::Provision);
    }
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return None;
    }
    match (req.method.as_str(), segments.as_slice()) {
        ("DELETE", [id]) => Some(Endpoint::Unprovision(id)),
        ("POST", [id, "handles"]) => Some(Endpoint::Bind(id)),
        ("DELETE", [id, "handles", handle]) => Some(Endpoint::Unbind(id, handle)),
        _ => None,
    }
}

fn is_provision(req: &RecordedRequest) -> bool {
    endpoint(req) == Some(Endpoint::Provision)
}

fn delete_id(req: &RecordedRequest) -> Option<&str> {
    match endpoint(req)? {
        Endpoint::Unprovision(id) => Some(id),
        _ => None,
    }
}

fn bind_instance(req: &RecordedRequest) -> Option<&str> {
    match endpoint(req)? {
        Endpoint::Bind(id) => Some(id),
        _ => None,
    }
}

fn unbind_target(req: &RecordedRequest) -> Option<(&str, &str)> {
    match endpoint(req)? {
        Endpoint::Unbind(id, handle) => Some((id, handle)),
        _ => None,
    }
}

async fn handle(state: &State, req: RecordedRequest) -> Reply {
    let Some(endpoint) = endpoint(&req) else {
        return Reply::json(404, &json!({"code": 404, "description": "Not found"}));
    };
    let mode = match endpoint {
        Endpoint::Provision => &state.mode,
        Endpoint::Unprovision(_) => &state.delete_mode,
        Endpoint::Bind(_) => &state.bind_mode,
        Endpoint::Unbind(..) => &state.unbind_mode,
    };
    let mode = mode.lock().expect("mode lock").clone();
    if mode.is_transport_failure() {
        return transport_failure(&mode);
    }
    if let Some(reject) = check(state, &req) {
        return reject;
    }
    match mode {
        Mode::Ok => ok_reply(state, &req, endpoint),
        Mode::Delay(d) => {
            tokio::time::sleep(d).await;
            ok_reply(state, &req, endpoint)
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

fn ok_reply(state: &State, req: &RecordedRequest, endpoint: Endpoint<'_>) -> Reply {
    match endpoint {
        Endpoint::Provision => provision_reply(state, req),
        Endpoint::Unprovision(id) => {
            let id = percent_decode(id);
            match state.held().instances.remove(&id) {
                Some(_) => Reply::json(200, &json!({})),
                None => instance_not_found(&id),
            }
        }
        Endpoint::Bind(_) => bind_reply(state, req),
        Endpoint::Unbind(..) => unbind_reply(state, req),
    }
}

fn provision_reply(state: &State, req: &RecordedRequest) -> Reply {
    let sent = req.try_json().unwrap_or(Value::Null);
    let id = format!("svc-{}", state.next_id.fetch_add(1, Ordering::SeqCst));
    {
        let mut held = state.held();
        held.issued.push(id.clone());
        held.instances.insert(id.clone(), Vec::new());
    }
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

/// Like vcap-services-base, the instance is the body's `service_id`, not the path's.
fn bind_reply(state: &State, req: &RecordedRequest) -> Reply {
    let body = match decode(
        req,
        &[
            ("service_id", Kind::String),
            ("label", Kind::String),
            ("email", Kind::String),
            ("binding_options", Kind::Any),
        ],
        &[("app_id", Kind::String)],
    ) {
        Ok(body) => body,
        Err(reject) => return reject,
    };
    let instance = body["service_id"].as_str().unwrap_or_default().to_string();
    let mut held = state.held();
    let Some(handles) = held.instances.get_mut(&instance) else {
        return instance_not_found(&instance);
    };
    let handle = format!(
        "handle-{}",
        state.next_handle.fetch_add(1, Ordering::SeqCst)
    );
    handles.push(handle.clone());
    held.issued_handles.push(handle.clone());
    Reply::json(
        200,
        &json!({
            "service_id": handle,
            "configuration": {"service_id": instance, "binding_options": body["binding_options"]},
            "credentials": {"host": "127.0.0.1", "port": 5002, "name": instance,
                            "user": handle, "password": format!("pw-{handle}")},
        }),
    )
}

/// Like vcap-services-base, the ids are the body's, not the path's.
fn unbind_reply(state: &State, req: &RecordedRequest) -> Reply {
    let body = match decode(
        req,
        &[
            ("service_id", Kind::String),
            ("handle_id", Kind::String),
            ("binding_options", Kind::Any),
        ],
        &[],
    ) {
        Ok(body) => body,
        Err(reject) => return reject,
    };
    let instance = body["service_id"].as_str().unwrap_or_default();
    let handle = body["handle_id"].as_str().unwrap_or_default();
    let mut held = state.held();
    let Some(handles) = held.instances.get_mut(instance) else {
        return instance_not_found(instance);
    };
    let Some(at) = handles.iter().position(|h| h == handle) else {
        return Reply::json(
            404,
            &json!({"code": 30300, "description": format!("{handle} not found")}),
        );
    };
    handles.remove(at);
    Reply::json(200, &json!({}))
}

/// The echo gateway's "instance not found" (32102).
fn instance_not_found(id: &str) -> Reply {
    Reply::json(
        404,
        &json!({"code": 32102, "description": format!("Could not find instance: {id}")}),
    )
}

#[derive(Clone, Copy)]
enum Kind {
    String,
    Any,
}

/// vcap-common's `JsonMessage.decode`: the body must be a JSON object; keys whose
/// value is `null` count as absent; every required key must be there, and each
/// present key of a known type must have it; unknown keys are ignored. Any
/// failure is the gateway's 400 "Malformatted request" (30001).
fn decode(
    req: &RecordedRequest,
    required: &[(&str, Kind)],
    optional: &[(&str, Kind)],
) -> Result<Value, Reply> {
    let malformed = || {
        Reply::json(
            400,
            &json!({"code": 30001, "description": "Malformatted request"}),
        )
    };
    let Some(Value::Object(mut fields)) = req.try_json() else {
        return Err(malformed());
    };
    fields.retain(|_, v| !v.is_null());
    for (name, kind) in required {
        if !fields.contains_key(*name) {
            return Err(malformed());
        }
        if matches!(kind, Kind::String) && !fields[*name].is_string() {
            return Err(malformed());
        }
    }
    for (name, kind) in optional {
        if matches!(kind, Kind::String) && fields.get(*name).is_some_and(|v| !v.is_string()) {
            return Err(malformed());
        }
    }
    Ok(Value::Object(fields))
}

/// `%XX` decoding of a path segment (a `+` stays a plus).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok());
        if let (b'%', Some(Ok(b))) = (bytes[i], hex.map(|h| u8::from_str_radix(h, 16))) {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
