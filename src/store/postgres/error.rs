//! What a PostgreSQL failure means to a caller: a taken name (or app, or key name), a server
//! that is busy or lost for now, or anything else — always keeping the driver's error as the
//! source. No message built here holds the URL or the password: the driver's errors never
//! carry the connection's configuration, and ours name the target by `redacted_url` only.

use deadpool_postgres::{PoolError, TimeoutType};
use tokio_postgres::error::SqlState;

use crate::store::{BoxError, StoreError};

/// The schema's unique constraints a client's request can run into (migration 1 names them).
const NAME_UNIQUE: &str = "service_instances_name_per_space";
const APP_UNIQUE: &str = "service_handles_one_per_app";
const KEY_UNIQUE: &str = "service_handles_key_names";

/// A statement's failure.
pub(super) fn classify(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::UNIQUE_VIOLATION {
            // Only these mean "taken": a duplicate guid is a primary key, and a bug.
            return match db.constraint() {
                Some(NAME_UNIQUE) => StoreError::NameTaken,
                Some(APP_UNIQUE) => StoreError::AppBound,
                Some(KEY_UNIQUE) => StoreError::KeyNameTaken,
                _ => StoreError::Backend(Box::new(e)),
            };
        }
        return match retryable_code(code) {
            Some(retryable) => unavailable(retryable, e),
            None => StoreError::Backend(Box::new(e)),
        };
    }
    if e.is_closed() || has_io_source(&e) {
        // The connection broke under this call; the pool drops it and opens a fresh one for
        // the next, so the same call may pass (a server restart, a failover, a proxy reset).
        return unavailable(true, e);
    }
    // A value that would not convert, an unexpected message: a bug, not the server's state.
    StoreError::Backend(Box::new(e))
}

/// A failure to open a connection (to the pool or a dedicated one).
pub(super) fn connecting(e: tokio_postgres::Error) -> StoreError {
    if e.as_db_error().is_some() {
        return match classify(e) {
            // Not a client's doing at connect time: an authentication or catalog error.
            StoreError::Backend(source) => StoreError::Unavailable {
                retryable: false,
                source,
            },
            other => other,
        };
    }
    // Refused, unreachable, TLS refused, connect timeout: the server cannot be reached now
    // and an immediate retry fails the same way, so not retryable (as SQLite's lost file).
    unavailable(false, e)
}

/// Whether a server error means "unavailable" and then whether a retry may pass; `None`:
/// not an availability problem.
fn retryable_code(code: &SqlState) -> Option<bool> {
    // The same call may pass when made again: a lost race between transactions (the server
    // rolled this one back), a server restarting or shutting this session down (the pool
    // reconnects), a saturated server, a statement or lock wait cut off by its timeout.
    let transient = [
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::QUERY_CANCELED,
        SqlState::LOCK_NOT_AVAILABLE,
    ];
    // Lost until an operator acts: wrong credentials or database, a full disk, a read-only
    // server (a standby).
    let lasting = [
        SqlState::INVALID_PASSWORD,
        SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        SqlState::INVALID_CATALOG_NAME,
        SqlState::DISK_FULL,
        SqlState::READ_ONLY_SQL_TRANSACTION,
    ];
    if transient.contains(code) {
        Some(true)
    } else if lasting.contains(code) || code.code().starts_with("08") {
        // Class 08: connection exceptions.
        Some(false)
    } else {
        None
    }
}

fn has_io_source(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn unavailable(retryable: bool, e: impl Into<BoxError>) -> StoreError {
    StoreError::Unavailable {
        retryable,
        source: e.into(),
    }
}

/// A pooled connection could not be had.
pub(super) fn pool(e: PoolError, target: &str) -> StoreError {
    match e {
        PoolError::Backend(e) => connecting(e),
        PoolError::PostCreateHook(deadpool_postgres::HookError::Backend(e)) => classify(e),
        PoolError::Timeout(kind) => acquire_timeout(kind, target),
        other => StoreError::Backend(Box::new(other)),
    }
}

/// Every connection busy (or connecting) for the whole wait: load, so a retry may pass.
pub(super) fn acquire_timeout(kind: TimeoutType, target: &str) -> StoreError {
    let what = match kind {
        TimeoutType::Wait => "no connection free",
        TimeoutType::Create => "connecting timed out",
        TimeoutType::Recycle => "checking a connection timed out",
    };
    unavailable(
        true,
        format!("{what} to {target} within the acquire timeout"),
    )
}

/// A round trip (a ping) that did not complete in time.
pub(super) fn no_answer(target: &str) -> StoreError {
    unavailable(
        true,
        format!("no answer from {target} within the acquire timeout"),
    )
}

/// Data the schema should have prevented (an unknown state, tags that are not JSON).
pub(super) fn bad_row(what: impl Into<BoxError>) -> StoreError {
    StoreError::Backend(what.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes_may_be_retried_and_lasting_ones_may_not() {
        for code in [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::ADMIN_SHUTDOWN,
        ] {
            assert_eq!(retryable_code(&code), Some(true), "{code:?}");
        }
        for code in [
            SqlState::INVALID_PASSWORD,
            SqlState::CONNECTION_FAILURE,
            SqlState::INVALID_CATALOG_NAME,
        ] {
            assert_eq!(retryable_code(&code), Some(false), "{code:?}");
        }
        for code in [SqlState::CHECK_VIOLATION, SqlState::SYNTAX_ERROR] {
            assert_eq!(retryable_code(&code), None, "{code:?}");
        }
    }

    #[test]
    fn a_pool_timeout_is_retryable_and_names_only_the_redacted_target() {
        let e = acquire_timeout(TimeoutType::Wait, "postgres://u@h:5432/d");
        assert!(e.is_retryable());
        assert_eq!(
            e.to_string(),
            "store unavailable (retryable): no connection free to postgres://u@h:5432/d \
             within the acquire timeout"
        );
    }
}
