//! The PostgreSQL store, for replicas sharing one database. The schema is migrated at open on
//! a connection of its own (`schema.rs`); every call then runs on a lazy, bounded pool
//! (`pool.rs`): writes each in one transaction, safe beside other processes (`writes.rs`),
//! reads and lists from the indexes (`reads.rs`). Recovery runs on a dedicated connection
//! (`recovery.rs`), as at start it runs before the fork of daemon mode.
//!
//! Arrows point one way: `error`, `tls` ← `pool`; `error` ← `schema`, `reads` ← `writes`,
//! `recovery`; all ← this file.

mod error;
mod pool;
mod reads;
mod recovery;
mod schema;
mod tls;
mod writes;

#[cfg(test)]
pub(crate) mod test_db;
#[cfg(test)]
mod tests;

pub(crate) use pool::Dedicated;
pub use pool::{redacted_url, PoolObserver, PoolStatus, PoolWait};

use std::time::Duration;

use async_trait::async_trait;

use self::pool::{Connections, Target};
use super::{
    HandleGrant, HandleQuery, HandleRecord, HandleReservation, InstanceQuery, InstanceRecord,
    InstanceUpdate, Lease, Listed, Provisioned, Recovered, RecoveryPolicy, Reservation,
    SchemaVersion, Store, StoreError, Unfinished,
};

/// How the store reaches its database.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://user@host:port/db?sslmode=...` (or libpq's `key=value` form). `sslmode` as
    /// libpq has it: disable; prefer (the default) or require, encrypted but unverified;
    /// verify-ca (chain against the system's roots) or verify-full (and the host name).
    pub url: String,
    /// Overrides the URL's; never logged or put in errors.
    pub password: Option<String>,
    /// Most pooled connections open at once (at least 1).
    pub pool_size: usize,
    /// Longest a call waits for a pooled connection, connecting included.
    pub acquire_timeout: Duration,
    /// Longest one connection attempt takes (per host).
    pub connect_timeout: Duration,
    /// Set on every connection (`SET statement_timeout`): the server cancels a longer one.
    pub statement_timeout: Duration,
    /// A connection older than this is closed instead of reused.
    pub max_lifetime: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            url: String::new(),
            password: None,
            pool_size: 16,
            acquire_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
            max_lifetime: Duration::from_secs(30 * 60),
        }
    }
}

/// The password is left out.
impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &redacted_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("pool_size", &self.pool_size)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .finish()
    }
}

pub struct PgStore {
    connections: Connections,
    schema: SchemaVersion,
}

impl PgStore {
    /// Migrates on a connection of its own (closed before returning), then builds the pool
    /// without opening any pooled connection: the gateway opens the store before pingora forks
    /// into daemon mode, on a short-lived runtime, so nothing may outlive this call's runtime.
    pub async fn open(options: &PgOptions) -> Result<PgStore, StoreError> {
        let target = Target::of(options)?;
        let schema = migrate_at(&target).await?;
        Ok(PgStore {
            connections: Connections::new(target, options)?,
            schema,
        })
    }

    /// Brings the database's schema to the newest this binary knows (`brokergate migrate`).
    /// Fails if the database's schema is newer.
    pub async fn migrate(options: &PgOptions) -> Result<SchemaVersion, StoreError> {
        migrate_at(&Target::of(options)?).await
    }

    /// The schema version the database had and the one it has now.
    pub fn schema(&self) -> SchemaVersion {
        self.schema
    }

    pub fn pool_status(&self) -> PoolStatus {
        self.connections.status()
    }

    /// Reports every wait for a pooled connection to `observer` (metrics); set once.
    pub fn observe_pool(&self, observer: PoolObserver) {
        self.connections.observe(observer);
    }

    /// What PostgreSQL plans for `query`'s page (`EXPLAIN`, one line per plan node): how the
    /// bench and an operator see that a list is served from an index.
    pub async fn explain_list(&self, query: &InstanceQuery) -> Result<Vec<String>, StoreError> {
        reads::explain_list(&self.connections.get().await?, query).await
    }

    /// A dedicated connection with the pool's session settings; the caller closes it.
    async fn dedicated(&self) -> Result<Dedicated, StoreError> {
        let target = self.connections.target();
        target.dedicated().await?.with_session(target).await
    }
}

/// A connection of its own to `options`' database (URL, password and TLS as the store has them)
/// without the pool's session settings, so no statement timeout: for `brokergate copy-store`,
/// one long transaction. The caller [`Dedicated::close`]s it.
pub(crate) async fn connect_alone(options: &PgOptions) -> Result<Dedicated, StoreError> {
    Target::of(options)?.dedicated().await
}

