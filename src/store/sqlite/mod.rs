//! The embedded SQLite store. WAL journal; `synchronous = FULL` by default, so a committed row
//! survives power loss, not only a process crash. Writes go through the group-commit writer
//! thread (`writer.rs`); reads run on tokio's blocking pool on a small pool of read-only
//! connections (`reads.rs`), so no fsync ever stalls a proxy thread. The schema is migrated at
//! open (`schema.rs`).
//!
//! Arrows point one way: `error` ← `connection` ← `schema`, `writer`, `reads`, `recovery` ←
//! this file. `writer` and `reads` never use each other or this file; `recovery` borrows the
//! row mapping of `reads`.

mod connection;
mod error;
pub(crate) mod reads;
mod recovery;
mod schema;
mod writer;

#[cfg(test)]
mod tests;

pub use connection::Synchronous;
pub use schema::SchemaVersion;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use async_trait::async_trait;

use self::error::joined;
use self::reads::Reads;
use self::writer::{WalLimits, Write, Writer};
use super::{
    HandleGrant, HandleQuery, HandleRecord, HandleReservation, InstanceQuery, InstanceRecord,
    InstanceUpdate, Lease, Listed, Provisioned, Recovered, RecoveryPolicy, Reservation, Store,
    StoreError, Unfinished,
};

/// How a store is opened.
#[derive(Debug, Clone, Copy)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    /// Most read connections open at once (at least 1).
    pub read_connections: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            read_connections: 4,
        }
    }
}

pub struct SqliteStore {
    path: PathBuf,
    synchronous: Synchronous,
    schema: SchemaVersion,
    /// Started on first write, so no thread or connection is carried across the fork of daemon
    /// mode; the read pool, likewise, opens its connections on first read.
    writer: OnceLock<Writer>,
    reads: Reads,
    wal_limits: WalLimits,
}

impl SqliteStore {
    /// Prepares the database file — created readable by the owner only — and migrates its
    /// schema to the newest this binary knows. Fails if the file's schema is newer.
    /// What SQLite plans for `query`'s count and page (`EXPLAIN QUERY PLAN`, one line per
    /// step): how the bench and an operator see that a list is served from an index.
    pub fn explain_list(&self, query: &InstanceQuery) -> Result<Vec<String>, StoreError> {
        let conn = connection::open_reader(&self.path)?;
        reads::instance_list_plans(&conn, query).map_err(error::classify)
    }

    pub fn open(path: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        connection::prepare_file(path)?;
        let schema = schema::migrate(&mut connection::open(path, options.synchronous)?)?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            synchronous: options.synchronous,
            schema,
            writer: OnceLock::new(),
            reads: Reads::new(path.to_path_buf(), options.read_connections)?,
            wal_limits: WalLimits::DEFAULT,
        })
    }

    /// The schema version the file had and the one it has now.
    pub fn schema(&self) -> SchemaVersion {
        self.schema
    }

    async fn write(&self, write: Write) -> Result<(), StoreError> {
        self.writer()?.write(write).await
    }

    fn writer(&self) -> Result<&Writer, StoreError> {
        if let Some(w) = self.writer.get() {
            return Ok(w);
        }
        let started = Writer::start(self.path.clone(), self.synchronous, self.wal_limits)?;
        // Two first writes may race to start one; the loser's thread exits with its handle.
        Ok(self.writer.get_or_init(|| started))
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn reserve(&self, r: &Reservation, lease: &Lease) -> Result<(), StoreError> {
        self.write(Write::Reserve(r.clone(), lease.clone())).await
    }

    async fn release(&self, guid: &str) -> Result<(), StoreError> {
        self.write(Write::Release(guid.to_string())).await
    }

    async fn commit(&self, guid: &str, p: &Provisioned) -> Result<(), StoreError> {
        self.write(Write::Commit(guid.to_string(), p.clone())).await
    }

    async fn get(&self, guid: &str) -> Result<Option<InstanceRecord>, StoreError> {
        self.reads.get(guid).await
    }

    async fn list(&self, query: &InstanceQuery) -> Result<Listed<InstanceRecord>, StoreError> {
        self.reads.list(query).await
    }

    async fn update(&self, guid: &str, update: &InstanceUpdate) -> Result<(), StoreError> {
        self.write(Write::Update(guid.to_string(), update.clone()))
            .await
    }

    async fn begin_delete(
        &self,
        guid: &str,
        lease: &Lease,
        recursive: bool,
    ) -> Result<(), StoreError> {
        self.write(Write::BeginDelete {
            guid: guid.to_string(),
            lease: lease.clone(),
            recursive,
        })
        .await
    }

    async fn abort_delete(&self, guid: &str) -> Result<(), StoreError> {
        self.write(Write::AbortDelete(guid.to_string())).await
    }

    async fn finish_delete(&self, guid: &str) -> Result<(), StoreError> {
        self.write(Write::FinishDelete(guid.to_string())).await
    }

    async fn reserve_handle(
        &self,
        handle: &HandleReservation,
        lease: &Lease,
    ) -> Result<(), StoreError> {
        self.write(Write::ReserveHandle(handle.clone(), lease.clone()))
            .await
    }

    async fn release_handle(&self, guid: &str) -> Result<(), StoreError> {
        self.write(Write::ReleaseHandle(guid.to_string())).await
    }

    async fn commit_handle(&self, guid: &str, grant: &HandleGrant) -> Result<(), StoreError> {
        self.write(Write::CommitHandle(guid.to_string(), grant.clone()))
            .await
    }

    async fn get_handle(&self, guid: &str) -> Result<Option<HandleRecord>, StoreError> {
        self.reads.get_handle(guid).await
    }

    async fn list_handles(&self, query: &HandleQuery) -> Result<Listed<HandleRecord>, StoreError> {
        self.reads.list_handles(query).await
    }

    async fn begin_unbind(&self, guid: &str, lease: &Lease) -> Result<(), StoreError> {
        self.write(Write::BeginUnbind(guid.to_string(), lease.clone()))
            .await
    }

    async fn abort_unbind(&self, guid: &str) -> Result<(), StoreError> {
        self.write(Write::AbortUnbind(guid.to_string())).await
    }

    async fn finish_unbind(&self, guid: &str) -> Result<(), StoreError> {
        self.write(Write::FinishUnbind(guid.to_string())).await
    }

    /// On a connection of its own, like [`Store::recover`]: rare, and off the writer's queue.
    async fn claim_unfinished(
        &self,
        policy: &RecoveryPolicy,
        lease: &Lease,
    ) -> Result<Unfinished, StoreError> {
        let (path, synchronous) = (self.path.clone(), self.synchronous);
        let (policy, lease) = (policy.clone(), lease.clone());
        tokio::task::spawn_blocking(move || {
            recovery::claim_unfinished(&path, synchronous, &policy, &lease)
        })
        .await
        .map_err(joined)?
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.reads.ping().await
    }

    /// On a connection of its own, closed before it returns: a start recovers before the fork
    /// of daemon mode.
    async fn recover(&self, policy: &RecoveryPolicy) -> Result<Recovered, StoreError> {
        let (path, synchronous, policy) = (self.path.clone(), self.synchronous, policy.clone());
        tokio::task::spawn_blocking(move || recovery::recover(&path, synchronous, &policy))
            .await
            .map_err(joined)?
    }
}
