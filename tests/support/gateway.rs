//! Runs the real `brokergate` binary as a child process on a rendered config,
//! waits (bounded) until it listens, and SIGKILLs + reaps it on drop.
//!
//! The config asks for port 0 on both listeners unless a test pins one: the
//! gateway picks free ports itself, holds them, and reports them in its
//! `Listening.` line on stderr, which is where the harness reads them from
//! (no port is chosen here and released before the gateway binds it).
//!
//! [`GatewayConfig`] owns its temp dir through an `Arc`: clones share the
//! directory and so the SQLite store, which is how a restart or crash test
//! starts a second gateway on the same data.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_brokergate");

/// The seeded plan, space and organization.
pub const PLAN_GUID: &str = "6df3af55-8f97-4dbe-9d6b-098eb53d8c17";
pub const SPACE_GUID: &str = "f24c6904-30e0-4559-9523-06d2d93f0c9c";
pub const ORG_GUID: &str = "b8c5a6a4-1cc8-4ae5-8a8f-3d4e5b6c7d8e";
/// The seeded broker's name and token.
pub const BROKER_NAME: &str = "echo";
pub const BROKER_TOKEN: &str = "changeechotoken";

/// How long [`Gateway::start`] waits for the `Listening.` line and then for
/// the API port to accept connections.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the gateway logs on stderr, before serving, with the addresses it
/// listens on: `Listening. api=127.0.0.1:PORT admin=127.0.0.1:PORT2`.
pub const LISTENING: &str = "Listening.";

/// Numbers each start's config and log files inside a shared dir.
static STARTS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone)]
enum BrokerToken {
    Literal(String),
    Env(String),
}

/// Builder for the gateway's TOML config (see [`GatewayConfig::render`]).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    dir: Arc<TempDir>,
    port: Option<u16>,
    admin_port: Option<u16>,
    broker_url: String,
    broker_token: BrokerToken,
    broker_timeout_seconds: u64,
    connect_timeout_seconds: u64,
    max_body_bytes: u64,
    accept_unknown_spaces: bool,
    grace_period_seconds: u64,
    audience: String,
    issuer: String,
    symmetric_secrets: Vec<String>,
    public_key_files: Vec<PathBuf>,
    upstream: Option<String>,
    /// Keys added to `[store]` (a PostgreSQL `url`, an `owner`, pool settings).
    store_keys: Vec<String>,
    /// Keys of `[authorization]`.
    authorization_keys: Vec<String>,
    extra_toml: String,
    env: Vec<(String, String)>,
}

impl GatewayConfig {
    /// The seed config (one `echo` broker at `broker_url`, one plan, one
    /// space) in a fresh temp dir.
    pub fn new(broker_url: &str) -> GatewayConfig {
        GatewayConfig {
            dir: Arc::new(TempDir::new().expect("tempdir")),
            port: None,
            admin_port: None,
            broker_url: broker_url.to_string(),
            broker_token: BrokerToken::Literal(BROKER_TOKEN.to_string()),
            broker_timeout_seconds: 60,
            connect_timeout_seconds: 5,
            max_body_bytes: 65536,
            accept_unknown_spaces: false,
            grace_period_seconds: 1,
            audience: "cloud_controller".to_string(),
            issuer: String::new(),
            symmetric_secrets: vec![super::token::DEFAULT_SECRET.to_string()],
            public_key_files: Vec::new(),
            upstream: None,
            store_keys: Vec::new(),
            authorization_keys: Vec::new(),
            extra_toml: String::new(),
            env: Vec::new(),
        }
    }

    /// `[upstream] url` (omitted unless set).
    pub fn upstream(mut self, url: &str) -> Self {
        self.upstream = Some(url.to_string());
        self
    }

    /// Listen on this port instead of port 0 (the gateway then picks a free
    /// one itself and reports it): for a test that needs the address before
    /// the start, or the same one again after a restart (the first gateway's
    /// reported port, once it stopped). A pinned port someone else took
    /// meanwhile makes the start fail; the harness does not retry.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Admin listener on this port instead of port 0 (see [`Self::port`]).
    pub fn admin_port(mut self, port: u16) -> Self {
        self.admin_port = Some(port);
        self
    }

