//! Group commit: every write (reserve, release, commit, and each step of the lifecycle) goes
//! to one writer thread, which runs
//! whatever has queued up meanwhile in a single transaction — one fsync for the batch instead
//! of one per write — and answers each caller after that transaction commits. A write that
//! fails (a taken name, a missing reservation) fails alone: SQLite rolls back just that
//! statement (or, for a write of several statements, its savepoint), not the batch. One
//! writer also makes each write's checks and changes atomic: a delete and a bind of one
//! instance are applied one after the other, never interleaved.
//!
//! Only a batch holding a write a client is answered success for (a commit, an update, a
//! finished delete or unbind) waits for the fsync `synchronous = FULL` asks for. A batch of
//! the other steps alone commits at `NORMAL`: written to the WAL (so it survives a process
//! crash) but synced by the next durable batch — whose fsync covers every earlier WAL frame —
//! or checkpoint. A power loss can thus forget a step still waiting for its broker call: a
//! reservation (whose row only ever serves to log a possible orphan after a crash) or the
//! start of a delete or unbind (the row is then created again, and the client, who got no
//! answer, deletes again; the broker's "already gone" finishes it).

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::connection::{self, Synchronous};
use super::error::{classify, classify_shared, writer_stopped};
use crate::store::records::tags_json;
use crate::store::{
    HandleGrant, HandleReservation, Holder, InstanceUpdate, Lease, Provisioned, Reservation,
    StoreError,
};

/// Most writes one transaction carries; bounds the latency a long queue adds to its head.
const MAX_BATCH: usize = 256;
/// How large the WAL may grow before the writer checkpoints it itself.
#[derive(Debug, Clone, Copy)]
pub struct WalLimits {
    /// WAL size, in pages, at which the writer checkpoints.
    pub restart_pages: u32,
    /// What a restarted WAL file is truncated to, in bytes.
    pub keep_bytes: u64,
}

impl WalLimits {
    /// About 32 MiB at 4 KiB pages.
    pub const DEFAULT: WalLimits = WalLimits {
        restart_pages: 8192,
        keep_bytes: 32 * 1024 * 1024,
    };
}
/// How often the WAL is checkpointed into the database file, off the writer's path.
/// At `FULL` every commit batch has synced the WAL already, so a checkpoint only syncs the
/// database file. At `NORMAL` the checkpoint's sync is the WAL's only one and carries all
/// written since the last, stalling the disk (and the writer's next commit) the longer it
/// waits: 100 ms instead of 500 took the create path's p99 at 5,000/s from 5.5–6.6 ms to
/// 2.0–3.8 ms there; at `FULL` it made no difference beyond noise.
fn checkpoint_interval(synchronous: Synchronous) -> Duration {
    match synchronous {
        Synchronous::Normal => Duration::from_millis(100),
        Synchronous::Full => Duration::from_millis(500),
    }
}

pub enum Write {
    Reserve(Reservation, Lease),
    Release(String),
    Commit(String, Provisioned),
    Update(String, InstanceUpdate),
    BeginDelete {
        guid: String,
        lease: Lease,
        recursive: bool,
    },
    AbortDelete(String),
    FinishDelete(String),
    ReserveHandle(HandleReservation, Lease),
    ReleaseHandle(String),
    CommitHandle(String, HandleGrant),
    BeginUnbind(String, Lease),
    AbortUnbind(String),
    FinishUnbind(String),
}

impl Write {
    /// Whether a client is told it succeeded once it commits: then it waits for the
    /// configured `synchronous` level.
    fn is_durable(&self) -> bool {
        matches!(
            self,
            Write::Commit(..)
                | Write::Update(..)
                | Write::FinishDelete(_)
                | Write::CommitHandle(..)
                | Write::FinishUnbind(_)
        )
    }
}

