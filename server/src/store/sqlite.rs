//! The SQLite store: the schema and its migrations, one writer thread that commits
//! queued writes in batches, and a small pool of read-only connections used from
//! `spawn_blocking`. No SQLite call ever runs on an async executor thread.
//!
//! Times are stored as RFC 3339 text with nine fractional digits (always UTC, `Z`), so
//! they round-trip exactly and sort as text in time order.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::Type;
use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension, Row};
use tokio::sync::{oneshot, Semaphore};

use super::log_chunks;
use super::{
    check_new_run, AuditRecord, JobRecord, LogLine, LogPage, LogPageLimit, LogStart,
    NotificationRecord, Run, RunPage, Store, StoreError, StoreOptions, StoreResult, TaskRun,
};
use crate::core::RunStatus;

/// Schema changes in order: entry `i` takes a database from `PRAGMA user_version` `i`
/// to `i + 1`. Append only; never edit a migration that has shipped.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE jobs (
        id          TEXT PRIMARY KEY NOT NULL,
        name        TEXT NOT NULL,
        source      TEXT NOT NULL,
        schedule    TEXT,
        updated_at  TEXT NOT NULL
    ) STRICT;

    -- No foreign key to jobs: runs outlive the job files that defined them.
    CREATE TABLE runs (
        id          TEXT PRIMARY KEY NOT NULL,
        job_id      TEXT NOT NULL,
        status      TEXT NOT NULL,
        "trigger"   TEXT NOT NULL,
        params      TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        started_at  TEXT,
        ended_at    TEXT,
        error       TEXT
    ) STRICT;
    CREATE INDEX runs_by_job ON runs (job_id, created_at DESC, id DESC);
    CREATE INDEX runs_by_created ON runs (created_at DESC, id DESC);
    CREATE INDEX runs_by_status ON runs (status);

    CREATE TABLE task_runs (
        run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        task_id     TEXT NOT NULL,
        ordinal     INTEGER NOT NULL,
        status      TEXT NOT NULL,
        attempts    INTEGER NOT NULL,
        exit_code   INTEGER,
        started_at  TEXT,
        ended_at    TEXT,
        error       TEXT,
        outputs     TEXT NOT NULL,
        PRIMARY KEY (run_id, task_id)
    ) STRICT, WITHOUT ROWID;

    -- Log lines, in chunks: one row per (append, run, task, stream); `lines` holds
    -- the encoded lines (see store/log_chunks.rs). `batch` orders appends, `id` orders
    -- the chunks of one stream.
    CREATE TABLE log_chunks (
        id          INTEGER PRIMARY KEY,
        batch       INTEGER NOT NULL,
        run_id      TEXT NOT NULL,
        task_id     TEXT NOT NULL,
        stream      TEXT NOT NULL,
        lines       BLOB NOT NULL,
        count       INTEGER NOT NULL,
        bytes       INTEGER NOT NULL  -- sum of the lines' UTF-8 lengths (the cap's unit)
    ) STRICT;
    CREATE INDEX log_chunks_by_task ON log_chunks (run_id, task_id, id);

    -- Bytes currently kept per stream, so that the cap costs one row update per batch
    -- rather than a sum over the stream.
    CREATE TABLE log_totals (
        run_id      TEXT NOT NULL,
        task_id     TEXT NOT NULL,
        stream      TEXT NOT NULL,
        bytes       INTEGER NOT NULL,
        PRIMARY KEY (run_id, task_id, stream)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 2: daemon settings that outlive a restart (the scheduler's paused state).
    r#"
    CREATE TABLE settings (
        key         TEXT PRIMARY KEY NOT NULL,
        value       TEXT NOT NULL
    ) STRICT, WITHOUT ROWID;
    "#,
    // 3: log reads by page. Each page seeks to its first batch, and a tail walks the
    // chunks' line counts backwards, from the index alone (hence `count` in it); the
    // index on `batch` makes each append's `MAX(batch)` one lookup instead of a scan
    // of every chunk.
    r#"
    CREATE INDEX log_chunks_by_batch ON log_chunks (batch);
    CREATE INDEX log_chunks_page_of_task ON log_chunks (run_id, task_id, batch, count);
    CREATE INDEX log_chunks_page_of_run ON log_chunks (run_id, batch, count);
    "#,
    // 4: who started a run, the instant a scheduled run stands for (one run per fire
    // instant, whoever tries), and the audit record of mutating calls.
    r#"
    ALTER TABLE runs ADD COLUMN triggered_by TEXT;
    ALTER TABLE runs ADD COLUMN scheduled_for TEXT;
    CREATE UNIQUE INDEX runs_by_fire ON runs (job_id, scheduled_for)
        WHERE scheduled_for IS NOT NULL;

    CREATE TABLE audit (
        id          INTEGER PRIMARY KEY,
        time        TEXT NOT NULL,
        actor       TEXT NOT NULL,
        call        TEXT NOT NULL,
        target      TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        message     TEXT NOT NULL
    ) STRICT;

    -- Each attempt to deliver a notification. No foreign key: a skipped fire's has no
    -- run (run_id is empty), and history pruning may outlive it.
    CREATE TABLE notifications (
        id          INTEGER PRIMARY KEY,
        run_id      TEXT NOT NULL,
        job_id      TEXT NOT NULL,
        time        TEXT NOT NULL,
        event       TEXT NOT NULL,
        target      TEXT NOT NULL,
        attempt     INTEGER NOT NULL,
        outcome     TEXT NOT NULL,
        message     TEXT NOT NULL
    ) STRICT;
    CREATE INDEX notifications_by_run ON notifications (run_id, id);
    "#,
];

/// The `settings` key holding whether the scheduler is paused (`true` / `false`).
const SCHEDULER_PAUSED: &str = "scheduler_paused";

/// Page cache of each read connection: 512 KiB (`PRAGMA cache_size` counts KiB when negative).
const READ_CACHE_KIB: i64 = -512;
/// Read-only connections kept open, and the most reads that run at once.
const READ_CONNECTIONS: usize = 4;
/// Most commands committed in one transaction, so one batch cannot delay its replies
/// without bound while more keep arriving.
const MAX_BATCH: usize = 1024;
/// How long a connection waits for a lock (a checkpoint, another process) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const RUN_COLUMNS: &str = r#"id, job_id, status, "trigger", params, created_at, started_at, ended_at, error,
    triggered_by, scheduled_for"#;
const TASK_COLUMNS: &str =
    "run_id, task_id, status, attempts, exit_code, started_at, ended_at, error, outputs";

/// A [`Store`] in a SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    /// `None` only while dropping: closing it is what stops the writer.
    commands: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    readers: Arc<ReadPool>,
}

