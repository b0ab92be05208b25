//! Reaching the server: the URL parsed (with the password override, and TLS from `tls.rs`),
//! the lazy pool the store's calls run on, and dedicated connections for what runs
//! at start (migrations, recovery), closed before they return.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime,
};
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PgOptions;
use super::{error, tls};
use crate::store::StoreError;

/// Where and how to connect; cheap to clone.
#[derive(Clone)]
pub(super) struct Target {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    /// For logs and errors: no password, no query parameters.
    pub(super) redacted: String,
    statement_timeout: Duration,
    acquire_timeout: Duration,
}

impl Target {
    pub(super) fn of(options: &PgOptions) -> Result<Target, StoreError> {
        let redacted = redacted_url(&options.url);
        let (mut config, verify) = parse(&options.url).map_err(|e| {
            StoreError::Backend(format!("invalid PostgreSQL URL {redacted}: {e}").into())
        })?;
        if let Some(password) = &options.password {
            config.password(password);
        }
        config.connect_timeout(options.connect_timeout);
        // A server or network gone mid-statement: without this the call waits on an
        // unanswered socket until TCP gives up (many minutes); with it, once the statement
        // could have timed out server-side, the connection fails (retryable).
        config.tcp_user_timeout(options.statement_timeout + options.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("brokergate");
        }
        let tls = tls::connector(verify)?;
        Ok(Target {
            config,
            tls,
            redacted,
            statement_timeout: options.statement_timeout,
            acquire_timeout: options.acquire_timeout,
        })
    }

    /// A connection of its own, for a call that must not leave one behind: the caller
    /// [`Dedicated::close`]s it. Bounded by the acquire timeout, as a pooled one is.
    pub(super) async fn dedicated(&self) -> Result<Dedicated, StoreError> {
        let connect = async {
            let (client, connection) = self
                .config
                .connect(self.tls.clone())
                .await
                .map_err(error::connecting)?;
            let task = tokio::spawn(async move {
                // Its errors reach the caller through the client's next call.
                let _ = connection.await;
            });
            Ok::<_, StoreError>(Dedicated { client, task })
        };
        tokio::time::timeout(self.acquire_timeout, connect)
            .await
            .map_err(|_| {
                error::acquire_timeout(deadpool_postgres::TimeoutType::Create, &self.redacted)
            })?
    }

    /// Every connection's session: the statement timeout, and READ COMMITTED whatever the
    /// server's default — `writes.rs` relies on a statement that waited for a row lock seeing
    /// the row as committed (under REPEATABLE READ it would fail with 40001 instead).
    fn session_settings(&self) -> String {
        format!(
            "SET statement_timeout = {}; SET default_transaction_isolation = 'read committed'",
            self.statement_timeout.as_millis()
        )
    }

    pub(super) fn acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }
}

/// A connection outside the pool.
pub(crate) struct Dedicated {
    pub(crate) client: Client,
    task: JoinHandle<()>,
}

impl Dedicated {
    /// Applies the session settings a pooled connection has.
    pub(super) async fn with_session(self, target: &Target) -> Result<Dedicated, StoreError> {
        match self.client.batch_execute(&target.session_settings()).await {
            Ok(()) => Ok(self),
            Err(e) => {
                self.close().await;
                Err(error::classify(e))
            }
        }
    }

    /// Ends the session and waits for its task, so nothing outlives the caller's runtime.
    pub(crate) async fn close(self) {
        drop(self.client);
        let _ = self.task.await;
    }
}

/// The store's pool: nothing is opened until the first call needs a connection.
pub(super) struct Connections {
    pool: Pool,
    target: Target,
    observer: OnceLock<PoolObserver>,
}

/// How a wait for a pooled connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolWait {
    Got,
    /// None free (or none could be opened) within the acquire timeout.
    Timeout,
    /// A new connection failed (refused, TLS, authentication, …).
    Failed,
}

impl PoolWait {
    pub const ALL: [PoolWait; 3] = [PoolWait::Got, PoolWait::Timeout, PoolWait::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            PoolWait::Got => "got",
            PoolWait::Timeout => "timeout",
            PoolWait::Failed => "failed",
        }
    }
}

/// Told of every wait for a pooled connection: how long it took and how it ended.
pub type PoolObserver = Arc<dyn Fn(Duration, PoolWait) + Send + Sync>;

/// What the pool holds now, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections open.
    pub size: usize,
    /// Of those, lent to a call now.
    pub in_use: usize,
    /// Most connections it opens.
    pub max: usize,
    /// Calls waiting for one.
    pub waiting: usize,
}

