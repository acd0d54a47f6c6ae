//! The writer: one thread owns the only read-write connection and applies every write.
//! It takes the first queued command, drains whatever else is already queued, commits
//! them all in one transaction, then answers each. Batching is what makes many small
//! writes (log lines) cheap: one fsync-free WAL commit per batch. One writer also
//! makes each command atomic with respect to every other: a claim that reads and then
//! updates cannot interleave with another write.
//!
//! A command is a closure over the write connection with its own typed reply; the
//! writes themselves are the functions below it.
//!
//! A small write (a task's or a run's state) may also be applied by its caller, on
//! its own thread, when the writer thread has nothing queued or under way
//! ([`Shared::try_inline`]): the connection is behind a mutex the writer thread holds
//! for each batch, and a write goes inline only while no command is in flight, so it
//! never overtakes one. Crossing to the writer thread and back costs two thread
//! wake-ups, 57-74 µs on the 2-core machine of BENCHMARKS.md, about a third of a
//! task's durable write: the step from one task to the next of a chain pays it.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::checkpoint::{self, Checkpointer};
use super::rows::{map_to_sql, run_from_row, time_to_sql, RUN_COLUMNS, TASK_COLUMNS};
use super::BUSY_TIMEOUT;
use crate::core::{RunStatus, TaskStatus};
use crate::store::log_chunks;
use crate::store::{
    check_new_run, AuditRecord, ClaimLimits, JobRecord, NotificationRecord, Run, StoreError,
    StoreResult, TaskRun,
};

/// Most commands committed in one transaction, so one batch cannot delay its replies
/// without bound while more keep arriving.
const MAX_BATCH: usize = 1024;

/// One write, queued for the writer thread.
pub(super) struct Command(Box<dyn Pending>);

impl Command {
    /// A command that applies `write` in a batch's transaction, and the receiver of its
    /// result, sent once the batch is committed. A receiver that hears nothing (its
    /// sender dropped) means the writer died with the command in hand.
    pub(super) fn new<T, F>(write: F) -> (Command, oneshot::Receiver<StoreResult<T>>)
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        (Command(Box::new(Queued { write, reply })), result)
    }
}

/// A command not applied yet.
trait Pending: Send {
    /// Applies the write (in its own savepoint, which the caller commits or rolls back).
    fn apply(self: Box<Self>, conn: &Connection) -> Box<dyn Applied>;
    /// Answers with the batch's failure, unapplied.
    fn fail(self: Box<Self>, source: Arc<rusqlite::Error>);
}

/// A command applied, waiting for its batch to commit.
trait Applied: Send {
    fn succeeded(&self) -> bool;
    /// Answers with the write's result: the batch is committed.
    fn answer(self: Box<Self>);
    /// Answers with the batch's failure: the write is rolled back with it.
    fn fail(self: Box<Self>, source: Arc<rusqlite::Error>);
}

struct Queued<T, F> {
    write: F,
    reply: oneshot::Sender<StoreResult<T>>,
}

struct Done<T> {
    result: StoreResult<T>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Pending for Queued<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
{
    fn apply(self: Box<Self>, conn: &Connection) -> Box<dyn Applied> {
        let Queued { write, reply } = *self;
        Box::new(Done {
            result: write(conn),
            reply,
        })
    }

    fn fail(self: Box<Self>, source: Arc<rusqlite::Error>) {
        // The caller may have stopped waiting; so may every answer below.
        let _ = self.reply.send(Err(StoreError::Commit { source }));
    }
}

impl<T: Send + 'static> Applied for Done<T> {
    fn succeeded(&self) -> bool {
        self.result.is_ok()
    }

    fn answer(self: Box<Self>) {
        let _ = self.reply.send(self.result);
    }

    fn fail(self: Box<Self>, source: Arc<rusqlite::Error>) {
        let _ = self.reply.send(Err(StoreError::Commit { source }));
    }
}

/// Starts the writer thread on `conn` (see [`configure`]); it runs until every sender
/// of the returned channel is gone and what they sent is committed.
/// The write connection and what its commits need, shared by the writer thread and
/// the callers that write inline.
pub(super) struct Shared {
    /// `None` once the writer thread has closed them (the store is being dropped).
    state: Mutex<Option<State>>,
    /// Commands sent to the writer thread and not yet committed: a write goes inline
    /// only when there are none.
    in_flight: AtomicUsize,
    /// Transactions committed (see `SqliteStore::commits`).
    commits: AtomicU64,
}

