//! The engine: the face of Petit's core for the daemon, the API and embedders. It owns
//! the job table, the store, the event bus, the scheduler task and the running runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Semaphore};
use tokio_util::task::TaskTracker;

use crate::core::{DepCondition, JobDef, RunStatus, TaskStatus, TriggerReason};
use crate::events::{Event, EventBus, EventKind};
use crate::exec::ledger::Ledger;
use crate::exec::{execute_run, ExecEnv, Scratch, StopReason, Task};
use crate::scheduler::{Scheduler, SchedulerCommand};
use crate::store::{JobRecord, Run, Store, StoreError, TaskRun};

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
    /// Log lines of runs that ended longer ago than this are deleted (checked at start
    /// and then hourly). `None` keeps logs forever.
    pub log_retention: Option<Duration>,
    /// A directory where running task process groups are recorded, so that after a
    /// crash the next start kills the ones left running (see `exec::ledger`). `None`
    /// for an in-memory engine that has no next start.
    pub process_ledger: Option<std::path::PathBuf>,
    /// Where tasks' `$PETIT_OUTPUT` files go: a directory this engine owns alone (petitd
    /// holds its database lock), emptied at start so that what a crash left there goes.
    /// `None`: a new temporary directory, removed with the engine.
    pub scratch_dir: Option<std::path::PathBuf>,
    /// See every event synchronously, from the first (crash recovery at start) on.
    pub observers: Vec<Arc<dyn crate::events::EventObserver>>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_concurrent_runs: 16,
            max_concurrent_tasks: 8,
            pools: BTreeMap::new(),
            kill_grace: Duration::from_secs(5),
            event_capacity: 4096,
            log_retention: None,
            process_ledger: None,
            scratch_dir: None,
            observers: Vec::new(),
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

impl EngineError {
    /// The refusal as one word, for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            EngineError::JobNotFound(_) | EngineError::RunNotFound(_) => "not_found",
            EngineError::DependencyUnmet { .. } => "dependency",
            EngineError::ConcurrencyLimit { .. } => "concurrency",
            EngineError::RunEnded { .. } => "ended",
            EngineError::InvalidArgument(_) => "invalid",
            EngineError::ShuttingDown => "shutting_down",
            EngineError::Store(_) => "storage",
        }
    }
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
    #[error("{0}")]
    InvalidArgument(String),
    #[error("the scheduler is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A handle on a running engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: BTreeMap<String, Arc<JobDef>>,
    store: Arc<dyn Store>,
    bus: EventBus,
    env: Arc<ExecEnv>,
    options: EngineOptions,
    started_at: DateTime<Utc>,
    state: Mutex<State>,
    /// Runs executing at once; a run waits `pending` for a slot.
    run_slots: Arc<Semaphore>,
    scheduler: mpsc::UnboundedSender<SchedulerCommand>,
    /// Number of active runs, for shutdown to wait on.
    active_count: watch::Sender<usize>,
    /// Held while a pause or resume is recorded and applied, so that concurrent calls
    /// reach the store, the scheduler and the bus in one order.
    pausing: tokio::sync::Mutex<()>,
    runs: TaskTracker,
}

#[derive(Default)]
struct State {
    paused: bool,
    stopping: bool,
    active: HashMap<String, ActiveRun>,
}

/// The run's side of its `ActiveRun`: where it learns to stop, and where it hands its
/// final record.
struct Registration {
    stop: watch::Receiver<Option<StopReason>>,
    done: watch::Sender<Option<Run>>,
}

/// A run that has not ended yet.
struct ActiveRun {
    job_id: String,
    stop: watch::Sender<Option<StopReason>>,
    /// Set to the final record when the run ends.
    done: watch::Receiver<Option<Run>>,
}

impl Engine {
    /// Settles runs a crash left unfinished, records the jobs, and starts the scheduler.
    pub async fn start(
        jobs: Vec<JobDef>,
        store: Arc<dyn Store>,
        options: EngineOptions,
    ) -> Result<Engine, EngineError> {
        Self::start_with_tasks(jobs, store, options, HashMap::new()).await
    }

