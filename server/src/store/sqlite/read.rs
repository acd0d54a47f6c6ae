//! Reads: a small pool of read-only connections, used from `spawn_blocking` so that no
//! query runs on an executor thread, and the queries themselves. In WAL mode readers
//! never wait for the writer; each query reads one committed snapshot.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rusqlite::{params_from_iter, Connection, OpenFlags, OptionalExtension};
use tokio::sync::Semaphore;

use super::rows::{
    audit_from_row, notification_from_row, run_from_row, task_from_row, time_column, time_to_sql,
    RUN_COLUMNS, TASK_COLUMNS,
};
use super::{BUSY_TIMEOUT, SCHEDULER_PAUSED};
use crate::core::RunStatus;
use crate::store::log_chunks;
use crate::store::{
    AuditRecord, LogPage, LogPageLimit, LogStart, NotificationRecord, Run, RunPage, StoreError,
    StoreResult, TaskRun,
};

/// Page cache of each read connection: 512 KiB (`PRAGMA cache_size` counts KiB when negative).
const READ_CACHE_KIB: i64 = -512;
/// Read-only connections kept open, and the most reads that run at once.
const READ_CONNECTIONS: usize = 4;

/// Idle read-only connections, opened on first need.
pub(super) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// At most [`READ_CONNECTIONS`] reads at once, so at most that many connections.
    permits: Arc<Semaphore>,
}

impl ReadPool {
    pub(super) fn new(path: PathBuf) -> ReadPool {
        ReadPool {
            path,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(READ_CONNECTIONS)),
        }
    }

    /// Runs a query on a read-only connection, off the executor threads.
    pub(super) async fn read<T, F>(self: &Arc<Self>, query: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let pool = Arc::clone(self);
        // The permit bounds the reads in flight, hence the connections open at once.
        let permit = Arc::clone(&pool.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::ReadAborted {
                reason: "the read pool is closed".into(),
            })?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = pool.checkout()?;
            let result = query(&conn);
            pool.checkin(conn);
            result
        })
        .await
        .map_err(|e| StoreError::ReadAborted {
            reason: e.to_string(),
        })?
    }

    /// Closes the idle connections. A read still running returns its connection to a
    /// pool that then goes with it.
    pub(super) fn close_idle(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    fn checkout(&self) -> StoreResult<Connection> {
        if let Some(conn) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(conn);
        }
        let cannot_open = |e: rusqlite::Error| {
            StoreError::sqlite(
                format!("cannot open database {} for reading", self.path.display()),
                e,
            )
        };
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(cannot_open)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(cannot_open)?;
        conn.set_prepared_statement_cache_capacity(super::STATEMENT_CACHE);
        // A small page cache per reader: a long log read through each of them would
        // otherwise leave each holding its 2 MiB default for good, and the file's pages
        // are in the OS's cache anyway.
        conn.pragma_update(None, "cache_size", READ_CACHE_KIB)
            .map_err(cannot_open)?;
        Ok(conn)
    }

    fn checkin(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < READ_CONNECTIONS {
                idle.push(conn);
            }
        }
    }
}

fn read_failed(what: &str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::sqlite(format!("cannot read {what}"), e)
}

/// SQLite reads a negative LIMIT as "no limit"; a page's 0 means no limit.
fn limit_offset(page: &RunPage) -> (i64, i64) {
    let limit = match page.limit {
        0 => -1,
        n => i64::try_from(n).unwrap_or(i64::MAX),
    };
    (limit, i64::try_from(page.offset).unwrap_or(i64::MAX))
}

