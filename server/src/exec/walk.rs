//! The walk over one run's DAG: ready tasks start the moment their dependencies
//! settle (if their condition holds, else they are skipped), within the run's task
//! limit; outputs flow to the tasks downstream.
//!
//! The walk stores task ends, not the attempts: a task's end goes to the store in one
//! write with the starts of the tasks it lets run (which is what makes an end durable
//! before its dependents run), and the last ends go with the run's end. A ready task
//! that needs only a slot of the run is started by the walk itself (slot taken, start
//! stored in that same write); one that needs a pool's slots, or resumes after a
//! crash, takes its slots and stores its start itself, once the ends before it are
//! stored.

use std::collections::{HashSet, VecDeque};

use super::attempt::{begin_attempt, stopped_record, Ended, Permits, Settled, TaskAttempts};
use super::*;
use crate::core::job::{Placeholder, Template};

/// The walk over one run's DAG.
pub(super) struct Walk {
    env: Arc<ExecEnv>,
    job: Arc<JobDef>,
    run_id: String,
    config: Arc<BTreeMap<String, String>>,
    records: Vec<TaskRun>,
    started: Vec<bool>,
    /// Which tasks have all their dependencies settled, for `find_ready`.
    readiness: Readiness,
    run_slots: Arc<Semaphore>,
    stop: watch::Receiver<Option<StopReason>>,
    running: JoinSet<(usize, Settled)>,
    by_tokio_id: HashMap<tokio::task::Id, usize>,
    /// Ends not stored yet (with their events' messages), in the order they came.
    ended: Vec<Ended>,
    /// The slots those ends' attempts held, given back once the ends are stored: their
    /// run slots apart, as each may pass straight to a task started in the same write.
    held: Vec<Permits>,
    run_slots_held: Vec<OwnedSemaphorePermit>,
    /// Ready tasks the walk starts itself, waiting for a slot of the run, in order.
    waiting: VecDeque<usize>,
    /// Tasks begun and stored with the run's claim, with their run slots: started
    /// first, without a write.
    opened: Vec<(usize, Permits)>,
}

impl Walk {
    pub(super) fn new(
        env: Arc<ExecEnv>,
        job: Arc<JobDef>,
        run: &Run,
        tasks: Vec<TaskRun>,
        opened: &[usize],
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
        let mut started: Vec<bool> = records.iter().map(|r| r.status.is_terminal()).collect();
        let readiness = Readiness::new(&job.dag, |i| started[i]);
        let run_slots = Arc::new(Semaphore::new(env.max_concurrent_tasks.max(1)));
        let mut open = Vec::new();
        for &i in opened {
            // `open_tasks` opens no more than the run's slots; one it could not would
            // be left to find_ready, as the running record of a resumed run is.
            let slot = run_slots.clone().try_acquire_owned();
            if let (Some(false), Ok(permit)) = (started.get(i).copied(), slot) {
                started[i] = true;
                open.push((i, (vec![permit], None)));
            }
        }
        Walk {
            run_slots,
            env,
            job,
            run_id: run.id.clone(),
            config: Arc::new(config),
            records,
            started,
            readiness,
            stop,
            running: JoinSet::new(),
            by_tokio_id: HashMap::new(),
            ended: Vec::new(),
            held: Vec::new(),
            run_slots_held: Vec::new(),
            waiting: VecDeque::new(),
            opened: open,
        }
    }

