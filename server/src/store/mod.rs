//! Where runs, task runs, outputs and logs are kept, and the run queue: the `Store`
//! trait, with a SQLite implementation (the default, a file), a PostgreSQL one (the
//! shared store of a cluster, which also implements [`ClusterStore`]) and an in-memory
//! one (tests, `--in-memory`). Store calls never block the async executor.
//!
//! The queue: a new run is inserted `queued` (one per fire instant, whoever tries) and
//! leaves the queue by a claim, which makes it `running` atomically, so two claimers
//! (or a claim and a cancel) can never both win. `claim_next` also checks the limits
//! in the same step, as a shared store (`SELECT … FOR UPDATE SKIP LOCKED`) would.

mod cluster;
mod error;
mod lock;
mod log_chunks;
mod memory;
mod migrate;
mod open;
mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use cluster::{ClusterStore, Lease, NodeInfo, NodeRecord, Note, NoteKind};
pub use error::StoreError;
pub use lock::{beside, DataLock, LockError};
pub use memory::MemoryStore;
pub use migrate::{migrate, Migrated};
pub use open::{Opened, Storage};
pub use postgres::{redact as redact_database_url, PostgresConfig, PostgresStore};
pub use sqlite::SqliteStore;

pub use crate::core::{LogBatch, LogLine, Run, TaskRun};
use crate::core::{LogStream, RunStatus};

pub type StoreResult<T> = Result<T, StoreError>;

/// Limits shared by every store implementation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Bytes of log text kept per (run, task, stream), counted as the UTF-8 length of
    /// the lines; see [`Store::append_logs`]. Lines are dropped whole, oldest first, so
    /// a single line longer than this is not kept at all.
    pub max_log_bytes_per_stream: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_log_bytes_per_stream: 1024 * 1024,
        }
    }
}

/// Refuses a new run whose task runs name another run or repeat a task, so that both
/// stores reject the same input with the same message.
fn check_new_run(run: &Run, tasks: &[TaskRun]) -> StoreResult<()> {
    let mut seen = std::collections::HashSet::new();
    for task in tasks {
        if task.run_id != run.id {
            return Err(StoreError::Invalid(format!(
                "task run '{}' names run '{}', not the run being created '{}'",
                task.task_id, task.run_id, run.id
            )));
        }
        if !seen.insert(task.task_id.as_str()) {
            return Err(StoreError::Invalid(format!(
                "run '{}' lists task '{}' twice",
                run.id, task.task_id
            )));
        }
    }
    Ok(())
}

/// A job as last loaded (kept so that history outlives a job file's removal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub id: String,
    pub name: String,
    pub source: String,
    pub schedule: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// One mutating API call (trigger, cancel, pause, resume): who made it, on what, and
/// how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub time: DateTime<Utc>,
    /// The token's name (`anonymous` without authentication).
    pub actor: String,
    /// The RPC's name (`TriggerJob`).
    pub call: String,
    /// What it acted on: a job id, a run id, or empty (the scheduler).
    pub target: String,
    /// The gRPC code it ended with (`OK`, `NOT_FOUND`...).
    pub outcome: String,
    /// The error's message, or a note (the run it started).
    pub message: String,
}

/// One attempt to deliver a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRecord {
    /// Empty for a skipped fire (no run).
    pub run_id: String,
    pub job_id: String,
    pub time: DateTime<Utc>,
    /// What it told: `failure`, `success`, `retry`, `skipped_fire`.
    pub event: String,
    /// The target's label (`webhook https://host`, never its secrets).
    pub target: String,
    /// From 1.
    pub attempt: u32,
    /// `delivered`, or `failed` (another attempt may follow).
    pub outcome: String,
    /// The HTTP status, the command's exit, or the error.
    pub message: String,
}

/// Where a line sits in its run's log: the append that brought it (`batch`, counted
/// across the whole store) and its place among that append's lines (`pos`). Positions
/// order lines as they were written, across tasks and streams, and stay put when older
/// lines are trimmed or pruned, so a page that starts at a position is stable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    pub batch: u64,
    pub pos: u64,
}

impl LogPosition {
    /// The position right after this one: where the lines after it start.
    pub fn successor(self) -> LogPosition {
        LogPosition {
            batch: self.batch,
            pos: self.pos.saturating_add(1),
        }
    }
}