/// One write, applied by the writer thread.
enum Write {
    UpsertJobs(Vec<JobRecord>),
    CreateRun(Run, Vec<TaskRun>),
    UpdateRun(Run),
    UpdateTaskRun(TaskRun),
    AppendLogs(Vec<LogLine>),
    /// The cutoff, and where the number of deleted lines goes.
    PruneLogs(DateTime<Utc>, Arc<std::sync::atomic::AtomicU64>),
    /// A key of the `settings` table, and its new value.
    Setting(&'static str, String),
    Audit(AuditRecord),
    Notification(NotificationRecord),
    /// Makes the writer thread panic, to test that callers get errors, not hangs.
    #[cfg(test)]
    Crash,
}

struct Command {
    write: Write,
    reply: oneshot::Sender<StoreResult<()>>,
}

impl SqliteStore {
    /// Opens (creating if needed, with its parent directory) the database at `path`
    /// and brings its schema up to date. This blocks briefly; it is meant for start-up.
    pub fn open(path: &Path, options: StoreOptions) -> StoreResult<SqliteStore> {
        let cannot_open =
            |e: &dyn Display| StoreError(format!("cannot open database {}: {e}", path.display()));
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::private_files::create_dir_all(parent).map_err(|e| cannot_open(&e))?;
        }
        // Made 0600 before SQLite opens it: SQLite gives the `-wal` and `-shm` files it
        // creates the database's own mode.
        crate::private_files::create_file(path).map_err(|e| cannot_open(&e))?;
        let mut conn = Connection::open(path).map_err(|e| cannot_open(&e))?;
        configure_writer(&conn).map_err(|e| cannot_open(&e))?;
        migrate(&mut conn, path)?;

        let (commands, queue) = mpsc::channel();
        let cap = options.max_log_bytes_per_stream;
        let writer = std::thread::Builder::new()
            .name("petit-store-writer".into())
            .spawn(move || run_writer(conn, queue, cap))
            .map_err(|e| cannot_open(&format!("cannot start the writer thread: {e}")))?;

