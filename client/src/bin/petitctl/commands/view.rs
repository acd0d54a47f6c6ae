//! The text views several commands share: run and task tables, a run's details, event
//! and log lines, and the one-line summary of an ended run.

use std::sync::OnceLock;

use petit_client::proto::{
    Event, EventType, Job, LogLine, NotificationAttempt, Run, RunStatus, Schedule, TaskDefinition,
    TaskRun,
};
use petit_client::render::{
    enum_numbers, fields, format_clock, format_proto_duration, format_time, paint, Cell, Table,
    Zone,
};
use petit_client::vocab::{Tone, Vocabulary};

/// Times in these views are in `zone` (local, or UTC under `--utc`) and say so.
pub fn runs_table(runs: &[Run], color: bool, zone: Zone) -> String {
    let mut table = Table::new(["ID", "STATUS", "TRIGGER", "STARTED", "DURATION", "ERROR"]);
    for run in runs {
        table.row([
            Cell::new(&run.id),
            Cell::word(run.status()),
            Cell::word(run.trigger()),
            Cell::new(format_time(run.started_at.as_ref(), zone)),
            Cell::new(format_proto_duration(run.duration.as_ref())),
            Cell::new(&run.error),
        ]);
    }
    table.render(color)
}

/// The notifications sent about a run, one line per attempt.
pub fn notifications_table(attempts: &[NotificationAttempt], color: bool, zone: Zone) -> String {
    let mut table = Table::new(["NOTIFIED", "ON", "TARGET", "ATTEMPT", "OUTCOME", "DETAIL"]);
    for n in attempts {
        let outcome = if n.outcome == "delivered" {
            Cell::colored(&n.outcome, Tone::Good)
        } else {
            Cell::colored(&n.outcome, Tone::Bad)
        };
        table.row([
            Cell::new(format_time(n.time.as_ref(), zone)),
            Cell::new(&n.event),
            Cell::new(&n.target),
            Cell::new(n.attempt.to_string()),
            outcome,
            Cell::new(&n.message),
        ]);
    }
    table.render(color)
}

pub fn tasks_table(tasks: &[TaskRun], color: bool) -> String {
    let mut table = Table::new(["TASK", "STATUS", "ATTEMPTS", "DURATION", "EXIT", "ERROR"]);
    for task in tasks {
        table.row([
            Cell::new(&task.task_id),
            Cell::word(task.status()),
            Cell::new(task.attempts.to_string()),
            Cell::new(format_proto_duration(task.duration.as_ref())),
            Cell::new(task.exit_code.map_or("-".to_string(), |c| c.to_string())),
            Cell::new(&task.error),
        ]);
    }
    table.render(color)
}

pub fn run_fields(run: &Run, color: bool, zone: Zone) -> String {
    let status = run.status();
    let mut rows = vec![
        ("Run", run.id.clone()),
        ("Job", run.job_id.clone()),
        ("Status", paint(status.label(), status.tone(), color)),
        ("Trigger", run.trigger().label().to_string()),
    ];
    if !run.triggered_by.is_empty() {
        rows.push(("Triggered by", run.triggered_by.clone()));
    }
    if run.scheduled_for.is_some() {
        rows.push((
            "Scheduled for",
            format_time(run.scheduled_for.as_ref(), zone),
        ));
    }
    if !run.retry_of.is_empty() {
        rows.push(("Re-run of", run.retry_of.clone()));
    }
    if !run.params.is_empty() {
        rows.push(("Params", key_values(&run.params)));
    }
    if !run.definition.is_empty() {
        rows.push(("Definition", run.definition.clone()));
    }
    rows.extend([
        ("Created", format_time(run.created_at.as_ref(), zone)),
        ("Started", format_time(run.started_at.as_ref(), zone)),
        ("Ended", format_time(run.ended_at.as_ref(), zone)),
        ("Duration", format_proto_duration(run.duration.as_ref())),
    ]);
    if !run.error.is_empty() {
        rows.push(("Error", run.error.clone()));
    }
    fields(&rows)
}

