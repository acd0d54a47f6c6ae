//! The dashboard's own types (rows of the tables, feed entries, log lines) and their
//! `From` conversions out of the `petit.v1` protocol messages. Only what the screen
//! shows is kept: task definitions, params and outputs are dropped here. Statuses,
//! triggers and event types stay the contract's enums.

use chrono::{DateTime, Utc};
use petit_client::render::{job_zone, timestamp_to_utc, Zone};
use petit_proto::v1;

/// The contract's enums, used as they are: their words and tones are
/// `petit_client::vocab`'s.
pub use v1::{EventType, RunStatus, SchedulerStatus, TaskStatus, TriggerReason};

/// The scheduler's status in a state message (unknown when absent).
pub fn scheduler_status(state: Option<&v1::SchedulerState>) -> SchedulerStatus {
    state.map_or(SchedulerStatus::Unspecified, v1::SchedulerState::status)
}

/// A protobuf timestamp as a UTC instant; `None` when absent or out of range.
pub fn instant(t: Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.as_ref().and_then(timestamp_to_utc)
}

/// A job's most recent run, as far as the Jobs table cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastRun {
    pub created_at: DateTime<Utc>,
    pub status: RunStatus,
}

/// One row of the Jobs table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    /// The expression as written (`None` for manual-only jobs).
    pub schedule: Option<String>,
    /// The zone the schedule is evaluated in (UTC for manual-only jobs).
    pub zone: Zone,
    /// Up to five upcoming fire instants, soonest first, as of when the job was read.
    pub next_fires: Vec<DateTime<Utc>>,
    pub last_run: Option<LastRun>,
    /// Paused on its own (`p`): no scheduled fires until resumed.
    pub paused: bool,
    /// Its scheduling knobs that differ from the defaults, in a line (`overlap queue
    /// (10 queued) · timeout 2h`); empty when none do.
    pub policy: String,
    /// When the dashboard last asked for fresh fire times (so it asks at most every
    /// few seconds when they have all passed).
    pub refreshed_at: Option<DateTime<Utc>>,
}

impl JobRow {
    /// The first listed fire instant still ahead of `now`.
    pub fn next_fire(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_fires.iter().copied().find(|t| *t > now)
    }

    /// Records `run` as the last run if it is at least as recent as the one known.
    pub fn observe_run(&mut self, run: &RunRow) {
        if self
            .last_run
            .is_none_or(|last| last.created_at <= run.created_at)
        {
            self.last_run = Some(LastRun {
                created_at: run.created_at,
                status: run.status,
            });
        }
    }
}

/// A job's scheduling knobs that differ from the defaults, for the Jobs list's footer.
fn policy(job: &v1::Job) -> String {
    let secs = |d: &Option<prost_types::Duration>| d.as_ref().map(|d| d.seconds).unwrap_or(0);
    let span = |s: i64| match s {
        s if s % 86_400 == 0 && s > 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 && s > 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    };
    let mut parts = Vec::new();
    match job.overlap.as_str() {
        "" | "skip" => {}
        "queue" => parts.push(format!("overlap queue ({} queued)", job.max_queued)),
        other => parts.push(format!("overlap {other}")),
    }
    if !matches!(job.catchup.as_str(), "" | "none") {
        parts.push(format!(
            "catch-up {} ({})",
            job.catchup,
            span(secs(&job.catchup_window))
        ));
    }
    if job.timeout.is_some() {
        parts.push(format!("timeout {}", span(secs(&job.timeout))));
    }
    if job.jitter.is_some() {
        parts.push(format!("jitter {}", span(secs(&job.jitter))));
    }
    if job.history_max_runs > 0 {
        parts.push(format!("keeps {} runs", job.history_max_runs));
    }
    if job.history_max_age.is_some() {
        parts.push(format!("keeps {}", span(secs(&job.history_max_age))));
    }
    parts.join(" · ")
}