        Ok(SqliteStore {
            path: path.to_path_buf(),
            commands: Some(commands),
            writer: Some(writer),
            readers: Arc::new(ReadPool {
                path: path.to_path_buf(),
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(READ_CONNECTIONS)),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands a write to the writer thread and waits until it is committed.
    async fn write(&self, write: Write) -> StoreResult<()> {
        let (reply, committed) = oneshot::channel();
        self.commands
            .as_ref()
            .ok_or_else(writer_stopped)?
            .send(Command { write, reply })
            .map_err(|_| writer_stopped())?;
        // A dropped reply sender means the writer died with our command in hand.
        committed.await.map_err(|_| writer_stopped())?
    }

    /// Runs a query on a read-only connection, off the executor threads.
    async fn read<T, F>(&self, query: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let pool = Arc::clone(&self.readers);
        // The permit bounds the reads in flight, hence the connections open at once.
        let permit = Arc::clone(&pool.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError("read pool closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = pool.checkout()?;
            let result = query(&conn);
            pool.checkin(conn);
            result
        })
        .await
        .map_err(|e| StoreError(format!("database read failed: {e}")))?
    }

    #[cfg(test)]
    pub(super) async fn crash_writer(&self) -> StoreResult<()> {
        self.write(Write::Crash).await
    }

    /// The recorded jobs (the trait has no reader for them), for tests.
    #[cfg(test)]
    pub(super) async fn stored_jobs(&self) -> StoreResult<Vec<JobRecord>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare("SELECT id, name, source, schedule, updated_at FROM jobs ORDER BY id")
                .map_err(read_failed("jobs"))?;
            let jobs = stmt
                .query_map([], |row| {
                    Ok(JobRecord {
                        id: row.get(0)?,
                        name: row.get(1)?,
                        source: row.get(2)?,
                        schedule: row.get(3)?,
                        updated_at: time_column(row, 4)?,
                    })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(read_failed("jobs"))?;
            Ok(jobs)
        })
        .await
    }
}

impl Drop for SqliteStore {
    /// Closing the channel lets the writer commit what is queued and exit; waiting for
    /// it means that everything written before the drop is on disk once it returns
    /// (also at daemon exit, where a detached thread would be killed mid-batch).
    fn drop(&mut self) {
        // The idle readers close first, so that the writer's connection is the last
        // one: SQLite checkpoints the WAL and removes it (and the shared-memory file)
        // only when the last connection to close can write. A read still running
        // returns its connection to a pool that then goes with it.
        if let Ok(mut idle) = self.readers.idle.lock() {
            idle.clear();
        }
        self.commands = None;
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("the store writer thread panicked");
            }
        }
    }
}

fn writer_stopped() -> StoreError {
    StoreError("the database writer has stopped".into())
}

/// Connection settings for the writer, which also creates the WAL.
fn configure_writer(conn: &Connection) -> Result<(), Box<dyn std::error::Error>> {
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("cannot switch to WAL journal mode (got '{mode}')").into());
    }
    // In WAL mode, NORMAL syncs at checkpoints, not at each commit. A committed
    // transaction is in the WAL file (the OS has it) before commit returns, so it
    // survives the process being killed (kill -9), which is what Petit needs; only a
    // power loss or OS crash may lose the last commits, and never corrupts the file.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(())
}

