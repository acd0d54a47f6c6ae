//! Job commands: `jobs`, `job`, `trigger` (with `--wait`/`--follow`) and `runs`.

use petit_client::proto::{Job, JobView, Run, TaskDefinition, TriggerJobResponse};
use petit_client::render::{
    dag_tree, fields, format_fire_time, format_proto_duration, job_zone, Cell, Table, TreeLine,
    TreeMark, Zones,
};
use petit_client::Client;

use super::view::{
    command_text, key_values, last_run_cell, log_text, run_summary, runs_table, schedule_text,
    task_notes,
};
use super::wait_run;
use crate::cli::TriggerArgs;
use crate::exit::{run_exit_code, CliError, SUCCESS};
use crate::out::Out;

/// Recent runs shown by `job`.
const RECENT_RUNS: u32 = 5;

pub async fn list(client: &Client, out: &mut Out) -> Result<u8, CliError> {
    // JSON is for scripts: the whole jobs. The table needs only the list view.
    if out.is_json() {
        out.json(&client.list_jobs_in(JobView::Full).await?)?;
        return Ok(SUCCESS);
    }
    let response = client.list_jobs().await?;
    out.text(&jobs_table(&response.jobs, out.color, out.zones))?;
    Ok(SUCCESS)
}

/// One row per job; the next fire time in the zone `zones` picks for it (the job's own
/// by default), the last run's time in local time (or UTC).
fn jobs_table(jobs: &[Job], color: bool, zones: Zones) -> String {
    let mut table = Table::new(["ID", "NAME", "SCHEDULE", "NEXT FIRE", "LAST RUN", "ENABLED"]);
    for job in jobs {
        let next_fire = match &job.schedule {
            Some(s) => format_fire_time(
                s.next_fire_times.first(),
                zones.for_fires(job_zone(&s.timezone)),
            ),
            None => "-".to_string(),
        };
        table.row([
            Cell::new(&job.id),
            Cell::new(&job.name),
            Cell::new(schedule_text(job.schedule.as_ref())),
            Cell::new(if job.paused {
                "paused".to_string()
            } else {
                next_fire
            }),
            last_run_cell(job, zones.for_events()),
            Cell::new(if job.enabled { "yes" } else { "no" }),
        ]);
    }
    table.render(color)
}

/// `reload`: what changed.
pub async fn reload(client: &Client, out: &mut Out) -> Result<u8, CliError> {
    let response = client.reload_jobs().await?;
    if out.is_json() {
        out.json(&response)?;
        return Ok(SUCCESS);
    }
    let part = |word: &str, ids: &[String]| match ids.len() {
        0 => format!("0 {word}"),
        n => format!("{n} {word} ({})", ids.join(", ")),
    };
    out.line(format!(
        "reloaded: {}, {}, {}, {} unchanged",
        part("added", &response.added),
        part("removed", &response.removed),
        part("changed", &response.changed),
        response.unchanged.len()
    ))?;
    Ok(SUCCESS)
}

/// `backfill JOB --from --to [--dry-run]`.
pub async fn backfill(
    client: &Client,
    job_id: &str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    dry_run: bool,
    out: &mut Out,
) -> Result<u8, CliError> {
    let response = client.backfill_job(job_id, from, to, dry_run).await?;
    if out.is_json() {
        out.json(&response)?;
        return Ok(SUCCESS);
    }
    let n = response.instants.len();
    let already = match response.already_run {
        0 => String::new(),
        k => format!(" ({k} instants of the range already had a run)"),
    };
    if dry_run {
        out.line(format!("would queue {n} runs of {job_id}{already}:"))?;
        for at in &response.instants {
            out.line(format!(
                "  {}",
                format_fire_time(Some(at), out.zones.for_events())
            ))?;
        }
    } else {
        out.line(format!("queued {n} runs of {job_id}{already}"))?;
        let mut table = Table::new(["SCHEDULED FOR", "RUN"]);
        for (at, run) in response.instants.iter().zip(&response.runs) {
            table.row([
                Cell::new(format_fire_time(Some(at), out.zones.for_events())),
                Cell::new(&run.id),
            ]);
        }
        if n > 0 {
            out.text(&table.render(out.color))?;
        }
    }
    Ok(SUCCESS)
}