    pub fn broker_timeout_seconds(mut self, n: u64) -> Self {
        self.broker_timeout_seconds = n;
        self
    }

    pub fn connect_timeout_seconds(mut self, n: u64) -> Self {
        self.connect_timeout_seconds = n;
        self
    }

    /// The echo broker's literal `token`.
    pub fn broker_token(mut self, token: &str) -> Self {
        self.broker_token = BrokerToken::Literal(token.to_string());
        self
    }

    /// `token_env = var` instead of `token`; pair with [`Self::env`].
    pub fn broker_token_env(mut self, var: &str) -> Self {
        self.broker_token = BrokerToken::Env(var.to_string());
        self
    }

    pub fn max_body_bytes(mut self, n: u64) -> Self {
        self.max_body_bytes = n;
        self
    }

    pub fn accept_unknown_spaces(mut self, yes: bool) -> Self {
        self.accept_unknown_spaces = yes;
        self
    }

    pub fn grace_period_seconds(mut self, n: u64) -> Self {
        self.grace_period_seconds = n;
        self
    }

    pub fn audience(mut self, audience: &str) -> Self {
        self.audience = audience.to_string();
        self
    }

    /// `[auth] issuer` (checked by the gateway when not empty).
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.issuer = issuer.to_string();
        self
    }

    pub fn symmetric_secrets(mut self, secrets: &[&str]) -> Self {
        self.symmetric_secrets = secrets.iter().map(|s| s.to_string()).collect();
        self
    }

    /// `[auth] public_key_files` (PEM public keys, RSA or EC).
    pub fn public_key_files<I>(mut self, files: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<Path>,
    {
        self.public_key_files = files
            .into_iter()
            .map(|p| p.as_ref().to_path_buf())
            .collect();
        self
    }

    /// A key of `[store]`, its value rendered as TOML (`.store_key("url", "postgres://…")`,
    /// `.store_key("pool_size", 4)`); calls accumulate.
    pub fn store_key(mut self, key: &str, value: impl Into<toml_value::Value>) -> Self {
        self.store_keys.push(format!("{key} = {}", value.into().0));
        self
    }

    /// A key of `[authorization]` (`.authorization_key("cache_seconds", 0)`); calls
    /// accumulate.
    pub fn authorization_key(mut self, key: &str, value: impl Into<toml_value::Value>) -> Self {
        self.authorization_keys
            .push(format!("{key} = {}", value.into().0));
        self
    }

    /// `[authorization] source = "static"`: for tests with an `[upstream]` that is a plain
    /// pass-through mock, not a Cloud Controller to ask.
    pub fn static_authorization(self) -> Self {
        self.authorization_key("source", "static")
    }

    /// TOML appended verbatim after the seed (extra `[[brokers]]`, `[[plans]]`,
    /// `[[spaces]]`); calls accumulate.
    pub fn extra_toml(mut self, toml: &str) -> Self {
        self.extra_toml.push('\n');
        self.extra_toml.push_str(toml);
        self.extra_toml.push('\n');
        self
    }

    /// An environment variable for the child process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The directory holding the store, configs and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `[store] sqlite_path`.
    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.path().join("brokergate.sqlite3")
    }

    pub fn broker_url(&self) -> &str {
        &self.broker_url
    }

    /// The config file text: `listen` and `admin_listen` on 127.0.0.1, port 0
    /// unless pinned with [`Self::port`] / [`Self::admin_port`].
    pub fn render(&self) -> String {
        let keys: Vec<String> = self
            .public_key_files
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let token = match &self.broker_token {
            BrokerToken::Literal(t) => format!("token = {}", q(t)),
            BrokerToken::Env(v) => format!("token_env = {}", q(v)),
        };
        let upstream = match &self.upstream {
            Some(url) => format!("[upstream]\nurl = {}\n", q(url)),
            None => String::new(),
        };
        let listen = SocketAddr::from(([127, 0, 0, 1], self.port.unwrap_or(0)));
        let admin = SocketAddr::from(([127, 0, 0, 1], self.admin_port.unwrap_or(0)));
        format!(
            r#"[server]
listen = {listen}
admin_listen = {admin}
max_body_bytes = {max_body}
accept_unknown_spaces = {unknown}
grace_period_seconds = {grace}

[auth]
audience = {audience}
issuer = {issuer}
symmetric_secrets = {secrets}
public_key_files = {keys}

[store]
sqlite_path = {sqlite}
{store_keys}

[authorization]
{authorization_keys}

{upstream}
[[brokers]]
name = "{BROKER_NAME}"
url = {broker_url}
{token}
timeout_seconds = {timeout}
connect_timeout_seconds = {connect}

[[plans]]
guid = "{PLAN_GUID}"
broker = "{BROKER_NAME}"
label = "echo"
version = "1.0"
provider = "core"
name = "free"
unique_id = "echo-free"

[[spaces]]
guid = "{SPACE_GUID}"
organization_guid = "{ORG_GUID}"
{extra}"#,
            listen = q(&listen.to_string()),
            admin = q(&admin.to_string()),
            max_body = self.max_body_bytes,
            unknown = self.accept_unknown_spaces,
            grace = self.grace_period_seconds,
            audience = q(&self.audience),
            issuer = q(&self.issuer),
            secrets = q_list(&self.symmetric_secrets),
            keys = q_list(&keys),
            sqlite = q(&self.sqlite_path().to_string_lossy()),
            store_keys = self.store_keys.join("\n"),
            authorization_keys = self.authorization_keys.join("\n"),
            broker_url = q(&self.broker_url),
            timeout = self.broker_timeout_seconds,
            connect = self.connect_timeout_seconds,
            extra = self.extra_toml,
        )
    }
}