impl From<v1::Job> for JobRow {
    fn from(job: v1::Job) -> Self {
        let policy = policy(&job);
        let last_run = job.last_run.map(RunRow::from).map(|r| LastRun {
            created_at: r.created_at,
            status: r.status,
        });
        let (schedule, zone, next_fires) = match job.schedule {
            Some(s) => (
                Some(s.expression),
                job_zone(&s.timezone),
                s.next_fire_times
                    .into_iter()
                    .filter_map(|t| instant(Some(t)))
                    .collect(),
            ),
            None => (None, Zone::UTC, Vec::new()),
        };
        JobRow {
            id: job.id,
            name: job.name,
            enabled: job.enabled,
            schedule,
            zone,
            next_fires,
            last_run,
            paused: job.paused,
            policy,
            refreshed_at: None,
        }
    }
}

/// One row of the Runs table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub id: String,
    pub job_id: String,
    pub status: RunStatus,
    pub trigger: TriggerReason,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: String,
    /// The token name whose call started the run; empty for scheduled runs.
    pub triggered_by: String,
}

impl From<v1::Run> for RunRow {
    fn from(run: v1::Run) -> Self {
        let status = run.status();
        let trigger = run.trigger();
        let started_at = instant(run.started_at);
        RunRow {
            id: run.id,
            job_id: run.job_id,
            status,
            trigger,
            // A run always has a creation time; fall back on its start (or the epoch)
            // rather than refuse a message from a server that left it out.
            created_at: instant(run.created_at)
                .or(started_at)
                .unwrap_or(DateTime::UNIX_EPOCH),
            started_at,
            ended_at: instant(run.ended_at),
            error: run.error,
            triggered_by: run.triggered_by,
        }
    }
}

/// One row of the Tasks table (a task run of the selected run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub run_id: String,
    pub task_id: String,
    pub status: TaskStatus,
    pub attempts: u32,
    pub exit_code: Option<i32>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: String,
}

impl From<v1::TaskRun> for TaskRow {
    fn from(t: v1::TaskRun) -> Self {
        TaskRow {
            status: t.status(),
            run_id: t.run_id,
            task_id: t.task_id,
            attempts: t.attempts,
            exit_code: t.exit_code,
            started_at: instant(t.started_at),
            ended_at: instant(t.ended_at),
            error: t.error,
        }
    }
}

/// One line of task output in the log overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    pub run_id: String,
    pub task_id: String,
    pub stderr: bool,
    pub line: String,
    /// Position among the lines of the task run, from 1 (0 = unknown).
    pub seq: u64,
}

impl From<v1::LogLine> for LogRow {
    fn from(l: v1::LogLine) -> Self {
        let stderr = l.stream() == v1::LogStream::Stderr;
        LogRow {
            run_id: l.run_id,
            task_id: l.task_id,
            stderr,
            line: printable(l.line),
            seq: l.seq,
        }
    }
}

/// `line` without what would upset the terminal when drawn: tabs become spaces, other
/// control characters (escape sequences' ESC, carriage returns) go. Done once, here,
/// rather than on every frame.
fn printable(line: String) -> String {
    if !line.chars().any(char::is_control) {
        return line;
    }
    line.chars()
        .filter_map(|c| match c {
            '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// An engine event, with the state it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEvent {
    pub kind: EventType,
    pub time: Option<DateTime<Utc>>,
    pub job_id: String,
    pub run_id: String,
    pub task_id: String,
    pub message: String,
    pub run: Option<RunRow>,
    pub task: Option<TaskRow>,
}

impl From<v1::Event> for ServerEvent {
    fn from(e: v1::Event) -> Self {
        let kind = e.r#type();
        let run = e.run.map(RunRow::from);
        let task = e.task_run.map(TaskRow::from);
        // Older or terser servers may leave the ids to the embedded messages.
        let run_id = if e.run_id.is_empty() {
            run.as_ref()
                .map(|r| r.id.clone())
                .or_else(|| task.as_ref().map(|t| t.run_id.clone()))
                .unwrap_or_default()
        } else {
            e.run_id
        };
        let task_id = if e.task_id.is_empty() {
            task.as_ref().map(|t| t.task_id.clone()).unwrap_or_default()
        } else {
            e.task_id
        };
        let job_id = if e.job_id.is_empty() {
            run.as_ref().map(|r| r.job_id.clone()).unwrap_or_default()
        } else {
            e.job_id
        };
        ServerEvent {
            kind,
            time: instant(e.time),
            job_id,
            run_id,
            task_id,
            message: e.message,
            run,
            task,
        }
    }
}

/// One entry of the Events feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    pub time: Option<DateTime<Utc>>,
    pub kind: EventType,
    pub job_id: String,
    pub run_id: String,
    pub task_id: String,
    pub message: String,
}

impl From<&ServerEvent> for FeedEntry {
    fn from(e: &ServerEvent) -> Self {
        // A task's error says more than an empty message.
        let message = if e.message.is_empty() {
            e.task
                .as_ref()
                .map(|t| t.error.clone())
                .or_else(|| e.run.as_ref().map(|r| r.error.clone()))
                .unwrap_or_default()
        } else {
            e.message.clone()
        };
        FeedEntry {
            time: e.time,
            kind: e.kind,
            job_id: e.job_id.clone(),
            run_id: e.run_id.clone(),
            task_id: e.task_id.clone(),
            message,
        }
    }
}

/// Everything the dashboard shows after (re)connecting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub scheduler: SchedulerStatus,
    pub cluster: Option<ClusterSummary>,
    pub jobs: Vec<JobRow>,
    pub runs: Vec<RunRow>,
}

