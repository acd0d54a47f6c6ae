//! Runs one DAG run: starts each task the moment its dependencies settle (if its
//! condition holds, else skips it), within the per-run task limit and the named
//! resource pools, retries failed attempts per policy, and records every change in the
//! store before publishing it on the bus.

mod attempt;
mod capture;
mod command;
pub mod environment;
pub mod ledger;
mod logs;
pub mod marked;
mod python;
mod scratch;
pub mod script;
pub mod shared_pools;
mod shell;
pub mod substitute;
mod task;
mod walk;
pub mod watchdog;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

pub use command::CommandTask;
pub use task::{StopReason, Task, TaskContext, TaskOutcome};

use crate::core::{
    Condition, EnvPolicy, JobDef, Readiness, RetryCondition, Run, RunStatus, TaskDef, TaskKind,
    TaskRun, TaskStatus,
};
use crate::events::{Event, EventBus};
use crate::store::{LogPageLimit, LogStart, Store};
use substitute::{substitute, substitute_script, substitute_text, Scope};

pub use scratch::Scratch;
use walk::Walk;

/// What every run of an engine shares.
pub struct ExecEnv {
    pub store: Arc<dyn Store>,
    pub bus: EventBus,
    /// Named resource pools, shared by all runs.
    pub pools: HashMap<String, Arc<Semaphore>>,
    /// Cluster mode: the pools are the cluster's (slots in the shared store), and
    /// `pools` is not used.
    pub shared_pools: Option<Arc<shared_pools::SharedPools>>,
    /// Tasks running at once within one run.
    pub max_concurrent_tasks: usize,
    /// Between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Where `$PETIT_OUTPUT` files are created: a directory of this engine's own
    /// (several engines may share a process, as in tests).
    pub scratch: Scratch,
    /// Where running process groups are recorded, for the next daemon after a crash.
    pub ledger: Option<Arc<ledger::Ledger>>,
    /// Embedded task implementations, by (job id, task id), used instead of the task's
    /// command.
    pub custom_tasks: HashMap<(String, String), Arc<dyn Task>>,
}

/// A run's end, not stored yet: its final record and its last task ends (with their
/// events' messages), stored together by [`finish_run`].
pub struct Finished {
    pub run: Run,
    tasks: Vec<(TaskRun, Option<String>)>,
    /// The slots the last attempts held, given back once their ends are stored.
    held: Vec<attempt::Permits>,
}

/// Executes `run` of `job` to its end and returns its final record, not yet stored: the
/// caller frees the run's slot first, then records and publishes the end with
/// [`finish_run`], so that whoever sees the end can start the job again at once.
///
/// `run` is claimed (`running`, with its start time, in the store). `tasks` are the
/// run's task records: all pending for a new run; for a run resumed after a crash,
/// settled tasks are kept and `interrupted` ones are retried if their policy allows,
/// else failed. `opened`: tasks whose first attempt was begun ([`open_tasks`]) and
/// stored with the run's claim; the walk starts them without a write of its own.
pub async fn execute_run(
    env: Arc<ExecEnv>,
    job: Arc<JobDef>,
    mut run: Run,
    tasks: Vec<TaskRun>,
    opened: Vec<usize>,
    stop: watch::Receiver<Option<StopReason>>,
) -> Finished {
    run.error = None;
    env.bus.publish(Event::of_run(run.clone()));
    tracing::info!(job = %job.id, run = %run.id, trigger = %run.trigger, "run started");

    let mut walk = Walk::new(env.clone(), job.clone(), &run, tasks, &opened, stop.clone());
    walk.run_to_end().await;

    let reason = *stop.borrow();
    let (status, error) = match reason {
        Some(StopReason::Interrupt) => (
            RunStatus::Interrupted,
            Some("interrupted: the daemon shut down".to_string()),
        ),
        Some(StopReason::Cancel) => (RunStatus::Cancelled, Some("cancelled".to_string())),
        Some(StopReason::RunTimeout) => (
            RunStatus::Failed,
            Some(format!(
                "timeout: the run took longer than its job's timeout ({})",
                humantime(job.timeout.unwrap_or_default())
            )),
        ),
        _ => match walk.first_failure() {
            Some(msg) => (RunStatus::Failed, Some(msg)),
            None => (RunStatus::Succeeded, None),
        },
    };
    if matches!(reason, Some(StopReason::Cancel | StopReason::RunTimeout)) {
        walk.cancel_unstarted();
    }
    run.status = status;
    run.error = error;
    run.ended_at = Some(Utc::now());
    let (tasks, held) = walk.take_ended();
    Finished { run, tasks, held }
}

/// Begins the first attempt of each task a new run's walk would start the moment it
/// begins, in `tasks` (the run's pending records, in job order), and returns their
/// indices in the order the walk starts them: tasks with no dependencies whose
/// condition holds without any, that need only a slot of the run (no pool), as many
/// as the run's task limit lets run. Their starts can then go in the write that claims
/// the run ([`Store::create_claimed_run`]), one write fewer per run, and
/// [`execute_run`] is told they are open.
pub fn open_tasks(job: &JobDef, env: &ExecEnv, tasks: &mut [TaskRun]) -> Vec<usize> {
    if env.shared_pools.is_some() || tasks.len() != job.tasks.len() {
        return Vec::new();
    }
    let opened: Vec<usize> = job
        .dag
        .topological_order()
        .iter()
        .copied()
        .filter(|&i| {
            let task = &job.tasks[i];
            job.dag.parents(i).is_empty()
                && walk::condition_holds(task.condition, &[])
                && task.resources.is_empty()
                && tasks[i].status == TaskStatus::Pending
        })
        .take(env.max_concurrent_tasks.max(1))
        .collect();
    for &i in &opened {
        attempt::begin_attempt(&mut tasks[i]);
    }
    opened
}

/// A duration as a job file would write it: `2h`, `90s`, `1500ms`.
fn humantime(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs, d.subsec_millis()) {
        (0, ms) => format!("{ms}ms"),
        (s, 0) if s % 3600 == 0 => format!("{}h", s / 3600),
        (s, 0) if s % 60 == 0 => format!("{}m", s / 60),
        (s, 0) => format!("{s}s"),
        (s, ms) => format!("{}ms", s * 1000 + u64::from(ms)),
    }
}

/// Records a run's end in the store with its last task ends (one write), then
/// publishes them, the run's last.
pub async fn finish_run(env: &ExecEnv, finished: Finished) -> Run {
    let Finished { run, tasks, held } = finished;
    let records = tasks.iter().map(|(t, _)| t.clone()).collect();
    if let Err(e) = env.store.finish_run(run.clone(), records).await {
        tracing::error!(run = %run.id, "cannot record run end: {e}");
    }
    for (task, message) in tasks {
        env.bus.publish(Event::of_task(&run.job_id, task, message));
    }
    drop(held);
    tracing::info!(job = %run.job_id, run = %run.id, status = %run.status, "run ended");
    env.bus.publish(Event::of_run(run.clone()));
    run
}