/// A TOML value for [`GatewayConfig::store_key`]: a string, a number or a bool.
pub mod toml_value {
    pub struct Value(pub(super) String);

    impl From<&str> for Value {
        fn from(s: &str) -> Value {
            Value(super::q(s))
        }
    }
    impl From<String> for Value {
        fn from(s: String) -> Value {
            Value(super::q(&s))
        }
    }
    impl From<u64> for Value {
        fn from(n: u64) -> Value {
            Value(n.to_string())
        }
    }
    impl From<bool> for Value {
        fn from(b: bool) -> Value {
            Value(b.to_string())
        }
    }
}

/// A TOML basic string (JSON string escapes are valid TOML escapes).
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("string to json")
}

fn q_list(items: &[String]) -> String {
    serde_json::to_string(items).expect("list to json")
}

/// A running gateway process; SIGKILLed and reaped on drop.
pub struct Gateway {
    child: Child,
    /// The API and admin addresses from the `Listening.` line, once read.
    listening: Option<Listening>,
    config: GatewayConfig,
    config_path: PathBuf,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

/// The addresses a gateway reported in its `Listening.` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    pub api: SocketAddr,
    pub admin: SocketAddr,
}

impl Gateway {
    /// Spawn and wait (see [`Self::wait_ready`]) until it reported its
    /// addresses and accepts TCP connections; panics with its logs when it
    /// exits first or is not ready within [`READY_TIMEOUT`].
    pub async fn start(config: GatewayConfig) -> Gateway {
        let mut gateway = Gateway::spawn(config);
        if let Err(e) = gateway.wait_ready(READY_TIMEOUT).await {
            panic!("gateway did not start: {e}");
        }
        gateway
    }

