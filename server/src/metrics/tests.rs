use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{TimeZone, Utc};

use super::*;
use crate::core::{RunStatus, TaskStatus, TriggerReason};
use crate::store::{MemoryStore, Run, StoreOptions, TaskRun};
use crate::EngineOptions;

fn run(id: &str, status: RunStatus, scheduled: bool) -> Run {
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    Run {
        id: id.into(),
        job_id: "nightly".into(),
        status,
        trigger: TriggerReason::Schedule,
        params: BTreeMap::new(),
        created_at: at + chrono::Duration::milliseconds(20),
        started_at: Some(at + chrono::Duration::milliseconds(30)),
        ended_at: status
            .is_terminal()
            .then(|| at + chrono::Duration::seconds(90)),
        error: None,
        triggered_by: None,
        scheduled_for: scheduled.then_some(at),
        definition: None,
        retry_of: None,
    }
}

fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(prefix))
}

#[tokio::test]
async fn events_feed_the_counters_once_each() {
    let metrics = Metrics::new();
    let started = run("r1", RunStatus::Running, true);
    metrics.observe(&Event::of_run(started.clone()));
    // A run resumed after a restart starts again: counted and measured once.
    metrics.observe(&Event::of_run(started));
    let mut task = TaskRun::pending("r1", "t");
    task.status = TaskStatus::Retrying;
    metrics.observe(&Event::of_task("nightly", task.clone(), None));
    task.status = TaskStatus::Failed;
    metrics.observe(&Event::of_task("nightly", task, None));
    metrics.observe(&Event::of_run(run("r1", RunStatus::Failed, true)));
    metrics.observe(&Event::of_run(run("r2", RunStatus::Succeeded, false)));
    metrics.observe(&Event::Skipped {
        time: chrono::Utc::now(),
        job_id: "nightly".into(),
        reason: "concurrency",
        message: "job 'nightly' already has 1 run going".into(),
    });

    let engine = crate::Engine::start(
        vec![],
        Arc::new(MemoryStore::new(StoreOptions::default())),
        EngineOptions::default(),
    )
    .await
    .unwrap();
    let text = metrics.render(&engine);
    let want = [
        "petit_runs_total{job=\"nightly\",status=\"failed\"} 1",
        "petit_runs_total{job=\"nightly\",status=\"succeeded\"} 1",
        "petit_tasks_total{job=\"nightly\",status=\"failed\"} 1",
        "petit_task_retries_total{job=\"nightly\"} 1",
        "petit_skipped_fires_total{job=\"nightly\",reason=\"concurrency\"} 1",
        "petit_fire_lag_seconds_count 1",
        "petit_run_duration_seconds_count{job=\"nightly\"} 2",
        "petit_runs_running 0",
        "petit_scheduler_paused 0",
        "petit_job_last_success_timestamp_seconds{job=\"nightly\"} 1767225690",
    ];
    for want in want {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // 20 ms of lag falls in the 0.05 s bucket, not the 0.01 one.
    assert!(
        line(&text, "petit_fire_lag_seconds_bucket{le=\"0.01\"} 0").is_some(),
        "{text}"
    );
    assert!(
        line(&text, "petit_fire_lag_seconds_bucket{le=\"0.05\"} 1").is_some(),
        "{text}"
    );
    assert!(text.contains(&format!(
        "petit_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(line(&text, name).is_some(), "missing {name} in:\n{text}");
    }
    assert!(!text.contains("r1"), "no run id as a label");
}

#[test]
fn the_last_success_only_moves_forward() {
    let last = LastSuccess::default();
    let at = |s| Utc.timestamp_opt(s, 0).unwrap();
    last.record("j", at(200));
    last.record("j", at(100));
    assert_eq!(last.0.lock().unwrap()["j"], 200.0);
    last.record("j", at(300));
    assert_eq!(last.0.lock().unwrap()["j"], 300.0);
}
