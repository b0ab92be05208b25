//! The load harness's own HTTP/1.1 load generator, for what `wrk` cannot do: a **fixed-rate
//! (open-loop) run** whose requests each carry a unique instance name, a **count-bounded** run
//! (100,000 creates), and **idle keep-alive connections** held open for a memory check.
//!
//! Run (the harness does): `target/dist/examples/loadgen MODE ADDR [--key value ...]`
//!
//! - `open ADDR --rate R --seconds S --conns C --kind K` — wrk2's model: connection `c` sends
//!   requests `c, c+C, c+2C, …`, request `i` is due at `start + i/R`. A request's latency runs
//!   from when it was due if its connection was still busy with the previous one then (the
//!   queueing a closed-loop tool hides), else from when it was sent (so the 1 ms timer
//!   granularity of the generator itself is not charged to the server).
//! - `count ADDR --requests N --conns C --kind K [--max-seconds T]` — closed loop until N
//!   requests are done (or T seconds, default 900, have passed).
//! - `idle ADDR --conns N --path P --seconds S` — N connections each do one `GET P`, keep the
//!   connection open (keep-alive) and print `READY`; they are held until S seconds pass or
//!   standard input closes.
//!
//! Kinds: `cc` (`POST /v2/service_instances`, needs `--token`), `v1` (`POST
//! /gateway/v1/configurations`, needs `--broker-token`), `get` (`GET --path`). Created names are
//! `<--prefix>-<n>`, unique per run. Each run prints one `RESULT key=value …` line (latencies in
//! microseconds) on stdout.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PLAN_GUID: &str = "6df3af55-8f97-4dbe-9d6b-098eb53d8c17";
const SPACE_GUID: &str = "f24c6904-30e0-4559-9523-06d2d93f0c9c";
const ORG_GUID: &str = "b8c5a6a4-1cc8-4ae5-8a8f-3d4e5b6c7d8e";

#[derive(Clone)]
struct Requests {
    kind: String,
    host: String,
    path: String,
    token: String,
    broker_token: String,
    prefix: String,
}

impl Requests {
    /// The bytes of request `n`.
    fn build(&self, n: u64) -> Vec<u8> {
        match self.kind.as_str() {
            "cc" => {
                let body = format!(
                    r#"{{"space_guid":"{SPACE_GUID}","name":"{}-{n}","service_plan_guid":"{PLAN_GUID}"}}"#,
                    self.prefix
                );
                format!(
                    "POST /v2/service_instances HTTP/1.1\r\nHost: {}\r\nAuthorization: bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    self.host,
                    self.token,
                    body.len()
                )
                .into_bytes()
            }
            "v1" => {
                let body = format!(
                    r#"{{"label":"echo-1.0","email":"email-148@somedomain.com","plan":"free","version":"1.0","provider":"core","space_guid":"{SPACE_GUID}","organization_guid":"{ORG_GUID}","unique_id":"echo-free","name":"{}-{n}"}}"#,
                    self.prefix
                );
                format!(
                    "POST /gateway/v1/configurations HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json\r\nX-VCAP-Request-ID: {}-{n}\r\nX-VCAP-Service-Token: {}\r\nContent-Length: {}\r\n\r\n{body}",
                    self.host,
                    self.prefix,
                    self.broker_token,
                    body.len()
                )
                .into_bytes()
            }
            _ => format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", self.path, self.host).into_bytes(),
        }
    }
}

/// One keep-alive connection that sends a request and reads its `Content-Length` answer.
struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            stream: None,
            buf: Vec::with_capacity(8192),
        }
    }

    /// Sends `req` and returns the answer's status; on any error the connection is dropped
    /// (the next call reconnects).
    async fn exchange(&mut self, req: &[u8]) -> io::Result<u16> {
        let r = self.try_exchange(req).await;
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    async fn try_exchange(&mut self, req: &[u8]) -> io::Result<u16> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::Error::other("no stream"));
        };
        stream.write_all(req).await?;
        self.buf.clear();
        let (head_len, status, body_len, close) = loop {
            if let Some(h) = parse_head(&self.buf)? {
                break h;
            }
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        while self.buf.len() < head_len + body_len {
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        if close {
            self.stream = None;
        }
        Ok(status)
    }
}

/// `(head length, status, Content-Length, Connection: close)` once the head is complete.
fn parse_head(buf: &[u8]) -> io::Result<Option<(usize, u16, usize, bool)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(io::Error::other)?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| io::Error::other("bad status line"))?;
    let (mut len, mut close) = (None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            len = value.parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(io::Error::other("chunked answers are not supported"));
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    Ok(Some((end + 4, status, len.unwrap_or(0), close)))
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    ok: u64,
    bad_status: u64,
    io_errors: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.ok += other.ok;
        self.bad_status += other.bad_status;
        self.io_errors += other.io_errors;
    }

    fn record(&mut self, status: io::Result<u16>, latency: Duration) {
        match status {
            Ok(s) if (200..300).contains(&s) => {
                self.ok += 1;
                self.latencies_us
                    .push(latency.as_micros().min(u32::MAX as u128) as u32);
            }
            Ok(_) => self.bad_status += 1,
            Err(_) => self.io_errors += 1,
        }
    }

    fn report(mut self, extra: &str, elapsed: Duration) {
        self.latencies_us.sort_unstable();
        let p = |q: f64| -> u32 {
            if self.latencies_us.is_empty() {
                return 0;
            }
            let i = ((self.latencies_us.len() as f64) * q).ceil() as usize;
            self.latencies_us[i.clamp(1, self.latencies_us.len()) - 1]
        };
        println!(
            "RESULT ok={} bad_status={} io_errors={} seconds={:.3} rps={:.1} p50_us={} p90_us={} p99_us={} p999_us={} max_us={}{extra}",
            self.ok,
            self.bad_status,
            self.io_errors,
            elapsed.as_secs_f64(),
            self.ok as f64 / elapsed.as_secs_f64(),
            p(0.50),
            p(0.90),
            p(0.99),
            p(0.999),
            self.latencies_us.last().copied().unwrap_or(0),
        );
    }
}

