//! Black-box loopback tests of running brokergate in production (issue 4): the admin listener
//! (`/metrics`, `/healthz`, `/readyz`, `POST /-/reload`), every metric and how it moves, hot
//! reload by `POST /-/reload`, SIGHUP and file change (validate-then-swap, the old config kept
//! on a bad file, no request dropped under load), readiness through a graceful shutdown, the
//! JSON access log on stdout, and the JSON diagnostic log format.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::broker::{MockBroker, Mode};
use support::client::{self, create, create_body, Response, CREATE_PATH, FORM_CONTENT_TYPE};
use support::gateway::{Gateway, GatewayConfig, BROKER_NAME, BROKER_TOKEN, PLAN_GUID, SPACE_GUID};
use support::token::{self, Claims, DEFAULT_EMAIL, DEFAULT_USER_ID};
use support::upstream::MockUpstream;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A second plan that reloads add to the catalog.
const PLAN2_GUID: &str = "0b1e2d3c-4a5b-4c6d-8e7f-90a1b2c3d4e5";
const PLAN2_NAME: &str = "paid";

/// Longest wait for an effect the gateway causes in the background (metrics updated in the
/// logging phase, access log lines, a polled file change).
const EFFECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `[[plans]]` for [`PLAN2_GUID`] on the `echo` broker.
fn plan2_toml() -> String {
    format!(
        "\n[[plans]]\nguid = \"{PLAN2_GUID}\"\nbroker = \"{BROKER_NAME}\"\nlabel = \"echo\"\n\
         version = \"1.0\"\nprovider = \"core\"\nname = \"{PLAN2_NAME}\"\nunique_id = \"echo-paid\"\n"
    )
}

/// A `[[plans]]` entry on a broker the file does not define: a config `check-config` refuses.
const BAD_PLAN_TOML: &str = "\n[[plans]]\nguid = \"bad-plan-guid\"\nbroker = \"no-such-broker\"\n\
label = \"x\"\nversion = \"1.0\"\nname = \"x\"\nunique_id = \"x-x\"\n";
/// What the refusal of [`BAD_PLAN_TOML`] must name.
const BAD_PLAN_PROBLEM: &str = "no-such-broker";

/// A create body for `plan` in the seeded space.
fn create_body_for(name: &str, plan: &str) -> Value {
    json!({"name": name, "space_guid": SPACE_GUID, "service_plan_guid": plan})
}

fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A create with a valid token and a fresh name on the seeded plan; asserts 201.
async fn create_ok(gw: &Gateway, prefix: &str) -> Response {
    let name = unique_name(prefix);
    let resp = create(&gw.url(), Some(&token::valid_token()), create_body(&name)).await;
    assert_eq!(resp.status, 201, "create {name}: {resp:?}");
    resp
}

/// Replace the config file atomically (write a sibling, rename), so the 1 s poll never
/// reads a half-written file.
fn write_config(path: &Path, text: &str) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let tmp = path.with_extension(format!("tmp{}", N.fetch_add(1, Ordering::SeqCst)));
    std::fs::write(&tmp, text).expect("write temp config");
    std::fs::rename(&tmp, path).expect("rename config into place");
}

fn read_config(gw: &Gateway) -> String {
    std::fs::read_to_string(gw.config_path()).expect("read config")
}

/// `POST {admin}/-/reload`.
async fn post_reload(gw: &Gateway) -> Response {
    client::send(
        "POST",
        &format!("{}/-/reload", gw.admin_url()),
        &[],
        Vec::new(),
    )
    .await
}

async fn admin_get(gw: &Gateway, path: &str) -> Response {
    client::get(&format!("{}{path}", gw.admin_url()), None).await
}

/// Hex SHA-256, the form `config_hash` is reported in.
fn is_hex_hash(s: &str) -> bool {
    s.len() >= 12 && s.chars().all(|c| c.is_ascii_hexdigit())
}

// ----- Prometheus text format ----------------------------------------------------------------

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed `/metrics` page; the raw text is kept for failure messages.
#[derive(Debug, Clone)]
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    /// Every sample of `name` (any labels).
    fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// The sample with exactly this name and label set.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// Like [`Scrape::get`], panicking (with the page) when the series is absent.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| {
            panic!(
                "series {name}{labels:?} missing from /metrics:\n{}",
                self.text
            )
        })
    }
}

