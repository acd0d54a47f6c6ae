//! Rows and models: the column lists, and each record read from or written to a row.
//! Times are RFC 3339 text with nine fractional digits (always UTC, `Z`), so they
//! round-trip exactly and sort as text in time order; maps are JSON text.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::Type;
use rusqlite::Row;

use crate::store::{AuditRecord, NotificationRecord, Run, TaskRun};

/// The columns `run_from_row` reads, in its order (and `insert_run` writes).
pub(super) const RUN_COLUMNS: &str = r#"id, job_id, status, "trigger", params, created_at, started_at, ended_at, error,
    triggered_by, scheduled_for, definition, retry_of"#;
/// The columns `task_from_row` reads, in its order.
pub(super) const TASK_COLUMNS: &str =
    "run_id, task_id, status, attempts, exit_code, started_at, ended_at, error, outputs";

pub(super) fn time_to_sql(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

pub(super) fn map_to_sql(map: &BTreeMap<String, String>) -> rusqlite::Result<String> {
    serde_json::to_string(map).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Reads a text column through `FromStr`; a value this binary cannot parse (a status
/// from a newer version, a damaged row) is a conversion error naming the column.
fn parse_column<T>(row: &Row<'_>, index: usize) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    let text: String = row.get(index)?;
    text.parse()
        .map_err(|e: T::Err| conversion_error(row, index, e))
}

pub(super) fn time_column(row: &Row<'_>, index: usize) -> rusqlite::Result<DateTime<Utc>> {
    let text: String = row.get(index)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| conversion_error(row, index, e))
}

fn optional_time_column(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    match row.get_ref(index)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        _ => time_column(row, index).map(Some),
    }
}

fn map_column(row: &Row<'_>, index: usize) -> rusqlite::Result<BTreeMap<String, String>> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text).map_err(|e| conversion_error(row, index, e))
}

/// A value that does not convert, naming its column (the store reports it as
/// `StoreError::Corrupt`).
fn conversion_error(row: &Row<'_>, index: usize, error: impl Display) -> rusqlite::Error {
    let column = row.as_ref().column_name(index).unwrap_or("?");
    let detail = format!("column {column}: {error}");
    rusqlite::Error::FromSqlConversionFailure(index, Type::Text, detail.into())
}

pub(super) fn run_from_row(row: &Row<'_>) -> rusqlite::Result<Run> {
    Ok(Run {
        id: row.get(0)?,
        job_id: row.get(1)?,
        status: parse_column(row, 2)?,
        trigger: parse_column(row, 3)?,
        params: map_column(row, 4)?,
        created_at: time_column(row, 5)?,
        started_at: optional_time_column(row, 6)?,
        ended_at: optional_time_column(row, 7)?,
        error: row.get(8)?,
        triggered_by: row.get(9)?,
        scheduled_for: optional_time_column(row, 10)?,
        definition: row.get(11)?,
        retry_of: row.get(12)?,
    })
}

pub(super) fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        time: time_column(row, 0)?,
        actor: row.get(1)?,
        call: row.get(2)?,
        target: row.get(3)?,
        outcome: row.get(4)?,
        message: row.get(5)?,
    })
}

pub(super) fn task_from_row(row: &Row<'_>) -> rusqlite::Result<TaskRun> {
    Ok(TaskRun {
        run_id: row.get(0)?,
        task_id: row.get(1)?,
        status: parse_column(row, 2)?,
        attempts: row.get(3)?,
        exit_code: row.get(4)?,
        started_at: optional_time_column(row, 5)?,
        ended_at: optional_time_column(row, 6)?,
        error: row.get(7)?,
        outputs: map_column(row, 8)?,
    })
}

#[cfg(test)]
pub(super) fn job_from_row(row: &Row<'_>) -> rusqlite::Result<crate::store::JobRecord> {
    Ok(crate::store::JobRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        source: row.get(2)?,
        schedule: row.get(3)?,
        updated_at: time_column(row, 4)?,
    })
}

pub(super) fn notification_from_row(row: &Row<'_>) -> rusqlite::Result<NotificationRecord> {
    Ok(NotificationRecord {
        run_id: row.get(0)?,
        job_id: row.get(1)?,
        time: time_column(row, 2)?,
        event: row.get(3)?,
        target: row.get(4)?,
        attempt: row.get(5)?,
        outcome: row.get(6)?,
        message: row.get(7)?,
    })
}