/// Applies the migrations this database lacks, one transaction each.
fn migrate(conn: &mut Connection, path: &Path) -> StoreResult<()> {
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| {
            StoreError(format!(
                "cannot read the schema version of {}: {e}",
                path.display()
            ))
        })?;
    let known = MIGRATIONS.len();
    let current = usize::try_from(current).map_err(|_| {
        StoreError(format!(
            "database {} has an invalid schema version {current}",
            path.display()
        ))
    })?;
    if current > known {
        return Err(StoreError(format!(
            "database {} has schema version {current}, newer than this petitd knows \
             (up to {known}); use a newer petitd or another database file",
            path.display()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = index + 1;
        let apply = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", version)?;
            tx.commit()
        };
        apply(conn).map_err(|e| {
            StoreError(format!(
                "cannot migrate database {} to schema version {version}: {e}",
                path.display()
            ))
        })?;
    }
    Ok(())
}

/// The writer thread: takes the first queued command, drains whatever else is
/// already queued, commits them all in one transaction, then answers each. Batching is
/// what makes many small writes (log lines) cheap: one fsync-free WAL commit per batch.
fn run_writer(mut conn: Connection, queue: mpsc::Receiver<Command>, cap: usize) {
    let mut batch = Vec::new();
    // `recv` fails once every sender is gone and the queue is empty: the store was
    // dropped and everything sent before has been handled.
    while let Ok(first) = queue.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        match commit_batch(&mut conn, &batch, cap) {
            Ok(results) => {
                for (command, result) in batch.drain(..).zip(results) {
                    // The caller may have stopped waiting; the write stands anyway.
                    let _ = command.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store batch failed");
                for command in batch.drain(..) {
                    let _ = command.reply.send(Err(StoreError(e.0.clone())));
                }
            }
        }
    }
}

/// One transaction for the whole batch; each command in its own savepoint so that one
/// bad command (a duplicate run id, say) fails alone. The outer result fails only when
/// the transaction itself could not be committed, and then every command failed.
fn commit_batch(
    conn: &mut Connection,
    batch: &[Command],
    cap: usize,
) -> StoreResult<Vec<StoreResult<()>>> {
    let batch_failed = |e: rusqlite::Error| StoreError(format!("cannot commit writes: {e}"));
    let mut tx = conn.transaction().map_err(batch_failed)?;
    let mut results = Vec::with_capacity(batch.len());
    for command in batch {
        let savepoint = tx.savepoint().map_err(batch_failed)?;
        let result = apply(&savepoint, &command.write, cap);
        if result.is_ok() {
            savepoint.commit().map_err(batch_failed)?;
        } else {
            // Rolls back to the savepoint (its default drop behaviour), reporting errors.
            savepoint.finish().map_err(batch_failed)?;
        }
        results.push(result);
    }
    tx.commit().map_err(batch_failed)?;
    Ok(results)
}

fn apply(conn: &Connection, write: &Write, cap: usize) -> StoreResult<()> {
    match write {
        Write::UpsertJobs(jobs) => {
            upsert_jobs(conn, jobs).map_err(|e| StoreError(format!("cannot record jobs: {e}")))
        }
        Write::CreateRun(run, tasks) => {
            check_new_run(run, tasks)?;
            insert_run(conn, run, tasks).map_err(|e| match (&e, run.scheduled_for) {
                (rusqlite::Error::SqliteFailure(f, Some(message)), Some(at))
                    if f.code == rusqlite::ErrorCode::ConstraintViolation
                        && message.contains("scheduled_for") =>
                {
                    super::fire_taken(&run.job_id, at)
                }
                _ => StoreError(format!("cannot create run '{}': {e}", run.id)),
            })
        }
        Write::Setting(key, value) => conn
            .prepare_cached(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut stmt| stmt.execute([key, value.as_str()]))
            .map(drop)
            .map_err(|e| StoreError(format!("cannot record setting '{key}': {e}"))),
        Write::Audit(record) => conn
            .prepare_cached(
                "INSERT INTO audit (time, actor, call, target, outcome, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    time_to_sql(&record.time),
                    record.actor,
                    record.call,
                    record.target,
                    record.outcome,
                    record.message
                ])
            })
            .map(drop)
            .map_err(|e| StoreError(format!("cannot record the audit entry: {e}"))),
        Write::Notification(n) => conn
            .prepare_cached(
                "INSERT INTO notifications
                     (run_id, job_id, time, event, target, attempt, outcome, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    n.run_id,
                    n.job_id,
                    time_to_sql(&n.time),
                    n.event,
                    n.target,
                    n.attempt,
                    n.outcome,
                    n.message
                ])
            })
            .map(drop)
            .map_err(|e| StoreError(format!("cannot record the notification: {e}"))),
        Write::UpdateRun(run) => {
            let changed = update_run(conn, run)
                .map_err(|e| StoreError(format!("cannot update run '{}': {e}", run.id)))?;
            if changed == 0 {
                return Err(StoreError(format!("run '{}' not found", run.id)));
            }
            Ok(())
        }
        Write::UpdateTaskRun(task) => {
            let changed = update_task_run(conn, task).map_err(|e| {
                StoreError(format!(
                    "cannot update task run '{}' of run '{}': {e}",
                    task.task_id, task.run_id
                ))
            })?;
            if changed == 0 {
                return Err(StoreError(format!(
                    "task run '{}' of run '{}' not found",
                    task.task_id, task.run_id
                )));
            }
            Ok(())
        }
        Write::AppendLogs(lines) => log_chunks::append(conn, lines, cap),
        Write::PruneLogs(cutoff, pruned) => {
            let n = log_chunks::prune(conn, &time_to_sql(cutoff))
                .map_err(|e| StoreError(format!("cannot prune logs: {e}")))?;
            pruned.store(n as u64, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
        #[cfg(test)]
        Write::Crash => panic!("store writer crash requested by a test"),
    }
}

fn upsert_jobs(conn: &Connection, jobs: &[JobRecord]) -> rusqlite::Result<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO jobs (id, name, source, schedule, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, source = excluded.source,
             schedule = excluded.schedule, updated_at = excluded.updated_at",
    )?;
    for job in jobs {
        upsert.execute(params![
            job.id,
            job.name,
            job.source,
            job.schedule,
            time_to_sql(&job.updated_at)
        ])?;
    }
    Ok(())
}