    /// Walks the DAG until nothing runs or can start. The last ends are left unstored
    /// ([`Walk::take_ended`]), for the run's end to store with them.
    pub(super) async fn run_to_end(&mut self) {
        // The tasks opened with the claim: their starts are stored already.
        let reason = *self.stop.borrow();
        for (i, permits) in std::mem::take(&mut self.opened) {
            match reason {
                Some(_) => {
                    let record = stopped_record(self.records[i].clone(), reason);
                    self.end(i, (record, None));
                }
                None => {
                    self.env.bus.publish(Event::of_task(
                        &self.job.id,
                        self.records[i].clone(),
                        None,
                    ));
                    self.spawn(i, Some(permits));
                }
            }
        }
        self.advance().await;
        while let Some(joined) = self.running.join_next_with_id().await {
            self.settle(joined);
            // Other tasks that ended meanwhile go in the same write.
            while let Some(joined) = self.running.try_join_next_with_id() {
                self.settle(joined);
            }
            self.advance().await;
        }
        // Stopped with tasks still waiting for a slot: settled as their stop says.
        let reason = *self.stop.borrow();
        for i in std::mem::take(&mut self.waiting) {
            let record = stopped_record(self.records[i].clone(), reason);
            self.end(i, (record, None));
        }
    }

    /// Takes in a task's end from its attempt.
    fn settle(
        &mut self,
        joined: Result<(tokio::task::Id, (usize, Settled)), tokio::task::JoinError>,
    ) {
        match joined {
            Ok((id, (i, (ended, permits)))) => {
                self.by_tokio_id.remove(&id);
                if let Some((mut permits, shared)) = permits {
                    // The run's slot is taken first (see `TaskAttempts::acquire`).
                    if !permits.is_empty() {
                        self.run_slots_held.push(permits.remove(0));
                    }
                    self.held.push((permits, shared));
                }
                self.end(i, ended);
            }
            Err(e) => {
                let i = self
                    .by_tokio_id
                    .remove(&e.id())
                    .expect("every task is indexed");
                let mut record = self.records[i].clone();
                record.status = TaskStatus::Failed;
                record.error = Some(format!("task panicked: {e}"));
                record.ended_at = Some(Utc::now());
                self.end(i, (record, None));
            }
        }
    }

    /// A task's end, to be stored with the next write.
    fn end(&mut self, i: usize, ended: Ended) {
        self.readiness.settle(&self.job.dag, i);
        self.records[i] = ended.0.clone();
        self.ended.push(ended);
    }

    /// The ends not stored yet, and the slots held until they are: the run's end
    /// stores them.
    pub(super) fn take_ended(&mut self) -> (Vec<Ended>, Vec<Permits>) {
        let mut held = std::mem::take(&mut self.held);
        held.push((std::mem::take(&mut self.run_slots_held), None));
        (std::mem::take(&mut self.ended), held)
    }

    /// Settles every task whose dependencies have all settled (skipped when its
    /// condition does not hold), starts what may start, and stores the ends so far
    /// with those starts in one write. Ends are left for the run's end when nothing
    /// runs any more.
    pub(super) async fn advance(&mut self) {
        let mut starts: Vec<(usize, Permits)> = Vec::new();
        let mut spawns: Vec<usize> = Vec::new();
        if self.stop.borrow().is_none() {
            self.find_ready(&mut spawns);
            while let Some(&i) = self.waiting.front() {
                // An ended task's run slot first: it passes on in the write that
                // stores the end.
                let handed = self.run_slots_held.pop();
                let Some(permit) =
                    handed.or_else(|| self.run_slots.clone().try_acquire_owned().ok())
                else {
                    break;
                };
                self.waiting.pop_front();
                starts.push((i, (vec![permit], None)));
            }
        }
        let over = starts.is_empty() && spawns.is_empty() && self.running.is_empty();
        if over || (self.ended.is_empty() && starts.is_empty()) {
            for i in spawns {
                self.spawn(i, None);
            }
            return;
        }
        let ended = std::mem::take(&mut self.ended);
        let held = (
            std::mem::take(&mut self.held),
            std::mem::take(&mut self.run_slots_held),
        );
        let mut batch: Vec<TaskRun> = ended.iter().map(|(r, _)| r.clone()).collect();
        for (i, _) in &starts {
            begin_attempt(&mut self.records[*i]);
            batch.push(self.records[*i].clone());
        }
        // Stored before any of them is published, and before a dependent runs.
        if let Err(e) = self.env.store.update_task_runs(batch).await {
            tracing::error!(run = %self.run_id, "cannot record task states: {e}");
        }
        for (record, message) in ended {
            self.env
                .bus
                .publish(Event::of_task(&self.job.id, record, message));
        }
        drop(held);
        for (i, permits) in starts {
            self.env
                .bus
                .publish(Event::of_task(&self.job.id, self.records[i].clone(), None));
            self.spawn(i, Some(permits));
        }
        for i in spawns {
            self.spawn(i, None);
        }
    }