async fn open_loop(addr: SocketAddr, reqs: Requests, rate: f64, seconds: f64, conns: u64) {
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + Duration::from_secs_f64(seconds);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let reqs = Arc::new(reqs);
    let mut tasks = Vec::new();
    for c in 0..conns {
        let reqs = reqs.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let mut tally = Tally::default();
            let (mut late, mut unsent) = (0u64, 0u64);
            let mut i = c;
            loop {
                let due = start + interval.mul_f64(i as f64);
                if due >= end {
                    break;
                }
                let now = Instant::now();
                // Still busy with the previous request when this one fell due: the time it
                // waited counts. Otherwise wait for the schedule.
                let from = if now > due + Duration::from_millis(2) {
                    late += 1;
                    due
                } else {
                    tokio::time::sleep_until(due.into()).await;
                    Instant::now()
                };
                if Instant::now() > end + Duration::from_secs(2) {
                    unsent += 1;
                    i += conns;
                    continue;
                }
                let req = reqs.build(i);
                let status = conn.exchange(&req).await;
                tally.record(status, from.elapsed());
                i += conns;
            }
            (tally, late, unsent)
        }));
    }
    let mut total = Tally::default();
    let (mut late, mut unsent) = (0, 0);
    for t in tasks {
        if let Ok((tally, l, u)) = t.await {
            total.merge(tally);
            late += l;
            unsent += u;
        }
    }
    let elapsed = start.elapsed();
    total.report(
        &format!(" target_rps={rate:.1} conns={conns} late={late} unsent={unsent}"),
        elapsed,
    );
}

async fn count_loop(addr: SocketAddr, reqs: Requests, requests: u64, conns: u64, max_seconds: f64) {
    let next = Arc::new(AtomicU64::new(0));
    let reqs = Arc::new(reqs);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(max_seconds);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (reqs, next) = (reqs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let mut tally = Tally::default();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= requests || Instant::now() > deadline {
                    break;
                }
                let req = reqs.build(n);
                let t = Instant::now();
                let status = conn.exchange(&req).await;
                tally.record(status, t.elapsed());
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for t in tasks {
        if let Ok(tally) = t.await {
            total.merge(tally);
        }
    }
    total.report(&format!(" conns={conns}"), start.elapsed());
}

async fn idle(addr: SocketAddr, reqs: Requests, conns: u64, seconds: f64) {
    let req = reqs.build(0);
    let mut held = Vec::new();
    let mut failed = 0u64;
    // Open them in batches so the listener's backlog is never the limit.
    for batch in (0..conns).collect::<Vec<_>>().chunks(100) {
        let mut tasks = Vec::new();
        for _ in batch {
            let req = req.clone();
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn::new(addr);
                match conn.exchange(&req).await {
                    Ok(s) if (200..300).contains(&s) && conn.stream.is_some() => Some(conn),
                    _ => None,
                }
            }));
        }
        for t in tasks {
            match t.await {
                Ok(Some(conn)) => held.push(conn),
                _ => failed += 1,
            }
        }
    }
    println!("READY held={} failed={failed}", held.len());
    // Standard input is read on a plain thread (tokio's `io-std` is not enabled here).
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while let Ok(n) = std::io::Read::read(&mut stdin, &mut sink) {
            if n == 0 {
                break;
            }
        }
        let _ = closed_tx.send(());
    });
    let stdin_closed = closed_rx;
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs_f64(seconds)) => {}
        _ = stdin_closed => {}
    }
    // Still open? A peer that closed an idle connection makes it readable (EOF).
    let mut open = 0u64;
    for conn in &mut held {
        if let Some(s) = conn.stream.as_mut() {
            let mut b = [0u8; 1];
            // Timing out means nothing to read: still open. EOF, data or an error: closed.
            if tokio::time::timeout(Duration::from_millis(1), s.read(&mut b))
                .await
                .is_err()
            {
                open += 1;
            }
        }
    }
    println!(
        "RESULT held={} failed={failed} still_open={open}",
        held.len()
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: loadgen open|count|idle ADDR [--key value ...]";
    let mode = args.next().ok_or(usage)?;
    let addr: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let mut opts = HashMap::new();
    while let Some(key) = args.next() {
        let key = key.strip_prefix("--").ok_or(usage)?.to_string();
        opts.insert(key, args.next().ok_or(usage)?);
    }
    let get = |k: &str, d: &str| opts.get(k).cloned().unwrap_or_else(|| d.to_string());
    let reqs = Requests {
        kind: get("kind", "get"),
        host: addr.to_string(),
        path: get("path", "/v2/info"),
        token: get("token", ""),
        broker_token: get("broker-token", "changeechotoken"),
        prefix: get("prefix", &format!("load-{}", std::process::id())),
    };
    let conns: u64 = get("conns", "32").parse()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match mode.as_str() {
        "open" => rt.block_on(open_loop(
            addr,
            reqs,
            get("rate", "100").parse()?,
            get("seconds", "5").parse()?,
            conns,
        )),
        "count" => rt.block_on(count_loop(
            addr,
            reqs,
            get("requests", "1000").parse()?,
            conns,
            get("max-seconds", "900").parse()?,
        )),
        "idle" => rt.block_on(idle(addr, reqs, conns, get("seconds", "10").parse()?)),
        _ => return Err(usage.into()),
    }
    Ok(())
}
