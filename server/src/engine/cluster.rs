//! Cluster mode: an engine on a store shared with other petitd ([`ClusterStore`]).
//!
//! What changes against a node alone:
//! - **The queue is the database's.** Runs are inserted `queued` by whichever node
//!   fires, triggers, backfills or catches up (one run per fire instant: the insert of
//!   the others is refused), and every node claims from the shared queue
//!   ([`Store::claim_next`], which checks each job's `max_concurrency` cluster-wide and
//!   this node's `max_concurrent_runs`). A note wakes idle nodes at once; a slow sweep
//!   covers a lost one.
//! - **Membership** (a task here): a heartbeat every `heartbeat`, and, after each, the
//!   takeover of nodes whose lease ran out (their runs are settled here as crash
//!   recovery settles them). A node that cannot renew its lease for `lease -
//!   heartbeat` (the database is away, the process was stopped) fences itself: it
//!   stops its runs and claims nothing until it joins again as a new epoch; the store
//!   refuses its stale writes anyway.
//! - **The relay** (a task here): other nodes' changes, as notes, become events on this
//!   node's bus (so watch and follow streams on any node see every run), pauses
//!   become this node's, cancels reach the run where it runs, and definition changes
//!   are compared.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};

use super::owner::{Command, Owner};
use super::{EngineError, View};
use crate::core::job::Overlap;
use crate::core::{JobDef, LogBatch, Run, RunStatus};
use crate::events::{Event, EventBus};
use crate::store::{
    ClaimLimits, ClusterStore, LogPageLimit, LogPosition, LogStart, NodeInfo, NodeRecord, NoteKind,
    Store,
};

/// How a node takes part in a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub node: NodeInfo,
    /// Between two renewals of the lease.
    pub heartbeat: Duration,
    /// A node whose heartbeat is older than this is dead and its runs are taken over.
    pub lease: Duration,
    /// Between two claim attempts when no note came (a note lost with a connection).
    pub sweep: Duration,
}

impl ClusterOptions {
    pub fn new(node: NodeInfo) -> ClusterOptions {
        ClusterOptions {
            node,
            heartbeat: Duration::from_secs(2),
            lease: Duration::from_secs(10),
            sweep: Duration::from_secs(5),
        }
    }

    /// How long a node goes without renewing before it stops its own runs: before the
    /// others may take them over.
    fn fence_after(&self) -> Duration {
        self.lease
            .saturating_sub(self.heartbeat)
            .max(self.heartbeat)
    }
}

/// The shared store and how to take part, as the engine holds them.
pub(crate) struct Cluster {
    pub store: Arc<dyn ClusterStore>,
    pub options: ClusterOptions,
}

impl Cluster {
    /// The nodes of the cluster as their rows say.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, EngineError> {
        Ok(self.store.nodes(self.options.lease).await?)
    }
}

impl Owner {
    /// Joins the cluster and resumes what earlier epochs of this node left running.
    pub(super) async fn join_cluster(&mut self) -> Result<(), EngineError> {
        let Some(cluster) = self.cluster.clone() else {
            return Ok(());
        };
        let me = &cluster.options.node;
        // Two live daemons under one id would fence each other in turns: refuse the
        // second. The same id at the same address is this node restarting (after a
        // crash, within the lease), which must be let back in.
        let nodes = cluster.store.nodes(cluster.options.lease).await?;
        if let Some(other) = nodes
            .iter()
            .find(|n| n.id == me.id && n.alive && !n.left && n.address != me.address)
        {
            return Err(EngineError::InvalidArgument(format!(
                "node id '{}' is in use by a live node at {} (epoch {}, heartbeat {}): give this node another --node-id, or stop that one first",
                me.id,
                other.address,
                other.epoch,
                other.heartbeat_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )));
        }
        let (lease, runs) = cluster.store.join(me).await?;
        tracing::info!(node = %lease.node_id, epoch = lease.epoch, "joined the cluster");
        self.publish_definitions().await?;
        self.adopt(runs).await
    }