    /// As `start`, with embedded `Task` implementations used instead of the commands of
    /// the given (job id, task id) pairs.
    pub async fn start_with_tasks(
        jobs: Vec<JobDef>,
        store: Arc<dyn Store>,
        options: EngineOptions,
        custom_tasks: HashMap<(String, String), Arc<dyn Task>>,
    ) -> Result<Engine, EngineError> {
        let jobs: BTreeMap<String, Arc<JobDef>> = jobs
            .into_iter()
            .map(|j| (j.id.clone(), Arc::new(j)))
            .collect();
        // File system work: off the executor threads.
        let owned = options.scratch_dir.clone();
        let scratch = tokio::task::spawn_blocking(move || Scratch::create(owned))
            .await
            .map_err(|e| StoreError::io("scratch directory", e.into()))??;
        let ledger = match &options.process_ledger {
            Some(dir) => {
                // File system work: off the executor threads.
                let dir = dir.clone();
                let opened = tokio::task::spawn_blocking(move || {
                    let ledger = Ledger::open(&dir).map_err(|e| {
                        StoreError::io(
                            format!("cannot open the process ledger {}", dir.display()),
                            e,
                        )
                    })?;
                    let killed = ledger.kill_orphans();
                    Ok::<_, StoreError>((ledger, killed))
                })
                .await
                .map_err(|e| StoreError::io("process ledger", e.into()))?;
                let (ledger, killed) = opened?;
                if killed > 0 {
                    tracing::warn!(
                        killed,
                        "killed task processes a crashed daemon left running"
                    );
                }
                Some(Arc::new(ledger))
            }
            None => None,
        };
        let bus =
            EventBus::with_observers(options.event_capacity.max(16), options.observers.clone());
        let env = Arc::new(ExecEnv {
            store: store.clone(),
            bus: bus.clone(),
            pools: options
                .pools
                .iter()
                .map(|(k, &v)| (k.clone(), Arc::new(Semaphore::new(v as usize))))
                .collect(),
            max_concurrent_tasks: options.max_concurrent_tasks.max(1),
            kill_grace: options.kill_grace,
            scratch,
            ledger,
            custom_tasks,
        });
        // A scheduler paused by an operator stays paused across restarts and crashes.
        let paused = store.scheduler_paused().await?;
        if paused {
            tracing::warn!("the scheduler was left paused: no scheduled fires until it is resumed (`petitctl resume`)");
        }
        let (scheduler_tx, scheduler_rx) = mpsc::unbounded_channel();
        let engine = Engine {
            inner: Arc::new(Inner {
                run_slots: Arc::new(Semaphore::new(options.max_concurrent_runs.max(1))),
                jobs,
                store: store.clone(),
                bus,
                env,
                options,
                started_at: Utc::now(),
                state: Mutex::new(State {
                    paused,
                    ..State::default()
                }),
                scheduler: scheduler_tx,
                active_count: watch::channel(0).0,
                pausing: tokio::sync::Mutex::new(()),
                runs: TaskTracker::new(),
            }),
        };

        let now = Utc::now();
        let records = engine
            .inner
            .jobs
            .values()
            .map(|j| JobRecord {
                id: j.id.clone(),
                name: j.name.clone(),
                source: j.source.display().to_string(),
                schedule: j.schedule.as_ref().map(|s| s.expression().to_string()),
                updated_at: now,
            })
            .collect();
        store.upsert_jobs(records).await?;
        engine.recover().await?;

        // The scheduler holds only a weak handle: it must not keep the engine alive.
        let weak = Arc::downgrade(&engine.inner);
        let fire = Box::new(move |job: Arc<JobDef>, at: DateTime<Utc>| {
            if let Some(inner) = weak.upgrade() {
                let engine = Engine { inner };
                tokio::spawn(async move { engine.fire(job, at).await });
            }
        });
        let scheduler = Scheduler::new(engine.inner.jobs.values().cloned(), paused, fire);
        tokio::spawn(scheduler.run(scheduler_rx));
        if let Some(retention) = engine.inner.options.log_retention {
            tokio::spawn(prune_logs_hourly(Arc::downgrade(&engine.inner), retention));
        }
        Ok(engine)
    }

