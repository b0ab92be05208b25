//! `brokergate copy-store`: every instance, binding and service key of a SQLite store copied
//! into an empty PostgreSQL one, for an operator moving from one gateway to replicas.
//!
//! Both stores are first brought to this binary's newest schema (the source by
//! [`SqliteStore::open`], the target by [`PgStore::migrate`]). The source is then read on a
//! read-only connection inside one read transaction — one consistent snapshot for the checks
//! and the copy — and written to the target in one transaction: all of it or nothing. Rows go
//! in creation (rowid) order, so the target's `seq` identity keeps the lists' order (each
//! insert returns its `seq`, and a copy whose `seq`s do not rise is rolled back); every column
//! is copied as it is, JSON text byte for byte.
//!
//! Refused, with nothing copied: a source that is not a brokergate store; rows in flight in
//! the source (reserved or deleting: a broker call whose outcome only the gateway that made it
//! resolves); a target holding any instance or handle; a column one side has that the other
//! cannot take, or a value of another type than its column's.
//!
//! Memory: rows are streamed. At most [`CHUNK`] rows are held at once: read from SQLite, then
//! sent to PostgreSQL as one pipelined batch of a prepared insert (one round trip per chunk,
//! not per row), whatever the store's size.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Statement, Transaction};

use super::postgres::connect_alone;
use super::{redacted_url, PgOptions, PgStore, SqliteOptions, SqliteStore};

/// The tables copied, parents first (a handle references its instance). `schema_migrations`
/// is each store's own.
const TABLES: [&str; 2] = ["service_instances", "service_handles"];

/// Rows held in memory at once, and sent to PostgreSQL in one pipelined batch.
const CHUNK: usize = 256;

/// The target's identity column: creation order, not copied (PostgreSQL numbers the rows).
const SEQ: &str = "seq";

/// How long the target's tables are waited for when another session writes them.
const LOCK_TIMEOUT: &str = "10s";

/// How long reaching the target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a statement may go unanswered on the wire before the connection counts as lost.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// What a copy copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    pub instances: u64,
    pub bindings: u64,
    pub keys: u64,
}

impl std::fmt::Display for Copied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, {}, {}",
            counted(self.instances, "instance", "instances"),
            counted(self.bindings, "binding", "bindings"),
            counted(self.keys, "service key", "service keys")
        )
    }
}

/// Why a copy did not happen. Every one leaves the target's rows as they were: the copy is one
/// transaction, rolled back on any error (only a failed `COMMIT` leaves its outcome unknown,
/// and says so). No message holds a password: the target is named by [`redacted_url`].
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
    /// The source cannot be opened, migrated or read.
    #[error("{0}")]
    Source(String),
    /// The source holds rows whose broker call is not finished.
    #[error(
        "{store} holds rows in flight ({rows}): a broker call is not finished for them. Stop \
         brokergate and let it finish them, or start it once more on this store (without \
         --upgrade) so its recovery resolves them; then stop it and copy again. Nothing was \
         copied."
    )]
    InFlight { store: String, rows: String },
    /// The target holds instances or handles already.
    #[error(
        "{target} already holds {}: copy-store copies only into a store with no instances \
         and no handles (a fresh database, or one only migrated). Nothing was copied.",
        held(*.instances, *.handles)
    )]
    NotEmpty {
        target: String,
        instances: i64,
        handles: i64,
    },
    /// A column (or a value) one store has that the other cannot take.
    #[error("the stores' schemas cannot be mapped: {0}. Nothing was copied.")]
    Schema(String),
    /// The target cannot be reached, migrated or written.
    #[error("{0}")]
    Target(String),
}

/// `brokergate copy-store --from sqlite:PATH --to URL [--password-env VAR]`: the line to print
/// on success. Runs on a runtime of its own, closed before it returns.
pub fn copy_store(from: &str, to: &str, password_env: Option<&str>) -> Result<String, CopyError> {
    let path = sqlite_path(from)?;
    let options = target_options(to, password_env)?;
    let target = redacted_url(to);
    let source = Source::open(from, &path)?;
    source.refuse_in_flight()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CopyError::Target(format!("cannot start the runtime: {e}")))?;
    let copied = runtime.block_on(copy_into(&source, &options, &target))?;
    Ok(format!("copied {copied} from {from} to {target}"))
}

