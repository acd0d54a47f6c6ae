//! The owner task: the one place where the engine's live state changes. It waits for a
//! command or for the next fire instant on the engine's clock, whichever comes first,
//! handles it, starts the queued runs the limits allow, and publishes a fresh
//! [`View`](super::View).
//!
//! A run's life through here: stored `queued` (with an event), claimed when a slot is
//! free (stored `running`), executed on a task of its own, and on its end its slot is
//! freed (an `Ending` command) before the end is stored and published, so a client that
//! sees the end and triggers again is never refused for concurrency.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::task::TaskTracker;

use super::backfill;
use super::cluster::Cluster;
use super::registry::{Active, Queued, Registry};
use super::timers::Timers;
use super::{deps, EngineError, EngineOptions, Inner, View};
use crate::core::clock::{Clock, Wake};
use crate::core::job::{Catchup, Overlap};
use crate::core::{JobDef, Run, RunStatus, TaskRun, TaskStatus, TriggerReason};
use crate::events::{Event, EventBus};
use crate::exec::{execute_run, finish_run, open_tasks, ExecEnv, StopReason};
use crate::store::Store;

/// What the handles (and the run tasks) ask of the owner.
pub enum Command {
    /// Queue a manual run.
    Trigger {
        job_id: String,
        params: BTreeMap<String, String>,
        force: bool,
        triggered_by: Option<String>,
        /// `Some`: a re-run of this run (reason `retry`).
        retry_of: Option<String>,
        reply: oneshot::Sender<Result<Run, EngineError>>,
    },
    Cancel {
        run_id: String,
        reply: oneshot::Sender<Result<Cancelling, EngineError>>,
    },
    SetPaused {
        paused: bool,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    SetJobPaused {
        job_id: String,
        paused: bool,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Backfill {
        job_id: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        dry_run: bool,
        triggered_by: Option<String>,
        reply: oneshot::Sender<Result<Backfill, EngineError>>,
    },
    /// Replace the job set.
    Reload {
        jobs: Vec<JobDef>,
        reply: oneshot::Sender<Result<super::ReloadDiff, EngineError>>,
    },
    /// Handle what is due at the clock's now, then answer.
    Settle { reply: oneshot::Sender<()> },
    /// Stop firing and claiming; answers whether it was stopping already.
    Stop { reply: oneshot::Sender<bool> },
    /// Interrupt every running run.
    Interrupt,
    /// From a run's task: the run has ended (its final record) and its end is about to
    /// be stored.
    Ending { run: Run },
    /// Cluster mode: the shared queue may have a run for this node (a note, a sweep).
    Claim,
    /// Cluster mode: runs now this node's (taken over from a dead node): resume them.
    Adopt { runs: Vec<Run> },
    /// Cluster mode: the lease is lost: stop the runs here, claim nothing.
    Fenced,
    /// Cluster mode: joined again as a new epoch, with the runs that came with it.
    Rejoined { runs: Vec<Run> },
    /// Cluster mode: another node changed this run (the view's last runs follow).
    Noted { run: Run },
    /// Cluster mode: another node changed a pause.
    SyncPauses,
    /// Cluster mode: someone asked for a run to be cancelled (it may run here).
    CancelHere { run_id: String },
    /// Cluster mode: another node stored new definitions.
    CompareDefinitions,
}

/// Why a run is queued: its trigger reason, and for a re-run the run it repeats.
pub struct Origin {
    pub trigger: TriggerReason,
    pub retry_of: Option<String>,
}

impl From<TriggerReason> for Origin {
    fn from(trigger: TriggerReason) -> Origin {
        Origin {
            trigger,
            retry_of: None,
        }
    }
}

/// What a backfill queued (or, dry, would queue).
#[derive(Debug, Clone, Default)]
pub struct Backfill {
    /// The instants without a run, oldest first.
    pub instants: Vec<DateTime<Utc>>,
    /// The runs queued for them, in order (none for a dry run).
    pub runs: Vec<Run>,
    /// Instants of the range that already had a run.
    pub already_run: usize,
}

/// The answer to a cancel.
pub enum Cancelling {
    /// It was queued: it is cancelled now.
    Ended(Box<Run>),
    /// It is running: told to stop; its final record appears here.
    Wait(watch::Receiver<Option<Run>>),
    /// Running on another node of the cluster, which was asked to stop it.
    Elsewhere,
    /// Neither queued nor running here.
    NotActive,
}

pub struct Owner {
    pub(super) store: Arc<dyn Store>,
    pub(super) bus: EventBus,
    env: Arc<ExecEnv>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) options: EngineOptions,
    runs: TaskTracker,
    /// Weak: the owner must not keep its own command channel open (it ends when every
    /// handle and run task is gone).
    commands: mpsc::WeakUnboundedSender<Command>,
    pub(super) view: watch::Sender<View>,
    pub(super) jobs: Arc<BTreeMap<String, Arc<JobDef>>>,
    timers: Timers,
    pub(super) paused: bool,
    pub(super) stopping: bool,
    pub(super) registry: Registry,
    /// The latest time the owner has acted on, to notice the clock going back.
    last_now: DateTime<Utc>,
    /// Cluster mode: the shared store (the queue is the database's).
    pub(super) cluster: Option<Arc<Cluster>>,
    /// Cluster mode: the lease is lost; nothing is claimed until the node joins again.
    pub(super) fenced: bool,
    /// Cluster mode: jobs whose definition here differs from the cluster's.
    pub(super) mismatched: HashSet<String>,
    /// Cluster mode: something may be claimable (a note, a run queued or ended here);
    /// the shared queue is read only then, not after every command.
    pub(super) claim_due: bool,
}

impl Owner {
    pub fn new(
        inner: &Inner,
        jobs: Arc<BTreeMap<String, Arc<JobDef>>>,
        paused: bool,
        paused_jobs: HashSet<String>,
        view: watch::Sender<View>,
    ) -> Owner {
        let now = inner.clock.now();
        let mut timers = Timers::new(jobs.values().cloned(), now);
        for job_id in &paused_jobs {
            timers.set_paused(job_id, true, now);
        }
        let owner = Owner {
            store: inner.store.clone(),
            bus: inner.bus.clone(),
            env: inner.env.clone(),
            clock: inner.clock.clone(),
            options: inner.options.clone(),
            runs: inner.runs.clone(),
            commands: inner.commands.downgrade(),
            view,
            jobs,
            timers,
            paused,
            stopping: false,
            registry: Registry::default(),
            last_now: now,
            cluster: inner.cluster.clone(),
            fenced: false,
            mismatched: HashSet::new(),
            claim_due: true,
        };
        owner.publish_upcoming();
        owner.view.send_modify(|v| v.paused_jobs = paused_jobs);
        owner
    }

