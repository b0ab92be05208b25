//! Every metric brokergate exports, registered once in its own registry, with bounded labels
//! only: route templates, config-defined broker names and plan guids, fixed enums — never
//! guids, names or users from requests. Names follow the Prometheus conventions (base units,
//! `_total` counters).

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Request and broker durations can legitimately reach the 60 s broker timeout.
/// Store calls: an SQLite read takes tens of microseconds, a PostgreSQL round trip on a LAN
/// a fraction of a millisecond, an fsync'd commit a few; the top buckets catch lock waits.
const STORE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0,
    60.0, 120.0,
];

/// Broker error kinds, created at zero per broker.
pub const BROKER_ERROR_KINDS: [&str; 5] = [
    "timeout",
    "connect",
    "rejected",
    "bad_response",
    "malformed",
];
pub const RELOAD_RESULTS: [&str; 2] = ["success", "failure"];
pub const ORPHAN_RESULTS: [&str; 2] = ["success", "failure"];
/// The `kind` label of handle counters (`crate::store::HandleKind::as_str`).
pub const HANDLE_KINDS: [&str; 2] = ["binding", "key"];

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_request_duration: HistogramVec,
    pub http_requests_in_flight: IntGauge,
    pub broker_requests: IntCounterVec,
    pub broker_request_duration: HistogramVec,
    pub broker_errors: IntCounterVec,
    pub auth_failures: IntCounterVec,
    pub instances_created: IntCounterVec,
    pub instances_deleted: IntCounterVec,
    pub handles_created: IntCounterVec,
    pub handles_deleted: IntCounterVec,
    pub orphan_mitigations: IntCounterVec,
    pub store_reservations_recovered: IntCounter,
    pub authorization_requests: IntCounterVec,
    pub authorization_request_duration: HistogramVec,
    pub authorization_cache_hits: IntCounterVec,
    pub store_operation_duration: HistogramVec,
    pub store_pool_wait: HistogramVec,
    store_pool_connections: IntGaugeVec,
    store_pool_max: IntGauge,
    store_pool_waiting: IntGauge,
    /// Read at each scrape: the PostgreSQL pool's (open, in use, max, waiting).
    store_pool_source: std::sync::OnceLock<PoolSource>,
    pub config_reloads: IntCounterVec,
    pub config_last_reload_successful: IntGauge,
    pub config_last_reload_success_timestamp: Gauge,
    pub config_hash: Gauge,
    build_info: IntGaugeVec,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter definition");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    histogram_with(registry, name, help, labels, DURATION_BUCKETS)
}

fn histogram_with(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let h = HistogramVec::new(opts, labels).expect("valid histogram definition");
    registry
        .register(Box::new(h.clone()))
        .expect("registered once");
    h
}

/// What the pool gauges show, read when scraped: (open, in use, max, waiting).
pub type PoolSource = Box<dyn Fn() -> (usize, usize, usize, usize) + Send + Sync>;

