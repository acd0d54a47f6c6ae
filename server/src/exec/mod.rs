//! Runs one DAG run: starts each task the moment its dependencies settle (if its
//! condition holds, else skips it), within the per-run task limit and the named
//! resource pools, retries failed attempts per policy, and records every change in the
//! store before publishing it on the bus.

mod command;
pub mod environment;
pub mod ledger;
mod python;
pub mod script;
mod shell;
pub mod substitute;
mod task;

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
    Condition, EnvPolicy, JobDef, LogLine, LogStream, RetryCondition, Run, RunStatus, TaskDef,
    TaskKind, TaskRun, TaskStatus,
};
use crate::events::{Event, EventBus};
use crate::store::{LogPageLimit, LogStart, Store, StoreError};
use substitute::{substitute, substitute_script, substitute_text, Scope};

/// Log lines buffered between a task and the store before the task is slowed down.
const LOG_CHANNEL: usize = 1024;
/// Log lines written in one store call at most.
const LOG_BATCH: usize = 512;

/// The directory of an engine's `$PETIT_OUTPUT` files.
pub enum Scratch {
    /// A new temporary directory, removed when dropped.
    Temp(tempfile::TempDir),
    /// A directory the engine owns alone, kept between starts.
    Owned(PathBuf),
}

impl Scratch {
    /// `dir` emptied (what a crashed predecessor left there goes) and created, or a
    /// new temporary directory when `None`. Blocking file system work.
    pub fn create(dir: Option<PathBuf>) -> Result<Scratch, StoreError> {
        let Some(dir) = dir else {
            return tempfile::Builder::new()
                .prefix(&format!("petit-{}-", std::process::id()))
                .tempdir()
                .map(Scratch::Temp)
                .map_err(|e| {
                    StoreError::io(
                        format!(
                            "cannot create a scratch directory in {}",
                            std::env::temp_dir().display()
                        ),
                        e,
                    )
                });
        };
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::io(
                    format!("cannot empty the scratch directory {}", dir.display()),
                    e,
                ))
            }
        }
        crate::private_files::create_dir_all(&dir).map_err(|e| {
            StoreError::io(
                format!("cannot create the scratch directory {}", dir.display()),
                e,
            )
        })?;
        Ok(Scratch::Owned(dir))
    }

    pub fn path(&self) -> &Path {
        match self {
            Scratch::Temp(dir) => dir.path(),
            Scratch::Owned(dir) => dir,
        }
    }
}

/// What every run of an engine shares.
pub struct ExecEnv {
    pub store: Arc<dyn Store>,
    pub bus: EventBus,
    /// Named resource pools, shared by all runs.
    pub pools: HashMap<String, Arc<Semaphore>>,
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

/// Executes `run` of `job` to its end and returns its final record, not yet stored: the
/// caller frees the run's slot first, then records and publishes the end with
/// [`finish_run`], so that whoever sees the end can start the job again at once.
///
/// `run` is claimed (`running`, with its start time, in the store). `tasks` are the
/// run's task records: all pending for a new run; for a run resumed after a crash,
/// settled tasks are kept and `interrupted` ones are retried if their policy allows,
/// else failed.
pub async fn execute_run(
    env: Arc<ExecEnv>,
    job: Arc<JobDef>,
    mut run: Run,
    tasks: Vec<TaskRun>,
    stop: watch::Receiver<Option<StopReason>>,
) -> Run {
    run.error = None;
    env.bus.publish(Event::of_run(run.clone()));
    tracing::info!(job = %job.id, run = %run.id, trigger = %run.trigger, "run started");

    let mut walk = Walk::new(env.clone(), job.clone(), &run, tasks, stop.clone());
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
        walk.cancel_unstarted().await;
    }
    run.status = status;
    run.error = error;
    run.ended_at = Some(Utc::now());
    run
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

/// Records a run's end in the store, then publishes it.
pub async fn finish_run(env: &ExecEnv, run: &Run) {
    if let Err(e) = env.store.update_run(run.clone()).await {
        tracing::error!(run = %run.id, "cannot record run end: {e}");
    }
    tracing::info!(job = %run.job_id, run = %run.id, status = %run.status, "run ended");
    env.bus.publish(Event::of_run(run.clone()));
}

/// The walk over one run's DAG.
struct Walk {
    env: Arc<ExecEnv>,
    job: Arc<JobDef>,
    run_id: String,
    config: Arc<BTreeMap<String, String>>,
    records: Vec<TaskRun>,
    started: Vec<bool>,
    run_slots: Arc<Semaphore>,
    stop: watch::Receiver<Option<StopReason>>,
    running: JoinSet<(usize, TaskRun)>,
    by_tokio_id: HashMap<tokio::task::Id, usize>,
}

impl Walk {
    fn new(
        env: Arc<ExecEnv>,
        job: Arc<JobDef>,
        run: &Run,
        tasks: Vec<TaskRun>,
        stop: watch::Receiver<Option<StopReason>>,
    ) -> Walk {
        let mut config = job.config.clone();
        config.extend(run.params.clone());
        // Records in job order, whatever order the store gave them in.
        let mut by_id: HashMap<String, TaskRun> =
            tasks.into_iter().map(|t| (t.task_id.clone(), t)).collect();
        let records: Vec<TaskRun> = job
            .tasks
            .iter()
            .map(|t| {
                by_id
                    .remove(&t.id)
                    .unwrap_or_else(|| TaskRun::pending(&run.id, &t.id))
            })
            .collect();
        let started = records.iter().map(|r| r.status.is_terminal()).collect();
        Walk {
            run_slots: Arc::new(Semaphore::new(env.max_concurrent_tasks.max(1))),
            env,
            job,
            run_id: run.id.clone(),
            config: Arc::new(config),
            records,
            started,
            stop,
            running: JoinSet::new(),
            by_tokio_id: HashMap::new(),
        }
    }

