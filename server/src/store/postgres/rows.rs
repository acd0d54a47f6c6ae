//! Rows and models for PostgreSQL: the column lists, each record read from a row,
//! times as `BIGINT` nanoseconds (see schema.rs), maps as JSON text, and the errors of
//! the driver and of the pool as [`StoreError`]s.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use crate::store::{AuditRecord, NotificationRecord, Run, StoreError, StoreResult, TaskRun};

/// The columns `run_from_row` reads, in its order (and `create_run` writes).
pub(super) const RUN_COLUMNS: &str = r#"id, job_id, status, "trigger", params, created_at, started_at, ended_at, error,
    triggered_by, scheduled_for, definition, retry_of"#;
/// The same, qualified by the table alias `r` (for joins).
pub(super) const R_RUN_COLUMNS: &str = r#"r.id, r.job_id, r.status, r."trigger", r.params, r.created_at, r.started_at,
    r.ended_at, r.error, r.triggered_by, r.scheduled_for, r.definition, r.retry_of"#;
/// The columns `task_from_row` reads, in its order.
pub(super) const TASK_COLUMNS: &str =
    "run_id, task_id, status, attempts, exit_code, started_at, ended_at, error, outputs";

/// A driver error, doing `context`.
pub(super) fn pg(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::postgres(context, source)
}

/// No connection from the pool, doing `context`.
pub(super) fn pool(
    context: impl Into<String>,
) -> impl FnOnce(deadpool_postgres::PoolError) -> StoreError {
    let context = context.into();
    move |error| match error {
        deadpool_postgres::PoolError::Backend(source) => StoreError::postgres(context, source),
        other => StoreError::PostgresUnavailable {
            context,
            reason: other.to_string(),
        },
    }
}

/// A model time as stored: nanoseconds since the Unix epoch (years 1677 to 2262).
pub(super) fn ns(time: &DateTime<Utc>) -> StoreResult<i64> {
    time.timestamp_nanos_opt().ok_or_else(|| {
        StoreError::Invalid(format!(
            "time {time} is out of the range a store keeps (years 1677 to 2262)"
        ))
    })
}

pub(super) fn opt_ns(time: &Option<DateTime<Utc>>) -> StoreResult<Option<i64>> {
    time.as_ref().map(ns).transpose()
}

pub(super) fn time(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

/// Free text (an error, a message) as a text column can hold it: PostgreSQL's text
/// cannot hold NUL, which a task's output quoted in an error may carry, so NUL becomes
/// U+FFFD rather than failing the write. (Log lines are bytes and keep every byte.)
pub(super) fn text(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains('\0') {
        std::borrow::Cow::Owned(value.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

pub(super) fn opt_text(value: &Option<String>) -> Option<std::borrow::Cow<'_, str>> {
    value.as_deref().map(text)
}

pub(super) fn map_to_sql(map: &BTreeMap<String, String>) -> String {
    // A map of strings always serializes.
    serde_json::to_string(map).unwrap_or_else(|_| "{}".to_owned())
}

fn corrupt(what: &str, column: &str, detail: impl Display) -> StoreError {
    StoreError::Corrupt {
        context: format!("cannot read {what}"),
        detail: format!("column {column}: {detail}"),
    }
}

/// A column, through the driver's conversion.
fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    what: &str,
    index: usize,
) -> StoreResult<T> {
    row.try_get(index).map_err(|e| StoreError::Corrupt {
        context: format!("cannot read {what}"),
        detail: e.to_string(),
    })
}

/// A text column through `FromStr` (a status from a newer version does not parse).
fn parse<T>(row: &Row, what: &str, index: usize) -> StoreResult<T>
where
    T: FromStr,
    T::Err: Display,
{
    let text: &str = get(row, what, index)?;
    text.parse()
        .map_err(|e: T::Err| corrupt(what, row.columns()[index].name(), e))
}

fn map(row: &Row, what: &str, index: usize) -> StoreResult<BTreeMap<String, String>> {
    let text: &str = get(row, what, index)?;
    serde_json::from_str(text).map_err(|e| corrupt(what, row.columns()[index].name(), e))
}

fn time_at(row: &Row, what: &str, index: usize) -> StoreResult<DateTime<Utc>> {
    get::<i64>(row, what, index).map(time)
}

fn opt_time_at(row: &Row, what: &str, index: usize) -> StoreResult<Option<DateTime<Utc>>> {
    get::<Option<i64>>(row, what, index).map(|t| t.map(time))
}

fn u32_at(row: &Row, what: &str, index: usize) -> StoreResult<u32> {
    let value: i64 = get(row, what, index)?;
    u32::try_from(value).map_err(|_| corrupt(what, row.columns()[index].name(), value))
}

pub(super) fn run_from_row(row: &Row) -> StoreResult<Run> {
    let what = "run";
    Ok(Run {
        id: get(row, what, 0)?,
        job_id: get(row, what, 1)?,
        status: parse(row, what, 2)?,
        trigger: parse(row, what, 3)?,
        params: map(row, what, 4)?,
        created_at: time_at(row, what, 5)?,
        started_at: opt_time_at(row, what, 6)?,
        ended_at: opt_time_at(row, what, 7)?,
        error: get(row, what, 8)?,
        triggered_by: get(row, what, 9)?,
        scheduled_for: opt_time_at(row, what, 10)?,
        definition: get(row, what, 11)?,
        retry_of: get(row, what, 12)?,
    })
}

pub(super) fn runs_from_rows(rows: &[Row]) -> StoreResult<Vec<Run>> {
    rows.iter().map(run_from_row).collect()
}

pub(super) fn task_from_row(row: &Row) -> StoreResult<TaskRun> {
    let what = "task run";
    Ok(TaskRun {
        run_id: get(row, what, 0)?,
        task_id: get(row, what, 1)?,
        status: parse(row, what, 2)?,
        attempts: u32_at(row, what, 3)?,
        exit_code: get(row, what, 4)?,
        started_at: opt_time_at(row, what, 5)?,
        ended_at: opt_time_at(row, what, 6)?,
        error: get(row, what, 7)?,
        outputs: map(row, what, 8)?,
    })
}

pub(super) fn audit_from_row(row: &Row) -> StoreResult<AuditRecord> {
    let what = "audit";
    Ok(AuditRecord {
        time: time_at(row, what, 0)?,
        actor: get(row, what, 1)?,
        call: get(row, what, 2)?,
        target: get(row, what, 3)?,
        outcome: get(row, what, 4)?,
        message: get(row, what, 5)?,
    })
}

pub(super) fn notification_from_row(row: &Row) -> StoreResult<NotificationRecord> {
    let what = "notification";
    Ok(NotificationRecord {
        run_id: get(row, what, 0)?,
        job_id: get(row, what, 1)?,
        time: time_at(row, what, 2)?,
        event: get(row, what, 3)?,
        target: get(row, what, 4)?,
        attempt: u32_at(row, what, 5)?,
        outcome: get(row, what, 6)?,
        message: get(row, what, 7)?,
    })
}

#[cfg(test)]
pub(super) fn job_from_row(row: &Row) -> StoreResult<crate::store::JobRecord> {
    let what = "job";
    Ok(crate::store::JobRecord {
        id: get(row, what, 0)?,
        name: get(row, what, 1)?,
        source: get(row, what, 2)?,
        schedule: get(row, what, 3)?,
        updated_at: time_at(row, what, 4)?,
    })
}
