//! Test support, for our tests and for embedders: a `Harness` that runs a job's DAG on
//! an engine backed by the in-memory store and records what happened in order (an
//! `ExecutionTracker` that can assert "extract completed before transform"), and a
//! `MockTaskContext` for unit-testing custom `Task` implementations.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::{self, ConfigErrors, GlobalConfig};
use crate::core::{JobDef, LogChunk, LogStream};
use crate::engine::{Engine, EngineError, EngineOptions};
use crate::events::{Event, EventKind, RecvError, Subscription};
use crate::exec::{StopReason, Task, TaskContext};
use crate::store::{MemoryStore, Run, Store, StoreOptions, TaskRun};

/// Builds an engine over some jobs and runs one of them to its end.
pub struct Harness {
    jobs: Vec<JobDef>,
    custom: HashMap<(String, String), Arc<dyn Task>>,
    options: EngineOptions,
    store: Option<Arc<dyn Store>>,
}

impl Harness {
    pub fn new(job: JobDef) -> Harness {
        Harness {
            jobs: vec![job],
            custom: HashMap::new(),
            options: EngineOptions::default(),
            store: None,
        }
    }

    /// A harness over one job written in the Petit YAML format.
    pub fn from_yaml(yaml: &str) -> Result<Harness, ConfigErrors> {
        Ok(Harness::new(config::parse_job(
            yaml,
            Path::new("harness.yaml"),
            &GlobalConfig::default(),
        )?))
    }

    /// Adds another job (e.g. an upstream for cross-job dependencies).
    pub fn with_job(mut self, job: JobDef) -> Harness {
        self.jobs.push(job);
        self
    }

    /// Runs `task` instead of the command of task `task_id` (of any job).
    pub fn with_task(mut self, task_id: &str, task: impl Task + 'static) -> Harness {
        let task: Arc<dyn Task> = Arc::new(task);
        for job in &self.jobs {
            self.custom
                .insert((job.id.clone(), task_id.to_string()), task.clone());
        }
        self
    }

    pub fn with_options(mut self, options: EngineOptions) -> Harness {
        self.options = options;
        self
    }

    /// Uses this store instead of a fresh in-memory one.
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Harness {
        self.store = Some(store);
        self
    }

    /// Starts the engine without running anything.
    pub async fn start(self) -> Result<Engine, EngineError> {
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::new(StoreOptions::default())));
        Engine::start_with_tasks(self.jobs, store, self.options, self.custom).await
    }

    /// Starts the engine, triggers the first job with `params` and waits for the run
    /// to end.
    pub async fn run_with(
        self,
        params: BTreeMap<String, String>,
    ) -> Result<HarnessRun, EngineError> {
        let job_id = self.jobs[0].id.clone();
        let engine = self.start().await?;
        run_to_end(&engine, &job_id, params, true).await
    }

    pub async fn run(self) -> Result<HarnessRun, EngineError> {
        self.run_with(BTreeMap::new()).await
    }
}

/// Triggers `job_id` on `engine` and waits for the run to end, tracking its events.
pub async fn run_to_end(
    engine: &Engine,
    job_id: &str,
    params: BTreeMap<String, String>,
    force: bool,
) -> Result<HarnessRun, EngineError> {
    let events = engine.subscribe();
    let run = engine.trigger(job_id, params, force).await?;
    let tracker = ExecutionTracker::follow(events, &run.id).await;
    let run = engine.get_run(&run.id).await?;
    let tasks = engine.store().task_runs(&run.id).await?;
    Ok(HarnessRun {
        engine: engine.clone(),
        run,
        tasks,
        tracker,
    })
}

/// What a harness run left behind.
pub struct HarnessRun {
    pub engine: Engine,
    pub run: Run,
    pub tasks: Vec<TaskRun>,
    pub tracker: ExecutionTracker,
}

impl HarnessRun {
    /// The record of task `id`; panics if the run has no such task.
    pub fn task(&self, id: &str) -> &TaskRun {
        self.tasks
            .iter()
            .find(|t| t.task_id == id)
            .unwrap_or_else(|| panic!("run has no task '{id}'"))
    }

    /// The stored output lines of a task, in order.
    pub async fn logs(&self, task_id: &str) -> Vec<String> {
        let lines = self
            .engine
            .store()
            .logs(&self.run.id, Some(task_id))
            .await
            .expect("logs");
        lines.into_iter().map(|l| l.line).collect()
    }
}

/// The events of one run, in the order they were published.
#[derive(Debug, Default, Clone)]
pub struct ExecutionTracker {
    pub events: Vec<Arc<Event>>,
    /// Events the tracker missed because it fell behind the bus (a task flooding its
    /// output can outrun it). Order assertions refuse to answer when this is not 0.
    pub lagged: u64,
}