    /// Resumes runs this node now owns (taken over from a dead node, or from this
    /// node's earlier epoch) as crash recovery resumes them.
    pub(super) async fn adopt(&mut self, runs: Vec<Run>) -> Result<(), EngineError> {
        for run in runs {
            if self.registry.active(&run.id).is_some() {
                // Still executing here (its node is this one): nothing to resume.
                continue;
            }
            tracing::warn!(job = %run.job_id, run = %run.id, "taking over a run its node left");
            self.resume_unfinished(run).await?;
        }
        self.publish_counts();
        // A cancel asked of the dead node is this node's to carry out now.
        if let Some(cluster) = &self.cluster {
            for run_id in cluster.store.cancel_requests().await? {
                self.cancel_local(&run_id);
            }
        }
        Ok(())
    }

    /// Claims from the shared queue while this node has room.
    pub(super) async fn claim_shared(&mut self) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        if self.stopping || self.fenced || !std::mem::take(&mut self.claim_due) {
            return;
        }
        let max = self.options.max_concurrent_runs.max(1);
        if self.registry.running() >= max {
            return;
        }
        let limits = ClaimLimits {
            max_running: max,
            per_job: self
                .jobs
                .values()
                .filter(|j| !self.mismatched.contains(&j.id))
                .map(|j| {
                    let limit = match j.overlap {
                        // Fires start whatever runs; manual runs were admitted within it.
                        Overlap::Allow => u32::MAX,
                        _ => j.max_concurrency,
                    };
                    (j.id.clone(), limit)
                })
                .collect(),
        };
        while self.registry.running() < max {
            let run = match cluster.store.claim_next(&limits, self.clock.now()).await {
                Ok(Some(run)) => run,
                Ok(None) => return,
                Err(e @ crate::store::StoreError::LeaseLost { .. }) => {
                    tracing::error!("cannot claim from the shared queue: {e}");
                    self.fence();
                    return;
                }
                Err(e) => {
                    tracing::error!("cannot claim from the shared queue: {e}");
                    return;
                }
            };
            let tasks = match self.store.task_runs(&run.id).await {
                Ok(tasks) => tasks,
                Err(e) => {
                    // Claimed but not startable: the takeover of this node settles it.
                    tracing::error!(run = %run.id, "cannot read the tasks of a claimed run: {e}");
                    return;
                }
            };
            let Some(job) = self.jobs.get(&run.job_id).cloned() else {
                // Claims name only this node's jobs: a reload in between is the one way.
                tracing::error!(run = %run.id, job = %run.job_id, "claimed a run of a job this node no longer has; the takeover of this node's runs will settle it");
                continue;
            };
            self.bus.publish(Event::of_run(run.clone()));
            self.note_run(&run);
            self.registry.adopt(&run.job_id);
            self.start(job, run, tasks);
        }
    }

    /// Cluster-wide admission counts of a job: (in flight, queued, running).
    pub(super) async fn shared_counts(
        &self,
        job_id: &str,
    ) -> Result<Option<(usize, usize, usize)>, EngineError> {
        let Some(cluster) = &self.cluster else {
            return Ok(None);
        };
        let (queued, running) = cluster.store.job_counts(job_id).await?;
        Ok(Some((queued + running, queued, running)))
    }

    /// `overlap: cancel_previous` across the cluster: cancels the job's queued runs
    /// and asks the node running its oldest run to stop it.
    pub(super) async fn cancel_previous_shared(&mut self, job: &JobDef) -> Result<(), EngineError> {
        let Some(cluster) = self.cluster.clone() else {
            return Ok(());
        };
        for run in self.store.queued_runs().await? {
            if run.job_id == job.id {
                self.cancel_shared_queued(&run.id).await?;
            }
        }
        let (_, running) = cluster.store.job_counts(&job.id).await?;
        if running >= job.max_concurrency as usize {
            let page = crate::store::RunPage {
                limit: 200,
                ..Default::default()
            };
            let oldest = self
                .store
                .list_runs(Some(&job.id), page)
                .await?
                .into_iter()
                .filter(|r| r.status == RunStatus::Running)
                .min_by_key(|r| (r.started_at, r.id.clone()));
            if let Some(oldest) = oldest {
                tracing::info!(job = %job.id, run = %oldest.id, "cancelling the oldest run for a new fire (overlap: cancel_previous)");
                if self.cancel_local(&oldest.id).is_none() {
                    cluster.store.request_cancel(&oldest.id).await?;
                }
            }
        }
        Ok(())
    }

    /// Cancels a run of the shared queue if it is still queued there, publishing its
    /// cancelled tasks and its end; `None` if it no longer waits (claimed meanwhile).
    pub(super) async fn cancel_shared_queued(
        &mut self,
        run_id: &str,
    ) -> Result<Option<Run>, EngineError> {
        let now = self.clock.now();
        let Some(cancelled) = self
            .store
            .cancel_queued(run_id, now, "cancelled before it started")
            .await?
        else {
            return Ok(None);
        };
        for mut task in self.store.task_runs(run_id).await? {
            if task.status == crate::core::TaskStatus::Cancelled {
                task.ended_at = Some(now);
                self.bus
                    .publish(Event::of_task(&cancelled.job_id, task, None));
            }
        }
        self.bus.publish(Event::of_run(cancelled.clone()));
        self.note_run(&cancelled);
        Ok(Some(cancelled))
    }

    /// Stores this node's definitions as the cluster's (it has just loaded them).
    pub(super) async fn publish_definitions(&mut self) -> Result<(), EngineError> {
        let Some(cluster) = self.cluster.clone() else {
            return Ok(());
        };
        let ours: HashMap<String, String> = self
            .jobs
            .values()
            .map(|j| (j.id.clone(), j.definition.clone()))
            .collect();
        cluster.store.publish_definitions(&ours).await?;
        self.compare_definitions().await
    }

    /// Compares this node's definitions with the cluster's: the jobs that differ are
    /// not claimed, fired or triggered here until they match.
    pub(super) async fn compare_definitions(&mut self) -> Result<(), EngineError> {
        let Some(cluster) = self.cluster.clone() else {
            return Ok(());
        };
        let theirs = cluster.store.definitions().await?;
        let mismatched: HashSet<String> = self
            .jobs
            .values()
            .filter(|j| theirs.get(&j.id).is_some_and(|d| *d != j.definition))
            .map(|j| j.id.clone())
            .collect();
        if mismatched != self.mismatched {
            let mut list: Vec<String> = mismatched.iter().cloned().collect();
            list.sort();
            if list.is_empty() {
                tracing::info!("every job's definition matches the cluster's");
            } else {
                tracing::warn!(jobs = %list.join(", "), "these jobs' definitions differ from the cluster's (another node loaded newer files): their runs are left to the nodes that match until this node's files match");
            }
            cluster.store.set_mismatched(&list).await?;
            self.mismatched = mismatched;
            self.claim_due = true;
            let shown = self.mismatched.clone();
            self.view.send_modify(|v| v.mismatched = shown);
        }
        Ok(())
    }

    /// Re-reads the cluster-wide pauses (another node changed one) and applies them
    /// without storing them again.
    pub(super) async fn sync_pauses(&mut self) -> Result<(), EngineError> {
        let paused = self.store.scheduler_paused().await?;
        if paused != self.paused {
            self.apply_paused(paused).await;
        }
        let stored: HashSet<String> = self.store.paused_jobs().await?.into_iter().collect();
        let current = self.view.borrow().paused_jobs.clone();
        for job_id in stored.symmetric_difference(&current) {
            if self.jobs.contains_key(job_id) {
                self.apply_job_paused(job_id, stored.contains(job_id)).await;
            }
        }
        Ok(())
    }

    /// The lease is lost: stops every run here and claims nothing until `rejoined`.
    pub(super) fn fence(&mut self) {
        if !std::mem::replace(&mut self.fenced, true) {
            tracing::error!(
                runs = self.registry.running(),
                "this node lost its cluster lease: stopping its runs and claiming nothing until it joins again"
            );
        }
        self.interrupt_all();
    }
}