/// Every recorded job, by id (the trait has no reader for them: for tests).
#[cfg(test)]
pub(super) fn jobs(conn: &Connection) -> StoreResult<Vec<crate::store::JobRecord>> {
    conn.prepare("SELECT id, name, source, schedule, updated_at FROM jobs ORDER BY id")
        .and_then(|mut stmt| {
            stmt.query_map([], super::rows::job_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(read_failed("jobs"))
}

pub(super) fn run(conn: &Connection, run_id: &str) -> StoreResult<Option<Run>> {
    conn.prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))
        .and_then(|mut stmt| stmt.query_row([run_id], run_from_row).optional())
        .map_err(read_failed("run"))
}

/// The statement of a page of runs, newest first: of one job (`?1`) or all, after a run
/// (the next two parameters: its `created_at` and id) or from the newest, then LIMIT
/// and OFFSET. A page after a run seeks to it in `runs_by_job` (or `runs_by_created`)
/// with a row-value bound, so it reads only its own rows however deep it is; an offset
/// still walks the index entries it skips.
pub(super) fn runs_sql(of_job: bool, after: bool) -> String {
    let mut filters = Vec::new();
    let mut n = 0;
    if of_job {
        n += 1;
        filters.push(format!("job_id = ?{n}"));
    }
    if after {
        n += 2;
        filters.push(format!("(created_at, id) < (?{}, ?{n})", n - 1));
    }
    let filter = if filters.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", filters.join(" AND "))
    };
    format!(
        "SELECT {RUN_COLUMNS} FROM runs {filter}
         ORDER BY created_at DESC, id DESC LIMIT ?{} OFFSET ?{}",
        n + 1,
        n + 2
    )
}

pub(super) fn runs(
    conn: &Connection,
    job_id: Option<&str>,
    page: &RunPage,
) -> StoreResult<Vec<Run>> {
    let (limit, offset) = limit_offset(page);
    let mut values: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
    if let Some(job_id) = job_id {
        values.push(Box::new(job_id.to_owned()));
    }
    if let Some(after) = &page.after {
        values.push(Box::new(time_to_sql(&after.created_at)));
        values.push(Box::new(after.id.clone()));
    }
    values.push(Box::new(limit));
    values.push(Box::new(offset));
    conn.prepare_cached(&runs_sql(job_id.is_some(), page.after.is_some()))
        .and_then(|mut stmt| {
            stmt.query_map(params_from_iter(values.iter()), run_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(read_failed("runs"))
}

pub(super) fn last_run(
    conn: &Connection,
    job_id: &str,
    statuses: &[RunStatus],
) -> StoreResult<Option<Run>> {
    let mut values = vec![job_id];
    values.extend(statuses.iter().map(|s| s.as_str()));
    let status_filter = if statuses.is_empty() {
        String::new()
    } else {
        let placeholders: Vec<String> = (2..=values.len()).map(|i| format!("?{i}")).collect();
        format!("AND status IN ({})", placeholders.join(", "))
    };
    conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE job_id = ?1 {status_filter}
         ORDER BY created_at DESC, id DESC LIMIT 1"
    ))
    .and_then(|mut stmt| {
        stmt.query_row(params_from_iter(&values), run_from_row)
            .optional()
    })
    .map_err(read_failed("runs"))
}

/// One indexed lookup per job.
pub(super) fn last_runs(
    conn: &Connection,
    job_ids: &[String],
) -> StoreResult<HashMap<String, Run>> {
    let lookup = || -> rusqlite::Result<_> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE job_id = ?1
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ))?;
        let mut last = HashMap::new();
        for job_id in job_ids {
            if let Some(run) = stmt.query_row([job_id], run_from_row).optional()? {
                last.insert(job_id.clone(), run);
            }
        }
        Ok(last)
    };
    lookup().map_err(read_failed("runs"))
}