impl ExecutionTracker {
    /// Collects the events of `run_id` from `events` until the run ends. Panics after
    /// 60 s (a test that hangs says so).
    pub async fn follow(mut events: Subscription, run_id: &str) -> ExecutionTracker {
        let mut tracker = ExecutionTracker::default();
        let collect = async {
            loop {
                match events.recv().await {
                    Ok(event) if event.run_id() == Some(run_id) => {
                        let end = event.ends_run();
                        tracker.events.push(event);
                        if end {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => tracker.lagged += n,
                    Err(RecvError::Closed) => return,
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), collect)
            .await
            .expect("run did not end within 60 s");
        tracker
    }

    fn position(&self, task_id: &str, kinds: &[EventKind]) -> Option<usize> {
        assert_eq!(
            self.lagged, 0,
            "the tracker missed {} events: its order is incomplete",
            self.lagged
        );
        self.events.iter().position(|e| {
            kinds.contains(&e.kind()) && e.task_run().is_some_and(|t| t.task_id == task_id)
        })
    }

    /// Where task `id` first started, among the events.
    pub fn started(&self, task_id: &str) -> Option<usize> {
        self.position(task_id, &[EventKind::TaskStarted])
    }

    /// Where task `id` settled (succeeded, failed, timed out, skipped, cancelled).
    pub fn completed(&self, task_id: &str) -> Option<usize> {
        self.position(
            task_id,
            &[
                EventKind::TaskSucceeded,
                EventKind::TaskFailed,
                EventKind::TaskTimedOut,
                EventKind::TaskSkipped,
                EventKind::TaskCancelled,
                EventKind::TaskInterrupted,
            ],
        )
    }

    /// Panics unless task `a` settled before task `b` started.
    pub fn assert_completed_before(&self, a: &str, b: &str) {
        let done = self
            .completed(a)
            .unwrap_or_else(|| panic!("task '{a}' never completed"));
        let start = self
            .started(b)
            .unwrap_or_else(|| panic!("task '{b}' never started"));
        assert!(
            done < start,
            "task '{a}' completed at event {done}, after '{b}' started at event {start}"
        );
    }

    /// Task ids in the order they first started.
    pub fn start_order(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for e in self
            .events
            .iter()
            .filter(|e| e.kind() == EventKind::TaskStarted)
        {
            let id = &e.task_run().as_ref().expect("task event").task_id;
            if !seen.contains(id) {
                seen.push(id.clone());
            }
        }
        seen
    }

    /// The most tasks that were running at the same time.
    pub fn max_parallelism(&self) -> usize {
        let mut running = std::collections::HashSet::new();
        let mut max = 0;
        for e in &self.events {
            let Some(t) = &e.task_run() else { continue };
            match e.kind() {
                EventKind::TaskStarted => {
                    running.insert(t.task_id.clone());
                }
                EventKind::LogLine => {}
                _ => {
                    running.remove(&t.task_id);
                }
            }
            max = max.max(running.len());
        }
        max
    }

    /// How many events of `kind` there were for task `task_id`.
    pub fn count(&self, task_id: &str, kind: EventKind) -> usize {
        self.events
            .iter()
            .filter(|e| e.kind() == kind && e.task_run().is_some_and(|t| t.task_id == task_id))
            .count()
    }
}

/// A `TaskContext` for unit-testing a `Task` implementation without an engine: it
/// records the lines the task logs and lets the test ask the task to stop.
pub struct MockTaskContext {
    lines: mpsc::Receiver<LogChunk>,
    stop: watch::Sender<Option<StopReason>>,
}

impl MockTaskContext {
    /// A context for attempt 1 of task `task_id` (run `run-1`, job `job-1`), and the
    /// handle that observes it.
    pub fn new(task_id: &str, timeout: Option<Duration>) -> (TaskContext, MockTaskContext) {
        let (tx, lines) = mpsc::channel(4096);
        let (stop, stop_rx) = watch::channel(None);
        let ctx = TaskContext::new(
            ("run-1".into(), "job-1".into(), task_id.into()),
            1,
            tx,
            stop_rx,
            timeout,
        );
        (ctx, MockTaskContext { lines, stop })
    }

    /// Asks the task to stop, as a cancel or a shutdown would.
    pub fn stop(&self, reason: StopReason) {
        let _ = self.stop.send(Some(reason));
    }

    /// The lines logged so far.
    pub fn lines(&mut self) -> Vec<(LogStream, String)> {
        let mut out = Vec::new();
        while let Ok(chunk) = self.lines.try_recv() {
            out.extend(chunk.lines().map(|line| (chunk.stream, line.to_string())));
        }
        out
    }
}