    /// Settles the runs a crash (or a stop) left: queued runs go back in the queue in
    /// their order; running ones resume (their running tasks become `interrupted`, and
    /// are retried if their policy allows, else failed) until they end.
    pub async fn recover(&mut self) -> Result<(), EngineError> {
        let store = self.store.clone();
        let ids: Vec<String> = self.jobs.keys().cloned().collect();
        let last_runs = store.last_runs(&ids).await?;
        self.view.send_modify(|v| {
            v.last_runs = last_runs
                .into_iter()
                .map(|(job, run)| (job, Arc::new(run)))
                .collect();
        });
        if self.cluster.is_some() {
            // The queue and the other nodes' runs are the cluster's: only what this
            // node's earlier epochs left is this node's to resume.
            return self.join_cluster().await;
        }
        let mut unfinished = store.unfinished_runs().await?;
        unfinished.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        for run in unfinished {
            self.resume_unfinished(run).await?;
        }
        self.publish_counts();
        Ok(())
    }

    /// Settles one run a crash left: a queued one goes back in the queue; a running
    /// one resumes (its running tasks `interrupted`, retried by policy, else failed).
    pub(super) async fn resume_unfinished(&mut self, mut run: Run) -> Result<(), EngineError> {
        let store = self.store.clone();
        {
            let mut tasks = store.task_runs(&run.id).await?;
            let Some(job) = self.jobs.get(&run.job_id).cloned() else {
                run.status = RunStatus::Failed;
                run.ended_at = Some(self.clock.now());
                run.error = Some(format!(
                    "job '{}' is no longer defined; the run could not resume after a restart",
                    run.job_id
                ));
                tracing::warn!(job = %run.job_id, run = %run.id, "failing an unfinished run of a job that no longer exists");
                store.update_run(run.clone()).await?;
                self.bus.publish(Event::of_run(run));
                return Ok(());
            };
            if run.status == RunStatus::Queued {
                tracing::info!(job = %run.job_id, run = %run.id, "a queued run waits again after the restart");
                self.registry.enqueue(Queued {
                    job,
                    run,
                    tasks,
                    unlimited: false,
                });
                return Ok(());
            }
            for task in tasks
                .iter_mut()
                .filter(|t| matches!(t.status, TaskStatus::Running | TaskStatus::Retrying))
            {
                task.status = TaskStatus::Interrupted;
                task.ended_at = Some(self.clock.now());
                task.error = Some("interrupted: the daemon stopped while the task ran".to_string());
                store.update_task_run(task.clone()).await?;
            }
            tracing::warn!(job = %run.job_id, run = %run.id, "resuming a run the previous daemon left unfinished");
            self.registry.adopt(&run.job_id);
            self.start(job, run, tasks);
        }
        Ok(())
    }

