//! The in-memory store: every record in maps behind one mutex, gone at exit. Used by
//! tests and `petitd --in-memory`; ordering, log cap and errors match the SQLite store.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use super::{
    check_new_run, AuditRecord, ClaimLimits, JobRecord, LogLine, LogPage, LogPageLimit,
    LogPosition, LogStart, NotificationRecord, Run, RunPage, Store, StoreError, StoreOptions,
    StoreResult, TaskRun,
};
use crate::core::{LogStream, RunStatus, TaskStatus};

/// A [`Store`] that keeps everything in memory.
pub struct MemoryStore {
    options: StoreOptions,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    jobs: BTreeMap<String, JobRecord>,
    runs: HashMap<String, RunEntry>,
    scheduler_paused: bool,
    paused_jobs: std::collections::BTreeSet<String>,
    /// Oldest first.
    audit: Vec<AuditRecord>,
    /// Oldest first.
    notifications: Vec<NotificationRecord>,
    /// The (job, instant) of every scheduled run: one run per fire.
    fires: std::collections::HashSet<(String, DateTime<Utc>)>,
    /// Number of the next append. Lines of different tasks and streams live in separate
    /// queues; their positions (append, place in it) put them back in write order, and
    /// are the same positions the SQLite store gives, so page starts mean the same.
    next_batch: u64,
}

struct RunEntry {
    run: Run,
    /// In creation order.
    tasks: Vec<TaskRun>,
    /// Keyed by (task id, stream): the unit the byte cap applies to.
    logs: HashMap<(String, LogStream), StreamLog>,
}

#[derive(Default)]
struct StreamLog {
    /// (position, line), oldest first.
    lines: VecDeque<(LogPosition, LogLine)>,
    bytes: usize,
}

impl MemoryStore {
    pub fn new(options: StoreOptions) -> MemoryStore {
        MemoryStore {
            options,
            state: Mutex::new(State::default()),
        }
    }

    /// The recorded jobs (the trait has no reader for them), for tests.
    #[cfg(test)]
    pub(super) fn stored_jobs(&self) -> StoreResult<Vec<JobRecord>> {
        Ok(self.state()?.jobs.values().cloned().collect())
    }

    /// The state, or an error if a thread panicked while holding it (the maps may be
    /// half-updated, so refusing is safer than going on).
    fn state(&self) -> StoreResult<MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| StoreError::Poisoned)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(StoreOptions::default())
    }
}

impl State {
    /// Makes a queued run `running`; `None` if it is not queued.
    fn claim(&mut self, run_id: &str, at: DateTime<Utc>) -> StoreResult<Option<Run>> {
        let entry = self
            .runs
            .get_mut(run_id)
            .ok_or_else(|| StoreError::RunNotFound {
                run_id: run_id.to_owned(),
            })?;
        if entry.run.status != RunStatus::Queued {
            return Ok(None);
        }
        entry.run.status = RunStatus::Running;
        entry.run.started_at = Some(at);
        Ok(Some(entry.run.clone()))
    }

    /// The queued runs, oldest first.
    fn queue(&self) -> Vec<&Run> {
        let mut queued: Vec<&Run> = self
            .runs
            .values()
            .map(|entry| &entry.run)
            .filter(|run| run.status == RunStatus::Queued)
            .collect();
        queued.sort_by(|a, b| newest_first(b, a));
        queued
    }
}

