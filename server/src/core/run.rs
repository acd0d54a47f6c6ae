//! The runtime model: a run of a job, the runs of its tasks, and their output lines, as
//! the engine, the executor, the store and the API all see them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::core::{LogStream, RunStatus, TaskStatus, TriggerReason};

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
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
    /// The definition the run was queued with (the job's content hash): a run queued
    /// before a reload finishes on the definition it started with.
    pub definition: Option<String>,
    /// For a re-run (`petitctl rerun`): the run it repeats.
    pub retry_of: Option<String>,
}

impl Run {
    /// A queued run with no parameters and nothing else said about it: the fields a
    /// caller does not set (`Run { status, ..Run::queued(...) }`).
    pub fn queued(
        id: impl Into<String>,
        job_id: impl Into<String>,
        trigger: TriggerReason,
        created_at: DateTime<Utc>,
    ) -> Run {
        Run {
            id: id.into(),
            job_id: job_id.into(),
            status: RunStatus::Queued,
            trigger,
            params: BTreeMap::new(),
            created_at,
            started_at: None,
            ended_at: None,
            error: None,
            triggered_by: None,
            scheduled_for: None,
            definition: None,
            retry_of: None,
        }
    }
}

/// One task of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRun {
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

impl TaskRun {
    /// A task of a new run, not started yet.
    pub fn pending(run_id: &str, task_id: &str) -> TaskRun {
        TaskRun {
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
pub struct LogLine {
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