/// Cluster mode, as the last snapshot said: the node connected to and the nodes alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSummary {
    pub node: String,
    pub alive: usize,
    pub total: usize,
    /// Jobs the connected node will not run (its job files differ from the cluster's).
    pub mismatched: Vec<String>,
}

impl ClusterSummary {
    pub fn of(state: &v1::SchedulerState) -> Option<ClusterSummary> {
        if state.node_id.is_empty() {
            return None;
        }
        let this = state.nodes.iter().find(|n| n.id == state.node_id);
        Some(ClusterSummary {
            node: state.node_id.clone(),
            alive: state.nodes.iter().filter(|n| n.alive).count(),
            total: state.nodes.len(),
            mismatched: this.map(|n| n.mismatched_jobs.clone()).unwrap_or_default(),
        })
    }
}

impl From<v1::Snapshot> for Snapshot {
    fn from(s: v1::Snapshot) -> Self {
        Snapshot {
            scheduler: scheduler_status(s.state.as_ref()),
            cluster: s.state.as_ref().and_then(ClusterSummary::of),
            jobs: s.jobs.into_iter().map(JobRow::from).collect(),
            runs: s.runs.into_iter().map(RunRow::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn instants_convert_or_are_dropped() {
        let cases = [
            (None, None),
            (ts(0), DateTime::from_timestamp(0, 0)),
            (
                ts(1_700_000_000),
                DateTime::from_timestamp(1_700_000_000, 0),
            ),
            (
                Some(prost_types::Timestamp {
                    seconds: 1,
                    nanos: -1,
                }),
                None,
            ),
            (ts(i64::MAX), None),
        ];
        for (input, want) in cases {
            assert_eq!(instant(input), want, "{input:?}");
        }
    }

    #[test]
    fn event_ids_fall_back_on_embedded_messages() {
        let e = v1::Event {
            r#type: v1::EventType::TaskFailed as i32,
            task_run: Some(v1::TaskRun {
                run_id: "r1".into(),
                task_id: "t1".into(),
                status: v1::TaskStatus::Failed as i32,
                error: "exit 3".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = ServerEvent::from(e);
        assert_eq!(e.kind, EventType::TaskFailed);
        assert_eq!((e.run_id.as_str(), e.task_id.as_str()), ("r1", "t1"));
        assert_eq!(FeedEntry::from(&e).message, "exit 3");
    }

    #[test]
    fn log_lines_lose_control_characters() {
        let cases = [
            ("plain", "plain"),
            ("a\tb", "a b"),
            ("\u{1b}[31mred\u{1b}[0m", "[31mred[0m"),
            ("progress\r", "progress"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(printable(input.to_string()), want, "{input:?}");
        }
    }

    #[test]
    fn unknown_enum_values_do_not_fail() {
        let run = RunRow::from(v1::Run {
            id: "r".into(),
            status: 99,
            trigger: 42,
            ..Default::default()
        });
        assert_eq!(run.status, RunStatus::Unspecified);
        assert_eq!(run.trigger, TriggerReason::Unspecified);
        assert_eq!(run.created_at, DateTime::UNIX_EPOCH);
    }
}
