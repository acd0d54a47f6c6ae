//! Where runs, task runs, outputs and logs are kept: the `Store` trait, with a SQLite
//! implementation (the default, a file) and an in-memory one (tests, `--in-memory`).
//! Store calls never block the async executor.

mod lock;
mod log_chunks;
mod memory;
mod sqlite;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

pub use lock::{beside, DataLock, LockError};
pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use crate::core::{LogStream, RunStatus, TaskStatus, TriggerReason};

/// A storage failure. Always an internal error for API callers.
#[derive(Debug, thiserror::Error)]
#[error("storage: {0}")]
pub struct StoreError(pub String);

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
fn check_new_run(run: &RunRecord, tasks: &[TaskRunRecord]) -> StoreResult<()> {
    let mut seen = std::collections::HashSet::new();
    for task in tasks {
        if task.run_id != run.id {
            return Err(StoreError(format!(
                "task run '{}' names run '{}', not the run being created '{}'",
                task.task_id, task.run_id, run.id
            )));
        }
        if !seen.insert(task.task_id.as_str()) {
            return Err(StoreError(format!(
                "run '{}' lists task '{}' twice",
                run.id, task.task_id
            )));
        }
    }
    Ok(())
}

/// The refusal of a second run for one fire instant, the same from every store.
fn fire_taken(job_id: &str, at: DateTime<Utc>) -> StoreError {
    StoreError(format!(
        "job '{job_id}' already has a run for the fire at {}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    ))
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

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub id: String,
    pub job_id: String,
    pub status: RunStatus,
    pub trigger: TriggerReason,
    pub params: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// The name of the token whose call started the run (`anonymous` without
    /// authentication); `None` for scheduled runs.
    pub triggered_by: Option<String>,
    /// The schedule instant a scheduled run stands for. A store holds at most one run
    /// per (job, instant): a second insert is refused, so a fire cannot run twice.
    pub scheduled_for: Option<DateTime<Utc>>,
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

/// One task of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRunRecord {
    pub run_id: String,
    pub task_id: String,
    pub status: TaskStatus,
    /// Attempts made so far (0 = not started).
    pub attempts: u32,
    pub exit_code: Option<i32>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub outputs: BTreeMap<String, String>,
}

impl TaskRunRecord {
    /// A task of a new run, not started yet.
    pub fn pending(run_id: &str, task_id: &str) -> TaskRunRecord {
        TaskRunRecord {
            run_id: run_id.to_string(),
            task_id: task_id.to_string(),
            status: TaskStatus::Pending,
            attempts: 0,
            exit_code: None,
            started_at: None,
            ended_at: None,
            error: None,
            outputs: BTreeMap::new(),
        }
    }
}

/// One line of a task's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub run_id: String,
    /// Position of the line among all lines of this task run (all attempts, both
    /// streams), from 1. Followers use it to skip lines they already have.
    pub seq: u64,
    pub task_id: String,
    pub attempt: u32,
    pub stream: LogStream,
    pub line: String,
    pub time: DateTime<Utc>,
}

/// Which page of a job's runs to read: newest first.
#[derive(Debug, Clone, Default)]
pub struct RunPage {
    /// At most this many runs.
    pub limit: usize,
    /// Skip this many of the newest runs.
    pub offset: usize,
}

/// Persistence of Petit's history. Every write is durable when its future completes.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records the jobs of the current job directory.
    async fn upsert_jobs(&self, jobs: Vec<JobRecord>) -> StoreResult<()>;

    /// Inserts a new run with its task runs (all pending), atomically.
    async fn create_run(&self, run: RunRecord, tasks: Vec<TaskRunRecord>) -> StoreResult<()>;

    /// Replaces a run's mutable fields (status, times, error).
    async fn update_run(&self, run: RunRecord) -> StoreResult<()>;

    /// Replaces a task run's mutable fields (status, attempts, exit code, times,
    /// error, outputs).
    async fn update_task_run(&self, task: TaskRunRecord) -> StoreResult<()>;

    /// Appends log lines, keeping at most `max_bytes_per_stream` bytes of each
    /// (run, task, stream): when over, the oldest lines are dropped (the tail is kept).
    async fn append_logs(&self, lines: Vec<LogRecord>) -> StoreResult<()>;

    async fn get_run(&self, run_id: &str) -> StoreResult<Option<RunRecord>>;

    /// Runs of a job (or of every job when `job_id` is `None`), newest first.
    async fn list_runs(&self, job_id: Option<&str>, page: RunPage) -> StoreResult<Vec<RunRecord>>;

    /// The newest run of a job whose status is one of `statuses` (any when empty).
    async fn last_run(
        &self,
        job_id: &str,
        statuses: &[RunStatus],
    ) -> StoreResult<Option<RunRecord>>;

    /// The newest run of each of `job_ids` that has one, in one call (job lists and
    /// snapshots show a last run per job).
    async fn last_runs(&self, job_ids: &[String]) -> StoreResult<HashMap<String, RunRecord>>;

    /// A run's task runs, in the order they were created.
    async fn task_runs(&self, run_id: &str) -> StoreResult<Vec<TaskRunRecord>>;

    /// A run's stored log lines (of one task, or of all when `task_id` is `None`), in
    /// the order they were written.
    async fn logs(&self, run_id: &str, task_id: Option<&str>) -> StoreResult<Vec<LogRecord>>;

    /// Deletes the log lines of runs that ended before `cutoff` (log retention);
    /// returns how many lines went. Runs and task runs are kept.
    async fn prune_logs(&self, cutoff: DateTime<Utc>) -> StoreResult<u64>;

    /// Runs whose status is `pending` or `running` (left so by a crash, at start-up).
    async fn unfinished_runs(&self) -> StoreResult<Vec<RunRecord>>;

    /// Records whether the scheduler is paused, so that a paused daemon comes back
    /// paused after a restart or a crash.
    async fn set_scheduler_paused(&self, paused: bool) -> StoreResult<()>;

    /// Whether the scheduler was last left paused (`false` on a new database).
    async fn scheduler_paused(&self) -> StoreResult<bool>;

    /// Adds an entry to the audit record.
    async fn append_audit(&self, record: AuditRecord) -> StoreResult<()>;

    /// Audit entries, newest first.
    async fn list_audit(&self, page: RunPage) -> StoreResult<Vec<AuditRecord>>;

    /// The last `n` lines of one stream of a task run (all attempts), oldest first.
    async fn log_tail(
        &self,
        run_id: &str,
        task_id: &str,
        stream: LogStream,
        n: usize,
    ) -> StoreResult<Vec<String>> {
        let lines = self.logs(run_id, Some(task_id)).await?;
        let mut tail: Vec<String> = lines
            .into_iter()
            .rev()
            .filter(|l| l.stream == stream)
            .take(n)
            .map(|l| l.line)
            .collect();
        tail.reverse();
        Ok(tail)
    }

    /// Records one delivery attempt of a notification.
    async fn append_notification(&self, record: NotificationRecord) -> StoreResult<()>;

    /// The delivery attempts for a run, oldest first.
    async fn notifications(&self, run_id: &str) -> StoreResult<Vec<NotificationRecord>>;
}
