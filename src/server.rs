//! Builds and runs the pingora server: opens the store (resolving reservations a crash left
//! behind), wires the gateway, the admin listener and hot reload, and applies brokergate's own
//! shutdown timing.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;

use crate::admin::{self, AdminService, AdminState};
use crate::authz::Authorization;
use crate::cc_client::CloudControllerClient;
use crate::clock;
use crate::config::{Settings, StoreSettings};
use crate::finish::FinishService;
use crate::listen::ApiAddress;
use crate::metrics::Metrics;
use crate::proxy::{Gateway, UseCases};
use crate::reload::{self, ReloadService, Reloader};
use crate::service::{
    recovery, Authorizer, Binder, BrokerPort, Catalog, Deleter, Finisher, LeasePolicy, Provisioner,
    Reader, Updater,
};
use crate::store::{PgStore, RecoveryPolicy, SqliteStore, Store, Timed};
use crate::v1::V1Client;

/// How pingora is started, beyond the config file.
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    pub upgrade: bool,
    pub daemon: bool,
    /// The file the configuration came from, with its hash; `None` disables reloads.
    pub config: Option<(PathBuf, String)>,
}

/// Opens the store and resolves the reservations a previous process left (see
/// [`RecoveryPolicy`]). A normal start follows a process of this owner that is gone, so all of
/// its reservations go; during a graceful upgrade that process is still finishing its calls,
/// so only expired leases go. Runs before the fork of daemon mode: the store opens no
/// connection or thread that outlives these calls.
pub fn open_store(
    store: &StoreSettings,
    metrics: &Metrics,
    upgrade: bool,
) -> Result<Arc<dyn Store>, String> {
    let policy = RecoveryPolicy {
        owner: store.owner.clone(),
        now: clock::now_unix(),
        predecessor_gone: !upgrade,
    };
    // A runtime of this thread alone, gone (its blocking thread joined, its connections
    // closed) before the fork.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("store: {e}"))?
        .block_on(async {
            let opened = open_backend(store, metrics).await?;
            recovery::recover(&*opened, metrics, &policy)
                .await
                .map_err(|e| format!("store recovery: {e}"))?;
            Ok(opened)
        })
}

/// The configured backend, timed, its schema migrated.
async fn open_backend(store: &StoreSettings, metrics: &Metrics) -> Result<Arc<dyn Store>, String> {
    let Some(pg) = &store.postgres else {
        let sqlite = SqliteStore::open(Path::new(&store.sqlite_path), store.sqlite_options())
            .map_err(|e| format!("store.sqlite_path: {e}"))?;
        log::info!(
            "Store opened. backend=sqlite path={} schema_version={}",
            store.sqlite_path,
            sqlite.schema().reached
        );
        return Ok(timed(Arc::new(sqlite), "sqlite", metrics));
    };
    let postgres = Arc::new(
        PgStore::open(&pg.options())
            .await
            .map_err(|e| format!("store.url ({}): {e}", pg.display))?,
    );
    log::info!(
        "Store opened. backend=postgres url={} schema_version={} pool_size={}",
        pg.display,
        postgres.schema().reached,
        pg.pool_size
    );
    let waits = metrics.store_pool_wait.clone();
    postgres.observe_pool(Arc::new(move |took, outcome| {
        waits
            .with_label_values(&[outcome.as_str()])
            .observe(took.as_secs_f64());
    }));
    let watched = postgres.clone();
    metrics.watch_pool(Box::new(move || {
        let s = watched.pool_status();
        (s.size, s.in_use, s.max, s.waiting)
    }));
    Ok(timed(postgres, "postgres", metrics))
}

/// `store` with each call's latency recorded under `backend`.
fn timed(store: Arc<dyn Store>, backend: &'static str, metrics: &Metrics) -> Arc<dyn Store> {
    let histogram = metrics.store_operation_duration.clone();
    Arc::new(Timed::new(
        store,
        Arc::new(move |operation, took, outcome| {
            histogram
                .with_label_values(&[backend, operation, outcome.as_str()])
                .observe(took.as_secs_f64());
        }),
    ))
}