/// The membership loop: heartbeats, takeovers, fencing and rejoining, for as long as
/// the engine lives.
pub(super) async fn membership(
    cluster: Arc<Cluster>,
    commands: mpsc::WeakUnboundedSender<Command>,
    view: watch::Receiver<View>,
) {
    let options = &cluster.options;
    let mut last_renewed = tokio::time::Instant::now();
    let mut fenced = false;
    let mut ticker = tokio::time::interval(options.heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(commands) = commands.upgrade() else {
            return;
        };
        if fenced {
            if view.borrow().stopping {
                // Stopping (and, once its runs ended, gone from the cluster): never
                // back as a new epoch that would look alive after the exit.
                continue;
            }
            if view.borrow().running > 0 {
                // The runs stopped by the fence are still ending here: joining now would
                // hand them back to this node while their old execution still writes.
                continue;
            }
            match cluster.store.join(&options.node).await {
                Ok((lease, runs)) => {
                    tracing::info!(node = %lease.node_id, epoch = lease.epoch, "joined the cluster again as a new epoch");
                    fenced = false;
                    last_renewed = tokio::time::Instant::now();
                    let _ = commands.send(Command::Rejoined { runs });
                }
                Err(e) => tracing::debug!("cannot join the cluster yet: {e}"),
            }
            continue;
        }
        // A renewal that hangs counts as one that fails: the node must stop its runs
        // before the others may take them over, however slow the database answers.
        let budget = options.fence_after().saturating_sub(last_renewed.elapsed());
        let renewal = tokio::time::timeout(budget, cluster.store.heartbeat()).await;
        match renewal {
            Ok(Ok(true)) => last_renewed = tokio::time::Instant::now(),
            Ok(Ok(false)) => {
                tracing::error!("this node's lease was taken over by another node");
                fenced = true;
                let _ = commands.send(Command::Fenced);
                continue;
            }
            failed => {
                match failed {
                    Ok(Err(e)) => tracing::warn!("cannot renew this node's cluster lease: {e}"),
                    _ => tracing::warn!("renewing this node's cluster lease is taking too long"),
                }
                if last_renewed.elapsed() >= options.fence_after() {
                    fenced = true;
                    let _ = commands.send(Command::Fenced);
                }
                continue;
            }
        }
        match cluster.store.take_over_expired(options.lease).await {
            Ok(runs) if runs.is_empty() => {}
            Ok(runs) => {
                tracing::warn!(
                    runs = runs.len(),
                    "took over the runs of a node whose lease ran out"
                );
                let _ = commands.send(Command::Adopt { runs });
            }
            Err(e) => tracing::warn!("cannot check for dead nodes: {e}"),
        }
    }
}

