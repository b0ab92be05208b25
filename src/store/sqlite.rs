//! The embedded SQLite store. WAL journal; `synchronous = FULL` by default, so a committed row
//! survives power loss, not only a process crash. Writes go through the group-commit writer
//! thread (`writer.rs`); reads run on tokio's blocking pool on a connection of their own, so
//! no fsync ever stalls a proxy thread.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::value::RawValue;

use super::writer::{WalLimits, Write, Writer};
use super::{InstanceRecord, Provisioned, Reservation, State, Store, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS service_instances (
    guid              TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    space_guid        TEXT NOT NULL,
    organization_guid TEXT,
    service_plan_guid TEXT NOT NULL,
    broker            TEXT NOT NULL,
    broker_service_id TEXT,
    gateway_data      TEXT,
    credentials       TEXT,
    dashboard_url     TEXT,
    tags              TEXT NOT NULL,
    creator_user_id   TEXT NOT NULL,
    creator_email     TEXT,
    state             TEXT NOT NULL CHECK (state IN ('reserved', 'created')),
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER,
    UNIQUE (space_guid, name)
);
PRAGMA user_version = 1;
";

pub struct SqliteStore {
    path: PathBuf,
    synchronous: &'static str,
    /// Connections and the writer thread start on first use, so none is carried across the
    /// fork of daemon mode.
    conn: Arc<Mutex<Option<Connection>>>,
    writer: OnceLock<Writer>,
    wal_limits: WalLimits,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// Prepares the database file: created readable by the owner only, with its schema.
    /// `synchronous` is `full` or `normal`.
    pub fn open(path: &Path, synchronous: &str) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| backend(format!("{}: {e}", dir.display())))?;
        }
        if !path.exists() {
            create_private(path)?;
        }
        let store = SqliteStore {
            path: path.to_path_buf(),
            synchronous: if synchronous == "normal" {
                "NORMAL"
            } else {
                "FULL"
            },
            conn: Arc::new(Mutex::new(None)),
            writer: OnceLock::new(),
            wal_limits: WalLimits::DEFAULT,
        };
        store.connect()?.execute_batch(SCHEMA).map_err(backend)?;
        Ok(store)
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        connect(&self.path, self.synchronous)
    }

    /// Removes reservations left by a process that died mid broker call (those created before
    /// `created_before`, unix seconds), and returns them so the caller can log each one: the
    /// broker may hold an instance nobody recorded.
    pub fn recover_reservations(
        &self,
        created_before: i64,
    ) -> Result<Vec<Reservation>, StoreError> {
        let conn = self.connect()?;
        let mut stmt = conn
            .prepare(&format!(
                "{SELECT} WHERE state = 'reserved' AND created_at < ?1"
            ))
            .map_err(backend)?;
        let rows = stmt
            .query_map([created_before], row_to_record)
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        conn.execute(
            "DELETE FROM service_instances WHERE state = 'reserved' AND created_at < ?1",
            [created_before],
        )
        .map_err(backend)?;
        Ok(rows.into_iter().map(|r| r.reservation).collect())
    }

    fn writer(&self) -> Result<&Writer, StoreError> {
        if let Some(w) = self.writer.get() {
            return Ok(w);
        }
        let started = Writer::start(self.path.clone(), self.synchronous, self.wal_limits)?;
        // Two first writes may race to start one; the loser's thread exits with its handle.
        Ok(self.writer.get_or_init(|| started))
    }

    /// A round trip to the database, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            conn.query_row("SELECT count(*) FROM service_instances LIMIT 1", [], |_| {
                Ok(())
            })
            .map_err(backend)
        })
        .await
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (slot, path, sync) = (self.conn.clone(), self.path.clone(), self.synchronous);
        tokio::task::spawn_blocking(move || {
            let mut guard = slot.lock().map_err(backend)?;
            let conn = match &mut *guard {
                Some(conn) => conn,
                empty @ None => empty.insert(connect(&path, sync)?),
            };
            f(conn)
        })
        .await
        .map_err(backend)?
    }
}

pub(super) fn connect(path: &Path, synchronous: &str) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|e| backend(format!("{}: {e}", path.display())))?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA busy_timeout = 5000;"
    ))
    .map_err(backend)?;
    Ok(conn)
}

#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| backend(format!("{}: {e}", path.display())))
}

#[cfg(not(unix))]
fn create_private(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}

