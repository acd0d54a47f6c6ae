//! The walk over one run's DAG: ready tasks start the moment their dependencies
//! settle (if their condition holds, else they are skipped), within the run's task
//! limit; outputs flow to the tasks downstream.

use super::attempt::{record_task, TaskAttempts};
use super::*;

/// The walk over one run's DAG.
pub(super) struct Walk {
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
    pub(super) fn new(
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

    pub(super) async fn run_to_end(&mut self) {
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

    /// Starts or skips every task whose dependencies have all settled. A skip settles
    /// at once, so the tasks below a skipped one are looked at again in another round.
    pub(super) async fn advance(&mut self) {
        if self.stop.borrow().is_some() {
            return;
        }
        let job = self.job.clone();
        loop {
            let ready = job
                .dag
                .ready(&self.started, |p| self.records[p].status.is_terminal());
            let mut skipped = false;
            for i in ready {
                skipped |= !self.start_or_skip(&job, i).await;
            }
            if !skipped {
                return;
            }
        }
    }

    /// Starts task `i` (true), or skips it when its condition does not hold (false).
    async fn start_or_skip(&mut self, job: &JobDef, i: usize) -> bool {
        let parents = job.dag.parents(i);
        self.started[i] = true;
        let task = &job.tasks[i];
        let statuses: Vec<TaskStatus> = parents.iter().map(|&p| self.records[p].status).collect();
        if condition_holds(task.condition, &statuses) {
            self.spawn(i);
            return true;
        }
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
        false
    }

    pub(super) fn spawn(&mut self, i: usize) {
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
    pub(super) fn first_failure(&self) -> Option<String> {
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
    pub(super) async fn cancel_unstarted(&mut self) {
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

    pub(super) async fn record(&self, record: &TaskRun, message: Option<String>) {
        record_task(&self.env, &self.job.id, record, message).await;
    }
}

/// Whether a task runs, given its dependencies' final statuses.
pub(super) fn condition_holds(condition: Condition, parents: &[TaskStatus]) -> bool {
    match condition {
        Condition::AllSuccess => parents.iter().all(|s| *s == TaskStatus::Succeeded),
        Condition::OnFailure => parents
            .iter()
            .any(|s| matches!(s, TaskStatus::Failed | TaskStatus::TimedOut)),
        Condition::AllDone => true,
    }
}

/// Outputs of task `p` and of everything upstream of it, by task id.
pub(super) fn collect_upstream_outputs(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn conditions() {
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
