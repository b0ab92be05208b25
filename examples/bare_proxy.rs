//! A bare pingora 0.9 reverse proxy — no filters, one upstream — to separate the framework's
//! own cost from brokergate's in the load harness (`benches/load/run.sh`).
//!
//! Run: `cargo run --release --example bare_proxy -- [LISTEN] [UPSTREAM] [THREADS]`
//! (defaults `127.0.0.1:6188`, `127.0.0.1:8081`, `1`); then
//! `curl http://127.0.0.1:6188/anything` is forwarded, unchanged, to the upstream over pingora's
//! pooled keep-alive connections. `RUST_LOG=warn` (the default here) keeps it quiet; SIGINT
//! stops it at once, SIGTERM after a 1 s grace period.

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::{Opt, ServerConf};

/// The same allocator as brokergate's binary, so the comparison isolates brokergate's filters.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct BareProxy {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for BareProxy {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:6188".into());
    let upstream: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8081".into())
        .parse()?;
    let threads: usize = args.next().map_or(Ok(1), |t| t.parse())?;

    let conf = ServerConf {
        threads,
        // brokergate's default scheduler (`[server] work_stealing = false`), so the harness
        // compares filters, not runtimes.
        work_stealing: false,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: format!("/tmp/bare_proxy_{}.sock", std::process::id()),
        pid_file: format!("/tmp/bare_proxy_{}.pid", std::process::id()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, BareProxy { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    eprintln!("bare_proxy listening on http://{listen}, upstream {upstream}, {threads} thread(s)");
    server.run_forever()
}
