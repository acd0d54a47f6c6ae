//! The SQLite store's own guarantees, beyond the conformance suite: opening and
//! migrating, the WAL left behind (or not) on close, and a dead writer.

use std::collections::HashMap;
use std::path::Path;

use chrono::Utc;
use rusqlite::Connection;

use super::{SqliteStore, MIGRATIONS};
use crate::core::{RunStatus, TaskStatus, TriggerReason};
use crate::store::{ClaimLimits, Run, Store, StoreError, StoreOptions};

fn queued_run(id: &str) -> Run {
    Run::queued(id, "job", TriggerReason::Manual, Utc::now())
}

fn schema_version(path: &Path) -> i64 {
    let conn = Connection::open(path).expect("raw connection");
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("user_version")
}

#[test]
fn open_creates_the_file_and_migrates_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The parent directories do not exist yet.
    let path = dir.path().join("state").join("nested").join("petit.db");
    let store = SqliteStore::open(&path, StoreOptions::default()).expect("first open");
    assert_eq!(schema_version(&path), MIGRATIONS.len() as i64);
    drop(store);

    // Reopening applies nothing and changes nothing.
    let store = SqliteStore::open(&path, StoreOptions::default()).expect("second open");
    assert_eq!(schema_version(&path), MIGRATIONS.len() as i64);
    drop(store);

    let conn = Connection::open(&path).expect("raw connection");
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
}

/// A database written by the first release (schema 1) opens, is brought up to date,
/// and keeps its history.
#[tokio::test]
async fn open_upgrades_an_older_schema_keeping_its_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("petit.db");
    {
        let conn = Connection::open(&path).expect("raw connection");
        conn.execute_batch(MIGRATIONS[0]).expect("schema 1");
        conn.pragma_update(None, "user_version", 1)
            .expect("user_version");
        conn.execute(
            "INSERT INTO runs (id, job_id, status, \"trigger\", params, created_at)
             VALUES ('r1', 'job', 'succeeded', 'manual', '{}', '2026-01-01T00:00:00Z')",
            [],
        )
        .expect("a run");
    }
    let store = SqliteStore::open(&path, StoreOptions::default()).expect("open");
    assert_eq!(schema_version(&path), MIGRATIONS.len() as i64);
    let run = store
        .get_run("r1")
        .await
        .expect("get_run")
        .expect("the run");
    assert_eq!(run.status, RunStatus::Succeeded);
    assert!(!store.scheduler_paused().await.expect("paused"));
    store.set_scheduler_paused(true).await.expect("pause");
    assert!(store.scheduler_paused().await.expect("paused"));
}

/// A database written before the queue (schema 4, runs waiting to start were
/// `pending`) opens with those runs `queued`, in the queue in their order, claimable;
/// other runs and task runs keep their statuses.
#[tokio::test]
async fn migration_5_makes_pending_runs_queued() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("petit.db");
    {
        let conn = Connection::open(&path).expect("raw connection");
        for sql in &MIGRATIONS[..4] {
            conn.execute_batch(sql).expect("schema 1 to 4");
        }
        conn.pragma_update(None, "user_version", 4)
            .expect("user_version");
        conn.execute_batch(
            "INSERT INTO runs (id, job_id, status, \"trigger\", params, created_at)
             VALUES ('late', 'job', 'pending', 'manual', '{}', '2026-01-01T00:00:02Z'),
                    ('early', 'job', 'pending', 'manual', '{}', '2026-01-01T00:00:01Z'),
                    ('going', 'job', 'running', 'manual', '{}', '2026-01-01T00:00:00Z'),
                    ('done', 'job', 'succeeded', 'manual', '{}', '2026-01-01T00:00:00Z');
             INSERT INTO task_runs (run_id, task_id, ordinal, status, attempts, outputs)
             VALUES ('early', 't', 0, 'pending', 0, '{}');",
        )
        .expect("runs of the previous version");
    }
    let store = SqliteStore::open(&path, StoreOptions::default()).expect("open");
    assert_eq!(schema_version(&path), MIGRATIONS.len() as i64);
    let status = |id: &'static str| {
        let store = &store;
        async move { store.get_run(id).await.expect("read").expect("run").status }
    };
    assert_eq!(status("early").await, RunStatus::Queued);
    assert_eq!(status("late").await, RunStatus::Queued);
    assert_eq!(status("going").await, RunStatus::Running);
    assert_eq!(status("done").await, RunStatus::Succeeded);
    let queue: Vec<String> = store
        .queued_runs()
        .await
        .expect("queue")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(queue, ["early", "late"]);
    let tasks = store.task_runs("early").await.expect("task runs");
    assert_eq!(
        tasks[0].status,
        TaskStatus::Pending,
        "task statuses unchanged"
    );

    let limits = ClaimLimits {
        max_running: 10,
        per_job: HashMap::from([("job".to_owned(), 2)]),
    };
    let claimed = store.claim_next(&limits, Utc::now()).await.expect("claim");
    assert_eq!(claimed.map(|r| r.id).as_deref(), Some("early"));
    assert_eq!(
        store.claim_next(&limits, Utc::now()).await.expect("claim"),
        None,
        "'going' and 'early' fill the job"
    );
}