impl Metrics {
    /// Builds the full set in a fresh registry. Panics only on a programming error in the
    /// definitions below (a duplicate or invalid name), which every test run would catch.
    #[allow(clippy::expect_used)]
    pub fn new() -> Metrics {
        let r = Registry::new();
        let gauge_int = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid gauge");
            r.register(Box::new(g.clone())).expect("registered once");
            g
        };
        let counter_int = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid counter");
            r.register(Box::new(c.clone())).expect("registered once");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = Gauge::new(name, help).expect("valid gauge");
            r.register(Box::new(g.clone())).expect("registered once");
            g
        };
        let build_info = IntGaugeVec::new(
            Opts::new(
                "brokergate_build_info",
                "Build of the running binary; always 1.",
            ),
            &["version", "revision"],
        )
        .expect("valid gauge");
        r.register(Box::new(build_info.clone()))
            .expect("registered once");
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("registered once");

        let store_pool_connections = IntGaugeVec::new(
            Opts::new(
                "brokergate_store_pool_connections",
                "PostgreSQL connections the pool holds open, by state (in_use, idle).",
            ),
            &["state"],
        )
        .expect("valid gauge");
        r.register(Box::new(store_pool_connections.clone()))
            .expect("registered once");

        let m = Metrics {
            http_requests: counter(&r, "brokergate_http_requests_total", "HTTP requests answered, by route template.", &["method", "route", "code"]),
            http_request_duration: histogram(&r, "brokergate_http_request_duration_seconds", "Time to answer an HTTP request.", &["method", "route"]),
            http_requests_in_flight: gauge_int("brokergate_http_requests_in_flight", "HTTP requests being handled."),
            broker_requests: counter(&r, "brokergate_broker_requests_total", "Requests to v1 brokers, by HTTP status or \"error\".", &["broker", "operation", "code"]),
            broker_request_duration: histogram(&r, "brokergate_broker_request_duration_seconds", "Time a v1 broker took to answer.", &["broker", "operation"]),
            broker_errors: counter(&r, "brokergate_broker_errors_total", "Failed v1 broker calls: timeout, connect, rejected (4xx), bad_response (5xx), malformed.", &["broker", "kind"]),
            auth_failures: counter(&r, "brokergate_auth_failures_total", "Requests refused by authentication or scope.", &["reason"]),
            instances_created: counter(&r, "brokergate_instances_created_total", "Service instances provisioned and committed.", &["broker", "plan"]),
            instances_deleted: counter(&r, "brokergate_instances_deleted_total", "Service instances the broker deprovisioned and the store removed.", &["broker"]),
            handles_created: counter(&r, "brokergate_handles_created_total", "Bindings and service keys the broker bound and the store committed.", &["broker", "kind"]),
            handles_deleted: counter(&r, "brokergate_handles_deleted_total", "Bindings and service keys the broker unbound and the store removed.", &["broker", "kind"]),
            orphan_mitigations: counter(&r, "brokergate_orphan_mitigations_total", "Deprovisions of broker instances brokergate could not keep.", &["broker", "result"]),
            store_operation_duration: histogram_with(&r, "brokergate_store_operation_duration_seconds", "Time a store call took, by backend (sqlite, postgres), operation and outcome (ok, refused, unavailable, error).", &["backend", "operation", "outcome"], STORE_BUCKETS),
            store_pool_wait: histogram_with(&r, "brokergate_store_pool_wait_seconds", "Time a store call waited for a PostgreSQL connection, by outcome (got, timeout, failed).", &["outcome"], STORE_BUCKETS),
            store_pool_connections,
            store_pool_max: gauge_int("brokergate_store_pool_max_connections", "Most PostgreSQL connections the pool opens ([store] pool_size)."),
            store_pool_waiting: gauge_int("brokergate_store_pool_waiting", "Store calls waiting for a PostgreSQL connection now."),
            store_pool_source: std::sync::OnceLock::new(),
            store_reservations_recovered: counter_int("brokergate_store_reservations_recovered_total", "Reservations a start removed because their holder was gone or their lease expired."),
            authorization_requests: counter(&r, "brokergate_authorization_requests_total", "Calls to the Cloud Controller to authorize a request, by question and result (allowed, denied, unavailable).", &["question", "result"]),
            authorization_request_duration: histogram(&r, "brokergate_authorization_request_duration_seconds", "Time the Cloud Controller took to answer an authorization call.", &["question"]),
            authorization_cache_hits: counter(&r, "brokergate_authorization_cache_hits_total", "Authorization questions answered from the cache (or by joining a call already under way).", &["question"]),
            config_reloads: counter(&r, "brokergate_config_reloads_total", "Configuration reload attempts.", &["result"]),
            config_last_reload_successful: gauge_int("brokergate_config_last_reload_successful", "1 when the last reload attempt succeeded."),
            config_last_reload_success_timestamp: gauge("brokergate_config_last_reload_success_timestamp_seconds", "When the configuration was last loaded successfully."),
            config_hash: gauge("brokergate_config_hash", "Hash of the loaded configuration (first 48 bits of its SHA-256)."),
            build_info,
            registry: r,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("BROKERGATE_REVISION")])
            .set(1);
        for result in RELOAD_RESULTS {
            m.config_reloads.with_label_values(&[result]);
        }
        for question in crate::service::Question::ALL {
            let q = question.as_str();
            for result in ["allowed", "denied", "unavailable"] {
                m.authorization_requests.with_label_values(&[q, result]);
            }
            m.authorization_request_duration.with_label_values(&[q]);
            m.authorization_cache_hits.with_label_values(&[q]);
        }
        m
    }

    /// Creates at zero the series whose labels the config defines, so dashboards and alerts
    /// see them before the first event. Called at start and after every reload.
    pub fn preregister(&self, brokers: &[&str], plans: &[(&str, &str)], auth_reasons: &[&str]) {
        for broker in brokers {
            for kind in BROKER_ERROR_KINDS {
                self.broker_errors.with_label_values(&[broker, kind]);
            }
            for result in ORPHAN_RESULTS {
                self.orphan_mitigations.with_label_values(&[broker, result]);
            }
            self.instances_deleted.with_label_values(&[broker]);
            for kind in HANDLE_KINDS {
                self.handles_created.with_label_values(&[broker, kind]);
                self.handles_deleted.with_label_values(&[broker, kind]);
            }
        }
        for (broker, plan) in plans {
            self.instances_created.with_label_values(&[broker, plan]);
        }
        for reason in auth_reasons {
            self.auth_failures.with_label_values(&[reason]);
        }
    }

    /// [`Metrics::preregister`] for a configuration's brokers and plans, and every auth
    /// failure reason: at start and after each reload.
    pub fn preregister_config(&self, rt: &crate::config::Runtime) {
        let brokers: Vec<&str> = rt.brokers.iter().map(|b| b.name.as_str()).collect();
        let plans: Vec<(&str, &str)> = rt
            .plans()
            .map(|p| (p.broker.name.as_str(), p.guid.as_str()))
            .collect();
        self.preregister(&brokers, &plans, &crate::auth::failure_reasons());
    }

    /// Shows the PostgreSQL pool in the pool gauges from now on (read at each scrape), and
    /// its wait outcomes at zero; set once, at start.
    pub fn watch_pool(&self, source: PoolSource) {
        for outcome in ["got", "timeout", "failed"] {
            self.store_pool_wait.with_label_values(&[outcome]);
        }
        let _ = self.store_pool_source.set(source);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        if let Some(source) = self.store_pool_source.get() {
            let (open, in_use, max, waiting) = source();
            let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            self.store_pool_connections
                .with_label_values(&["in_use"])
                .set(gauge(in_use));
            self.store_pool_connections
                .with_label_values(&["idle"])
                .set(gauge(open.saturating_sub(in_use)));
            self.store_pool_max.set(gauge(max));
            self.store_pool_waiting.set(gauge(waiting));
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("Could not encode metrics: {e}");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preregistered_series_appear_at_zero() {
        let m = Metrics::new();
        m.preregister(&["echo"], &[("echo", "plan-guid")], &["expired"]);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains(r#"brokergate_broker_errors_total{broker="echo",kind="timeout"} 0"#),
            "{text}"
        );
        assert!(text
            .contains(r#"brokergate_instances_created_total{broker="echo",plan="plan-guid"} 0"#));
        assert!(text.contains(r#"brokergate_auth_failures_total{reason="expired"} 0"#));
        assert!(text.contains(r#"brokergate_config_reloads_total{result="failure"} 0"#));
        assert!(text.contains("brokergate_store_reservations_recovered_total 0"));
        assert!(text.contains("brokergate_build_info{"));
        assert!(text.contains("process_resident_memory_bytes"));
    }
}
