//! The SQLite store: the schema and its migrations (`schema`), one writer thread that
//! commits queued writes in batches (`writer`), a small pool of read-only connections
//! used from `spawn_blocking` (`read`), and the conversion between rows and the model
//! (`rows`). No SQLite call ever runs on an async executor thread. This file is the
//! store's face: opening, closing, and the [`Store`] calls, each handed to the writer
//! or to a reader.

mod checkpoint;
mod read;
mod rows;
mod schema;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::Connection;

use self::read::ReadPool;
use self::writer::Command;
use super::log_chunks;
use super::{
    AuditRecord, ClaimLimits, JobRecord, LogBatch, LogLine, LogPage, LogPageLimit, LogStart,
    NotificationRecord, Run, RunPage, Store, StoreError, StoreOptions, StoreResult, TaskRun,
};
use crate::core::RunStatus;

#[cfg(test)]
pub(super) use self::schema::MIGRATIONS;

/// The `settings` key holding whether the scheduler is paused (`true` / `false`).
const SCHEDULER_PAUSED: &str = "scheduler_paused";
/// How long a connection waits for a lock (a checkpoint, another process) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements each connection keeps (rusqlite's default is 16): the writer
/// alone uses some 40 (runs, tasks, logs, audit, notifications, pruning), and one
/// evicted is parsed again at its next use.
const STATEMENT_CACHE: usize = 64;

/// A [`Store`] in a SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    /// `None` only while dropping: closing it is what stops the writer.
    commands: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    readers: Arc<ReadPool>,
    /// The write connection, shared with the writer thread (for inline writes).
    shared: Arc<writer::Shared>,
    /// Bytes of log kept per stream (see [`StoreOptions`]).
    log_cap: usize,
    /// Why writes fail now (a full or read-only file system), until one succeeds.
    failing: std::sync::Mutex<Option<String>>,
    /// The database file as opened (device, inode): a file deleted or replaced under
    /// the running daemon is noticed (its writes would go to an unlinked file).
    identity: Option<(u64, u64)>,
    /// When the file was last looked at, and what was wrong with it then: health asks
    /// on every call, the file system is asked at most once a second.
    gone: std::sync::Mutex<(Option<std::time::Instant>, Option<String>)>,
}

impl SqliteStore {
    /// How many transactions the writer has committed since the store opened (one per
    /// batch of writes that arrived together): what a run costs the disk, counted in
    /// tests and benches.
    pub fn commits(&self) -> u64 {
        self.shared.commits()
    }

    /// Opens (creating if needed, with its parent directory) the database at `path`
    /// and brings its schema up to date. This blocks briefly; it is meant for start-up.
    pub fn open(path: &Path, options: StoreOptions) -> StoreResult<SqliteStore> {
        let context = || format!("cannot open database {}", path.display());
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::private_files::create_dir_all(parent)
                .map_err(|e| StoreError::io(context(), e))?;
        }
        // Made 0600 before SQLite opens it: SQLite gives the `-wal` and `-shm` files it
        // creates the database's own mode.
        crate::private_files::create_file(path).map_err(|e| StoreError::io(context(), e))?;
        let mut conn = Connection::open(path).map_err(|e| StoreError::sqlite(context(), e))?;
        writer::configure(&conn, path)?;
        schema::migrate(&mut conn, path)?;

