//! The schema: every migration in order, and bringing a database up to date when it
//! opens. Each migration runs in its own transaction and bumps `PRAGMA user_version`,
//! so a database is always at one known version.

use std::path::Path;

use rusqlite::Connection;

use crate::store::{StoreError, StoreResult};

/// Schema changes in order: entry `i` takes a database from `PRAGMA user_version` `i`
/// to `i + 1`. Append only; never edit a migration that has shipped.
pub(in crate::store) const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE jobs (
        id          TEXT PRIMARY KEY NOT NULL,
        name        TEXT NOT NULL,
        source      TEXT NOT NULL,
        schedule    TEXT,
        updated_at  TEXT NOT NULL
    ) STRICT;

    -- No foreign key to jobs: runs outlive the job files that defined them.
    CREATE TABLE runs (
        id          TEXT PRIMARY KEY NOT NULL,
        job_id      TEXT NOT NULL,
        status      TEXT NOT NULL,
        "trigger"   TEXT NOT NULL,
        params      TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        started_at  TEXT,
        ended_at    TEXT,
        error       TEXT
    ) STRICT;
    CREATE INDEX runs_by_job ON runs (job_id, created_at DESC, id DESC);
    CREATE INDEX runs_by_created ON runs (created_at DESC, id DESC);
    CREATE INDEX runs_by_status ON runs (status);

    CREATE TABLE task_runs (
        run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        task_id     TEXT NOT NULL,
        ordinal     INTEGER NOT NULL,
        status      TEXT NOT NULL,
        attempts    INTEGER NOT NULL,
        exit_code   INTEGER,
        started_at  TEXT,
        ended_at    TEXT,
        error       TEXT,
        outputs     TEXT NOT NULL,
        PRIMARY KEY (run_id, task_id)
    ) STRICT, WITHOUT ROWID;

    -- Log lines, in chunks: one row per (append, run, task, stream); `lines` holds
    -- the encoded lines (see store/log_chunks.rs). `batch` orders appends, `id` orders
    -- the chunks of one stream.
    CREATE TABLE log_chunks (
        id          INTEGER PRIMARY KEY,
        batch       INTEGER NOT NULL,
        run_id      TEXT NOT NULL,
        task_id     TEXT NOT NULL,
        stream      TEXT NOT NULL,
        lines       BLOB NOT NULL,
        count       INTEGER NOT NULL,
        bytes       INTEGER NOT NULL  -- sum of the lines' UTF-8 lengths (the cap's unit)
    ) STRICT;
    CREATE INDEX log_chunks_by_task ON log_chunks (run_id, task_id, id);

    -- Bytes currently kept per stream, so that the cap costs one row update per batch
    -- rather than a sum over the stream.
    CREATE TABLE log_totals (
        run_id      TEXT NOT NULL,
        task_id     TEXT NOT NULL,
        stream      TEXT NOT NULL,
        bytes       INTEGER NOT NULL,
        PRIMARY KEY (run_id, task_id, stream)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 2: daemon settings that outlive a restart (the scheduler's paused state).
    r#"
    CREATE TABLE settings (
        key         TEXT PRIMARY KEY NOT NULL,
        value       TEXT NOT NULL
    ) STRICT, WITHOUT ROWID;
    "#,
    // 3: log reads by page. Each page seeks to its first batch, and a tail walks the
    // chunks' line counts backwards, from the index alone (hence `count` in it); the
    // index on `batch` makes each append's `MAX(batch)` one lookup instead of a scan
    // of every chunk.
    r#"
    CREATE INDEX log_chunks_by_batch ON log_chunks (batch);
    CREATE INDEX log_chunks_page_of_task ON log_chunks (run_id, task_id, batch, count);
    CREATE INDEX log_chunks_page_of_run ON log_chunks (run_id, batch, count);
    "#,
    // 4: who started a run, the instant a scheduled run stands for (one run per fire
    // instant, whoever tries), and the audit record of mutating calls.
    r#"
    ALTER TABLE runs ADD COLUMN triggered_by TEXT;
    ALTER TABLE runs ADD COLUMN scheduled_for TEXT;
    CREATE UNIQUE INDEX runs_by_fire ON runs (job_id, scheduled_for)
        WHERE scheduled_for IS NOT NULL;

    CREATE TABLE audit (
        id          INTEGER PRIMARY KEY,
        time        TEXT NOT NULL,
        actor       TEXT NOT NULL,
        call        TEXT NOT NULL,
        target      TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        message     TEXT NOT NULL
    ) STRICT;

    -- Each attempt to deliver a notification. No foreign key: a skipped fire's has no
    -- run (run_id is empty), and history pruning may outlive it.
    CREATE TABLE notifications (
        id          INTEGER PRIMARY KEY,
        run_id      TEXT NOT NULL,
        job_id      TEXT NOT NULL,
        time        TEXT NOT NULL,
        event       TEXT NOT NULL,
        target      TEXT NOT NULL,
        attempt     INTEGER NOT NULL,
        outcome     TEXT NOT NULL,
        message     TEXT NOT NULL
    ) STRICT;
    CREATE INDEX notifications_by_run ON notifications (run_id, id);
    "#,
    // 5: the run queue. A run waiting to start is `queued` (earlier versions wrote
    // `pending`). The queue is read oldest first, and the running runs counted, from
    // one index by status then age, so a claim costs the queue's head and the running
    // runs, not the history; it replaces the index on status alone.
    r#"
    UPDATE runs SET status = 'queued' WHERE status = 'pending';
    CREATE INDEX runs_by_status_created ON runs (status, created_at, id);
    DROP INDEX runs_by_status;
    "#,
    // 6: trimming a stream to its cap reads that stream's oldest chunks (and their
    // sizes) from the index alone. It walked every chunk of the task, both streams,
    // from the oldest: a task with many small stderr chunks made each stdout trim
    // cost all of them (issue 11).
    r#"
    CREATE INDEX log_chunks_of_stream ON log_chunks (run_id, task_id, stream, id, bytes);
    DROP INDEX log_chunks_by_task;
    "#,
    // 7: jobs paused one by one (the scheduler-wide pause stays in `settings`). Kept
    // by job id, so a pause outlives a reload that drops the job and brings it back.
    r#"
    CREATE TABLE paused_jobs (
        job_id  TEXT PRIMARY KEY NOT NULL,
        since   TEXT NOT NULL
    ) STRICT;
    "#,
    // 8: the definition (content hash of the job file) a run ran with.
    r#"
    ALTER TABLE runs ADD COLUMN definition TEXT;
    "#,
    // 9: the run a re-run repeats.
    r#"
    ALTER TABLE runs ADD COLUMN retry_of TEXT;
    "#,
];

/// Applies the migrations this database lacks, one transaction each.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> StoreResult<()> {
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| {
            StoreError::sqlite(
                format!("cannot read the schema version of {}", path.display()),
                e,
            )
        })?;
    let known = MIGRATIONS.len();
    let current = usize::try_from(current).map_err(|_| StoreError::Corrupt {
        context: format!("cannot open database {}", path.display()),
        detail: format!("invalid schema version {current}"),
    })?;
    if current > known {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found: current,
            known,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = index + 1;
        let apply = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", version)?;
            tx.commit()
        };
        apply(conn).map_err(|e| {
            StoreError::sqlite(
                format!(
                    "cannot migrate database {} to schema version {version}",
                    path.display()
                ),
                e,
            )
        })?;
    }
    Ok(())
}
