//! The load harness: brokergate beside nginx, a bare pingora proxy and the broker itself, in
//! one run, on loopback, alternating the candidates over several rounds. Started by
//! `benches/load/run.sh`, which installs the tools and builds the binaries first; see
//! `benches/load/README.md` for what it measures and how.
//!
//! Layout on a 2-core machine: the load generator (`wrk`, `loadgen`), the origin (nginx
//! `return 200`) and the mock v1 broker on core 0 (`taskset -c 0`); the proxy under test on
//! core 1, with one worker (brokergate and bare pingora `threads = 1`, nginx
//! `worker_processes 1`).
//!
//! Knobs (environment): LOAD_SECONDS (6), LOAD_WARMUP (2), LOAD_ROUNDS (5), LOAD_OPEN_ROUNDS (3),
//! LOAD_CONNS (32),
//! LOAD_OPEN_SECONDS (10), LOAD_OPEN_CONNS (64), LOAD_MEM_CREATES (100000), LOAD_IDLE_CONNS
//! (1000), LOAD_MEM_SYNC (full), LOAD_MEM_MAX_SECONDS (900), LOAD_BASE_PORT (18080),
//! LOAD_OUT (benches/load), LOAD_SKIP (comma list of phases to skip: pass,create,open,mem).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PLAN_GUID: &str = "6df3af55-8f97-4dbe-9d6b-098eb53d8c17";
const SPACE_GUID: &str = "f24c6904-30e0-4559-9523-06d2d93f0c9c";
const ORG_GUID: &str = "b8c5a6a4-1cc8-4ae5-8a8f-3d4e5b6c7d8e";
const BROKER_TOKEN: &str = "changeechotoken";
const TOKEN_SECRET: &str = "tokensecret";
/// The small upstream resource of the pass-through runs (an unowned Cloud Controller route).
const PASS_PATH: &str = "/v2/info";
const ORIGIN_BODY: &str = r#"{"name":"brokergate-load-origin","build":"","support":"","version":2,"description":"loopback origin of the load harness","api_version":"2.150.0"}"#;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Opts {
    seconds: u64,
    warmup: u64,
    rounds: usize,
    open_rounds: usize,
    conns: u32,
    open_seconds: u64,
    open_conns: u32,
    mem_creates: u64,
    idle_conns: u32,
    mem_sync: String,
    mem_max_seconds: u64,
    base_port: u16,
    repo: PathBuf,
    run_dir: PathBuf,
    out_dir: PathBuf,
    skip: Vec<String>,
    /// `LOAD_BASELINE_BIN`: another brokergate binary (say, the last release) run beside this
    /// one in the pass-through and create sections, so a change is compared in one run.
    baseline: Option<PathBuf>,
}