        let (commands, writer, shared) = writer::spawn(conn, path).map_err(|e| {
            StoreError::io(format!("{}: cannot start the writer thread", context()), e)
        })?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            commands: Some(commands),
            writer: Some(writer),
            readers: Arc::new(ReadPool::new(path.to_path_buf())),
            shared,
            log_cap: options.max_log_bytes_per_stream,
            failing: std::sync::Mutex::new(None),
            identity: file_identity(path),
            gone: std::sync::Mutex::new((None, None)),
        })
    }

    /// Why the database file is not the one open, if it is not (looked at no more
    /// than once a second; a change is logged once).
    fn file_gone(&self) -> Option<String> {
        const EVERY: std::time::Duration = std::time::Duration::from_secs(1);
        let opened = self.identity?;
        let mut gone = self.gone.lock().ok()?;
        if gone.0.is_some_and(|at| at.elapsed() < EVERY) {
            return gone.1.clone();
        }
        let problem = match file_identity(&self.path) {
            None => Some("was deleted"),
            Some(now) if now != opened => Some("was replaced by another file"),
            Some(_) => None,
        };
        let message = problem.map(|problem| {
            format!(
                "storage: database {} {problem} while petitd runs: what petitd writes now is lost when it stops; restore the file or restart petitd",
                self.path.display()
            )
        });
        if let (Some(message), None) = (&message, &gone.1) {
            tracing::error!("{message}");
        }
        *gone = (Some(std::time::Instant::now()), message.clone());
        message
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands a write to the writer thread and waits until it is committed.
    async fn write<T, F>(&self, write: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (command, committed) = Command::new(write);
        self.send(command, committed).await
    }

    /// A small write (a few rows of run or task state), committed on this thread when
    /// the writer thread has nothing queued or under way, else handed to it as
    /// [`Self::write`] does: a task's durable step without two thread wake-ups (see
    /// the writer's module comment). Never for log batches, which may take
    /// milliseconds: those stay off the runtime's threads.
    async fn write_small<T, F>(&self, write: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (command, mut committed) = Command::new(write);
        match self.shared.try_inline(command) {
            Ok(()) => {
                let result = committed
                    .try_recv()
                    .map_err(|_| StoreError::WriterStopped)?;
                self.note_write(&result);
                result
            }
            Err(command) => self.send(command, committed).await,
        }
    }

    async fn send<T>(
        &self,
        command: Command,
        committed: tokio::sync::oneshot::Receiver<StoreResult<T>>,
    ) -> StoreResult<T> {
        let commands = self.commands.as_ref().ok_or(StoreError::WriterStopped)?;
        self.shared.sending();
        if commands.send(command).is_err() {
            self.shared.unsent();
            return Err(StoreError::WriterStopped);
        }
        // A dropped reply sender means the writer died with our command in hand.
        let result = committed.await.map_err(|_| StoreError::WriterStopped)?;
        self.note_write(&result);
        result
    }

    /// Keeps [`Store::write_failure`] current: set by a write the file system refused,
    /// cleared by the next that succeeds; each change logged once (not once per write).
    fn note_write<T>(&self, result: &StoreResult<T>) {
        let Ok(mut failing) = self.failing.lock() else {
            return;
        };
        match result {
            Err(e) if e.is_unavailable() => {
                if failing.is_none() {
                    tracing::error!(db = %self.path.display(), "writes to the database fail: {e}; no new run starts until they work again");
                }
                *failing = Some(e.to_string());
            }
            Ok(_) if failing.is_some() => {
                tracing::info!(db = %self.path.display(), "writes to the database work again");
                *failing = None;
            }
            _ => {}
        }
    }

    /// Runs a query on a read-only connection, off the executor threads.
    async fn read<T, F>(&self, query: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.readers.read(query).await
    }

    #[cfg(test)]
    pub(super) async fn crash_writer(&self) -> StoreResult<()> {
        // Makes the writer thread panic, to test that callers get errors, not hangs.
        self.write(|_| -> StoreResult<()> { panic!("store writer crash requested by a test") })
            .await
    }

    /// The recorded jobs (the trait has no reader for them), for tests.
    #[cfg(test)]
    pub(super) async fn stored_jobs(&self) -> StoreResult<Vec<JobRecord>> {
        self.read(read::jobs).await
    }
}

