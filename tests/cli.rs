//! The command line: `check-config` names the wrong key, environment overrides reach `run`
//! and `check-config`, the repo's demo config is valid, `migrate` brings a store from before
//! migrations forward, and `brokergate demo` serves the curl it prints.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use support::cc;
use support::client::{self, raw_exchange};
use support::gateway::{GatewayConfig, BIN, PLAN_GUID, SPACE_GUID};
use support::token;

/// Bound on one `check-config` run.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a server coming up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Running the binary, bounded.

/// A child process that is SIGKILLed and reaped when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// A `brokergate` command with no inherited `BROKERGATE__*` overrides.
fn brokergate(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("BROKERGATE") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs `cmd` to completion within [`RUN_TIMEOUT`] (killed and failed otherwise).
fn run(mut cmd: Command) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = ChildGuard(cmd.spawn().expect("spawn brokergate"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let out = drain(child.0.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.0.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{cmd:?} still running after {RUN_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn check_config(path: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = brokergate(&["check-config", "-c", path.to_str().unwrap()]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd)
}

// ---------------------------------------------------------------------------------------
// Config files.

const SECOND_PLAN: &str = "3f7c1d2e-0b9a-4c8d-9e6f-5a4b3c2d1e0f";

/// The contract's config with two brokers and two plans; fields tests change.
#[derive(Clone)]
struct Cfg {
    listen: String,
    max_body_bytes: String,
    key_files: Vec<String>,
    broker0_url: String,
    broker0_token: String,
    plan0_broker: String,
    plan1_guid: String,
    server_extra: String,
    broker0_extra: String,
    tail: String,
}

impl Cfg {
    fn new() -> Cfg {
        Cfg {
            listen: "127.0.0.1:18080".into(),
            max_body_bytes: "65536".into(),
            key_files: vec![
                token::rsa_public_key_path().display().to_string(),
                token::ec_public_key_path().display().to_string(),
            ],
            broker0_url: "http://127.0.0.1:9001".into(),
            broker0_token: r#"token = "changeechotoken""#.into(),
            plan0_broker: "echo".into(),
            plan1_guid: SECOND_PLAN.into(),
            server_extra: String::new(),
            broker0_extra: String::new(),
            tail: String::new(),
        }
    }

    fn render(&self, dir: &Path) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap();
        let keys: Vec<String> = self.key_files.iter().map(|k| q(k)).collect();
        format!(
            r#"[server]
listen = {listen}
max_body_bytes = {max_body}
accept_unknown_spaces = false
{server_extra}

[auth]
audience = "cloud_controller"
issuer = ""
symmetric_secrets = ["tokensecret"]
public_key_files = [{keys}]

[store]
sqlite_path = {sqlite}

[upstream]
url = "http://127.0.0.1:9000"

[[brokers]]
name = "echo"
url = {broker0_url}
{broker0_token}
timeout_seconds = 60
{broker0_extra}

[[brokers]]
name = "other"
url = "http://127.0.0.1:9002/base/"
token = "othertoken"

[[plans]]
guid = "{PLAN_GUID}"
broker = {plan0_broker}
label = "echo"
version = "1.0"
provider = "core"
name = "free"
unique_id = "echo-free"

[[plans]]
guid = {plan1_guid}
broker = "other"
label = "other"
version = "2.0"
name = "small"
unique_id = "other-small"

[[spaces]]
guid = "{SPACE_GUID}"
organization_guid = "b8c5a6a4-1cc8-4ae5-8a8f-3d4e5b6c7d8e"
{tail}"#,
            listen = q(&self.listen),
            max_body = self.max_body_bytes,
            server_extra = self.server_extra,
            keys = keys.join(", "),
            sqlite = q(&dir.join("brokergate.sqlite3").display().to_string()),
            broker0_url = q(&self.broker0_url),
            broker0_token = self.broker0_token,
            broker0_extra = self.broker0_extra,
            plan0_broker = q(&self.plan0_broker),
            plan1_guid = q(&self.plan1_guid),
            tail = self.tail,
        )
    }

    /// Writes the config into `dir` under `name`.
    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.render(dir)).unwrap();
        path
    }
}

fn assert_ok(out: &Output) {
    assert!(out.status.success(), "expected success: {out:?}");
    assert!(out.stdout.contains(": ok"), "expected an ok line: {out:?}");
}

/// Exits non-zero and stderr names `key`.
fn assert_names_key(out: &Output, key: &str) {
    assert!(
        !out.status.success(),
        "expected failure naming {key}: {out:?}"
    );
    assert!(
        out.stderr.contains(key),
        "stderr must name {key:?}: {out:?}"
    );
    assert!(!out.stdout.contains(": ok"), "{out:?}");
}

// ---------------------------------------------------------------------------------------
// check-config.

#[test]
fn check_config_accepts_a_valid_file() {
    let dir = TempDir::new().unwrap();
    let out = check_config(&Cfg::new().write(dir.path(), "valid.toml"), &[]);
    assert_ok(&out);
    assert!(out.stdout.contains("valid.toml"), "{out:?}");
    assert!(
        !out.stdout.contains("changeechotoken"),
        "token printed: {out:?}"
    );
    assert!(
        !out.stderr.contains("changeechotoken"),
        "token printed: {out:?}"
    );
}

#[test]
fn check_config_accepts_a_minimal_file_and_later_sections_missing() {
    // Every section has defaults; a file naming only a broker and a plan loads.
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("minimal.toml");
    std::fs::write(
        &path,
        format!(
            r#"[[brokers]]
name = "echo"
url = "http://127.0.0.1:9001"
token = "t"

[[plans]]
guid = "{PLAN_GUID}"
broker = "echo"
label = "echo"
version = "1.0"
name = "free"
unique_id = "echo-free"
"#
        ),
    )
    .unwrap();
    assert_ok(&check_config(&path, &[]));
}

#[test]
fn check_config_names_a_plan_with_an_unknown_broker() {
    let dir = TempDir::new().unwrap();
    let mut cfg = Cfg::new();
    cfg.plan0_broker = "nonexistent".into();
    let out = check_config(&cfg.write(dir.path(), "c.toml"), &[]);
    assert_names_key(&out, "plans[0].broker");
}

#[test]
fn check_config_names_a_duplicate_plan_guid() {
    let dir = TempDir::new().unwrap();
    let mut cfg = Cfg::new();
    cfg.plan1_guid = PLAN_GUID.into();
    let out = check_config(&cfg.write(dir.path(), "c.toml"), &[]);
    assert_names_key(&out, "plans[1].guid");
}

#[test]
fn check_config_names_a_bad_broker_url() {
    let dir = TempDir::new().unwrap();
    for url in [
        "not a url",
        "ftp://127.0.0.1:9001",
        "http://",
        "127.0.0.1:9001",
    ] {
        let mut cfg = Cfg::new();
        cfg.broker0_url = url.into();
        let out = check_config(&cfg.write(dir.path(), "c.toml"), &[]);
        assert_names_key(&out, "brokers[0].url");
    }
}

#[test]
fn check_config_names_an_unreadable_public_key_file() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("no-such-key.pem").display().to_string();
    let a_directory = dir.path().display().to_string();
    for files in [
        vec![missing.clone()],
        vec![a_directory],
        vec![token::rsa_public_key_path().display().to_string(), missing],
    ] {
        let index = files.len() - 1;
        let mut cfg = Cfg::new();
        cfg.key_files = files;
        let out = check_config(&cfg.write(dir.path(), "c.toml"), &[]);
        assert_names_key(&out, &format!("auth.public_key_files[{index}]"));
    }
}

#[test]
fn check_config_names_a_token_env_that_is_not_set() {
    let dir = TempDir::new().unwrap();
    let var = format!("BG_TEST_UNSET_TOKEN_{}", std::process::id());
    let mut cfg = Cfg::new();
    cfg.broker0_token = format!("token_env = {var:?}");
    let path = cfg.write(dir.path(), "c.toml");
    let mut cmd = brokergate(&["check-config", "-c", path.to_str().unwrap()]);
    cmd.env_remove(&var);
    assert_names_key(&run(cmd), "brokers[0].token_env");
    // Set but empty counts as missing.
    let out = check_config(&path, &[(&var, "")]);
    assert_names_key(&out, "brokers[0].token_env");
}

#[test]
fn check_config_accepts_a_token_env_that_is_set() {
    let dir = TempDir::new().unwrap();
    let var = format!("BG_TEST_SET_TOKEN_{}", std::process::id());
    let mut cfg = Cfg::new();
    cfg.broker0_token = format!("token_env = {var:?}");
    let out = check_config(
        &cfg.write(dir.path(), "c.toml"),
        &[(&var, "s3cr3t-from-env")],
    );
    assert_ok(&out);
    assert!(
        !out.stdout.contains("s3cr3t-from-env") && !out.stderr.contains("s3cr3t-from-env"),
        "token printed: {out:?}"
    );
}

#[test]
fn check_config_names_max_body_bytes_out_of_range() {
    let dir = TempDir::new().unwrap();
    for value in ["0", "100000"] {
        let mut cfg = Cfg::new();
        cfg.max_body_bytes = value.into();
        let out = check_config(&cfg.write(dir.path(), "c.toml"), &[]);
        assert_names_key(&out, "server.max_body_bytes");
    }
    for value in ["1", "65536"] {
        let mut cfg = Cfg::new();
        cfg.max_body_bytes = value.into();
        assert_ok(&check_config(&cfg.write(dir.path(), "c.toml"), &[]));
    }
}

#[test]
fn check_config_names_an_unknown_key() {
    let dir = TempDir::new().unwrap();
    let mut cfg = Cfg::new();
    cfg.server_extra = r#"lisen = "127.0.0.1:9999""#.into();
    let out = check_config(&cfg.write(dir.path(), "c.toml"), &[]);
    assert_names_key(&out, "lisen");

    let mut cfg = Cfg::new();
    cfg.broker0_extra = "timeout_secs = 5".into();
    let out = check_config(&cfg.write(dir.path(), "c.toml"), &[]);
    assert_names_key(&out, "timeout_secs");

    let mut cfg = Cfg::new();
    cfg.tail = "[sever]\nlisten = \"127.0.0.1:1\"".into();
    let out = check_config(&cfg.write(dir.path(), "c.toml"), &[]);
    assert_names_key(&out, "sever");
}

#[test]
fn check_config_fails_on_a_missing_or_broken_file() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("absent.toml");
    let out = check_config(&missing, &[]);
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("absent.toml"), "{out:?}");

    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[server\nlisten = ").unwrap();
    let out = check_config(&broken, &[]);
    assert!(!out.status.success(), "{out:?}");
    assert!(!out.stderr.is_empty(), "{out:?}");
}