/// The queue's reads go through the index by status and age: the queue's head in
/// order without a sort, the running counts without a scan of the runs.
#[test]
fn queue_queries_use_their_indexes() {
    let conn = Connection::open_in_memory().expect("database");
    for sql in MIGRATIONS {
        conn.execute_batch(sql).expect("migration");
    }
    let queued_runs = format!(
        "SELECT {} FROM runs WHERE status = ?1 ORDER BY created_at, id",
        super::rows::RUN_COLUMNS
    );
    let cases = [
        (super::writer::BY_STATUS, true),
        (queued_runs.as_str(), true),
        (super::writer::PER_JOB, false),
    ];
    for (sql, ordered) in cases {
        let plan = crate::store::tests::query_plan(&conn, sql);
        assert!(
            plan.contains("USING INDEX runs_by_status_created (status=?)"),
            "{sql}\n{plan}"
        );
        assert!(!plan.contains("SCAN runs"), "{sql}\n{plan}");
        if ordered {
            assert!(!plan.contains("TEMP B-TREE"), "{sql}\n{plan}");
        }
    }
}

/// After a clean close the database is one file again (the WAL checkpointed into
/// it), so that stopping petitd and copying `petit.db` is a whole backup.
#[tokio::test]
async fn a_closed_store_leaves_no_wal_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("petit.db");
    let store = SqliteStore::open(&path, StoreOptions::default()).expect("open");
    store.set_scheduler_paused(true).await.expect("write");
    // Reads open (and pool) read-only connections, which must not be the last.
    assert!(store.scheduler_paused().await.expect("read"));
    let wal = dir.path().join("petit.db-wal");
    assert!(wal.exists(), "WAL mode while open");
    drop(store);
    assert!(
        !wal.exists(),
        "the WAL is checkpointed and removed on close"
    );
    assert!(!dir.path().join("petit.db-shm").exists());
    let conn = Connection::open(&path).expect("raw connection");
    let paused: String = conn
        .query_row("SELECT value FROM settings", [], |row| row.get(0))
        .expect("the write is in the main file");
    assert_eq!(paused, "true");
}

