//! How long a row in flight at a broker is held: the broker calls it covers, each at most the
//! broker's timeout, plus a margin for store latency and clock skew between replicas. Past
//! that, another process may resolve the row (see `Store::claim_unfinished`).

use crate::config::Broker;
use crate::store::Lease;

/// The default `[store] lease_margin_seconds`.
pub const LEASE_MARGIN_SECONDS: i64 = 30;

/// Whose leases this process takes, and what each adds to its broker calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasePolicy {
    /// `[store] owner`.
    pub owner: String,
    /// `[store] lease_margin_seconds`.
    pub margin_seconds: i64,
}

impl LeasePolicy {
    pub fn new(owner: impl Into<String>, margin_seconds: i64) -> LeasePolicy {
        LeasePolicy {
            owner: owner.into(),
            margin_seconds,
        }
    }

    /// A lease from `now` (unix seconds) covering `calls` calls to `broker`.
    pub fn for_calls(&self, broker: &Broker, now: i64, calls: u64) -> Lease {
        let timeout = i64::try_from(broker.timeout.as_secs()).unwrap_or(i64::MAX);
        self.covering(timeout, now, calls)
    }

    /// A lease from `now` covering `calls` calls of `timeout_seconds` each.
    pub fn covering(&self, timeout_seconds: i64, now: i64, calls: u64) -> Lease {
        let calls = i64::try_from(calls).unwrap_or(i64::MAX);
        Lease {
            owner: self.owner.clone(),
            expires_at: now
                .saturating_add(timeout_seconds.saturating_mul(calls))
                .saturating_add(self.margin_seconds),
        }
    }
}

/// The default margin, for an owner given as a name alone (tests, tools).
impl From<&str> for LeasePolicy {
    fn from(owner: &str) -> LeasePolicy {
        LeasePolicy::new(owner, LEASE_MARGIN_SECONDS)
    }
}

impl From<String> for LeasePolicy {
    fn from(owner: String) -> LeasePolicy {
        LeasePolicy::new(owner, LEASE_MARGIN_SECONDS)
    }
}