struct State {
    conn: Connection,
    checkpointer: Option<Checkpointer>,
}

impl Shared {
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Counts `command` in flight, before it is sent to the writer thread.
    pub(super) fn sending(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    /// Takes back the count of a command the writer thread never got.
    pub(super) fn unsent(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Applies `command` here and now, in a transaction of its own, when no command is
    /// queued for the writer thread or under way and the connection is free; gives it
    /// back otherwise. Its reply is sent before this returns.
    pub(super) fn try_inline(&self, command: Command) -> Result<(), Command> {
        if self.in_flight.load(Ordering::SeqCst) != 0 {
            return Err(command);
        }
        // Busy (or poisoned by a panic mid-write): the writer thread's queue it is.
        let Ok(mut guard) = self.state.try_lock() else {
            return Err(command);
        };
        let Some(state) = guard.as_mut() else {
            return Err(command);
        };
        // A command sent since the first look waits for this lock: it goes first.
        if self.in_flight.load(Ordering::SeqCst) != 0 {
            return Err(command);
        }
        commit_batch(&mut state.conn, VecDeque::from([command.0]), &self.commits);
        checkpoint::after_inline_commit(state.checkpointer.as_ref());
        Ok(())
    }
}

pub(super) fn spawn(
    conn: Connection,
    path: &Path,
) -> std::io::Result<(mpsc::Sender<Command>, JoinHandle<()>, Arc<Shared>)> {
    let (commands, queue) = mpsc::channel();
    let shared = Arc::new(Shared {
        state: Mutex::new(Some(State {
            conn,
            checkpointer: Checkpointer::start(path),
        })),
        in_flight: AtomicUsize::new(0),
        commits: AtomicU64::new(0),
    });
    let writer_shared = shared.clone();
    let writer = std::thread::Builder::new()
        .name("petit-store-writer".into())
        .spawn(move || {
            run_writer(&writer_shared, queue);
            // The checkpointer first: this connection closes last.
            let state = writer_shared
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(State { conn, checkpointer }) = state {
                drop(checkpointer);
                drop(conn);
            }
        })?;
    Ok((commands, writer, shared))
}

/// Connection settings for the writer (of the database at `path`), which also creates
/// the WAL.
pub(super) fn configure(conn: &Connection, path: &Path) -> StoreResult<()> {
    let failed = |e| StoreError::sqlite(format!("cannot open database {}", path.display()), e);
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(failed)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NotWal {
            path: path.to_path_buf(),
            mode,
        });
    }
    // In WAL mode, NORMAL syncs at checkpoints, not at each commit. A committed
    // transaction is in the WAL file (the OS has it) before commit returns, so it
    // survives the process being killed (kill -9), which is what Petit needs; only a
    // power loss or OS crash may lose the last commits, and never corrupts the file.
    let settings = || -> rusqlite::Result<()> {
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(BUSY_TIMEOUT)
    };
    settings().map_err(failed)?;
    conn.set_prepared_statement_cache_capacity(super::STATEMENT_CACHE);
    // Checkpoints happen beside the writer, not in its commits (checkpoint.rs).
    checkpoint::hook(conn);
    Ok(())
}

/// The writer thread's loop (see the module comment).
fn run_writer(shared: &Shared, queue: mpsc::Receiver<Command>) {
    // `recv` fails once every sender is gone and the queue is empty: the store was
    // dropped and everything sent before has been handled.
    while let Ok(first) = queue.recv() {
        let mut batch = VecDeque::from([first.0]);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(command) => batch.push_back(command.0),
                Err(_) => break,
            }
        }
        let count = batch.len();
        let mut guard = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(state) = guard.as_mut() else {
            // Not reached: the state goes only after this loop.
            return;
        };
        commit_batch(&mut state.conn, batch, &shared.commits);
        shared.in_flight.fetch_sub(count, Ordering::SeqCst);
        // After the answers: a checkpoint never delays them.
        checkpoint::after_commit(&state.conn, state.checkpointer.as_ref());
    }
}