#[test]
fn open_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("petit.db");
    drop(SqliteStore::open(&path, StoreOptions::default()).expect("open"));
    let future = MIGRATIONS.len() + 1;
    Connection::open(&path)
        .and_then(|conn| conn.pragma_update(None, "user_version", future))
        .expect("bump user_version");

    let Err(error) = SqliteStore::open(&path, StoreOptions::default()) else {
        panic!("a newer schema must be refused");
    };
    assert!(
        matches!(error, StoreError::SchemaTooNew { found, known, .. }
            if found == future && known == MIGRATIONS.len()),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("newer"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert_eq!(schema_version(&path), future as i64, "left untouched");
}

/// A stored value this binary cannot read (a status from a newer petitd, a damaged
/// row) is `Corrupt`, naming what was read and the value; other rows still read.
#[tokio::test]
async fn a_value_that_does_not_parse_is_corrupt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("petit.db");
    let store = SqliteStore::open(&path, StoreOptions::default()).expect("open");
    store
        .create_run(queued_run("fine"), vec![])
        .await
        .expect("create");
    Connection::open(&path)
        .and_then(|conn| {
            conn.execute(
                "INSERT INTO runs (id, job_id, status, \"trigger\", params, created_at)
                 VALUES ('odd', 'job', 'frobbed', 'manual', '{}', '2026-01-01T00:00:00Z')",
                [],
            )
        })
        .expect("a run from the future");
    let error = store.get_run("odd").await.expect_err("unreadable");
    assert!(
        matches!(&error, StoreError::Corrupt { detail, .. } if detail == "column status: unknown RunStatus 'frobbed'"),
        "{error:?}"
    );
    assert!(store.get_run("fine").await.expect("read").is_some());
}

#[test]
fn open_errors_name_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 4096]).expect("write garbage");
    // A directory where the parent directory should be.
    let blocked = dir.path().join("file").join("petit.db");
    std::fs::write(dir.path().join("file"), b"").expect("write file");

    for path in [garbage, blocked] {
        let Err(error) = SqliteStore::open(&path, StoreOptions::default()) else {
            panic!("{} must not open", path.display());
        };
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
    }
}

#[tokio::test]
async fn a_dead_writer_fails_calls_instead_of_hanging() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        SqliteStore::open(&dir.path().join("petit.db"), StoreOptions::default()).expect("open");
    let run = queued_run("r1");
    store.create_run(run.clone(), vec![]).await.expect("create");

    assert!(matches!(
        store.crash_writer().await,
        Err(StoreError::WriterStopped)
    ));
    assert!(matches!(
        store.update_run(run.clone()).await,
        Err(StoreError::WriterStopped)
    ));
    assert!(matches!(
        store.upsert_jobs(vec![]).await,
        Err(StoreError::WriterStopped)
    ));
    // Reads do not need the writer.
    let stored = store.get_run("r1").await.expect("read");
    assert_eq!(stored.map(|r| r.id), Some(run.id));
}

/// A page of runs, the first or one deep in the history (after the last run of the
/// page before), of one job or of all, reads its rows from an index in their order:
/// no scan of the runs, no sort. The deep page seeks (a range on the index), so it
/// costs what the first page does.
#[test]
fn run_pages_seek_their_index() {
    let conn = Connection::open_in_memory().expect("database");
    for sql in MIGRATIONS {
        conn.execute_batch(sql).expect("migration");
    }
    let cases = [
        (true, false, "INDEX runs_by_job (job_id=?)"),
        (
            true,
            true,
            "INDEX runs_by_job (job_id=? AND (created_at,id)<(?,?))",
        ),
        (false, false, "INDEX runs_by_created"),
        (false, true, "INDEX runs_by_created ((created_at,id)<(?,?))"),
    ];
    for (of_job, after, index) in cases {
        let sql = super::read::runs_sql(of_job, after);
        let plan = crate::store::tests::query_plan(&conn, &sql);
        assert!(plan.contains(index), "{sql}\n{plan}");
        assert!(
            !plan.contains("SCAN runs\n") && !plan.ends_with("SCAN runs"),
            "{sql}\n{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{sql}\n{plan}");
    }
}

