//! The `Task` trait: one attempt of one task. Command and Python tasks implement it
//! (`CommandTask`); embedders may implement it for their own work and register it with
//! the executor. A task reports log lines through its context and honours the context's
//! stop signal (timeout, cancel, interruption).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::core::{LogChunk, LogStream};

/// Why a task is asked to stop before it has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The task ran past its timeout.
    Timeout,
    /// The run was cancelled.
    Cancel,
    /// The run ran past its job's `timeout`: its tasks are stopped and it fails.
    RunTimeout,
    /// The daemon is shutting down.
    Interrupt,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    Succeeded {
        outputs: BTreeMap<String, String>,
        exit_code: Option<i32>,
    },
    Failed {
        exit_code: Option<i32>,
        error: String,
        /// Whether the failure may pass by itself (see `RetryCondition::TransientOnly`).
        transient: bool,
    },
    /// Stopped on request; a well-behaved task returns this promptly after
    /// `TaskContext::stopped` resolves.
    Stopped(StopReason),
}

/// One attempt of a task.
#[async_trait::async_trait]
pub trait Task: Send + Sync {
    async fn run(&self, ctx: TaskContext) -> TaskOutcome;
}

/// What a task attempt gets from the executor: who it is, where its log lines go,
/// and when it must stop.
pub struct TaskContext {
    pub run_id: String,
    pub job_id: String,
    pub task_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    logs: mpsc::Sender<LogChunk>,
    stop: watch::Receiver<Option<StopReason>>,
    deadline: Option<Instant>,
}

impl TaskContext {
    pub fn new(
        ids: (String, String, String),
        attempt: u32,
        logs: mpsc::Sender<LogChunk>,
        stop: watch::Receiver<Option<StopReason>>,
        timeout: Option<Duration>,
    ) -> TaskContext {
        let (run_id, job_id, task_id) = ids;
        TaskContext {
            run_id,
            job_id,
            task_id,
            attempt,
            logs,
            stop,
            deadline: timeout.map(|t| Instant::now() + t),
        }
    }

    /// Emits one line of output. Waits when the log pipeline is saturated (a chatty task
    /// is slowed down rather than buffered without bound).
    pub async fn log(&self, stream: LogStream, line: impl Into<String>) {
        let _ = self.logs.send(LogChunk::line(stream, line.into())).await;
    }

    /// A sender for chunks of log lines, for tasks that read output on other tasks.
    pub fn log_sender(&self) -> mpsc::Sender<LogChunk> {
        self.logs.clone()
    }

    /// Resolves when the attempt must stop: its timeout passed, or its run was
    /// cancelled or interrupted.
    pub async fn stopped(&self) -> StopReason {
        let mut stop = self.stop.clone();
        let signal = async move {
            loop {
                if let Some(reason) = *stop.borrow_and_update() {
                    return reason;
                }
                if stop.changed().await.is_err() {
                    // The run dropped its stop handle: nothing will ever ask us to stop.
                    std::future::pending::<()>().await;
                }
            }
        };
        match self.deadline {
            Some(deadline) => tokio::select! {
                reason = signal => reason,
                _ = tokio::time::sleep_until(deadline) => StopReason::Timeout,
            },
            None => signal.await,
        }
    }
}