    /// Marks every task whose dependencies have all settled: skipped (an end), or
    /// ready: in `waiting` when the walk starts it, else in `spawns`; in topological
    /// order. A skip settles at once, making its children ready in the same call. The
    /// cost is that of the tasks made ready since the last call, not a pass over all.
    fn find_ready(&mut self, spawns: &mut Vec<usize>) {
        let job = self.job.clone();
        while let Some(i) = self.readiness.next(&job.dag) {
            if self.started[i] {
                continue;
            }
            let parents = job.dag.parents(i);
            self.started[i] = true;
            let task = &job.tasks[i];
            let statuses: Vec<TaskStatus> =
                parents.iter().map(|&p| self.records[p].status).collect();
            if !condition_holds(task.condition, &statuses) {
                let mut record = self.records[i].clone();
                record.status = TaskStatus::Skipped;
                record.ended_at = Some(Utc::now());
                let why = format!(
                    "condition {} not met by its dependencies",
                    task.condition.as_str()
                );
                record.error = Some(why.clone());
                self.end(i, (record, Some(why)));
            } else if self.records[i].status == TaskStatus::Pending
                && task.resources.is_empty()
                && self.env.shared_pools.is_none()
            {
                self.waiting.push_back(i);
            } else {
                spawns.push(i);
            }
        }
    }

