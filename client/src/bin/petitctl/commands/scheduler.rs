//! Scheduler commands: `pause`, `resume`, `state`, `health` and the `watch` feed.

use petit_client::proto::{watch_events_response::Item, SchedulerState, SchedulerStatus};
use petit_client::render::{
    fields, format_proto_duration, format_time, paint, Cell, ProtoMessage, Table,
};
use petit_client::vocab::{Tone, Vocabulary};
use petit_client::Client;

use super::stream_ended;
use super::view::event_line;
use crate::exit::{CliError, SUCCESS, UNREACHABLE};
use crate::out::Out;

pub async fn pause(client: &Client, out: &mut Out) -> Result<u8, CliError> {
    let response = client.pause().await?;
    changed(out, &response, response.state.as_ref())
}

pub async fn resume(client: &Client, out: &mut Out) -> Result<u8, CliError> {
    let response = client.resume().await?;
    changed(out, &response, response.state.as_ref())
}

/// `pause JOB` / `resume JOB`: one job's scheduled fires.
pub async fn pause_job(
    client: &Client,
    job_id: &str,
    paused: bool,
    out: &mut Out,
) -> Result<u8, CliError> {
    let job = if paused {
        let response = client.pause_job(job_id).await?;
        if out.is_json() {
            out.json(&response)?;
            return Ok(SUCCESS);
        }
        response.job
    } else {
        let response = client.resume_job(job_id).await?;
        if out.is_json() {
            out.json(&response)?;
            return Ok(SUCCESS);
        }
        response.job
    };
    let paused = job.as_ref().is_some_and(|j| j.paused);
    out.line(format!(
        "job {job_id} {}",
        if paused { "paused" } else { "resumed" }
    ))?;
    Ok(SUCCESS)
}

/// What `pause` and `resume` print: the response, or the state it leaves.
fn changed<M: ProtoMessage>(
    out: &mut Out,
    response: &M,
    state: Option<&SchedulerState>,
) -> Result<u8, CliError> {
    if out.is_json() {
        out.json(response)?;
    } else {
        out.line(format!("scheduler {}", status_word(state)))?;
    }
    Ok(SUCCESS)
}

pub async fn state(client: &Client, out: &mut Out) -> Result<u8, CliError> {
    let response = client.scheduler_state().await?;
    if out.is_json() {
        out.json(&response)?;
        return Ok(SUCCESS);
    }
    let state = response.state.ok_or(CliError::Missing("state"))?;
    let word = status_word(Some(&state));
    out.text(&fields(&[
        ("Scheduler", paint(word, state.status().tone(), out.color)),
        ("Jobs", state.job_count.to_string()),
        ("Running runs", state.running_runs.to_string()),
        ("Queued runs", state.queued_runs.to_string()),
        (
            "Started",
            format_time(state.started_at.as_ref(), out.zones.for_events()),
        ),
        ("Max concurrent runs", state.max_concurrent_runs.to_string()),
        ("Max tasks per run", state.max_concurrent_tasks.to_string()),
        (
            "Authentication",
            if state.tokens_required {
                "tokens".to_string()
            } else {
                "none".to_string()
            },
        ),
        ("TLS", if state.tls { "on" } else { "off" }.to_string()),
    ]))?;
    if !state.node_id.is_empty() {
        let alive = state.nodes.iter().filter(|n| n.alive).count();
        out.text(&fields(&[
            (
                "Node",
                format!("{} (epoch {})", state.node_id, state.node_epoch),
            ),
            (
                "Cluster",
                format!(
                    "{} nodes, {alive} alive (petitctl nodes)",
                    state.nodes.len()
                ),
            ),
        ]))?;
    }
    for warning in &state.warnings {
        out.line(format!(
            "{}: {warning}",
            paint("warning", Tone::Warn, out.color)
        ))?;
    }
    Ok(SUCCESS)
}