/// The relay: turns other nodes' notes into this node's events and commands.
pub(super) async fn relay(
    cluster: Arc<Cluster>,
    store: Arc<dyn Store>,
    bus: EventBus,
    commands: mpsc::WeakUnboundedSender<Command>,
    pools_freed: Option<Arc<tokio::sync::Notify>>,
) {
    let mut notes = cluster.store.notes();
    let mut logs = LogRelay::default();
    let mut sweep = tokio::time::interval(cluster.options.sweep);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let what = tokio::select! {
            note = notes.recv() => match note {
                Ok(note) => note.what,
                Err(broadcast::error::RecvError::Lagged(_)) => NoteKind::Resync,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = sweep.tick() => NoteKind::Queue,
        };
        let Some(commands) = commands.upgrade() else {
            return;
        };
        match what {
            NoteKind::Run { run_id } => {
                if let Ok(Some(run)) = store.get_run(&run_id).await {
                    if run.status.is_terminal() {
                        logs.ended(&run_id);
                    }
                    bus.publish_relayed(Event::of_run(run.clone()));
                    let _ = commands.send(Command::Noted { run });
                }
            }
            // Only watchers want task changes: with none here, nothing is read.
            NoteKind::Task { .. } if !bus.has_subscribers() => {}
            NoteKind::Task { run_id, task_id } => {
                let Ok(Some(run)) = store.get_run(&run_id).await else {
                    continue;
                };
                if let Ok(tasks) = store.task_runs(&run_id).await {
                    if let Some(task) = tasks.into_iter().find(|t| t.task_id == task_id) {
                        if task.status != crate::core::TaskStatus::Pending {
                            bus.publish_relayed(Event::of_task(&run.job_id, task, None));
                        }
                    }
                }
            }
            NoteKind::Logs { run_id } => {
                if bus.wants_logs(&run_id) {
                    logs.relay(&*store, &bus, &run_id).await;
                }
            }
            NoteKind::Queue => {
                let _ = commands.send(Command::Claim);
                // A slot of a shared pool may be free too.
                if let Some(freed) = &pools_freed {
                    freed.notify_waiters();
                }
            }
            NoteKind::Paused => {
                let _ = commands.send(Command::SyncPauses);
            }
            NoteKind::Cancel { run_id } => {
                let _ = commands.send(Command::CancelHere { run_id });
            }
            NoteKind::Definitions => {
                let _ = commands.send(Command::CompareDefinitions);
            }
            NoteKind::Nodes => {}
            NoteKind::Resync => {
                // A cancel asked while notes were lost is still recorded on its run.
                if let Ok(runs) = cluster.store.cancel_requests().await {
                    for run_id in runs {
                        let _ = commands.send(Command::CancelHere { run_id });
                    }
                }
                let _ = commands.send(Command::SyncPauses);
                let _ = commands.send(Command::CompareDefinitions);
                let _ = commands.send(Command::Claim);
            }
        }
    }
}