    /// Write the config and spawn `brokergate run -c <config>` without
    /// waiting (for tests of startup failures). Its addresses are known only
    /// after [`Self::wait_ready`].
    pub fn spawn(config: GatewayConfig) -> Gateway {
        let n = STARTS.fetch_add(1, Ordering::SeqCst);
        let dir = config.dir().to_path_buf();
        let config_path = dir.join(format!("gateway-{n}.toml"));
        let stdout_path = dir.join(format!("gateway-{n}.stdout.log"));
        let stderr_path = dir.join(format!("gateway-{n}.stderr.log"));
        std::fs::write(&config_path, config.render()).expect("write config");
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .arg("-c")
            .arg(&config_path)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("stdout log"))
            .stderr(File::create(&stderr_path).expect("stderr log"))
            // The harness reads the INFO `Listening.` line: a developer's RUST_LOG=warn must
            // not hide it (a test that wants RUST_LOG sets it with `.env`).
            .env_remove("RUST_LOG");
        for (k, v) in &config.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        Gateway {
            child,
            listening: None,
            config,
            config_path,
            stdout_path,
            stderr_path,
        }
    }

    /// Within `timeout` in all: read the addresses from the `Listening.` line
    /// on stderr, then poll every 50 ms until a TCP connect to the API
    /// succeeds. `Err` (with the logs) when the child exits first or time
    /// runs out.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let listening = match self.listening {
            Some(listening) => listening,
            None => {
                let read = wait_listening(&mut self.child, &self.stderr_path, timeout).await;
                let listening = read.map_err(|e| format!("{e}\n{}", self.logs()))?;
                self.listening = Some(listening);
                listening
            }
        };
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Err(format!(
                    "exited with {status} before listening on {}\n{}",
                    listening.api,
                    self.logs()
                ));
            }
            let connect = tokio::net::TcpStream::connect(listening.api);
            if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_millis(500), connect).await
            {
                // Linux lets a connect to an unbound loopback port succeed
                // when the kernel picks that same port as the source (TCP
                // simultaneous open): that is not the gateway listening.
                if !is_self_connection(&stream) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not listening on {} after {timeout:?}\n{}",
                    listening.api,
                    self.logs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The reported addresses; panics before [`Self::wait_ready`] read them.
    pub fn listening(&self) -> Listening {
        self.listening
            .expect("the gateway's addresses are known once wait_ready has read them")
    }

    /// `http://127.0.0.1:PORT`, the reported API address.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The admin listener: `/metrics`, `/healthz`, `/readyz`, `POST /-/reload`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.listening().admin)
    }

    /// The reported API address.
    pub fn addr(&self) -> SocketAddr {
        self.listening().api
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config this gateway runs with; clone it to start another gateway
    /// on the same store.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Everything the child wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn logs(&self) -> String {
        format!(
            "--- stderr ---\n{}\n--- stdout ---\n{}",
            self.stderr(),
            self.stdout()
        )
    }

    /// `None` while it runs, its exit status once it has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("wait")
    }

    /// Send a signal by name ("TERM", "INT", "QUIT"...) with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg("-s")
            .arg(name)
            .arg(self.pid().to_string())
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -s {name} {} failed", self.pid());
    }

    /// Wait (bounded, polling) for the child to exit on its own.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `stream` is connected to itself (source = destination).
fn is_self_connection(stream: &tokio::net::TcpStream) -> bool {
    matches!((stream.local_addr(), stream.peer_addr()), (Ok(l), Ok(p)) if l == p)
}

/// Wait until `stderr_path` holds the `Listening.` line, polling every 20 ms
/// for at most `timeout`; `Err` when `child` exits first or time runs out.
/// For children started outside [`Gateway`] too (`tests/cli.rs`).
pub async fn wait_listening(
    child: &mut Child,
    stderr_path: &Path,
    timeout: Duration,
) -> Result<Listening, String> {
    let deadline = Instant::now() + timeout;
    loop {
        // Read before checking for an exit: a line written just before
        // exiting is still found.
        let log = std::fs::read_to_string(stderr_path).unwrap_or_default();
        if let Some(listening) = parse_listening(&log) {
            return Ok(listening);
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Err(format!("exited with {status} before logging {LISTENING:?}"));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no {LISTENING:?} line on stderr after {timeout:?} (it is logged at INFO: \
                 do RUST_LOG or [log] level hide it?)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The addresses in the first complete `Listening. api=… admin=…` line of a
/// stderr log, in text format or inside a JSON line's `message`.
pub fn parse_listening(log: &str) -> Option<Listening> {
    log.split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .find_map(|line| {
            let json = serde_json::from_str::<serde_json::Value>(line).ok();
            let message = match json.as_ref().and_then(|v| v["message"].as_str()) {
                Some(message) => message,
                None => line,
            };
            let (_, fields) = message.split_once(LISTENING)?;
            let field = |name: &str| {
                fields
                    .split_whitespace()
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))?
                    .parse::<SocketAddr>()
                    .ok()
            };
            Some(Listening {
                api: field("api")?,
                admin: field("admin")?,
            })
        })
}