/// With checkpoints beside the writer (checkpoint.rs) rather than in its commits,
/// sustained writes still reach the main file and the WAL still starts over: it stays
/// near the writer's fallback, not the size of everything written.
#[tokio::test]
async fn the_wal_stays_bounded_under_sustained_writes() {
    use crate::core::{LogLine, LogStream};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("petit.db");
    let options = StoreOptions {
        max_log_bytes_per_stream: 64 << 20,
    };
    let store = SqliteStore::open(&path, options).expect("open");
    store
        .create_run(queued_run("r"), vec![])
        .await
        .expect("create");
    let line = "x".repeat(1000);
    let mut seq = 0;
    let wal = dir.path().join("petit.db-wal");
    let mut largest_wal = 0;
    // 160 appends of 256 KiB: 40 MiB, 10,000 pages, past the writer's fallback twice.
    for _ in 0..160 {
        let lines = (0..256)
            .map(|_| {
                seq += 1;
                LogLine {
                    run_id: "r".into(),
                    seq,
                    task_id: "t".into(),
                    attempt: 1,
                    stream: LogStream::Stdout,
                    line: line.clone(),
                    time: Utc::now(),
                }
            })
            .collect();
        store.append_logs(lines).await.expect("append");
        largest_wal = largest_wal.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let main = std::fs::metadata(&path).expect("database").len();
        if main >= 36 << 20 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file holds {main} bytes: no checkpoint copied the WAL into it"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The WAL was started over after checkpoints: never as large as all that was
    // written (40 MiB), nor much past the writer's own fallback (16 MiB).
    assert!(
        largest_wal < 20 << 20,
        "the WAL grew to {largest_wal} bytes"
    );
    drop(store);
    assert!(!wal.exists(), "the WAL is removed on close");
}

/// A batch is one transaction, each command undone alone when it fails (in a
/// savepoint when the batch holds several, by rolling the transaction back when it
/// holds one); the failing command's answer is its own error, the others' their
/// results, and nothing of the failed one is left.
#[test]
fn a_failing_write_is_undone_alone_in_a_batch_and_alone() {
    use super::writer::{commit_commands, Command};
    use std::sync::atomic::AtomicU64;

    let mut conn = Connection::open_in_memory().expect("database");
    for sql in MIGRATIONS {
        conn.execute_batch(sql).expect("migration");
    }
    let insert = |id: &'static str| {
        Command::new(move |conn: &Connection| {
            conn.execute("INSERT INTO settings (key, value) VALUES (?1, 'v')", [id])
                .map(drop)
                .map_err(|e| StoreError::sqlite("insert", e))
        })
    };
    // Writes a row, then fails: the row must not stay.
    let half_done = |id: &'static str| {
        Command::new(move |conn: &Connection| {
            conn.execute("INSERT INTO settings (key, value) VALUES (?1, 'v')", [id])
                .map_err(|e| StoreError::sqlite("insert", e))?;
            Err::<(), _>(StoreError::Invalid(format!("{id} refused")))
        })
    };
    let keys = |conn: &Connection| -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT key FROM settings ORDER BY key")
            .unwrap();
        stmt.query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let commits = AtomicU64::new(0);

    let (a, a_done) = insert("a");
    let (bad, bad_done) = half_done("b");
    let (dup, dup_done) = insert("a");
    let (c, c_done) = insert("c");
    commit_commands(&mut conn, vec![a, bad, dup, c], &commits);
    let answer = |mut rx: tokio::sync::oneshot::Receiver<_>| rx.try_recv().expect("answered");
    assert!(answer(a_done).is_ok());
    assert!(matches!(answer(bad_done), Err(StoreError::Invalid(m)) if m == "b refused"));
    assert!(answer(dup_done).is_err(), "a duplicate key fails");
    assert!(answer(c_done).is_ok());
    assert_eq!(keys(&conn), ["a", "c"]);
    assert!(conn.is_autocommit(), "the transaction is over");

    // Alone in its batch: the transaction is rolled back, and the next one is fine.
    let (bad, bad_done) = half_done("d");
    commit_commands(&mut conn, vec![bad], &commits);
    assert!(matches!(answer(bad_done), Err(StoreError::Invalid(_))));
    assert!(conn.is_autocommit());
    let (e, e_done) = insert("e");
    commit_commands(&mut conn, vec![e], &commits);
    assert!(answer(e_done).is_ok());
    assert_eq!(keys(&conn), ["a", "c", "e"]);
}
