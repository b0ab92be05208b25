//! Loopback test-support library for the black-box integration tests.
//!
//! Every `tests/*.rs` file compiles this module on its own and uses only part
//! of it, hence the crate-wide `dead_code` allowance.
#![allow(dead_code)]

pub mod broker;
pub mod client;
pub mod gateway;
pub mod raw;
pub mod recorded;
pub mod server;
pub mod store;
pub mod token;
pub mod uaa;
pub mod upstream;

use std::future::Future;
use std::time::{Duration, Instant};

/// A 127.0.0.1 port that nothing listened on a moment ago: bind port 0, read
/// the port the kernel picked, release it. Racy by nature, good enough here.
///
/// Never hands out the same port twice in one test binary: tests run in
/// parallel threads, and a gateway's listeners share a port silently with
/// another gateway's (`SO_REUSEPORT`) instead of failing to bind.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !handed.contains(&port) {
            handed.push(port);
            return port;
        }
    }
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