/// `sqlite:PATH`'s path.
fn sqlite_path(from: &str) -> Result<PathBuf, CopyError> {
    let path = from
        .strip_prefix("sqlite:")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            CopyError::Usage(format!(
                "--from must be sqlite:PATH, PATH the [store] sqlite_path of the gateway to copy \
                 from (got {from:?})"
            ))
        })?;
    Ok(PathBuf::from(path))
}

/// The target's options: the URL checked to be PostgreSQL's, the password from `password_env`.
fn target_options(to: &str, password_env: Option<&str>) -> Result<PgOptions, CopyError> {
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        // Not echoed: it may hold a password.
        return Err(CopyError::Usage(
            "--to must be a PostgreSQL URL: postgres://user@host:port/db[?sslmode=...]".into(),
        ));
    }
    let password = match password_env {
        None => None,
        Some(var) => Some(std::env::var(var).map_err(|e| {
            CopyError::Usage(format!(
                "--password-env {var}: environment variable {var}: {e}"
            ))
        })?),
    };
    Ok(PgOptions {
        url: to.to_string(),
        password,
        pool_size: 1,
        acquire_timeout: CONNECT_TIMEOUT,
        connect_timeout: CONNECT_TIMEOUT,
        // Sets only how long the wire may stall (the connection's TCP user timeout): the copy's
        // connection has no statement timeout.
        statement_timeout: STALL_TIMEOUT,
        ..PgOptions::default()
    })
}

// ---------------------------------------------------------------------------------------------
// The source.

/// The SQLite store, migrated, inside a read transaction held until it is dropped.
struct Source {
    shown: String,
    conn: Connection,
}

impl Source {
    fn open(shown: &str, path: &Path) -> Result<Source, CopyError> {
        let failed = |e: &dyn std::fmt::Display| CopyError::Source(format!("{shown}: {e}"));
        // Looked at before anything writes to it: opening a store creates a missing file and
        // migrating one adds tables to any SQLite file.
        if !path.is_file() {
            return Err(CopyError::Source(format!(
                "{shown}: no such file (the [store] sqlite_path of the gateway to copy from)"
            )));
        }
        let conn = read_only(path).map_err(|e| failed(&e))?;
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'
                   AND name IN ('schema_migrations', 'service_instances')",
                [],
                |row| row.get(0),
            )
            .map_err(|e| failed(&e))?;
        drop(conn);
        if tables == 0 {
            return Err(CopyError::Source(format!(
                "{shown}: not a brokergate store (no service_instances table)"
            )));
        }
        SqliteStore::open(path, SqliteOptions::default()).map_err(|e| failed(&e))?;
        let conn = read_only(path).map_err(|e| failed(&e))?;
        // Deferred: the snapshot is taken by the first read and kept by every later one.
        conn.execute_batch("BEGIN").map_err(|e| failed(&e))?;
        Ok(Source {
            shown: shown.to_string(),
            conn,
        })
    }

    fn failed(&self, e: rusqlite::Error) -> CopyError {
        CopyError::Source(format!("{}: {e}", self.shown))
    }

    /// `InFlight` when any row is reserved or deleting; `Schema` for a state this binary does
    /// not know.
    fn refuse_in_flight(&self) -> Result<(), CopyError> {
        let mut parts = Vec::new();
        for table in TABLES {
            let (what_one, what_many) = match table {
                "service_instances" => ("instance", "instances"),
                _ => ("binding or service key", "bindings or service keys"),
            };
            let sql = format!(
                "SELECT state, count(*) FROM {table} WHERE state <> 'created'
                 GROUP BY state ORDER BY state DESC"
            );
            let mut stmt = self.conn.prepare(&sql).map_err(|e| self.failed(e))?;
            let states = stmt
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
                })
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| self.failed(e))?;
            for (state, n) in states {
                let doing = match state.as_str() {
                    "reserved" => "being created",
                    "deleting" => "being deleted",
                    other => {
                        return Err(CopyError::Schema(format!(
                            "{table} has {n} rows in state {other:?}, which this brokergate \
                             does not know"
                        )))
                    }
                };
                parts.push(format!("{} {doing}", counted(n, what_one, what_many)));
            }
        }
        if parts.is_empty() {
            return Ok(());
        }
        Err(CopyError::InFlight {
            store: self.shown.clone(),
            rows: parts.join(", "),
        })
    }

    /// A table's columns: name and declared type, in order.
    fn columns(&self, table: &str) -> Result<Vec<(String, String)>, CopyError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, type FROM pragma_table_info(?1) ORDER BY cid")
            .map_err(|e| self.failed(e))?;
        stmt.query_map([table], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(|e| self.failed(e))
    }
}