    async fn run_to_end(&mut self) {
        self.advance().await;
        while let Some(joined) = self.running.join_next_with_id().await {
            let (idx, record) = match joined {
                Ok((id, (idx, record))) => {
                    self.by_tokio_id.remove(&id);
                    (idx, record)
                }
                Err(e) => {
                    let idx = self
                        .by_tokio_id
                        .remove(&e.id())
                        .expect("every task is indexed");
                    let mut record = self.records[idx].clone();
                    record.status = TaskStatus::Failed;
                    record.error = Some(format!("task panicked: {e}"));
                    record.ended_at = Some(Utc::now());
                    self.record(&record, None).await;
                    (idx, record)
                }
            };
            self.records[idx] = record;
            self.advance().await;
        }
    }

    /// Starts or skips every task whose dependencies have all settled. One pass in
    /// topological order suffices: a skip settles at once, before its children are seen.
    async fn advance(&mut self) {
        if self.stop.borrow().is_some() {
            return;
        }
        let job = self.job.clone();
        for &i in job.dag.topological_order() {
            if self.started[i] {
                continue;
            }
            let parents = job.dag.parents(i);
            if !parents
                .iter()
                .all(|&p| self.records[p].status.is_terminal())
            {
                continue;
            }
            self.started[i] = true;
            let task = &job.tasks[i];
            let statuses: Vec<TaskStatus> =
                parents.iter().map(|&p| self.records[p].status).collect();
            if condition_holds(task.condition, &statuses) {
                self.spawn(i);
            } else {
                let mut record = self.records[i].clone();
                record.status = TaskStatus::Skipped;
                record.ended_at = Some(Utc::now());
                let why = format!(
                    "condition {} not met by its dependencies",
                    task.condition.as_str()
                );
                record.error = Some(why.clone());
                self.record(&record, Some(why)).await;
                self.records[i] = record;
            }
        }
    }

    fn spawn(&mut self, i: usize) {
        let task = self.job.tasks[i].clone();
        let mut outputs = BTreeMap::new();
        for &p in self.job.dag.parents(i) {
            collect_upstream_outputs(&self.job, &self.records, p, &mut outputs);
        }
        let attempt = TaskAttempts {
            env: self.env.clone(),
            job_id: self.job.id.clone(),
            run_id: self.run_id.clone(),
            task,
            env_policy: self.job.environment_policy.clone(),
            config: self.config.clone(),
            outputs,
            run_slots: self.run_slots.clone(),
            stop: self.stop.clone(),
        };
        let record = self.records[i].clone();
        let handle = self
            .running
            .spawn(tracing::Instrument::in_current_span(async move {
                (i, attempt.run(record).await)
            }));
        self.by_tokio_id.insert(handle.id(), i);
    }

    /// The first failed task's error, in job order.
    fn first_failure(&self) -> Option<String> {
        self.records
            .iter()
            .find(|r| matches!(r.status, TaskStatus::Failed | TaskStatus::TimedOut))
            .map(|r| {
                format!(
                    "task '{}' {}: {}",
                    r.task_id,
                    r.status,
                    r.error.as_deref().unwrap_or("failed")
                )
            })
    }

