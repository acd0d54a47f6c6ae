//! Reads of runs, task runs, settings and records, each one statement on a pooled
//! connection (one snapshot), through the indexes of schema.rs.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use super::rows::{
    audit_from_row, notification_from_row, ns, pg, run_from_row, runs_from_rows, task_from_row,
    time, RUN_COLUMNS, R_RUN_COLUMNS, TASK_COLUMNS,
};
use super::write::SCHEDULER_PAUSED;
use super::{query, query_opt};
use crate::core::RunStatus;
use crate::store::{AuditRecord, NotificationRecord, Run, RunPage, StoreResult, TaskRun};

fn read_failed(what: &str) -> impl FnOnce(tokio_postgres::Error) -> crate::store::StoreError {
    pg(format!("cannot read {what}"))
}

/// A page's 0 means no limit (NULL in SQL).
fn limit_offset(page: &RunPage) -> (Option<i64>, i64) {
    let limit = match page.limit {
        0 => None,
        n => Some(i64::try_from(n).unwrap_or(i64::MAX)),
    };
    (limit, i64::try_from(page.offset).unwrap_or(i64::MAX))
}

/// Every recorded job, by id (the trait has no reader for them: for tests).
#[cfg(test)]
pub(super) async fn jobs<C: GenericClient + Sync>(
    client: &C,
) -> StoreResult<Vec<crate::store::JobRecord>> {
    query(
        client,
        "SELECT id, name, source, schedule, updated_at FROM jobs ORDER BY id",
        &[],
    )
    .await
    .map_err(read_failed("jobs"))?
    .iter()
    .map(super::rows::job_from_row)
    .collect()
}

pub(super) async fn run<C: GenericClient + Sync>(
    client: &C,
    run_id: &str,
) -> StoreResult<Option<Run>> {
    query_opt(
        client,
        &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"),
        &[&run_id],
    )
    .await
    .map_err(read_failed("run"))?
    .as_ref()
    .map(run_from_row)
    .transpose()
}

/// A page of runs, newest first; a page after a run seeks to it in `runs_by_job` (or
/// `runs_by_created`) with a row-value bound, as the SQLite store does.
pub(super) async fn runs<C: GenericClient + Sync>(
    client: &C,
    job_id: Option<&str>,
    page: &RunPage,
) -> StoreResult<Vec<Run>> {
    let (limit, offset) = limit_offset(page);
    let after = match &page.after {
        Some(after) => Some((ns(&after.created_at)?, after.id.as_str())),
        None => None,
    };
    let mut filters = Vec::new();
    let mut values: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
    if let Some(job_id) = &job_id {
        values.push(job_id);
        filters.push(format!("job_id = ${}", values.len()));
    }
    if let Some((created_at, id)) = &after {
        values.push(created_at);
        values.push(id);
        let n = values.len();
        filters.push(format!("(created_at, id) < (${}, ${n})", n - 1));
    }
    let filter = if filters.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", filters.join(" AND "))
    };
    values.push(&limit);
    values.push(&offset);
    let n = values.len();
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM runs {filter}
         ORDER BY created_at DESC, id DESC LIMIT ${} OFFSET ${n}",
        n - 1
    );
    let rows = query(client, &sql, &values)
        .await
        .map_err(read_failed("runs"))?;
    runs_from_rows(&rows)
}

pub(super) async fn last_run<C: GenericClient + Sync>(
    client: &C,
    job_id: &str,
    statuses: &[RunStatus],
) -> StoreResult<Option<Run>> {
    let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    query_opt(
        client,
        &format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE job_id = $1 AND (cardinality($2::text[]) = 0 OR status = ANY($2))
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ),
        &[&job_id, &statuses],
    )
    .await
    .map_err(read_failed("runs"))?
    .as_ref()
    .map(run_from_row)
    .transpose()
}

/// One indexed lookup per job, in one statement.
pub(super) async fn last_runs<C: GenericClient + Sync>(
    client: &C,
    job_ids: &[String],
) -> StoreResult<HashMap<String, Run>> {
    if job_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = query(
        client,
        &format!(
            "SELECT {R_RUN_COLUMNS} FROM unnest($1::text[]) AS j (id)
             CROSS JOIN LATERAL (
                 SELECT * FROM runs WHERE runs.job_id = j.id
                 ORDER BY created_at DESC, id DESC LIMIT 1) AS r"
        ),
        &[&job_ids],
    )
    .await
    .map_err(read_failed("runs"))?;
    Ok(runs_from_rows(&rows)?
        .into_iter()
        .map(|run| (run.job_id.clone(), run))
        .collect())
}

