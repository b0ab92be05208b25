//! Loopback test-support library for the black-box integration tests.
//!
//! Every `tests/*.rs` file compiles this module on its own and uses only part
//! of it, hence the crate-wide `dead_code` allowance.
#![allow(dead_code)]

pub mod broker;
pub mod cc;
pub mod cc_v3;
pub mod client;
pub mod gateway;
pub mod json;
pub mod postgres;
pub mod raw;
pub mod recorded;
pub mod server;
pub mod store;
pub mod token;
pub mod uaa;
pub mod upstream;

use std::future::Future;
use std::time::{Duration, Instant};

/// A 127.0.0.1 port nothing listens on, for the rest of this test binary: a
/// socket is bound to it and never listens, so connecting is refused, and no
/// one can take the port meanwhile (the kernel's `bind(0)` for a mock or a
/// gateway skips a bound port; a released one it could hand out again).
pub fn refused_port() -> u16 {
    static HELD: std::sync::Mutex<Vec<socket2::Socket>> = std::sync::Mutex::new(Vec::new());
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    socket.bind(&loopback.into()).expect("bind 127.0.0.1:0");
    let port = socket
        .local_addr()
        .expect("local_addr")
        .as_socket()
        .expect("an IP address")
        .port();
    HELD.lock().unwrap_or_else(|e| e.into_inner()).push(socket);
    port
}

/// Poll `cond` every 20 ms until it holds or `timeout` passes; returns
/// whether it held. For effects the gateway causes in the background.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Like [`wait_until`] with an async condition.
pub async fn wait_until_async<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