    /// Marks tasks that never started `cancelled`.
    async fn cancel_unstarted(&mut self) {
        for i in 0..self.records.len() {
            if !self.records[i].status.is_terminal() {
                let mut record = self.records[i].clone();
                record.status = TaskStatus::Cancelled;
                record.ended_at = Some(Utc::now());
                self.record(&record, None).await;
                self.records[i] = record;
            }
        }
    }

    async fn record(&self, record: &TaskRun, message: Option<String>) {
        record_task(&self.env, &self.job.id, record, message).await;
    }
}

/// Whether a task runs, given its dependencies' final statuses.
fn condition_holds(condition: Condition, parents: &[TaskStatus]) -> bool {
    match condition {
        Condition::AllSuccess => parents.iter().all(|s| *s == TaskStatus::Succeeded),
        Condition::OnFailure => parents
            .iter()
            .any(|s| matches!(s, TaskStatus::Failed | TaskStatus::TimedOut)),
        Condition::AllDone => true,
    }
}

/// Outputs of task `p` and of everything upstream of it, by task id.
fn collect_upstream_outputs(
    job: &JobDef,
    records: &[TaskRun],
    p: usize,
    into: &mut BTreeMap<String, BTreeMap<String, String>>,
) {
    if into.contains_key(&records[p].task_id) {
        return;
    }
    if records[p].status == TaskStatus::Succeeded {
        into.insert(records[p].task_id.clone(), records[p].outputs.clone());
    }
    for &g in job.dag.parents(p) {
        collect_upstream_outputs(job, records, g, into);
    }
}

/// Stores a task record, then publishes its event.
async fn record_task(env: &ExecEnv, job_id: &str, record: &TaskRun, message: Option<String>) {
    if let Err(e) = env.store.update_task_run(record.clone()).await {
        tracing::error!(run = %record.run_id, task = %record.task_id, "cannot record task state: {e}");
    }
    env.bus
        .publish(Event::of_task(job_id, record.clone(), message));
}

/// All attempts of one task in one run.
struct TaskAttempts {
    env: Arc<ExecEnv>,
    job_id: String,
    run_id: String,
    task: TaskDef,
    env_policy: EnvPolicy,
    config: Arc<BTreeMap<String, String>>,
    outputs: BTreeMap<String, BTreeMap<String, String>>,
    run_slots: Arc<Semaphore>,
    stop: watch::Receiver<Option<StopReason>>,
}

impl TaskAttempts {
    async fn run(self, mut record: TaskRun) -> TaskRun {
        let policy = &self.task.retry;
        let mut seq = 0;
        if record.status == TaskStatus::Interrupted {
            // Resumed after a crash: an interruption is a transient failure.
            let allowed =
                policy.condition != RetryCondition::Never && record.attempts <= policy.max_attempts;
            if !allowed {
                record.status = TaskStatus::Failed;
                record.ended_at = Some(Utc::now());
                record.error = Some(format!(
                    "interrupted by a daemon restart during attempt {} and not retried (max_attempts {})",
                    record.attempts, policy.max_attempts
                ));
                self.record(&record, None).await;
                return record;
            }
            // Only the last stored line is needed, not the whole log.
            let last = LogPageLimit { lines: 1, bytes: 0 };
            seq = self
                .env
                .store
                .log_page(&self.run_id, Some(&self.task.id), LogStart::Tail(1), last)
                .await
                .ok()
                .and_then(|page| page.lines.last().map(|l| l.seq))
                .unwrap_or(0);
        }
        loop {
            let Some(_permits) = self.acquire().await else {
                return self.stopped(record, self.stop_reason()).await;
            };
            record.attempts += 1;
            record.status = TaskStatus::Running;
            record.started_at.get_or_insert_with(Utc::now);
            record.ended_at = None;
            record.exit_code = None;
            record.error = None;
            self.record(&record, None).await;

            let (outcome, last_seq) = self.attempt(record.attempts, seq).await;
            seq = last_seq;
            drop(_permits);
            record.ended_at = Some(Utc::now());
            let (exit_code, error, transient, timed_out) = match outcome {
                TaskOutcome::Succeeded { outputs, exit_code } => {
                    record.status = TaskStatus::Succeeded;
                    record.exit_code = exit_code;
                    record.outputs = outputs;
                    self.record(&record, None).await;
                    return record;
                }
                TaskOutcome::Stopped(StopReason::Timeout) => {
                    let t = self.task.timeout.unwrap_or_default();
                    (
                        None,
                        format!("timed out after {}s", t.as_secs_f64()),
                        true,
                        true,
                    )
                }
                TaskOutcome::Stopped(reason) => return self.stopped(record, Some(reason)).await,
                TaskOutcome::Failed {
                    exit_code,
                    error,
                    transient,
                } => (exit_code, error, transient, false),
            };
            record.exit_code = exit_code;
            record.error = Some(error.clone());
            let retry = record.attempts; // the retry this would be
            let may_retry = retry <= policy.max_attempts
                && match policy.condition {
                    RetryCondition::Always => true,
                    RetryCondition::TransientOnly => transient,
                    RetryCondition::Never => false,
                };
            if !may_retry {
                record.status = if timed_out {
                    TaskStatus::TimedOut
                } else {
                    TaskStatus::Failed
                };
                self.record(&record, Some(error)).await;
                return record;
            }
            let mut delay = policy.delay_before(retry);
            if policy.jitter && !delay.is_zero() {
                // Up to ±25 %, so that many tasks retrying together spread out.
                let factor = rand::rng().random_range(0.75..=1.25);
                delay = delay.mul_f64(factor);
            }
            record.status = TaskStatus::Retrying;
            let message = format!(
                "attempt {} failed ({error}); retry {retry} of {} in {:.1}s",
                record.attempts,
                policy.max_attempts,
                delay.as_secs_f64()
            );
            self.record(&record, Some(message)).await;
            let mut stop = self.stop.clone();
            let stopped = tokio::select! {
                _ = tokio::time::sleep(delay) => false,
                r = stop.wait_for(Option::is_some) => r.is_ok(),
            };
            if stopped {
                return self.stopped(record, self.stop_reason()).await;
            }
        }
    }

