//! Prometheus metrics (`GET /metrics`, OpenMetrics text): counters and histograms fed
//! by the event bus as an observer (every event, in order, never lagging), gauges read
//! from the engine's memory at scrape time, and the process's own figures from
//! `/proc`. Nothing here reads the store on a scrape, so a scrape costs the same with
//! ten runs of history or ten million. No run id is ever a label.

mod http;
mod process;

pub use http::{router, PATH};

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::engine::Engine;
use crate::events::{Event, EventKind, EventObserver};

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobStatus {
    job: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    job: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobReason {
    job: String,
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolState {
    pool: String,
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn run_duration_histogram() -> Histogram {
    // From a quick task to a nightly batch.
    Histogram::new([
        0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0,
        86400.0,
    ])
}

/// All of petitd's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    runs: Family<JobStatus, Counter>,
    run_duration: HistogramFamily<JobLabel>,
    tasks: Family<JobStatus, Counter>,
    retries: Family<JobLabel, Counter>,
    fire_lag: Histogram,
    skipped: Family<JobReason, Counter>,
    queued: Gauge,
    running: Gauge,
    pool_slots: Family<PoolState, Gauge>,
    paused: Gauge,
    /// Runs seen starting and not yet ended (so a run resumed after a restart counts
    /// once, and its fire lag is measured once).
    running_ids: Mutex<HashSet<String>>,
    last_success: std::sync::Arc<LastSuccess>,
}

/// The end of each job's newest successful run, as a Unix time.
#[derive(Debug, Default)]
struct LastSuccess(Mutex<BTreeMap<String, f64>>);

impl LastSuccess {
    /// Keeps the later of what is known and `at` (the store's seed at start may arrive
    /// after a newer run's event).
    fn record(&self, job: &str, at: DateTime<Utc>) {
        let secs = at.timestamp_micros() as f64 / 1e6;
        let mut map = self.0.lock().expect("metrics lock");
        let entry = map.entry(job.to_string()).or_insert(secs);
        if *entry < secs {
            *entry = secs;
        }
    }
}

impl Collector for LastSuccess {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let map = self.0.lock().expect("metrics lock");
        let mut family = encoder.encode_descriptor(
            "petit_job_last_success_timestamp_seconds",
            "When the job's newest successful run ended (Unix time): alert when it is too old",
            None,
            MetricType::Gauge,
        )?;
        for (job, secs) in map.iter() {
            let labels = JobLabel { job: job.clone() };
            ConstGauge::new(*secs).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let runs = Family::<JobStatus, Counter>::default();
        registry.register(
            "petit_runs",
            "Runs that ended, by job and final status",
            runs.clone(),
        );
        let run_duration: HistogramFamily<JobLabel> =
            Family::new_with_constructor(run_duration_histogram);
        registry.register_with_unit(
            "petit_run_duration",
            "Run durations, start to end, by job",
            Unit::Seconds,
            run_duration.clone(),
        );
        let tasks = Family::<JobStatus, Counter>::default();
        registry.register(
            "petit_tasks",
            "Task runs that ended, by job and final status",
            tasks.clone(),
        );
        let retries = Family::<JobLabel, Counter>::default();
        registry.register(
            "petit_task_retries",
            "Task attempts retried, by job",
            retries.clone(),
        );
        let fire_lag = Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0]);
        registry.register_with_unit(
            "petit_fire_lag",
            "From a schedule instant to its run's creation (job creation skew)",
            Unit::Seconds,
            fire_lag.clone(),
        );
        let skipped = Family::<JobReason, Counter>::default();
        registry.register(
            "petit_skipped_fires",
            "Scheduled fires that started no run, by job and reason",
            skipped.clone(),
        );
        let queued = Gauge::default();
        registry.register(
            "petit_runs_queued",
            "Runs created and waiting for a slot",
            queued.clone(),
        );
        let running = Gauge::default();
        registry.register("petit_runs_running", "Runs executing now", running.clone());
        let pool_slots = Family::<PoolState, Gauge>::default();
        registry.register(
            "petit_pool_slots",
            "Slots of each resource pool, in use or free",
            pool_slots.clone(),
        );
        let paused = Gauge::default();
        registry.register(
            "petit_scheduler_paused",
            "1 while the scheduler is paused",
            paused.clone(),
        );
        let build = Family::<Version, Gauge>::default();
        build
            .get_or_create(&Version {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        registry.register("petit_build_info", "petitd's version, as a label", build);
        let last_success = std::sync::Arc::new(LastSuccess::default());
        registry.register_collector(Box::new(last_success.clone()));
        registry.register_collector(Box::new(process::ProcessCollector::new()));
        Metrics {
            registry,
            runs,
            run_duration,
            tasks,
            retries,
            fire_lag,
            skipped,
            queued,
            running,
            pool_slots,
            paused,
            running_ids: Mutex::new(HashSet::new()),
            last_success,
        }
    }

    /// Seeds a job's last success from the store (once, at start).
    pub fn seed_last_success(&self, job: &str, at: DateTime<Utc>) {
        self.last_success.record(job, at);
    }

    /// The metrics as OpenMetrics text, with the engine's gauges as they are now.
    pub fn render(&self, engine: &Engine) -> String {
        let state = engine.state();
        let running = self.running_ids.lock().expect("metrics lock").len();
        self.running.set(running as i64);
        // Active runs the engine holds that have not started: waiting for a slot.
        self.queued
            .set(state.running_runs.saturating_sub(running) as i64);
        self.paused.set(i64::from(state.paused));
        for (pool, capacity, free) in engine.pool_slots() {
            let gauge = |state: &str| {
                self.pool_slots.get_or_create(&PoolState {
                    pool: pool.clone(),
                    state: state.to_string(),
                })
            };
            gauge("used").set(capacity.saturating_sub(free) as i64);
            gauge("free").set(free as i64);
        }
        let mut text = String::with_capacity(4096);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!("cannot encode the metrics: {e}");
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl EventObserver for Metrics {
    fn observe(&self, event: &Event) {
        let job = || event.job_id().to_string();
        match event.kind() {
            // The most frequent event by far: out first.
            EventKind::LogLine | EventKind::RunQueued => {}
            EventKind::RunStarted => {
                let Some(run) = &event.run() else { return };
                let new = self
                    .running_ids
                    .lock()
                    .expect("metrics lock")
                    .insert(run.id.clone());
                if let (true, Some(at)) = (new, run.scheduled_for) {
                    let lag = (run.created_at - at).to_std().unwrap_or_default();
                    self.fire_lag.observe(lag.as_secs_f64());
                }
            }
            EventKind::RunSucceeded
            | EventKind::RunFailed
            | EventKind::RunCancelled
            | EventKind::RunInterrupted => {
                let Some(run) = &event.run() else { return };
                self.running_ids
                    .lock()
                    .expect("metrics lock")
                    .remove(&run.id);
                self.runs
                    .get_or_create(&JobStatus {
                        job: job(),
                        status: run.status.as_str().to_string(),
                    })
                    .inc();
                if let (Some(start), Some(end)) = (run.started_at, run.ended_at) {
                    let took = (end - start).to_std().unwrap_or_default();
                    self.run_duration
                        .get_or_create(&JobLabel { job: job() })
                        .observe(took.as_secs_f64());
                }
                if event.kind() == EventKind::RunSucceeded {
                    self.last_success
                        .record(event.job_id(), run.ended_at.unwrap_or(event.time()));
                }
            }
            EventKind::TaskSucceeded
            | EventKind::TaskFailed
            | EventKind::TaskSkipped
            | EventKind::TaskTimedOut
            | EventKind::TaskCancelled
            | EventKind::TaskInterrupted => {
                let Some(task) = &event.task_run() else {
                    return;
                };
                self.tasks
                    .get_or_create(&JobStatus {
                        job: job(),
                        status: task.status.as_str().to_string(),
                    })
                    .inc();
            }
            EventKind::TaskRetrying => {
                self.retries.get_or_create(&JobLabel { job: job() }).inc();
            }
            EventKind::JobSkipped => {
                self.skipped
                    .get_or_create(&JobReason {
                        job: job(),
                        reason: event.reason().unwrap_or("other").to_string(),
                    })
                    .inc();
            }
            EventKind::TaskStarted
            | EventKind::SchedulerPaused
            | EventKind::SchedulerResumed
            | EventKind::JobPaused
            | EventKind::JobResumed
            | EventKind::Notification => {}
        }
    }
}

#[cfg(test)]
mod tests;
