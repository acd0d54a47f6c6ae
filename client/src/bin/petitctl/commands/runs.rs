//! Run commands: `run`, `tasks`, `logs` (stored or followed) and `cancel`.

use petit_client::proto::WatchRunResponse;
use petit_client::Client;

use super::view::{log_text, notifications_table, run_fields, run_summary, tasks_table};
use crate::exit::{CliError, SUCCESS};
use crate::out::Out;

pub async fn show(client: &Client, run_id: &str, out: &mut Out) -> Result<u8, CliError> {
    // Both calls share the connection, so asking at once costs one round trip.
    let (run, tasks) = tokio::try_join!(client.get_run(run_id), client.list_task_runs(run_id))?;
    if out.is_json() {
        // One document with both answers: {"run": ..., "taskRuns": [...]}, which is
        // also the first message of WatchRun (a WatchRunResponse without an event).
        out.json(&WatchRunResponse {
            run: run.run,
            task_runs: tasks.task_runs,
            event: None,
        })?;
        return Ok(SUCCESS);
    }
    let notifications = run.notifications;
    let run = run.run.ok_or(CliError::Missing("run"))?;
    let zone = out.zones.for_events();
    out.text(&run_fields(&run, out.color, zone))?;
    out.line("")?;
    out.text(&tasks_table(&tasks.task_runs, out.color))?;
    if !notifications.is_empty() {
        out.line("")?;
        out.text(&notifications_table(&notifications, out.color, zone))?;
    }
    Ok(SUCCESS)
}

pub async fn tasks(client: &Client, run_id: &str, out: &mut Out) -> Result<u8, CliError> {
    let response = client.list_task_runs(run_id).await?;
    if out.is_json() {
        out.json(&response)?;
    } else {
        out.text(&tasks_table(&response.task_runs, out.color))?;
    }
    Ok(SUCCESS)
}

/// Stored output (or its last `tail` lines), or with `follow` the same and then live
/// lines until the task (or, with no task, the run) ends. Lines are prefixed by their task when all tasks
/// are shown.
pub async fn logs(
    client: &Client,
    run_id: &str,
    task_id: &str,
    follow: bool,
    tail: Option<u32>,
    out: &mut Out,
) -> Result<u8, CliError> {
    let with_task = task_id.is_empty();
    if !follow {
        // Each page is printed (and let go) before the next is asked for.
        let mut pages = client.log_pages(run_id, task_id, tail.unwrap_or(0));
        while let Some(page) = pages.next_page().await? {
            if out.is_json() {
                out.json(&page)?;
            } else {
                for line in &page.lines {
                    out.line(log_text(line, with_task))?;
                }
            }
            out.flush()?;
        }
        return Ok(SUCCESS);
    }
    let mut stream = client
        .follow_task_logs(run_id, task_id, tail.unwrap_or(0))
        .await?;
    while let Some(message) = stream.message().await? {
        if out.is_json() {
            out.json_line(&message)?;
        } else if let Some(line) = &message.line {
            out.line(log_text(line, with_task))?;
            out.flush()?;
        }
    }
    Ok(SUCCESS)
}

pub async fn cancel(client: &Client, run_id: &str, out: &mut Out) -> Result<u8, CliError> {
    let response = client.cancel_run(run_id).await?;
    if out.is_json() {
        out.json(&response)?;
    } else {
        let run = response.run.ok_or(CliError::Missing("run"))?;
        out.line(run_summary(&run))?;
    }
    Ok(SUCCESS)
}