fn insert_run(conn: &Connection, run: &Run, tasks: &[TaskRun]) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO runs ({RUN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))?
    .execute(params![
        run.id,
        run.job_id,
        run.status.as_str(),
        run.trigger.as_str(),
        map_to_sql(&run.params)?,
        time_to_sql(&run.created_at),
        run.started_at.as_ref().map(time_to_sql),
        run.ended_at.as_ref().map(time_to_sql),
        run.error,
        run.triggered_by,
        run.scheduled_for.as_ref().map(time_to_sql),
    ])?;
    let mut insert = conn.prepare_cached(&format!(
        "INSERT INTO task_runs ({TASK_COLUMNS}, ordinal)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))?;
    for (ordinal, task) in tasks.iter().enumerate() {
        insert.execute(params![
            task.run_id,
            task.task_id,
            task.status.as_str(),
            task.attempts,
            task.exit_code,
            task.started_at.as_ref().map(time_to_sql),
            task.ended_at.as_ref().map(time_to_sql),
            task.error,
            map_to_sql(&task.outputs)?,
            ordinal,
        ])?;
    }
    Ok(())
}

fn update_run(conn: &Connection, run: &Run) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "UPDATE runs SET status = ?2, started_at = ?3, ended_at = ?4, error = ?5 WHERE id = ?1",
    )?
    .execute(params![
        run.id,
        run.status.as_str(),
        run.started_at.as_ref().map(time_to_sql),
        run.ended_at.as_ref().map(time_to_sql),
        run.error,
    ])
}

fn update_task_run(conn: &Connection, task: &TaskRun) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "UPDATE task_runs SET status = ?3, attempts = ?4, exit_code = ?5, started_at = ?6,
             ended_at = ?7, error = ?8, outputs = ?9
         WHERE run_id = ?1 AND task_id = ?2",
    )?
    .execute(params![
        task.run_id,
        task.task_id,
        task.status.as_str(),
        task.attempts,
        task.exit_code,
        task.started_at.as_ref().map(time_to_sql),
        task.ended_at.as_ref().map(time_to_sql),
        task.error,
        map_to_sql(&task.outputs)?,
    ])
}

/// Idle read-only connections, opened on first need.
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// At most [`READ_CONNECTIONS`] reads at once, so at most that many connections.
    permits: Arc<Semaphore>,
}

impl ReadPool {
    fn checkout(&self) -> StoreResult<Connection> {
        if let Some(conn) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(conn);
        }
        let cannot_open = |e: rusqlite::Error| {
            StoreError(format!(
                "cannot open database {} for reading: {e}",
                self.path.display()
            ))
        };
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(cannot_open)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(cannot_open)?;
        // A small page cache per reader: a long log read through each of them would
        // otherwise leave each holding its 2 MiB default for good, and the file's pages
        // are in the OS's cache anyway.
        conn.pragma_update(None, "cache_size", READ_CACHE_KIB)
            .map_err(cannot_open)?;
        Ok(conn)
    }

    fn checkin(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < READ_CONNECTIONS {
                idle.push(conn);
            }
        }
    }
}

