//! The one wall clock brokergate reads for stored and shown times.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in whole Unix seconds; 0 on a clock set before 1970.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Now, in Unix seconds with a fraction (metrics timestamps).
pub fn now_unix_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