/// One transaction for the whole batch; each command in its own savepoint so that one
/// bad command (a duplicate run id, say) fails alone. When the transaction itself
/// cannot be committed, every command fails with it.
fn commit_batch(
    conn: &mut Connection,
    mut pending: VecDeque<Box<dyn Pending>>,
    commits: &AtomicU64,
) {
    let mut applied = Vec::with_capacity(pending.len());
    match apply_all(conn, &mut pending, &mut applied) {
        Ok(()) => {
            // Counted before anyone hears of it.
            commits.fetch_add(1, Ordering::Relaxed);
            applied.into_iter().for_each(|done| done.answer());
        }
        Err(e) => {
            // A full or read-only disk is reported once by the store, not per batch.
            if crate::store::error::sqlite_unavailable(&e) {
                tracing::debug!(error = %e, "store batch failed");
            } else {
                tracing::error!(error = %e, "store batch failed");
            }
            let source = Arc::new(e);
            for done in applied {
                done.fail(Arc::clone(&source));
            }
            for command in pending {
                command.fail(Arc::clone(&source));
            }
        }
    }
}

/// [`commit_batch`] of `commands`, as the writer thread commits a batch (tests).
#[cfg(test)]
pub(super) fn commit_commands(conn: &mut Connection, commands: Vec<Command>, commits: &AtomicU64) {
    commit_batch(conn, commands.into_iter().map(|c| c.0).collect(), commits);
}

/// Applies `pending` in one transaction, moving each command to `applied` as it goes
/// (so that on failure, each is in exactly one of the two).
///
/// The transaction's own statements are prepared once and kept (`prepare_cached`),
/// and a lone command (every inline write, and most of the writer thread's batches)
/// has no savepoint: should it fail, the transaction is rolled back whole, which undoes
/// the same. Parsing `BEGIN`, `SAVEPOINT`, `RELEASE` and `COMMIT` anew for each write
/// was a fifth of a one-row commit's cost.
fn apply_all(
    conn: &mut Connection,
    pending: &mut VecDeque<Box<dyn Pending>>,
    applied: &mut Vec<Box<dyn Applied>>,
) -> rusqlite::Result<()> {
    run(conn, "BEGIN")?;
    match apply_each(conn, pending, applied) {
        Ok(true) => run(conn, "COMMIT").inspect_err(|_| rollback(conn)),
        Ok(false) => {
            rollback(conn);
            Ok(())
        }
        Err(e) => {
            rollback(conn);
            Err(e)
        }
    }
}

/// Each command of a batch in a savepoint of its own, so that one that fails is undone
/// alone. A command alone in its batch has none: should it fail, rolling the whole
/// transaction back undoes the same (`Ok(false)`: its answer is its own error).
fn apply_each(
    conn: &Connection,
    pending: &mut VecDeque<Box<dyn Pending>>,
    applied: &mut Vec<Box<dyn Applied>>,
) -> rusqlite::Result<bool> {
    let savepoints = pending.len() > 1;
    let mut succeeded = true;
    while let Some(command) = pending.pop_front() {
        if savepoints {
            if let Err(e) = run(conn, "SAVEPOINT command") {
                pending.push_front(command);
                return Err(e);
            }
        }
        let done = command.apply(conn);
        let ok = done.succeeded();
        applied.push(done);
        match (savepoints, ok) {
            (false, _) => succeeded = ok,
            (true, true) => run(conn, "RELEASE command")?,
            // Undone, and the savepoint released: the batch's transaction goes on.
            (true, false) => {
                run(conn, "ROLLBACK TO command")?;
                run(conn, "RELEASE command")?;
            }
        }
    }
    Ok(succeeded)
}

/// Runs a statement of no parameters and no rows, prepared once per connection.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Ends the transaction under way, if any (a failed `COMMIT` may leave it open).
fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        if let Err(e) = run(conn, "ROLLBACK") {
            tracing::error!(error = %e, "cannot roll back a store batch");
        }
    }
}

pub(super) fn upsert_jobs(conn: &Connection, jobs: &[JobRecord]) -> StoreResult<()> {
    let upsert = || -> rusqlite::Result<()> {
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
    };
    upsert().map_err(|e| StoreError::sqlite("cannot record jobs", e))
}