fn read_failed(what: &str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError(format!("cannot read {what}: {e}"))
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn upsert_jobs(&self, jobs: Vec<JobRecord>) -> StoreResult<()> {
        self.write(Write::UpsertJobs(jobs)).await
    }

    async fn create_run(&self, run: Run, tasks: Vec<TaskRun>) -> StoreResult<()> {
        self.write(Write::CreateRun(run, tasks)).await
    }

    async fn update_run(&self, run: Run) -> StoreResult<()> {
        self.write(Write::UpdateRun(run)).await
    }

    async fn update_task_run(&self, task: TaskRun) -> StoreResult<()> {
        self.write(Write::UpdateTaskRun(task)).await
    }

    async fn append_logs(&self, lines: Vec<LogLine>) -> StoreResult<()> {
        if lines.is_empty() {
            return Ok(());
        }
        self.write(Write::AppendLogs(lines)).await
    }

    async fn prune_logs(&self, cutoff: DateTime<Utc>) -> StoreResult<u64> {
        let pruned = Arc::new(std::sync::atomic::AtomicU64::new(0));
        self.write(Write::PruneLogs(cutoff, pruned.clone())).await?;
        Ok(pruned.load(std::sync::atomic::Ordering::Relaxed))
    }

    async fn get_run(&self, run_id: &str) -> StoreResult<Option<Run>> {
        let run_id = run_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))
                .and_then(|mut stmt| stmt.query_row([&run_id], run_from_row).optional())
                .map_err(read_failed("run"))
        })
        .await
    }

    async fn list_runs(&self, job_id: Option<&str>, page: RunPage) -> StoreResult<Vec<Run>> {
        let job_id = job_id.map(str::to_owned);
        // SQLite reads a negative LIMIT as "no limit".
        let limit = match page.limit {
            0 => -1,
            n => i64::try_from(n).unwrap_or(i64::MAX),
        };
        let offset = i64::try_from(page.offset).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let query = |sql: &str, params: &[&dyn rusqlite::ToSql]| {
                conn.prepare_cached(sql).and_then(|mut stmt| {
                    stmt.query_map(params, run_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
            };
            match &job_id {
                Some(job_id) => query(
                    &format!(
                        "SELECT {RUN_COLUMNS} FROM runs WHERE job_id = ?1
                         ORDER BY created_at DESC, id DESC LIMIT ?2 OFFSET ?3"
                    ),
                    &[job_id, &limit, &offset],
                ),
                None => query(
                    &format!(
                        "SELECT {RUN_COLUMNS} FROM runs
                         ORDER BY created_at DESC, id DESC LIMIT ?1 OFFSET ?2"
                    ),
                    &[&limit, &offset],
                ),
            }
            .map_err(read_failed("runs"))
        })
        .await
    }

    async fn last_run(&self, job_id: &str, statuses: &[RunStatus]) -> StoreResult<Option<Run>> {
        let mut values = vec![job_id.to_owned()];
        values.extend(statuses.iter().map(|s| s.as_str().to_owned()));
        let status_filter = if statuses.is_empty() {
            String::new()
        } else {
            let placeholders: Vec<String> = (2..=values.len()).map(|i| format!("?{i}")).collect();
            format!("AND status IN ({})", placeholders.join(", "))
        };
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE job_id = ?1 {status_filter}
                 ORDER BY created_at DESC, id DESC LIMIT 1"
            ))
            .and_then(|mut stmt| {
                stmt.query_row(params_from_iter(&values), run_from_row)
                    .optional()
            })
            .map_err(read_failed("runs"))
        })
        .await
    }

    async fn last_runs(
        &self,
        job_ids: &[String],
    ) -> StoreResult<std::collections::HashMap<String, Run>> {
        let job_ids = job_ids.to_vec();
        // One trip to a read connection, one indexed lookup per job.
        self.read(move |conn| {
            let lookup = || -> rusqlite::Result<_> {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE job_id = ?1
                     ORDER BY created_at DESC, id DESC LIMIT 1"
                ))?;
                let mut last = std::collections::HashMap::new();
                for job_id in job_ids {
                    if let Some(run) = stmt.query_row([&job_id], run_from_row).optional()? {
                        last.insert(job_id, run);
                    }
                }
                Ok(last)
            };
            lookup().map_err(read_failed("runs"))
        })
        .await
    }

    async fn task_runs(&self, run_id: &str) -> StoreResult<Vec<TaskRun>> {
        let run_id = run_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {TASK_COLUMNS} FROM task_runs WHERE run_id = ?1 ORDER BY ordinal"
            ))
            .and_then(|mut stmt| {
                stmt.query_map([&run_id], task_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(read_failed("task runs"))
        })
        .await
    }

    async fn log_page(
        &self,
        run_id: &str,
        task_id: Option<&str>,
        start: LogStart,
        limit: LogPageLimit,
    ) -> StoreResult<LogPage> {
        let run_id = run_id.to_owned();
        let task_id = task_id.map(str::to_owned);
        self.read(move |conn| {
            // One read transaction: a tail's start and its lines come from one snapshot.
            let snapshot = conn.unchecked_transaction().map_err(read_failed("logs"))?;
            let page = log_chunks::read_page(conn, &run_id, task_id.as_deref(), start, limit)
                .map_err(read_failed("logs"))?;
            snapshot.finish().map_err(read_failed("logs"))?;
            Ok(page)
        })
        .await
    }

    async fn set_scheduler_paused(&self, paused: bool) -> StoreResult<()> {
        self.write(Write::Setting(SCHEDULER_PAUSED, paused.to_string()))
            .await
    }

    async fn scheduler_paused(&self) -> StoreResult<bool> {
        self.read(|conn| {
            conn.prepare_cached("SELECT value FROM settings WHERE key = ?1")
                .and_then(|mut stmt| {
                    stmt.query_row([SCHEDULER_PAUSED], |row| row.get::<_, String>(0))
                        .optional()
                })
                .map(|value| value.as_deref() == Some("true"))
                .map_err(read_failed("settings"))
        })
        .await
    }

    async fn append_audit(&self, record: AuditRecord) -> StoreResult<()> {
        self.write(Write::Audit(record)).await
    }

    async fn append_notification(&self, record: NotificationRecord) -> StoreResult<()> {
        self.write(Write::Notification(record)).await
    }

    async fn notifications(&self, run_id: &str) -> StoreResult<Vec<NotificationRecord>> {
        let run_id = run_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT run_id, job_id, time, event, target, attempt, outcome, message
                 FROM notifications WHERE run_id = ?1 ORDER BY id",
            )
            .and_then(|mut stmt| {
                stmt.query_map([&run_id], |row| {
                    Ok(NotificationRecord {
                        run_id: row.get(0)?,
                        job_id: row.get(1)?,
                        time: time_column(row, 2)?,
                        event: row.get(3)?,
                        target: row.get(4)?,
                        attempt: row.get(5)?,
                        outcome: row.get(6)?,
                        message: row.get(7)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(read_failed("notifications"))
        })
        .await
    }

    async fn list_audit(&self, page: RunPage) -> StoreResult<Vec<AuditRecord>> {
        let limit = match page.limit {
            0 => -1,
            n => i64::try_from(n).unwrap_or(i64::MAX),
        };
        let offset = i64::try_from(page.offset).unwrap_or(i64::MAX);
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT time, actor, call, target, outcome, message FROM audit
                 ORDER BY id DESC LIMIT ?1 OFFSET ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_map([limit, offset], audit_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(read_failed("audit"))
        })
        .await
    }

    async fn unfinished_runs(&self) -> StoreResult<Vec<Run>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE status IN (?1, ?2)
                 ORDER BY created_at, id"
            ))
            .and_then(|mut stmt| {
                stmt.query_map(
                    [RunStatus::Queued.as_str(), RunStatus::Running.as_str()],
                    run_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(read_failed("unfinished runs"))
        })
        .await
    }
}

