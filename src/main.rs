//! Wiring only: parse the command line, then hand over to the library.
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::ExitCode;

use brokergate::cli::{Cli, Command};
use brokergate::config::{self, LogSettings};
use brokergate::store::{self, PgStore, SqliteStore};
use brokergate::{demo, logging, server};
use clap::Parser;

/// mimalloc instead of glibc's malloc: the proxy path allocates and frees small buffers on
/// every request, and this cut CPU per pass-through request by about 10% (README, Benchmarks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Run {
            config,
            upgrade,
            daemon,
        } => run(&config, upgrade, daemon),
        Command::CheckConfig { config } => {
            logging::init(&LogSettings::default());
            check(&config)
        }
        Command::Migrate { config } => {
            logging::init(&LogSettings::default());
            migrate(&config)
        }
        Command::CopyStore {
            from,
            to,
            password_env,
        } => {
            logging::init(&LogSettings::default());
            store::copy_store(&from, &to, password_env.as_deref())
                .map(|copied| println!("{copied}"))
                .map_err(|e| e.to_string())
        }
        Command::Demo => {
            logging::init(&LogSettings::default());
            demo::run()
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("brokergate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &Path, upgrade: bool, daemon: bool) -> Result<(), String> {
    let (settings, hash) =
        config::load_with_hash(path).map_err(|e| format!("{}: {e}", path.display()))?;
    logging::init(&settings.start.log);
    let opts = server::RunOptions {
        upgrade,
        daemon,
        config: Some((path.to_path_buf(), hash)),
    };
    server::build(settings, &opts)?.run_forever()
}

fn check(path: &Path) -> Result<(), String> {
    let rt = config::load_settings(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .runtime;
    println!(
        "{}: ok ({} brokers, {} plans, {} spaces)",
        path.display(),
        rt.brokers.len(),
        rt.plan_count(),
        rt.space_count()
    );
    Ok(())
}

fn migrate(path: &Path) -> Result<(), String> {
    let settings =
        config::load_store_settings(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let schema = match &settings.postgres {
        None => SqliteStore::open(Path::new(&settings.sqlite_path), settings.sqlite_options())
            .map_err(|e| format!("store.sqlite_path: {e}"))?
            .schema(),
        Some(pg) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("store: {e}"))?
            .block_on(PgStore::migrate(&pg.options()))
            .map_err(|e| format!("store.url ({}): {e}", pg.display))?,
    };
    println!(
        "{}: schema version {} (was {})",
        settings.describe(),
        schema.reached,
        schema.found
    );
    Ok(())
}