struct Job {
    write: Write,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The handle callers queue writes on; the writer and checkpointer threads exit when it is
/// dropped.
pub struct Writer {
    queue: mpsc::Sender<Job>,
    _checkpointer_alive: mpsc::Sender<()>,
}

impl Writer {
    /// Starts the writer thread, and a checkpointer thread, each on its own connection.
    ///
    /// The checkpointer copies the WAL into the database file off the writer's path. Under
    /// steady writes it never quite catches up (frames keep arriving while it copies), and
    /// SQLite only starts the WAL over once a checkpoint has copied all of it: left alone the
    /// WAL grew to 1.7 GB over 300,000 creates, and every page lookup slowed with it. So the
    /// writer also checkpoints, automatically, once the WAL holds `limits.restart_pages`
    /// pages: a short stall that copies only what the checkpointer has not, after which the
    /// next batch starts the WAL over, truncated to `limits.keep_bytes`.
    pub fn start(
        path: PathBuf,
        synchronous: Synchronous,
        limits: WalLimits,
    ) -> Result<Writer, StoreError> {
        let conn = connection::open(&path, synchronous)?;
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = {}; PRAGMA journal_size_limit = {};",
            limits.restart_pages, limits.keep_bytes
        ))
        .map_err(classify)?;
        let checkpoint_conn = connection::open(&path, synchronous)?;
        let (queue, jobs) = mpsc::channel::<Job>();
        let (alive, stop) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("brokergate-store".into())
            .spawn(move || run(&conn, &jobs, synchronous))
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        std::thread::Builder::new()
            .name("brokergate-checkpoint".into())
            .spawn(move || checkpoint(&checkpoint_conn, &stop, checkpoint_interval(synchronous)))
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(Writer {
            queue,
            _checkpointer_alive: alive,
        })
    }

    /// Queues a write and waits until its transaction commits (or it failed); a commit is then
    /// durable at the configured `synchronous` level.
    pub async fn write(&self, write: Write) -> Result<(), StoreError> {
        let (done, result) = oneshot::channel();
        self.queue
            .send(Job { write, done })
            .map_err(|_| writer_stopped())?;
        result.await.map_err(|_| writer_stopped())?
    }
}

fn run(conn: &Connection, jobs: &mpsc::Receiver<Job>, synchronous: Synchronous) {
    let mut durability = Durability::new(synchronous);
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let has_commit = batch.iter().any(|job| job.write.is_durable());
        let results = match durability
            .set(conn, has_commit)
            .and_then(|()| conn.execute_batch("BEGIN IMMEDIATE"))
        {
            Err(e) => all_failed(batch.len(), e),
            Ok(()) => {
                let results: Vec<_> = batch.iter().map(|job| apply(conn, &job.write)).collect();
                match conn.execute_batch("COMMIT") {
                    Ok(()) => results,
                    Err(e) => {
                        let _ = conn.execute_batch("ROLLBACK");
                        all_failed(results.len(), e)
                    }
                }
            }
        };
        for (job, result) in batch.into_iter().zip(results) {
            // A caller that went away (client hung up) needs no answer.
            let _ = job.done.send(result);
        }
    }
}

/// One failure (a busy lock, a failed COMMIT) answered to every write of the batch.
fn all_failed(n: usize, e: rusqlite::Error) -> Vec<Result<(), StoreError>> {
    let e = Arc::new(e);
    (0..n).map(|_| Err(classify_shared(&e))).collect()
}

/// The connection's `synchronous` setting, switched per batch: the configured level for a batch
/// holding a commit, at most `NORMAL` otherwise.
struct Durability {
    configured: Synchronous,
    current: Synchronous,
}

impl Durability {
    fn new(configured: Synchronous) -> Self {
        Durability {
            configured,
            current: configured,
        }
    }

    fn set(&mut self, conn: &Connection, has_commit: bool) -> rusqlite::Result<()> {
        let wanted = if has_commit {
            self.configured
        } else {
            Synchronous::Normal
        };
        if wanted != self.current {
            conn.pragma_update(None, "synchronous", wanted.pragma())?;
            self.current = wanted;
        }
        Ok(())
    }
}

/// Copies committed WAL frames into the database file without blocking the writer (PASSIVE),
/// so the WAL is reused instead of growing; until the `Writer` is dropped.
fn checkpoint(conn: &Connection, stop: &mpsc::Receiver<()>, interval: Duration) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(interval) {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            log::warn!("Store checkpoint failed; will retry. error={e}");
        }
    }
}

fn apply(conn: &Connection, write: &Write) -> Result<(), StoreError> {
    match write {
        Write::Reserve(r, lease) => reserve(conn, r, lease),
        Write::Release(guid) => conn
            .prepare_cached("DELETE FROM service_instances WHERE guid = ?1 AND state = 'reserved'")
            .and_then(|mut stmt| stmt.execute(params![guid]))
            .map(drop)
            .map_err(classify),
        Write::Commit(guid, p) => commit(conn, guid, p),
        Write::Update(guid, u) => update(conn, guid, u),
        Write::BeginDelete {
            guid,
            lease,
            recursive,
        } => atomically(conn, |conn| begin_delete(conn, guid, lease, *recursive)),
        Write::AbortDelete(guid) => atomically(conn, |conn| {
            conn.prepare_cached(
                "UPDATE service_instances SET state = 'created', lease_owner = NULL,
                     lease_expires_at = NULL
                 WHERE guid = ?1 AND state = 'deleting'",
            )?
            .execute(params![guid])?;
            conn.prepare_cached(
                "UPDATE service_handles SET state = 'created', lease_owner = NULL,
                     lease_expires_at = NULL
                 WHERE instance_guid = ?1 AND state = 'deleting'",
            )?
            .execute(params![guid])?;
            Ok(Ok(()))
        }),
        Write::FinishDelete(guid) => finish_delete(conn, guid),
        Write::ReserveHandle(h, lease) => reserve_handle(conn, h, lease),
        Write::ReleaseHandle(guid) => conn
            .prepare_cached("DELETE FROM service_handles WHERE guid = ?1 AND state = 'reserved'")
            .and_then(|mut stmt| stmt.execute(params![guid]))
            .map(drop)
            .map_err(classify),
        Write::CommitHandle(guid, g) => commit_handle(conn, guid, g),
        Write::BeginUnbind(guid, lease) => begin_unbind(conn, guid, lease),
        Write::AbortUnbind(guid) => conn
            .prepare_cached(
                "UPDATE service_handles SET state = 'created', lease_owner = NULL,
                     lease_expires_at = NULL
                 WHERE guid = ?1 AND state = 'deleting'",
            )
            .and_then(|mut stmt| stmt.execute(params![guid]))
            .map(drop)
            .map_err(classify),
        Write::FinishUnbind(guid) => finish_unbind(conn, guid),
    }
}

