//! The command line: `run`, `check-config`, `migrate`, `copy-store` and `demo`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "brokergate",
    version,
    about = "Cloud Controller v2 service instances in front of v1 brokers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API with the given config file.
    Run {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Take the listening sockets over from a running instance (graceful upgrade).
        #[arg(short, long)]
        upgrade: bool,
        /// Detach and run in the background.
        #[arg(short, long)]
        daemon: bool,
    },
    /// Validate a config file and exit non-zero naming the key that is wrong.
    CheckConfig {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Bring the store's schema up to this release's (what `run` does at start too) and print
    /// the version reached. Reads only the `[store]` section.
    Migrate {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Copy every instance, binding and service key of a SQLite store into an empty PostgreSQL
    /// one, in one transaction, after migrating both. Stop brokergate first: rows in flight
    /// are refused, and writes made during the copy are not copied.
    CopyStore {
        /// The SQLite store: `sqlite:PATH`, PATH the `[store] sqlite_path`.
        #[arg(long, value_name = "sqlite:PATH")]
        from: String,
        /// The PostgreSQL target: `postgres://user@host:port/db[?sslmode=...]`.
        #[arg(long, value_name = "URL")]
        to: String,
        /// Take the target's password from this environment variable (overrides the URL's).
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
    },
    /// Start the gateway on the embedded demo config with a built-in echo v1 broker, and
    /// print a ready-to-paste curl.
    Demo,
}
