//! The engine: the face of Petit's core for the daemon, the API and embedders.
//!
//! One task, the owner (`owner.rs`), holds the live state: the job table, the timers,
//! the paused flag, the registry of queued and running runs and the limits. The handle
//! ([`Engine`]) sends it commands with a reply each, and reads what the owner publishes
//! (a [`View`]); reads of history go to the store directly. Nothing else changes that
//! state, so each fact has one copy.

mod backfill;
mod cluster;
mod deps;
mod owner;
mod registry;
mod timers;
mod wall_clock;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio_util::task::TaskTracker;

use crate::core::clock::Clock;
use crate::core::JobDef;
use crate::events::{Event, EventBus, Logs, Subscription};
use crate::exec::ledger::Ledger;
use crate::exec::{ExecEnv, Scratch, Task};
use crate::store::{ClusterStore, JobRecord, NodeRecord, Run, Store, StoreError};
pub use backfill::MAX_INSTANTS as MAX_BACKFILL;
use cluster::Cluster;
pub use cluster::ClusterOptions;
pub use owner::Backfill;
use owner::{Command, Owner};
pub use timers::UPCOMING;
pub use wall_clock::{WallClock, WallClockAlarm};

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
    /// Where the engine reads the time and waits for fire instants: the wall clock
    /// when `None`; tests pass a `ManualClock`.
    pub clock: Option<Arc<dyn Clock>>,
    /// Reads the job set again, for `reload` (blocking work: it runs off the
    /// executor). `None`: this engine cannot reload.
    pub loader: Option<JobLoader>,
    /// Cluster mode (with [`Engine::start_cluster`]): who this node is and its lease.
    pub cluster: Option<ClusterOptions>,
}

/// Reads the job definitions again (the daemon: its jobs directory and `petit.yaml`);
/// the errors as `file:line: message` lines.
#[derive(Clone)]
pub struct JobLoader(pub Arc<dyn Fn() -> Result<Vec<JobDef>, Vec<String>> + Send + Sync>);

impl std::fmt::Debug for JobLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobLoader")
    }
}