impl Connections {
    pub(super) fn new(target: Target, options: &PgOptions) -> Result<Connections, StoreError> {
        let manager = Manager::from_config(
            target.config.clone(),
            target.tls.clone(),
            // A closed connection is noticed without a round trip; one broken otherwise fails
            // its next statement (retryable) and is dropped then.
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let session = target.session_settings();
        let max_lifetime = options.max_lifetime;
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .wait_timeout(Some(options.acquire_timeout))
            .create_timeout(Some(options.acquire_timeout))
            .recycle_timeout(Some(options.acquire_timeout))
            .runtime(Runtime::Tokio1)
            .post_create(Hook::async_fn(move |client, _| {
                let sql = session.clone();
                Box::pin(
                    async move { client.batch_execute(&sql).await.map_err(HookError::Backend) },
                )
            }))
            // An old connection is closed instead of lent: a server-side change (a failover
            // behind a DNS name, a rotated password) reaches every connection in time.
            .pre_recycle(Hook::sync_fn(move |_, metrics| {
                if metrics.age() > max_lifetime {
                    Err(HookError::message("past its max lifetime"))
                } else {
                    Ok(())
                }
            }))
            .build()
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(Connections {
            pool,
            target,
            observer: OnceLock::new(),
        })
    }

    /// A pooled connection within the acquire timeout, connecting included.
    pub(super) async fn get(&self) -> Result<Object, StoreError> {
        let started = Instant::now();
        let (result, wait) =
            match tokio::time::timeout(self.target.acquire_timeout, self.pool.get()).await {
                Ok(Ok(conn)) => (Ok(conn), PoolWait::Got),
                Ok(Err(e)) => {
                    let wait = match e {
                        deadpool_postgres::PoolError::Timeout(_) => PoolWait::Timeout,
                        _ => PoolWait::Failed,
                    };
                    (Err(error::pool(e, &self.target.redacted)), wait)
                }
                Err(_) => (
                    Err(error::acquire_timeout(
                        deadpool_postgres::TimeoutType::Wait,
                        &self.target.redacted,
                    )),
                    PoolWait::Timeout,
                ),
            };
        if let Some(observe) = self.observer.get() {
            observe(started.elapsed(), wait);
        }
        result
    }

    /// Reports every later wait to `observer`; only the first one set counts.
    pub(super) fn observe(&self, observer: PoolObserver) {
        let _ = self.observer.set(observer);
    }

    pub(super) fn target(&self) -> &Target {
        &self.target
    }

    pub(super) fn status(&self) -> PoolStatus {
        let s = self.pool.status();
        PoolStatus {
            size: s.size,
            in_use: s.size.saturating_sub(s.available),
            max: s.max_size,
            waiting: s.waiting,
        }
    }
}

/// The driver's configuration of `url`, and what TLS verifies.
fn parse(url: &str) -> Result<(tokio_postgres::Config, tls::Verify), tokio_postgres::Error> {
    let (url, verify) = tls::for_driver(url);
    Ok((tokio_postgres::Config::from_str(&url)?, verify))
}

/// `url` as `postgres://user@host:port/db`: no password, no parameters (one may be a
/// password); for logs and errors. Unparsable: a placeholder, never the text itself.
pub fn redacted_url(url: &str) -> String {
    let Ok((config, _)) = parse(url) else {
        return "postgres://<unparsable URL>".to_string();
    };
    let user = config
        .get_user()
        .map(|u| format!("{}@", encode(u)))
        .unwrap_or_default();
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let host = match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => encode(&path.display().to_string()),
            };
            // One port for all hosts, or one each (the driver's rule); 5432 without.
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect();
    let db = config.get_dbname().map(encode).unwrap_or_default();
    format!("postgres://{user}{}/{db}", hosts.join(","))
}

/// What a URL's user, host and path keep unescaped: letters, digits and `-._~` (RFC 3986's
/// unreserved characters), so `bg_prod` reads as written.
const URL_PART: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, URL_PART).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redacted_url_keeps_user_host_port_and_database_only() {
        assert_eq!(
            redacted_url("postgres://app:s3cret@db.example:6432/broker?sslmode=require"),
            "postgres://app@db.example:6432/broker"
        );
        assert_eq!(
            redacted_url("postgresql://app@h/db?password=s3cret&sslmode=verify-full"),
            "postgres://app@h:5432/db"
        );
        assert_eq!(
            redacted_url("host=h1,h2 port=1,2 user=u password=s3cret dbname=d"),
            "postgres://u@h1:1,h2:2/d"
        );
        let garbage = redacted_url("postgres://u:s3cret@h:notaport/d");
        assert!(!garbage.contains("s3cret"), "{garbage}");
    }

    #[test]
    fn an_invalid_url_is_refused_without_its_password() {
        let options = PgOptions {
            url: "postgres://u:s3cret@h:notaport/d".into(),
            password: Some("other-secret".into()),
            ..PgOptions::default()
        };
        let Err(e) = Target::of(&options) else {
            panic!("parsed")
        };
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
