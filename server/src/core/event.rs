//! Events: every state change of the engine is one [`Event`], whose variant carries
//! exactly its data. Its [`EventKind`] (the contract's event type) follows from that
//! data in one place: a run event's kind from the run's status, a task event's from
//! the task run's.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::core::log_batch::LogBatch;
use crate::core::{Run, RunStatus, TaskRun, TaskStatus};

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A run was stored and waits for a slot.
    RunQueued,
    RunStarted,
    RunSucceeded,
    RunFailed,
    RunCancelled,
    RunInterrupted,
    TaskStarted,
    TaskSucceeded,
    TaskFailed,
    TaskRetrying,
    TaskSkipped,
    TaskTimedOut,
    TaskCancelled,
    TaskInterrupted,
    LogLine,
    SchedulerPaused,
    SchedulerResumed,
    /// One job's scheduled fires stopped (`PauseJob`) or started again.
    JobPaused,
    JobResumed,
    /// A fire or trigger did not start a run (overlap, unmet dependency).
    JobSkipped,
    /// An attempt to deliver a notification, delivered or not (the message says).
    Notification,
}

/// One state change, with the state it produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A run changed: queued, started or ended (its status says which).
    Run { time: DateTime<Utc>, run: Run },
    /// A task run changed (its status says how), with why when there is something to
    /// say (a skip's reason, a retry's error).
    Task {
        time: DateTime<Utc>,
        job_id: String,
        task: TaskRun,
        message: Option<String>,
    },
    /// Lines of a task's output, as one batch (they were stored together and carry its
    /// time); the contract sends one `LOG_LINE` event per line.
    Log {
        job_id: String,
        batch: Arc<LogBatch>,
    },
    /// The scheduler was paused or resumed.
    Scheduler { time: DateTime<Utc>, paused: bool },
    /// One job was paused or resumed.
    JobPause {
        time: DateTime<Utc>,
        job_id: String,
        paused: bool,
    },
    /// A fire or trigger did not start a run: why, as one word (`concurrency`,
    /// `dependency`...) and as a sentence.
    Skipped {
        time: DateTime<Utc>,
        job_id: String,
        reason: &'static str,
        message: String,
    },
    /// An attempt to deliver a notification about a run (empty for a skipped fire).
    Notification {
        time: DateTime<Utc>,
        job_id: String,
        run_id: String,
        message: String,
    },
}

impl Event {
    pub fn of_run(run: Run) -> Event {
        Event::Run {
            time: Utc::now(),
            run,
        }
    }

    pub fn of_task(job_id: &str, task: TaskRun, message: Option<String>) -> Event {
        Event::Task {
            time: Utc::now(),
            job_id: job_id.to_string(),
            task,
            message,
        }
    }

    /// The contract's type of this event.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Run { run, .. } => match run.status {
                RunStatus::Queued => EventKind::RunQueued,
                RunStatus::Running => EventKind::RunStarted,
                RunStatus::Succeeded => EventKind::RunSucceeded,
                RunStatus::Failed => EventKind::RunFailed,
                RunStatus::Cancelled => EventKind::RunCancelled,
                RunStatus::Interrupted => EventKind::RunInterrupted,
            },
            Event::Task { task, .. } => match task.status {
                // A task is published once it starts; pending is never published.
                TaskStatus::Pending | TaskStatus::Running => EventKind::TaskStarted,
                TaskStatus::Succeeded => EventKind::TaskSucceeded,
                TaskStatus::Failed => EventKind::TaskFailed,
                TaskStatus::Skipped => EventKind::TaskSkipped,
                TaskStatus::Retrying => EventKind::TaskRetrying,
                TaskStatus::TimedOut => EventKind::TaskTimedOut,
                TaskStatus::Cancelled => EventKind::TaskCancelled,
                TaskStatus::Interrupted => EventKind::TaskInterrupted,
            },
            Event::Log { .. } => EventKind::LogLine,
            Event::Scheduler { paused: true, .. } => EventKind::SchedulerPaused,
            Event::Scheduler { paused: false, .. } => EventKind::SchedulerResumed,
            Event::JobPause { paused: true, .. } => EventKind::JobPaused,
            Event::JobPause { paused: false, .. } => EventKind::JobResumed,
            Event::Skipped { .. } => EventKind::JobSkipped,
            Event::Notification { .. } => EventKind::Notification,
        }
    }

    pub fn time(&self) -> DateTime<Utc> {
        match self {
            Event::Run { time, .. }
            | Event::Task { time, .. }
            | Event::Scheduler { time, .. }
            | Event::JobPause { time, .. }
            | Event::Skipped { time, .. }
            | Event::Notification { time, .. } => *time,
            Event::Log { batch, .. } => batch.time,
        }
    }

    /// The job it is about; empty for scheduler events.
    pub fn job_id(&self) -> &str {
        match self {
            Event::Run { run, .. } => &run.job_id,
            Event::Task { job_id, .. }
            | Event::Log { job_id, .. }
            | Event::Skipped { job_id, .. }
            | Event::JobPause { job_id, .. }
            | Event::Notification { job_id, .. } => job_id,
            Event::Scheduler { .. } => "",
        }
    }

    /// The run it is about, if any.
    pub fn run_id(&self) -> Option<&str> {
        match self {
            Event::Run { run, .. } => Some(&run.id),
            Event::Task { task, .. } => Some(&task.run_id),
            Event::Log { batch, .. } => Some(&batch.run_id),
            Event::Notification { run_id, .. } => Some(run_id).filter(|r| !r.is_empty()),
            Event::Scheduler { .. } | Event::JobPause { .. } | Event::Skipped { .. } => None,
        }
        .map(String::as_str)
    }

    /// The task it is about, if any.
    pub fn task_id(&self) -> Option<&str> {
        match self {
            Event::Task { task, .. } => Some(&task.task_id),
            Event::Log { batch, .. } => Some(&batch.task_id),
            _ => None,
        }
        .map(String::as_str)
    }

    /// Run events: the run as it now stands.
    pub fn run(&self) -> Option<&Run> {
        match self {
            Event::Run { run, .. } => Some(run),
            _ => None,
        }
    }

    /// Task events: the task run as it now stands.
    pub fn task_run(&self) -> Option<&TaskRun> {
        match self {
            Event::Task { task, .. } => Some(task),
            _ => None,
        }
    }

    /// Log events: the lines.
    pub fn log(&self) -> Option<&LogBatch> {
        match self {
            Event::Log { batch, .. } => Some(batch),
            _ => None,
        }
    }

    /// Why (skips, errors, deliveries).
    pub fn message(&self) -> Option<&str> {
        match self {
            Event::Task { message, .. } => message.as_deref(),
            Event::Skipped { message, .. } | Event::Notification { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Skips: the reason as one word, for metrics.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Event::Skipped { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Whether this event ends a run.
    pub fn ends_run(&self) -> bool {
        matches!(self, Event::Run { run, .. } if run.status.is_terminal())
    }
}