/// What a reload changed, by job id (each list sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
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
            clock: None,
            loader: None,
            cluster: None,
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
    pub queued_runs: usize,
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
            EngineError::QueueFull { .. } => "queue_full",
            EngineError::RunEnded { .. } => "ended",
            EngineError::InvalidArgument(_) | EngineError::ReloadRefused(_) => "invalid",
            EngineError::DefinitionMismatch(_) => "definition",
            EngineError::ShuttingDown => "shutting_down",
            EngineError::Store(e) if e.is_fire_taken() => "duplicate",
            EngineError::Store(_) | EngineError::Io { .. } => "storage",
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
    #[error("job '{job_id}' already has {limit} run(s) queued (max_queued {limit})")]
    QueueFull { job_id: String, limit: u32 },
    #[error("run '{run_id}' has already ended ({status})")]
    RunEnded { run_id: String, status: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("the scheduler is shutting down")]
    ShuttingDown,
    /// Cluster mode: this node's definition of the job differs from the cluster's.
    #[error(
        "job '{0}' is defined differently on this node than in the cluster (another node \
         loaded newer job files): reload this node's job files, or ask another node"
    )]
    DefinitionMismatch(String),
    /// The job files have errors: the previous definitions stay.
    #[error("the job files have errors; the previous definitions stay:\n{}", .0.join("\n"))]
    ReloadRefused(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine's own files (scratch directory, process ledger).
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// What the owner task publishes for readers: the job table and the live counts.
/// Borrowed briefly, never across an await.
pub struct View {
    pub jobs: Arc<BTreeMap<String, Arc<JobDef>>>,
    /// Each scheduled job's next fire instants (up to [`UPCOMING`]), as armed: empty
    /// while the scheduler is paused.
    pub upcoming: HashMap<String, Arc<[DateTime<Utc>]>>,
    /// Jobs paused on their own (`PauseJob`).
    pub paused_jobs: HashSet<String>,
    /// Each job's newest run as it now stands (jobs that never ran have none). Shared:
    /// a run that did not change is the same `Arc`, so readers that keep what they
    /// built from it (the API's job cache) compare pointers, not runs.
    pub last_runs: HashMap<String, Arc<Run>>,
    pub paused: bool,
    pub stopping: bool,
    pub running: usize,
    pub queued: usize,
    /// Cluster mode: jobs whose definition here differs from the cluster's.
    pub mismatched: HashSet<String>,
}

/// The first `n` of a job's next fire instants given those its timer has `armed` (up to
/// [`UPCOMING`]): more are computed from the schedule when `n` is larger.
pub fn fires_from(armed: &[DateTime<Utc>], job: Option<&JobDef>, n: usize) -> Vec<DateTime<Utc>> {
    let mut fires: Vec<DateTime<Utc>> = armed.iter().take(n).copied().collect();
    if fires.len() < n && armed.len() == UPCOMING {
        if let (Some(last), Some(schedule)) =
            (fires.last().copied(), job.and_then(|j| j.schedule.as_ref()))
        {
            fires.extend(schedule.upcoming(last, n - fires.len()));
        }
    }
    fires
}

/// A handle on a running engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// What the handles and the owner share (all immutable or internally synchronised).
pub(crate) struct Inner {
    store: Arc<dyn Store>,
    bus: EventBus,
    env: Arc<ExecEnv>,
    options: EngineOptions,
    clock: Arc<dyn Clock>,
    started_at: DateTime<Utc>,
    commands: mpsc::UnboundedSender<Command>,
    view: watch::Receiver<View>,
    /// The run tasks, for shutdown to wait on.
    runs: TaskTracker,
    /// Cluster mode: the shared store and this node's part.
    cluster: Option<Arc<Cluster>>,
}

impl Engine {
    /// Settles runs a crash left unfinished, records the jobs, and starts the owner
    /// task (timers included).
    pub async fn start(
        jobs: Vec<JobDef>,
        store: Arc<dyn Store>,
        options: EngineOptions,
    ) -> Result<Engine, EngineError> {
        Self::start_with_tasks(jobs, store, options, HashMap::new()).await
    }

    /// As `start`, as a node of a cluster: `store` and `cluster` are the same shared
    /// store (PostgreSQL), `options.cluster` says who this node is.
    pub async fn start_cluster(
        jobs: Vec<JobDef>,
        store: Arc<dyn Store>,
        cluster: Arc<dyn ClusterStore>,
        options: EngineOptions,
    ) -> Result<Engine, EngineError> {
        let Some(node) = options.cluster.clone() else {
            return Err(EngineError::InvalidArgument(
                "a cluster engine needs its node's options".into(),
            ));
        };
        Self::start_inner(
            jobs,
            store,
            options,
            HashMap::new(),
            Some(Arc::new(Cluster {
                store: cluster,
                options: node,
            })),
        )
        .await
    }

    /// As `start`, with embedded `Task` implementations used instead of the commands of
    /// the given (job id, task id) pairs.
    pub async fn start_with_tasks(
        jobs: Vec<JobDef>,
        store: Arc<dyn Store>,
        options: EngineOptions,
        custom_tasks: HashMap<(String, String), Arc<dyn Task>>,
    ) -> Result<Engine, EngineError> {
        Self::start_inner(jobs, store, options, custom_tasks, None).await
    }

    async fn start_inner(
        jobs: Vec<JobDef>,
        store: Arc<dyn Store>,
        options: EngineOptions,
        custom_tasks: HashMap<(String, String), Arc<dyn Task>>,
        cluster: Option<Arc<Cluster>>,
    ) -> Result<Engine, EngineError> {
        let jobs: BTreeMap<String, Arc<JobDef>> = jobs
            .into_iter()
            .map(|j| (j.id.clone(), Arc::new(j)))
            .collect();
        let clock: Arc<dyn Clock> = options
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(WallClock::default()));
        // File system work: off the executor threads.
        let owned = options.scratch_dir.clone();
        let scratch = tokio::task::spawn_blocking(move || Scratch::create(owned))
            .await
            .map_err(|e| EngineError::Io {
                context: "scratch directory".into(),
                source: std::io::Error::other(e),
            })?
            .map_err(|e| EngineError::Io {
                context: e.context,
                source: e.source,
            })?;
        let ledger = match &options.process_ledger {
            Some(dir) => {
                // File system work: off the executor threads.
                let dir = dir.clone();
                let opened = tokio::task::spawn_blocking(move || {
                    let ledger = Ledger::open(&dir).map_err(|source| EngineError::Io {
                        context: format!("cannot open the process ledger {}", dir.display()),
                        source,
                    })?;
                    let killed = ledger.kill_orphans();
                    Ok::<_, EngineError>((ledger, killed))
                })
                .await
                .map_err(|e| EngineError::Io {
                    context: "process ledger".into(),
                    source: std::io::Error::other(e),
                })?;
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
            shared_pools: cluster.as_ref().map(|c| {
                Arc::new(crate::exec::shared_pools::SharedPools {
                    store: c.store.clone(),
                    sizes: options.pools.clone(),
                    freed: Arc::new(tokio::sync::Notify::new()),
                })
            }),
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
        let now = clock.now();
        let records = jobs
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

        let (commands, receiver) = mpsc::unbounded_channel();
        let jobs = Arc::new(jobs);
        let (view_tx, view) = watch::channel(View {
            jobs: jobs.clone(),
            upcoming: HashMap::new(),
            last_runs: HashMap::new(),
            paused_jobs: HashSet::new(),
            paused,
            stopping: false,
            running: 0,
            queued: 0,
            mismatched: HashSet::new(),
        });
        let inner = Arc::new(Inner {
            store,
            bus,
            env,
            options,
            clock,
            started_at: now,
            commands,
            view,
            runs: TaskTracker::new(),
            cluster,
        });
        let paused_jobs: HashSet<String> = inner.store.paused_jobs().await?.into_iter().collect();
        if !paused_jobs.is_empty() {
            let list: Vec<&str> = paused_jobs.iter().map(String::as_str).collect();
            tracing::warn!(jobs = %list.join(", "), "jobs were left paused: no scheduled fires of theirs until resumed (`petitctl resume JOB`)");
        }
        let mut owner = Owner::new(&inner, jobs, paused, paused_jobs, view_tx);
        owner.recover().await?;
        if let Some(cluster) = &inner.cluster {
            cluster::spawn(
                cluster,
                inner.store.clone(),
                inner.bus.clone(),
                inner.commands.downgrade(),
                inner.view.clone(),
                inner.env.shared_pools.as_ref().map(|p| p.freed.clone()),
            );
        }
        tokio::spawn(owner.run(receiver));
        if let Some(retention) = inner.options.log_retention {
            tokio::spawn(prune_logs_hourly(Arc::downgrade(&inner), retention));
        }
        tokio::spawn(apply_history_every(Arc::downgrade(&inner), HISTORY_EVERY));
        Ok(Engine { inner })
    }

    /// Every job, sorted by id.
    pub fn jobs(&self) -> Vec<Arc<JobDef>> {
        self.inner.view.borrow().jobs.values().cloned().collect()
    }

    pub fn job(&self, job_id: &str) -> Option<Arc<JobDef>> {
        self.inner.view.borrow().jobs.get(job_id).cloned()
    }

    /// The next `n` fire instants of a job, as its timer is armed: empty when it has no
    /// schedule, is disabled, or the scheduler is paused.
    pub fn next_fires(&self, job_id: &str, n: usize) -> Vec<DateTime<Utc>> {
        let view = self.inner.view.borrow();
        let Some(armed) = view.upcoming.get(job_id).cloned() else {
            return Vec::new();
        };
        let job = view.jobs.get(job_id).cloned();
        drop(view);
        fires_from(&armed, job.as_deref(), n)
    }

    /// Calls `f` on the published view, without copying it (the API's per-job cache
    /// compares its entries with it). `f` must be quick: the owner cannot publish a new
    /// view meanwhile.
    pub fn with_view<R>(&self, f: impl FnOnce(&View) -> R) -> R {
        f(&self.inner.view.borrow())
    }

    /// The newest run of a job, as the engine last saw it (no store read).
    pub fn last_run(&self, job_id: &str) -> Option<Run> {
        self.inner
            .view
            .borrow()
            .last_runs
            .get(job_id)
            .map(|run| Run::clone(run))
    }

    pub fn state(&self) -> SchedulerInfo {
        let view = self.inner.view.borrow();
        SchedulerInfo {
            paused: view.paused,
            stopping: view.stopping,
            job_count: view.jobs.len(),
            running_runs: view.running,
            queued_runs: view.queued,
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

    /// Every event from now on, every log line included.
    pub fn subscribe(&self) -> Subscription {
        self.inner.bus.subscribe(Logs::All)
    }

    /// Every event from now on but log lines, of which only those `logs` asks for.
    pub fn subscribe_with(&self, logs: Logs) -> Subscription {
        self.inner.bus.subscribe(logs)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The engine's clock (the wall clock in the daemon).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Sends a command and waits for its reply.
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(command(reply))
            .map_err(|_| EngineError::ShuttingDown)?;
        answer.await.map_err(|_| EngineError::ShuttingDown)
    }

    /// Queues a run of `job_id` now (it starts as soon as the limits allow). `params`
    /// override `config` values for this run; `force` queues it even when a job
    /// dependency is unmet.
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
        self.ask(|reply| Command::Trigger {
            job_id: job_id.to_string(),
            params,
            force,
            triggered_by,
            retry_of: None,
            reply,
        })
        .await?
    }

    /// Queues a new run of a run's job with the same params (reason `retry`, pointing
    /// at the original), as `triggered_by`. Job dependencies are not checked again.
    pub async fn rerun(
        &self,
        run_id: &str,
        triggered_by: Option<String>,
    ) -> Result<Run, EngineError> {
        let original = self.get_run(run_id).await?;
        if self.job(&original.job_id).is_none() {
            return Err(EngineError::JobNotFound(original.job_id));
        }
        self.ask(|reply| Command::Trigger {
            job_id: original.job_id.clone(),
            params: original.params.clone(),
            force: true,
            triggered_by,
            retry_of: Some(original.id.clone()),
            reply,
        })
        .await?
    }

    /// Cancels a run: a queued run ends `cancelled` at once; a running one has its
    /// processes killed and ends `cancelled`. Returns the run once it has ended.
    pub async fn cancel(&self, run_id: &str) -> Result<Run, EngineError> {
        let cancelling = self
            .ask(|reply| Command::Cancel {
                run_id: run_id.to_string(),
                reply,
            })
            .await?;
        match cancelling? {
            owner::Cancelling::Ended(run) => Ok(*run),
            owner::Cancelling::Wait(mut done) => {
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
            owner::Cancelling::Elsewhere => self.wait_remote_end(run_id).await,
            owner::Cancelling::NotActive => {
                let run = self.get_run(run_id).await?;
                Err(EngineError::RunEnded {
                    run_id: run.id,
                    status: run.status.to_string(),
                })
            }
        }
    }

    /// Waits for the end of a run another node runs (its end arrives as a relayed
    /// event), up to the other node's kill grace and some; then the run as stored.
    async fn wait_remote_end(&self, run_id: &str) -> Result<Run, EngineError> {
        let mut events = self.subscribe_with(Logs::None);
        let run = self.get_run(run_id).await?;
        if run.status.is_terminal() {
            return Ok(run);
        }
        let deadline = self.inner.options.kill_grace + Duration::from_secs(30);
        let ended = tokio::time::timeout(deadline, async {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        if let Event::Run { run, .. } = &*event {
                            if run.id == run_id && run.status.is_terminal() {
                                return Some(run.clone());
                            }
                        }
                    }
                    Err(crate::events::RecvError::Lagged(_)) => {
                        if let Ok(run) = self.get_run(run_id).await {
                            if run.status.is_terminal() {
                                return Some(run);
                            }
                        }
                    }
                    Err(crate::events::RecvError::Closed) => return None,
                }
            }
        })
        .await
        .ok()
        .flatten();
        match ended {
            Some(run) => Ok(run),
            None => self.get_run(run_id).await,
        }
    }

    /// Cluster mode: the nodes as the shared store lists them (`None` alone).
    pub async fn nodes(&self) -> Result<Option<Vec<NodeRecord>>, EngineError> {
        match &self.inner.cluster {
            Some(cluster) => Ok(Some(cluster.nodes().await?)),
            None => Ok(None),
        }
    }

    /// Cluster mode: this node's id and epoch.
    pub fn node(&self) -> Option<(String, u64)> {
        let cluster = self.inner.cluster.as_ref()?;
        cluster.store.lease().map(|l| (l.node_id, l.epoch))
    }

    /// Cluster mode: the jobs whose definition here differs from the cluster's, sorted.
    pub fn mismatched_jobs(&self) -> Vec<String> {
        let mut jobs: Vec<String> = self
            .inner
            .view
            .borrow()
            .mismatched
            .iter()
            .cloned()
            .collect();
        jobs.sort();
        jobs
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
        self.ask(|reply| Command::SetPaused { paused, reply })
            .await??;
        Ok(self.state())
    }

    /// Stops one job's scheduled fires (manual triggers still work); stored, so that it
    /// survives restarts.
    pub async fn pause_job(&self, job_id: &str) -> Result<(), EngineError> {
        self.set_job_paused(job_id, true).await
    }

    /// Fires one job's schedule again from now on.
    pub async fn resume_job(&self, job_id: &str) -> Result<(), EngineError> {
        self.set_job_paused(job_id, false).await
    }

    async fn set_job_paused(&self, job_id: &str, paused: bool) -> Result<(), EngineError> {
        self.ask(|reply| Command::SetJobPaused {
            job_id: job_id.to_string(),
            paused,
            reply,
        })
        .await?
    }

    /// Queues one run (reason `backfill`) per instant of the job's schedule in
    /// `[from, to]` that has no run yet; with `dry_run`, only says which.
    pub async fn backfill(
        &self,
        job_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        dry_run: bool,
        triggered_by: Option<String>,
    ) -> Result<Backfill, EngineError> {
        self.ask(|reply| Command::Backfill {
            job_id: job_id.to_string(),
            from,
            to,
            dry_run,
            triggered_by,
            reply,
        })
        .await?
    }

    /// Reads the job set again and replaces the live one whole: runs in flight finish
    /// on the definition they started with; timers of changed jobs are re-armed,
    /// removed jobs stop firing (their history stays), new jobs start firing. Job
    /// files with errors change nothing and are refused with every error.
    pub async fn reload(&self) -> Result<ReloadDiff, EngineError> {
        let Some(loader) = self.inner.options.loader.clone() else {
            return Err(EngineError::InvalidArgument(
                "this engine was started without job files to reload".into(),
            ));
        };
        let jobs = tokio::task::spawn_blocking(move || (loader.0)())
            .await
            .map_err(|e| EngineError::Io {
                context: "reading the job files".into(),
                source: std::io::Error::other(e),
            })?
            .map_err(EngineError::ReloadRefused)?;
        self.ask(|reply| Command::Reload { jobs, reply }).await?
    }

    /// Whether a job is paused on its own.
    pub fn is_job_paused(&self, job_id: &str) -> bool {
        self.inner.view.borrow().paused_jobs.contains(job_id)
    }

    /// Returns once the engine has handled every command sent before and every fire due
    /// at its clock's current time. For tests on a `ManualClock`: advance the clock,
    /// then `settle`, then look.
    pub async fn settle(&self) {
        let _ = self.ask(|reply| Command::Settle { reply }).await;
    }

    /// Stops firing and starting queued runs, gives running runs `grace` to finish,
    /// then kills their tasks and marks the runs interrupted. Returns once every run has
    /// ended. Queued runs stay queued in the store: the next start runs them.
    pub async fn shutdown(&self, grace: Duration) {
        let already = self
            .ask(|reply| Command::Stop { reply })
            .await
            .unwrap_or(true);
        if already {
            self.wait_idle(None).await;
            return;
        }
        if !self.wait_idle(Some(grace)).await {
            tracing::warn!("grace period over");
            self.interrupt_runs();
        }
        self.wait_idle(None).await;
        self.inner.runs.close();
        self.inner.runs.wait().await;
        if let Some(cluster) = &self.inner.cluster {
            cluster::leave(&Arc::downgrade(cluster)).await;
        }
    }

    /// Interrupts every running run now: its tasks are stopped (SIGTERM to each process
    /// group, then SIGKILL) and it ends `interrupted`. What `shutdown` does once the
    /// grace period is over; a second SIGTERM or SIGINT to petitd cuts the grace short
    /// with it.
    pub fn interrupt_runs(&self) {
        let _ = self.inner.commands.send(Command::Interrupt);
    }

    /// Waits until no run is running, or until `timeout`; whether it is idle.
    async fn wait_idle(&self, timeout: Option<Duration>) -> bool {
        let mut view = self.inner.view.clone();
        let idle = async move { view.wait_for(|v| v.running == 0).await.is_ok() };
        match timeout {
            Some(t) => tokio::time::timeout(t, idle).await.unwrap_or(false),
            None => idle.await,
        }
    }
}

/// How often each job's `history` bounds are applied (and once at start).
const HISTORY_EVERY: Duration = Duration::from_secs(600);
/// Runs deleted in one store transaction: short, so the writer and the API never wait
/// long behind a prune.
const HISTORY_BATCH: usize = 200;

impl Engine {
    /// Deletes the runs beyond each job's `history` bounds (with their tasks, outputs
    /// and logs), in small transactions; queued and running runs stay. Returns how
    /// many runs went. petitd does it at start and every 10 minutes.
    pub async fn apply_history(&self) -> Result<usize, EngineError> {
        apply_history(&self.inner).await
    }
}

async fn apply_history(inner: &Inner) -> Result<usize, EngineError> {
    let jobs: Vec<Arc<JobDef>> = inner.view.borrow().jobs.values().cloned().collect();
    let now = inner.clock.now();
    let mut total = 0;
    for job in jobs.iter().filter(|j| j.history.is_bounded()) {
        let cutoff = job
            .history
            .max_age
            .map(|age| now - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX));
        loop {
            let n = inner
                .store
                .prune_runs(&job.id, job.history.max_runs, cutoff, HISTORY_BATCH)
                .await?;
            total += n;
            if n < HISTORY_BATCH {
                break;
            }
            // Let other writes in between batches.
            tokio::task::yield_now().await;
        }
    }
    if total > 0 {
        tracing::info!(runs = total, "deleted runs beyond the jobs' history bounds");
    }
    Ok(total)
}

/// Applies the jobs' history bounds now and then every `every`.
async fn apply_history_every(inner: std::sync::Weak<Inner>, every: Duration) {
    loop {
        let Some(engine) = inner.upgrade() else {
            return;
        };
        if let Err(e) = apply_history(&engine).await {
            tracing::warn!("cannot apply the jobs' history bounds: {e}");
        }
        drop(engine);
        tokio::time::sleep(every).await;
    }
}

/// Applies the log retention now and then every hour, for as long as the engine lives.
async fn prune_logs_hourly(inner: std::sync::Weak<Inner>, retention: Duration) {
    const EVERY: Duration = Duration::from_secs(3600);
    loop {
        let Some(engine) = inner.upgrade() else {
            return;
        };
        let cutoff = engine.clock.now()
            - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
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