/// Builds the server with the gateway on `server.listen` and the admin listener on
/// `server.admin_listen`; callers may add services before running it.
pub fn build(settings: Settings, opts: &RunOptions) -> Result<Server, String> {
    let Settings { start, runtime: rt } = settings;
    let metrics = Arc::new(Metrics::new());
    let store = open_store(&start.store, &metrics, opts.upgrade)?;
    let admin_listener = admin::bind(start.admin_listen, opts.upgrade)?;
    let api = ApiAddress::choose(start.listen)?;
    log::info!(
        "Listening. api={} admin={}",
        api.addr,
        admin_listener
            .local_addr()
            .map_err(|e| format!("server.admin_listen: {e}"))?
    );
    let conf = ServerConf {
        threads: start.threads,
        work_stealing: start.work_stealing,
        daemon: opts.daemon,
        grace_period_seconds: Some(start.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(start.grace_period_seconds.clamp(1, 5)),
        upgrade_sock: start.upgrade_sock.clone(),
        pid_file: start.pid_file.clone(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: opts.upgrade,
        daemon: opts.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    metrics.preregister_config(&rt);
    crate::authz::log_source(&rt);
    if let Some((_, hash)) = &opts.config {
        reload::record_success(&metrics, hash);
    }
    let runtime = Arc::new(ArcSwap::from_pointee(rt));

    let brokers: Arc<dyn BrokerPort> = Arc::new(V1Client::new(metrics.clone()));
    let authorizer: Arc<dyn Authorizer> = Arc::new(Authorization::new(metrics.clone()));
    let owner = LeasePolicy::new(start.store.owner.clone(), start.store.lease_margin_seconds);
    let deleter = || {
        Deleter::new(
            store.clone(),
            brokers.clone(),
            authorizer.clone(),
            metrics.clone(),
            owner.clone(),
        )
    };
    let binder = || {
        Binder::new(
            store.clone(),
            brokers.clone(),
            authorizer.clone(),
            metrics.clone(),
            owner.clone(),
        )
    };
    let use_cases = UseCases {
        provisioner: Provisioner::new(
            store.clone(),
            brokers.clone(),
            authorizer.clone(),
            metrics.clone(),
            owner.clone(),
        ),
        reader: Reader::new(store.clone(), authorizer.clone()),
        updater: Updater::new(store.clone(), authorizer.clone()),
        deleter: deleter(),
        binder: binder(),
        catalog: Catalog::new(authorizer.clone(), Arc::new(CloudControllerClient::new())),
    };
    // The finisher completes what was authorized before a crash: it asks nothing.
    let finisher = Finisher::new(store.clone(), deleter(), binder(), owner.clone());
    let finish = FinishService {
        finisher,
        store: store.clone(),
        metrics: metrics.clone(),
        interval: start.store.reaper_interval,
        runtime: runtime.clone(),
        owner: start.store.owner.clone(),
        upgrade: opts.upgrade,
    };
    let gateway = Gateway::new(runtime.clone(), use_cases, metrics.clone());
    let mut service =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, gateway, "brokergate");
    match api.socket_options() {
        Some(options) => service.add_tcp_with_settings(&api.addr.to_string(), options),
        None => service.add_tcp(&api.addr.to_string()),
    }
    server.add_service(service);
    server.add_service(background_service("api port", api.holder()));
    // UAA keys load in the background: the gateway starts even while UAA is unreachable.
    server.add_service(background_service("uaa keys", crate::auth::KeyRefresher));
    // Deletes and unbinds a crash left half done are finished at the broker.
    server.add_service(background_service("finisher", finish));

    let reloader = opts.config.as_ref().map(|(path, hash)| {
        Arc::new(Reloader::new(
            path.clone(),
            start.clone(),
            runtime.clone(),
            metrics.clone(),
            hash.clone(),
        ))
    });
    if let Some(reloader) = &reloader {
        server.add_service(background_service(
            "config reload",
            ReloadService(reloader.clone()),
        ));
    }
    let admin_state = Arc::new(AdminState {
        runtime,
        metrics,
        store,
        reloader,
        shutting_down: AtomicBool::new(false),
    });
    server.add_service(background_service(
        "admin",
        AdminService::new(admin_listener, admin_state),
    ));
    Ok(server)
}