// ---------------------------------------------------------------------------------------
// migrate.

#[test]
fn migrate_brings_a_store_from_before_migrations_forward_and_prints_the_version() {
    let dir = TempDir::new().unwrap();
    let store = dir.path().join("store.sqlite3");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1.sqlite3");
    std::fs::copy(fixture, &store).unwrap();
    // Only [store] is read: no broker, no secrets needed.
    let config = dir.path().join("migrate.toml");
    let toml = format!("[store]\nsqlite_path = {:?}\n", store.to_str().unwrap());
    std::fs::write(&config, toml).unwrap();
    let migrate = || run(brokergate(&["migrate", "-c", config.to_str().unwrap()]));

    let out = migrate();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("schema version 3 (was 1)"), "{out:?}");
    let again = migrate();
    assert!(again.status.success(), "{again:?}");
    assert!(
        again.stdout.contains("schema version 3 (was 3)"),
        "{again:?}"
    );
}

#[test]
fn repo_demo_config_passes_check_config() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let out = check_config(&demo, &[]);
    assert_ok(&out);
    assert!(out.stdout.contains("demo.toml"), "{out:?}");
}

#[test]
fn usage_errors_exit_non_zero() {
    let out = run(brokergate(&[]));
    assert!(!out.status.success(), "{out:?}");
    let out = run(brokergate(&["check-config"]));
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("--config"), "{out:?}");
    let out = run(brokergate(&["--help"]));
    assert!(out.status.success(), "{out:?}");
    for sub in ["run", "check-config", "demo"] {
        assert!(out.stdout.contains(sub), "help lists {sub}: {out:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Environment overrides.

#[test]
fn environment_overrides_are_validated_by_check_config() {
    let dir = TempDir::new().unwrap();
    let path = Cfg::new().write(dir.path(), "c.toml");
    assert_ok(&check_config(&path, &[]));
    for value in ["0", "100000"] {
        let out = check_config(&path, &[("BROKERGATE__SERVER__MAX_BODY_BYTES", value)]);
        assert_names_key(&out, "server.max_body_bytes");
    }
    let out = check_config(&path, &[("BROKERGATE__SERVER__LISTEN", "not-an-address")]);
    assert_names_key(&out, "server.listen");
    let out = check_config(&path, &[("BROKERGATE__SERVER__MAX_BODY_BYTES", "2048")]);
    assert_ok(&out);
}

fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

#[tokio::test]
async fn environment_override_changes_the_listen_address_of_run() {
    // The file's port is held by a bound socket that never listens: nothing else
    // can listen there, and a gateway ignoring the override would fail to bind it.
    // The override asks for port 0: the gateway reports the port it picked.
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let file_addr = reserved.local_addr().unwrap();

    let cfg = GatewayConfig::new(&support::broker::refused_url());
    let config_path = cfg.dir().join("env-listen.toml");
    let rendered = cfg.clone().port(file_addr.port()).render();
    std::fs::write(&config_path, rendered).unwrap();
    let stderr_path = cfg.dir().join("env-listen.stderr.log");

    let mut cmd = brokergate(&["run", "-c", config_path.to_str().unwrap()]);
    cmd.current_dir(cfg.dir())
        .env("BROKERGATE__SERVER__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    let mut child = ChildGuard(cmd.spawn().unwrap());

    let listening = support::gateway::wait_listening(&mut child.0, &stderr_path, START_TIMEOUT)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            )
        });
    let env_addr = listening.api;
    assert_eq!(env_addr.ip(), file_addr.ip(), "{listening:?}");
    assert_ne!(env_addr.port(), file_addr.port(), "{listening:?}");
    let deadline = Instant::now() + START_TIMEOUT;
    while !accepts(env_addr) {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!(
                "exited with {status}: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "not listening on the env address {env_addr}: {}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !accepts(file_addr),
        "the file's listen address {file_addr} must not be used"
    );
    let r = client::get(&format!("http://{env_addr}/v2/info"), None).await;
    // brokergate answers.
    cc::assert_cc_error(&r, 404, 10000, "CF-NotFound");
    drop(child);
    drop(reserved);
}

// ---------------------------------------------------------------------------------------
// brokergate demo.

const DEMO_API: &str = "127.0.0.1:8080";
const DEMO_BROKER: &str = "127.0.0.1:9001";
const DEMO_ADMIN: &str = "127.0.0.1:9102";

/// A minimal POSIX-shell word splitter: single and double quotes, backslash
/// escapes and line continuations. `None` while a quote is still open or the
/// text ends with a continuation.
fn shell_words(text: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            '\n' => {}
                            c @ ('"' | '\\' | '$' | '`') => word.push(c),
                            c => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' => match chars.next() {
                None => return None,
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
            },
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// The request a printed curl sends.
#[derive(Debug)]
struct CurlRequest {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: String,
}

fn parse_curl(words: &[String]) -> CurlRequest {
    assert_eq!(words.first().map(String::as_str), Some("curl"), "{words:?}");
    let mut req = CurlRequest {
        method: String::new(),
        url: String::new(),
        headers: Vec::new(),
        body: String::new(),
    };
    let mut it = words[1..].iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "-d" | "--data" => req.body = it.next().expect("-d value").clone(),
            "-X" | "--request" => req.method = it.next().expect("-X value").clone(),
            "-H" | "--header" => {
                let h = it.next().expect("-H value");
                let (k, v) = h.split_once(':').expect("header with a colon");
                req.headers
                    .push((k.trim().to_string(), v.trim().to_string()));
            }
            other if other.starts_with('-') => panic!("unexpected curl option {other}"),
            url => req.url = url.to_string(),
        }
    }
    if req.method.is_empty() {
        req.method = if req.body.is_empty() { "GET" } else { "POST" }.into();
    }
    req
}