pub(super) fn create_run(conn: &Connection, run: &Run, tasks: &[TaskRun]) -> StoreResult<()> {
    check_new_run(run, tasks)?;
    insert_run(conn, run, tasks).map_err(|e| refused_run(run, e))
}

/// A new run inserted as claimed (`running` from `at`) with its tasks, `opening`'s
/// records in place of the pending ones they begin: one insert per row, where
/// inserting it queued, then claiming it and beginning its tasks, wrote each row (and
/// the run's entry in the status index) twice.
pub(super) fn create_claimed_run(
    conn: &Connection,
    mut run: Run,
    mut tasks: Vec<TaskRun>,
    opening: Vec<TaskRun>,
    at: DateTime<Utc>,
) -> StoreResult<Option<Run>> {
    check_new_run(&run, &tasks)?;
    for open in opening {
        match tasks.iter_mut().find(|t| t.task_id == open.task_id) {
            Some(slot) => *slot = open,
            None => {
                return Err(StoreError::TaskRunNotFound {
                    run_id: open.run_id,
                    task_id: open.task_id,
                })
            }
        }
    }
    run.status = RunStatus::Running;
    run.started_at = Some(at);
    insert_run(conn, &run, &tasks).map_err(|e| refused_run(&run, e))?;
    Ok(Some(run))
}

/// Why a new run could not be inserted: its id or its fire already stored, or a
/// failure.
fn refused_run(run: &Run, e: rusqlite::Error) -> StoreError {
    // The constraint's message names the columns of the index that refused the row.
    let refused_by = |columns: &str| match &e {
        rusqlite::Error::SqliteFailure(f, Some(message)) => {
            f.code == rusqlite::ErrorCode::ConstraintViolation && message.ends_with(columns)
        }
        _ => false,
    };
    match run.scheduled_for {
        _ if refused_by(": runs.id") => StoreError::RunExists {
            run_id: run.id.clone(),
        },
        Some(at) if refused_by(": runs.job_id, runs.scheduled_for") => StoreError::FireTaken {
            job_id: run.job_id.clone(),
            at,
        },
        _ => StoreError::sqlite(format!("cannot create run '{}'", run.id), e),
    }
}

fn insert_run(conn: &Connection, run: &Run, tasks: &[TaskRun]) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO runs ({RUN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
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
        run.definition,
        run.retry_of,
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

pub(super) fn update_run(conn: &Connection, run: &Run) -> StoreResult<()> {
    let changed = conn
        .prepare_cached(
            "UPDATE runs SET status = ?2, started_at = ?3, ended_at = ?4, error = ?5
             WHERE id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                run.id,
                run.status.as_str(),
                run.started_at.as_ref().map(time_to_sql),
                run.ended_at.as_ref().map(time_to_sql),
                run.error,
            ])
        })
        .map_err(|e| StoreError::sqlite(format!("cannot update run '{}'", run.id), e))?;
    if changed == 0 {
        return Err(StoreError::RunNotFound {
            run_id: run.id.clone(),
        });
    }
    Ok(())
}

pub(super) fn update_task_run(conn: &Connection, task: &TaskRun) -> StoreResult<()> {
    let changed = conn
        .prepare_cached(
            "UPDATE task_runs SET status = ?3, attempts = ?4, exit_code = ?5, started_at = ?6,
                 ended_at = ?7, error = ?8, outputs = ?9
             WHERE run_id = ?1 AND task_id = ?2",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
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
        })
        .map_err(|e| {
            let context = format!(
                "cannot update task run '{}' of run '{}'",
                task.task_id, task.run_id
            );
            StoreError::sqlite(context, e)
        })?;
    if changed == 0 {
        return Err(StoreError::TaskRunNotFound {
            run_id: task.run_id.clone(),
            task_id: task.task_id.clone(),
        });
    }
    Ok(())
}

/// Updates each of `tasks` in order, all of them even when one fails; the first
/// failure. The write's own result stays `Ok` (the caller wraps it), so that one
/// refused update does not roll the others back with its savepoint.
pub(super) fn update_task_runs(conn: &Connection, tasks: &[TaskRun]) -> StoreResult<()> {
    let mut first = Ok(());
    for task in tasks {
        let done = update_task_run(conn, task);
        if first.is_ok() {
            first = done;
        }
    }
    first
}