    /// Runs until every handle and every run task is gone.
    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        self.catch_up(None).await;
        loop {
            self.claim_queued().await;
            self.publish_counts();
            let next = match self.paused || self.stopping {
                true => None,
                false => self.timers.next(),
            };
            let clock = self.clock.clone();
            let sleep = async move {
                match next {
                    Some(at) => clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => return,
                },
                wake = sleep => {
                    self.fire_due().await;
                    if wake == Wake::ClockChanged {
                        let now = self.clock.now();
                        tracing::info!("the system clock was set; fire times recomputed from {now}");
                        self.timers.reset(now);
                        self.publish_upcoming();
                    }
                }
            }
        }
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Trigger {
                job_id,
                params,
                force,
                triggered_by,
                retry_of,
                reply,
            } => {
                let origin = Origin {
                    trigger: match retry_of {
                        Some(_) => TriggerReason::Retry,
                        None => TriggerReason::Manual,
                    },
                    retry_of,
                };
                let result = self
                    .trigger(&job_id, params, force, triggered_by, origin)
                    .await;
                let _ = reply.send(result);
            }
            Command::Cancel { run_id, reply } => {
                let result = self.cancel(&run_id).await;
                let _ = reply.send(result);
            }
            Command::SetPaused { paused, reply } => {
                let result = self.set_paused(paused).await;
                let _ = reply.send(result);
            }
            Command::SetJobPaused {
                job_id,
                paused,
                reply,
            } => {
                let result = self.set_job_paused(&job_id, paused).await;
                let _ = reply.send(result);
            }
            Command::Backfill {
                job_id,
                from,
                to,
                dry_run,
                triggered_by,
                reply,
            } => {
                let result = self
                    .backfill(&job_id, from, to, dry_run, triggered_by)
                    .await;
                let _ = reply.send(result);
            }
            Command::Reload { jobs, reply } => {
                let result = self.reload(jobs).await;
                let _ = reply.send(result);
            }
            Command::Settle { reply } => {
                self.fire_due().await;
                let _ = reply.send(());
            }
            Command::Stop { reply } => {
                let already = std::mem::replace(&mut self.stopping, true);
                self.view.send_modify(|v| v.stopping = true);
                let _ = reply.send(already);
            }
            Command::Interrupt => {
                if self.registry.running() > 0 {
                    tracing::warn!(
                        runs = self.registry.running(),
                        "interrupting the runs still going"
                    );
                }
                self.interrupt_all();
            }
            Command::Ending { run } => {
                self.registry.end(&run.id);
                self.note_run(&run);
                self.claim_due = true;
            }
            Command::Claim => self.claim_due = true,
            Command::Adopt { runs } => {
                if let Err(e) = self.adopt(runs).await {
                    tracing::error!("cannot resume the runs taken over: {e}");
                }
            }
            Command::Fenced => self.fence(),
            Command::Rejoined { runs } => {
                self.fenced = false;
                self.claim_due = true;
                if let Err(e) = self.adopt(runs).await {
                    tracing::error!("cannot resume the runs taken over: {e}");
                }
                if let Err(e) = self.compare_definitions().await {
                    tracing::warn!("cannot compare the job definitions with the cluster's: {e}");
                }
            }
            Command::Noted { run } => self.note_run(&run),
            Command::SyncPauses => {
                if let Err(e) = self.sync_pauses().await {
                    tracing::warn!("cannot read the cluster's pauses: {e}");
                }
            }
            Command::CancelHere { run_id } => {
                self.cancel_local(&run_id);
            }
            Command::CompareDefinitions => {
                if let Err(e) = self.compare_definitions().await {
                    tracing::warn!("cannot compare the job definitions with the cluster's: {e}");
                }
            }
        }
    }

    /// Stops every run executing here (they end `interrupted`).
    pub(super) fn interrupt_all(&self) {
        for active in self.registry.actives() {
            active.stop.send_if_modified(|reason| {
                let first = reason.is_none();
                *reason = Some(StopReason::Interrupt);
                first
            });
        }
    }

    /// Tells a run executing here to stop (cancelled); where its end will appear, or
    /// `None` when it does not execute here.
    pub(super) fn cancel_local(&self, run_id: &str) -> Option<watch::Receiver<Option<Run>>> {
        let active = self.registry.active(run_id)?;
        active.stop.send_if_modified(|reason| {
            if reason.is_none() {
                *reason = Some(StopReason::Cancel);
                true
            } else {
                false
            }
        });
        Some(active.done.clone())
    }

    async fn trigger(
        &mut self,
        job_id: &str,
        params: BTreeMap<String, String>,
        force: bool,
        triggered_by: Option<String>,
        origin: Origin,
    ) -> Result<Run, EngineError> {
        let job = self.live_job(job_id)?;
        self.check_definition(&job.id)?;
        if !force {
            deps::check(&*self.store, &job, self.clock.now()).await?;
        }
        self.enqueue(job, origin, params, triggered_by, None).await
    }

    /// Refuses a job whose definition here differs from the cluster's.
    fn check_definition(&self, job_id: &str) -> Result<(), EngineError> {
        match self.mismatched.contains(job_id) {
            true => Err(EngineError::DefinitionMismatch(job_id.to_string())),
            false => Ok(()),
        }
    }

    /// The job to act on now: refused while stopping, NOT_FOUND when unknown.
    fn live_job(&self, job_id: &str) -> Result<Arc<JobDef>, EngineError> {
        if self.stopping {
            return Err(EngineError::ShuttingDown);
        }
        self.jobs
            .get(job_id)
            .cloned()
            .ok_or_else(|| EngineError::JobNotFound(job_id.to_string()))
    }

    /// Queues a run for each of the job's instants in `[from, to]` that has none yet.
    /// They bypass the admission check of fires (they wait in the queue for the job's
    /// `max_concurrency`), bounded by `backfill::MAX_INSTANTS`.
    async fn backfill(
        &mut self,
        job_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        dry_run: bool,
        triggered_by: Option<String>,
    ) -> Result<Backfill, EngineError> {
        let job = self.live_job(job_id)?;
        let Some(schedule) = &job.schedule else {
            return Err(EngineError::InvalidArgument(format!(
                "job '{job_id}' has no schedule: there are no instants to backfill"
            )));
        };
        if to < from {
            return Err(EngineError::InvalidArgument(format!(
                "the range ends ({to}) before it starts ({from})"
            )));
        }
        let instants = backfill::instants_between(schedule, from, to, backfill::MAX_INSTANTS)
            .map_err(|e| EngineError::InvalidArgument(format!("backfill of '{job_id}': {e}")))?;
        let taken: HashSet<DateTime<Utc>> = self
            .store
            .fires_between(job_id, from, to)
            .await?
            .into_iter()
            .collect();
        let todo: Vec<DateTime<Utc>> = instants
            .iter()
            .copied()
            .filter(|at| !taken.contains(at))
            .collect();
        let mut done = Backfill {
            already_run: instants.len() - todo.len(),
            instants: todo,
            runs: Vec::new(),
        };
        if dry_run {
            return Ok(done);
        }
        let mut queued = Vec::with_capacity(done.instants.len());
        for at in std::mem::take(&mut done.instants) {
            match self
                .store_queued(
                    job.clone(),
                    TriggerReason::Backfill,
                    BTreeMap::new(),
                    triggered_by.clone(),
                    Some(at),
                    false,
                )
                .await
            {
                Ok(run) => {
                    queued.push(at);
                    done.runs.push(run);
                }
                // Taken meanwhile (a fire of the same instant): left alone.
                Err(EngineError::Store(e)) if e.is_fire_taken() => done.already_run += 1,
                Err(e) => return Err(e),
            }
        }
        done.instants = queued;
        tracing::info!(job = %job_id, runs = done.runs.len(), %from, %to, "backfill queued");
        Ok(done)
    }

    /// Replaces the job set whole. Queued and running runs keep the definition they
    /// were queued with; every timer is armed again from now (an unchanged job's next
    /// instant is the same); pauses, kept by job id, stay.
    async fn reload(&mut self, jobs: Vec<JobDef>) -> Result<super::ReloadDiff, EngineError> {
        if self.stopping {
            return Err(EngineError::ShuttingDown);
        }
        let new: BTreeMap<String, Arc<JobDef>> = jobs
            .into_iter()
            .map(|j| (j.id.clone(), Arc::new(j)))
            .collect();
        let mut diff = super::ReloadDiff::default();
        for (id, job) in &new {
            match self.jobs.get(id) {
                None => diff.added.push(id.clone()),
                Some(old) if old.definition != job.definition || old.source != job.source => {
                    diff.changed.push(id.clone())
                }
                Some(_) => diff.unchanged.push(id.clone()),
            }
        }
        diff.removed = self
            .jobs
            .keys()
            .filter(|id| !new.contains_key(*id))
            .cloned()
            .collect();
        let now = self.clock.now();
        let records = new
            .values()
            .map(|j| crate::store::JobRecord {
                id: j.id.clone(),
                name: j.name.clone(),
                source: j.source.display().to_string(),
                schedule: j.schedule.as_ref().map(|s| s.expression().to_string()),
                updated_at: now,
            })
            .collect();
        self.store.upsert_jobs(records).await?;
        let added_last = self.store.last_runs(&diff.added).await?;
        self.jobs = Arc::new(new);
        self.timers = Timers::new(self.jobs.values().cloned(), now);
        let paused_jobs = self.view.borrow().paused_jobs.clone();
        for job_id in &paused_jobs {
            self.timers.set_paused(job_id, true, now);
        }
        let jobs = self.jobs.clone();
        self.view.send_modify(|v| {
            v.jobs = jobs;
            v.last_runs.extend(
                added_last
                    .into_iter()
                    .map(|(job, run)| (job, Arc::new(run))),
            );
        });
        self.publish_upcoming();
        tracing::info!(
            added = diff.added.len(),
            removed = diff.removed.len(),
            changed = diff.changed.len(),
            unchanged = diff.unchanged.len(),
            "jobs reloaded"
        );
        for id in diff.added.clone() {
            self.catch_up(Some(&id)).await;
        }
        // The reloaded files are the latest: the cluster's definitions from now on.
        self.publish_definitions().await?;
        Ok(diff)
    }

    /// Queues the fires a job with `catchup` missed while the daemon was down or the
    /// job (or the scheduler) paused: from its last stored fire, within its
    /// `catchup_window`, up to now; all of them oldest first, or only the latest. For
    /// one job, or every job not paused. A job that never fired has missed nothing.
    async fn catch_up(&mut self, only: Option<&str>) {
        if self.paused || self.stopping {
            return;
        }
        let now = self.clock.now();
        let jobs: Vec<Arc<JobDef>> = self
            .jobs
            .values()
            .filter(|j| only.is_none_or(|id| j.id == id))
            .filter(|j| j.enabled && j.catchup != Catchup::None && j.schedule.is_some())
            .filter(|j| !self.view.borrow().paused_jobs.contains(&j.id))
            .cloned()
            .collect();
        for job in jobs {
            let last = match self.store.last_fire(&job.id).await {
                Ok(Some(last)) => last,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(job = %job.id, "cannot read the last fire for a catch-up: {e}");
                    continue;
                }
            };
            let window =
                chrono::Duration::from_std(job.catchup_window).unwrap_or(chrono::Duration::MAX);
            let from = (last + chrono::Duration::nanoseconds(1)).max(now - window);
            let schedule = job.schedule.as_ref().expect("filtered on schedules");
            let keep = match job.catchup {
                Catchup::Latest => 1,
                _ => backfill::MAX_INSTANTS,
            };
            let missed = backfill::latest_between(schedule, from, now, keep);
            if missed.is_empty() {
                continue;
            }
            tracing::info!(job = %job.id, runs = missed.len(), since = %last, "catching up on missed fires");
            for at in missed {
                match self
                    .store_queued(
                        job.clone(),
                        TriggerReason::Catchup,
                        BTreeMap::new(),
                        None,
                        Some(at),
                        false,
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(EngineError::Store(e)) if e.is_fire_taken() => {}
                    Err(e) => {
                        tracing::error!(job = %job.id, scheduled = %at, "cannot queue a catch-up run: {e}");
                        break;
                    }
                }
            }
        }
    }

    /// Every fire due at the clock's now: each queues a run, or publishes why it was
    /// skipped.
    async fn fire_due(&mut self) {
        let now = self.clock.now();
        if now < self.last_now {
            // Set back (seen here even when no wait was armed to notice it): instants
            // computed from the later time are wrong.
            tracing::info!("the clock went back to {now}; fire times recomputed");
            self.timers.reset(now);
            self.publish_upcoming();
        }
        self.last_now = now;
        if self.paused || self.stopping {
            return;
        }
        let due = self.timers.take_due(now);
        for (job, at, upcoming) in due {
            let job_id = job.id.clone();
            self.view.send_modify(|v| {
                v.upcoming.insert(job_id, upcoming);
            });
            self.fire(job, at).await;
        }
    }

    async fn fire(&mut self, job: Arc<JobDef>, at: DateTime<Utc>) {
        if self.mismatched.contains(&job.id) || self.fenced {
            // The nodes whose definition matches fire it (and this one claims nothing).
            return;
        }
        let queued = match deps::check(&*self.store, &job, self.clock.now()).await {
            Ok(()) => {
                self.enqueue(
                    job.clone(),
                    TriggerReason::Schedule,
                    BTreeMap::new(),
                    None,
                    Some(at),
                )
                .await
            }
            Err(e) => Err(e),
        };
        match queued {
            Ok(run) => tracing::debug!(job = %job.id, run = %run.id, scheduled = %at, "fired"),
            Err(EngineError::ShuttingDown) => {}
            // Another node queued this fire first: it fired once, as it should.
            Err(EngineError::Store(e)) if self.cluster.is_some() && e.is_fire_taken() => {
                tracing::debug!(job = %job.id, scheduled = %at, "another node queued this fire");
            }
            Err(e) => {
                tracing::info!(job = %job.id, scheduled = %at, "skipped a scheduled fire: {e}");
                self.bus.publish(Event::Skipped {
                    time: self.clock.now(),
                    job_id: job.id.clone(),
                    reason: e.reason(),
                    message: e.to_string(),
                });
            }
        }
    }

    /// Stores a new run `queued` and puts it in the queue, if the job's
    /// `max_concurrency` allows one more.
    async fn enqueue(
        &mut self,
        job: Arc<JobDef>,
        origin: impl Into<Origin>,
        params: BTreeMap<String, String>,
        triggered_by: Option<String>,
        scheduled_for: Option<DateTime<Utc>>,
    ) -> Result<Run, EngineError> {
        if self.stopping {
            return Err(EngineError::ShuttingDown);
        }
        let origin = origin.into();
        let trigger = origin.trigger;
        let mut unlimited = false;
        let (in_flight, queued_n, running_n) = match self.shared_counts(&job.id).await? {
            Some(counts) => counts,
            None => (
                self.registry.of_job(&job.id),
                self.registry.queued_of(&job.id),
                self.registry.running_of(&job.id),
            ),
        };
        if in_flight >= job.max_concurrency as usize {
            let over = || EngineError::ConcurrencyLimit {
                job_id: job.id.clone(),
                limit: job.max_concurrency,
            };
            let scheduled = trigger == TriggerReason::Schedule;
            match job.overlap {
                Overlap::Skip => return Err(over()),
                Overlap::Queue => {
                    if queued_n >= job.max_queued as usize {
                        return Err(EngineError::QueueFull {
                            job_id: job.id.clone(),
                            limit: job.max_queued,
                        });
                    }
                }
                Overlap::Allow if scheduled => unlimited = true,
                Overlap::CancelPrevious if scheduled && self.cluster.is_some() => {
                    self.cancel_previous_shared(&job).await?;
                }
                Overlap::CancelPrevious if scheduled => {
                    // The new fire replaces what waits, and the oldest run going.
                    let _ = running_n;
                    for run_id in self.registry.queued_ids_of(&job.id) {
                        if let Some(queued) = self.registry.take_queued(&run_id) {
                            self.cancel_queued(queued).await?;
                        }
                    }
                    if self.registry.running_of(&job.id) >= job.max_concurrency as usize {
                        if let Some(oldest) = self.registry.oldest_running_of(&job.id) {
                            tracing::info!(job = %job.id, "cancelling the oldest run for a new fire (overlap: cancel_previous)");
                            oldest.stop.send_if_modified(|reason| {
                                let first = reason.is_none();
                                reason.get_or_insert(StopReason::Cancel);
                                first
                            });
                        }
                    }
                }
                // A manual trigger over the limit is refused unless the job queues.
                Overlap::Allow | Overlap::CancelPrevious => return Err(over()),
            }
        }
        self.store_queued(job, origin, params, triggered_by, scheduled_for, unlimited)
            .await
    }

    /// Stores a new run `queued`, publishes it and puts it at the back of the queue.
    async fn store_queued(
        &mut self,
        job: Arc<JobDef>,
        origin: impl Into<Origin>,
        params: BTreeMap<String, String>,
        triggered_by: Option<String>,
        scheduled_for: Option<DateTime<Utc>>,
        unlimited: bool,
    ) -> Result<Run, EngineError> {
        let origin = origin.into();
        let run = Run {
            id: uuid::Uuid::now_v7().to_string(),
            job_id: job.id.clone(),
            status: RunStatus::Queued,
            trigger: origin.trigger,
            retry_of: origin.retry_of,
            params,
            created_at: self.clock.now(),
            started_at: None,
            ended_at: None,
            error: None,
            triggered_by,
            scheduled_for,
            definition: Some(job.definition.clone()).filter(|d| !d.is_empty()),
        };
        let tasks: Vec<TaskRun> = job
            .tasks
            .iter()
            .map(|t| TaskRun::pending(&run.id, &t.id))
            .collect();
        // Nothing waits ahead of it and the limits let it start: created and claimed
        // in one store write (what `claim_queued` would do right after).
        let claim_now = self.cluster.is_none()
            && !self.stopping
            && self.registry.queued() == 0
            && self.registry.running() < self.options.max_concurrent_runs.max(1)
            && (unlimited || self.registry.running_of(&job.id) < job.max_concurrency as usize);
        // Claimed at once, its first tasks' starts go in that same write: the walk
        // starts them without one of its own (one write fewer per run).
        let mut opening = tasks.clone();
        let opened = match claim_now {
            true => open_tasks(&job, &self.env, &mut opening),
            false => Vec::new(),
        };
        let claimed = match claim_now {
            true => {
                let starts = opened.iter().map(|&i| opening[i].clone()).collect();
                self.store
                    .create_claimed_run(run.clone(), tasks.clone(), starts, self.clock.now())
                    .await?
            }
            false => {
                self.store.create_run(run.clone(), tasks.clone()).await?;
                None
            }
        };
        self.bus.publish(Event::of_run(run.clone()));
        self.note_run(&run);
        if self.cluster.is_some() {
            // In the shared queue: claimed by whichever node has room first.
            self.claim_due = true;
            return Ok(run);
        }
        self.registry.enqueue(Queued {
            job,
            run: run.clone(),
            tasks,
            unlimited,
        });
        if let Some(claimed) = claimed {
            let next = self
                .registry
                .next_to_claim(self.options.max_concurrent_runs, |job| {
                    job.max_concurrency as usize
                });
            match next {
                Some(Queued {
                    job, run: queued, ..
                }) if queued.id == claimed.id => {
                    self.note_run(&claimed);
                    self.start_opened(job, claimed, opening, opened);
                }
                // Not reached: the queue was empty and the limits let it start.
                other => {
                    tracing::error!(run = %claimed.id, "a run claimed as it was queued was not the next to start");
                    if let Some(other) = other {
                        self.registry.requeue_front(other);
                    }
                }
            }
        }
        Ok(run)
    }

    /// Starts queued runs, oldest first, while `max_concurrent_runs` allows.
    async fn claim_queued(&mut self) {
        if self.cluster.is_some() {
            return self.claim_shared().await;
        }
        if self.stopping {
            return;
        }
        while let Some(queued) = self
            .registry
            .next_to_claim(self.options.max_concurrent_runs, |job| {
                job.max_concurrency as usize
            })
        {
            match self.store.claim_run(&queued.run.id, self.clock.now()).await {
                Ok(Some(run)) => {
                    self.note_run(&run);
                    let Queued { job, tasks, .. } = queued;
                    self.start(job, run, tasks);
                }
                Ok(None) => {
                    // No longer queued in the store: someone else settled it.
                    tracing::warn!(run = %queued.run.id, "a queued run was no longer queued when claimed");
                    self.registry.forget(&queued.run.job_id);
                }
                Err(e) => {
                    // The run stays queued (it never starts unrecorded); tried again in a
                    // moment, and at every change meanwhile.
                    if e.is_unavailable() {
                        tracing::debug!(run = %queued.run.id, "cannot record the start of a queued run: {e}");
                    } else {
                        tracing::error!(run = %queued.run.id, "cannot record the start of a queued run: {e}");
                    }
                    self.registry.requeue_front(queued);
                    self.claim_later();
                    return;
                }
            }
        }
    }

    /// Asks for another claim attempt in a second (a claim the store refused).
    fn claim_later(&self) {
        let commands = self.commands.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            if let Some(commands) = commands.upgrade() {
                let _ = commands.send(Command::Claim);
            }
        });
    }

    /// Executes a claimed run on a task of its own.
    pub(super) fn start(&mut self, job: Arc<JobDef>, run: Run, tasks: Vec<TaskRun>) {
        self.start_opened(job, run, tasks, Vec::new());
    }

    /// [`Self::start`] of a run whose tasks `opened` were begun and stored with its
    /// claim (`exec::open_tasks`).
    fn start_opened(
        &mut self,
        job: Arc<JobDef>,
        run: Run,
        tasks: Vec<TaskRun>,
        opened: Vec<usize>,
    ) {
        let (stop, stop_rx) = watch::channel(None);
        let stop_timer = stop.clone();
        let (done_tx, done) = watch::channel(None);
        self.registry.activate(
            run.id.clone(),
            Active {
                seq: 0,
                job_id: job.id.clone(),
                stop,
                done,
            },
        );
        // Counted before the run can publish its start: whoever reads the view on
        // that event (systemd's status line) sees it going.
        self.publish_counts();
        let env = self.env.clone();
        let commands = self.commands.upgrade();
        // Every log line of the run, its tasks' included, carries the job and run ids
        // (as span fields: `--log-format json` has them under "span").
        let span = tracing::info_span!("run", job = %job.id, run = %run.id);
        // The job's timeout counts from the run's start (a resumed run's from its first).
        if let Some(limit) = job.timeout {
            let started = run.started_at.unwrap_or_else(|| self.clock.now());
            let left = (started
                + chrono::Duration::from_std(limit).unwrap_or(chrono::Duration::MAX)
                - self.clock.now())
            .to_std()
            .unwrap_or_default();
            let stop = stop_timer.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(left) => {
                        stop.send_if_modified(|reason| {
                            let first = reason.is_none();
                            reason.get_or_insert(StopReason::RunTimeout);
                            first
                        });
                    }
                    _ = stop.closed() => {}
                }
            });
        }
        let body = async move {
            let finished = execute_run(env.clone(), job, run, tasks, opened, stop_rx).await;
            // The slot is free before the end is visible.
            if let Some(commands) = &commands {
                let _ = commands.send(Command::Ending {
                    run: finished.run.clone(),
                });
            }
            let finished = finish_run(&env, finished).await;
            let _ = done_tx.send(Some(finished));
        };
        self.runs.spawn(tracing::Instrument::instrument(body, span));
    }

    async fn cancel(&mut self, run_id: &str) -> Result<Cancelling, EngineError> {
        if let Some(done) = self.cancel_local(run_id) {
            return Ok(Cancelling::Wait(done));
        }
        if let Some(cluster) = self.cluster.clone() {
            // Queued in the shared queue, or running on another node.
            if let Some(cancelled) = self.cancel_shared_queued(run_id).await? {
                return Ok(Cancelling::Ended(Box::new(cancelled)));
            }
            return Ok(match cluster.store.request_cancel(run_id).await? {
                true => Cancelling::Elsewhere,
                false => Cancelling::NotActive,
            });
        }
        let Some(queued) = self.registry.take_queued(run_id) else {
            return Ok(Cancelling::NotActive);
        };
        self.cancel_queued(queued).await
    }

    /// Ends a run cancelled while it waited for a slot (its tasks never started), in
    /// one store write.
    async fn cancel_queued(&mut self, queued: Queued) -> Result<Cancelling, EngineError> {
        let now = self.clock.now();
        let cancelled = match self
            .store
            .cancel_queued(&queued.run.id, now, "cancelled before it started")
            .await
        {
            Ok(Some(run)) => run,
            Ok(None) => return Ok(Cancelling::NotActive),
            Err(e) => {
                // Still queued as far as anyone knows: keep it so.
                self.registry.enqueue_front(queued);
                return Err(e.into());
            }
        };
        for mut task in queued.tasks.into_iter().filter(|t| !t.status.is_terminal()) {
            task.status = TaskStatus::Cancelled;
            task.ended_at = Some(now);
            self.bus
                .publish(Event::of_task(&cancelled.job_id, task, None));
        }
        self.bus.publish(Event::of_run(cancelled.clone()));
        self.note_run(&cancelled);
        Ok(Cancelling::Ended(Box::new(cancelled)))
    }

    async fn set_paused(&mut self, paused: bool) -> Result<(), EngineError> {
        if self.paused == paused {
            return Ok(());
        }
        // Stored first: a pause that is answered is a pause that survives a crash.
        self.store.set_scheduler_paused(paused).await?;
        self.apply_paused(paused).await;
        Ok(())
    }

    /// Pauses or resumes here what is already stored so.
    pub(super) async fn apply_paused(&mut self, paused: bool) {
        self.paused = paused;
        if !paused {
            // Fires missed while paused are made up only for jobs with `catchup`.
            self.timers.reset(self.clock.now());
        }
        self.publish_upcoming();
        self.view.send_modify(|v| v.paused = paused);
        tracing::info!("scheduler {}", if paused { "paused" } else { "resumed" });
        self.bus.publish(Event::Scheduler {
            time: self.clock.now(),
            paused,
        });
        if !paused {
            self.catch_up(None).await;
        }
    }

    async fn set_job_paused(&mut self, job_id: &str, paused: bool) -> Result<(), EngineError> {
        if !self.jobs.contains_key(job_id) {
            return Err(EngineError::JobNotFound(job_id.to_string()));
        }
        if self.view.borrow().paused_jobs.contains(job_id) == paused {
            return Ok(());
        }
        // Stored first: a pause that is answered is a pause that survives a crash.
        self.store.set_job_paused(job_id, paused).await?;
        self.apply_job_paused(job_id, paused).await;
        Ok(())
    }

    /// Pauses or resumes here one job as already stored.
    pub(super) async fn apply_job_paused(&mut self, job_id: &str, paused: bool) {
        let now = self.clock.now();
        self.timers.set_paused(job_id, paused, now);
        let upcoming = match self.paused {
            true => None,
            false => self.timers.upcoming_of_job(job_id),
        };
        self.view.send_modify(|v| {
            if paused {
                v.paused_jobs.insert(job_id.to_string());
            } else {
                v.paused_jobs.remove(job_id);
            }
            if let Some(upcoming) = upcoming {
                v.upcoming.insert(job_id.to_string(), upcoming);
            }
        });
        tracing::info!(job = %job_id, "job {}", if paused { "paused" } else { "resumed" });
        self.bus.publish(Event::JobPause {
            time: now,
            job_id: job_id.to_string(),
            paused,
        });
        if !paused {
            self.catch_up(Some(job_id)).await;
        }
    }

    /// The armed fire instants of every job, for readers (none while paused).
    fn publish_upcoming(&self) {
        let upcoming = match self.paused {
            true => HashMap::new(),
            false => self.timers.upcoming(),
        };
        self.view.send_modify(|v| v.upcoming = upcoming);
    }

    /// Keeps the view's last run of the job current: a new run replaces it, a change of
    /// the same run updates it (a note of the run as it already stands keeps the `Arc`).
    pub(super) fn note_run(&self, run: &Run) {
        self.view
            .send_modify(|v| match v.last_runs.get_mut(&run.job_id) {
                Some(last) if last.id > run.id || **last == *run => {}
                Some(last) => *last = Arc::new(run.clone()),
                None => {
                    v.last_runs
                        .insert(run.job_id.clone(), Arc::new(run.clone()));
                }
            });
    }

    pub(super) fn publish_counts(&self) {
        let (running, queued) = (self.registry.running(), self.registry.queued());
        self.view.send_if_modified(|v| {
            let changed = v.running != running || v.queued != queued;
            v.running = running;
            v.queued = queued;
            changed
        });
    }
}