impl CurlRequest {
    /// The bytes curl puts on the wire: its default headers, the `-H` ones (a
    /// header with an empty value only removes curl's own), Content-Length.
    fn to_bytes(&self) -> Vec<u8> {
        let rest = self.url.strip_prefix("http://").expect("http URL");
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut headers: Vec<(String, String)> = vec![
            ("Host".into(), authority.into()),
            ("User-Agent".into(), "curl/8.5.0".into()),
            ("Accept".into(), "*/*".into()),
        ];
        for (k, v) in &self.headers {
            headers.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
            if !v.is_empty() {
                headers.push((k.clone(), v.clone()));
            }
        }
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, path);
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        if !self.body.is_empty() {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("\r\n");
        out.push_str(&self.body);
        out.into_bytes()
    }

    fn addr(&self) -> SocketAddr {
        let rest = self.url.strip_prefix("http://").unwrap();
        rest.split('/').next().unwrap().parse().unwrap()
    }
}

/// Both demo ports are free right now.
fn demo_ports_free() -> bool {
    [DEMO_API, DEMO_BROKER, DEMO_ADMIN]
        .iter()
        .all(|a| TcpListener::bind(a).is_ok())
}

#[tokio::test]
async fn demo_prints_a_curl_that_creates_then_reports_the_name_taken() {
    if !demo_ports_free() {
        eprintln!(
            "SKIPPED: {DEMO_API}, {DEMO_BROKER} or {DEMO_ADMIN} is in use; brokergate demo needs them"
        );
        return;
    }
    let cwd = TempDir::new().unwrap();
    let stderr_path = cwd.path().join("demo.stderr.log");
    let mut cmd = brokergate(&["demo"]);
    cmd.current_dir(cwd.path())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    let mut demo = ChildGuard(cmd.spawn().unwrap());
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();

    // Read stdout (bounded) until a complete curl command has been printed.
    let (tx, rx) = mpsc::channel();
    let stdout = demo.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    let mut printed = Vec::new();
    let mut curl_lines: Vec<String> = Vec::new();
    let words = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "no complete curl within {START_TIMEOUT:?}; printed {printed:#?}\n{}",
                stderr()
            )
        });
        printed.push(line.clone());
        if curl_lines.is_empty() && !line.starts_with("curl ") {
            continue;
        }
        curl_lines.push(line);
        if let Some(words) = shell_words(&curl_lines.join("\n")) {
            break words;
        }
    };
    let store_dir = printed
        .iter()
        .find_map(|l| l.split(", store ").nth(1))
        .and_then(|store| Path::new(store.trim()).parent().map(Path::to_path_buf));

    let curl = parse_curl(&words);
    assert_eq!(curl.method, "POST", "{curl:?}");
    assert_eq!(curl.addr().to_string(), DEMO_API, "{curl:?}");
    let token = curl
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| v.strip_prefix("bearer "))
        .expect("a bearer token in the printed curl")
        .to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let seed: Value = serde_json::from_str(&curl.body).expect("the curl body is JSON");
    assert_eq!(seed["service_plan_guid"], PLAN_GUID);
    assert_eq!(seed["space_guid"], SPACE_GUID);

    // The gateway starts listening after printing: wait (bounded).
    let deadline = Instant::now() + START_TIMEOUT;
    while !accepts(curl.addr()) {
        if let Some(status) = demo.0.try_wait().unwrap() {
            panic!("demo exited with {status}: {}", stderr());
        }
        assert!(
            Instant::now() < deadline,
            "demo not listening: {}",
            stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let request = curl.to_bytes();
    let first = raw_exchange(curl.addr(), &request, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", stderr()));
    assert_eq!(first.status, 201, "{first:?}\n{}", stderr());
    let created = first.json();
    assert_eq!(created["entity"]["name"], seed["name"], "{first:?}");
    assert_eq!(created["entity"]["service_plan_guid"], PLAN_GUID);
    assert!(first.header("location").is_some(), "{first:?}");

    let second = raw_exchange(curl.addr(), &request, Duration::from_secs(20))
        .await
        .unwrap();
    cc::assert_cc_error(&second, 400, 60002, "CF-ServiceInstanceNameTaken");

    // The very text printed, through a real shell and curl when there is one.
    if Command::new("curl").arg("--version").output().is_ok() {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(curl_lines.join("\n"))
            .stdin(Stdio::null())
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY");
        let out = run(sh);
        assert!(out.status.success(), "{out:?}");
        let body: Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        assert_eq!(body["code"], 60002, "{out:?}");
    } else {
        eprintln!("curl not installed: the printed command was replayed byte by byte only");
    }

    // SIGKILL and reap.
    let pid = demo.0.id();
    demo.0.kill().unwrap();
    let status = demo.0.wait().unwrap();
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status}");
    }
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "demo process {pid} not reaped"
    );
    drop(demo);
    let deadline = Instant::now() + Duration::from_secs(10);
    while accepts(curl.addr()) {
        assert!(
            Instant::now() < deadline,
            "port {DEMO_API} still open after kill"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(dir) = store_dir.filter(|d| {
        d.starts_with(std::env::temp_dir())
            && d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("brokergate-demo-"))
    }) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn shell_words_handles_the_printed_quoting() {
    let text =
        "curl \"http://h/p\" -d '{\n\"a\": 1\n}' -X POST \\\n-H \"A: b c\" \\\n-H \"Cookie: \"";
    let words = shell_words(text).unwrap();
    assert_eq!(
        words,
        vec![
            "curl",
            "http://h/p",
            "-d",
            "{\n\"a\": 1\n}",
            "-X",
            "POST",
            "-H",
            "A: b c",
            "-H",
            "Cookie: "
        ]
    );
    assert!(shell_words("curl -d '{").is_none());
    assert!(shell_words("curl \\").is_none());
}
