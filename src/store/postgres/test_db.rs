//! A throwaway database per test, on the server `BROKERGATE_TEST_POSTGRES_URL` names (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, an admin URL: its user must be allowed to create databases).
//! Without a server the tests are skipped with one line — or fail, when `CI` is `true`.
//!
//! Self-contained (tokio, tokio-postgres, url, uuid only) so an integration test in `tests/`
//! can carry a copy of this file.

use std::time::Duration;

use tokio_postgres::NoTls;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// How long reaching the admin URL may take before the server counts as absent.
const REACH_TIMEOUT: Duration = Duration::from_secs(3);

/// The admin URL the tests use.
pub fn admin_url() -> String {
    std::env::var("BROKERGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into())
}

/// `Some(())` when the server answers; otherwise prints `postgres tests skipped: <reason>` and
/// returns `None` — or panics, under `CI=true`, where a missing server is a broken setup.
pub async fn reachable_or_skip() -> Option<()> {
    match admin().await {
        Ok(conn) => {
            conn.close().await;
            Some(())
        }
        Err(reason) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("postgres tests need a server at BROKERGATE_TEST_POSTGRES_URL: {reason}")
        }
        Err(reason) => {
            eprintln!("postgres tests skipped: {reason}");
            None
        }
    }
}

/// A database of its own, dropped (with any session still on it) when this is.
pub struct TestDb {
    /// The database's URL: the admin URL with its database name replaced.
    pub url: String,
    pub name: String,
}

impl TestDb {
    pub async fn create() -> Result<TestDb, String> {
        let name = format!("bg_test_{}", uuid::Uuid::new_v4().simple());
        let conn = admin().await?;
        // The name is ours (letters, digits, `_`): safe to put in the statement.
        let created = conn
            .client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await;
        conn.close().await;
        created.map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
        let mut url = url::Url::parse(&admin_url()).map_err(|e| format!("admin URL: {e}"))?;
        url.set_path(&name);
        Ok(TestDb {
            url: url.to_string(),
            name,
        })
    }
}

impl Drop for TestDb {
    /// Drop may run inside a runtime, which cannot block on another future: the drop runs on
    /// a thread with a runtime of its own, waited for.
    fn drop(&mut self) {
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let conn = admin().await?;
                let result = conn
                    .client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| e.to_string());
                conn.close().await;
                result
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("could not drop test database {}: panicked", self.name),
        }
    }
}

struct Admin {
    client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Admin {
    async fn close(self) {
        drop(self.client);
        let _ = self.task.await;
    }
}

async fn admin() -> Result<Admin, String> {
    let url = admin_url();
    let connect = tokio_postgres::connect(&url, NoTls);
    let (client, connection) = tokio::time::timeout(REACH_TIMEOUT, connect)
        .await
        .map_err(|_| format!("no answer from the admin URL within {REACH_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot connect to the admin URL: {e}"))?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Admin { client, task })
}