fn time_to_sql(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn map_to_sql(map: &BTreeMap<String, String>) -> rusqlite::Result<String> {
    serde_json::to_string(map).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Reads a text column through `FromStr`; a value this binary cannot parse (a status
/// from a newer version, a damaged row) is a conversion error naming the column.
fn parse_column<T>(row: &Row<'_>, index: usize) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    let text: String = row.get(index)?;
    text.parse().map_err(|e: T::Err| conversion_error(index, e))
}

fn time_column(row: &Row<'_>, index: usize) -> rusqlite::Result<DateTime<Utc>> {
    let text: String = row.get(index)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| conversion_error(index, e))
}

fn optional_time_column(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    match row.get_ref(index)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        _ => time_column(row, index).map(Some),
    }
}

fn map_column(row: &Row<'_>, index: usize) -> rusqlite::Result<BTreeMap<String, String>> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text).map_err(|e| conversion_error(index, e))
}

fn conversion_error(index: usize, error: impl Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, Type::Text, error.to_string().into())
}

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<Run> {
    Ok(Run {
        id: row.get(0)?,
        job_id: row.get(1)?,
        status: parse_column(row, 2)?,
        trigger: parse_column(row, 3)?,
        params: map_column(row, 4)?,
        created_at: time_column(row, 5)?,
        started_at: optional_time_column(row, 6)?,
        ended_at: optional_time_column(row, 7)?,
        error: row.get(8)?,
        triggered_by: row.get(9)?,
        scheduled_for: optional_time_column(row, 10)?,
    })
}

fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        time: time_column(row, 0)?,
        actor: row.get(1)?,
        call: row.get(2)?,
        target: row.get(3)?,
        outcome: row.get(4)?,
        message: row.get(5)?,
    })
}