    fn stop_reason(&self) -> Option<StopReason> {
        *self.stop.borrow()
    }

    /// Waits for a slot of the run and of each pool the task uses (in name order, so
    /// two tasks never wait on each other). `None` if the run is stopped meanwhile.
    async fn acquire(&self) -> Option<Vec<OwnedSemaphorePermit>> {
        let mut stop = self.stop.clone();
        let acquire = async {
            let mut permits = Vec::with_capacity(1 + self.task.resources.len());
            permits.push(self.run_slots.clone().acquire_owned().await.ok()?);
            for (pool, &slots) in &self.task.resources {
                if let Some(sem) = self.env.pools.get(pool) {
                    permits.push(sem.clone().acquire_many_owned(slots).await.ok()?);
                }
            }
            Some(permits)
        };
        tokio::select! {
            biased;
            r = stop.wait_for(Option::is_some) => {
                drop(r);
                None
            }
            permits = acquire => permits,
        }
    }

    /// Runs one attempt; returns its outcome and the last log sequence number used.
    async fn attempt(&self, attempt: u32, seq: u64) -> (TaskOutcome, u64) {
        let (log_tx, log_rx) = mpsc::channel(LOG_CHANNEL);
        let (finish_tx, finish_rx) = oneshot::channel();
        let pump = tokio::spawn(tracing::Instrument::in_current_span(pump_logs(
            self.env.clone(),
            self.job_id.clone(),
            (self.run_id.clone(), self.task.id.clone(), attempt),
            seq,
            log_rx,
            finish_rx,
        )));
        let ctx = TaskContext::new(
            (
                self.run_id.clone(),
                self.job_id.clone(),
                self.task.id.clone(),
            ),
            attempt,
            log_tx,
            self.stop.clone(),
            self.task.timeout,
        );
        let outcome = match self.implementation() {
            Ok(task) => task.run(ctx).await,
            Err(error) => {
                drop(ctx);
                TaskOutcome::Failed {
                    exit_code: None,
                    error,
                    transient: false,
                }
            }
        };
        let _ = finish_tx.send(());
        let last = pump.await.unwrap_or(seq);
        (outcome, last)
    }