fn read_only(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

// ---------------------------------------------------------------------------------------------
// The mapping between the two.

/// A column's type, as both stores keep it: SQLite TEXT and PostgreSQL text, or SQLite INTEGER
/// and PostgreSQL bigint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
}

impl Kind {
    fn of_sqlite(declared: &str) -> Option<Kind> {
        match declared.to_ascii_uppercase().as_str() {
            "TEXT" => Some(Kind::Text),
            "INTEGER" => Some(Kind::Integer),
            _ => None,
        }
    }

    fn of_postgres(data_type: &str) -> Option<Kind> {
        match data_type {
            "text" => Some(Kind::Text),
            "bigint" => Some(Kind::Integer),
            _ => None,
        }
    }

    fn postgres_type(self) -> Type {
        match self {
            Kind::Text => Type::TEXT,
            Kind::Integer => Type::INT8,
        }
    }
}

/// A column of the target's table, as `information_schema` describes it.
struct TargetColumn {
    name: String,
    data_type: String,
    /// NULL allowed, or a default: a column the source lacks is left to it.
    optional: bool,
    /// Numbered or computed by PostgreSQL: never written.
    generated: bool,
}

/// How one table is copied: the columns both have, the source's `SELECT` and the target's
/// prepared `INSERT … RETURNING seq`.
struct Plan {
    table: &'static str,
    kinds: Vec<Kind>,
    select: String,
    insert: Statement,
    guid_at: usize,
    kind_at: Option<usize>,
}