/// Newest first: by creation time, then by id so that runs created in the same
/// instant still have one stable order (the same as the SQLite store's).
fn newest_first(a: &Run, b: &Run) -> std::cmp::Ordering {
    (&b.created_at, &b.id).cmp(&(&a.created_at, &a.id))
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn upsert_jobs(&self, jobs: Vec<JobRecord>) -> StoreResult<()> {
        let mut state = self.state()?;
        for job in jobs {
            state.jobs.insert(job.id.clone(), job);
        }
        Ok(())
    }

    async fn create_run(&self, run: Run, tasks: Vec<TaskRun>) -> StoreResult<()> {
        check_new_run(&run, &tasks)?;
        let mut state = self.state()?;
        if state.runs.contains_key(&run.id) {
            return Err(StoreError::RunExists { run_id: run.id });
        }
        if let Some(at) = run.scheduled_for {
            if !state.fires.insert((run.job_id.clone(), at)) {
                return Err(StoreError::FireTaken {
                    job_id: run.job_id,
                    at,
                });
            }
        }
        state.runs.insert(
            run.id.clone(),
            RunEntry {
                run,
                tasks,
                logs: HashMap::new(),
            },
        );
        Ok(())
    }

    async fn claim_run(&self, run_id: &str, at: DateTime<Utc>) -> StoreResult<Option<Run>> {
        self.state()?.claim(run_id, at)
    }

    async fn claim_next(
        &self,
        limits: &ClaimLimits,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<Run>> {
        let mut state = self.state()?;
        let mut running: HashMap<&str, usize> = HashMap::new();
        for entry in state.runs.values() {
            if entry.run.status == RunStatus::Running {
                *running.entry(entry.run.job_id.as_str()).or_default() += 1;
            }
        }
        if running.values().sum::<usize>() >= limits.max_running {
            return Ok(None);
        }
        let has_room = |job_id: &str| {
            limits
                .per_job
                .get(job_id)
                .is_some_and(|&limit| running.get(job_id).copied().unwrap_or(0) < limit as usize)
        };
        let next = state
            .queue()
            .into_iter()
            .find(|run| has_room(&run.job_id))
            .map(|run| run.id.clone());
        match next {
            Some(run_id) => state.claim(&run_id, at),
            None => Ok(None),
        }
    }

    async fn queued_runs(&self) -> StoreResult<Vec<Run>> {
        Ok(self.state()?.queue().into_iter().cloned().collect())
    }

    async fn cancel_queued(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
        message: &str,
    ) -> StoreResult<Option<Run>> {
        let mut state = self.state()?;
        let entry = state
            .runs
            .get_mut(run_id)
            .ok_or_else(|| StoreError::RunNotFound {
                run_id: run_id.to_owned(),
            })?;
        if entry.run.status != RunStatus::Queued {
            return Ok(None);
        }
        entry.run.status = RunStatus::Cancelled;
        entry.run.ended_at = Some(at);
        entry.run.error = Some(message.to_owned());
        for task in entry.tasks.iter_mut().filter(|t| !t.status.is_terminal()) {
            task.status = TaskStatus::Cancelled;
            task.ended_at = Some(at);
        }
        Ok(Some(entry.run.clone()))
    }

    async fn update_run(&self, run: Run) -> StoreResult<()> {
        let mut state = self.state()?;
        let entry = state
            .runs
            .get_mut(&run.id)
            .ok_or_else(|| StoreError::RunNotFound {
                run_id: run.id.clone(),
            })?;
        let stored = &mut entry.run;
        stored.status = run.status;
        stored.started_at = run.started_at;
        stored.ended_at = run.ended_at;
        stored.error = run.error;
        Ok(())
    }

    async fn update_task_run(&self, task: TaskRun) -> StoreResult<()> {
        let mut state = self.state()?;
        let stored = state
            .runs
            .get_mut(&task.run_id)
            .and_then(|entry| entry.tasks.iter_mut().find(|t| t.task_id == task.task_id))
            .ok_or_else(|| StoreError::TaskRunNotFound {
                run_id: task.run_id.clone(),
                task_id: task.task_id.clone(),
            })?;
        stored.status = task.status;
        stored.attempts = task.attempts;
        stored.exit_code = task.exit_code;
        stored.started_at = task.started_at;
        stored.ended_at = task.ended_at;
        stored.error = task.error;
        stored.outputs = task.outputs;
        Ok(())
    }

    async fn append_logs(&self, lines: Vec<LogLine>) -> StoreResult<()> {
        let cap = self.options.max_log_bytes_per_stream;
        let mut state = self.state()?;
        // All or nothing, like the SQLite store's transaction: check before changing.
        if let Some(line) = lines.iter().find(|l| !state.runs.contains_key(&l.run_id)) {
            return Err(StoreError::RunNotFound {
                run_id: line.run_id.clone(),
            });
        }
        if lines.is_empty() {
            return Ok(()); // no append, as in SQLite: positions stay the same in both
        }
        state.next_batch += 1;
        let batch = state.next_batch;
        for (pos, line) in lines.into_iter().enumerate() {
            let id = LogPosition {
                batch,
                pos: pos as u64,
            };
            let Some(entry) = state.runs.get_mut(&line.run_id) else {
                continue; // checked above
            };
            let log = entry
                .logs
                .entry((line.task_id.clone(), line.stream))
                .or_default();
            log.bytes += line.line.len();
            log.lines.push_back((id, line));
            while log.bytes > cap {
                let Some((_, oldest)) = log.lines.pop_front() else {
                    break;
                };
                log.bytes -= oldest.line.len();
            }
        }
        Ok(())
    }

    async fn prune_logs(&self, cutoff: DateTime<Utc>) -> StoreResult<u64> {
        let mut state = self.state()?;
        let mut pruned = 0;
        for entry in state.runs.values_mut() {
            if entry.run.ended_at.is_some_and(|t| t < cutoff) {
                pruned += entry
                    .logs
                    .values()
                    .map(|l| l.lines.len() as u64)
                    .sum::<u64>();
                entry.logs.clear();
            }
        }
        Ok(pruned)
    }

    async fn get_run(&self, run_id: &str) -> StoreResult<Option<Run>> {
        let state = self.state()?;
        Ok(state.runs.get(run_id).map(|entry| entry.run.clone()))
    }

    async fn list_runs(&self, job_id: Option<&str>, page: RunPage) -> StoreResult<Vec<Run>> {
        let state = self.state()?;
        let mut runs: Vec<&Run> = state
            .runs
            .values()
            .map(|entry| &entry.run)
            .filter(|run| job_id.is_none_or(|job| run.job_id == job))
            .filter(|run| {
                page.after
                    .as_ref()
                    .is_none_or(|after| (&run.created_at, &run.id) < (&after.created_at, &after.id))
            })
            .collect();
        runs.sort_by(|a, b| newest_first(a, b));
        let limit = if page.limit == 0 {
            usize::MAX
        } else {
            page.limit
        };
        Ok(runs
            .into_iter()
            .skip(page.offset)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn last_run(&self, job_id: &str, statuses: &[RunStatus]) -> StoreResult<Option<Run>> {
        let state = self.state()?;
        Ok(state
            .runs
            .values()
            .map(|entry| &entry.run)
            .filter(|run| run.job_id == job_id)
            .filter(|run| statuses.is_empty() || statuses.contains(&run.status))
            .min_by(|a, b| newest_first(a, b))
            .cloned())
    }

    async fn last_runs(&self, job_ids: &[String]) -> StoreResult<HashMap<String, Run>> {
        let mut last = HashMap::new();
        for job_id in job_ids {
            if let Some(run) = self.last_run(job_id, &[]).await? {
                last.insert(job_id.clone(), run);
            }
        }
        Ok(last)
    }

    async fn task_runs(&self, run_id: &str) -> StoreResult<Vec<TaskRun>> {
        let state = self.state()?;
        Ok(state
            .runs
            .get(run_id)
            .map(|entry| entry.tasks.clone())
            .unwrap_or_default())
    }

    async fn log_page(
        &self,
        run_id: &str,
        task_id: Option<&str>,
        start: LogStart,
        limit: LogPageLimit,
    ) -> StoreResult<LogPage> {
        let state = self.state()?;
        let Some(entry) = state.runs.get(run_id) else {
            return Ok(LogPage::default());
        };
        let queues: Vec<&VecDeque<(LogPosition, LogLine)>> = entry
            .logs
            .iter()
            .filter(|((task, _), _)| task_id.is_none_or(|wanted| task == wanted))
            .map(|(_, log)| &log.lines)
            .collect();
        Ok(page_of(&queues, start, limit))
    }

    async fn set_scheduler_paused(&self, paused: bool) -> StoreResult<()> {
        self.state()?.scheduler_paused = paused;
        Ok(())
    }

    async fn scheduler_paused(&self) -> StoreResult<bool> {
        Ok(self.state()?.scheduler_paused)
    }

    async fn set_job_paused(&self, job_id: &str, paused: bool) -> StoreResult<()> {
        let mut state = self.state()?;
        if paused {
            state.paused_jobs.insert(job_id.to_string());
        } else {
            state.paused_jobs.remove(job_id);
        }
        Ok(())
    }

    async fn fires_between(
        &self,
        job_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<DateTime<Utc>>> {
        let mut fires: Vec<DateTime<Utc>> = self
            .state()?
            .fires
            .iter()
            .filter(|(job, at)| job == job_id && *at >= from && *at <= to)
            .map(|(_, at)| *at)
            .collect();
        fires.sort();
        Ok(fires)
    }

    async fn last_fire(&self, job_id: &str) -> StoreResult<Option<DateTime<Utc>>> {
        Ok(self
            .state()?
            .fires
            .iter()
            .filter(|(job, _)| job == job_id)
            .map(|(_, at)| *at)
            .max())
    }

    async fn prune_runs(
        &self,
        job_id: &str,
        keep: Option<u32>,
        ended_before: Option<DateTime<Utc>>,
        batch: usize,
    ) -> StoreResult<usize> {
        let mut state = self.state()?;
        let mut runs: Vec<&Run> = state
            .runs
            .values()
            .map(|entry| &entry.run)
            .filter(|run| run.job_id == job_id)
            .collect();
        runs.sort_by(|a, b| newest_first(a, b));
        let keep = keep.map_or(usize::MAX, |k| k as usize);
        let mut doomed: Vec<(String, Option<DateTime<Utc>>)> = runs
            .iter()
            .enumerate()
            .filter(|(_, r)| !matches!(r.status, RunStatus::Queued | RunStatus::Running))
            .filter(|(i, r)| {
                *i >= keep || ended_before.is_some_and(|c| r.ended_at.is_some_and(|e| e < c))
            })
            .map(|(_, r)| (r.id.clone(), r.scheduled_for))
            .collect();
        doomed.reverse();
        doomed.truncate(batch);
        for (id, fire) in &doomed {
            state.runs.remove(id);
            state.notifications.retain(|n| n.run_id != *id);
            if let Some(at) = fire {
                state.fires.remove(&(job_id.to_string(), *at));
            }
        }
        Ok(doomed.len())
    }

    async fn paused_jobs(&self) -> StoreResult<Vec<String>> {
        Ok(self.state()?.paused_jobs.iter().cloned().collect())
    }

    async fn append_audit(&self, record: AuditRecord) -> StoreResult<()> {
        self.state()?.audit.push(record);
        Ok(())
    }

    async fn append_notification(&self, record: NotificationRecord) -> StoreResult<()> {
        self.state()?.notifications.push(record);
        Ok(())
    }

    async fn notifications(&self, run_id: &str) -> StoreResult<Vec<NotificationRecord>> {
        Ok(self
            .state()?
            .notifications
            .iter()
            .filter(|n| n.run_id == run_id)
            .cloned()
            .collect())
    }

    async fn list_audit(&self, page: RunPage) -> StoreResult<Vec<AuditRecord>> {
        let state = self.state()?;
        let limit = if page.limit == 0 {
            usize::MAX
        } else {
            page.limit
        };
        Ok(state
            .audit
            .iter()
            .rev()
            .skip(page.offset)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn unfinished_runs(&self) -> StoreResult<Vec<Run>> {
        let state = self.state()?;
        let mut runs: Vec<Run> = state
            .runs
            .values()
            .map(|entry| &entry.run)
            .filter(|run| matches!(run.status, RunStatus::Queued | RunStatus::Running))
            .cloned()
            .collect();
        // Oldest first, so that settling them at start-up follows their history.
        runs.sort_by(|a, b| newest_first(b, a));
        Ok(runs)
    }
}

/// A page merged from the queues of several streams, each already in position order:
/// a binary search finds where each queue's part of the page starts, so a page costs
/// its own lines (times the number of queues), not the whole log.
fn page_of(
    queues: &[&VecDeque<(LogPosition, LogLine)>],
    start: LogStart,
    limit: LogPageLimit,
) -> LogPage {
    let mut at: Vec<usize> = match start {
        LogStart::First => vec![0; queues.len()],
        LogStart::At(from) => queues
            .iter()
            .map(|q| q.partition_point(|(p, _)| *p < from))
            .collect(),
        LogStart::Tail(n) => {
            // Step back from the ends, newest line first, n times.
            let mut at: Vec<usize> = queues.iter().map(|q| q.len()).collect();
            for _ in 0..n {
                let newest = (0..queues.len())
                    .filter(|&i| at[i] > 0)
                    .max_by_key(|&i| queues[i][at[i] - 1].0);
                match newest {
                    Some(i) => at[i] -= 1,
                    None => break,
                }
            }
            at
        }
    };
    let mut page = LogPage::default();
    let mut bytes = 0usize;
    loop {
        let oldest = (0..queues.len())
            .filter(|&i| at[i] < queues[i].len())
            .min_by_key(|&i| queues[i][at[i]].0);
        let Some(i) = oldest else {
            return page;
        };
        let (position, line) = &queues[i][at[i]];
        let count = page.lines.len();
        if count >= limit.lines.max(1)
            || (count > 0 && bytes.saturating_add(line.line.len()) > limit.bytes)
        {
            page.next = Some(*position);
            return page;
        }
        bytes += line.line.len();
        page.lines.push(line.clone());
        page.last = Some(*position);
        at[i] += 1;
    }
}