const SELECT: &str = "SELECT guid, name, space_guid, organization_guid, service_plan_guid, broker,
    tags, creator_user_id, creator_email, created_at, state, broker_service_id, gateway_data,
    credentials, dashboard_url FROM service_instances";

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<InstanceRecord> {
    let tags: String = row.get(6)?;
    let state: String = row.get(10)?;
    let raw = |i: usize| -> rusqlite::Result<Option<Box<RawValue>>> {
        let text: Option<String> = row.get(i)?;
        Ok(text.and_then(|t| RawValue::from_string(t).ok()))
    };
    let service_id: Option<String> = row.get(11)?;
    let provisioned = match (service_id, raw(12)?, raw(13)?) {
        (Some(broker_service_id), Some(gateway_data), Some(credentials)) => Some(Provisioned {
            broker_service_id,
            gateway_data,
            credentials,
            dashboard_url: row.get(14)?,
        }),
        _ => None,
    };
    Ok(InstanceRecord {
        reservation: Reservation {
            guid: row.get(0)?,
            name: row.get(1)?,
            space_guid: row.get(2)?,
            organization_guid: row.get(3)?,
            service_plan_guid: row.get(4)?,
            broker: row.get(5)?,
            tags: serde_json::from_str(&tags).unwrap_or_default(),
            creator_user_id: row.get(7)?,
            creator_email: row.get(8)?,
            created_at: row.get(9)?,
        },
        state: if state == "created" {
            State::Created
        } else {
            State::Reserved
        },
        provisioned,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn reserve(&self, r: &Reservation) -> Result<(), StoreError> {
        self.writer()?.write(Write::Reserve(r.clone())).await
    }

    async fn release(&self, guid: &str) -> Result<(), StoreError> {
        self.writer()?.write(Write::Release(guid.to_string())).await
    }

    async fn commit(&self, guid: &str, p: &Provisioned) -> Result<(), StoreError> {
        self.writer()?
            .write(Write::Commit(guid.to_string(), p.clone()))
            .await
    }

    async fn get(&self, guid: &str) -> Result<Option<InstanceRecord>, StoreError> {
        let guid = guid.to_string();
        self.with_conn(move |conn| {
            conn.query_row(
                &format!("{SELECT} WHERE guid = ?1"),
                params![guid],
                row_to_record,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reservation(guid: &str, name: &str) -> Reservation {
        Reservation {
            guid: guid.into(),
            name: name.into(),
            space_guid: "S".into(),
            organization_guid: Some("O".into()),
            service_plan_guid: "P".into(),
            broker: "echo".into(),
            tags: vec!["t".into()],
            creator_user_id: "u".into(),
            creator_email: None,
            created_at: 1,
        }
    }

    fn provisioned() -> Provisioned {
        Provisioned {
            broker_service_id: "svc".into(),
            gateway_data: RawValue::from_string(r#"{"plan":"free"}"#.into()).unwrap(),
            credentials: RawValue::from_string(r#"{"pw":"x"}"#.into()).unwrap(),
            dashboard_url: None,
        }
    }

    #[tokio::test]
    async fn names_are_unique_per_space_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.sqlite3"), "full").unwrap();
        store.reserve(&reservation("g1", "n")).await.unwrap();
        assert!(matches!(
            store.reserve(&reservation("g2", "n")).await,
            Err(StoreError::NameTaken)
        ));
        store.release("g1").await.unwrap();
        store.reserve(&reservation("g2", "n")).await.unwrap();
    }

    #[tokio::test]
    async fn committed_rows_survive_reopen_and_reservations_are_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite3");
        {
            let store = SqliteStore::open(&path, "full").unwrap();
            store.reserve(&reservation("done", "a")).await.unwrap();
            store.commit("done", &provisioned()).await.unwrap();
            store.reserve(&reservation("crashed", "b")).await.unwrap();
        }
        let store = SqliteStore::open(&path, "full").unwrap();
        let recovered = store.recover_reservations(i64::MAX).unwrap();
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].guid, "crashed");
        let done = store.get("done").await.unwrap().unwrap();
        assert_eq!(done.state, State::Created);
        assert_eq!(
            done.provisioned.unwrap().gateway_data.get(),
            r#"{"plan":"free"}"#
        );
        assert!(store.get("crashed").await.unwrap().is_none());
        // The recovered name is free again.
        store.reserve(&reservation("again", "b")).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_transactions_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("s.sqlite3"), "full").unwrap());
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let guid = format!("g{i}");
                    store
                        .reserve(&reservation(&guid, &format!("n{}", i % 100)))
                        .await?;
                    store.commit(&guid, &provisioned()).await
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => ok += 1,
                Err(StoreError::NameTaken) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ok, 100, "each of the 100 names is created exactly once");
        let mut created = 0;
        for i in 0..200 {
            let record = store.get(&format!("g{i}")).await.unwrap();
            if record.is_some_and(|r| r.state == State::Created) {
                created += 1;
            }
        }
        assert_eq!(created, 100);
    }

    /// Steady concurrent writes must not grow the WAL without bound: the checkpointer alone
    /// never copies all of it while writes keep coming, so SQLite would never start it over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_bounded_under_steady_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite3");
        let mut store = SqliteStore::open(&path, "normal").unwrap();
        // Small limits so a test-sized load crosses them: 64 pages (256 KiB), keep 256 KiB.
        store.wal_limits = WalLimits {
            restart_pages: 64,
            keep_bytes: 256 * 1024,
        };
        let store = Arc::new(store);
        let wal = dir.path().join("s.sqlite3-wal");
        let mut largest = 0;
        for round in 0..40 {
            let tasks: Vec<_> = (0..100)
                .map(|i| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let guid = format!("g{round}-{i}");
                        store.reserve(&reservation(&guid, &guid)).await?;
                        store.commit(&guid, &provisioned()).await
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            largest = largest.max(std::fs::metadata(&wal).unwrap().len());
        }
        // 4,000 creates write about 5 MiB of WAL when it is never started over (measured),
        // and under 300 KiB when it is.
        assert!(
            largest < 1024 * 1024,
            "WAL reached {largest} bytes with a 64-page limit"
        );
    }

    #[tokio::test]
    async fn commit_without_reservation_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.sqlite3"), "full").unwrap();
        assert!(matches!(
            store.commit("nope", &provisioned()).await,
            Err(StoreError::NoReservation(_))
        ));
    }
}
