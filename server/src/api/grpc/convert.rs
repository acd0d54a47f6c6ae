//! Every conversion from the engine's domain types to the `petit.v1` messages, in one
//! place. These functions are pure: whatever needs the engine or the store (next fire
//! times, last run) is gathered by the caller and passed in.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use petit_proto::v1 as pb;
use prost_types::Timestamp;

use crate::core::job::{Catchup, Overlap};
use crate::core::{
    DepCondition, JobDef, LogStream, RetryPolicy, RunStatus, TaskDef, TaskStatus, TriggerReason,
};
use crate::core::{LogBatch, LogLineRef};
use crate::engine::SchedulerInfo;
use crate::events::{Event, EventKind};
use crate::store::{AuditRecord, LogLine, NodeRecord, NotificationRecord, Run, TaskRun};

pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        // Always below 2e9 (a leap second at most adds one second's worth).
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(999_999_999),
    }
}

pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// The time between two instants; zero when the clock went backwards in between, so a
/// client never shows a negative duration.
pub fn elapsed(from: DateTime<Utc>, to: DateTime<Utc>) -> prost_types::Duration {
    duration((to - from).to_std().unwrap_or_default())
}

fn hash_map(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub fn run_status(s: RunStatus) -> pb::RunStatus {
    match s {
        RunStatus::Queued => pb::RunStatus::Queued,
        RunStatus::Running => pb::RunStatus::Running,
        RunStatus::Succeeded => pb::RunStatus::Succeeded,
        RunStatus::Failed => pb::RunStatus::Failed,
        RunStatus::Cancelled => pb::RunStatus::Cancelled,
        RunStatus::Interrupted => pb::RunStatus::Interrupted,
    }
}

pub fn task_status(s: TaskStatus) -> pb::TaskStatus {
    match s {
        TaskStatus::Pending => pb::TaskStatus::Pending,
        TaskStatus::Running => pb::TaskStatus::Running,
        TaskStatus::Succeeded => pb::TaskStatus::Succeeded,
        TaskStatus::Failed => pb::TaskStatus::Failed,
        TaskStatus::Skipped => pb::TaskStatus::Skipped,
        TaskStatus::Retrying => pb::TaskStatus::Retrying,
        TaskStatus::TimedOut => pb::TaskStatus::TimedOut,
        TaskStatus::Cancelled => pb::TaskStatus::Cancelled,
        TaskStatus::Interrupted => pb::TaskStatus::Interrupted,
    }
}

pub fn trigger_reason(t: TriggerReason) -> pb::TriggerReason {
    match t {
        TriggerReason::Schedule => pb::TriggerReason::Schedule,
        TriggerReason::Manual => pb::TriggerReason::Manual,
        TriggerReason::Backfill => pb::TriggerReason::Backfill,
        TriggerReason::Catchup => pb::TriggerReason::Catchup,
        TriggerReason::Retry => pb::TriggerReason::Retry,
    }
}

pub fn log_stream(s: LogStream) -> pb::LogStream {
    match s {
        LogStream::Stdout => pb::LogStream::Stdout,
        LogStream::Stderr => pb::LogStream::Stderr,
    }
}

pub fn event_type(k: EventKind) -> pb::EventType {
    match k {
        EventKind::RunQueued => pb::EventType::RunQueued,
        EventKind::RunStarted => pb::EventType::RunStarted,
        EventKind::RunSucceeded => pb::EventType::RunSucceeded,
        EventKind::RunFailed => pb::EventType::RunFailed,
        EventKind::RunCancelled => pb::EventType::RunCancelled,
        EventKind::RunInterrupted => pb::EventType::RunInterrupted,
        EventKind::TaskStarted => pb::EventType::TaskStarted,
        EventKind::TaskSucceeded => pb::EventType::TaskSucceeded,
        EventKind::TaskFailed => pb::EventType::TaskFailed,
        EventKind::TaskRetrying => pb::EventType::TaskRetrying,
        EventKind::TaskSkipped => pb::EventType::TaskSkipped,
        EventKind::TaskTimedOut => pb::EventType::TaskTimedOut,
        EventKind::TaskCancelled => pb::EventType::TaskCancelled,
        EventKind::TaskInterrupted => pb::EventType::TaskInterrupted,
        EventKind::LogLine => pb::EventType::LogLine,
        EventKind::SchedulerPaused => pb::EventType::SchedulerPaused,
        EventKind::SchedulerResumed => pb::EventType::SchedulerResumed,
        EventKind::JobPaused => pb::EventType::JobPaused,
        EventKind::JobResumed => pb::EventType::JobResumed,
        EventKind::JobSkipped => pb::EventType::JobSkipped,
        EventKind::Notification => pb::EventType::Notification,
    }
}

/// A run as of `now`: a run still going reports the time it has been running so far.
pub fn run(r: &Run, now: DateTime<Utc>) -> pb::Run {
    pb::Run {
        id: r.id.clone(),
        job_id: r.job_id.clone(),
        status: run_status(r.status).into(),
        trigger: trigger_reason(r.trigger).into(),
        params: hash_map(&r.params),
        created_at: Some(timestamp(r.created_at)),
        started_at: r.started_at.map(timestamp),
        ended_at: r.ended_at.map(timestamp),
        duration: r
            .started_at
            .map(|start| elapsed(start, r.ended_at.unwrap_or(now))),
        error: r.error.clone().unwrap_or_default(),
        triggered_by: r.triggered_by.clone().unwrap_or_default(),
        scheduled_for: r.scheduled_for.map(timestamp),
        definition: r.definition.clone().unwrap_or_default(),
        retry_of: r.retry_of.clone().unwrap_or_default(),
    }
}

/// A node of a cluster as the API shows it; `this` marks the node answering.
pub fn node(n: NodeRecord, this: Option<&str>) -> pb::Node {
    pb::Node {
        this_node: this == Some(n.id.as_str()),
        id: n.id,
        epoch: n.epoch,
        address: n.address,
        version: n.version,
        joined_at: Some(timestamp(n.joined_at)),
        heartbeat_at: Some(timestamp(n.heartbeat_at)),
        alive: n.alive,
        left: n.left,
        running_runs: n.running,
        mismatched_jobs: n.mismatched,
    }
}

/// An audit entry as the API shows it.
pub fn audit_record(r: AuditRecord) -> pb::AuditRecord {
    pb::AuditRecord {
        time: Some(timestamp(r.time)),
        actor: r.actor,
        call: r.call,
        target: r.target,
        outcome: r.outcome,
        message: r.message,
    }
}

/// A notification delivery attempt as the API shows it.
pub fn notification(n: NotificationRecord) -> pb::NotificationAttempt {
    pb::NotificationAttempt {
        time: Some(timestamp(n.time)),
        event: n.event,
        target: n.target,
        attempt: n.attempt,
        outcome: n.outcome,
        message: n.message,
    }
}

/// A task run as of `now` (see `run`).
pub fn task_run(t: &TaskRun, now: DateTime<Utc>) -> pb::TaskRun {
    pb::TaskRun {
        run_id: t.run_id.clone(),
        task_id: t.task_id.clone(),
        status: task_status(t.status).into(),
        attempts: t.attempts,
        exit_code: t.exit_code,
        started_at: t.started_at.map(timestamp),
        ended_at: t.ended_at.map(timestamp),
        duration: t
            .started_at
            .map(|start| elapsed(start, t.ended_at.unwrap_or(now))),
        error: t.error.clone().unwrap_or_default(),
        outputs: hash_map(&t.outputs),
    }
}

pub fn log_line(l: &LogLine) -> pb::LogLine {
    into_log_line(l.clone())
}

/// As [`log_line`], moving the strings: a page of lines is converted without a copy.
pub fn into_log_line(l: LogLine) -> pb::LogLine {
    pb::LogLine {
        stream: log_stream(l.stream).into(),
        time: Some(timestamp(l.time)),
        run_id: l.run_id,
        task_id: l.task_id,
        attempt: l.attempt,
        line: l.line,
        seq: l.seq,
    }
}

/// One line of a batch.
pub fn log_line_ref(l: LogLineRef<'_>) -> pb::LogLine {
    pb::LogLine {
        stream: log_stream(l.stream).into(),
        time: Some(timestamp(l.time)),
        run_id: l.run_id.to_string(),
        task_id: l.task_id.to_string(),
        attempt: l.attempt,
        line: l.line.to_string(),
        seq: l.seq,
    }
}

/// The contract's events for one of the bus's: one per line for a batch of log lines,
/// else one. Made one at a time, as a stream sends them: a batch of thousands of lines
/// is never held as thousands of messages.
pub fn events(e: &Event) -> impl Iterator<Item = pb::Event> + Send + '_ {
    let base = event(e);
    let single = e.log().is_none().then(|| base.clone());
    let lines = e.log().into_iter().flat_map(LogBatch::lines);
    single.into_iter().chain(lines.map(move |line| pb::Event {
        log: Some(log_line_ref(line)),
        ..base.clone()
    }))
}