/// Where a page of log lines starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStart {
    /// At the oldest line kept.
    First,
    /// At the first line kept at or after this position (a previous page's `next`).
    At(LogPosition),
    /// At the N-th line from the end (at the first line when there are fewer).
    Tail(usize),
}

/// How much one page may hold. A page always holds at least one line when any is
/// left, even one longer than `bytes`, so paging always moves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPageLimit {
    /// At most this many lines.
    pub lines: usize,
    /// At most this many bytes of line text (UTF-8 lengths summed).
    pub bytes: usize,
}

/// One page of a log, oldest line first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// The position of the page's last line (`None` for an empty page).
    pub last: Option<LogPosition>,
    /// Where the next page starts; `None` when this page ends with the last line kept.
    pub next: Option<LogPosition>,
}

/// What [`Store::claim_next`] may claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimLimits {
    /// Most runs `running` at once in total, every job counted.
    pub max_running: usize,
    /// Each claimable job's `max_concurrency`: most runs of it `running` at once. A job
    /// absent here is never claimed (unknown to the engine, or paused).
    pub per_job: HashMap<String, u32>,
}

/// Which page of a job's runs to read: newest first.
#[derive(Debug, Clone, Default)]
pub struct RunPage {
    /// At most this many runs.
    pub limit: usize,
    /// Skip this many of the newest runs (after `after`, when set).
    pub offset: usize,
    /// Only the runs older than this one, in the newest-first order (the last run of the
    /// previous page): a seek in the index, so a page deep in a long history costs what
    /// the first does, where an offset costs every run it skips. Audit pages ignore it.
    pub after: Option<RunKey>,
}

/// Where a run sits in the newest-first order of runs (by `created_at`, then id): what
/// a page that starts after it seeks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunKey {
    pub created_at: DateTime<Utc>,
    pub id: String,
}

impl RunKey {
    pub fn of(run: &Run) -> RunKey {
        RunKey {
            created_at: run.created_at,
            id: run.id.clone(),
        }
    }
}