    /// Starts task `i`'s attempts; `started`: its first attempt's slots, its start
    /// already stored.
    pub(super) fn spawn(&mut self, i: usize, started: Option<Permits>) {
        let task = self.job.tasks[i].clone();
        let outputs = upstream_outputs(&self.job, &self.records, i, &tasks_read(&task));
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
                (i, attempt.run(record, started).await)
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

    /// Marks tasks that never started `cancelled` (ends stored with the run's).
    pub(super) fn cancel_unstarted(&mut self) {
        for i in 0..self.records.len() {
            if !self.records[i].status.is_terminal() {
                let mut record = self.records[i].clone();
                record.status = TaskStatus::Cancelled;
                record.ended_at = Some(Utc::now());
                self.end(i, (record, None));
            }
        }
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

/// The outputs of the tasks upstream of task `i` that succeeded, by task id: those that
/// wrote some, and those `reads` names even when they wrote none (a placeholder reading
/// a task that succeeded without the key says so, not that the task failed). An
/// upstream success with no outputs that nothing names adds nothing, so a start in a
/// long chain of tasks without outputs inserts nothing. Each upstream task is visited
/// once, without recursion: paths that meet again (a lattice of skipped tasks) are not
/// walked again, and a long chain does not deepen the stack.
pub(super) fn upstream_outputs(
    job: &JobDef,
    records: &[TaskRun],
    i: usize,
    reads: &HashSet<String>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut outputs = BTreeMap::new();
    let mut seen = vec![false; records.len()];
    let mut stack = job.dag.parents(i).to_vec();
    while let Some(p) = stack.pop() {
        if std::mem::replace(&mut seen[p], true) {
            continue;
        }
        let record = &records[p];
        if record.status == TaskStatus::Succeeded
            && (!record.outputs.is_empty() || reads.contains(&record.task_id))
        {
            outputs.insert(record.task_id.clone(), record.outputs.clone());
        }
        stack.extend(job.dag.parents(p).iter().filter(|&&g| !seen[g]));
    }
    outputs
}

/// The tasks whose outputs `task` reads by name (`${tasks.T.outputs.K}` in its program,
/// arguments, environment values or working directory).
pub(super) fn tasks_read(task: &TaskDef) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut add = |template: &Template| {
        for (placeholder, _) in template.placeholders() {
            if let Placeholder::TaskOutput { task, .. } = placeholder {
                names.insert(task.to_string());
            }
        }
    };
    let (program, args) = task.kind.templates();
    add(program);
    args.into_iter().for_each(&mut add);
    for text in task.environment.values().chain(&task.working_dir) {
        add(&Template::parse(text));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forty layers of two tasks, each depending on both of the layer before, under a
    /// root that failed: every path to the root (2^40 of them) meets the others, and
    /// the walk visits each task once. Succeeded tasks give an entry each, empty or not.
    #[test]
    fn upstream_outputs_visit_each_task_once() {
        let mut yaml = String::from("id: lattice\ntasks:\n  - {id: root, command: \"false\"}\n");
        let mut previous = vec!["root".to_string()];
        for layer in 0..40 {
            let ids = [format!("a{layer}"), format!("b{layer}")];
            for id in &ids {
                yaml += &format!(
                    "  - {{id: {id}, command: \"true\", depends_on: [{}]}}\n",
                    previous.join(", ")
                );
            }
            previous = ids.to_vec();
        }
        yaml += &format!(
            "  - {{id: last, command: \"true\", condition: all_done, depends_on: [{}]}}\n",
            previous.join(", ")
        );
        let job = crate::config::parse_job(
            &yaml,
            std::path::Path::new("lattice.yaml"),
            &crate::config::GlobalConfig::default(),
        )
        .expect("job");
        let mut records: Vec<TaskRun> = job
            .tasks
            .iter()
            .map(|t| {
                let mut r = TaskRun::pending("r", &t.id);
                r.status = TaskStatus::Skipped;
                r
            })
            .collect();
        records[0].status = TaskStatus::Failed;
        let last = job.tasks.len() - 1;
        let none = HashSet::new();
        assert!(upstream_outputs(&job, &records, last, &none).is_empty());

        // Two of the layer tasks succeeded, one of them with an output.
        records[1].status = TaskStatus::Succeeded;
        records[1].outputs = BTreeMap::from([("rows".to_string(), "42".to_string())]);
        records[4].status = TaskStatus::Succeeded;
        let with_outputs = (records[1].task_id.clone(), records[1].outputs.clone());
        assert_eq!(
            upstream_outputs(&job, &records, last, &none),
            BTreeMap::from([with_outputs.clone()])
        );
        // One that wrote none is there when the task names it.
        let reads = HashSet::from([records[4].task_id.clone()]);
        assert_eq!(
            upstream_outputs(&job, &records, last, &reads),
            BTreeMap::from([with_outputs, (records[4].task_id.clone(), BTreeMap::new())])
        );
        // Only what is upstream: a0 sees nothing but the root.
        assert!(upstream_outputs(&job, &records, 1, &reads).is_empty());
    }

    #[test]
    fn the_tasks_read_are_those_named_in_a_task_output_placeholder() {
        let job = crate::config::parse_job(
            "id: j\ntasks:\n  - {id: a, command: \"true\"}\n  - {id: b, command: \"true\"}\n  \
             - {id: c, command: \"true\"}\n  - id: d\n    command: echo\n    \
             args: ['${tasks.a.outputs.x}', '${config.k}']\n    environment: {V: '${tasks.b.outputs.y}'}\n    \
             depends_on: [a, b, c]\nconfig: {k: v}\n",
            std::path::Path::new("j.yaml"),
            &crate::config::GlobalConfig::default(),
        )
        .expect("job");
        let reads = tasks_read(&job.tasks[3]);
        assert_eq!(reads, HashSet::from(["a".to_string(), "b".to_string()]));
    }

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