/// Where the relay is in each remote run's log that someone here follows.
#[derive(Default)]
struct LogRelay {
    next: BTreeMap<String, LogPosition>,
}

impl LogRelay {
    /// Publishes the lines of `run_id` stored since the last relay of it (all of them
    /// the first time: followers skip the lines they have by `seq`).
    async fn relay(&mut self, store: &dyn Store, bus: &EventBus, run_id: &str) {
        const PAGE: LogPageLimit = LogPageLimit {
            lines: 2_000,
            bytes: 1 << 20,
        };
        let mut job_id: Option<String> = None;
        loop {
            let start = match self.next.get(run_id) {
                Some(at) => LogStart::At(*at),
                None => LogStart::First,
            };
            let page = match store.log_page(run_id, None, start, PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::debug!(run = %run_id, "cannot read another node's log lines: {e}");
                    return;
                }
            };
            if let Some(last) = page.last {
                self.next.insert(run_id.to_string(), last.successor());
            }
            if !page.lines.is_empty() && job_id.is_none() {
                match store.get_run(run_id).await {
                    Ok(Some(run)) => job_id = Some(run.job_id),
                    _ => return,
                }
            }
            let job = job_id.clone().unwrap_or_default();
            for batch in LogBatch::group(page.lines) {
                bus.publish_relayed(Event::Log {
                    job_id: job.clone(),
                    batch: Arc::new(batch),
                });
            }
            if page.next.is_none() {
                return;
            }
        }
    }

    fn ended(&mut self, run_id: &str) {
        self.next.remove(run_id);
    }
}

/// Starts the cluster's tasks of an engine.
pub(super) fn spawn(
    cluster: &Arc<Cluster>,
    store: Arc<dyn Store>,
    bus: EventBus,
    commands: mpsc::WeakUnboundedSender<Command>,
    view: watch::Receiver<View>,
    pools_freed: Option<Arc<tokio::sync::Notify>>,
) {
    tokio::spawn(membership(cluster.clone(), commands.clone(), view));
    tokio::spawn(relay(cluster.clone(), store, bus, commands, pools_freed));
}

/// Leaves the cluster on a clean stop (best effort: the lease runs out otherwise).
pub(super) async fn leave(cluster: &Weak<Cluster>) {
    if let Some(cluster) = cluster.upgrade() {
        if let Err(e) = cluster.store.leave().await {
            tracing::warn!("cannot leave the cluster cleanly (the others take over when the lease runs out): {e}");
        }
    }
}