/// Deletes the log lines of runs that ended before `cutoff`; how many went.
pub(super) fn prune_logs(conn: &Connection, cutoff: DateTime<Utc>) -> StoreResult<u64> {
    log_chunks::prune(conn, &time_to_sql(&cutoff))
        .map(|n| n as u64)
        .map_err(|e| StoreError::sqlite("cannot prune logs", e))
}

/// Sets a key of the `settings` table.
pub(super) fn set_setting(conn: &Connection, key: &str, value: &str) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut stmt| stmt.execute([key, value]))
    .map(drop)
    .map_err(|e| StoreError::sqlite(format!("cannot record setting '{key}'"), e))
}

pub(super) fn prune_runs(
    conn: &Connection,
    job_id: &str,
    keep: Option<u32>,
    ended_before: Option<&str>,
    batch: usize,
) -> StoreResult<usize> {
    let failed = |e| StoreError::sqlite(format!("cannot prune the history of job '{job_id}'"), e);
    let ids: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM runs
             WHERE job_id = ?1 AND status NOT IN ('queued', 'running')
               AND ((?2 IS NOT NULL AND id NOT IN (
                        SELECT id FROM runs WHERE job_id = ?1
                        ORDER BY created_at DESC, id DESC LIMIT ?2))
                    OR (?3 IS NOT NULL AND ended_at < ?3))
             ORDER BY created_at, id LIMIT ?4",
        )
        .and_then(|mut stmt| {
            stmt.query_map(
                rusqlite::params![job_id, keep, ended_before, batch as i64],
                |row| row.get::<_, String>(0),
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(failed)?;
    for id in &ids {
        for sql in [
            "DELETE FROM log_chunks WHERE run_id = ?1",
            "DELETE FROM log_totals WHERE run_id = ?1",
            "DELETE FROM notifications WHERE run_id = ?1",
            "DELETE FROM task_runs WHERE run_id = ?1",
            "DELETE FROM runs WHERE id = ?1",
        ] {
            conn.prepare_cached(sql)
                .and_then(|mut stmt| stmt.execute([id]))
                .map_err(failed)?;
        }
    }
    Ok(ids.len())
}

pub(super) fn set_job_paused(
    conn: &Connection,
    job_id: &str,
    paused: bool,
    since: &str,
) -> StoreResult<()> {
    let done = if paused {
        conn.prepare_cached(
            "INSERT INTO paused_jobs (job_id, since) VALUES (?1, ?2)
             ON CONFLICT (job_id) DO NOTHING",
        )
        .and_then(|mut stmt| stmt.execute([job_id, since]))
    } else {
        conn.prepare_cached("DELETE FROM paused_jobs WHERE job_id = ?1")
            .and_then(|mut stmt| stmt.execute([job_id]))
    };
    done.map(drop)
        .map_err(|e| StoreError::sqlite(format!("cannot record the pause of job '{job_id}'"), e))
}

pub(super) fn append_audit(conn: &Connection, record: &AuditRecord) -> StoreResult<()> {
    conn.prepare_cached(
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
    .map_err(|e| StoreError::sqlite("cannot record the audit entry", e))
}

pub(super) fn append_notification(conn: &Connection, n: &NotificationRecord) -> StoreResult<()> {
    conn.prepare_cached(
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
    .map_err(|e| StoreError::sqlite("cannot record the notification", e))
}

/// The runs of a status oldest first (the queue, with `queued`), read in the order of
/// the index `runs_by_status_created` (migration 5).
pub(super) const BY_STATUS: &str =
    "SELECT id, job_id FROM runs WHERE status = ?1 ORDER BY created_at, id";
/// The runs of a status per job (the running ones), through the same index.
pub(super) const PER_JOB: &str =
    "SELECT job_id, COUNT(*) FROM runs WHERE status = ?1 GROUP BY job_id";

/// Makes a queued run `running` from `at`; `None` if it is not queued.
pub(super) fn claim_run(
    conn: &Connection,
    run_id: &str,
    at: DateTime<Utc>,
) -> StoreResult<Option<Run>> {
    let claimed = conn
        .prepare_cached(&format!(
            "UPDATE runs SET status = ?3, started_at = ?2 WHERE id = ?1 AND status = ?4
             RETURNING {RUN_COLUMNS}"
        ))
        .and_then(|mut stmt| {
            stmt.query_row(
                params![
                    run_id,
                    time_to_sql(&at),
                    RunStatus::Running.as_str(),
                    RunStatus::Queued.as_str()
                ],
                run_from_row,
            )
            .optional()
        })
        .map_err(|e| StoreError::sqlite(format!("cannot claim run '{run_id}'"), e))?;
    if claimed.is_none() {
        known_run(conn, run_id)?;
    }
    Ok(claimed)
}

/// Claims the oldest queued run the limits allow (see `Store::claim_next`).
pub(super) fn claim_next(
    conn: &Connection,
    limits: &ClaimLimits,
    at: DateTime<Utc>,
) -> StoreResult<Option<Run>> {
    let failed = |e| StoreError::sqlite("cannot claim the next run", e);
    let running: HashMap<String, usize> = conn
        .prepare_cached(PER_JOB)
        .and_then(|mut stmt| {
            stmt.query_map([RunStatus::Running.as_str()], |row| {
                Ok((row.get(0)?, row.get::<_, i64>(1)? as usize))
            })?
            .collect()
        })
        .map_err(failed)?;
    if running.values().sum::<usize>() >= limits.max_running {
        return Ok(None);
    }
    let has_room = |job_id: &str| {
        limits
            .per_job
            .get(job_id)
            .is_some_and(|&limit| running.get(job_id).copied().unwrap_or(0) < limit as usize)
    };
    // Every claimable job at its limit: nothing to look for in the queue.
    if !limits.per_job.keys().any(|job_id| has_room(job_id)) {
        return Ok(None);
    }
    let next = || -> rusqlite::Result<Option<String>> {
        let mut stmt = conn.prepare_cached(BY_STATUS)?;
        let mut rows = stmt.query([RunStatus::Queued.as_str()])?;
        while let Some(row) = rows.next()? {
            let job_id: String = row.get(1)?;
            if has_room(&job_id) {
                return row.get(0).map(Some);
            }
        }
        Ok(None)
    };
    match next().map_err(failed)? {
        Some(run_id) => claim_run(conn, &run_id, at),
        None => Ok(None),
    }
}

/// Makes a queued run `cancelled` at `at`, with its unsettled task runs; `None` if it
/// is not queued.
pub(super) fn cancel_queued(
    conn: &Connection,
    run_id: &str,
    at: DateTime<Utc>,
    message: &str,
) -> StoreResult<Option<Run>> {
    let cancelled = conn
        .prepare_cached(&format!(
            "UPDATE runs SET status = ?4, ended_at = ?2, error = ?3 WHERE id = ?1 AND status = ?5
             RETURNING {RUN_COLUMNS}"
        ))
        .and_then(|mut stmt| {
            stmt.query_row(
                params![
                    run_id,
                    time_to_sql(&at),
                    message,
                    RunStatus::Cancelled.as_str(),
                    RunStatus::Queued.as_str()
                ],
                run_from_row,
            )
            .optional()
        })
        .map_err(|e| StoreError::sqlite(format!("cannot cancel run '{run_id}'"), e))?;
    let Some(run) = cancelled else {
        known_run(conn, run_id)?;
        return Ok(None);
    };
    // A queued run's task runs are all pending; the filter keeps any the engine may
    // have settled before the claim as they are.
    let tasks = super::read::task_runs(conn, run_id)?;
    for mut task in tasks.into_iter().filter(|t| !t.status.is_terminal()) {
        task.status = TaskStatus::Cancelled;
        task.ended_at = Some(at);
        update_task_run(conn, &task)?;
    }
    Ok(Some(run))
}

/// `Ok` if the run is stored, else `RunNotFound`.
fn known_run(conn: &Connection, run_id: &str) -> StoreResult<()> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM runs WHERE id = ?1")
        .and_then(|mut stmt| stmt.exists([run_id]))
        .map_err(|e| StoreError::sqlite("cannot read run", e))?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::RunNotFound {
            run_id: run_id.to_owned(),
        })
    }
}