    /// Settles runs left `pending` or `running` by a crash: their running tasks become
    /// `interrupted`, and the run resumes (interrupted tasks are retried if their policy
    /// allows, else failed) until it reaches a terminal state.
    async fn recover(&self) -> Result<(), EngineError> {
        let store = &self.inner.store;
        for mut run in store.unfinished_runs().await? {
            let mut tasks = store.task_runs(&run.id).await?;
            for task in tasks
                .iter_mut()
                .filter(|t| matches!(t.status, TaskStatus::Running | TaskStatus::Retrying))
            {
                task.status = TaskStatus::Interrupted;
                task.ended_at = Some(Utc::now());
                task.error = Some("interrupted: the daemon stopped while the task ran".to_string());
                store.update_task_run(task.clone()).await?;
            }
            match self.inner.jobs.get(&run.job_id).cloned() {
                Some(job) => {
                    tracing::warn!(job = %run.job_id, run = %run.id, "resuming a run the previous daemon left unfinished");
                    let registration = self.register(&run)?;
                    self.spawn_run(job, run, tasks, registration);
                }
                None => {
                    run.status = RunStatus::Failed;
                    run.ended_at = Some(Utc::now());
                    run.error = Some(format!(
                        "job '{}' is no longer defined; the run could not resume after a restart",
                        run.job_id
                    ));
                    tracing::warn!(job = %run.job_id, run = %run.id, "failing an unfinished run of a job that no longer exists");
                    store.update_run(run).await?;
                }
            }
        }
        Ok(())
    }

    /// Every job, sorted by id.
    pub fn jobs(&self) -> Vec<Arc<JobDef>> {
        self.inner.jobs.values().cloned().collect()
    }

    pub fn job(&self, job_id: &str) -> Option<Arc<JobDef>> {
        self.inner.jobs.get(job_id).cloned()
    }