/// Runs a write of several statements inside a savepoint, so that a failure — of SQLite, or
/// the write's own refusal (the inner `Err`) — undoes its earlier statements and nothing of
/// the rest of the batch.
fn atomically(
    conn: &Connection,
    write: impl FnOnce(&Connection) -> rusqlite::Result<Result<(), StoreError>>,
) -> Result<(), StoreError> {
    conn.execute_batch("SAVEPOINT write").map_err(classify)?;
    let result = match write(conn) {
        Ok(result) => result,
        Err(e) => Err(classify(e)),
    };
    let end = if result.is_ok() {
        "RELEASE write"
    } else {
        "ROLLBACK TO write; RELEASE write"
    };
    conn.execute_batch(end).map_err(classify)?;
    result
}

fn reserve(conn: &Connection, r: &Reservation, lease: &Lease) -> Result<(), StoreError> {
    let tags = tags_json(&r.tags);
    conn.prepare_cached(
        "INSERT INTO service_instances (guid, name, space_guid, organization_guid,
             service_plan_guid, broker, tags, creator_user_id, creator_email, state,
             created_at, lease_owner, lease_expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'reserved', ?10, ?11, ?12)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            r.guid,
            r.name,
            r.space_guid,
            r.organization_guid,
            r.service_plan_guid,
            r.broker,
            tags,
            r.creator_user_id,
            r.creator_email,
            r.created_at,
            lease.owner,
            lease.expires_at
        ])
    })
    .map(drop)
    .map_err(classify)
}

fn commit(conn: &Connection, guid: &str, p: &Provisioned) -> Result<(), StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE service_instances SET state = 'created', broker_service_id = ?2,
                 gateway_data = ?3, credentials = ?4, dashboard_url = ?5,
                 lease_owner = NULL, lease_expires_at = NULL
             WHERE guid = ?1 AND state = 'reserved'",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                guid,
                p.broker_service_id,
                p.gateway_data.get(),
                p.credentials.get(),
                p.dashboard_url
            ])
        })
        .map_err(classify)?;
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::NoReservation(guid.to_string()))
    }
}

/// An instance's state, `None` without a row.
fn instance_state(conn: &Connection, guid: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT state FROM service_instances WHERE guid = ?1")?
        .query_row(params![guid], |row| row.get(0))
        .optional()
}

/// Why an operation on a created instance (or handle) cannot run, from the row's state.
fn refusal(state: Option<&str>) -> StoreError {
    match state {
        Some("deleting") => StoreError::InProgress,
        _ => StoreError::NotFound,
    }
}

fn update(conn: &Connection, guid: &str, u: &InstanceUpdate) -> Result<(), StoreError> {
    let tags = u.tags.as_deref().map(tags_json);
    let changed = conn
        .prepare_cached(
            "UPDATE service_instances SET name = coalesce(?2, name), tags = coalesce(?3, tags),
                 last_operation = 'update', updated_at = ?4
             WHERE guid = ?1 AND state = 'created'",
        )
        .and_then(|mut stmt| stmt.execute(params![guid, u.name, tags, u.updated_at]))
        .map_err(classify)?;
    if changed == 1 {
        return Ok(());
    }
    let state = instance_state(conn, guid).map_err(classify)?;
    Err(refusal(state.as_deref()))
}