async fn plan(
    tx: &Transaction<'_>,
    source: &Source,
    table: &'static str,
) -> Result<Plan, CopyError> {
    let from = source.columns(table)?;
    let rows = tx
        .query(
            "SELECT column_name::text, data_type::text,
                    is_nullable = 'YES' OR column_default IS NOT NULL,
                    is_identity = 'YES' OR is_generated = 'ALWAYS'
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1
             ORDER BY ordinal_position",
            &[&table],
        )
        .await
        .map_err(|e| target_failed("reading the target's columns", &e))?;
    let to = rows
        .iter()
        .map(|r| {
            Ok(TargetColumn {
                name: r.try_get(0)?,
                data_type: r.try_get(1)?,
                optional: r.try_get(2)?,
                generated: r.try_get(3)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .map_err(|e| target_failed("reading the target's columns", &e))?;
    let kinds = map_columns(table, &from, &to)?;
    let names: Vec<&str> = from.iter().map(|(name, _)| name.as_str()).collect();
    let position = |name: &str| names.iter().position(|n| *n == name);
    let guid_at =
        position("guid").ok_or_else(|| CopyError::Schema(format!("{table} has no guid column")))?;
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
    let insert_sql = format!(
        "INSERT INTO {table} ({}) VALUES ({}) RETURNING {SEQ}",
        quoted.join(", "),
        placeholders.join(", ")
    );
    let types: Vec<Type> = kinds.iter().map(|k| k.postgres_type()).collect();
    let insert = tx
        .prepare_typed(&insert_sql, &types)
        .await
        .map_err(|e| target_failed(&format!("preparing the insert into {table}"), &e))?;
    Ok(Plan {
        table,
        select: format!("SELECT {} FROM {table} ORDER BY rowid", quoted.join(", ")),
        kinds,
        insert,
        guid_at,
        kind_at: position("kind"),
    })
}

/// Each source column's kind, once the target is found to take every one of them and to need
/// nothing else; `Schema` naming the first column that does not map.
fn map_columns(
    table: &str,
    from: &[(String, String)],
    to: &[TargetColumn],
) -> Result<Vec<Kind>, CopyError> {
    let mismatch = |what: String| Err(CopyError::Schema(format!("{table}.{what}")));
    if from.is_empty() || to.is_empty() {
        return mismatch("is missing".into());
    }
    if !to.iter().any(|c| c.name == SEQ && c.generated) {
        return mismatch(format!(
            "{SEQ}: the PostgreSQL table has no {SEQ} identity to keep the creation order"
        ));
    }
    let mut kinds = Vec::with_capacity(from.len());
    for (name, declared) in from {
        let Some(target) = to.iter().find(|c| &c.name == name) else {
            return mismatch(format!(
                "{name} is in the SQLite store but not in PostgreSQL: copying would lose it"
            ));
        };
        if target.generated {
            return mismatch(format!(
                "{name} is generated by PostgreSQL and cannot be copied"
            ));
        }
        match (
            Kind::of_sqlite(declared),
            Kind::of_postgres(&target.data_type),
        ) {
            (Some(a), Some(b)) if a == b => kinds.push(a),
            _ => {
                return mismatch(format!(
                    "{name} is {declared} in SQLite and {} in PostgreSQL",
                    target.data_type
                ))
            }
        }
    }
    if let Some(required) = to
        .iter()
        .find(|c| !c.generated && !c.optional && !from.iter().any(|(name, _)| name == &c.name))
    {
        return mismatch(format!(
            "{} is required in PostgreSQL and the SQLite store has no such column",
            required.name
        ));
    }
    Ok(kinds)
}

/// One value, owned until its chunk is sent.
enum Cell {
    Text(Option<String>),
    Integer(Option<i64>),
}

impl Cell {
    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Cell::Text(v) => v,
            Cell::Integer(v) => v,
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            Cell::Text(v) => v.as_deref(),
            Cell::Integer(_) => None,
        }
    }
}

fn cells(plan: &Plan, row: &rusqlite::Row<'_>) -> Result<Vec<Cell>, CopyError> {
    let guid = || row.get::<_, String>(plan.guid_at).unwrap_or_default();
    let wrong = |i: usize, found: &str| {
        CopyError::Schema(format!(
            "{}.{} of {}: a {found} value where the column takes {}",
            plan.table,
            row.as_ref().column_name(i).unwrap_or("?"),
            guid(),
            match plan.kinds[i] {
                Kind::Text => "text",
                Kind::Integer => "integers",
            }
        ))
    };
    plan.kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let value = row
                .get_ref(i)
                .map_err(|e| CopyError::Source(format!("reading {}: {e}", plan.table)))?;
            Ok(match (kind, value) {
                (Kind::Text, ValueRef::Null) => Cell::Text(None),
                (Kind::Integer, ValueRef::Null) => Cell::Integer(None),
                (Kind::Text, ValueRef::Text(bytes)) => Cell::Text(Some(
                    std::str::from_utf8(bytes)
                        .map_err(|_| wrong(i, "non-UTF-8 text"))?
                        .to_string(),
                )),
                (Kind::Integer, ValueRef::Integer(n)) => Cell::Integer(Some(n)),
                (_, ValueRef::Text(_)) => return Err(wrong(i, "text")),
                (_, ValueRef::Integer(_)) => return Err(wrong(i, "integer")),
                (_, ValueRef::Real(_)) => return Err(wrong(i, "real")),
                (_, ValueRef::Blob(_)) => return Err(wrong(i, "blob")),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The target.

async fn copy_into(
    source: &Source,
    options: &PgOptions,
    target: &str,
) -> Result<Copied, CopyError> {
    PgStore::migrate(options)
        .await
        .map_err(|e| CopyError::Target(format!("{target}: {}", with_causes(&e))))?;
    let mut conn = connect_alone(options)
        .await
        .map_err(|e| CopyError::Target(format!("{target}: {}", with_causes(&e))))?;
    let result = copy_in(&mut conn.client, source, target).await;
    conn.close().await;
    result.map_err(|e| match e {
        CopyError::Target(message) => CopyError::Target(format!("{target}: {message}")),
        other => other,
    })
}

async fn copy_in(
    client: &mut tokio_postgres::Client,
    source: &Source,
    target: &str,
) -> Result<Copied, CopyError> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| target_failed("starting a transaction", &e))?;
    // Writers wait (a second copy-store, a gateway already running on the target): the check
    // that the target is empty holds until the commit. Readers do not.
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}';
         LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
        TABLES.join(", ")
    ))
    .await
    .map_err(|e| target_failed("locking its tables (is something writing them?)", &e))?;
    let held = tx
        .query_one(
            "SELECT (SELECT count(*) FROM service_instances),
                    (SELECT count(*) FROM service_handles)",
            &[],
        )
        .await
        .and_then(|row| Ok((row.try_get::<_, i64>(0)?, row.try_get::<_, i64>(1)?)))
        .map_err(|e| target_failed("counting its rows", &e))?;
    if held != (0, 0) {
        return Err(CopyError::NotEmpty {
            target: target.to_string(),
            instances: held.0,
            handles: held.1,
        });
    }
    let mut plans = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        plans.push(plan(&tx, source, table).await?);
    }
    let mut copied = Copied::default();
    for plan in &plans {
        copy_table(&tx, source, plan, &mut copied).await?;
    }
    tx.commit().await.map_err(|e| {
        CopyError::Target(format!(
            "the commit failed, so whether the rows were copied is unknown: look at the \
             target before copying again ({})",
            describe(&e)
        ))
    })?;
    Ok(copied)
}