    /// The embedded implementation of this task, or its command with every
    /// placeholder substituted.
    fn implementation(&self) -> Result<Arc<dyn Task>, String> {
        if let Some(custom) = self
            .env
            .custom_tasks
            .get(&(self.job_id.clone(), self.task.id.clone()))
        {
            return Ok(custom.clone());
        }
        let scope = Scope {
            config: &self.config,
            outputs: &self.outputs,
            run_id: &self.run_id,
            job_id: &self.job_id,
        };
        let (program, args) = self.task.kind.templates();
        let program = substitute(program, &scope)?;
        let plain = args
            .iter()
            .map(|a| substitute(a, &scope))
            .collect::<Result<Vec<_>, _>>()?;
        // The script argument as written, and as substituted: a value (a param laid
        // over `config.flag`, say, set to `-c`) must not turn an argument into a script
        // unseen.
        let scripts: Vec<script::ScriptArg> = match &self.task.kind {
            TaskKind::Python { inline: true, .. } => vec![script::ScriptArg {
                index: 1,
                offset: 0,
                lang: script::Lang::Python,
            }],
            _ => [
                script::script_arg(&program, &args),
                script::script_arg(&program, &plain),
            ]
            .into_iter()
            .flatten()
            .collect(),
        };
        let args = plain
            .into_iter()
            .enumerate()
            .map(|(i, plain)| match scripts.iter().find(|s| s.index == i) {
                Some(s) => substitute_script(args[i], *s, &scope),
                None => Ok(plain),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let environment = self
            .task
            .environment
            .iter()
            .map(|(k, v)| Ok((k.clone(), substitute_text(v, &scope)?)))
            .collect::<Result<BTreeMap<_, _>, String>>()?;
        let working_dir = self
            .task
            .working_dir
            .as_deref()
            .map(|d| substitute_text(d, &scope))
            .transpose()?
            .map(PathBuf::from);
        let output_file = self.env.scratch.path().join(format!(
            "{}-{}.out",
            self.run_id,
            sanitize(&self.task.id)
        ));
        Ok(Arc::new(CommandTask {
            program,
            args,
            env_policy: self.env_policy.clone(),
            exported: crate::exec::environment::exported(&self.config, &self.outputs),
            environment,
            working_dir,
            kill_grace: self.env.kill_grace,
            output_file,
            ledger: self.env.ledger.clone(),
        }))
    }

    /// Settles a task its run stopped: `cancelled` or `interrupted`.
    async fn stopped(&self, mut record: TaskRun, reason: Option<StopReason>) -> TaskRun {
        let (status, error) = match reason {
            Some(StopReason::Interrupt) => {
                (TaskStatus::Interrupted, "interrupted: the daemon shut down")
            }
            Some(StopReason::RunTimeout) => {
                (TaskStatus::TimedOut, "stopped: the run's timeout passed")
            }
            _ => (TaskStatus::Cancelled, "cancelled"),
        };
        record.status = status;
        record.error = Some(error.to_string());
        record.ended_at = Some(Utc::now());
        self.record(&record, None).await;
        record
    }

    async fn record(&self, record: &TaskRun, message: Option<String>) {
        record_task(&self.env, &self.job_id, record, message).await;
    }
}

fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Moves a task's log lines to the store in batches, then onto the bus (stored before
/// published, so a follower that reads the store after subscribing misses nothing).
/// Returns the last sequence number used.
async fn pump_logs(
    env: Arc<ExecEnv>,
    job_id: String,
    (run_id, task_id, attempt): (String, String, u32),
    mut seq: u64,
    mut rx: mpsc::Receiver<(LogStream, String)>,
    mut finish: oneshot::Receiver<()>,
) -> u64 {
    let mut finishing = false;
    loop {
        let first = if finishing {
            rx.recv().await
        } else {
            tokio::select! {
                line = rx.recv() => line,
                _ = &mut finish => {
                    // The attempt is over: take what is buffered, then stop.
                    finishing = true;
                    rx.close();
                    continue;
                }
            }
        };
        let Some(first) = first else { return seq };
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < LOG_BATCH {
            match rx.try_recv() {
                Ok(line) => batch.push(line),
                Err(_) => break,
            }
        }
        let now = Utc::now();
        let records: Vec<LogLine> = batch
            .into_iter()
            .map(|(stream, line)| {
                seq += 1;
                LogLine {
                    run_id: run_id.clone(),
                    seq,
                    task_id: task_id.clone(),
                    attempt,
                    stream,
                    line,
                    time: now,
                }
            })
            .collect();
        if let Err(e) = env.store.append_logs(records.clone()).await {
            tracing::error!(run = %run_id, task = %task_id, "cannot store log lines: {e}");
        }
        for record in records {
            env.bus.publish(Event::Log {
                job_id: job_id.clone(),
                line: record,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions() {
        use TaskStatus::*;
        let cases: &[(Condition, &[TaskStatus], bool)] = &[
            (Condition::AllSuccess, &[], true),
            (Condition::AllSuccess, &[Succeeded, Succeeded], true),
            (Condition::AllSuccess, &[Succeeded, Skipped], false),
            (Condition::AllSuccess, &[Failed], false),
            (Condition::OnFailure, &[Succeeded, Failed], true),
            (Condition::OnFailure, &[TimedOut], true),
            (Condition::OnFailure, &[Succeeded, Skipped], false),
            (Condition::OnFailure, &[], false),
            (Condition::AllDone, &[Failed, Skipped, Succeeded], true),
        ];
        for (cond, parents, want) in cases {
            assert_eq!(
                condition_holds(*cond, parents),
                *want,
                "{cond:?} {parents:?}"
            );
        }
    }
}