pub async fn show(client: &Client, job_id: &str, out: &mut Out) -> Result<u8, CliError> {
    if out.is_json() {
        // The job already carries its next fire times and last run: one call.
        out.json(&client.get_job(job_id).await?)?;
        return Ok(SUCCESS);
    }
    // Both calls share the connection, so asking at once costs one round trip.
    let (job, runs) = tokio::try_join!(
        client.get_job(job_id),
        client.list_job_runs(job_id, RECENT_RUNS)
    )?;
    let job = job.job.ok_or(CliError::Missing("job"))?;

    let mut rows = vec![("Job", job.id.clone())];
    if job.name != job.id && !job.name.is_empty() {
        rows.push(("Name", job.name.clone()));
    }
    if !job.description.is_empty() {
        rows.push(("Description", job.description.clone()));
    }
    rows.push(("Schedule", schedule_text(job.schedule.as_ref())));
    rows.push((
        "Enabled",
        if job.enabled { "yes" } else { "no" }.to_string(),
    ));
    rows.push(("Max concurrency", job.max_concurrency.to_string()));
    if job.paused {
        rows.push(("Paused", format!("yes (petitctl resume {})", job.id)));
    }
    if !job.overlap.is_empty() {
        let queued = match job.overlap.as_str() {
            "queue" => format!(" (up to {} queued)", job.max_queued),
            _ => String::new(),
        };
        rows.push(("Overlap", format!("{}{queued}", job.overlap)));
    }
    if !job.catchup.is_empty() && job.catchup != "none" {
        let window = format_proto_duration(job.catchup_window.as_ref());
        rows.push(("Catch-up", format!("{} (window {window})", job.catchup)));
    }
    if job.timeout.is_some() {
        rows.push(("Timeout", format_proto_duration(job.timeout.as_ref())));
    }
    if job.jitter.is_some() {
        rows.push(("Jitter", format_proto_duration(job.jitter.as_ref())));
    }
    let mut history = Vec::new();
    if job.history_max_runs > 0 {
        history.push(format!("newest {} runs", job.history_max_runs));
    }
    if job.history_max_age.is_some() {
        history.push(format!(
            "ended within {}",
            format_proto_duration(job.history_max_age.as_ref())
        ));
    }
    rows.push((
        "History kept",
        if history.is_empty() {
            "all".to_string()
        } else {
            history.join(", ")
        },
    ));
    if !job.definition.is_empty() {
        rows.push(("Definition", job.definition.clone()));
    }
    if !job.depends_on.is_empty() {
        let deps: Vec<String> = job
            .depends_on
            .iter()
            .map(|d| format!("{} ({})", d.job_id, d.condition))
            .collect();
        rows.push(("Depends on", deps.join(", ")));
    }
    if !job.config.is_empty() {
        rows.push(("Config", key_values(&job.config)));
    }
    if !job.source.is_empty() {
        rows.push(("Source", job.source.clone()));
    }
    out.text(&fields(&rows))?;

    out.line("\nTasks:")?;
    let tree = dag_tree(
        job.tasks
            .iter()
            .map(|t| (t.id.as_str(), t.depends_on.as_slice())),
    );
    out.text(&annotate_tree(&tree, &job.tasks))?;

    if let Some(schedule) = &job.schedule {
        out.line("\nNext fires:")?;
        if job.paused {
            out.line(format!(
                "  none: the job is paused (petitctl resume {})",
                job.id
            ))?;
        } else if schedule.next_fire_times.is_empty() {
            out.line("  none")?;
        }
        let zone = out.zones.for_fires(job_zone(&schedule.timezone));
        for at in &schedule.next_fire_times {
            out.line(format!("  {}", format_fire_time(Some(at), zone)))?;
        }
    }

    out.line("\nRecent runs:")?;
    if runs.runs.is_empty() {
        out.line("  none yet")?;
    } else {
        out.text(&runs_table(&runs.runs, out.color, out.zones.for_events()))?;
    }
    Ok(SUCCESS)
}

/// Commands longer than this are cut in the tree (`-o json` has them whole).
const COMMAND_WIDTH: usize = 60;