/// Streams `plan.table` from the source in rowid order, [`CHUNK`] rows at a time.
async fn copy_table(
    tx: &Transaction<'_>,
    source: &Source,
    plan: &Plan,
    copied: &mut Copied,
) -> Result<(), CopyError> {
    let mut stmt = source
        .conn
        .prepare(&plan.select)
        .map_err(|e| source.failed(e))?;
    let mut rows = stmt.query([]).map_err(|e| source.failed(e))?;
    let mut chunk: Vec<Vec<Cell>> = Vec::with_capacity(CHUNK);
    let mut last_seq = i64::MIN;
    loop {
        let row = rows.next().map_err(|e| source.failed(e))?;
        let end = row.is_none();
        if let Some(row) = row {
            chunk.push(cells(plan, row)?);
        }
        if chunk.len() == CHUNK || (end && !chunk.is_empty()) {
            last_seq = insert_chunk(tx, plan, &chunk, last_seq).await?;
            for row in &chunk {
                count(plan, row, copied);
            }
            chunk.clear();
        }
        if end {
            return Ok(());
        }
    }
}

/// Inserts `chunk` in one pipelined batch; the last `seq` given. `seq`s that do not rise from
/// `last_seq` fail the copy: the lists' order would not be the source's.
async fn insert_chunk(
    tx: &Transaction<'_>,
    plan: &Plan,
    chunk: &[Vec<Cell>],
    mut last_seq: i64,
) -> Result<i64, CopyError> {
    let params: Vec<Vec<&(dyn ToSql + Sync)>> = chunk
        .iter()
        .map(|row| row.iter().map(Cell::param).collect())
        .collect();
    let inserts = params
        .iter()
        .map(|p| tx.query_one(&plan.insert, p))
        .collect();
    // Sent in order on one connection, so the server numbers them in order; the first failure
    // is the cause (the ones after it fail because the transaction is aborted).
    for (result, row) in join_in_order(inserts).await.into_iter().zip(chunk) {
        let guid = row[plan.guid_at].text().unwrap_or_default();
        let seq: i64 = result
            .and_then(|r| r.try_get(0))
            .map_err(|e| target_failed(&format!("copying {} row {guid}", plan.table), &e))?;
        if seq <= last_seq {
            return Err(CopyError::Target(format!(
                "copying {} row {guid}: numbered {seq} after {last_seq}, out of creation order",
                plan.table
            )));
        }
        last_seq = seq;
    }
    Ok(last_seq)
}

fn count(plan: &Plan, row: &[Cell], copied: &mut Copied) {
    if plan.table == "service_instances" {
        copied.instances += 1;
        return;
    }
    match plan.kind_at.and_then(|i| row[i].text()) {
        Some("binding") => copied.bindings += 1,
        Some("key") => copied.keys += 1,
        _ => {}
    }
}