/// Persistence of Petit's history. Every write is durable when its future completes.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records the jobs of the current job directory.
    async fn upsert_jobs(&self, jobs: Vec<JobRecord>) -> StoreResult<()>;

    /// Inserts a new run with its task runs, atomically, as given (a new run is
    /// `queued`, its task runs `pending`). Refused: a second run for one
    /// `(job_id, scheduled_for)` ([`StoreError::FireTaken`], for as long as the first is
    /// kept, whatever its status; runs without `scheduled_for` never conflict), a run id
    /// already stored ([`StoreError::RunExists`]), task runs of another run or a task
    /// twice ([`StoreError::Invalid`]). Nothing of a refused run is stored.
    async fn create_run(&self, run: Run, tasks: Vec<TaskRun>) -> StoreResult<()>;

    /// Claims one run: if it is `queued`, makes it `running` with `started_at = at` and
    /// returns it so; `None` if it is no longer queued (claimed or cancelled meanwhile,
    /// ended); [`StoreError::RunNotFound`] for an unknown run. Atomic: of two claims,
    /// or a claim and a [`Store::cancel_queued`], exactly one wins. Checks no limit.
    async fn claim_run(&self, run_id: &str, at: DateTime<Utc>) -> StoreResult<Option<Run>>;

    /// Claims the next run the limits allow, in one atomic step: the oldest queued run
    /// (by `created_at`, then id) whose job is in `limits.per_job` and has fewer runs
    /// `running` than its limit, made `running` as by [`Store::claim_run`]; `None` when
    /// `limits.max_running` runs or more are running, or no queued run qualifies. A
    /// job at its limit does not hold up the runs of other jobs queued after its own.
    async fn claim_next(&self, limits: &ClaimLimits, at: DateTime<Utc>)
        -> StoreResult<Option<Run>>;

    /// Every queued run, oldest first (by `created_at`, then id): the queue, as an
    /// engine reloads it at start.
    async fn queued_runs(&self) -> StoreResult<Vec<Run>>;

    /// Cancels a run that has not started: if it is still `queued`, makes it
    /// `cancelled` (`ended_at = at`, `error = message`) and its unsettled task runs
    /// `cancelled` (`ended_at = at`), atomically, and returns the run; `None` if it is no
    /// longer queued (claimed meanwhile: cancel it as a running run);
    /// [`StoreError::RunNotFound`] for an unknown run.
    async fn cancel_queued(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
        message: &str,
    ) -> StoreResult<Option<Run>>;

    /// [`Store::create_run`], then [`Store::claim_run`] of that run at `at` and, once
    /// claimed, [`Store::update_task_runs`] with `opening` (the starts of the tasks
    /// the run begins with): for a run that may start the moment it is queued, in one
    /// write where the store can. The claimed run, or `None` when it was created but
    /// stays queued (the claim failed: the queue claims it later, and `opening` was
    /// not stored); an error when it was not created.
    async fn create_claimed_run(
        &self,
        run: Run,
        tasks: Vec<TaskRun>,
        opening: Vec<TaskRun>,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<Run>> {
        let run_id = run.id.clone();
        self.create_run(run, tasks).await?;
        let claimed = self.claim_run(&run_id, at).await.ok().flatten();
        if claimed.is_some() && !opening.is_empty() {
            self.update_task_runs(opening).await?;
        }
        Ok(claimed)
    }

    /// Replaces a run's mutable fields (status, times, error).
    async fn update_run(&self, run: Run) -> StoreResult<()>;

    /// Replaces a task run's mutable fields (status, attempts, exit code, times,
    /// error, outputs).
    async fn update_task_run(&self, task: TaskRun) -> StoreResult<()>;

    /// As [`Store::update_task_run`] for each of `tasks`, in order; each is applied
    /// even when another fails, and the first failure is returned. A store with a
    /// writer of its own applies them in one write (the executor stores a task's end
    /// with the starts of the tasks it lets run, one trip where there were two).
    async fn update_task_runs(&self, tasks: Vec<TaskRun>) -> StoreResult<()> {
        let mut first = Ok(());
        for task in tasks {
            let done = self.update_task_run(task).await;
            if first.is_ok() {
                first = done;
            }
        }
        first
    }

    /// A run's end: `tasks` (the last task ends, in order) then the run, as
    /// [`Store::update_task_runs`] and [`Store::update_run`] would; the first failure
    /// is returned. One write where the store can.
    async fn finish_run(&self, run: Run, tasks: Vec<TaskRun>) -> StoreResult<()> {
        let tasks = match tasks.is_empty() {
            true => Ok(()),
            false => self.update_task_runs(tasks).await,
        };
        let run = self.update_run(run).await;
        tasks.and(run)
    }

    /// Appends log lines, keeping at most `max_bytes_per_stream` bytes of each
    /// (run, task, stream): when over, the oldest lines are dropped (the tail is kept).
    async fn append_logs(&self, lines: Vec<LogLine>) -> StoreResult<()>;

    /// Appends a batch of lines as the executor captured them: stored exactly as
    /// [`Store::append_logs`] of its lines would store them (the same lines kept, at the
    /// same positions). A store may write the batch as it is, without a string per line.
    async fn append_log_batch(&self, batch: Arc<LogBatch>) -> StoreResult<()> {
        self.append_logs(batch.to_lines()).await
    }

    async fn get_run(&self, run_id: &str) -> StoreResult<Option<Run>>;

    /// Runs of a job (or of every job when `job_id` is `None`), newest first.
    async fn list_runs(&self, job_id: Option<&str>, page: RunPage) -> StoreResult<Vec<Run>>;

    /// The newest run of a job whose status is one of `statuses` (any when empty).
    async fn last_run(&self, job_id: &str, statuses: &[RunStatus]) -> StoreResult<Option<Run>>;

    /// The newest run of each of `job_ids` that has one, in one call (job lists and
    /// snapshots show a last run per job).
    async fn last_runs(&self, job_ids: &[String]) -> StoreResult<HashMap<String, Run>>;

    /// A run's task runs, in the order they were created.
    async fn task_runs(&self, run_id: &str) -> StoreResult<Vec<TaskRun>>;

    /// One page of a run's stored log lines (of one task, or of all when `task_id` is
    /// `None`), in the order they were written. Costs time and memory in proportion to
    /// the page (and to one append's lines), never to the whole log. An unknown run or
    /// task, or a start past the end, is an empty page.
    async fn log_page(
        &self,
        run_id: &str,
        task_id: Option<&str>,
        start: LogStart,
        limit: LogPageLimit,
    ) -> StoreResult<LogPage>;

    /// Every stored log line of a run (or of one task), read page by page but returned
    /// whole: for tests and small logs only. Serving code reads with [`Store::log_page`].
    async fn logs(&self, run_id: &str, task_id: Option<&str>) -> StoreResult<Vec<LogLine>> {
        let limit = LogPageLimit {
            lines: 10_000,
            bytes: 4 << 20,
        };
        let mut lines = Vec::new();
        let mut start = LogStart::First;
        loop {
            let page = self.log_page(run_id, task_id, start, limit).await?;
            lines.extend(page.lines);
            match page.next {
                Some(next) => start = LogStart::At(next),
                None => return Ok(lines),
            }
        }
    }

    /// Deletes the log lines of runs that ended before `cutoff` (log retention);
    /// returns how many lines went. Runs and task runs are kept.
    async fn prune_logs(&self, cutoff: DateTime<Utc>) -> StoreResult<u64>;

    /// Runs whose status is `queued` or `running` (left so by a crash, at start-up),
    /// oldest first.
    async fn unfinished_runs(&self) -> StoreResult<Vec<Run>>;

    /// Records whether the scheduler is paused, so that a paused daemon comes back
    /// paused after a restart or a crash.
    async fn set_scheduler_paused(&self, paused: bool) -> StoreResult<()>;

    /// Whether the scheduler was last left paused (`false` on a new database).
    async fn scheduler_paused(&self) -> StoreResult<bool>;

    /// The fire instants in `[from, to]` that already have a run of `job_id`, oldest
    /// first (a backfill leaves them alone).
    async fn fires_between(
        &self,
        job_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<DateTime<Utc>>>;

    /// The latest fire instant that has a run of `job_id` (where a catch-up starts).
    async fn last_fire(&self, job_id: &str) -> StoreResult<Option<DateTime<Utc>>>;

    /// Deletes, oldest first and at most `batch` of them, the ended runs of `job_id`
    /// beyond the newest `keep` or that ended before `ended_before`, with their task
    /// runs, logs and notifications; one short transaction. Queued and running runs
    /// are never deleted. Returns how many runs went (fewer than `batch`: done).
    async fn prune_runs(
        &self,
        job_id: &str,
        keep: Option<u32>,
        ended_before: Option<DateTime<Utc>>,
        batch: usize,
    ) -> StoreResult<usize>;

    /// Records whether one job is paused (its scheduled fires stop), by job id.
    async fn set_job_paused(&self, job_id: &str, paused: bool) -> StoreResult<()>;

    /// The ids of the jobs left paused, sorted.
    async fn paused_jobs(&self) -> StoreResult<Vec<String>>;

    /// Adds an entry to the audit record.
    async fn append_audit(&self, record: AuditRecord) -> StoreResult<()>;

    /// Audit entries, newest first.
    async fn list_audit(&self, page: RunPage) -> StoreResult<Vec<AuditRecord>>;

    /// The last `n` lines (at most) of one stream of a task run (all attempts), oldest
    /// first.
    async fn log_tail(
        &self,
        run_id: &str,
        task_id: &str,
        stream: LogStream,
        n: usize,
    ) -> StoreResult<Vec<String>> {
        // Bounded: the last lines of both streams, of which this stream's are kept (a
        // task that wrote far more to the other stream lately shows fewer).
        let limit = LogPageLimit {
            lines: n.saturating_mul(25).clamp(1, 10_000),
            bytes: 1 << 20,
        };
        let page = self
            .log_page(run_id, Some(task_id), LogStart::Tail(limit.lines), limit)
            .await?;
        let mut tail: Vec<String> = page
            .lines
            .into_iter()
            .rev()
            .filter(|l| l.stream == stream)
            .take(n)
            .map(|l| l.line)
            .collect();
        tail.reverse();
        Ok(tail)
    }

    /// Why writes fail now, if they do: the file system is full or read-only, the
    /// database is out of reach. Set by a write that failed so and cleared by the next
    /// that succeeds; health reports it.
    fn write_failure(&self) -> Option<String> {
        None
    }

    /// Records one delivery attempt of a notification.
    async fn append_notification(&self, record: NotificationRecord) -> StoreResult<()>;

    /// The delivery attempts for a run, oldest first.
    async fn notifications(&self, run_id: &str) -> StoreResult<Vec<NotificationRecord>>;
}
