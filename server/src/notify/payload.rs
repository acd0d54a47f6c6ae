//! The JSON message a notification carries, the same for webhooks and commands.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::core::notify::NotifyOn;
use crate::core::{LogStream, TaskStatus};
use crate::engine::Engine;
use crate::events::Event;

/// Lines of stderr sent for each failed task.
pub const STDERR_TAIL: usize = 20;

/// A built message.
#[derive(Debug)]
pub struct Payload {
    pub on: NotifyOn,
    pub job_id: String,
    /// Empty for a skipped fire.
    pub run_id: String,
    /// The JSON body.
    pub body: Vec<u8>,
}

fn time(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| {
        json!(t.to_rfc3339_opts(SecondsFormat::Millis, true))
    })
}

impl Payload {
    pub async fn build(engine: &Engine, on: NotifyOn, event: &Event, api_base: &str) -> Payload {
        let mut body = BTreeMap::new();
        body.insert("event", json!(on.as_str()));
        body.insert("job", json!(event.job_id()));
        body.insert("time", time(Some(event.time())));
        let run_id = event.run_id().unwrap_or_default().to_string();
        if let Some(message) = &event.message() {
            body.insert("reason", json!(message));
        }
        if let Some(run) = &event.run() {
            body.insert("run_id", json!(run.id));
            body.insert("status", json!(run.status.as_str()));
            body.insert("trigger", json!(run.trigger.as_str()));
            body.insert("triggered_by", json!(run.triggered_by));
            body.insert("scheduled_for", time(run.scheduled_for));
            body.insert("error", json!(run.error));
            body.insert("created_at", time(Some(run.created_at)));
            body.insert("started_at", time(run.started_at));
            body.insert("ended_at", time(run.ended_at));
            let duration = run
                .started_at
                .zip(run.ended_at)
                .map(|(s, e)| (e - s).num_milliseconds() as f64 / 1000.0);
            body.insert("duration_seconds", json!(duration));
        }
        if let Some(task) = &event.task_run() {
            body.insert("run_id", json!(task.run_id));
            body.insert("task", json!(task.task_id));
            body.insert("attempt", json!(task.attempts));
            body.insert("error", json!(task.error));
        }
        if !run_id.is_empty() {
            body.insert(
                "link",
                json!(format!(
                    "{}/api/runs/{run_id}",
                    api_base.trim_end_matches('/')
                )),
            );
        }
        if on == NotifyOn::Failure && !run_id.is_empty() {
            body.insert("failed_tasks", json!(failed_tasks(engine, &run_id).await));
        }
        let body = serde_json::to_vec(&body).unwrap_or_default();
        Payload {
            on,
            job_id: event.job_id().to_string(),
            run_id,
            body,
        }
    }
}

/// The run's failed tasks with the tail of their stderr.
async fn failed_tasks(engine: &Engine, run_id: &str) -> Vec<Value> {
    let store = engine.store();
    let tasks = match store.task_runs(run_id).await {
        Ok(tasks) => tasks,
        Err(e) => {
            tracing::warn!(run = %run_id, "cannot read the failed tasks for a notification: {e}");
            return Vec::new();
        }
    };
    let mut failed = Vec::new();
    for task in tasks
        .iter()
        .filter(|t| matches!(t.status, TaskStatus::Failed | TaskStatus::TimedOut))
    {
        let stderr = store
            .log_tail(run_id, &task.task_id, LogStream::Stderr, STDERR_TAIL)
            .await
            .unwrap_or_default();
        failed.push(json!({
            "task": task.task_id,
            "status": task.status.as_str(),
            "exit_code": task.exit_code,
            "attempts": task.attempts,
            "error": task.error,
            "stderr_tail": stderr,
        }));
    }
    failed
}
