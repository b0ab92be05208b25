//! Builds and runs the pingora server: opens the store (resolving reservations a crash left
//! behind), wires the gateway service, and applies brokergate's own shutdown timing.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;

use crate::config::Runtime;
use crate::proxy::Gateway;
use crate::service::Provisioner;
use crate::store::SqliteStore;
use crate::v1::V1Client;

/// How pingora is started, beyond the config file.
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    pub upgrade: bool,
    pub daemon: bool,
}

/// Opens the store and removes reservations a previous process left mid broker call.
pub fn open_store(rt: &Runtime) -> Result<SqliteStore, String> {
    let store = SqliteStore::open(Path::new(&rt.store.sqlite_path), &rt.store.synchronous)
        .map_err(|e| format!("store.sqlite_path: {e}"))?;
    let stale = store.recover_reservations().map_err(|e| e.to_string())?;
    for r in stale {
        log::warn!(
            "Released a reservation left by a crash during its broker call; the broker may hold an unrecorded instance. instance_guid={} name={:?} space_guid={} broker={} created_at={}",
            r.guid, r.name, r.space_guid, r.broker, r.created_at
        );
    }
    Ok(store)
}

/// Builds the server with the gateway listening on `rt.listen`; callers may add services.
pub fn build(rt: Runtime, opts: &RunOptions) -> Result<Server, String> {
    let store = open_store(&rt)?;
    let conf = ServerConf {
        threads: rt.threads,
        daemon: opts.daemon,
        grace_period_seconds: Some(rt.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(rt.grace_period_seconds.clamp(1, 5)),
        upgrade_sock: rt.upgrade_sock.clone(),
        pid_file: rt.pid_file.clone(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: opts.upgrade,
        daemon: opts.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let listen = rt.listen.clone();
    let runtime = Arc::new(ArcSwap::from_pointee(rt));
    let provisioner = Provisioner::new(Arc::new(store), Arc::new(V1Client::default()));
    let gateway = Gateway::new(runtime, provisioner);
    let mut service =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, gateway, "brokergate");
    service.add_tcp(&listen);
    server.add_service(service);
    Ok(server)
}