fn task_from_row(row: &Row<'_>) -> rusqlite::Result<TaskRun> {
    Ok(TaskRun {
        run_id: row.get(0)?,
        task_id: row.get(1)?,
        status: parse_column(row, 2)?,
        attempts: row.get(3)?,
        exit_code: row.get(4)?,
        started_at: optional_time_column(row, 5)?,
        ended_at: optional_time_column(row, 6)?,
        error: row.get(7)?,
        outputs: map_column(row, 8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::TriggerReason;

    fn schema_version(path: &Path) -> i64 {
        let conn = Connection::open(path).expect("raw connection");
        conn.pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("user_version")
    }

    #[test]
    fn open_creates_the_file_and_migrates_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        // The parent directories do not exist yet.
        let path = dir.path().join("state").join("nested").join("petit.db");
        let store = SqliteStore::open(&path, StoreOptions::default()).expect("first open");
        assert_eq!(schema_version(&path), MIGRATIONS.len() as i64);
        drop(store);

        // Reopening applies nothing and changes nothing.
        let store = SqliteStore::open(&path, StoreOptions::default()).expect("second open");
        assert_eq!(schema_version(&path), MIGRATIONS.len() as i64);
        drop(store);

        let conn = Connection::open(&path).expect("raw connection");
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .expect("journal_mode");
        assert_eq!(mode, "wal");
    }

    /// A database written by the first release (schema 1) opens, is brought up to date,
    /// and keeps its history.
    #[tokio::test]
    async fn open_upgrades_an_older_schema_keeping_its_runs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("petit.db");
        {
            let conn = Connection::open(&path).expect("raw connection");
            conn.execute_batch(MIGRATIONS[0]).expect("schema 1");
            conn.pragma_update(None, "user_version", 1)
                .expect("user_version");
            conn.execute(
                "INSERT INTO runs (id, job_id, status, \"trigger\", params, created_at)
                 VALUES ('r1', 'job', 'succeeded', 'manual', '{}', '2026-01-01T00:00:00Z')",
                [],
            )
            .expect("a run");
        }
        let store = SqliteStore::open(&path, StoreOptions::default()).expect("open");
        assert_eq!(schema_version(&path), MIGRATIONS.len() as i64);
        let run = store
            .get_run("r1")
            .await
            .expect("get_run")
            .expect("the run");
        assert_eq!(run.status, RunStatus::Succeeded);
        assert!(!store.scheduler_paused().await.expect("paused"));
        store.set_scheduler_paused(true).await.expect("pause");
        assert!(store.scheduler_paused().await.expect("paused"));
    }

    /// After a clean close the database is one file again (the WAL checkpointed into
    /// it), so that stopping petitd and copying `petit.db` is a whole backup.
    #[tokio::test]
    async fn a_closed_store_leaves_no_wal_behind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("petit.db");
        let store = SqliteStore::open(&path, StoreOptions::default()).expect("open");
        store.set_scheduler_paused(true).await.expect("write");
        // Reads open (and pool) read-only connections, which must not be the last.
        assert!(store.scheduler_paused().await.expect("read"));
        let wal = dir.path().join("petit.db-wal");
        assert!(wal.exists(), "WAL mode while open");
        drop(store);
        assert!(
            !wal.exists(),
            "the WAL is checkpointed and removed on close"
        );
        assert!(!dir.path().join("petit.db-shm").exists());
        let conn = Connection::open(&path).expect("raw connection");
        let paused: String = conn
            .query_row("SELECT value FROM settings", [], |row| row.get(0))
            .expect("the write is in the main file");
        assert_eq!(paused, "true");
    }

    #[test]
    fn open_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("petit.db");
        drop(SqliteStore::open(&path, StoreOptions::default()).expect("open"));
        let future = MIGRATIONS.len() + 1;
        Connection::open(&path)
            .and_then(|conn| conn.pragma_update(None, "user_version", future))
            .expect("bump user_version");

        let Err(error) = SqliteStore::open(&path, StoreOptions::default()) else {
            panic!("a newer schema must be refused");
        };
        let message = error.to_string();
        assert!(message.contains("newer"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert_eq!(schema_version(&path), future as i64, "left untouched");
    }

    #[test]
    fn open_errors_name_the_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![b'x'; 4096]).expect("write garbage");
        // A directory where the parent directory should be.
        let blocked = dir.path().join("file").join("petit.db");
        std::fs::write(dir.path().join("file"), b"").expect("write file");

        for path in [garbage, blocked] {
            let Err(error) = SqliteStore::open(&path, StoreOptions::default()) else {
                panic!("{} must not open", path.display());
            };
            let message = error.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
    }

    #[tokio::test]
    async fn a_dead_writer_fails_calls_instead_of_hanging() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            SqliteStore::open(&dir.path().join("petit.db"), StoreOptions::default()).expect("open");
        let run = Run {
            id: "r1".into(),
            job_id: "job".into(),
            status: RunStatus::Queued,
            trigger: TriggerReason::Manual,
            params: BTreeMap::new(),
            created_at: Utc::now(),
            started_at: None,
            ended_at: None,
            error: None,
            triggered_by: None,
            scheduled_for: None,
        };
        store.create_run(run.clone(), vec![]).await.expect("create");

        assert!(store.crash_writer().await.is_err());
        assert!(store.update_run(run.clone()).await.is_err());
        assert!(store.upsert_jobs(vec![]).await.is_err());
        // Reads do not need the writer.
        let stored = store.get_run("r1").await.expect("read");
        assert_eq!(stored.map(|r| r.id), Some(run.id));
    }
}