/// The contract's event for one of the bus's, a log batch's without its lines (see
/// [`events`]).
pub fn event(e: &Event) -> pb::Event {
    let task_id = e.task_id().unwrap_or_default().to_string();
    pb::Event {
        r#type: event_type(e.kind()).into(),
        time: Some(timestamp(e.time())),
        job_id: e.job_id().to_string(),
        run_id: e.run_id().unwrap_or_default().to_string(),
        task_id,
        run: e.run().map(|r| run(r, e.time())),
        task_run: e.task_run().map(|t| task_run(t, e.time())),
        log: None,
        message: e.message().unwrap_or_default().to_string(),
    }
}

pub fn scheduler_state(s: &SchedulerInfo) -> pb::SchedulerState {
    let status = if s.stopping {
        pb::SchedulerStatus::Stopping
    } else if s.paused {
        pb::SchedulerStatus::Paused
    } else {
        pb::SchedulerStatus::Running
    };
    pb::SchedulerState {
        status: status.into(),
        job_count: saturate(s.job_count),
        running_runs: saturate(s.running_runs),
        queued_runs: saturate(s.queued_runs),
        started_at: Some(timestamp(s.started_at)),
        max_concurrent_runs: saturate(s.max_concurrent_runs),
        max_concurrent_tasks: saturate(s.max_concurrent_tasks),
        // Filled in by the API, which knows how the daemon is exposed.
        tokens_required: false,
        tls: false,
        warnings: Vec::new(),
        // Filled in by the API from the engine's cluster, if any.
        node_id: String::new(),
        node_epoch: 0,
        nodes: Vec::new(),
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A job definition, with what the engine knows about it: its next fire instants, its
/// most recent run, whether it is paused.
pub fn job(
    def: &JobDef,
    next_fires: &[DateTime<Utc>],
    last_run: Option<&Run>,
    paused: bool,
    now: DateTime<Utc>,
) -> pb::Job {
    pb::Job {
        id: def.id.clone(),
        name: def.name.clone(),
        description: def.description.clone().unwrap_or_default(),
        enabled: def.enabled,
        schedule: def.schedule.as_ref().map(|s| pb::Schedule {
            expression: s.expression().to_string(),
            timezone: s.timezone().name().to_string(),
            next_fire_times: next_fires.iter().copied().map(timestamp).collect(),
        }),
        max_concurrency: def.max_concurrency,
        depends_on: def
            .depends_on
            .iter()
            .map(|d| {
                let (condition, window) = match d.condition {
                    DepCondition::LastSuccess => ("last_success", None),
                    DepCondition::LastComplete => ("last_complete", None),
                    DepCondition::WithinWindow(w) => ("within_window", Some(duration(w))),
                };
                pb::JobDependency {
                    job_id: d.job_id.clone(),
                    condition: condition.to_string(),
                    window,
                }
            })
            .collect(),
        config: hash_map(&def.config),
        tasks: def.tasks.iter().map(task_definition).collect(),
        last_run: last_run.map(|r| run(r, now)),
        source: def.source.display().to_string(),
        paused,
        overlap: match def.overlap {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
            Overlap::Allow => "allow",
            Overlap::CancelPrevious => "cancel_previous",
        }
        .to_string(),
        max_queued: def.max_queued,
        catchup: match def.catchup {
            Catchup::None => "none",
            Catchup::Latest => "latest",
            Catchup::All => "all",
        }
        .to_string(),
        catchup_window: Some(duration(def.catchup_window)),
        timeout: def.timeout.map(duration),
        jitter: def.jitter.map(duration),
        history_max_runs: def.history.max_runs.unwrap_or(0),
        history_max_age: def.history.max_age.map(duration),
        definition: def.definition.clone(),
        task_count: u32::try_from(def.tasks.len()).unwrap_or(u32::MAX),
    }
}

fn task_definition(t: &TaskDef) -> pb::TaskDefinition {
    // A python task shows its interpreter as the command and the script as the first
    // argument (after `-c` when inline): exactly what will be spawned.
    let (command, args) = t.kind.argv();
    pb::TaskDefinition {
        id: t.id.clone(),
        r#type: t.kind.type_name().to_string(),
        command,
        args,
        depends_on: t.depends_on.clone(),
        condition: t.condition.as_str().to_string(),
        retry: Some(retry_policy(&t.retry)),
        environment: hash_map(&t.environment),
        working_dir: t.working_dir.clone().unwrap_or_default(),
        timeout: t.timeout.map(duration),
    }
}

fn retry_policy(r: &RetryPolicy) -> pb::RetryPolicy {
    pb::RetryPolicy {
        max_attempts: r.max_attempts,
        delay: Some(duration(r.delay)),
        condition: r.condition.as_str().to_string(),
        backoff: r.backoff.as_str().to_string(),
        max_delay: r.max_delay.map(duration),
        jitter: r.jitter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::TaskKind;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).single().expect("valid instant")
    }

    fn run_record(status: RunStatus, started: Option<i64>, ended: Option<i64>) -> Run {
        Run {
            id: "r1".into(),
            job_id: "j".into(),
            status,
            trigger: TriggerReason::Manual,
            params: BTreeMap::from([("k".to_string(), "v".to_string())]),
            created_at: at(100),
            started_at: started.map(at),
            ended_at: ended.map(at),
            error: None,
            triggered_by: None,
            scheduled_for: None,
            definition: None,
            retry_of: None,
        }
    }

    #[test]
    fn run_duration_follows_its_state() {
        // (status, started, ended, now, expected duration in seconds)
        let cases = [
            (RunStatus::Queued, None, None, 200, None),
            (RunStatus::Running, Some(100), None, 130, Some(30)),
            (RunStatus::Succeeded, Some(100), Some(110), 500, Some(10)),
            // The clock went backwards: never a negative duration.
            (RunStatus::Running, Some(100), None, 90, Some(0)),
        ];
        for (status, started, ended, now, want) in cases {
            let pb = run(&run_record(status, started, ended), at(now));
            assert_eq!(pb.duration.map(|d| d.seconds), want, "{status} {now}");
            assert_eq!(pb.status, run_status(status) as i32);
            assert_eq!(pb.params.get("k").map(String::as_str), Some("v"));
        }
    }

    #[test]
    fn statuses_map_one_to_one() {
        let runs = [
            (RunStatus::Queued, pb::RunStatus::Queued),
            (RunStatus::Running, pb::RunStatus::Running),
            (RunStatus::Succeeded, pb::RunStatus::Succeeded),
            (RunStatus::Failed, pb::RunStatus::Failed),
            (RunStatus::Cancelled, pb::RunStatus::Cancelled),
            (RunStatus::Interrupted, pb::RunStatus::Interrupted),
        ];
        for (domain, wire) in runs {
            assert_eq!(run_status(domain), wire);
            // The wire name is the domain name, prefixed and upper-cased.
            assert_eq!(
                wire.as_str_name(),
                format!("RUN_STATUS_{}", domain.as_str().to_uppercase())
            );
        }
        let tasks = [
            TaskStatus::Pending,
            TaskStatus::Running,
            TaskStatus::Succeeded,
            TaskStatus::Failed,
            TaskStatus::Skipped,
            TaskStatus::Retrying,
            TaskStatus::TimedOut,
            TaskStatus::Cancelled,
            TaskStatus::Interrupted,
        ];
        for domain in tasks {
            assert_eq!(
                task_status(domain).as_str_name(),
                format!("TASK_STATUS_{}", domain.as_str().to_uppercase())
            );
        }
    }

    #[test]
    fn scheduler_status_prefers_stopping_over_paused() {
        let info = |paused, stopping| SchedulerInfo {
            paused,
            stopping,
            job_count: 3,
            running_runs: 1,
            queued_runs: 0,
            started_at: at(0),
            max_concurrent_runs: 16,
            max_concurrent_tasks: 8,
        };
        let cases = [
            (false, false, pb::SchedulerStatus::Running),
            (true, false, pb::SchedulerStatus::Paused),
            (true, true, pb::SchedulerStatus::Stopping),
            (false, true, pb::SchedulerStatus::Stopping),
        ];
        for (paused, stopping, want) in cases {
            let state = scheduler_state(&info(paused, stopping));
            assert_eq!(
                state.status, want as i32,
                "paused={paused} stopping={stopping}"
            );
            assert_eq!(state.job_count, 3);
        }
    }

    #[test]
    fn event_names_its_run_and_task() {
        let task = TaskRun {
            run_id: "r1".into(),
            task_id: "t1".into(),
            status: TaskStatus::Running,
            attempts: 1,
            exit_code: None,
            started_at: Some(at(100)),
            ended_at: None,
            error: None,
            outputs: BTreeMap::new(),
        };
        let log = LogLine {
            run_id: "r2".into(),
            seq: 7,
            task_id: "t2".into(),
            attempt: 2,
            stream: LogStream::Stderr,
            line: "oops".into(),
            time: at(120),
        };
        let cases = [
            (
                Event::of_task("j", task, None),
                pb::EventType::TaskStarted,
                "r1",
                "t1",
            ),
            (
                Event::Log {
                    job_id: "j".into(),
                    batch: std::sync::Arc::new(
                        crate::core::LogBatch::group(vec![log.clone()]).remove(0),
                    ),
                },
                pb::EventType::LogLine,
                "r2",
                "t2",
            ),
            (
                Event::Scheduler {
                    time: at(130),
                    paused: true,
                },
                pb::EventType::SchedulerPaused,
                "",
                "",
            ),
        ];
        for (e, kind, run_id, task_id) in cases {
            let all: Vec<pb::Event> = events(&e).collect();
            assert_eq!(all.len(), 1);
            let pb = &all[0];
            assert_eq!(pb.r#type, kind as i32);
            assert_eq!(pb.run_id, run_id);
            assert_eq!(pb.task_id, task_id);
            if kind == pb::EventType::LogLine {
                assert_eq!(pb.log, Some(log_line(&log)));
            }
        }
    }

    #[test]
    fn python_task_shows_what_is_spawned() {
        let kind = TaskKind::Python {
            interpreter: "python3".into(),
            script: "print(1)".into(),
            inline: true,
            args: vec![],
        };
        let def = TaskDef {
            id: "p".into(),
            kind,
            depends_on: vec!["a".into()],
            condition: crate::core::Condition::AllDone,
            retry: RetryPolicy::default(),
            environment: BTreeMap::new(),
            working_dir: None,
            timeout: Some(Duration::from_millis(1500)),
            resources: BTreeMap::new(),
        };
        let pb = task_definition(&def);
        assert_eq!(pb.r#type, "python");
        assert_eq!(pb.command, "python3");
        assert_eq!(pb.args, ["-c", "print(1)"]);
        assert_eq!(pb.condition, "all_done");
        assert_eq!(
            pb.timeout,
            Some(prost_types::Duration {
                seconds: 1,
                nanos: 500_000_000
            })
        );
    }
}