/// Runs `futures` together, so a pipelining client sends them all before the first answer;
/// their outputs in their order. Each is polled once to send it; after that only from the
/// earliest unfinished one on until one is pending, as the answers come back in order (a later
/// one ready early waits, its waker registered, and is collected on a later pass).
async fn join_in_order<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    let (mut first, mut sent) = (0, 0);
    std::future::poll_fn(|cx| {
        let mut blocked = false;
        for i in first..pending.len() {
            if outputs[i].is_some() || (blocked && i < sent) {
                continue;
            }
            match pending[i].as_mut().poll(cx) {
                Poll::Ready(value) => outputs[i] = Some(value),
                Poll::Pending => blocked = true,
            }
        }
        sent = pending.len();
        while outputs.get(first).is_some_and(Option::is_some) {
            first += 1;
        }
        if first == pending.len() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

fn target_failed(doing: &str, e: &tokio_postgres::Error) -> CopyError {
    CopyError::Target(format!("{doing}: {}. Nothing was copied.", describe(e)))
}

/// The server's message when it sent one (the driver's `Display` says only "db error"),
/// else the driver's error and its cause.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.to_string().replace('\n', "; ");
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// A store error and its causes: the driver's error says only "db error", its cause is the
/// server's message (which never holds the password).
fn with_causes(e: &super::StoreError) -> String {
    let mut shown = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string().replace('\n', "; ");
        if !shown.ends_with(&text) {
            shown = format!("{shown}: {text}");
        }
        cause = c.source();
    }
    shown
}

fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn held(instances: i64, handles: i64) -> String {
    let n = |v: i64| u64::try_from(v).unwrap_or_default();
    format!(
        "{} and {}",
        counted(n(instances), "instance", "instances"),
        counted(
            n(handles),
            "binding or service key",
            "bindings or service keys"
        )
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Nothing listens there: a copy that got as far as the target would fail reaching it.
    const NOWHERE: &str = "postgres://u:s3cret@127.0.0.1:1/db";

    fn store(dir: &Path) -> PathBuf {
        let path = dir.join("store.db");
        SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        path
    }

    fn insert_instance(path: &Path, guid: &str, state: &str) {
        let conn = Connection::open(path).unwrap();
        conn.execute(
            "INSERT INTO service_instances (guid, name, space_guid, service_plan_guid, broker,
                 broker_service_id, gateway_data, credentials, tags, creator_user_id, state,
                 created_at)
             VALUES (?1, ?1, 's', 'p', 'b', 'id', '{}', '{}', '[]', 'u', ?2, 1)",
            [guid, state],
        )
        .unwrap();
    }

    #[test]
    fn from_must_be_sqlite_and_a_path() {
        for bad in ["/var/lib/brokergate/store.db", "sqlite:", "postgres://h/db"] {
            let e = copy_store(bad, NOWHERE, None).unwrap_err();
            assert!(matches!(e, CopyError::Usage(_)), "{bad}: {e}");
            assert!(e.to_string().contains("--from must be sqlite:PATH"), "{e}");
        }
    }

    #[test]
    fn to_must_be_postgres_and_is_never_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let from = format!("sqlite:{}", store(dir.path()).display());
        let e = copy_store(&from, "mysql://u:s3cret@h/db", None).unwrap_err();
        assert!(
            e.to_string().contains("--to must be a PostgreSQL URL"),
            "{e}"
        );
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn a_missing_password_variable_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let from = format!("sqlite:{}", store(dir.path()).display());
        let var = "BROKERGATE_COPY_TEST_UNSET_PASSWORD";
        let e = copy_store(&from, NOWHERE, Some(var)).unwrap_err();
        assert!(matches!(e, CopyError::Usage(_)), "{e}");
        assert!(e.to_string().contains(var), "{e}");
    }

    #[test]
    fn a_missing_file_is_refused_and_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.db");
        let from = format!("sqlite:{}", path.display());
        let e = copy_store(&from, NOWHERE, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{from}: no such file (the [store] sqlite_path of the gateway to copy from)")
        );
        assert!(!path.exists());
    }

    #[test]
    fn another_sqlite_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let from = format!("sqlite:{}", path.display());
        let e = copy_store(&from, NOWHERE, None).unwrap_err();
        assert!(e.to_string().contains("not a brokergate store"), "{e}");
        let tables: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 1, "nothing was added to it");

        std::fs::write(&path, b"not a database at all, just some text").unwrap();
        let e = copy_store(&from, NOWHERE, None).unwrap_err();
        assert!(e.to_string().contains("not a database"), "{e}");
    }

    #[test]
    fn rows_in_flight_are_refused_before_the_target_is_reached() {
        let dir = tempfile::tempdir().unwrap();
        let path = store(dir.path());
        insert_instance(&path, "a", "created");
        insert_instance(&path, "b", "reserved");
        insert_instance(&path, "c", "deleting");
        insert_instance(&path, "d", "deleting");
        let from = format!("sqlite:{}", path.display());
        let e = copy_store(&from, NOWHERE, None).unwrap_err();
        assert!(matches!(e, CopyError::InFlight { .. }), "{e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!(
                "{from} holds rows in flight (1 instance being created, 2 instances being \
                 deleted)"
            )),
            "{shown}"
        );
        assert!(shown.contains("Stop brokergate"), "{shown}");
    }

    #[test]
    fn an_unknown_state_is_a_schema_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let path = store(dir.path());
        insert_instance(&path, "a", "frozen");
        let from = format!("sqlite:{}", path.display());
        let e = copy_store(&from, NOWHERE, None).unwrap_err();
        assert!(matches!(e, CopyError::Schema(_)), "{e}");
    }

    #[test]
    fn an_unreachable_target_is_named_without_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = store(dir.path());
        insert_instance(&path, "a", "created");
        let from = format!("sqlite:{}", path.display());
        let e = copy_store(&from, NOWHERE, None).unwrap_err();
        assert!(matches!(e, CopyError::Target(_)), "{e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with("postgres://u@127.0.0.1:1/db: "),
            "{shown}"
        );
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    fn column(name: &str, data_type: &str, optional: bool, generated: bool) -> TargetColumn {
        TargetColumn {
            name: name.into(),
            data_type: data_type.into(),
            optional,
            generated,
        }
    }

    #[test]
    fn columns_map_by_name_and_type_and_nothing_is_lost() {
        let from = vec![
            ("guid".to_string(), "TEXT".to_string()),
            ("created_at".to_string(), "INTEGER".to_string()),
        ];
        let to = vec![
            column("seq", "bigint", false, true),
            column("created_at", "bigint", false, false),
            column("guid", "text", false, false),
            column("later", "text", true, false),
        ];
        assert_eq!(
            map_columns("t", &from, &to).unwrap(),
            vec![Kind::Text, Kind::Integer]
        );

        let mut lost = from.clone();
        lost.push(("extra".into(), "TEXT".into()));
        let e = map_columns("t", &lost, &to).unwrap_err();
        assert!(
            e.to_string().contains("t.extra is in the SQLite store"),
            "{e}"
        );

        let mut required = to;
        required.push(column("must", "text", false, false));
        let e = map_columns("t", &from, &required).unwrap_err();
        assert!(e.to_string().contains("t.must is required"), "{e}");

        let retyped = vec![
            column("seq", "bigint", false, true),
            column("guid", "text", false, false),
            column("created_at", "timestamp with time zone", false, false),
        ];
        let e = map_columns("t", &from, &retyped).unwrap_err();
        assert!(
            e.to_string().contains("t.created_at is INTEGER in SQLite"),
            "{e}"
        );

        let e = map_columns("t", &from, &retyped[1..]).unwrap_err();
        assert!(e.to_string().contains("no seq identity"), "{e}");
    }

    #[test]
    fn the_summary_counts_each_kind() {
        let c = Copied {
            instances: 3,
            bindings: 2,
            keys: 1,
        };
        assert_eq!(c.to_string(), "3 instances, 2 bindings, 1 service key");
        assert_eq!(
            Copied::default().to_string(),
            "0 instances, 0 bindings, 0 service keys"
        );
    }
}