    /// The next `n` fire instants of a job (empty when it has no schedule or is
    /// disabled).
    pub fn next_fires(&self, job_id: &str, n: usize) -> Vec<DateTime<Utc>> {
        match self.inner.jobs.get(job_id) {
            Some(job) if job.enabled => job
                .schedule
                .as_ref()
                .map(|s| s.upcoming(Utc::now(), n))
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    pub fn state(&self) -> SchedulerInfo {
        let state = self.inner.state.lock().expect("engine state lock");
        SchedulerInfo {
            paused: state.paused,
            stopping: state.stopping,
            job_count: self.inner.jobs.len(),
            running_runs: state.active.len(),
            started_at: self.inner.started_at,
            max_concurrent_runs: self.inner.options.max_concurrent_runs,
            max_concurrent_tasks: self.inner.options.max_concurrent_tasks,
        }
    }

    /// Each resource pool: its name, its slots, and how many are free now.
    pub fn pool_slots(&self) -> Vec<(String, usize, usize)> {
        self.inner
            .options
            .pools
            .iter()
            .map(|(name, &slots)| {
                let free = self
                    .inner
                    .env
                    .pools
                    .get(name)
                    .map_or(0, |sem| sem.available_permits());
                (name.clone(), slots as usize, free)
            })
            .collect()
    }

    /// Publishes an event of something outside the engine (a notification's delivery)
    /// to every subscriber.
    pub fn publish(&self, event: Event) {
        self.inner.bus.publish(event);
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.bus.subscribe()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Whether a run is still in progress (pending or running) in this engine.
    pub fn is_active(&self, run_id: &str) -> bool {
        self.inner
            .state
            .lock()
            .expect("engine state lock")
            .active
            .contains_key(run_id)
    }

    /// Starts a run of `job_id` now. `params` override `config` values for this run;
    /// `force` starts it even when a job dependency is unmet.
    pub async fn trigger(
        &self,
        job_id: &str,
        params: BTreeMap<String, String>,
        force: bool,
    ) -> Result<Run, EngineError> {
        self.trigger_as(job_id, params, force, None).await
    }

    /// As [`Engine::trigger`], recording who asked (a token's name) on the run.
    pub async fn trigger_as(
        &self,
        job_id: &str,
        params: BTreeMap<String, String>,
        force: bool,
        triggered_by: Option<String>,
    ) -> Result<Run, EngineError> {
        let job = self
            .job(job_id)
            .ok_or_else(|| EngineError::JobNotFound(job_id.to_string()))?;
        if let Some(key) = params.keys().find(|k| !job.config.contains_key(*k)) {
            let known: Vec<&str> = job.config.keys().map(String::as_str).collect();
            return Err(EngineError::InvalidArgument(format!(
                "job '{job_id}' has no config value '{key}' to override (known: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        self.start_run(
            job,
            TriggerReason::Manual,
            params,
            force,
            triggered_by,
            None,
        )
        .await
    }

    /// A scheduled fire: starts a run, or publishes why it was skipped.
    async fn fire(&self, job: Arc<JobDef>, at: DateTime<Utc>) {
        match self
            .start_run(
                job.clone(),
                TriggerReason::Schedule,
                BTreeMap::new(),
                false,
                None,
                Some(at),
            )
            .await
        {
            Ok(run) => tracing::debug!(job = %job.id, run = %run.id, scheduled = %at, "fired"),
            Err(EngineError::ShuttingDown) => {}
            Err(e) => {
                tracing::info!(job = %job.id, scheduled = %at, "skipped a scheduled fire: {e}");
                self.inner.bus.publish(
                    Event::new(EventKind::JobSkipped, &job.id)
                        .with_message(e.to_string())
                        .with_reason(e.reason()),
                );
            }
        }
    }

    async fn start_run(
        &self,
        job: Arc<JobDef>,
        trigger: TriggerReason,
        params: BTreeMap<String, String>,
        force: bool,
        triggered_by: Option<String>,
        scheduled_for: Option<DateTime<Utc>>,
    ) -> Result<Run, EngineError> {
        if self.inner.state.lock().expect("engine state lock").stopping {
            return Err(EngineError::ShuttingDown);
        }
        if !force {
            self.check_dependencies(&job).await?;
        }
        let now = Utc::now();
        let run = Run {
            id: uuid::Uuid::now_v7().to_string(),
            job_id: job.id.clone(),
            status: RunStatus::Queued,
            trigger,
            params,
            created_at: now,
            started_at: None,
            ended_at: None,
            error: None,
            triggered_by,
            scheduled_for,
        };
        // Check and reserve under one lock, so two triggers cannot both pass the limit.
        let registration = {
            let mut state = self.inner.state.lock().expect("engine state lock");
            if state.stopping {
                return Err(EngineError::ShuttingDown);
            }
            let running = state.active.values().filter(|r| r.job_id == job.id).count();
            if running >= job.max_concurrency as usize {
                return Err(EngineError::ConcurrencyLimit {
                    job_id: job.id.clone(),
                    limit: job.max_concurrency,
                });
            }
            self.register_locked(&mut state, &run)
        };
        let tasks: Vec<TaskRun> = job
            .tasks
            .iter()
            .map(|t| TaskRun::pending(&run.id, &t.id))
            .collect();
        if let Err(e) = self
            .inner
            .store
            .create_run(run.clone(), tasks.clone())
            .await
        {
            self.unregister(&run.id);
            return Err(e.into());
        }
        self.spawn_run(job, run.clone(), tasks, registration);
        Ok(run)
    }

    /// Whether every job dependency of `job` is met now.
    async fn check_dependencies(&self, job: &JobDef) -> Result<(), EngineError> {
        let store = &self.inner.store;
        let terminal = [
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Cancelled,
            RunStatus::Interrupted,
        ];
        for dep in &job.depends_on {
            let unmet = |reason: String| EngineError::DependencyUnmet {
                job_id: job.id.clone(),
                dependency: dep.job_id.clone(),
                reason,
            };
            match dep.condition {
                DepCondition::LastSuccess => match store.last_run(&dep.job_id, &terminal).await? {
                    None => return Err(unmet("it has never finished a run".into())),
                    Some(r) if r.status != RunStatus::Succeeded => {
                        return Err(unmet(format!("its last run {} {}", r.id, r.status)))
                    }
                    Some(_) => {}
                },
                DepCondition::LastComplete => match store.last_run(&dep.job_id, &[]).await? {
                    None => return Err(unmet("it has never run".into())),
                    Some(r) if !r.status.is_terminal() => {
                        return Err(unmet(format!(
                            "its last run {} is still {}",
                            r.id, r.status
                        )))
                    }
                    Some(_) => {}
                },
                DepCondition::WithinWindow(window) => {
                    let last = store.last_run(&dep.job_id, &[RunStatus::Succeeded]).await?;
                    let since = Utc::now()
                        - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
                    let ok = last
                        .as_ref()
                        .and_then(|r| r.ended_at)
                        .is_some_and(|t| t >= since);
                    if !ok {
                        return Err(unmet(format!(
                            "no successful run in the last {}s",
                            window.as_secs()
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    fn register(&self, run: &Run) -> Result<Registration, EngineError> {
        let mut state = self.inner.state.lock().expect("engine state lock");
        Ok(self.register_locked(&mut state, run))
    }

    /// Makes `run` active: from now on it counts against the limits and can be
    /// cancelled (its `done` channel is live before the run's task even starts).
    fn register_locked(&self, state: &mut State, run: &Run) -> Registration {
        let (stop, stop_rx) = watch::channel(None);
        let (done_tx, done) = watch::channel(None);
        state.active.insert(
            run.id.clone(),
            ActiveRun {
                job_id: run.job_id.clone(),
                stop,
                done,
            },
        );
        self.inner.active_count.send_replace(state.active.len());
        Registration {
            stop: stop_rx,
            done: done_tx,
        }
    }

    fn unregister(&self, run_id: &str) {
        let mut state = self.inner.state.lock().expect("engine state lock");
        state.active.remove(run_id);
        self.inner.active_count.send_replace(state.active.len());
    }

    /// Runs `run` on its own task: waits for a global run slot, executes the DAG, then
    /// unregisters the run and hands its final record to anyone awaiting it.
    fn spawn_run(
        &self,
        job: Arc<JobDef>,
        run: Run,
        tasks: Vec<TaskRun>,
        registration: Registration,
    ) {
        let Registration {
            stop,
            done: done_tx,
        } = registration;
        let engine = self.clone();
        // Every log line of the run, its tasks' included, carries the job and run ids
        // (as span fields: `--log-format json` has them under "span").
        let span = tracing::info_span!("run", job = %job.id, run = %run.id);
        let body = async move {
            let inner = &engine.inner;
            let mut stop_wait = stop.clone();
            let slot = tokio::select! {
                biased;
                r = stop_wait.wait_for(Option::is_some) => {
                    drop(r);
                    None
                }
                permit = inner.run_slots.clone().acquire_owned() => permit.ok(),
            };
            let reason = *stop.borrow();
            let run_id = run.id.clone();
            let finished = match slot {
                Some(_permit) => execute_run(inner.env.clone(), job, run, tasks, stop).await,
                None => engine.end_unstarted(run, tasks, reason).await,
            };
            engine.unregister(&run_id);
            let _ = done_tx.send(Some(finished));
        };
        self.inner
            .runs
            .spawn(tracing::Instrument::instrument(body, span));
    }

    /// Ends a run stopped while it waited for a slot: cancelled or interrupted, its
    /// tasks never started.
    async fn end_unstarted(
        &self,
        mut run: Run,
        tasks: Vec<TaskRun>,
        reason: Option<StopReason>,
    ) -> Run {
        let store = &self.inner.store;
        let interrupted = reason == Some(StopReason::Interrupt);
        if !interrupted {
            for mut task in tasks.into_iter().filter(|t| !t.status.is_terminal()) {
                task.status = TaskStatus::Cancelled;
                task.ended_at = Some(Utc::now());
                if let Err(e) = store.update_task_run(task.clone()).await {
                    tracing::error!(run = %run.id, "cannot record task state: {e}");
                }
                self.inner
                    .bus
                    .publish(Event::new(EventKind::TaskCancelled, &run.job_id).with_task(task));
            }
        }
        let (status, kind, error) = if interrupted {
            (
                RunStatus::Interrupted,
                EventKind::RunInterrupted,
                "interrupted: the daemon shut down before the run started",
            )
        } else {
            (
                RunStatus::Cancelled,
                EventKind::RunCancelled,
                "cancelled before it started",
            )
        };
        run.status = status;
        run.error = Some(error.to_string());
        run.ended_at = Some(Utc::now());
        if let Err(e) = store.update_run(run.clone()).await {
            tracing::error!(run = %run.id, "cannot record run end: {e}");
        }
        self.inner
            .bus
            .publish(Event::new(kind, &run.job_id).with_run(run.clone()));
        run
    }

    /// Cancels a run: its processes are killed and it ends `cancelled`. Returns the
    /// run once it has ended.
    pub async fn cancel(&self, run_id: &str) -> Result<Run, EngineError> {
        let done = {
            let state = self.inner.state.lock().expect("engine state lock");
            state.active.get(run_id).map(|active| {
                active.stop.send_if_modified(|reason| {
                    if reason.is_none() {
                        *reason = Some(StopReason::Cancel);
                        true
                    } else {
                        false
                    }
                });
                active.done.clone()
            })
        };
        match done {
            Some(mut done) => {
                let finished = done
                    .wait_for(Option::is_some)
                    .await
                    .map(|r| r.clone())
                    .ok()
                    .flatten();
                match finished {
                    Some(run) => Ok(run),
                    None => self.get_run(run_id).await,
                }
            }
            None => {
                let run = self.get_run(run_id).await?;
                Err(EngineError::RunEnded {
                    run_id: run.id,
                    status: run.status.to_string(),
                })
            }
        }
    }

    pub async fn get_run(&self, run_id: &str) -> Result<Run, EngineError> {
        self.inner
            .store
            .get_run(run_id)
            .await?
            .ok_or_else(|| EngineError::RunNotFound(run_id.to_string()))
    }

    /// Stops scheduled fires (manual triggers still work). The paused state is stored:
    /// a restarted daemon stays paused.
    pub async fn pause(&self) -> Result<SchedulerInfo, EngineError> {
        self.set_paused(true).await
    }

    /// Resumes scheduled fires from now on; fires missed while paused are not made up.
    pub async fn resume(&self) -> Result<SchedulerInfo, EngineError> {
        self.set_paused(false).await
    }

    async fn set_paused(&self, paused: bool) -> Result<SchedulerInfo, EngineError> {
        let _order = self.inner.pausing.lock().await;
        let was = self.inner.state.lock().expect("engine state lock").paused;
        if was != paused {
            // Stored first: a pause that is answered is a pause that survives a crash.
            self.inner.store.set_scheduler_paused(paused).await?;
            self.inner.state.lock().expect("engine state lock").paused = paused;
            let (ack, acked) = oneshot::channel();
            let command = if paused {
                SchedulerCommand::Pause(ack)
            } else {
                SchedulerCommand::Resume(ack)
            };
            if self.inner.scheduler.send(command).is_ok() {
                let _ = acked.await;
            }
            let kind = if paused {
                EventKind::SchedulerPaused
            } else {
                EventKind::SchedulerResumed
            };
            tracing::info!("scheduler {}", if paused { "paused" } else { "resumed" });
            self.inner.bus.publish(Event::new(kind, ""));
        }
        Ok(self.state())
    }

    /// Stops firing, gives running runs `grace` to finish, then kills their tasks and
    /// marks the runs interrupted. Returns once every run has ended.
    pub async fn shutdown(&self, grace: Duration) {
        let already = std::mem::replace(
            &mut self.inner.state.lock().expect("engine state lock").stopping,
            true,
        );
        if already {
            self.wait_idle(None).await;
            return;
        }
        let _ = self.inner.scheduler.send(SchedulerCommand::Stop);
        if !self.wait_idle(Some(grace)).await {
            tracing::warn!("grace period over");
            self.interrupt_runs();
        }
        self.wait_idle(None).await;
        self.inner.runs.close();
        self.inner.runs.wait().await;
    }

    /// Interrupts every active run now: its tasks are stopped (SIGTERM to each process
    /// group, then SIGKILL) and it ends `interrupted`. What `shutdown` does once the
    /// grace period is over; a second SIGTERM or SIGINT to petitd cuts the grace short
    /// with it.
    pub fn interrupt_runs(&self) {
        let state = self.inner.state.lock().expect("engine state lock");
        if !state.active.is_empty() {
            tracing::warn!(
                runs = state.active.len(),
                "interrupting the runs still going"
            );
        }
        for active in state.active.values() {
            active.stop.send_if_modified(|reason| {
                let first = reason.is_none();
                *reason = Some(StopReason::Interrupt);
                first
            });
        }
    }

    /// Waits until no run is active, or until `timeout`; whether it is idle.
    async fn wait_idle(&self, timeout: Option<Duration>) -> bool {
        let mut count = self.inner.active_count.subscribe();
        let idle = async move { count.wait_for(|&n| n == 0).await.is_ok() };
        match timeout {
            Some(t) => tokio::time::timeout(t, idle).await.unwrap_or(false),
            None => idle.await,
        }
    }
}

/// Applies the log retention now and then every hour, for as long as the engine lives.
async fn prune_logs_hourly(inner: std::sync::Weak<Inner>, retention: Duration) {
    const EVERY: Duration = Duration::from_secs(3600);
    loop {
        let Some(engine) = inner.upgrade() else {
            return;
        };
        let cutoff =
            Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        match engine.store.prune_logs(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                lines = n,
                "deleted log lines older than the retention period"
            ),
            Err(e) => tracing::warn!("cannot apply log retention: {e}"),
        }
        drop(engine);
        tokio::time::sleep(EVERY).await;
    }
}