/// The tree lines, each task's first appearance followed (in a column) by what it runs.
fn annotate_tree(tree: &[TreeLine], tasks: &[TaskDefinition]) -> String {
    let plain: Vec<String> = tree.iter().map(ToString::to_string).collect();
    let width = plain.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let mut described = vec![false; tasks.len()];
    let mut text = String::new();
    for (line, shown) in tree.iter().zip(&plain) {
        let detail = match tasks.get(line.task) {
            Some(task) if line.mark == TreeMark::None && !described[line.task] => {
                described[line.task] = true;
                let command = cut(&command_text(task), COMMAND_WIDTH);
                match task_notes(task) {
                    notes if notes.is_empty() => command,
                    notes => format!("{command}  [{notes}]"),
                }
            }
            _ => String::new(),
        };
        let pad = width - shown.chars().count();
        let row = format!("  {shown}{:pad$}  {detail}", "");
        text.push_str(row.trim_end());
        text.push('\n');
    }
    text
}

/// `s` cut to `max` characters, the last one an ellipsis when something was cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut kept: String = s.chars().take(max.saturating_sub(1)).collect();
    kept.push('…');
    kept
}

pub async fn trigger(client: &Client, args: TriggerArgs, out: &mut Out) -> Result<u8, CliError> {
    let params = args.params.into_iter().collect();
    let response = client.trigger_job(&args.job, params, args.force).await?;
    let run = response.run.clone().ok_or(CliError::Missing("run"))?;

    if !(args.wait || args.follow) {
        if out.is_json() {
            out.json(&response)?;
        } else {
            out.line(&run.id)?;
        }
        return Ok(SUCCESS);
    }
    // The id before waiting, so that a script (or a person) can act on the run meanwhile.
    if !out.is_json() {
        out.line(&run.id)?;
        out.flush()?;
    }
    if args.follow {
        if out.is_json() {
            // NDJSON: the response first, then the log lines.
            out.json_line(&response)?;
        }
        follow_run(client, &run.id, out).await?;
    }
    report_end(client, &run.id, out.is_json() && !args.follow, out).await
}

/// Waits for a run's end, prints it (as JSON when `json`) and its summary; the exit
/// code its outcome gives.
async fn report_end(
    client: &Client,
    run_id: &str,
    json: bool,
    out: &mut Out,
) -> Result<u8, CliError> {
    let ended = wait_run(client, run_id).await?;
    if json {
        out.json(&TriggerJobResponse {
            run: Some(ended.clone()),
        })?;
    }
    out.flush()?;
    print_summary(&ended);
    Ok(run_exit_code(ended.status()))
}

/// `rerun RUN [--wait]`.
pub async fn rerun(
    client: &Client,
    run_id: &str,
    wait: bool,
    out: &mut Out,
) -> Result<u8, CliError> {
    let response = client.rerun_run(run_id).await?;
    let run = response.run.clone().ok_or(CliError::Missing("run"))?;
    if !wait {
        if out.is_json() {
            out.json(&response)?;
        } else {
            out.line(&run.id)?;
        }
        return Ok(SUCCESS);
    }
    if !out.is_json() {
        out.line(&run.id)?;
        out.flush()?;
    }
    let json = out.is_json();
    report_end(client, &run.id, json, out).await
}

/// Prints every task's output as it comes, until the run ends.
async fn follow_run(client: &Client, run_id: &str, out: &mut Out) -> Result<(), CliError> {
    let mut stream = client.follow_task_logs(run_id, "", 0).await?;
    while let Some(message) = stream.message().await? {
        if out.is_json() {
            out.json_line(&message)?;
        } else if let Some(line) = &message.line {
            out.line(log_text(line, true))?;
            out.flush()?;
        }
    }
    Ok(())
}

/// The outcome on stderr, leaving stdout to the id (or the JSON document).
fn print_summary(run: &Run) {
    use std::io::Write;
    // Nothing useful to do if stderr is gone too.
    let _ = writeln!(std::io::stderr(), "{}", run_summary(run));
}