impl Drop for SqliteStore {
    /// Closing the channel lets the writer commit what is queued and exit; waiting for
    /// it means that everything written before the drop is on disk once it returns
    /// (also at daemon exit, where a detached thread would be killed mid-batch).
    fn drop(&mut self) {
        // The idle readers close first, so that the writer's connection is the last
        // one: SQLite checkpoints the WAL and removes it (and the shared-memory file)
        // only when the last connection to close can write.
        self.readers.close_idle();
        self.commands = None;
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("the store writer thread panicked");
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn write_failure(&self) -> Option<String> {
        self.failing
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .or_else(|| self.file_gone())
    }

    async fn upsert_jobs(&self, jobs: Vec<JobRecord>) -> StoreResult<()> {
        self.write(move |conn| writer::upsert_jobs(conn, &jobs))
            .await
    }

    async fn create_run(&self, run: Run, tasks: Vec<TaskRun>) -> StoreResult<()> {
        self.write_small(move |conn| writer::create_run(conn, &run, &tasks))
            .await
    }

    async fn claim_run(&self, run_id: &str, at: DateTime<Utc>) -> StoreResult<Option<Run>> {
        let run_id = run_id.to_owned();
        self.write_small(move |conn| writer::claim_run(conn, &run_id, at))
            .await
    }

    async fn create_claimed_run(
        &self,
        run: Run,
        tasks: Vec<TaskRun>,
        opening: Vec<TaskRun>,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<Run>> {
        self.write_small(move |conn| writer::create_claimed_run(conn, run, tasks, opening, at))
            .await
    }

    async fn claim_next(
        &self,
        limits: &ClaimLimits,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<Run>> {
        let limits = limits.clone();
        self.write_small(move |conn| writer::claim_next(conn, &limits, at))
            .await
    }

    async fn queued_runs(&self) -> StoreResult<Vec<Run>> {
        self.read(read::queued_runs).await
    }

    async fn cancel_queued(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
        message: &str,
    ) -> StoreResult<Option<Run>> {
        let run_id = run_id.to_owned();
        let message = message.to_owned();
        self.write_small(move |conn| writer::cancel_queued(conn, &run_id, at, &message))
            .await
    }

    async fn update_run(&self, run: Run) -> StoreResult<()> {
        self.write_small(move |conn| writer::update_run(conn, &run))
            .await
    }

    async fn update_task_run(&self, task: TaskRun) -> StoreResult<()> {
        self.write_small(move |conn| writer::update_task_run(conn, &task))
            .await
    }

    async fn update_task_runs(&self, tasks: Vec<TaskRun>) -> StoreResult<()> {
        self.write_small(move |conn| Ok(writer::update_task_runs(conn, &tasks)))
            .await?
    }

    async fn finish_run(&self, run: Run, tasks: Vec<TaskRun>) -> StoreResult<()> {
        self.write_small(move |conn| {
            let tasks = writer::update_task_runs(conn, &tasks);
            Ok(tasks.and(writer::update_run(conn, &run)))
        })
        .await?
    }

    async fn append_logs(&self, lines: Vec<LogLine>) -> StoreResult<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let cap = self.log_cap;
        self.write(move |conn| log_chunks::append(conn, &lines, cap))
            .await
    }

    async fn append_log_batch(&self, batch: Arc<LogBatch>) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let cap = self.log_cap;
        self.write(move |conn| log_chunks::append_batch(conn, &batch, cap))
            .await
    }

    async fn prune_logs(&self, cutoff: DateTime<Utc>) -> StoreResult<u64> {
        self.write(move |conn| writer::prune_logs(conn, cutoff))
            .await
    }

    async fn get_run(&self, run_id: &str) -> StoreResult<Option<Run>> {
        let run_id = run_id.to_owned();
        self.read(move |conn| read::run(conn, &run_id)).await
    }

    async fn list_runs(&self, job_id: Option<&str>, page: RunPage) -> StoreResult<Vec<Run>> {
        let job_id = job_id.map(str::to_owned);
        self.read(move |conn| read::runs(conn, job_id.as_deref(), &page))
            .await
    }

    async fn last_run(&self, job_id: &str, statuses: &[RunStatus]) -> StoreResult<Option<Run>> {
        let job_id = job_id.to_owned();
        let statuses = statuses.to_vec();
        self.read(move |conn| read::last_run(conn, &job_id, &statuses))
            .await
    }

    async fn last_runs(&self, job_ids: &[String]) -> StoreResult<HashMap<String, Run>> {
        let job_ids = job_ids.to_vec();
        // One trip to a read connection.
        self.read(move |conn| read::last_runs(conn, &job_ids)).await
    }

    async fn task_runs(&self, run_id: &str) -> StoreResult<Vec<TaskRun>> {
        let run_id = run_id.to_owned();
        self.read(move |conn| read::task_runs(conn, &run_id)).await
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
        self.read(move |conn| read::log_page(conn, &run_id, task_id.as_deref(), start, limit))
            .await
    }

    async fn set_scheduler_paused(&self, paused: bool) -> StoreResult<()> {
        self.write(move |conn| writer::set_setting(conn, SCHEDULER_PAUSED, &paused.to_string()))
            .await
    }

    async fn scheduler_paused(&self) -> StoreResult<bool> {
        self.read(read::scheduler_paused).await
    }

    async fn set_job_paused(&self, job_id: &str, paused: bool) -> StoreResult<()> {
        let job_id = job_id.to_owned();
        let since = rows::time_to_sql(&Utc::now());
        self.write(move |conn| writer::set_job_paused(conn, &job_id, paused, &since))
            .await
    }

    async fn fires_between(
        &self,
        job_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<DateTime<Utc>>> {
        let job_id = job_id.to_owned();
        let (from, to) = (rows::time_to_sql(&from), rows::time_to_sql(&to));
        self.read(move |conn| read::fires_between(conn, &job_id, &from, &to))
            .await
    }

    async fn last_fire(&self, job_id: &str) -> StoreResult<Option<DateTime<Utc>>> {
        let job_id = job_id.to_owned();
        self.read(move |conn| read::last_fire(conn, &job_id)).await
    }

    async fn prune_runs(
        &self,
        job_id: &str,
        keep: Option<u32>,
        ended_before: Option<DateTime<Utc>>,
        batch: usize,
    ) -> StoreResult<usize> {
        let job_id = job_id.to_owned();
        let cutoff = ended_before.map(|t| rows::time_to_sql(&t));
        self.write(move |conn| writer::prune_runs(conn, &job_id, keep, cutoff.as_deref(), batch))
            .await
    }

    async fn paused_jobs(&self) -> StoreResult<Vec<String>> {
        self.read(read::paused_jobs).await
    }

    async fn append_audit(&self, record: AuditRecord) -> StoreResult<()> {
        self.write(move |conn| writer::append_audit(conn, &record))
            .await
    }

    async fn append_notification(&self, record: NotificationRecord) -> StoreResult<()> {
        self.write(move |conn| writer::append_notification(conn, &record))
            .await
    }

    async fn notifications(&self, run_id: &str) -> StoreResult<Vec<NotificationRecord>> {
        let run_id = run_id.to_owned();
        self.read(move |conn| read::notifications(conn, &run_id))
            .await
    }

    async fn list_audit(&self, page: RunPage) -> StoreResult<Vec<AuditRecord>> {
        self.read(move |conn| read::audit(conn, &page)).await
    }

    async fn unfinished_runs(&self) -> StoreResult<Vec<Run>> {
        self.read(read::unfinished_runs).await
    }
}

/// A file's (device, inode), or `None` if it does not exist.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.dev(), meta.ino()))
}
