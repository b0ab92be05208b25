//! PostgreSQL for the tests: a database of the test's own on the shared server (created, and
//! dropped on drop), or a whole cluster of the test's own (initdb in a temp dir) for a test
//! that stops the server.
//!
//! The server is `BROKERGATE_TEST_POSTGRES_URL` (an admin URL; `scripts/postgres.sh` sets it),
//! else `postgres://postgres@127.0.0.1:5432/postgres`. Without one, a test skips with one line
//! — unless `CI=true`, where it fails: CI must run them.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn admin_url() -> String {
    std::env::var("BROKERGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into())
}

/// Runs one statement with psql against `url`; Err with psql's message.
pub fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Outside CI, one line on stderr (the caller then skips); in CI (`CI=true`), a failure.
fn unavailable(why: String) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("PostgreSQL is required in CI (CI=true) and cannot be had: {why}");
    }
    eprintln!("postgres tests skipped: {why}");
}

/// A database of this test's own, dropped (connections and all) on drop.
pub struct TestDatabase {
    admin: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// A fresh, empty database on the test server; `None` where PostgreSQL tests skip.
    pub fn create() -> Option<TestDatabase> {
        let admin = admin_url();
        match TestDatabase::create_on(&admin) {
            Ok(db) => Some(db),
            Err(e) => {
                unavailable(format!("{admin}: {e}"));
                None
            }
        }
    }

    fn create_on(admin: &str) -> Result<TestDatabase, String> {
        let name = format!("bg_it_{}", uuid::Uuid::new_v4().simple());
        psql(admin, &format!("CREATE DATABASE {name}"))?;
        let url = with_database(admin, &name);
        Ok(TestDatabase {
            admin: admin.to_string(),
            name,
            url,
        })
    }

    /// The URL brokergate is given (`[store] url`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One statement's result rows, `|`-separated, one per line.
    pub fn query(&self, sql: &str) -> String {
        psql(&self.url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Err(e) = psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// `url` with its path replaced by `/database` (the query kept).
fn with_database(url: &str, database: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("admin URL");
    parsed.set_path(&format!("/{database}"));
    parsed.to_string()
}

/// A PostgreSQL cluster of the test's own (initdb in a temp dir, run as the `postgres` user when
/// the test runs as root: initdb refuses root), on a free loopback port; stopped on drop. For
/// tests that stop the server — never the machine's shared one.
pub struct OwnCluster {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
}

impl OwnCluster {
    /// `None` where PostgreSQL tests skip (no server binaries, outside CI).
    pub fn start() -> Option<OwnCluster> {
        let Some(bin) = server_bin() else {
            unavailable("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin)".into());
            return None;
        };
        let dir = TempDir::new().expect("tempdir");
        if is_root() {
            run(Command::new("chown").args(["postgres:", &dir.path().to_string_lossy()]));
        }
        let data = dir.path().join("data");
        run(as_postgres(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data));
        let port = free_port();
        let cluster = OwnCluster { dir, bin, port };
        cluster.start_server();
        Some(cluster)
    }

    /// The admin URL of this cluster.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A fresh database on this cluster (dropped with it).
    pub fn database(&self) -> TestDatabase {
        TestDatabase::create_on(&self.admin_url()).expect("create a database on the own cluster")
    }

    /// Starts the server (again, on the same port) and waits until it answers.
    pub fn start_server(&self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("log");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        run(as_postgres(&self.bin.join("pg_ctl"))
            .args(["-s", "-w", "-t", "30", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "start"]));
        let deadline = Instant::now() + Duration::from_secs(30);
        while psql(&self.admin_url(), "SELECT 1").is_err() {
            assert!(Instant::now() < deadline, "own cluster did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `pg_ctl stop -m immediate`: the server dies at once, as in a crash.
    pub fn stop_immediate(&self) {
        let data = self.dir.path().join("data");
        run(as_postgres(&self.bin.join("pg_ctl"))
            .args(["-s", "-D"])
            .arg(&data)
            .args(["-m", "immediate", "stop"]));
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .args(["-s", "-D"])
            .arg(&data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn server_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    // Newest major version last (directory names are the major version).
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn as_postgres(program: &std::path::Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.stdin(Stdio::null()).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A port free now on 127.0.0.1 (the cluster binds it a moment later; a clash fails the start
/// loudly rather than silently).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