/// `a=1, b=2`, sorted by key (protobuf maps have no order).
pub fn key_values(map: &std::collections::HashMap<String, String>) -> String {
    let mut pairs: Vec<_> = map.iter().collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "0 0 2 * * * (Europe/Paris)", or "manual" for a job without a schedule.
pub fn schedule_text(schedule: Option<&Schedule>) -> String {
    match schedule {
        Some(s) if !s.timezone.is_empty() && s.timezone != "UTC" => {
            format!("{} ({})", s.expression, s.timezone)
        }
        Some(s) => s.expression.clone(),
        None => "manual".to_string(),
    }
}

/// The last run of a job as "succeeded 2025-11-26 10:55:03 CET", or "-".
pub fn last_run_cell(job: &Job, zone: Zone) -> Cell {
    match &job.last_run {
        Some(run) => {
            let status = run.status();
            let at = run.started_at.as_ref().or(run.created_at.as_ref());
            Cell::colored(
                format!("{} {}", status.label(), format_time(at, zone)),
                status.tone(),
            )
        }
        None => Cell::new("-"),
    }
}

/// What a task runs, as a shell would show it: `sh -c 'echo hi'`.
pub fn command_text(task: &TaskDefinition) -> String {
    std::iter::once(&task.command)
        .chain(&task.args)
        .map(|word| shell_quote(word))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// What sets a task apart from the defaults: "all_done, retry 3".
pub fn task_notes(task: &TaskDefinition) -> String {
    let mut notes = Vec::new();
    if !task.condition.is_empty() && task.condition != "all_success" {
        notes.push(task.condition.clone());
    }
    if let Some(retry) = task.retry.as_ref().filter(|r| r.max_attempts > 0) {
        notes.push(format!("retry {}", retry.max_attempts));
    }
    if task.timeout.is_some() {
        notes.push(format!(
            "timeout {}",
            format_proto_duration(task.timeout.as_ref())
        ));
    }
    notes.join(", ")
}

/// "run_started" for `EVENT_TYPE_RUN_STARTED`: the contract's name, one word for
/// scripts that split the line on spaces (the label, "run started", is two).
pub fn event_type_word(event_type: EventType) -> String {
    match event_type {
        EventType::Unspecified => event_type.label().to_string(),
        t => t
            .as_str_name()
            .trim_start_matches("EVENT_TYPE_")
            .to_ascii_lowercase(),
    }
}

/// The longest event type word, so that the columns after it line up: over every
/// type in the contract, so a new, longer one needs no edit.
fn event_type_width() -> usize {
    static WIDTH: OnceLock<usize> = OnceLock::new();
    *WIDTH.get_or_init(|| {
        enum_numbers("petit.v1.EventType")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| EventType::try_from(n).ok())
            .map(|t| event_type_word(t).len())
            .max()
            .unwrap_or(0)
    })
}

/// One event as one line: time (of day, in `zone`), type, job, run, task, message ("-"
/// for what does not apply).
pub fn event_line(event: &Event, zone: Zone) -> String {
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let message = if !event.message.is_empty() {
        event.message.clone()
    } else if let Some(log) = &event.log {
        log.line.clone()
    } else if let Some(task) = event.task_run.as_ref().filter(|t| !t.error.is_empty()) {
        task.error.clone()
    } else if let Some(run) = event.run.as_ref().filter(|r| !r.error.is_empty()) {
        run.error.clone()
    } else {
        String::new()
    };
    let line = format!(
        "{}  {:<width$}  {}  {}  {}  {}",
        format_clock(event.time.as_ref(), zone),
        event_type_word(event.r#type()),
        or_dash(&event.job_id),
        or_dash(&event.run_id),
        or_dash(&event.task_id),
        message,
        width = event_type_width(),
    );
    one_line(line.trim_end())
}

/// A line of task output, prefixed by its task when several tasks interleave.
pub fn log_text(line: &LogLine, with_task: bool) -> String {
    if with_task {
        format!("{} | {}", line.task_id, line.line)
    } else {
        line.line.clone()
    }
}

/// "run X succeeded in 1.2s", "run X failed after 3.0s: task 'load' failed".
pub fn run_summary(run: &Run) -> String {
    let status = run.status();
    let duration = format_proto_duration(run.duration.as_ref());
    let mut summary = if status == RunStatus::Succeeded {
        format!("run {} succeeded in {duration}", run.id)
    } else if run.started_at.is_none() {
        // Cancelled while queued: it never ran, so it has no duration.
        format!("run {} {} before it started", run.id, status.label())
    } else {
        format!("run {} {} after {duration}", run.id, status.label())
    };
    // A cancelled run's error often just says "cancelled" again.
    if !run.error.is_empty() && run.error != status.label() {
        summary.push_str(": ");
        summary.push_str(&run.error);
    }
    one_line(&summary)
}

/// Newlines and other control characters as spaces: one event, one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use petit_client::proto::RetryPolicy;

    #[test]
    fn commands_read_like_shell() {
        let task = |command: &str, args: &[&str]| TaskDefinition {
            command: command.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        };
        let cases = [
            (task("echo", &["hello"]), "echo hello"),
            (
                task("sh", &["-c", "echo 'hi' && exit 1"]),
                r"sh -c 'echo '\''hi'\'' && exit 1'",
            ),
            (task("python3", &["x.py", "--n=1"]), "python3 x.py --n=1"),
            (task("printf", &[""]), "printf ''"),
        ];
        for (task, want) in cases {
            assert_eq!(command_text(&task), want);
        }
    }

    #[test]
    fn notes_show_what_differs_from_defaults() {
        let cases = [
            (TaskDefinition::default(), ""),
            (
                TaskDefinition {
                    condition: "all_success".into(),
                    ..Default::default()
                },
                "",
            ),
            (
                TaskDefinition {
                    condition: "all_done".into(),
                    retry: Some(RetryPolicy {
                        max_attempts: 3,
                        ..Default::default()
                    }),
                    timeout: Some(prost_types::Duration {
                        seconds: 600,
                        nanos: 0,
                    }),
                    ..Default::default()
                },
                "all_done, retry 3, timeout 10m00s",
            ),
        ];
        for (task, want) in cases {
            assert_eq!(task_notes(&task), want);
        }
    }

    #[test]
    fn event_lines() {
        let cases = [
            (
                Event {
                    r#type: EventType::RunStarted as i32,
                    job_id: "hello".into(),
                    run_id: "r1".into(),
                    ..Default::default()
                },
                "-  run_started        hello  r1  -",
            ),
            (
                Event {
                    r#type: EventType::LogLine as i32,
                    job_id: "hello".into(),
                    run_id: "r1".into(),
                    task_id: "greet".into(),
                    log: Some(LogLine {
                        line: "hi\tthere".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                "-  log_line           hello  r1  greet  hi there",
            ),
            (
                Event {
                    r#type: EventType::SchedulerPaused as i32,
                    ..Default::default()
                },
                "-  scheduler_paused   -  -  -",
            ),
            (
                // The longest type word: the columns after it still line up.
                Event {
                    r#type: EventType::SchedulerResumed as i32,
                    job_id: "hello".into(),
                    ..Default::default()
                },
                "-  scheduler_resumed  hello  -  -",
            ),
            (
                Event {
                    r#type: 1000,
                    message: "from a newer server".into(),
                    ..Default::default()
                },
                "-  unknown            -  -  -  from a newer server",
            ),
        ];
        for (event, want) in cases {
            assert_eq!(event_line(&event, Zone::UTC), want);
        }
    }

    #[test]
    fn summaries() {
        let run = |status: RunStatus, error: &str| Run {
            id: "r1".into(),
            status: status as i32,
            started_at: Some(prost_types::Timestamp::default()),
            duration: Some(prost_types::Duration {
                seconds: 1,
                nanos: 200_000_000,
            }),
            error: error.into(),
            ..Default::default()
        };
        let cases = [
            (run(RunStatus::Succeeded, ""), "run r1 succeeded in 1.2s"),
            (
                run(RunStatus::Failed, "task 'load' failed\n(exit 1)"),
                "run r1 failed after 1.2s: task 'load' failed (exit 1)",
            ),
            (run(RunStatus::Cancelled, ""), "run r1 cancelled after 1.2s"),
            (
                run(RunStatus::Cancelled, "cancelled"),
                "run r1 cancelled after 1.2s",
            ),
            (
                Run {
                    started_at: None,
                    duration: None,
                    ..run(RunStatus::Cancelled, "cancelled")
                },
                "run r1 cancelled before it started",
            ),
        ];
        for (run, want) in cases {
            assert_eq!(run_summary(&run), want);
        }
    }

    #[test]
    fn schedules() {
        let s = |expression: &str, timezone: &str| Schedule {
            expression: expression.into(),
            timezone: timezone.into(),
            next_fire_times: Vec::new(),
        };
        let cases = [
            (Some(s("@daily", "UTC")), "@daily"),
            (Some(s("@daily", "")), "@daily"),
            (
                Some(s("0 0 2 * * *", "Europe/Paris")),
                "0 0 2 * * * (Europe/Paris)",
            ),
            (None, "manual"),
        ];
        for (schedule, want) in cases {
            assert_eq!(schedule_text(schedule.as_ref()), want);
        }
    }
}