fn begin_delete(
    conn: &Connection,
    guid: &str,
    lease: &Lease,
    recursive: bool,
) -> rusqlite::Result<Result<(), StoreError>> {
    let state = instance_state(conn, guid)?;
    if state.as_deref() != Some("created") {
        return Ok(Err(refusal(state.as_deref())));
    }
    let (handles, busy): (i64, i64) = conn
        .prepare_cached(
            "SELECT count(*), coalesce(sum(state <> 'created'), 0) FROM service_handles
             WHERE instance_guid = ?1",
        )?
        .query_row(params![guid], |row| Ok((row.get(0)?, row.get(1)?)))?;
    if busy > 0 {
        return Ok(Err(StoreError::InProgress));
    }
    if handles > 0 && !recursive {
        return Ok(Err(StoreError::NotEmpty));
    }
    conn.prepare_cached(
        "UPDATE service_instances SET state = 'deleting', lease_owner = ?2, lease_expires_at = ?3
         WHERE guid = ?1",
    )?
    .execute(params![guid, lease.owner, lease.expires_at])?;
    conn.prepare_cached(
        "UPDATE service_handles SET state = 'deleting', lease_owner = ?2, lease_expires_at = ?3
         WHERE instance_guid = ?1",
    )?
    .execute(params![guid, lease.owner, lease.expires_at])?;
    Ok(Ok(()))
}

fn finish_delete(conn: &Connection, guid: &str) -> Result<(), StoreError> {
    match instance_state(conn, guid).map_err(classify)?.as_deref() {
        None => return Ok(()),
        Some("deleting") => {}
        Some(_) => return Err(StoreError::NotFound),
    }
    let left: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM service_handles WHERE instance_guid = ?1)")
        .and_then(|mut stmt| stmt.query_row(params![guid], |row| row.get(0)))
        .map_err(classify)?;
    if left {
        return Err(StoreError::NotEmpty);
    }
    conn.prepare_cached("DELETE FROM service_instances WHERE guid = ?1 AND state = 'deleting'")
        .and_then(|mut stmt| stmt.execute(params![guid]))
        .map(drop)
        .map_err(classify)
}

fn reserve_handle(
    conn: &Connection,
    h: &HandleReservation,
    lease: &Lease,
) -> Result<(), StoreError> {
    let state = instance_state(conn, &h.instance_guid).map_err(classify)?;
    if state.as_deref() != Some("created") {
        return Err(refusal(state.as_deref()));
    }
    let (app_guid, name) = match &h.holder {
        Holder::App { app_guid, name } => (Some(app_guid.as_str()), name.as_deref()),
        Holder::Key { name } => (None, Some(name.as_str())),
    };
    conn.prepare_cached(
        "INSERT INTO service_handles (guid, instance_guid, kind, app_guid, name, binding_options,
             state, creator_user_id, created_at, lease_owner, lease_expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'reserved', ?7, ?8, ?9, ?10)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            h.guid,
            h.instance_guid,
            h.holder.kind().as_str(),
            app_guid,
            name,
            h.binding_options,
            h.creator_user_id,
            h.created_at,
            lease.owner,
            lease.expires_at
        ])
    })
    .map(drop)
    .map_err(classify)
}

fn commit_handle(conn: &Connection, guid: &str, g: &HandleGrant) -> Result<(), StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE service_handles SET state = 'created', handle_id = ?2, gateway_data = ?3,
                 credentials = ?4, syslog_drain_url = ?5, lease_owner = NULL,
                 lease_expires_at = NULL
             WHERE guid = ?1 AND state = 'reserved'",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                guid,
                g.handle_id,
                g.configuration.get(),
                g.credentials.get(),
                g.syslog_drain_url
            ])
        })
        .map_err(classify)?;
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::NoReservation(guid.to_string()))
    }
}

fn begin_unbind(conn: &Connection, guid: &str, lease: &Lease) -> Result<(), StoreError> {
    let states: Option<(String, Option<String>)> = conn
        .prepare_cached(
            "SELECT h.state, i.state FROM service_handles h
             LEFT JOIN service_instances i ON i.guid = h.instance_guid
             WHERE h.guid = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![guid], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(classify)?;
    match states {
        None => return Err(StoreError::NotFound),
        Some((handle, _)) if handle != "created" => return Err(refusal(Some(&handle))),
        Some((_, Some(instance))) if instance == "deleting" => return Err(StoreError::InProgress),
        Some(_) => {}
    }
    conn.prepare_cached(
        "UPDATE service_handles SET state = 'deleting', lease_owner = ?2, lease_expires_at = ?3
         WHERE guid = ?1",
    )
    .and_then(|mut stmt| stmt.execute(params![guid, lease.owner, lease.expires_at]))
    .map(drop)
    .map_err(classify)
}

fn finish_unbind(conn: &Connection, guid: &str) -> Result<(), StoreError> {
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM service_handles WHERE guid = ?1")
        .and_then(|mut stmt| stmt.query_row(params![guid], |row| row.get(0)).optional())
        .map_err(classify)?;
    match state.as_deref() {
        None => Ok(()),
        Some("deleting") => conn
            .prepare_cached("DELETE FROM service_handles WHERE guid = ?1")
            .and_then(|mut stmt| stmt.execute(params![guid]))
            .map(drop)
            .map_err(classify),
        Some(_) => Err(StoreError::NotFound),
    }
}