pub(super) async fn task_runs<C: GenericClient + Sync>(
    client: &C,
    run_id: &str,
) -> StoreResult<Vec<TaskRun>> {
    query(
        client,
        &format!("SELECT {TASK_COLUMNS} FROM task_runs WHERE run_id = $1 ORDER BY ordinal"),
        &[&run_id],
    )
    .await
    .map_err(read_failed("task runs"))?
    .iter()
    .map(task_from_row)
    .collect()
}

/// The runs of some statuses, oldest first (the queue; the unfinished runs).
pub(super) async fn runs_with_status<C: GenericClient + Sync>(
    client: &C,
    statuses: &[RunStatus],
    what: &str,
) -> StoreResult<Vec<Run>> {
    let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    let rows = query(
        client,
        &format!("SELECT {RUN_COLUMNS} FROM runs WHERE status = ANY($1) ORDER BY created_at, id"),
        &[&statuses],
    )
    .await
    .map_err(read_failed(what))?;
    runs_from_rows(&rows)
}

pub(super) async fn scheduler_paused<C: GenericClient + Sync>(client: &C) -> StoreResult<bool> {
    let row = query_opt(
        client,
        "SELECT value FROM settings WHERE key = $1",
        &[&SCHEDULER_PAUSED],
    )
    .await
    .map_err(read_failed("settings"))?;
    Ok(row.is_some_and(|row| row.get::<_, &str>(0) == "true"))
}

pub(super) async fn fires_between<C: GenericClient + Sync>(
    client: &C,
    job_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> StoreResult<Vec<DateTime<Utc>>> {
    let rows = query(
        client,
        "SELECT scheduled_for FROM runs
         WHERE job_id = $1 AND scheduled_for >= $2 AND scheduled_for <= $3
         ORDER BY scheduled_for",
        &[&job_id, &ns(&from)?, &ns(&to)?],
    )
    .await
    .map_err(read_failed("fire instants"))?;
    Ok(rows.iter().map(|row| time(row.get(0))).collect())
}

pub(super) async fn last_fire<C: GenericClient + Sync>(
    client: &C,
    job_id: &str,
) -> StoreResult<Option<DateTime<Utc>>> {
    let row = query_opt(
        client,
        "SELECT scheduled_for FROM runs
         WHERE job_id = $1 AND scheduled_for IS NOT NULL
         ORDER BY scheduled_for DESC LIMIT 1",
        &[&job_id],
    )
    .await
    .map_err(read_failed("fire instants"))?;
    Ok(row.map(|row| time(row.get(0))))
}

pub(super) async fn paused_jobs<C: GenericClient + Sync>(client: &C) -> StoreResult<Vec<String>> {
    let rows = query(
        client,
        "SELECT job_id FROM paused_jobs ORDER BY job_id",
        &[],
    )
    .await
    .map_err(read_failed("paused jobs"))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

pub(super) async fn notifications<C: GenericClient + Sync>(
    client: &C,
    run_id: &str,
) -> StoreResult<Vec<NotificationRecord>> {
    query(
        client,
        "SELECT run_id, job_id, time, event, target, attempt, outcome, message
         FROM notifications WHERE run_id = $1 ORDER BY id",
        &[&run_id],
    )
    .await
    .map_err(read_failed("notifications"))?
    .iter()
    .map(notification_from_row)
    .collect()
}

pub(super) async fn audit<C: GenericClient + Sync>(
    client: &C,
    page: &RunPage,
) -> StoreResult<Vec<AuditRecord>> {
    let (limit, offset) = limit_offset(page);
    query(
        client,
        "SELECT time, actor, call, target, outcome, message FROM audit
         ORDER BY id DESC LIMIT $1 OFFSET $2",
        &[&limit, &offset],
    )
    .await
    .map_err(read_failed("audit"))?
    .iter()
    .map(audit_from_row)
    .collect()
}