async fn migrate_at(target: &Target) -> Result<SchemaVersion, StoreError> {
    let mut conn: Dedicated = target.dedicated().await?;
    // No statement timeout here: a migration takes what it takes, and waiting for another
    // replica's migration is logged.
    let result = schema::migrate(&mut conn.client).await;
    conn.close().await;
    result
}

#[async_trait]
impl Store for PgStore {
    async fn reserve(&self, r: &Reservation, lease: &Lease) -> Result<(), StoreError> {
        writes::reserve(&self.connections.get().await?, r, lease).await
    }

    async fn release(&self, guid: &str) -> Result<(), StoreError> {
        writes::release(&self.connections.get().await?, guid).await
    }

    async fn commit(&self, guid: &str, p: &Provisioned) -> Result<(), StoreError> {
        writes::commit(&self.connections.get().await?, guid, p).await
    }

    async fn get(&self, guid: &str) -> Result<Option<InstanceRecord>, StoreError> {
        reads::get(&self.connections.get().await?, guid).await
    }

    async fn list(&self, query: &InstanceQuery) -> Result<Listed<InstanceRecord>, StoreError> {
        reads::list(&self.connections.get().await?, query).await
    }

    async fn update(&self, guid: &str, update: &InstanceUpdate) -> Result<(), StoreError> {
        writes::update(&self.connections.get().await?, guid, update).await
    }

    async fn begin_delete(
        &self,
        guid: &str,
        lease: &Lease,
        recursive: bool,
    ) -> Result<(), StoreError> {
        let mut client = self.connections.get().await?;
        writes::begin_delete(&mut client, guid, lease, recursive).await
    }

    async fn abort_delete(&self, guid: &str) -> Result<(), StoreError> {
        writes::abort_delete(&mut self.connections.get().await?, guid).await
    }

    async fn finish_delete(&self, guid: &str) -> Result<(), StoreError> {
        writes::finish_delete(&mut self.connections.get().await?, guid).await
    }

    async fn reserve_handle(
        &self,
        handle: &HandleReservation,
        lease: &Lease,
    ) -> Result<(), StoreError> {
        writes::reserve_handle(&mut self.connections.get().await?, handle, lease).await
    }

    async fn release_handle(&self, guid: &str) -> Result<(), StoreError> {
        writes::release_handle(&self.connections.get().await?, guid).await
    }

    async fn commit_handle(&self, guid: &str, grant: &HandleGrant) -> Result<(), StoreError> {
        writes::commit_handle(&self.connections.get().await?, guid, grant).await
    }

    async fn get_handle(&self, guid: &str) -> Result<Option<HandleRecord>, StoreError> {
        reads::get_handle(&self.connections.get().await?, guid).await
    }

    async fn list_handles(&self, query: &HandleQuery) -> Result<Listed<HandleRecord>, StoreError> {
        reads::list_handles(&self.connections.get().await?, query).await
    }

    async fn begin_unbind(&self, guid: &str, lease: &Lease) -> Result<(), StoreError> {
        writes::begin_unbind(&mut self.connections.get().await?, guid, lease).await
    }

    async fn abort_unbind(&self, guid: &str) -> Result<(), StoreError> {
        writes::abort_unbind(&self.connections.get().await?, guid).await
    }

    async fn finish_unbind(&self, guid: &str) -> Result<(), StoreError> {
        writes::finish_unbind(&mut self.connections.get().await?, guid).await
    }

    /// On a dedicated connection, like [`Store::recover`]: the first claim runs at start.
    async fn claim_unfinished(
        &self,
        policy: &RecoveryPolicy,
        lease: &Lease,
    ) -> Result<Unfinished, StoreError> {
        let mut conn = self.dedicated().await?;
        let result = recovery::claim_unfinished(&mut conn.client, policy, lease).await;
        conn.close().await;
        result
    }

    /// `SELECT 1` through the pool, all of it within the acquire timeout.
    async fn ping(&self) -> Result<(), StoreError> {
        let round_trip = async {
            let client = self.connections.get().await?;
            client
                .simple_query("SELECT 1")
                .await
                .map(drop)
                .map_err(error::classify)
        };
        let target = self.connections.target();
        tokio::time::timeout(target.acquire_timeout(), round_trip)
            .await
            .map_err(|_| error::no_answer(&target.redacted))?
    }

    /// On a dedicated connection, closed before it returns: a start recovers before the fork
    /// of daemon mode.
    async fn recover(&self, policy: &RecoveryPolicy) -> Result<Recovered, StoreError> {
        let mut conn = self.dedicated().await?;
        let result = recovery::recover(&mut conn.client, policy).await;
        conn.close().await;
        result
    }
}
