//! Wiring only: parse the command line, then hand over to the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use brokergate::cli::{Cli, Command};
use brokergate::{config, demo, server};
use clap::Parser;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // Pingora's trace level dumps raw request headers (bearer and broker tokens): never go there.
    if log::max_level() > log::LevelFilter::Debug {
        log::set_max_level(log::LevelFilter::Debug);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            upgrade,
            daemon,
        } => config::load_runtime(&config)
            .map_err(|e| format!("{}: {e}", config.display()))
            .and_then(|rt| server::build(rt, &server::RunOptions { upgrade, daemon }))
            .map(|s| s.run_forever()),
        Command::CheckConfig { config } => config::load_runtime(&config)
            .map(|rt| {
                println!(
                    "{}: ok ({} brokers, {} plans, {} spaces)",
                    config.display(),
                    rt.brokers.len(),
                    rt.plan_count(),
                    rt.space_count()
                )
            })
            .map_err(|e| format!("{}: {e}", config.display())),
        Command::Demo => demo::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("brokergate: {e}");
            ExitCode::FAILURE
        }
    }
}