pub(super) fn task_runs(conn: &Connection, run_id: &str) -> StoreResult<Vec<TaskRun>> {
    conn.prepare_cached(&format!(
        "SELECT {TASK_COLUMNS} FROM task_runs WHERE run_id = ?1 ORDER BY ordinal"
    ))
    .and_then(|mut stmt| {
        stmt.query_map([run_id], task_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(read_failed("task runs"))
}

pub(super) fn log_page(
    conn: &Connection,
    run_id: &str,
    task_id: Option<&str>,
    start: LogStart,
    limit: LogPageLimit,
) -> StoreResult<LogPage> {
    // One read transaction: a tail's start and its lines come from one snapshot.
    let snapshot = conn.unchecked_transaction().map_err(read_failed("logs"))?;
    let page =
        log_chunks::read_page(conn, run_id, task_id, start, limit).map_err(read_failed("logs"))?;
    snapshot.finish().map_err(read_failed("logs"))?;
    Ok(page)
}

pub(super) fn scheduler_paused(conn: &Connection) -> StoreResult<bool> {
    conn.prepare_cached("SELECT value FROM settings WHERE key = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([SCHEDULER_PAUSED], |row| row.get::<_, String>(0))
                .optional()
        })
        .map(|value| value.as_deref() == Some("true"))
        .map_err(read_failed("settings"))
}

pub(super) fn fires_between(
    conn: &Connection,
    job_id: &str,
    from: &str,
    to: &str,
) -> StoreResult<Vec<DateTime<Utc>>> {
    conn.prepare_cached(
        "SELECT scheduled_for FROM runs
         WHERE job_id = ?1 AND scheduled_for >= ?2 AND scheduled_for <= ?3
         ORDER BY scheduled_for",
    )
    .and_then(|mut stmt| {
        stmt.query_map([job_id, from, to], |row| time_column(row, 0))?
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(read_failed("fire instants"))
}

pub(super) fn last_fire(conn: &Connection, job_id: &str) -> StoreResult<Option<DateTime<Utc>>> {
    conn.prepare_cached(
        "SELECT scheduled_for FROM runs
         WHERE job_id = ?1 AND scheduled_for IS NOT NULL
         ORDER BY scheduled_for DESC LIMIT 1",
    )
    .and_then(|mut stmt| {
        stmt.query_row([job_id], |row| time_column(row, 0))
            .optional()
    })
    .map_err(read_failed("fire instants"))
}

pub(super) fn paused_jobs(conn: &Connection) -> StoreResult<Vec<String>> {
    conn.prepare_cached("SELECT job_id FROM paused_jobs ORDER BY job_id")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(read_failed("paused jobs"))
}

pub(super) fn notifications(
    conn: &Connection,
    run_id: &str,
) -> StoreResult<Vec<NotificationRecord>> {
    conn.prepare_cached(
        "SELECT run_id, job_id, time, event, target, attempt, outcome, message
         FROM notifications WHERE run_id = ?1 ORDER BY id",
    )
    .and_then(|mut stmt| {
        stmt.query_map([run_id], notification_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(read_failed("notifications"))
}

pub(super) fn audit(conn: &Connection, page: &RunPage) -> StoreResult<Vec<AuditRecord>> {
    let (limit, offset) = limit_offset(page);
    conn.prepare_cached(
        "SELECT time, actor, call, target, outcome, message FROM audit
         ORDER BY id DESC LIMIT ?1 OFFSET ?2",
    )
    .and_then(|mut stmt| {
        stmt.query_map([limit, offset], audit_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(read_failed("audit"))
}

pub(super) fn unfinished_runs(conn: &Connection) -> StoreResult<Vec<Run>> {
    conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE status IN (?1, ?2)
         ORDER BY created_at, id"
    ))
    .and_then(|mut stmt| {
        stmt.query_map(
            [RunStatus::Queued.as_str(), RunStatus::Running.as_str()],
            run_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(read_failed("unfinished runs"))
}

/// The queued runs, oldest first, in the order of the index by status and age.
pub(super) fn queued_runs(conn: &Connection) -> StoreResult<Vec<Run>> {
    conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE status = ?1 ORDER BY created_at, id"
    ))
    .and_then(|mut stmt| {
        stmt.query_map([RunStatus::Queued.as_str()], run_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(read_failed("queued runs"))
}
