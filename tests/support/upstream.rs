//! A fake "real Cloud Controller" for pass-through tests: answers everything,
//! says where the answer came from, and records what it was sent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::recorded::RecordedRequest;
use super::server::{Handler, Reply, TestServer};

/// Body of `GET /v2/info` on the mock upstream.
pub fn info_body() -> Value {
    json!({"name": "mock-cloud-controller", "api_version": "2.0.0", "from": "upstream"})
}

/// A running fake Cloud Controller on 127.0.0.1; stops when dropped.
pub struct MockUpstream {
    server: TestServer,
    reply: Arc<Mutex<Option<(u16, Value)>>>,
}

impl MockUpstream {
    /// Every request gets 200 `{"from":"upstream","method":..,"path":..}`
    /// (`path` with its query), except `/v2/info` which gets [`info_body`].
    pub async fn start() -> MockUpstream {
        let reply: Arc<Mutex<Option<(u16, Value)>>> = Arc::new(Mutex::new(None));
        let handler_reply = reply.clone();
        let handler: Handler = Arc::new(move |req: RecordedRequest| {
            let fixed = handler_reply.lock().expect("reply lock").clone();
            Box::pin(async move {
                if let Some((status, body)) = fixed {
                    return Reply::json(status, &body);
                }
                if req.path_only() == "/v2/info" {
                    return Reply::json(200, &info_body());
                }
                Reply::json(
                    200,
                    &json!({"from": "upstream", "method": req.method, "path": req.path}),
                )
            })
        });
        MockUpstream {
            server: TestServer::start(handler).await,
            reply,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Answer every request with this status and JSON body from now on
    /// (`None`: back to the default answers).
    pub fn set_reply(&self, reply: Option<(u16, Value)>) {
        *self.reply.lock().expect("reply lock") = reply;
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }

    pub fn clear_requests(&self) {
        self.server.clear_requests();
    }
}