pub async fn runs(
    client: &Client,
    job_id: &str,
    limit: u32,
    out: &mut Out,
) -> Result<u8, CliError> {
    let response = client.list_job_runs(job_id, limit).await?;
    if out.is_json() {
        out.json(&response)?;
    } else {
        out.text(&runs_table(
            &response.runs,
            out.color,
            out.zones.for_events(),
        ))?;
    }
    Ok(SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use petit_client::proto::{RetryPolicy, RunStatus, Schedule};
    use petit_client::render::{Zone, ZoneChoice};

    #[test]
    fn next_fire_times_say_their_zone() {
        let ts = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
        let job = |id: &str, expression: &str, timezone: &str, fire: i64| Job {
            id: id.into(),
            name: id.into(),
            enabled: true,
            schedule: Some(Schedule {
                expression: expression.into(),
                timezone: timezone.into(),
                next_fire_times: vec![ts(fire)],
            }),
            ..Default::default()
        };
        // 2026-12-02T01:00:00Z is 02:00 in Paris; 2026-12-02T07:30:00Z is 02:30 in
        // New York.
        let mut jobs = vec![
            job("paris", "0 0 2 * * *", "Europe/Paris", 1_796_173_200),
            job("ny", "0 30 2 * * *", "America/New_York", 1_796_196_600),
            job("utc", "@every 30s", "UTC", 1_796_173_230),
            Job {
                id: "manual".into(),
                name: "manual".into(),
                ..Default::default()
            },
        ];
        jobs[3].last_run = Some(Run {
            status: RunStatus::Succeeded as i32,
            started_at: Some(ts(1_796_173_200)),
            ..Default::default()
        });
        let tokyo = Zone::Named(chrono_tz::Asia::Tokyo);
        let cases = [
            (
                ZoneChoice::Job,
                "\
ID      NAME    SCHEDULE                         NEXT FIRE                LAST RUN                           ENABLED
paris   paris   0 0 2 * * * (Europe/Paris)       2026-12-02 02:00 CET     -                                  yes
ny      ny      0 30 2 * * * (America/New_York)  2026-12-02 02:30 EST     -                                  yes
utc     utc     @every 30s                       2026-12-02 01:00:30 UTC  -                                  yes
manual  manual  manual                           -                        succeeded 2026-12-02 10:00:00 JST  no
",
            ),
            (
                ZoneChoice::Local,
                "\
ID      NAME    SCHEDULE                         NEXT FIRE                LAST RUN                           ENABLED
paris   paris   0 0 2 * * * (Europe/Paris)       2026-12-02 10:00 JST     -                                  yes
ny      ny      0 30 2 * * * (America/New_York)  2026-12-02 16:30 JST     -                                  yes
utc     utc     @every 30s                       2026-12-02 10:00:30 JST  -                                  yes
manual  manual  manual                           -                        succeeded 2026-12-02 10:00:00 JST  no
",
            ),
            (
                ZoneChoice::Utc,
                "\
ID      NAME    SCHEDULE                         NEXT FIRE                LAST RUN                           ENABLED
paris   paris   0 0 2 * * * (Europe/Paris)       2026-12-02 01:00 UTC     -                                  yes
ny      ny      0 30 2 * * * (America/New_York)  2026-12-02 07:30 UTC     -                                  yes
utc     utc     @every 30s                       2026-12-02 01:00:30 UTC  -                                  yes
manual  manual  manual                           -                        succeeded 2026-12-02 01:00:00 UTC  no
",
            ),
        ];
        for (choice, want) in cases {
            let got = jobs_table(&jobs, false, Zones::new(choice, tokyo));
            assert_eq!(got, want, "{choice:?}");
        }
    }

    fn task(id: &str, deps: &[&str], command: &str) -> TaskDefinition {
        TaskDefinition {
            id: id.into(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            command: command.into(),
            ..Default::default()
        }
    }

    #[test]
    fn tree_is_annotated_once_per_task() {
        let mut load = task("load", &["a", "b"], "cp");
        load.retry = Some(RetryPolicy {
            max_attempts: 2,
            ..Default::default()
        });
        let tasks = vec![task("a", &[], "echo"), task("b", &[], "true"), load];
        let tree = dag_tree(
            tasks
                .iter()
                .map(|t| (t.id.as_str(), t.depends_on.as_slice())),
        );
        let want = "  a        echo\n  └─ load  cp  [retry 2]\n  b        true\n  └─ load\n";
        assert_eq!(annotate_tree(&tree, &tasks), want);
    }

    #[test]
    fn long_commands_are_cut() {
        let cases = [
            ("short", 10, "short"),
            ("exactly10!", 10, "exactly10!"),
            ("a bit too long", 10, "a bit too…"),
        ];
        for (input, max, want) in cases {
            assert_eq!(cut(input, max), want);
        }
    }
}
