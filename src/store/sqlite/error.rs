//! What a SQLite failure means to a caller: a taken name, a backend that is busy (retry) or
//! lost (do not), or anything else — always keeping the SQLite error as the source.

use std::path::Path;
use std::sync::Arc;

use rusqlite::ErrorCode;

use crate::store::{BoxError, StoreError};

/// How SQLite names the schema's unique indexes a client can run into, in a failure message:
/// the per-space instance name, one binding per app, the per-instance key name.
const NAME_UNIQUE_COLUMNS: &str = "service_instances.space_guid, service_instances.name";
const APP_UNIQUE_COLUMNS: &str = "service_handles.instance_guid, service_handles.app_guid";
const KEY_UNIQUE_COLUMNS: &str = "service_handles.instance_guid, service_handles.name";

enum Kind {
    NameTaken,
    AppBound,
    KeyNameTaken,
    /// Another connection holds the lock past the busy timeout: the same call may pass later.
    Busy,
    /// The file cannot be opened, read or written (I/O error, disk full, permissions, not a
    /// database, corrupt): a retry would fail the same way until an operator acts.
    Lost,
    Other,
}

fn kind(e: &rusqlite::Error) -> Kind {
    let rusqlite::Error::SqliteFailure(failure, message) = e else {
        return Kind::Other;
    };
    match failure.code {
        // Only these indexes mean "taken"; a duplicate guid (a primary key) is also a UNIQUE
        // failure, but a bug, not something a client did.
        ErrorCode::ConstraintViolation
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            match message.as_deref() {
                Some(m) if m.ends_with(NAME_UNIQUE_COLUMNS) => Kind::NameTaken,
                Some(m) if m.ends_with(APP_UNIQUE_COLUMNS) => Kind::AppBound,
                Some(m) if m.ends_with(KEY_UNIQUE_COLUMNS) => Kind::KeyNameTaken,
                _ => Kind::Other,
            }
        }
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Kind::Busy,
        ErrorCode::CannotOpen
        | ErrorCode::SystemIoFailure
        | ErrorCode::DiskFull
        | ErrorCode::ReadOnly
        | ErrorCode::PermissionDenied
        | ErrorCode::NotADatabase
        | ErrorCode::DatabaseCorrupt => Kind::Lost,
        _ => Kind::Other,
    }
}

fn classified(kind: Kind, source: BoxError) -> StoreError {
    match kind {
        Kind::NameTaken => StoreError::NameTaken,
        Kind::AppBound => StoreError::AppBound,
        Kind::KeyNameTaken => StoreError::KeyNameTaken,
        Kind::Busy => StoreError::Unavailable {
            retryable: true,
            source,
        },
        Kind::Lost => StoreError::Unavailable {
            retryable: false,
            source,
        },
        Kind::Other => StoreError::Backend(source),
    }
}

pub(super) fn classify(e: rusqlite::Error) -> StoreError {
    classified(kind(&e), Box::new(e))
}

/// For one failure every write of a batch reports.
pub(super) fn classify_shared(e: &Arc<rusqlite::Error>) -> StoreError {
    classified(kind(e), Box::new(Arc::clone(e)))
}

/// The file or its directory cannot be opened or created.
pub(super) fn at_path(path: &Path, e: impl Into<BoxError>) -> StoreError {
    StoreError::Unavailable {
        retryable: false,
        source: Box::new(AtPath {
            path: path.display().to_string(),
            source: e.into(),
        }),
    }
}

/// The writer thread is gone (it panicked): no write can succeed until a restart.
pub(super) fn writer_stopped() -> StoreError {
    StoreError::Unavailable {
        retryable: false,
        source: "the store writer has stopped".into(),
    }
}

/// A blocking task that panicked or was cancelled.
pub(super) fn joined(e: tokio::task::JoinError) -> StoreError {
    StoreError::Backend(Box::new(e))
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
struct AtPath {
    path: String,
    source: BoxError,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::ffi;

    fn failure(code: i32, message: &str) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some(message.into()))
    }

    #[test]
    fn busy_and_locked_may_be_retried_and_a_lost_file_may_not() {
        for code in [
            ffi::SQLITE_BUSY,
            ffi::SQLITE_LOCKED,
            ffi::SQLITE_BUSY_SNAPSHOT,
        ] {
            let e = classify(failure(code, "database is locked"));
            assert!(e.is_retryable(), "{code}: {e:?}");
        }
        for code in [
            ffi::SQLITE_CANTOPEN,
            ffi::SQLITE_IOERR_FSYNC,
            ffi::SQLITE_FULL,
        ] {
            let e = classify(failure(code, "disk I/O error"));
            assert!(
                matches!(
                    e,
                    StoreError::Unavailable {
                        retryable: false,
                        ..
                    }
                ),
                "{code}: {e:?}"
            );
        }
        assert!(!writer_stopped().is_retryable());
    }

    #[test]
    fn only_the_name_constraint_is_a_taken_name() {
        let name = format!("UNIQUE constraint failed: {NAME_UNIQUE_COLUMNS}");
        let e = classify(failure(ffi::SQLITE_CONSTRAINT_UNIQUE, &name));
        assert!(matches!(e, StoreError::NameTaken), "{e:?}");
        for (code, message) in [
            (
                ffi::SQLITE_CONSTRAINT_PRIMARYKEY,
                "UNIQUE constraint failed: service_instances.guid",
            ),
            (
                ffi::SQLITE_CONSTRAINT_UNIQUE,
                "UNIQUE constraint failed: service_instances.guid",
            ),
            (
                ffi::SQLITE_CONSTRAINT_CHECK,
                "CHECK constraint failed: state",
            ),
        ] {
            let e = classify(failure(code, message));
            assert!(matches!(e, StoreError::Backend(_)), "{message}: {e:?}");
        }
    }

    #[test]
    fn the_sqlite_error_is_kept_as_the_source() {
        let e = classify(failure(ffi::SQLITE_BUSY, "database is locked"));
        let source = std::error::Error::source(&e).unwrap();
        assert!(source.downcast_ref::<rusqlite::Error>().is_some());
        assert_eq!(
            e.to_string(),
            "store unavailable (retryable): database is locked"
        );
    }
}