impl Opts {
    fn from_env() -> Res<Opts> {
        let repo = std::env::current_dir()?;
        let out_dir = std::env::var("LOAD_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo.join("benches/load"));
        Ok(Opts {
            seconds: env_num("LOAD_SECONDS", 6),
            warmup: env_num("LOAD_WARMUP", 2),
            rounds: env_num("LOAD_ROUNDS", 5),
            open_rounds: env_num("LOAD_OPEN_ROUNDS", 3),
            conns: env_num("LOAD_CONNS", 32),
            open_seconds: env_num("LOAD_OPEN_SECONDS", 10),
            open_conns: env_num("LOAD_OPEN_CONNS", 64),
            mem_creates: env_num("LOAD_MEM_CREATES", 100_000),
            idle_conns: env_num("LOAD_IDLE_CONNS", 1000),
            mem_sync: std::env::var("LOAD_MEM_SYNC").unwrap_or_else(|_| "full".into()),
            mem_max_seconds: env_num("LOAD_MEM_MAX_SECONDS", 900),
            base_port: env_num("LOAD_BASE_PORT", 18080),
            run_dir: repo.join("target/load-run"),
            repo,
            out_dir,
            skip: std::env::var("LOAD_SKIP")
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            baseline: std::env::var("LOAD_BASELINE_BIN").ok().map(PathBuf::from),
        })
    }

    fn port(&self, offset: u16) -> u16 {
        self.base_port + offset
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.repo.join("target/dist").join(name)
    }

    fn runs(&self, phase: &str) -> bool {
        !self.skip.iter().any(|s| s == phase)
    }
}

// === processes ===

/// A child process pinned to a core; stopped (and reaped) on drop.
struct Proc {
    name: String,
    child: Child,
    /// nginx: SIGTERM so the master takes its workers down; others are SIGKILLed.
    graceful: bool,
}

impl Proc {
    fn spawn(
        name: &str,
        core: u32,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Res<Proc> {
        let out = fs::File::create(log)?;
        let mut cmd = Command::new("taskset");
        cmd.arg("-c")
            .arg(core.to_string())
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("{name}: {}: {e}", program.display()))?;
        // Remembered so that the next run can stop what a killed run left behind.
        if let Some(dir) = log.parent() {
            if let Ok(mut f) = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("pids"))
            {
                let _ = writeln!(f, "{}", child.id());
            }
        }
        Ok(Proc {
            name: name.to_string(),
            child,
            graceful: program.ends_with("nginx"),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// This process and its children (nginx's workers).
    fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.pid()];
        pids.extend(children_of(self.pid()));
        pids
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if self.graceful {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.pid().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops the processes a previous, killed run left (those listed in its `pids` file whose
/// command line still points into the run directory, so a reused pid is left alone).
fn stop_leftovers(run_dir: &Path, bin_dir: &Path) {
    let Ok(list) = fs::read_to_string(run_dir.join("pids")) else {
        return;
    };
    let marker = run_dir.display().to_string();
    for pid in list.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let ours = cmdline.contains(&marker) || cmdline.contains(&bin_dir.display().to_string());
        if ours {
            eprintln!("stopping pid {pid} left by a previous run: {cmdline}");
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }
    std::thread::sleep(Duration::from_millis(500));
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// A `/proc/<pid>/status` field in KiB (`VmHWM`, `VmRSS`).
fn status_kib(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Peak RSS of a process and its children, MiB.
fn peak_rss_mib(p: &Proc) -> f64 {
    p.pids()
        .iter()
        .map(|&pid| status_kib(pid, "VmHWM:"))
        .sum::<u64>() as f64
        / 1024.0
}

fn wait_port(p: &mut Proc, port: u16) -> Res<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if p.exited() {
            return Err(format!("{} exited before listening on {port}", p.name).into());
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{} is not listening on {port} after 30 s", p.name).into())
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

// === configs ===

fn nginx_conf(o: &Opts, name: &str, server_block: &str, upstreams: &str) -> Res<PathBuf> {
    let dir = o.run_dir.join(name);
    for t in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        fs::create_dir_all(dir.join(t))?;
    }
    let d = dir.display();
    let conf = format!(
        r#"# generated by benches/load/harness.rs
worker_processes 1;
daemon off;
master_process on;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{upstreams}
    server {{
{server_block}
    }}
}}
"#
    );
    let path = dir.join("nginx.conf");
    fs::write(&path, conf)?;
    Ok(path)
}

fn origin_conf(o: &Opts) -> Res<PathBuf> {
    let server = format!(
        r#"        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{ORIGIN_BODY}';
        }}"#,
        port = o.port(1)
    );
    nginx_conf(o, "origin", &server, "")
}

fn nginx_proxy_conf(o: &Opts) -> Res<PathBuf> {
    let upstreams = format!(
        r#"    upstream origin {{ server 127.0.0.1:{origin}; keepalive 64; keepalive_requests 10000000; }}
    upstream broker {{ server 127.0.0.1:{broker}; keepalive 64; keepalive_requests 10000000; }}"#,
        origin = o.port(1),
        broker = o.port(2)
    );
    let server = format!(
        r#"        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location / {{ proxy_pass http://origin; }}
        location /gateway/ {{ proxy_pass http://broker; }}"#,
        port = o.port(3)
    );
    nginx_conf(o, "nginx-proxy", &server, &upstreams)
}

fn brokergate_conf(o: &Opts, name: &str, port: u16, synchronous: &str) -> Res<PathBuf> {
    let dir = o.run_dir.join(name);
    fs::create_dir_all(&dir)?;
    let d = dir.display();
    let conf = format!(
        r#"# generated by benches/load/harness.rs
[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"
threads = 1
grace_period_seconds = 1
upgrade_sock = "{d}/upgrade.sock"
pid_file = "{d}/brokergate.pid"

[log]
level = "warn"
access_log = false

[auth]
audience = "cloud_controller"
symmetric_secrets = ["{TOKEN_SECRET}"]

[store]
sqlite_path = "{d}/brokergate.sqlite3"
synchronous = "{synchronous}"

[upstream]
url = "http://127.0.0.1:{origin}"

[[brokers]]
name = "echo"
url = "http://127.0.0.1:{broker}"
token = "{BROKER_TOKEN}"
timeout_seconds = 10
connect_timeout_seconds = 2

[[plans]]
guid = "{PLAN_GUID}"
broker = "echo"
label = "echo"
version = "1.0"
provider = "core"
name = "free"
unique_id = "echo-free"

[[spaces]]
guid = "{SPACE_GUID}"
organization_guid = "{ORG_GUID}"
"#,
        admin = port + 100,
        origin = o.port(1),
        broker = o.port(2),
    );
    let path = dir.join("brokergate.toml");
    fs::write(&path, conf)?;
    Ok(path)
}

fn start_brokergate(o: &Opts, name: &str, port: u16, synchronous: &str) -> Res<Proc> {
    start_brokergate_bin(o, &o.bin("brokergate"), name, port, synchronous)
}

fn start_brokergate_bin(
    o: &Opts,
    bin: &Path,
    name: &str,
    port: u16,
    synchronous: &str,
) -> Res<Proc> {
    let conf = brokergate_conf(o, name, port, synchronous)?;
    let mut p = Proc::spawn(
        name,
        1,
        bin,
        &["run".into(), "-c".into(), conf.display().to_string()],
        &[("RUST_LOG", "warn")],
        &o.run_dir.join(format!("{name}.log")),
    )?;
    wait_port(&mut p, port)?;
    Ok(p)
}

fn mint_token() -> Res<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = serde_json::json!({
        "user_id": "uaa-id-207",
        "email": "email-148@somedomain.com",
        "scope": ["cloud_controller.admin"],
        "aud": ["cloud_controller"],
        "exp": now + 6 * 3600,
        "jti": format!("load-{now}"),
        "client_id": "cf",
    });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TOKEN_SECRET.as_bytes()),
    )?)
}

// === load generators ===

/// `RESULT k=v …` → map.
fn parse_result(out: &str) -> Option<BTreeMap<String, String>> {
    let line = out.lines().rev().find(|l| l.starts_with("RESULT "))?;
    Some(
        line.split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn num(m: &BTreeMap<String, String>, k: &str) -> f64 {
    m.get(k).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    errors: u64,
    /// CPU time (user + system) the process under test spent per successful request, µs;
    /// NaN for the direct baselines. Unlike requests/s, barely moved by other tenants of the
    /// machine taking turns on the proxy's core.
    cpu_us: f64,
}

/// One closed-loop `wrk` run on core 0.
fn wrk(o: &Opts, port: u16, kind: &str, prefix: &str, token: &str, seconds: u64) -> Res<Sample> {
    let script = o.repo.join("benches/load/wrk.lua");
    let out = Command::new("taskset")
        .args(["-c", "0", "wrk", "-t1"])
        .arg(format!("-c{}", o.conns))
        .arg(format!("-d{seconds}s"))
        .args(["--timeout", "5s", "-s"])
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}{PASS_PATH}"))
        .args(["--", kind, prefix, token])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let m = parse_result(&stdout).ok_or_else(|| {
        format!(
            "wrk gave no RESULT line: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let errors = ["connect", "read", "write", "status", "timeout"]
        .iter()
        .map(|k| num(&m, k) as u64)
        .sum::<u64>();
    let good = num(&m, "requests") - num(&m, "status");
    Ok(Sample {
        rps: good / (num(&m, "duration_us") / 1e6).max(1e-9),
        p50_ms: num(&m, "p50_us") / 1e3,
        p99_ms: num(&m, "p99_us") / 1e3,
        p999_ms: num(&m, "p999_us") / 1e3,
        errors,
        cpu_us: good,
    })
}

fn loadgen(
    o: &Opts,
    mode: &str,
    port: u16,
    args: &[(&str, String)],
) -> Res<BTreeMap<String, String>> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0"])
        .arg(o.bin("examples/loadgen"))
        .arg(mode)
        .arg(format!("127.0.0.1:{port}"));
    for (k, v) in args {
        cmd.arg(format!("--{k}")).arg(v);
    }
    let out = cmd.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    parse_result(&stdout).ok_or_else(|| {
        format!(
            "loadgen {mode} gave no RESULT line: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into()
    })
}

// === statistics and output ===

fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

struct Candidate {
    /// Full name for the table.
    name: String,
    /// Short name for the chart.
    short: String,
    port: u16,
    kind: &'static str,
    /// The process under test, for its peak RSS; `None` for the direct baselines.
    proc_key: Option<&'static str>,
    /// The processes whose CPU time is charged to this candidate (empty: direct).
    pids: Vec<u32>,
    samples: Vec<Sample>,
    rss_mib: Option<f64>,
}

impl Candidate {
    fn new(
        name: &str,
        short: &str,
        port: u16,
        kind: &'static str,
        proc_key: Option<&'static str>,
    ) -> Self {
        Candidate {
            name: name.into(),
            short: short.into(),
            port,
            kind,
            proc_key,
            pids: Vec::new(),
            samples: Vec::new(),
            rss_mib: None,
        }
    }
    fn pids(mut self, p: &Proc) -> Self {
        self.pids = p.pids();
        self
    }
    fn med(&self, f: impl Fn(&Sample) -> f64) -> f64 {
        median(self.samples.iter().map(f).collect())
    }
}

/// Median over rounds of `a[r].rps / b[r].rps` (rounds alternate, so each ratio compares
/// neighbours in time).
fn ratio(a: &Candidate, b: &Candidate) -> f64 {
    median(
        a.samples
            .iter()
            .zip(&b.samples)
            .map(|(x, y)| x.rps / y.rps)
            .collect(),
    )
}

/// Median over rounds of `b[r].cpu_us / a[r].cpu_us`: `a`'s throughput relative to `b`'s if
/// each had the core to itself.
fn cpu_ratio(a: &Candidate, b: &Candidate) -> f64 {
    median(
        a.samples
            .iter()
            .zip(&b.samples)
            .map(|(x, y)| y.cpu_us / x.cpu_us)
            .collect(),
    )
}

/// utime + stime of these processes, clock ticks (all threads; nginx: master + workers).
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| {
            let fields: Vec<u64> = stat
                .rsplit_once(')')
                .map(|(_, rest)| {
                    rest.split_whitespace()
                        .map(|f| f.parse().unwrap_or(0))
                        .collect()
                })
                .unwrap_or_default();
            // After the comm: state(0) ... utime(11) stime(12).
            fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)
        })
        .sum()
}

fn clock_ticks_per_second() -> f64 {
    sh("getconf CLK_TCK").parse().unwrap_or(100.0)
}

fn table(cands: &[Candidate]) -> String {
    let mut s = String::from(
        "| candidate | requests/s | p50 ms | p99 ms | proxy CPU µs/request | peak RSS MiB | errors | requests/s per round |\n|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for c in cands {
        let rounds: Vec<String> = c.samples.iter().map(|x| format!("{:.0}", x.rps)).collect();
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} |",
            c.name,
            c.med(|x| x.rps),
            c.med(|x| x.p50_ms),
            c.med(|x| x.p99_ms),
            if c.pids.is_empty() {
                "—".to_string()
            } else {
                format!("{:.1}", c.med(|x| x.cpu_us))
            },
            c.rss_mib.map_or("—".into(), |m| format!("{m:.1}")),
            c.samples.iter().map(|x| x.errors).sum::<u64>(),
            rounds.join(" / "),
        );
    }
    s
}

fn sh(cmd: &str) -> String {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Runs every candidate of a section for `rounds` rounds, alternating (each round starts one
/// candidate later), after one warm-up run each.
fn run_section(o: &Opts, title: &str, cands: &mut [Candidate], token: &str, tag: &str) -> Res<()> {
    println!("\n== {title}: warm-up {} s each ==", o.warmup);
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    for (i, c) in cands.iter().enumerate() {
        if o.warmup > 0 {
            let prefix = format!("w{tag}{i}-{stamp}");
            let tok = if c.kind == "v1" { BROKER_TOKEN } else { token };
            wrk(o, c.port, c.kind, &prefix, tok, o.warmup)?;
        }
    }
    let n = cands.len();
    for round in 0..o.rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let c = &mut cands[i];
            let prefix = format!("r{round}{tag}{i}-{stamp}");
            let tok = if c.kind == "v1" { BROKER_TOKEN } else { token };
            let before = cpu_ticks(&c.pids);
            let mut s = wrk(o, c.port, c.kind, &prefix, tok, o.seconds)?;
            let ticks = cpu_ticks(&c.pids).saturating_sub(before) as f64;
            // `wrk` put the successful request count in cpu_us.
            s.cpu_us = if c.pids.is_empty() {
                f64::NAN
            } else {
                ticks / clock_ticks_per_second() * 1e6 / s.cpu_us.max(1.0)
            };
            println!(
                "round {}/{} {:<44} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  CPU {:>6.1} µs/req  errors {}",
                round + 1,
                o.rounds,
                c.name,
                s.rps,
                s.p50_ms,
                s.p99_ms,
                s.cpu_us,
                s.errors
            );
            c.samples.push(s);
        }
    }
    Ok(())
}

struct OpenLoop {
    name: String,
    peak: f64,
    rate: f64,
    samples: Vec<(Sample, u64, u64)>,
}

struct MemCheck {
    sync: String,
    creates_ok: u64,
    creates_failed: u64,
    create_rps: f64,
    seconds: f64,
    rss_start_mib: f64,
    rss_after_creates_mib: f64,
    rss_idle_mib: f64,
    hwm_mib: f64,
    idle_held: u64,
    idle_failed: u64,
    idle_still_open: u64,
    fds: usize,
}

fn main() -> Res<()> {
    let o = Opts::from_env()?;
    stop_leftovers(&o.run_dir, &o.bin("examples"));
    let _ = fs::remove_dir_all(&o.run_dir);
    fs::create_dir_all(&o.run_dir)?;
    fs::create_dir_all(&o.out_dir)?;
    for off in [
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 104, 105, 106, 107, 108, 109, 110,
    ] {
        if !port_free(o.port(off)) {
            return Err(format!(
                "port {} is in use; set LOAD_BASE_PORT to a free range",
                o.port(off)
            )
            .into());
        }
    }
    let started = Instant::now();
    let date = sh("date -u '+%Y-%m-%d %H:%M:%S UTC'");
    let load_before = loadavg();
    let token = mint_token()?;
    let nginx = PathBuf::from(sh("command -v nginx || echo /usr/sbin/nginx"));
    let wrk_version = sh("wrk -v 2>&1 | head -1 | cut -d' ' -f1,2");
    let nginx_version = sh("nginx -v 2>&1");

    // Core 0: origin and broker (shared with the load generator).
    let origin_conf = origin_conf(&o)?;
    let mut origin = Proc::spawn(
        "origin nginx",
        0,
        &nginx,
        &[
            "-e".into(),
            o.run_dir.join("origin/error.log").display().to_string(),
            "-c".into(),
            origin_conf.display().to_string(),
        ],
        &[],
        &o.run_dir.join("origin.log"),
    )?;
    wait_port(&mut origin, o.port(1))?;
    let mut broker = Proc::spawn(
        "mock v1 broker",
        0,
        &o.bin("examples/mock_v1_broker"),
        &[format!("127.0.0.1:{}", o.port(2)), BROKER_TOKEN.into()],
        &[],
        &o.run_dir.join("broker.log"),
    )?;
    wait_port(&mut broker, o.port(2))?;
    // Core 1: the proxies under test.
    let proxy_conf = nginx_proxy_conf(&o)?;
    let mut nginx_proxy = Proc::spawn(
        "nginx proxy",
        1,
        &nginx,
        &[
            "-e".into(),
            o.run_dir
                .join("nginx-proxy/error.log")
                .display()
                .to_string(),
            "-c".into(),
            proxy_conf.display().to_string(),
        ],
        &[],
        &o.run_dir.join("nginx-proxy.log"),
    )?;
    wait_port(&mut nginx_proxy, o.port(3))?;

    let mut md = String::new();
    let mut chart_rows: Vec<(String, String, f64, f64)> = Vec::new();
    let mut pass: Vec<Candidate> = Vec::new();
    let mut create: Vec<Candidate> = Vec::new();

    // --- 1. pass-through ---
    if o.runs("pass") {
        let mut bare = Proc::spawn(
            "bare pingora",
            1,
            &o.bin("examples/bare_proxy"),
            &[
                format!("127.0.0.1:{}", o.port(4)),
                format!("127.0.0.1:{}", o.port(1)),
                "1".into(),
            ],
            &[("RUST_LOG", "warn")],
            &o.run_dir.join("bare-proxy.log"),
        )?;
        wait_port(&mut bare, o.port(4))?;
        let bg_pass = start_brokergate(&o, "brokergate-pass", o.port(5), "full")?;
        pass = vec![
            Candidate::new(
                "direct to origin (nginx `return 200`)",
                "direct",
                o.port(1),
                "get",
                None,
            ),
            Candidate::new(
                "nginx 1 worker → origin",
                "nginx",
                o.port(3),
                "get",
                Some("nginx"),
            )
            .pids(&nginx_proxy),
            Candidate::new(
                "bare pingora proxy, 1 thread → origin",
                "bare pingora",
                o.port(4),
                "get",
                Some("bare"),
            )
            .pids(&bare),
            Candidate::new(
                "brokergate, 1 thread, unowned route → origin",
                "brokergate",
                o.port(5),
                "get",
                Some("brokergate"),
            )
            .pids(&bg_pass),
        ];
        let bg_base = match &o.baseline {
            Some(bin) => Some(start_brokergate_bin(
                &o,
                bin,
                "baseline-pass",
                o.port(9),
                "full",
            )?),
            None => None,
        };
        if let Some(p) = &bg_base {
            pass.push(
                Candidate::new(
                    "baseline brokergate (LOAD_BASELINE_BIN), 1 thread, unowned route → origin",
                    "baseline",
                    o.port(9),
                    "get",
                    Some("baseline"),
                )
                .pids(p),
            );
        }
        run_section(
            &o,
            &format!("pass-through GET {PASS_PATH}"),
            &mut pass,
            &token,
            "p",
        )?;
        for c in &mut pass {
            c.rss_mib = match c.proc_key {
                Some("nginx") => Some(peak_rss_mib(&nginx_proxy)),
                Some("bare") => Some(peak_rss_mib(&bare)),
                Some("brokergate") => Some(peak_rss_mib(&bg_pass)),
                Some("baseline") => bg_base.as_ref().map(peak_rss_mib),
                _ => None,
            };
        }
        drop(bg_base);
        drop(bare);
        drop(bg_pass);
    }

    // --- 2. create path, 3. open loop ---
    let mut open: Vec<OpenLoop> = Vec::new();
    if o.runs("create") {
        let bg_full = start_brokergate(&o, "brokergate-full", o.port(6), "full")?;
        let bg_normal = start_brokergate(&o, "brokergate-normal", o.port(7), "normal")?;
        create = vec![
            Candidate::new(
                "direct POST /gateway/v1/configurations to the mock broker",
                "direct broker",
                o.port(2),
                "v1",
                None,
            ),
            Candidate::new(
                "nginx 1 worker → broker (same POST, untranslated)",
                "nginx→broker",
                o.port(3),
                "v1",
                Some("nginx"),
            )
            .pids(&nginx_proxy),
            Candidate::new(
                "brokergate create, store synchronous=full (default)",
                "brokergate full",
                o.port(6),
                "cc",
                Some("full"),
            )
            .pids(&bg_full),
            Candidate::new(
                "brokergate create, store synchronous=normal",
                "brokergate normal",
                o.port(7),
                "cc",
                Some("normal"),
            )
            .pids(&bg_normal),
        ];
        let bg_base = match &o.baseline {
            Some(bin) => Some(start_brokergate_bin(
                &o,
                bin,
                "baseline-full",
                o.port(10),
                "full",
            )?),
            None => None,
        };
        if let Some(p) = &bg_base {
            create.push(
                Candidate::new(
                    "baseline brokergate (LOAD_BASELINE_BIN) create, synchronous=full",
                    "baseline full",
                    o.port(10),
                    "cc",
                    Some("baseline"),
                )
                .pids(p),
            );
        }
        run_section(&o, "create path POST", &mut create, &token, "c")?;
        for c in &mut create {
            c.rss_mib = match c.proc_key {
                Some("nginx") => Some(peak_rss_mib(&nginx_proxy)),
                Some("full") => Some(peak_rss_mib(&bg_full)),
                Some("normal") => Some(peak_rss_mib(&bg_normal)),
                Some("baseline") => bg_base.as_ref().map(peak_rss_mib),
                _ => None,
            };
        }
        drop(bg_base);
        if o.runs("open") {
            // brokergate at half its own peak; as controls, the same POST through nginx and
            // directly to the broker at brokergate (full)'s rate: the floor this machine and
            // this load generator give the tail at that rate.
            let half = |idx: usize| (create[idx].med(|x| x.rps) / 2.0).max(1.0);
            let specs = [
                (2usize, o.port(6), "cc", half(2), true),
                (3, o.port(7), "cc", half(3), true),
                (1, o.port(3), "v1", half(2), false),
                (0, o.port(2), "v1", half(2), false),
            ];
            for &(idx, _, _, rate, own) in &specs {
                open.push(OpenLoop {
                    name: if own {
                        create[idx].name.clone()
                    } else {
                        format!("control: {} at brokergate (full)'s rate", create[idx].name)
                    },
                    peak: create[idx].med(|x| x.rps),
                    rate,
                    samples: Vec::new(),
                });
            }
            println!(
                "\n== open loop at half of brokergate's peak: {} s per run, {} connections ==",
                o.open_seconds, o.open_conns
            );
            let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
            let n = specs.len();
            for round in 0..o.open_rounds {
                for k in 0..n {
                    let i = (round + k) % n;
                    let (_, port, kind, rate, _) = specs[i];
                    let m = loadgen(
                        &o,
                        "open",
                        port,
                        &[
                            ("kind", kind.into()),
                            ("token", token.clone()),
                            ("broker-token", BROKER_TOKEN.into()),
                            ("prefix", format!("o{round}-{i}-{stamp}")),
                            ("rate", format!("{rate:.3}")),
                            ("seconds", o.open_seconds.to_string()),
                            ("conns", o.open_conns.to_string()),
                        ],
                    )?;
                    let s = Sample {
                        rps: num(&m, "rps"),
                        p50_ms: num(&m, "p50_us") / 1e3,
                        p99_ms: num(&m, "p99_us") / 1e3,
                        p999_ms: num(&m, "p999_us") / 1e3,
                        errors: (num(&m, "bad_status") + num(&m, "io_errors")) as u64,
                        cpu_us: f64::NAN,
                    };
                    println!(
                        "round {}/{} {:<58} {:>6.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  p99.9 {:>6.2} ms  errors {}  late {}",
                        round + 1,
                        o.open_rounds,
                        open[i].name,
                        s.rps,
                        s.p50_ms,
                        s.p99_ms,
                        s.p999_ms,
                        s.errors,
                        num(&m, "late")
                    );
                    open[i]
                        .samples
                        .push((s, num(&m, "late") as u64, num(&m, "unsent") as u64));
                }
            }
        }
        drop(bg_full);
        drop(bg_normal);
    }

    // --- 4. memory ---
    let mut mem: Option<MemCheck> = None;
    if o.runs("mem") {
        println!(
            "\n== memory: {} creates, then {} idle keep-alive connections (store synchronous={}) ==",
            o.mem_creates, o.idle_conns, o.mem_sync
        );
        let mut bg = start_brokergate(&o, "brokergate-mem", o.port(8), &o.mem_sync)?;
        let rss_start = status_kib(bg.pid(), "VmRSS:") as f64 / 1024.0;
        let m = loadgen(
            &o,
            "count",
            o.port(8),
            &[
                ("kind", "cc".into()),
                ("token", token.clone()),
                ("prefix", format!("m-{}", std::process::id())),
                ("requests", o.mem_creates.to_string()),
                ("conns", o.conns.to_string()),
                ("max-seconds", o.mem_max_seconds.to_string()),
            ],
        )?;
        let rss_after = status_kib(bg.pid(), "VmRSS:") as f64 / 1024.0;
        println!(
            "creates: ok {} failed {} in {:.1} s ({:.0}/s); RSS {rss_after:.1} MiB",
            num(&m, "ok"),
            num(&m, "bad_status") + num(&m, "io_errors"),
            num(&m, "seconds"),
            num(&m, "rps")
        );
        let mut idle = Command::new("taskset")
            .args(["-c", "0"])
            .arg(o.bin("examples/loadgen"))
            .arg("idle")
            .arg(format!("127.0.0.1:{}", o.port(8)))
            .args([
                "--conns",
                &o.idle_conns.to_string(),
                "--path",
                PASS_PATH,
                "--seconds",
                "120",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut lines = BufReader::new(idle.stdout.take().ok_or("no stdout")?).lines();
        let ready = lines.next().transpose()?.unwrap_or_default();
        std::thread::sleep(Duration::from_secs(2));
        let pid = bg.pid();
        let rss_idle = status_kib(pid, "VmRSS:") as f64 / 1024.0;
        let hwm = status_kib(pid, "VmHWM:") as f64 / 1024.0;
        let fds = fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0);
        drop(idle.stdin.take()); // closes the idle connections' hold
        let result = lines
            .map_while(Result::ok)
            .find(|l| l.starts_with("RESULT "))
            .and_then(|l| parse_result(&l))
            .unwrap_or_default();
        let _ = idle.wait();
        let held: BTreeMap<String, String> =
            parse_result(&format!("RESULT {}", ready.trim_start_matches("READY ")))
                .unwrap_or_default();
        println!(
            "idle: {ready}; brokergate RSS {rss_idle:.1} MiB, peak {hwm:.1} MiB, {fds} fds; still open at the end: {}",
            num(&result, "still_open")
        );
        mem = Some(MemCheck {
            sync: o.mem_sync.clone(),
            creates_ok: num(&m, "ok") as u64,
            creates_failed: (num(&m, "bad_status") + num(&m, "io_errors")) as u64,
            create_rps: num(&m, "rps"),
            seconds: num(&m, "seconds"),
            rss_start_mib: rss_start,
            rss_after_creates_mib: rss_after,
            rss_idle_mib: rss_idle,
            hwm_mib: hwm,
            idle_held: num(&held, "held") as u64,
            idle_failed: num(&held, "failed") as u64,
            idle_still_open: num(&result, "still_open") as u64,
            fds,
        });
        bg.stop();
    }
    drop(nginx_proxy);
    drop(broker);
    drop(origin);

    // --- report ---
    let load_after = loadavg();
    let model = sh("lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1");
    let model = if model.is_empty() {
        sh("sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -1")
    } else {
        model
    };
    let _ = writeln!(md, "# brokergate load harness — latest results\n");
    let _ = writeln!(
        md,
        "Produced by `benches/load/run.sh` on {date}, in {:.0} s. Machine: `nproc` = {}, CPU {model}, kernel {}, store on {}. Load average (1/5/15 min) before: {load_before}; after: {load_after} (the harness itself keeps ~2 cores busy).\n",
        started.elapsed().as_secs_f64(),
        sh("nproc"),
        sh("uname -r"),
        sh(&format!("df -T {} | awk 'NR==2 {{print $2}}'", o.run_dir.display())),
    );
    let _ = writeln!(
        md,
        "Settings: loopback only; load generator + origin + mock v1 broker on core 0 (`taskset -c 0`), the proxy under test on core 1 (`taskset -c 1`). {} rounds, candidates alternating (each round starts one candidate later), {} s per run after a {} s warm-up each; closed loop `{}` `-t1 -c{}`; figures are medians of the rounds. brokergate: `dist` build (fat LTO, mimalloc), `[server] threads = 1`, `[log] access_log = false`, `level = \"warn\"`, `RUST_LOG=warn`, HS256 token (one token for the whole run). Bare pingora: `examples/bare_proxy.rs`, same build and allocator, 1 thread, `RUST_LOG=warn`. nginx {}: `worker_processes 1`, `access_log off`, upstream `keepalive 64`, `proxy_http_version 1.1`, `keepalive_requests` raised on both sides. Origin: nginx `return 200` of a {}-byte JSON body. Peak RSS is `VmHWM` (nginx: master + worker) read after the section's rounds. Proxy CPU µs/request is the user + system time of the process under test (all its threads; nginx: master + worker) during a run, over the requests it served.\n",
        o.rounds,
        o.seconds,
        o.warmup,
        wrk_version,
        o.conns,
        nginx_version.trim_start_matches("nginx version: "),
        ORIGIN_BODY.len()
    );
    let busy: f64 = load_before
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0.0);
    if busy >= 1.0 {
        let _ = writeln!(
            md,
            "**Noise warning:** the 1-minute load average was {busy:.2} before the run: other work shared the 2 cores, so requests/s and the p99 columns moved between rounds (see the per-round column); the CPU-time ratios are the steadier figure.\n"
        );
    }
    let _ = writeln!(md, "![throughput and p99 per candidate](results.png)\n");
    if !pass.is_empty() {
        let _ = writeln!(
            md,
            "## Pass-through: `GET {PASS_PATH}` (small upstream resource)\n"
        );
        md.push_str(&table(&pass));
        let r_bare = ratio(&pass[3], &pass[2]);
        let r_nginx = ratio(&pass[3], &pass[1]);
        let _ = writeln!(
            md,
            "\nRatios (median over rounds of the per-round throughput ratio): brokergate / bare pingora = **{r_bare:.2}** (target ≥ 0.95: {}), brokergate / nginx = **{r_nginx:.2}** (target ≥ 0.6: {}); bare pingora / nginx = {:.2}.\n\nThe same ratios from CPU time per request of the process under test (median over rounds of the per-round ratio; what the throughput ratio would be if each proxy had core 1 to itself — less disturbed by other load on the machine): brokergate / bare pingora = **{:.2}**, brokergate / nginx = **{:.2}**, bare pingora / nginx = {:.2}.\n",
            verdict(r_bare >= 0.95),
            verdict(r_nginx >= 0.6),
            ratio(&pass[2], &pass[1]),
            cpu_ratio(&pass[3], &pass[2]),
            cpu_ratio(&pass[3], &pass[1]),
            cpu_ratio(&pass[2], &pass[1]),
        );
        if let Some(base) = pass.get(4) {
            let _ = writeln!(
                md,
                "Against the baseline binary (`LOAD_BASELINE_BIN`), same run: brokergate / baseline = **{:.3}** by throughput, **{:.3}** by CPU time per request.\n",
                ratio(&pass[3], base),
                cpu_ratio(&pass[3], base),
            );
        }
        for c in &pass {
            chart_rows.push((
                "pass".into(),
                c.short.clone(),
                c.med(|x| x.rps),
                c.med(|x| x.p99_ms),
            ));
        }
    }
    if !create.is_empty() {
        let _ = writeln!(
            md,
            "## Create path: `POST` with a unique name per request\n"
        );
        let _ = writeln!(md, "brokergate rows: `POST /v2/service_instances` with a valid HS256 bearer token (auth, decode, validate, reserve, broker call, commit, render). The other rows send the v1 body brokergate would send, `POST /gateway/v1/configurations`, to the same mock broker — directly (the limit) and through nginx untranslated (no auth, no translation, no record).\n");
        md.push_str(&table(&create));
        let r_full = ratio(&create[2], &create[0]);
        let r_norm = ratio(&create[3], &create[0]);
        let _ = writeln!(
            md,
            "\nRatios (median of per-round ratios): brokergate (synchronous=full) / direct = **{r_full:.3}** (target ≥ 0.5: {}); brokergate / nginx→broker = {:.3}; with synchronous=normal: / direct = {r_norm:.3}, / nginx→broker = {:.3}. From CPU time per request: brokergate (full) / nginx→broker = {:.3}, (normal) / nginx→broker = {:.3}.\n",
            verdict(r_full >= 0.5),
            ratio(&create[2], &create[1]),
            ratio(&create[3], &create[1]),
            cpu_ratio(&create[2], &create[1]),
            cpu_ratio(&create[3], &create[1]),
        );
        if let Some(base) = create.get(4) {
            let _ = writeln!(
                md,
                "Against the baseline binary (`LOAD_BASELINE_BIN`), same run: brokergate (full) / baseline (full) = **{:.3}** by throughput, **{:.3}** by CPU time per request.\n",
                ratio(&create[2], base),
                cpu_ratio(&create[2], base),
            );
        }
        for c in &create {
            chart_rows.push((
                "create".into(),
                c.short.clone(),
                c.med(|x| x.rps),
                c.med(|x| x.p99_ms),
            ));
        }
    }
    if !open.is_empty() {
        let _ = writeln!(
            md,
            "## Open loop: brokergate create at half its measured peak\n"
        );
        let _ = writeln!(md, "Fixed-rate `loadgen open` (wrk2's model: latency counted from when a request was due if its connection was still busy, so queueing is not hidden), {} connections, {} s per run, {} rounds alternating, unique names. The control rows send the v1 POST at brokergate (full)'s rate through nginx and directly to the broker: the tail this machine and load generator give at that rate without brokergate.\n", o.open_conns, o.open_seconds, o.open_rounds);
        md.push_str("| candidate | peak req/s (closed loop) | target rate | achieved req/s | p50 ms | p99 ms | p99.9 ms | errors | late sends | p99 per round |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for ol in &open {
            let med = |f: &dyn Fn(&Sample) -> f64| {
                median(ol.samples.iter().map(|(s, _, _)| f(s)).collect())
            };
            let per_round: Vec<String> = ol
                .samples
                .iter()
                .map(|(s, _, _)| format!("{:.2}", s.p99_ms))
                .collect();
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
                ol.name,
                ol.peak,
                ol.rate,
                med(&|s| s.rps),
                med(&|s| s.p50_ms),
                med(&|s| s.p99_ms),
                med(&|s| s.p999_ms),
                ol.samples.iter().map(|(s, _, _)| s.errors).sum::<u64>(),
                ol.samples.iter().map(|(_, l, _)| l).sum::<u64>(),
                per_round.join(" / "),
            );
        }
        if let Some(ol) = open.first() {
            let p99 = median(ol.samples.iter().map(|(s, _, _)| s.p99_ms).collect());
            let _ = writeln!(md, "\nTarget p99 at half load ≤ 2 ms (default store setting, synchronous=full): **{p99:.2} ms** — {}.\n", verdict(p99 <= 2.0));
        }
    }
    if let Some(m) = &mem {
        let _ = writeln!(
            md,
            "## Memory: brokergate after {} creates and {} idle keep-alive connections\n",
            o.mem_creates, o.idle_conns
        );
        let _ = writeln!(md, "A fresh brokergate (1 thread, store synchronous={}) took {} creates ({} failed) from `loadgen count` ({} connections) in {:.1} s ({:.0}/s); then {} connections each did one pass-through `GET {PASS_PATH}` and stayed open ({} held, {} failed; {} still open when released); RSS read 2 s later.\n", m.sync, m.creates_ok, m.creates_failed, o.conns, m.seconds, m.create_rps, o.idle_conns, m.idle_held, m.idle_failed, m.idle_still_open);
        md.push_str("| RSS at start | after the creates | with the idle connections | peak (VmHWM) | open fds |\n|---:|---:|---:|---:|---:|\n");
        let _ = writeln!(
            md,
            "| {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB | {} |\n",
            m.rss_start_mib, m.rss_after_creates_mib, m.rss_idle_mib, m.hwm_mib, m.fds
        );
        let _ = writeln!(
            md,
            "Target RSS ≤ 64 MiB: **{:.1} MiB** — {}.\n",
            m.rss_idle_mib.max(m.hwm_mib),
            verdict(m.rss_idle_mib.max(m.hwm_mib) <= 64.0 && m.creates_ok >= o.mem_creates)
        );
    }
    let md_path = o.out_dir.join("results.md");
    fs::write(&md_path, &md)?;
    println!("\n{md}");
    println!("wrote {}", md_path.display());
    if let Err(e) = chart(&o, &chart_rows, &date, &model) {
        eprintln!("chart: {e}");
    }
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

/// `results.png`: requests/s and p99 per candidate, one row of two panels per section.
fn chart(o: &Opts, rows: &[(String, String, f64, f64)], date: &str, model: &str) -> Res<()> {
    let sections: Vec<(&str, &str)> =
        [("pass", "pass-through GET"), ("create", "create path POST")]
            .into_iter()
            .filter(|(k, _)| rows.iter().any(|r| r.0 == *k))
            .collect();
    if sections.is_empty() {
        return Ok(());
    }
    let mut script = format!(
        "set terminal pngcairo size 1400,{} font 'sans,10'\nset output '{}'\nset multiplot layout {},2 title 'brokergate load harness — {} — {} (medians of {} rounds)'\nset style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.85 border -1\nset boxwidth 0.7\nset grid ytics\nset yrange [0:*]\nset offsets 0,0,graph 0.12,0\nset xtics nomirror\n",
        450 * sections.len() + 50,
        o.out_dir.join("results.png").display(),
        sections.len(),
        date,
        model.replace('\'', ""),
        o.rounds
    );
    for (key, title) in &sections {
        let data = o.run_dir.join(format!("chart-{key}.dat"));
        let mut f = fs::File::create(&data)?;
        for r in rows.iter().filter(|r| r.0 == *key) {
            writeln!(f, "\"{}\" {:.1} {:.3}", r.1, r.2, r.3)?;
        }
        let d = data.display();
        let _ = write!(
            script,
            "set title '{title}: requests/s'\nplot '{d}' using 2:xtic(1) notitle lc rgb '#4477aa', '' using 0:2:(sprintf('%.0f',$2)) with labels offset 0,0.8 notitle\n\
             set title '{title}: p99 latency, ms'\nplot '{d}' using 3:xtic(1) notitle lc rgb '#cc6677', '' using 0:3:(sprintf('%.2f',$3)) with labels offset 0,0.8 notitle\n"
        );
    }
    script.push_str("unset multiplot\n");
    let gp = o.run_dir.join("chart.gp");
    fs::write(&gp, script)?;
    let out = Command::new("gnuplot").arg(&gp).output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string().into());
    }
    println!("wrote {}", o.out_dir.join("results.png").display());
    Ok(())
}