/// The audit record, newest first, up to `limit` entries (paged through as needed).
pub async fn audit(client: &Client, limit: u32, out: &mut Out) -> Result<u8, CliError> {
    let mut records = Vec::new();
    let mut token = String::new();
    loop {
        let want = (limit as usize - records.len()).min(500) as u32;
        let page = client.audit_records(want, token).await?;
        let got = page.records.len();
        records.extend(page.records);
        // An empty page with a token would loop forever on a confused server.
        if records.len() >= limit as usize || page.next_page_token.is_empty() || got == 0 {
            break;
        }
        token = page.next_page_token;
    }
    records.truncate(limit as usize);
    if out.is_json() {
        out.json(&petit_client::proto::ListAuditRecordsResponse {
            records,
            next_page_token: String::new(),
        })?;
        return Ok(SUCCESS);
    }
    let mut table = Table::new(["TIME", "WHO", "CALL", "TARGET", "OUTCOME", "MESSAGE"]);
    for r in &records {
        let ok = r.outcome == "OK";
        table.row(vec![
            Cell::new(format_time(r.time.as_ref(), out.zones.for_events())),
            Cell::new(r.actor.clone()),
            Cell::new(r.call.clone()),
            Cell::new(r.target.clone()),
            Cell::colored(&r.outcome, if ok { Tone::Good } else { Tone::Bad }),
            Cell::new(r.message.clone()),
        ]);
    }
    out.text(&table.render(out.color))?;
    Ok(SUCCESS)
}

/// The cluster's nodes; a daemon alone has none (and says so).
pub async fn nodes(client: &Client, out: &mut Out) -> Result<u8, CliError> {
    let response = client.nodes().await?;
    if out.is_json() {
        out.json(&response)?;
        return Ok(SUCCESS);
    }
    if response.nodes.is_empty() {
        out.line("not a cluster: this petitd keeps its history alone (petitd --db postgres://... makes a cluster)".to_string())?;
        return Ok(SUCCESS);
    }
    let mut table = Table::new([
        "NODE",
        "EPOCH",
        "STATE",
        "HEARTBEAT",
        "RUNNING",
        "ADDRESS",
        "VERSION",
        "DIFFERS",
    ]);
    for n in &response.nodes {
        let (word, tone) = match (n.alive, n.left) {
            (true, _) => ("alive", Tone::Good),
            (false, true) => ("left", Tone::Dim),
            (false, false) => ("dead", Tone::Bad),
        };
        let id = match n.this_node {
            true => format!("{} (this)", n.id),
            false => n.id.clone(),
        };
        table.row(vec![
            Cell::new(id),
            Cell::new(n.epoch.to_string()),
            Cell::colored(word, tone),
            Cell::new(format_time(n.heartbeat_at.as_ref(), out.zones.for_events())),
            Cell::new(n.running_runs.to_string()),
            Cell::new(n.address.clone()),
            Cell::new(n.version.clone()),
            match n.mismatched_jobs.is_empty() {
                true => Cell::new("-"),
                false => Cell::colored(n.mismatched_jobs.join(","), Tone::Warn),
            },
        ]);
    }
    out.text(&table.render(out.color))?;
    Ok(SUCCESS)
}

/// SERVING exits 0; anything else means petitd cannot serve now: exit 3.
pub async fn health(client: &Client, out: &mut Out) -> Result<u8, CliError> {
    let response = client.health().await?;
    if out.is_json() {
        out.json(&response)?;
    } else {
        out.line(format!(
            "{} (petitd {}, up {})",
            response.status,
            response.version,
            format_proto_duration(response.uptime.as_ref())
        ))?;
    }
    Ok(if response.status == "SERVING" {
        SUCCESS
    } else {
        UNREACHABLE
    })
}

/// The event feed until interrupted. A stream that ends means petitd went away.
pub async fn watch(
    client: &Client,
    job_id: &str,
    no_logs: bool,
    out: &mut Out,
) -> Result<u8, CliError> {
    let mut stream = client.watch_events(job_id, no_logs).await?;
    let mut connected = false;
    while let Some(message) = stream.message().await? {
        if out.is_json() {
            out.json_line(&message)?;
            continue;
        }
        match message.item {
            Some(Item::Snapshot(snapshot)) => {
                // A later snapshot follows a gap (the feed fell behind): say so.
                let what = if connected { "resynced" } else { "connected" };
                connected = true;
                out.line(format!(
                    "{what}: {} jobs, scheduler {}",
                    snapshot.jobs.len(),
                    status_word(snapshot.state.as_ref())
                ))?;
            }
            Some(Item::Event(event)) => out.line(event_line(&event, out.zones.for_events()))?,
            None => continue,
        }
        out.flush()?;
    }
    Err(stream_ended(client, "the event stream"))
}

/// "running", "paused"...: what follows "scheduler" in a sentence.
fn status_word(state: Option<&SchedulerState>) -> &'static str {
    match state.map_or(SchedulerStatus::Unspecified, SchedulerState::status) {
        SchedulerStatus::Unspecified => "in an unknown state",
        status => status.label(),
    }
}