/// Parses the Prometheus text exposition format (0.0.4): comments, `name value`,
/// `name{k="v",...} value [timestamp]`, with `\\`, `\"` and `\n` escapes in label values.
/// Panics on a line it cannot parse: the page must be valid.
fn parse_metrics(text: &str) -> Scrape {
    let mut samples = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples.push(
            parse_sample(line).unwrap_or_else(|| panic!("unparseable metrics line: {line:?}")),
        );
    }
    Scrape {
        text: text.to_string(),
        samples,
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' ', '\t'])?;
    let name = &line[..name_end];
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid_name {
        return None;
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let end = loop {
            // Skip separators.
            while let Some((_, c)) = chars.peek() {
                if *c == ',' || *c == ' ' {
                    chars.next();
                } else {
                    break;
                }
            }
            let (i, c) = chars.next()?;
            if c == '}' {
                break i + 1;
            }
            let mut key = String::from(c);
            loop {
                let (_, c) = chars.next()?;
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                let (_, c) = chars.next()?;
                match c {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            }
            if labels.insert(key.trim().to_string(), value).is_some() {
                return None;
            }
        };
        rest = &after[end..];
    }
    let mut parts = rest.split_whitespace();
    let value: f64 = parts.next()?.parse().ok()?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `GET {admin}/metrics`, checked and parsed.
async fn scrape(gw: &Gateway) -> Scrape {
    let resp = admin_get(gw, "/metrics").await;
    assert_eq!(resp.status, 200, "GET /metrics: {resp:?}");
    let ct = resp.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/plain"), "metrics content-type: {ct:?}");
    parse_metrics(&resp.text())
}

/// Scrapes until the series satisfies `ok` (it may be updated after the response went out,
/// in the logging phase); panics with the page after [`EFFECT_TIMEOUT`].
async fn wait_metric(
    gw: &Gateway,
    name: &str,
    labels: &[(&str, &str)],
    what: &str,
    ok: impl Fn(f64) -> bool,
) -> Scrape {
    let deadline = Instant::now() + EFFECT_TIMEOUT;
    loop {
        let s = scrape(gw).await;
        if s.get(name, labels).is_some_and(&ok) {
            return s;
        }
        if Instant::now() >= deadline {
            panic!(
                "{name}{labels:?} never became {what} within {EFFECT_TIMEOUT:?} (now {:?}):\n{}",
                s.get(name, labels),
                s.text
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_metric_eq(gw: &Gateway, name: &str, labels: &[(&str, &str)], want: f64) -> Scrape {
    wait_metric(gw, name, labels, &format!("= {want}"), |v| v == want).await
}

const HTTP_REQUESTS: &str = "brokergate_http_requests_total";
const RELOADS: &str = "brokergate_config_reloads_total";
const LAST_RELOAD_OK: &str = "brokergate_config_last_reload_successful";
const CONFIG_HASH: &str = "brokergate_config_hash";
const CREATE_ROUTE: &str = "/v2/service_instances";
/// Every `kind` label of `brokergate_broker_errors_total`, as the operations issue names them.
const BROKER_ERROR_KINDS: [&str; 5] = [
    "timeout",
    "connect",
    "rejected",
    "bad_response",
    "malformed",
];

fn reloads(s: &Scrape, result: &str) -> f64 {
    s.value(RELOADS, &[("result", result)])
}

/// Polls (bounded) until stdout holds at least `n` lines.
async fn wait_stdout_lines(gw: &Gateway, n: usize) -> String {
    let ok = support::wait_until(EFFECT_TIMEOUT, || gw.stdout().lines().count() >= n).await;
    let out = gw.stdout();
    assert!(ok, "expected {n} access log lines on stdout, got:\n{out}");
    out
}

// ---------------------------------------------------------------------------------------------
// 1. Metrics
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_metric_appears_and_moves_with_bounded_labels() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let gw = Gateway::start(GatewayConfig::new(&broker.url())).await;

    // Before any event: the series whose labels are known in advance exist at zero.
    let before = scrape(&gw).await;
    for kind in BROKER_ERROR_KINDS {
        assert_eq!(
            before.value(
                "brokergate_broker_errors_total",
                &[("broker", BROKER_NAME), ("kind", kind)]
            ),
            0.0,
            "{kind}"
        );
    }
    for result in ["success", "failure"] {
        assert_eq!(
            before.value(
                "brokergate_orphan_mitigations_total",
                &[("broker", BROKER_NAME), ("result", result)]
            ),
            0.0
        );
        assert_eq!(reloads(&before, result), 0.0, "reloads {result}");
    }
    for reason in ["missing", "expired", "insufficient_scope", "bad_signature"] {
        assert_eq!(
            before.value("brokergate_auth_failures_total", &[("reason", reason)]),
            0.0,
            "auth failure reason {reason}"
        );
    }
    assert_eq!(
        before.value(
            "brokergate_instances_created_total",
            &[("broker", BROKER_NAME), ("plan", PLAN_GUID)]
        ),
        0.0
    );
    assert_eq!(before.value(LAST_RELOAD_OK, &[]), 1.0);
    let loaded_at = before.value(
        "brokergate_config_last_reload_success_timestamp_seconds",
        &[],
    );
    let now = token::now() as f64;
    assert!(
        loaded_at > 0.0 && loaded_at <= now + 1.0 && loaded_at > now - 600.0,
        "last reload success timestamp {loaded_at} (now {now})"
    );
    assert!(before.value(CONFIG_HASH, &[]) > 0.0, "config hash");
    let build = before.series("brokergate_build_info");
    assert_eq!(build.len(), 1, "one build_info series:\n{}", before.text);
    assert_eq!(build[0].value, 1.0);
    assert_eq!(
        build[0].labels.keys().collect::<Vec<_>>(),
        ["revision", "version"]
    );
    assert_eq!(build[0].labels["version"], env!("CARGO_PKG_VERSION"));
    assert!(!build[0].labels["revision"].is_empty(), "build revision");
    assert!(before.value("process_resident_memory_bytes", &[]) > 0.0);
    assert!(
        !before.series("process_cpu_seconds_total").is_empty(),
        "standard process_* metrics:\n{}",
        before.text
    );
    assert_eq!(before.value("brokergate_http_requests_in_flight", &[]), 0.0);

    // One successful create.
    let name = unique_name("metrics-instance");
    let bearer = token::valid_token();
    let resp = create(&gw.url(), Some(&bearer), create_body(&name)).await;
    assert_eq!(resp.status, 201, "{resp:?}");
    let guid = resp.json()["metadata"]["guid"]
        .as_str()
        .expect("metadata.guid")
        .to_string();
    let request_id = resp.header("x-vcap-request-id").unwrap_or_default();

    let post_create = [("method", "POST"), ("route", CREATE_ROUTE)];
    wait_metric_eq(
        &gw,
        HTTP_REQUESTS,
        &[("method", "POST"), ("route", CREATE_ROUTE), ("code", "201")],
        1.0,
    )
    .await;
    let s = wait_metric_eq(&gw, "brokergate_http_requests_in_flight", &[], 0.0).await;
    assert_eq!(
        s.value(
            "brokergate_http_request_duration_seconds_count",
            &post_create
        ),
        1.0
    );
    let sum = s.value("brokergate_http_request_duration_seconds_sum", &post_create);
    assert!(sum > 0.0 && sum < 30.0, "duration sum {sum} (seconds)");
    // Histogram buckets reach 120 s, and +Inf holds the one observation.
    let bucket = |le: &str| {
        s.value(
            "brokergate_http_request_duration_seconds_bucket",
            &[("method", "POST"), ("route", CREATE_ROUTE), ("le", le)],
        )
    };
    assert_eq!(bucket("120"), 1.0);
    assert_eq!(bucket("+Inf"), 1.0);
    assert_eq!(
        s.value(
            "brokergate_broker_requests_total",
            &[
                ("broker", BROKER_NAME),
                ("operation", "provision"),
                ("code", "200")
            ]
        ),
        1.0
    );
    assert_eq!(
        s.value(
            "brokergate_broker_request_duration_seconds_count",
            &[("broker", BROKER_NAME), ("operation", "provision")]
        ),
        1.0
    );
    assert_eq!(
        s.value(
            "brokergate_instances_created_total",
            &[("broker", BROKER_NAME), ("plan", PLAN_GUID)]
        ),
        1.0
    );
    for kind in BROKER_ERROR_KINDS {
        assert_eq!(
            s.value(
                "brokergate_broker_errors_total",
                &[("broker", BROKER_NAME), ("kind", kind)]
            ),
            0.0,
            "no broker error yet: {kind}"
        );
    }
    // A successful create is not an auth failure, and nothing was reloaded.
    assert_eq!(
        s.value("brokergate_auth_failures_total", &[("reason", "missing")]),
        0.0
    );
    assert_eq!(reloads(&s, "success"), 0.0);
    assert_eq!(s.value(LAST_RELOAD_OK, &[]), 1.0);

    // A 401 without a token.
    let resp = create(&gw.url(), None, create_body(&unique_name("no-token"))).await;
    assert_eq!(resp.status, 401, "{resp:?}");
    let s = wait_metric_eq(
        &gw,
        "brokergate_auth_failures_total",
        &[("reason", "missing")],
        1.0,
    )
    .await;
    assert_eq!(
        s.value(
            HTTP_REQUESTS,
            &[("method", "POST"), ("route", CREATE_ROUTE), ("code", "401")]
        ),
        1.0
    );
    assert_eq!(
        s.value("brokergate_auth_failures_total", &[("reason", "expired")]),
        0.0
    );

    // An expired token.
    let expired = Claims::new().expires_in(-3600).sign();
    let resp = create(
        &gw.url(),
        Some(&expired),
        create_body(&unique_name("expired")),
    )
    .await;
    assert_eq!(resp.status, 401, "{resp:?}");
    let s = wait_metric_eq(
        &gw,
        "brokergate_auth_failures_total",
        &[("reason", "expired")],
        1.0,
    )
    .await;
    assert_eq!(
        s.value("brokergate_auth_failures_total", &[("reason", "missing")]),
        1.0
    );

    // A broker 500.
    broker.set_mode(Mode::error(500, 10001, "internal broker failure"));
    let resp = create(
        &gw.url(),
        Some(&bearer),
        create_body(&unique_name("broker-500")),
    )
    .await;
    assert!(resp.status >= 500, "broker 500 surfaces as a 5xx: {resp:?}");
    let s = wait_metric_eq(
        &gw,
        "brokergate_broker_errors_total",
        &[("broker", BROKER_NAME), ("kind", "bad_response")],
        1.0,
    )
    .await;
    assert_eq!(
        s.value(
            "brokergate_broker_requests_total",
            &[
                ("broker", BROKER_NAME),
                ("operation", "provision"),
                ("code", "500")
            ]
        ),
        1.0
    );
    for kind in ["timeout", "connect", "rejected", "malformed"] {
        assert_eq!(
            s.value(
                "brokergate_broker_errors_total",
                &[("broker", BROKER_NAME), ("kind", kind)]
            ),
            0.0,
            "{kind}"
        );
    }
    assert_eq!(
        s.value(
            "brokergate_instances_created_total",
            &[("broker", BROKER_NAME), ("plan", PLAN_GUID)]
        ),
        1.0,
        "a failed create creates nothing"
    );
    let s = wait_metric_eq(&gw, "brokergate_http_requests_in_flight", &[], 0.0).await;
    let creates: f64 = s
        .series("brokergate_http_request_duration_seconds_count")
        .iter()
        .filter(|x| x.labels.get("route").map(String::as_str) == Some(CREATE_ROUTE))
        .map(|x| x.value)
        .sum();
    assert_eq!(creates, 4.0, "four creates observed in the histogram");

    // Bounded labels only: nothing from a request ends up in a label (or anywhere) on the page.
    let request_data = [
        name.as_str(),
        guid.as_str(),
        DEFAULT_USER_ID,
        DEFAULT_EMAIL,
        SPACE_GUID,
        bearer.as_str(),
    ];
    for sample in &s.samples {
        for (k, v) in &sample.labels {
            for data in request_data {
                assert!(
                    !v.contains(data),
                    "label {k}={v:?} of {} carries request data {data:?}",
                    sample.name
                );
            }
            if !request_id.is_empty() {
                assert!(
                    !v.contains(&request_id),
                    "label {k}={v:?} has the request id"
                );
            }
        }
    }
    for data in [name.as_str(), guid.as_str(), DEFAULT_USER_ID, DEFAULT_EMAIL] {
        assert!(!s.text.contains(data), "/metrics mentions {data:?}");
    }
    // Every route label is a template.
    for sample in s.series(HTTP_REQUESTS) {
        let route = &sample.labels["route"];
        assert!(
            route == CREATE_ROUTE || route == "other",
            "route label {route:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Admin endpoints
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn admin_listener_serves_health_readiness_and_nothing_else() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let gw = Gateway::start(GatewayConfig::new(&broker.url())).await;
    assert_ne!(gw.admin_url(), gw.url(), "admin is a separate port");

    let health = admin_get(&gw, "/healthz").await;
    assert_eq!(health.status, 200, "{health:?}");

    let ready = admin_get(&gw, "/readyz").await;
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(ready.json(), json!({"status": "ready"}));

    let unknown = admin_get(&gw, "/no-such-admin-path").await;
    assert_eq!(unknown.status, 404, "{unknown:?}");

    // The API is not served on the admin port: a valid create reaches no broker.
    let resp = create(
        &gw.admin_url(),
        Some(&token::valid_token()),
        create_body(&unique_name("on-admin-port")),
    )
    .await;
    assert_eq!(resp.status, 404, "create on the admin port: {resp:?}");
    let info = admin_get(&gw, "/v2/info").await;
    assert_eq!(info.status, 404, "{info:?}");
    assert_eq!(broker.provision_count(), 0);

    // And the admin endpoints are not served on the API port.
    let on_api = client::get(&format!("{}/metrics", gw.url()), None).await;
    assert_ne!(on_api.status, 200, "/metrics on the API port: {on_api:?}");
    assert!(!on_api.text().contains("brokergate_"), "{on_api:?}");
    let reload_on_api =
        client::send("POST", &format!("{}/-/reload", gw.url()), &[], Vec::new()).await;
    assert_ne!(reload_on_api.status, 200, "{reload_on_api:?}");

    // The API still works.
    create_ok(&gw, "api-port").await;
    assert_eq!(broker.provision_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// 3. POST /-/reload
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn post_reload_validates_then_swaps_and_keeps_the_old_config_on_error() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let gw = Gateway::start(GatewayConfig::new(&broker.url())).await;
    let original = read_config(&gw);
    let bearer = token::valid_token();

    let s0 = scrape(&gw).await;
    assert_eq!(s0.value(LAST_RELOAD_OK, &[]), 1.0);
    assert_eq!(reloads(&s0, "success"), 0.0);
    assert_eq!(reloads(&s0, "failure"), 0.0);
    let hash0 = s0.value(CONFIG_HASH, &[]);
    let ts0 = s0.value(
        "brokergate_config_last_reload_success_timestamp_seconds",
        &[],
    );

    // Plan 2 is not in the catalog yet.
    let resp = create(
        &gw.url(),
        Some(&bearer),
        create_body_for(&unique_name("plan2-early"), PLAN2_GUID),
    )
    .await;
    assert_ne!(resp.status, 201, "plan 2 before the reload: {resp:?}");
    assert_eq!(broker.provision_count(), 0);

    // A bad file: 400 naming the problem; gauge 1 → 0; the old config keeps serving.
    write_config(gw.config_path(), &format!("{original}{BAD_PLAN_TOML}"));
    let bad = post_reload(&gw).await;
    assert_eq!(bad.status, 400, "{bad:?}");
    let body = bad.json();
    assert_eq!(body["status"], "failed", "{body}");
    let error = body["error"].as_str().expect("error is a string");
    assert!(
        error.contains(BAD_PLAN_PROBLEM),
        "the error names the problem: {error:?}"
    );
    let s1 = scrape(&gw).await;
    assert_eq!(s1.value(LAST_RELOAD_OK, &[]), 0.0, "gauge after a bad file");
    // The 1 s file poll may also have seen the bad file before the POST: one or two failures.
    let failures = reloads(&s1, "failure");
    assert!((1.0..=2.0).contains(&failures), "failures {failures}");
    assert_eq!(reloads(&s1, "success"), 0.0);
    assert_eq!(s1.value(CONFIG_HASH, &[]), hash0, "hash unchanged");
    assert_eq!(
        s1.value(
            "brokergate_config_last_reload_success_timestamp_seconds",
            &[]
        ),
        ts0
    );
    create_ok(&gw, "after-bad-reload").await;
    assert_eq!(broker.provision_count(), 1);
    let resp = create(
        &gw.url(),
        Some(&bearer),
        create_body_for(&unique_name("plan2-after-bad"), PLAN2_GUID),
    )
    .await;
    assert_ne!(resp.status, 201, "the bad file was not applied: {resp:?}");
    let ready = admin_get(&gw, "/readyz").await;
    assert_eq!(
        ready.status, 200,
        "still ready on the old config: {ready:?}"
    );

    // A good file adding plan 2: 200 with the hash; gauge back to 1; plan 2 provisionable.
    write_config(gw.config_path(), &format!("{original}{}", plan2_toml()));
    let good = post_reload(&gw).await;
    assert_eq!(good.status, 200, "{good:?}");
    let body = good.json();
    assert_eq!(body["status"], "reloaded", "{body}");
    let hash_hex = body["config_hash"]
        .as_str()
        .expect("config_hash string")
        .to_string();
    assert!(is_hex_hash(&hash_hex), "config_hash {hash_hex:?}");
    let s2 = scrape(&gw).await;
    assert_eq!(
        s2.value(LAST_RELOAD_OK, &[]),
        1.0,
        "gauge after a good file"
    );
    let successes = reloads(&s2, "success");
    assert!((1.0..=2.0).contains(&successes), "successes {successes}");
    assert_eq!(reloads(&s2, "failure"), failures, "no new failure");
    let hash1 = s2.value(CONFIG_HASH, &[]);
    assert_ne!(hash1, hash0, "config hash changes with the config");
    let ts1 = s2.value(
        "brokergate_config_last_reload_success_timestamp_seconds",
        &[],
    );
    assert!(ts1 >= ts0, "success timestamp {ts0} → {ts1}");
    // The new plan's series is created at zero on reload.
    assert_eq!(
        s2.value(
            "brokergate_instances_created_total",
            &[("broker", BROKER_NAME), ("plan", PLAN2_GUID)]
        ),
        0.0
    );

    let resp = create(
        &gw.url(),
        Some(&bearer),
        create_body_for(&unique_name("plan2"), PLAN2_GUID),
    )
    .await;
    assert_eq!(resp.status, 201, "plan 2 after the reload: {resp:?}");
    assert_eq!(resp.json()["entity"]["service_plan_guid"], PLAN2_GUID);
    let sent = broker
        .provision_requests()
        .last()
        .expect("a provision")
        .json();
    assert_eq!(sent["plan"], PLAN2_NAME, "{sent}");
    assert_eq!(sent["unique_id"], "echo-paid", "{sent}");
    wait_metric_eq(
        &gw,
        "brokergate_instances_created_total",
        &[("broker", BROKER_NAME), ("plan", PLAN2_GUID)],
        1.0,
    )
    .await;
    create_ok(&gw, "plan1-after-good").await;

    // Reloading the same good file again reports the same hash; back to the original, the
    // original hash.
    let again = post_reload(&gw).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.json()["config_hash"], hash_hex.as_str());
    write_config(gw.config_path(), &original);
    let back = post_reload(&gw).await;
    assert_eq!(back.status, 200, "{back:?}");
    let s3 = scrape(&gw).await;
    assert_eq!(
        s3.value(CONFIG_HASH, &[]),
        hash0,
        "the original config's hash"
    );
    assert!(reloads(&s3, "success") >= successes + 2.0);
    assert_eq!(s3.value(LAST_RELOAD_OK, &[]), 1.0);
}

// ---------------------------------------------------------------------------------------------
// 4. SIGHUP and file change
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_config_by_file_change_or_sighup_keeps_the_old_one_and_good_change_applies() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let gw = Gateway::start(GatewayConfig::new(&broker.url())).await;
    let original = read_config(&gw);
    let bearer = token::valid_token();
    let hash0 = scrape(&gw).await.value(CONFIG_HASH, &[]);

    // A bad file, by file change alone: the poll (every 1 s) records a failure.
    write_config(gw.config_path(), &format!("{original}{BAD_PLAN_TOML}"));
    let s = wait_metric_eq(&gw, RELOADS, &[("result", "failure")], 1.0).await;
    assert_eq!(s.value(LAST_RELOAD_OK, &[]), 0.0);
    assert_eq!(s.value(CONFIG_HASH, &[]), hash0);
    assert_eq!(reloads(&s, "success"), 0.0);
    let named = |gw: &Gateway| {
        gw.stderr()
            .lines()
            .filter(|l| l.contains(BAD_PLAN_PROBLEM))
            .count()
    };
    assert!(
        support::wait_until(EFFECT_TIMEOUT, || named(&gw) >= 1).await,
        "a stderr line names the problem:\n{}",
        gw.stderr()
    );
    create_ok(&gw, "after-bad-file").await;
    // The same bad content is reported once, not at every poll.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(reloads(&scrape(&gw).await, "failure"), 1.0);

    // The same bad file via SIGHUP: a second failure, the old config still serving.
    gw.signal("HUP");
    let s = wait_metric_eq(&gw, RELOADS, &[("result", "failure")], 2.0).await;
    assert_eq!(s.value(LAST_RELOAD_OK, &[]), 0.0);
    assert_eq!(s.value(CONFIG_HASH, &[]), hash0);
    assert!(
        support::wait_until(EFFECT_TIMEOUT, || named(&gw) >= 2).await,
        "a stderr line names the problem for SIGHUP too:\n{}",
        gw.stderr()
    );
    create_ok(&gw, "after-bad-sighup").await;
    let resp = create(
        &gw.url(),
        Some(&bearer),
        create_body_for(&unique_name("plan2-too-early"), PLAN2_GUID),
    )
    .await;
    assert_ne!(resp.status, 201, "{resp:?}");
    assert_eq!(
        admin_get(&gw, "/readyz").await.status,
        200,
        "still ready on the old config"
    );

    // A good change by file change alone takes effect within a few seconds.
    let changed_at = Instant::now();
    write_config(gw.config_path(), &format!("{original}{}", plan2_toml()));
    let s = wait_metric_eq(&gw, RELOADS, &[("result", "success")], 1.0).await;
    assert!(
        changed_at.elapsed() < Duration::from_secs(4),
        "file change applied after {:?}",
        changed_at.elapsed()
    );
    assert_eq!(s.value(LAST_RELOAD_OK, &[]), 1.0);
    assert_eq!(reloads(&s, "failure"), 2.0);
    assert_ne!(s.value(CONFIG_HASH, &[]), hash0);
    let resp = create(
        &gw.url(),
        Some(&bearer),
        create_body_for(&unique_name("plan2-by-file"), PLAN2_GUID),
    )
    .await;
    assert_eq!(resp.status, 201, "plan 2 after the file change: {resp:?}");

    // SIGHUP on a good file reloads it too.
    gw.signal("HUP");
    let s = wait_metric_eq(&gw, RELOADS, &[("result", "success")], 2.0).await;
    assert_eq!(s.value(LAST_RELOAD_OK, &[]), 1.0);
    create_ok(&gw, "after-good-sighup").await;
}

// ---------------------------------------------------------------------------------------------
// 5. Reload under load
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_every_100ms_under_concurrent_creates_drop_nothing() {
    const TOTAL: usize = 2000;
    const WORKERS: usize = 24;

    // Two configs that differ observably: the one plan on broker A, or on broker B.
    let broker_a = MockBroker::start(BROKER_TOKEN).await;
    let broker_b = MockBroker::start(BROKER_TOKEN).await;
    // Each create holds its broker call 15 ms, so the load outlasts several reloads however
    // fast the build and the machine are.
    for broker in [&broker_a, &broker_b] {
        broker.set_mode(Mode::Delay(Duration::from_millis(15)));
    }
    let gw = Arc::new(Gateway::start(GatewayConfig::new(&broker_a.url())).await);
    let config_a = read_config(&gw);
    let url_a = format!("url = \"{}\"", broker_a.url());
    assert_eq!(config_a.matches(&url_a).count(), 1, "{config_a}");
    let config_b = config_a.replace(&url_a, &format!("url = \"{}\"", broker_b.url()));

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let reloader = {
        let gw = gw.clone();
        let stop = stop.clone();
        let (config_a, config_b) = (config_a.clone(), config_b.clone());
        tokio::spawn(async move {
            let mut results = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let text = if i % 2 == 1 { &config_b } else { &config_a };
                write_config(gw.config_path(), text);
                let resp = post_reload(&gw).await;
                results.push((resp.status, resp.text()));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            results
        })
    };

    let failures: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (gw, next, failures) = (gw.clone(), next.clone(), failures.clone());
        workers.push(tokio::spawn(async move {
            let http = client::http_client();
            let bearer = token::valid_token();
            let url = format!("{}{CREATE_PATH}", gw.url());
            let mut names = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= TOTAL {
                    break;
                }
                let name = format!("load-{n}-{}", uuid::Uuid::new_v4().simple());
                let sent = http
                    .post(&url)
                    .header("content-type", FORM_CONTENT_TYPE)
                    .header("authorization", format!("bearer {bearer}"))
                    .body(create_body(&name).to_string())
                    .send()
                    .await;
                match sent {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let body = r.text().await.unwrap_or_default();
                        if status == 201 {
                            names.push(name);
                        } else {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{name}: {status} {body}"));
                        }
                    }
                    Err(e) => failures.lock().unwrap().push(format!("{name}: {e}")),
                }
            }
            names
        }));
    }

    let mut created = Vec::new();
    let all = tokio::time::timeout(Duration::from_secs(90), async {
        for w in workers {
            created.extend(w.await.expect("worker"));
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let reload_results = reloader.await.expect("reloader");
    let elapsed = started.elapsed();
    assert!(all.is_ok(), "load did not finish within 90 s");

    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of {TOTAL} creates failed during reloads, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(created.len(), TOTAL);
    assert!(
        reload_results.len() >= 5,
        "only {} reloads in {elapsed:?}",
        reload_results.len()
    );
    for (status, body) in &reload_results {
        assert_eq!(*status, 200, "a valid reload failed: {body}");
    }

    // Each create answered by exactly one config: its provision landed on A or on B, once.
    let provisioned = |b: &MockBroker| -> Vec<String> {
        b.provision_requests()
            .iter()
            .map(|r| r.json()["name"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let on_a = provisioned(&broker_a);
    let on_b = provisioned(&broker_b);
    let set_a: HashSet<&String> = on_a.iter().collect();
    let set_b: HashSet<&String> = on_b.iter().collect();
    assert_eq!(set_a.len(), on_a.len(), "a name provisioned twice on A");
    assert_eq!(set_b.len(), on_b.len(), "a name provisioned twice on B");
    assert!(
        set_a.is_disjoint(&set_b),
        "a name provisioned on both brokers"
    );
    assert_eq!(on_a.len() + on_b.len(), TOTAL, "one provision per create");
    for name in &created {
        assert!(
            set_a.contains(name) || set_b.contains(name),
            "{name} reached no broker"
        );
    }
    assert!(
        !on_a.is_empty() && !on_b.is_empty(),
        "both configs answered: A {} B {} ({} reloads)",
        on_a.len(),
        on_b.len(),
        reload_results.len()
    );

    let s = wait_metric_eq(&gw, "brokergate_http_requests_in_flight", &[], 0.0).await;
    assert_eq!(s.value(LAST_RELOAD_OK, &[]), 1.0);
    assert_eq!(reloads(&s, "failure"), 0.0);
    assert!(reloads(&s, "success") >= reload_results.len() as f64);
    eprintln!(
        "reload under load: {TOTAL} creates, {} reloads, A {} B {}, {elapsed:?}",
        reload_results.len(),
        on_a.len(),
        on_b.len()
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Graceful shutdown
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sigterm_flips_readiness_and_finishes_the_in_flight_create() {
    const GRACE: u64 = 5;
    let broker = MockBroker::start(BROKER_TOKEN).await;
    broker.set_mode(Mode::Delay(Duration::from_secs(2)));
    let mut gw =
        Gateway::start(GatewayConfig::new(&broker.url()).grace_period_seconds(GRACE)).await;
    let ready = admin_get(&gw, "/readyz").await;
    assert_eq!(ready.status, 200, "{ready:?}");

    let url = gw.url();
    let in_flight = tokio::spawn(async move {
        create(
            &url,
            Some(&token::valid_token()),
            create_body(&unique_name("in-flight")),
        )
        .await
    });
    assert!(
        broker.wait_for_provisions(1, EFFECT_TIMEOUT).await,
        "the broker never got the provision"
    );
    let term_at = Instant::now();
    gw.signal("TERM");

    // Readiness says 503, with a JSON reason, while the create is still in flight.
    let admin = gw.admin_url();
    let mut not_ready = None;
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        if let Ok(r) = client::try_send("GET", &format!("{admin}/readyz"), &[], Vec::new()).await {
            if r.status == 503 {
                not_ready = Some(r);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let not_ready = not_ready.expect("/readyz never answered 503 after SIGTERM");
    assert!(
        !in_flight.is_finished(),
        "readiness flipped only after the in-flight create finished"
    );
    let body = not_ready.json();
    assert!(
        body["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "503 names a reason: {body}"
    );
    let health = client::try_send("GET", &format!("{admin}/healthz"), &[], Vec::new()).await;
    assert!(
        health.as_ref().is_ok_and(|h| h.status == 200),
        "/healthz during shutdown: {health:?}"
    );

    let resp = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the in-flight create finished")
        .expect("create task");
    assert_eq!(resp.status, 201, "the in-flight create completes: {resp:?}");

    let status = gw
        .wait_exit(Duration::from_secs(GRACE + 10))
        .await
        .unwrap_or_else(|| panic!("no exit within {}s of SIGTERM", GRACE + 10));
    assert!(status.success(), "exit status {status}\n{}", gw.stderr());
    eprintln!("exited {:?} after SIGTERM", term_at.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 7. Access log
// ---------------------------------------------------------------------------------------------

const ACCESS_FIELDS: [&str; 12] = [
    "ts",
    "request_id",
    "method",
    "route",
    "status",
    "duration_seconds",
    "bytes_sent",
    "broker",
    "broker_status",
    "broker_duration_seconds",
    "user_id",
    "error",
];

#[tokio::test]
async fn access_log_is_one_json_line_per_request_without_secrets() {
    const CRED_SECRET: &str = "cred-password-5521";
    const CRED_USER: &str = "cred-user-8830";
    let broker = MockBroker::start(BROKER_TOKEN).await;
    broker.set_mode(Mode::raw(
        200,
        format!(
            r#"{{"service_id":"svc-log","configuration":{{}},"credentials":{{"username":"{CRED_USER}","password":"{CRED_SECRET}"}}}}"#
        ),
        "application/json",
    ));
    let upstream = MockUpstream::start().await;
    let gw = Gateway::start(
        GatewayConfig::new(&broker.url())
            .upstream(&upstream.url())
            .static_authorization(),
    )
    .await;
    let bearer = token::valid_token();

    // A create.
    let name = unique_name("logged");
    let created = create(&gw.url(), Some(&bearer), create_body(&name)).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert!(
        created.text().contains(CRED_SECRET),
        "credentials reach the client"
    );
    let request_id = created
        .header("x-vcap-request-id")
        .expect("X-VCAP-Request-ID");
    wait_stdout_lines(&gw, 1).await;

    // A 401 carrying a (bad) token.
    let bad_bearer = Claims::new().sign_with_secret("not-the-secret");
    let refused = create(&gw.url(), Some(&bad_bearer), create_body(&unique_name("x"))).await;
    assert_eq!(refused.status, 401, "{refused:?}");
    wait_stdout_lines(&gw, 2).await;

    // A pass-through.
    let passed = client::get(&format!("{}/v2/info", gw.url()), Some(&bearer)).await;
    assert_eq!(passed.status, 200, "{passed:?}");
    let stdout = wait_stdout_lines(&gw, 3).await;

    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l:?}\n{stdout}"))
        })
        .collect();
    assert_eq!(lines.len(), 3, "one line per request:\n{stdout}");
    for line in &lines {
        let obj = line.as_object().expect("each line is an object");
        for field in ACCESS_FIELDS {
            assert!(obj.contains_key(field), "{field} missing: {line}");
        }
        let ts = line["ts"].as_str().expect("ts string");
        assert!(
            ts.len() >= 20 && ts.contains('T') && ts.starts_with("20"),
            "ts {ts:?}"
        );
    }

    let c = &lines[0];
    assert_eq!(c["request_id"], request_id.as_str(), "{c}");
    assert_eq!(c["method"], "POST");
    assert_eq!(c["route"], CREATE_ROUTE);
    assert_eq!(c["status"], 201);
    let duration = c["duration_seconds"].as_f64().expect("duration number");
    assert!(duration > 0.0 && duration < 30.0, "{c}");
    let bytes = c["bytes_sent"].as_u64().expect("bytes_sent number");
    assert!(bytes > 0, "{c}");
    assert_eq!(
        bytes as usize,
        created.body.len(),
        "bytes_sent = body length"
    );
    assert_eq!(c["broker"], BROKER_NAME);
    assert_eq!(c["broker_status"], 200);
    let broker_duration = c["broker_duration_seconds"]
        .as_f64()
        .expect("broker duration number");
    assert!(broker_duration >= 0.0 && broker_duration <= duration, "{c}");
    assert_eq!(c["user_id"], DEFAULT_USER_ID);
    assert_eq!(c["error"], Value::Null, "{c}");

    let r = &lines[1];
    assert_eq!(r["status"], 401, "{r}");
    assert_eq!(r["method"], "POST");
    assert_eq!(r["route"], CREATE_ROUTE);
    assert_eq!(r["broker"], Value::Null, "{r}");
    assert_eq!(r["broker_status"], Value::Null, "{r}");
    assert_eq!(r["user_id"], Value::Null, "{r}");
    assert_eq!(
        r["request_id"],
        refused
            .header("x-vcap-request-id")
            .unwrap_or_default()
            .as_str()
    );

    let p = &lines[2];
    assert_eq!(p["status"], 200, "{p}");
    assert_eq!(p["method"], "GET");
    assert_eq!(p["route"], "other", "a template, never the raw path: {p}");
    assert_eq!(p["broker"], Value::Null, "{p}");

    // No secret anywhere: tokens, the broker token, the broker's credentials.
    let stderr = gw.stderr();
    let secrets = [
        bearer.as_str(),
        bad_bearer.as_str(),
        BROKER_TOKEN,
        CRED_SECRET,
        CRED_USER,
    ];
    let leaks = [
        leaked_secrets(&stdout, &secrets),
        leaked_secrets(&stderr, &secrets),
    ];
    assert!(
        leaks.iter().all(Vec::is_empty),
        "secrets in stdout {:?} / stderr {:?}:\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        leaks[0],
        leaks[1]
    );
}

/// Which of `secrets` occur in `text`, or, for a JWT, its payload or signature alone (the
/// header segment is the same in every HS256 token, so it proves nothing).
fn leaked_secrets(text: &str, secrets: &[&str]) -> Vec<String> {
    let mut leaks = Vec::new();
    for secret in secrets {
        let parts =
            std::iter::once(*secret).chain(secret.split('.').skip(1).filter(|p| p.len() >= 16));
        for part in parts {
            if text.contains(part) {
                leaks.push(part.chars().take(40).collect::<String>());
                break;
            }
        }
    }
    leaks
}

/// `[log] level = "debug"` is what an operator sets to troubleshoot: still no token, broker
/// token or credentials on stderr, on any path (create, 401, pass-through).
#[tokio::test]
async fn debug_log_level_never_writes_tokens_or_credentials() {
    const CRED_SECRET: &str = "cred-password-7713";
    let broker = MockBroker::start(BROKER_TOKEN).await;
    broker.set_mode(Mode::raw(
        200,
        format!(
            r#"{{"service_id":"svc-dbg","configuration":{{}},"credentials":{{"password":"{CRED_SECRET}"}}}}"#
        ),
        "application/json",
    ));
    let upstream = MockUpstream::start().await;
    let gw = Gateway::start(
        GatewayConfig::new(&broker.url())
            .upstream(&upstream.url())
            .static_authorization()
            .extra_toml("[log]\nlevel = \"debug\"\n"),
    )
    .await;
    let bearer = token::valid_token();
    let created = create(&gw.url(), Some(&bearer), create_body(&unique_name("dbg"))).await;
    assert_eq!(created.status, 201, "{created:?}");
    let bad_bearer = Claims::new().sign_with_secret("not-the-secret");
    let refused = create(&gw.url(), Some(&bad_bearer), create_body(&unique_name("x"))).await;
    assert_eq!(refused.status, 401, "{refused:?}");
    let passed = client::get(&format!("{}/v2/info", gw.url()), Some(&bearer)).await;
    assert_eq!(passed.status, 200, "{passed:?}");
    wait_stdout_lines(&gw, 3).await;

    let secrets = [
        bearer.as_str(),
        bad_bearer.as_str(),
        BROKER_TOKEN,
        CRED_SECRET,
    ];
    let (stdout, stderr) = (gw.stdout(), gw.stderr());
    let leaks = [
        leaked_secrets(&stdout, &secrets),
        leaked_secrets(&stderr, &secrets),
    ];
    assert!(
        leaks.iter().all(Vec::is_empty),
        "at level debug, secrets in stdout {:?} / stderr {:?}; stderr lines:\n{}",
        leaks[0],
        leaks[1],
        stderr
            .lines()
            .filter(|l| secrets.iter().any(|s| l.contains(s)))
            .map(|l| l.chars().take(300).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 8. JSON diagnostic log
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn log_format_json_makes_every_stderr_line_json() {
    let broker = MockBroker::start(BROKER_TOKEN).await;
    let gw =
        Gateway::start(GatewayConfig::new(&broker.url()).extra_toml("[log]\nformat = \"json\"\n"))
            .await;
    let original = read_config(&gw);

    // Something worth logging: a failed reload, a good one, a create, a broker failure.
    write_config(gw.config_path(), &format!("{original}{BAD_PLAN_TOML}"));
    assert_eq!(post_reload(&gw).await.status, 400);
    write_config(gw.config_path(), &original);
    assert_eq!(post_reload(&gw).await.status, 200);
    create_ok(&gw, "json-log").await;
    broker.set_mode(Mode::Reset);
    let resp = create(
        &gw.url(),
        Some(&token::valid_token()),
        create_body(&unique_name("json-log-reset")),
    )
    .await;
    assert!(resp.status >= 500, "{resp:?}");

    let ok = support::wait_until(EFFECT_TIMEOUT, || {
        gw.stderr().lines().any(|l| l.contains(BAD_PLAN_PROBLEM))
    })
    .await;
    let stderr = gw.stderr();
    assert!(ok, "the failed reload is logged:\n{stderr}");
    let mut lines = 0;
    for line in stderr.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line:?}\n{stderr}"));
        assert!(v["level"].is_string(), "level in {line}");
        assert!(v["message"].is_string(), "message in {line}");
        assert!(v["ts"].is_string(), "ts in {line}");
        lines += 1;
    }
    assert!(lines >= 2, "stderr:\n{stderr}");
    // The access log stays on stdout, as JSON too.
    for line in gw.stdout().lines() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
    }
}
