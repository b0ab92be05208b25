//! How long a row in flight at a broker is held: the broker calls it covers, each at most the
//! broker's timeout, plus a margin for store latency and clock skew between replicas. Past
//! that, another process may resolve the row (see `Store::claim_unfinished`).

use crate::config::Broker;
use crate::store::Lease;

/// What a lease adds to its broker calls.
pub const LEASE_MARGIN_SECONDS: i64 = 30;

/// A lease of `owner` from `now` (unix seconds) covering `calls` calls to `broker`.
pub fn lease_for(owner: &str, broker: &Broker, now: i64, calls: u64) -> Lease {
    let timeout = i64::try_from(broker.timeout.as_secs()).unwrap_or(i64::MAX);
    let calls = i64::try_from(calls).unwrap_or(i64::MAX);
    Lease {
        owner: owner.to_string(),
        expires_at: now
            .saturating_add(timeout.saturating_mul(calls))
            .saturating_add(LEASE_MARGIN_SECONDS),
    }
}
