//! The engine: the face of Petit's core for the daemon, the API and embedders. It owns
//! the job table, the store, the event bus, the scheduler task and the running runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::core::JobDef;
use crate::events::Event;
use crate::store::{RunRecord, Store, StoreError};

/// Limits and timings of an engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Runs executing at once across all jobs; further runs wait `pending`.
    pub max_concurrent_runs: usize,
    /// Tasks executing at once within one run.
    pub max_concurrent_tasks: usize,
    /// Named resource pools and their slot counts.
    pub pools: BTreeMap<String, u32>,
    /// Between SIGTERM and SIGKILL when a task times out or is cancelled.
    pub kill_grace: Duration,
    /// Capacity of the event bus (events a slow subscriber may lag behind).
    pub event_capacity: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_concurrent_runs: 16,
            max_concurrent_tasks: 8,
            pools: BTreeMap::new(),
            kill_grace: Duration::from_secs(5),
            event_capacity: 4096,
        }
    }
}

/// What the scheduler is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerInfo {
    pub paused: bool,
    pub stopping: bool,
    pub job_count: usize,
    pub running_runs: usize,
    pub started_at: DateTime<Utc>,
    pub max_concurrent_runs: usize,
    pub max_concurrent_tasks: usize,
}

/// Why the engine refused a request. The API maps each to one status code.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("job '{0}' not found")]
    JobNotFound(String),
    #[error("run '{0}' not found")]
    RunNotFound(String),
    #[error(
        "job '{job_id}' depends on job '{dependency}': {reason} (trigger with force to run anyway)"
    )]
    DependencyUnmet {
        job_id: String,
        dependency: String,
        reason: String,
    },
    #[error("job '{job_id}' already has {limit} run(s) in progress (max_concurrency {limit})")]
    ConcurrencyLimit { job_id: String, limit: u32 },
    #[error("run '{run_id}' has already ended ({status})")]
    RunEnded { run_id: String, status: String },
    #[error("the scheduler is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A handle on a running engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<()>,
}

impl Engine {
    /// Settles runs a crash left unfinished, records the jobs, and starts the scheduler.
    pub async fn start(
        jobs: Vec<JobDef>,
        store: Arc<dyn Store>,
        options: EngineOptions,
    ) -> Result<Engine, EngineError> {
        let _ = (jobs, store, options);
        todo!()
    }

    /// Every job, sorted by id.
    pub fn jobs(&self) -> Vec<Arc<JobDef>> {
        todo!()
    }

    pub fn job(&self, job_id: &str) -> Option<Arc<JobDef>> {
        let _ = job_id;
        todo!()
    }

    /// The next `n` fire instants of a job (empty when it has no schedule).
    pub fn next_fires(&self, job_id: &str, n: usize) -> Vec<DateTime<Utc>> {
        let _ = (job_id, n);
        todo!()
    }

    pub fn state(&self) -> SchedulerInfo {
        todo!()
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        todo!()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        todo!()
    }

    /// Starts a run of `job_id` now. `params` override `config` values for this run;
    /// `force` starts it even when a job dependency is unmet.
    pub async fn trigger(
        &self,
        job_id: &str,
        params: BTreeMap<String, String>,
        force: bool,
    ) -> Result<RunRecord, EngineError> {
        let _ = (job_id, params, force);
        todo!()
    }

    /// Cancels a run: its processes are killed and it ends `cancelled`. Returns the
    /// run once it has ended.
    pub async fn cancel(&self, run_id: &str) -> Result<RunRecord, EngineError> {
        let _ = run_id;
        todo!()
    }

    pub async fn get_run(&self, run_id: &str) -> Result<RunRecord, EngineError> {
        let _ = run_id;
        todo!()
    }

    /// Stops scheduled fires (manual triggers still work).
    pub async fn pause(&self) -> SchedulerInfo {
        todo!()
    }

    /// Resumes scheduled fires from now on; fires missed while paused are not made up.
    pub async fn resume(&self) -> SchedulerInfo {
        todo!()
    }

    /// Stops firing, gives running tasks `grace` to finish, then kills them and marks
    /// their runs interrupted.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = grace;
        todo!()
    }
}
