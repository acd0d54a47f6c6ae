//! The store conformance suite, written once and run against both implementations,
//! plus the SQLite store's own guarantees: persistence across reopen, group commit
//! under concurrency, durability of a write issued right before drop.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use futures::FutureExt;
use tempfile::TempDir;

use super::{
    AuditRecord, JobRecord, LogLine, MemoryStore, NotificationRecord, PostgresStore, Run, RunKey,
    RunPage, SqliteStore, Store, StoreError, StoreOptions, StoreResult, TaskRun,
};
use crate::core::{LogStream, RunStatus, TaskStatus, TriggerReason};

/// Small enough that the log tests reach it with a few lines.
const TEST_LOG_CAP: usize = 100;

pub(super) fn test_options() -> StoreOptions {
    StoreOptions {
        max_log_bytes_per_stream: TEST_LOG_CAP,
    }
}

/// A store under test, with what the suite needs beyond the trait.
enum Subject {
    Memory(Arc<MemoryStore>),
    Sqlite {
        store: Arc<SqliteStore>,
        /// Removed when the subject is dropped, after the store (field order).
        _dir: TempDir,
    },
    /// On a fresh database of the tests' PostgreSQL (tests/support/postgres.rs).
    Postgres(Arc<PostgresStore>),
}

impl Subject {
    fn memory() -> Subject {
        Subject::Memory(Arc::new(MemoryStore::new(test_options())))
    }

    fn sqlite() -> Subject {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("petit.db"), test_options())
            .expect("open the database");
        Subject::Sqlite {
            store: Arc::new(store),
            _dir: dir,
        }
    }

    /// `None` (the test skips, loudly; under CI it fails instead) without PostgreSQL.
    async fn postgres(name: &str) -> Option<Subject> {
        let url = postgres_database(name)?;
        let store = PostgresStore::connect(&url, test_options())
            .await
            .expect("connect to the test database");
        Some(Subject::Postgres(Arc::new(store)))
    }

    fn store(&self) -> Arc<dyn Store> {
        match self {
            Subject::Memory(store) => store.clone(),
            Subject::Sqlite { store, .. } => store.clone(),
            Subject::Postgres(store) => store.clone(),
        }
    }

    async fn jobs(&self) -> StoreResult<Vec<JobRecord>> {
        match self {
            Subject::Memory(store) => store.stored_jobs(),
            Subject::Sqlite { store, .. } => store.stored_jobs().await,
            Subject::Postgres(store) => store.stored_jobs().await,
        }
    }
}

/// Generates one `#[tokio::test]` per implementation for each conformance check.
macro_rules! conformance {
    ($($check:ident),+ $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $check() -> super::StoreResult<()> {
                    super::$check(&super::Subject::memory()).await
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $check() -> super::StoreResult<()> {
                    super::$check(&super::Subject::sqlite()).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $check() -> super::StoreResult<()> {
                    let Some(subject) = super::Subject::postgres(stringify!($check)).await else {
                        return Ok(());
                    };
                    super::$check(&subject).await
                }
            )+
        }
    };
}

conformance!(
    create_get_and_update_run,
    create_run_rejects_bad_input_atomically,
    list_runs_is_newest_first_and_paged,
    last_run_filters_by_status,
    task_runs_keep_creation_order_and_updates,
    batched_task_updates_apply_each_and_report_the_first_failure,
    logs_keep_write_order,
    logs_keep_any_text,
    logs_keep_the_tail_of_each_stream,
    append_logs_to_unknown_run_fails_whole,
    log_batches_are_stored_as_their_lines,
    unfinished_runs_are_queued_or_running,
    upsert_jobs_inserts_and_replaces,
    prune_logs_drops_lines_of_old_runs_only,
    last_runs_gives_the_newest_run_of_each_job,
    scheduler_paused_round_trips,
    job_pauses_round_trip,
    prune_runs_keeps_the_newest_and_never_the_unfinished,
    audit_is_newest_first_and_paged,
    one_run_per_fire_instant,
    notifications_are_kept_per_run_in_order,
    log_pages_give_every_line_once_in_order,
    log_pages_respect_the_byte_bound,
    log_tail_gives_the_last_lines,
    log_pages_past_the_end_are_empty,
    log_page_starts_outlive_trimming,
    queued_runs_are_oldest_first,
    claim_run_takes_a_queued_run_once,
    cancel_queued_ends_a_run_and_its_tasks,
    claim_and_cancel_never_both_win,
    claim_next_respects_max_running,
    claim_next_skips_jobs_at_their_limit,
    claim_next_never_claims_absent_jobs,
    concurrent_claims_respect_the_limits,
);

mod log_pages;
use log_pages::{
    log_page_starts_outlive_trimming, log_pages_give_every_line_once_in_order,
    log_pages_past_the_end_are_empty, log_pages_respect_the_byte_bound,
    log_tail_gives_the_last_lines,
};

mod queue;
use queue::{
    cancel_queued_ends_a_run_and_its_tasks, claim_and_cancel_never_both_win,
    claim_next_never_claims_absent_jobs, claim_next_respects_max_running,
    claim_next_skips_jobs_at_their_limit, claim_run_takes_a_queued_run_once,
    concurrent_claims_respect_the_limits, queued_runs_are_oldest_first,
};

/// A fresh database on the tests' PostgreSQL (one server per test process), or
/// `None` where there is none (after a loud `SKIPPED`; under CI, a panic).
pub(super) fn postgres_database(name: &str) -> Option<String> {
    let server = petit_tests::postgres::TestPostgres::shared()?;
    Some(server.fresh_database(name))
}

/// A fixed instant `secs` after a base, with nanoseconds so that any precision lost
/// on the way through a store shows.
fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 123_456_789)
        .single()
        .expect("valid time")
}

fn run(id: &str, job_id: &str, status: RunStatus, created: i64) -> Run {
    Run {
        id: id.into(),
        job_id: job_id.into(),
        status,
        trigger: TriggerReason::Manual,
        params: BTreeMap::from([("env".into(), "prod".into())]),
        created_at: at(created),
        started_at: None,
        ended_at: None,
        error: None,
        triggered_by: Some("ci-bot".into()),
        scheduled_for: None,
        definition: None,
        retry_of: None,
    }
}

fn task(run_id: &str, task_id: &str) -> TaskRun {
    TaskRun::pending(run_id, task_id)
}

fn log(run_id: &str, task_id: &str, stream: LogStream, seq: u64, line: &str) -> LogLine {
    LogLine {
        run_id: run_id.into(),
        seq,
        task_id: task_id.into(),
        attempt: 1,
        stream,
        line: line.into(),
        time: at(seq as i64),
    }
}

fn ids(runs: &[Run]) -> Vec<&str> {
    runs.iter().map(|r| r.id.as_str()).collect()
}

fn lines(logs: &[LogLine]) -> Vec<&str> {
    logs.iter().map(|l| l.line.as_str()).collect()
}

async fn create_get_and_update_run(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    let created = run("r1", "job", RunStatus::Queued, 1);
    store
        .create_run(created.clone(), vec![task("r1", "a"), task("r1", "b")])
        .await?;
    assert_eq!(store.get_run("r1").await?, Some(created.clone()));
    assert_eq!(store.get_run("missing").await?, None);

    let running = Run {
        status: RunStatus::Failed,
        started_at: Some(at(2)),
        ended_at: Some(at(3)),
        error: Some("task 'b' failed: exit code 2 — «unicode»".into()),
        ..created.clone()
    };
    store.update_run(running.clone()).await?;
    assert_eq!(store.get_run("r1").await?, Some(running.clone()));

    // Only the mutable fields change; what the run was created with stays.
    let tampered = Run {
        job_id: "other".into(),
        trigger: TriggerReason::Schedule,
        params: BTreeMap::new(),
        created_at: at(99),
        ..running.clone()
    };
    store.update_run(tampered).await?;
    assert_eq!(store.get_run("r1").await?, Some(running));

    let unknown = run("nope", "job", RunStatus::Running, 1);
    let error = store.update_run(unknown).await.expect_err("unknown run");
    assert!(
        matches!(&error, StoreError::RunNotFound { run_id } if run_id == "nope"),
        "{error:?}"
    );
    Ok(())
}

async fn create_run_rejects_bad_input_atomically(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    let cases = [
        (
            "duplicate task",
            run("r1", "job", RunStatus::Queued, 1),
            vec![task("r1", "a"), task("r1", "a")],
        ),
        (
            "task of another run",
            run("r2", "job", RunStatus::Queued, 1),
            vec![task("r2", "a"), task("elsewhere", "b")],
        ),
    ];
    for (name, bad_run, tasks) in cases {
        let id = bad_run.id.clone();
        let error = store.create_run(bad_run, tasks).await.expect_err(name);
        assert!(matches!(error, StoreError::Invalid(_)), "{name}: {error:?}");
        assert_eq!(store.get_run(&id).await?, None, "{name}: nothing stored");
        assert!(
            store.task_runs(&id).await?.is_empty(),
            "{name}: no task runs"
        );
    }

    let first = run("r3", "job", RunStatus::Queued, 1);
    store
        .create_run(first.clone(), vec![task("r3", "a")])
        .await?;
    let again = run("r3", "job", RunStatus::Running, 5);
    let error = store
        .create_run(again, vec![])
        .await
        .expect_err("duplicate run id");
    assert!(
        matches!(&error, StoreError::RunExists { run_id } if run_id == "r3"),
        "{error:?}"
    );
    assert_eq!(store.get_run("r3").await?, Some(first));
    Ok(())
}

async fn list_runs_is_newest_first_and_paged(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    // Created out of order; "a3" and "a4" share an instant, so the id breaks the tie.
    for (id, job, created) in [
        ("a2", "a", 2),
        ("b1", "b", 1),
        ("a1", "a", 1),
        ("a4", "a", 3),
        ("a3", "a", 3),
        ("b2", "b", 4),
        ("a5", "a", 5),
    ] {
        store
            .create_run(run(id, job, RunStatus::Succeeded, created), vec![])
            .await?;
    }

    let cases: &[(Option<&str>, usize, usize, &[&str])] = &[
        (Some("a"), 0, 0, &["a5", "a4", "a3", "a2", "a1"]),
        (Some("a"), 2, 0, &["a5", "a4"]),
        (Some("a"), 2, 1, &["a4", "a3"]),
        (Some("a"), 0, 3, &["a2", "a1"]),
        (Some("a"), 10, 4, &["a1"]),
        (Some("a"), 3, 5, &[]),
        (Some("b"), 0, 0, &["b2", "b1"]),
        (Some("nobody"), 0, 0, &[]),
        (None, 0, 0, &["a5", "b2", "a4", "a3", "a2", "b1", "a1"]),
        (None, 3, 2, &["a4", "a3", "a2"]),
    ];
    for &(job, limit, offset, expected) in cases {
        let page = RunPage {
            limit,
            offset,
            after: None,
        };
        let runs = store.list_runs(job, page).await?;
        assert_eq!(
            ids(&runs),
            expected,
            "job {job:?} limit {limit} offset {offset}"
        );
    }

    // Pages after a run (a key: the run need not exist), then limit and offset: (job,
    // after, limit, offset, expected).
    type AfterCase<'a> = (Option<&'a str>, (i64, &'a str), usize, usize, &'a [&'a str]);
    let cases: &[AfterCase] = &[
        (Some("a"), (3, "a4"), 0, 0, &["a3", "a2", "a1"]),
        (Some("a"), (3, "a3"), 1, 0, &["a2"]),
        (Some("a"), (5, "a5"), 2, 1, &["a3", "a2"]),
        (Some("a"), (3, "a35"), 0, 0, &["a3", "a2", "a1"]),
        (Some("a"), (1, "a1"), 0, 0, &[]),
        (Some("b"), (5, "a5"), 0, 0, &["b2", "b1"]),
        (None, (4, "b2"), 0, 0, &["a4", "a3", "a2", "b1", "a1"]),
        (None, (1, "b1"), 5, 0, &["a1"]),
    ];
    for &(job, (created, id), limit, offset, expected) in cases {
        let page = RunPage {
            limit,
            offset,
            after: Some(RunKey {
                created_at: at(created),
                id: id.into(),
            }),
        };
        let runs = store.list_runs(job, page).await?;
        assert_eq!(
            ids(&runs),
            expected,
            "job {job:?} after ({created}, {id}) limit {limit} offset {offset}"
        );
    }
    Ok(())
}

async fn last_run_filters_by_status(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    for (id, status, created) in [
        ("s1", RunStatus::Succeeded, 1),
        ("f1", RunStatus::Failed, 2),
        ("s2", RunStatus::Succeeded, 3),
        ("c1", RunStatus::Cancelled, 4),
        ("p1", RunStatus::Queued, 5),
    ] {
        store
            .create_run(run(id, "job", status, created), vec![])
            .await?;
    }
    store
        .create_run(run("other", "job2", RunStatus::Succeeded, 9), vec![])
        .await?;

    let cases: &[(&str, &[RunStatus], Option<&str>)] = &[
        ("job", &[], Some("p1")),
        ("job", &[RunStatus::Succeeded], Some("s2")),
        ("job", &[RunStatus::Failed], Some("f1")),
        (
            "job",
            &[RunStatus::Failed, RunStatus::Cancelled],
            Some("c1"),
        ),
        ("job", &[RunStatus::Interrupted], None),
        ("job2", &[], Some("other")),
        ("nobody", &[], None),
    ];
    for &(job, statuses, expected) in cases {
        let found = store.last_run(job, statuses).await?;
        assert_eq!(
            found.as_ref().map(|r| r.id.as_str()),
            expected,
            "job {job} statuses {statuses:?}"
        );
    }
    Ok(())
}

async fn task_runs_keep_creation_order_and_updates(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    // Not alphabetical, to show the order is creation order, not the key's.
    let tasks = vec![task("r1", "zeta"), task("r1", "alpha"), task("r1", "mid")];
    store
        .create_run(run("r1", "job", RunStatus::Running, 1), tasks.clone())
        .await?;
    assert_eq!(store.task_runs("r1").await?, tasks);

    let done = TaskRun {
        status: TaskStatus::Succeeded,
        attempts: 2,
        exit_code: Some(0),
        started_at: Some(at(2)),
        ended_at: Some(at(3)),
        error: Some("first attempt timed out".into()),
        outputs: BTreeMap::from([
            ("count".into(), "42".into()),
            ("json".into(), r#"{"a": [1, "two"]}"#.into()),
            ("multi".into(), "line one\nline two\ttabbed".into()),
            ("unicode".into(), "héllo 🌍".into()),
            ("empty".into(), String::new()),
        ]),
        ..task("r1", "alpha")
    };
    store.update_task_run(done.clone()).await?;
    let failed = TaskRun {
        status: TaskStatus::Failed,
        attempts: 1,
        exit_code: Some(-9),
        ..task("r1", "mid")
    };
    store.update_task_run(failed.clone()).await?;
    assert_eq!(
        store.task_runs("r1").await?,
        vec![task("r1", "zeta"), done, failed]
    );

    for (run_id, task_id) in [("r1", "unknown"), ("nope", "alpha")] {
        let error = store
            .update_task_run(task(run_id, task_id))
            .await
            .expect_err("unknown task run");
        assert!(
            matches!(&error, StoreError::TaskRunNotFound { run_id: r, task_id: t }
                if r == run_id && t == task_id),
            "{error:?}"
        );
    }
    assert!(store.task_runs("nope").await?.is_empty());
    Ok(())
}

async fn batched_task_updates_apply_each_and_report_the_first_failure(
    subject: &Subject,
) -> StoreResult<()> {
    let store = subject.store();
    let tasks = vec![task("r1", "a"), task("r1", "b"), task("r1", "c")];
    store
        .create_run(run("r1", "job", RunStatus::Running, 1), tasks)
        .await?;
    let ended = |id: &str, status| TaskRun {
        status,
        attempts: 1,
        started_at: Some(at(2)),
        ended_at: Some(at(3)),
        ..task("r1", id)
    };
    let started = TaskRun {
        status: TaskStatus::Running,
        attempts: 1,
        started_at: Some(at(3)),
        ..task("r1", "b")
    };
    // A task's end with the start it allows, in one call.
    store
        .update_task_runs(vec![ended("a", TaskStatus::Succeeded), started.clone()])
        .await?;
    assert_eq!(
        store.task_runs("r1").await?,
        vec![ended("a", TaskStatus::Succeeded), started, task("r1", "c")]
    );
    // One unknown task run: the others are still applied, and it is the error.
    let error = store
        .update_task_runs(vec![
            ended("b", TaskStatus::Failed),
            task("r1", "unknown"),
            ended("c", TaskStatus::Skipped),
        ])
        .await
        .expect_err("an unknown task run");
    assert!(
        matches!(&error, StoreError::TaskRunNotFound { task_id, .. } if task_id == "unknown"),
        "{error:?}"
    );
    assert_eq!(
        store.task_runs("r1").await?,
        vec![
            ended("a", TaskStatus::Succeeded),
            ended("b", TaskStatus::Failed),
            ended("c", TaskStatus::Skipped)
        ]
    );
    // The run's end with its last task ends.
    let mut finished = run("r1", "job", RunStatus::Failed, 1);
    finished.ended_at = Some(at(4));
    let last = TaskRun {
        error: Some("again".into()),
        ..ended("c", TaskStatus::Failed)
    };
    store
        .finish_run(finished.clone(), vec![last.clone()])
        .await?;
    assert_eq!(store.get_run("r1").await?, Some(finished));
    assert_eq!(store.task_runs("r1").await?[2], last);
    Ok(())
}

async fn logs_keep_write_order(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    for id in ["r1", "r2"] {
        store
            .create_run(
                run(id, "job", RunStatus::Running, 1),
                vec![task(id, "a"), task(id, "b")],
            )
            .await?;
    }
    use LogStream::{Stderr, Stdout};
    let batches = [
        vec![
            log("r1", "a", Stdout, 1, "a1"),
            log("r1", "b", Stderr, 1, "b1"),
        ],
        vec![log("r2", "a", Stdout, 1, "other run")],
        vec![
            log("r1", "a", Stderr, 2, "a2"),
            log("r1", "b", Stdout, 2, "b2"),
        ],
        vec![log("r1", "a", Stdout, 3, "a3")],
    ];
    for batch in &batches {
        store.append_logs(batch.clone()).await?;
    }
    store.append_logs(vec![]).await?;

    let all = store.logs("r1", None).await?;
    assert_eq!(lines(&all), ["a1", "b1", "a2", "b2", "a3"]);
    assert_eq!(all[0], batches[0][0], "every field round-trips");
    assert_eq!(all[1], batches[0][1], "every field round-trips");
    assert_eq!(
        lines(&store.logs("r1", Some("a")).await?),
        ["a1", "a2", "a3"]
    );
    assert_eq!(lines(&store.logs("r1", Some("b")).await?), ["b1", "b2"]);
    assert_eq!(lines(&store.logs("r2", None).await?), ["other run"]);
    assert!(store.logs("r1", Some("nope")).await?.is_empty());
    assert!(store.logs("nope", None).await?.is_empty());
    Ok(())
}

/// A task may write anything that is UTF-8, NUL included: every store keeps it as
/// written.
async fn logs_keep_any_text(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    store
        .create_run(
            run("r1", "job", RunStatus::Running, 1),
            vec![task("r1", "a")],
        )
        .await?;
    let texts = [
        "nul \0 inside",
        "\0",
        "",
        "tab\tcr\r",
        "héllo 🌍",
        "\u{FFFD}",
    ];
    let written: Vec<LogLine> = texts
        .iter()
        .enumerate()
        .map(|(n, text)| log("r1", "a", LogStream::Stdout, n as u64 + 1, text))
        .collect();
    store.append_logs(written.clone()).await?;
    assert_eq!(store.logs("r1", None).await?, written);
    Ok(())
}

async fn last_runs_gives_the_newest_run_of_each_job(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    for (id, job, created) in [("a1", "a", 1), ("a2", "a", 3), ("b1", "b", 2)] {
        store
            .create_run(run(id, job, RunStatus::Succeeded, created), vec![])
            .await?;
    }
    let ids = ["a", "b", "never"].map(String::from);
    let last = store.last_runs(&ids).await?;
    assert_eq!(last.len(), 2);
    assert_eq!(last["a"].id, "a2");
    assert_eq!(last["b"].id, "b1");
    assert!(store.last_runs(&[]).await?.is_empty());
    Ok(())
}

async fn prune_logs_drops_lines_of_old_runs_only(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    let mut old = run("old", "job", RunStatus::Succeeded, 1);
    old.ended_at = Some(at(10));
    let mut recent = run("recent", "job", RunStatus::Failed, 2);
    recent.ended_at = Some(at(100));
    let going = run("going", "job", RunStatus::Running, 3);
    for r in [old, recent, going] {
        let id = r.id.clone();
        store.create_run(r, vec![task(&id, "a")]).await?;
        store
            .append_logs(vec![
                log(&id, "a", LogStream::Stdout, 1, "x"),
                log(&id, "a", LogStream::Stderr, 2, "y"),
            ])
            .await?;
    }
    assert_eq!(store.prune_logs(at(50)).await?, 2);
    assert!(store.logs("old", None).await?.is_empty());
    assert_eq!(lines(&store.logs("recent", None).await?), ["x", "y"]);
    assert_eq!(lines(&store.logs("going", None).await?), ["x", "y"]);
    assert!(
        store.get_run("old").await?.is_some(),
        "the run itself is kept"
    );
    assert_eq!(store.prune_logs(at(50)).await?, 0);
    Ok(())
}

async fn logs_keep_the_tail_of_each_stream(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    store
        .create_run(
            run("r1", "job", RunStatus::Running, 1),
            vec![task("r1", "a"), task("r1", "b"), task("r1", "huge")],
        )
        .await?;
    use LogStream::{Stderr, Stdout};
    // 20 bytes per line: the 100-byte cap holds five.
    let line = |n: u64| format!("stdout line {n:08}");
    assert_eq!(line(0).len(), 20);

    store
        .append_logs(vec![log("r1", "a", Stderr, 1, "kept err")])
        .await?;
    // Over several calls, then one call that alone overflows the cap.
    for n in 1..=4 {
        store
            .append_logs(vec![log("r1", "a", Stdout, n, &line(n))])
            .await?;
    }
    store
        .append_logs(vec![log("r1", "b", Stdout, 1, "other task")])
        .await?;
    store
        .append_logs(
            (5..=12)
                .map(|n| log("r1", "a", Stdout, n, &line(n)))
                .collect(),
        )
        .await?;
    store
        .append_logs(vec![log("r1", "a", Stderr, 13, "late err")])
        .await?;

    let expected_stdout: Vec<String> = (8..=12).map(line).collect();
    let kept = store.logs("r1", Some("a")).await?;
    let mut expected: Vec<&str> = vec!["kept err"];
    expected.extend(expected_stdout.iter().map(String::as_str));
    expected.push("late err");
    assert_eq!(
        lines(&kept),
        expected,
        "stdout trimmed to its tail, stderr untouched"
    );
    let seqs: Vec<u64> = kept.iter().map(|l| l.seq).collect();
    assert_eq!(
        seqs,
        [1, 8, 9, 10, 11, 12, 13],
        "sequence numbers are kept as given"
    );

    // Exactly at the cap is kept; one byte more pushes out the oldest line.
    store
        .append_logs(vec![log("r1", "b", Stderr, 2, &"x".repeat(TEST_LOG_CAP))])
        .await?;
    assert_eq!(store.logs("r1", Some("b")).await?.len(), 2);
    store
        .append_logs(vec![log("r1", "b", Stderr, 3, "y")])
        .await?;
    assert_eq!(
        lines(&store.logs("r1", Some("b")).await?),
        ["other task", "y"]
    );

    // A line longer than the cap cannot be kept at all.
    store
        .append_logs(vec![
            log("r1", "huge", Stdout, 1, "small"),
            log("r1", "huge", Stdout, 2, &"z".repeat(TEST_LOG_CAP + 1)),
        ])
        .await?;
    assert!(store.logs("r1", Some("huge")).await?.is_empty());
    store
        .append_logs(vec![log("r1", "huge", Stdout, 3, "after")])
        .await?;
    assert_eq!(lines(&store.logs("r1", Some("huge")).await?), ["after"]);
    Ok(())
}

async fn append_logs_to_unknown_run_fails_whole(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    store
        .create_run(
            run("r1", "job", RunStatus::Running, 1),
            vec![task("r1", "a")],
        )
        .await?;
    let batch = vec![
        log("r1", "a", LogStream::Stdout, 1, "fine"),
        log("ghost", "a", LogStream::Stdout, 1, "orphan"),
    ];
    let error = store.append_logs(batch).await.expect_err("unknown run");
    assert!(
        matches!(&error, StoreError::RunNotFound { run_id } if run_id == "ghost"),
        "{error:?}"
    );
    assert!(
        store.logs("r1", None).await?.is_empty(),
        "nothing of the call stored"
    );
    Ok(())
}

/// A batch as the executor captures it (chunks of lines, text as read with CRLF and
/// newlines between lines) is stored exactly as its lines appended as lines would be:
/// the same lines kept under the cap, in the same order, with the same pages.
async fn log_batches_are_stored_as_their_lines(subject: &Subject) -> StoreResult<()> {
    use crate::core::{LogBatch, LogChunk};
    let store = subject.store();
    for id in ["by-batch", "by-line"] {
        store
            .create_run(run(id, "job", RunStatus::Running, 1), vec![task(id, "t")])
            .await?;
    }
    let chunk = |stream: LogStream, text: &str| {
        let mut chunk = LogChunk::new(stream);
        let (mut at, mut spans) = (0, Vec::new());
        for piece in text.split_inclusive('\n') {
            let line = piece.trim_end_matches('\n').trim_end_matches('\r');
            spans.push((at, at + line.len()));
            at += piece.len();
        }
        chunk.extend(text, spans);
        chunk
    };
    let long = format!("{}\n", "L".repeat(60));
    let batches = [
        (1, vec![chunk(LogStream::Stdout, "first\r\nsecond é\n")]),
        (
            3,
            vec![
                chunk(LogStream::Stdout, "out\n"),
                chunk(LogStream::Stderr, "err 1\nerr 2\n"),
                chunk(LogStream::Stdout, "\nmore\n"),
            ],
        ),
        // Over the 100-byte cap on its own.
        (8, vec![chunk(LogStream::Stdout, &long.repeat(3))]),
        (11, vec![chunk(LogStream::Stderr, "late\n")]),
    ];
    for (first_seq, chunks) in batches {
        let time = at(first_seq as i64);
        let batch = LogBatch::new(("by-batch".into(), "t".into(), 1), time, first_seq, chunks);
        let mut lines = batch.to_lines();
        for line in &mut lines {
            line.run_id = "by-line".into();
        }
        store.append_log_batch(Arc::new(batch)).await?;
        store.append_logs(lines).await?;
        let strip = |lines: Vec<LogLine>| -> Vec<LogLine> {
            lines
                .into_iter()
                .map(|l| LogLine {
                    run_id: String::new(),
                    ..l
                })
                .collect()
        };
        assert_eq!(
            strip(store.logs("by-batch", None).await?),
            strip(store.logs("by-line", None).await?),
            "after the batch at {first_seq}"
        );
    }
    let kept = store.logs("by-batch", Some("t")).await?;
    let long_line = "L".repeat(60);
    assert_eq!(
        lines(&kept),
        ["err 1", "err 2", &long_line, "late"],
        "stdout keeps only the last long line, stderr all"
    );
    assert_eq!(
        kept.iter().map(|l| l.seq).collect::<Vec<_>>(),
        [4, 5, 10, 11]
    );
    Ok(())
}

async fn unfinished_runs_are_queued_or_running(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    assert!(store.unfinished_runs().await?.is_empty());
    for (id, status, created) in [
        ("running-late", RunStatus::Running, 4),
        ("done", RunStatus::Succeeded, 1),
        ("queued", RunStatus::Queued, 2),
        ("failed", RunStatus::Failed, 3),
        ("running-early", RunStatus::Running, 1),
        ("cancelled", RunStatus::Cancelled, 5),
        ("interrupted", RunStatus::Interrupted, 6),
    ] {
        store
            .create_run(run(id, "job", status, created), vec![])
            .await?;
    }
    let unfinished = store.unfinished_runs().await?;
    assert_eq!(
        ids(&unfinished),
        ["running-early", "queued", "running-late"]
    );

    let settled = Run {
        status: RunStatus::Interrupted,
        ended_at: Some(at(10)),
        ..unfinished[0].clone()
    };
    store.update_run(settled).await?;
    assert_eq!(
        ids(&store.unfinished_runs().await?),
        ["queued", "running-late"]
    );
    Ok(())
}

async fn upsert_jobs_inserts_and_replaces(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    let job = |id: &str, name: &str, schedule: Option<&str>, updated: i64| JobRecord {
        id: id.into(),
        name: name.into(),
        source: format!("/etc/petit/jobs/{id}.yaml"),
        schedule: schedule.map(str::to_owned),
        updated_at: at(updated),
    };
    store
        .upsert_jobs(vec![
            job("b", "B", None, 1),
            job("a", "A", Some("@daily"), 1),
        ])
        .await?;
    store.upsert_jobs(vec![]).await?;
    store
        .upsert_jobs(vec![
            job("a", "A renamed", None, 2),
            job("c", "C", Some("0 * * * *"), 2),
        ])
        .await?;
    assert_eq!(
        subject.jobs().await?,
        vec![
            job("a", "A renamed", None, 2),
            job("b", "B", None, 1),
            job("c", "C", Some("0 * * * *"), 2),
        ],
        "upserting replaces a job and keeps jobs not mentioned"
    );
    Ok(())
}

async fn scheduler_paused_round_trips(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    assert!(
        !store.scheduler_paused().await?,
        "a new store is not paused"
    );
    store.set_scheduler_paused(true).await?;
    assert!(store.scheduler_paused().await?);
    store.set_scheduler_paused(true).await?;
    assert!(
        store.scheduler_paused().await?,
        "setting it twice changes nothing"
    );
    store.set_scheduler_paused(false).await?;
    assert!(!store.scheduler_paused().await?);
    Ok(())
}

async fn job_pauses_round_trip(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    assert!(
        store.paused_jobs().await?.is_empty(),
        "a new store pauses no job"
    );
    store.set_job_paused("nightly", true).await?;
    store.set_job_paused("backup", true).await?;
    store.set_job_paused("backup", true).await?;
    assert_eq!(
        store.paused_jobs().await?,
        ["backup", "nightly"],
        "sorted, once each"
    );
    store.set_job_paused("nightly", false).await?;
    store.set_job_paused("never-paused", false).await?;
    assert_eq!(store.paused_jobs().await?, ["backup"]);
    assert!(
        !store.scheduler_paused().await?,
        "a job's pause is not the scheduler's"
    );
    Ok(())
}

async fn prune_runs_keeps_the_newest_and_never_the_unfinished(
    subject: &Subject,
) -> StoreResult<()> {
    let store = subject.store();
    // r1..r6 ended at 10, 20, ... 60; q is queued and g running, both old.
    for i in 1..=6 {
        let mut r = run(&format!("r{i}"), "job", RunStatus::Succeeded, i * 10);
        r.ended_at = Some(at(i * 10 + 1));
        store
            .create_run(r, vec![task(&format!("r{i}"), "t")])
            .await?;
    }
    store
        .create_run(run("q", "job", RunStatus::Queued, 1), vec![])
        .await?;
    store
        .create_run(run("g", "job", RunStatus::Running, 2), vec![])
        .await?;
    store
        .create_run(run("other", "elsewhere", RunStatus::Failed, 0), vec![])
        .await?;
    store
        .append_logs(vec![LogLine {
            run_id: "r1".into(),
            seq: 1,
            task_id: "t".into(),
            attempt: 1,
            stream: LogStream::Stdout,
            line: "old".into(),
            time: at(10),
        }])
        .await?;

    // Keep the newest 4 by creation (q and g are older, but unfinished runs are never
    // deleted), in batches of 1 until done.
    let mut gone = 0;
    loop {
        let n = store.prune_runs("job", Some(4), None, 1).await?;
        gone += n;
        if n < 1 {
            break;
        }
    }
    let left: Vec<String> = store
        .list_runs(
            Some("job"),
            RunPage {
                limit: 100,
                ..Default::default()
            },
        )
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        left,
        ["r6", "r5", "r4", "r3", "g", "q"],
        "the newest 4, and the unfinished"
    );
    assert_eq!(gone, 2);
    assert!(
        store.task_runs("r1").await?.is_empty(),
        "its tasks went too"
    );
    assert!(store.logs("r1", None).await?.is_empty(), "and its logs");

    // By age: runs that ended before 45 go.
    assert_eq!(store.prune_runs("job", None, Some(at(45)), 100).await?, 2);
    assert!(store.get_run("r4").await?.is_none());
    assert!(store.get_run("r5").await?.is_some());
    assert!(
        store.get_run("other").await?.is_some(),
        "other jobs are left alone"
    );
    Ok(())
}

async fn one_run_per_fire_instant(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    let fire = |id: &str, job: &str, at: i64| Run {
        trigger: TriggerReason::Schedule,
        scheduled_for: Some(self::at(at)),
        definition: None,
        retry_of: None,
        ..run(id, job, RunStatus::Queued, at)
    };
    store.create_run(fire("a", "j", 10), vec![]).await?;
    let again = store
        .create_run(fire("b", "j", 10), vec![task("b", "t")])
        .await;
    let error = again.expect_err("a second run for one fire");
    assert!(error.is_fire_taken(), "{error:?}");
    assert!(
        matches!(&error, StoreError::FireTaken { job_id, at } if job_id == "j" && *at == self::at(10)),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("already has a run for the fire at"),
        "{message}"
    );
    assert_eq!(store.get_run("b").await?, None, "nothing of it was stored");
    assert!(store.task_runs("b").await?.is_empty());
    // Another instant, another job, and runs without an instant are all fine.
    store.create_run(fire("c", "j", 11), vec![]).await?;
    store.create_run(fire("d", "k", 10), vec![]).await?;
    store
        .create_run(run("e", "j", RunStatus::Queued, 10), vec![])
        .await?;
    store
        .create_run(run("f", "j", RunStatus::Queued, 10), vec![])
        .await?;
    assert_eq!(
        store.get_run("a").await?.unwrap().scheduled_for,
        Some(at(10))
    );
    // The fire stays taken once its run has left the queue, however it left.
    store.cancel_queued("a", at(20), "cancelled").await?;
    let late = store.create_run(fire("g", "j", 10), vec![]).await;
    assert!(
        late.as_ref().is_err_and(StoreError::is_fire_taken),
        "{late:?}"
    );
    Ok(())
}

async fn notifications_are_kept_per_run_in_order(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    let attempt = |run: &str, n: u32, outcome: &str| NotificationRecord {
        run_id: run.into(),
        job_id: "j".into(),
        time: at(i64::from(n)),
        event: "failure".into(),
        target: "webhook http://127.0.0.1:9".into(),
        attempt: n,
        outcome: outcome.into(),
        message: format!("attempt {n}"),
    };
    store
        .append_notification(attempt("r1", 1, "failed"))
        .await?;
    store
        .append_notification(attempt("r2", 1, "delivered"))
        .await?;
    store
        .append_notification(attempt("r1", 2, "delivered"))
        .await?;
    store
        .append_notification(attempt("", 1, "delivered"))
        .await?;
    assert_eq!(
        store.notifications("r1").await?,
        vec![attempt("r1", 1, "failed"), attempt("r1", 2, "delivered")]
    );
    assert_eq!(store.notifications("r2").await?.len(), 1);
    assert!(store.notifications("nope").await?.is_empty());
    Ok(())
}

async fn audit_is_newest_first_and_paged(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    assert!(store.list_audit(RunPage::default()).await?.is_empty());
    let entry = |i: i64| AuditRecord {
        time: at(i),
        actor: format!("token-{i}"),
        call: "CancelRun".into(),
        target: format!("run-{i}"),
        outcome: if i % 2 == 0 { "OK" } else { "NOT_FOUND" }.into(),
        message: format!("note {i}"),
    };
    for i in 0..5 {
        store.append_audit(entry(i)).await?;
    }
    let all = store.list_audit(RunPage::default()).await?;
    assert_eq!(all, (0..5).rev().map(entry).collect::<Vec<_>>());
    let page = store
        .list_audit(RunPage {
            limit: 2,
            offset: 1,
            after: None,
        })
        .await?;
    assert_eq!(page, vec![entry(3), entry(2)]);
    Ok(())
}

// ---- SQLite only ----

/// The plan SQLite picks for `sql` (its parameters bound to "x"), one line per step.
pub(in crate::store) fn query_plan(conn: &rusqlite::Connection, sql: &str) -> String {
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("explain");
    let steps = stmt
        .query_map(
            rusqlite::params_from_iter(std::iter::repeat_n("x", stmt.parameter_count())),
            |row| row.get::<_, String>(3),
        )
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .expect("plan rows");
    steps.join("\n")
}

fn open_at(dir: &TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("petit.db"), test_options()).expect("open the database")
}

#[tokio::test]
async fn sqlite_data_survives_reopen() -> StoreResult<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let finished = Run {
        status: RunStatus::Succeeded,
        started_at: Some(at(2)),
        ended_at: Some(at(3)),
        ..run("r1", "job", RunStatus::Queued, 1)
    };
    let done = TaskRun {
        status: TaskStatus::Succeeded,
        attempts: 1,
        exit_code: Some(0),
        outputs: BTreeMap::from([("k".into(), "v".into())]),
        ..task("r1", "a")
    };
    let logs = vec![
        log("r1", "a", LogStream::Stdout, 1, "out"),
        log("r1", "a", LogStream::Stderr, 2, "err"),
    ];
    {
        let store = open_at(&dir);
        store
            .create_run(
                run("r1", "job", RunStatus::Queued, 1),
                vec![task("r1", "a"), task("r1", "b")],
            )
            .await?;
        store.update_run(finished.clone()).await?;
        store.update_task_run(done.clone()).await?;
        store.append_logs(logs.clone()).await?;
        store.set_scheduler_paused(true).await?;
    }
    let store = open_at(&dir);
    assert!(store.scheduler_paused().await?, "the paused state survives");
    assert_eq!(store.get_run("r1").await?, Some(finished));
    assert_eq!(store.task_runs("r1").await?, vec![done, task("r1", "b")]);
    assert_eq!(store.logs("r1", None).await?, logs);

    // The byte totals survive too: the cap keeps counting what was written before.
    let filler = "f".repeat(TEST_LOG_CAP - 3);
    store
        .append_logs(vec![log("r1", "a", LogStream::Stdout, 3, &filler)])
        .await?;
    assert_eq!(
        lines(&store.logs("r1", Some("a")).await?),
        ["out", "err", filler.as_str()]
    );
    store
        .append_logs(vec![log("r1", "a", LogStream::Stdout, 4, "!")])
        .await?;
    assert_eq!(
        lines(&store.logs("r1", Some("a")).await?),
        ["err", filler.as_str(), "!"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_appends_all_commit() -> StoreResult<()> {
    const WRITERS: u64 = 200;
    const LINES: u64 = 3;
    let subject = Subject::sqlite();
    let store = subject.store();
    let tasks: Vec<TaskRun> = (0..WRITERS).map(|n| task("r1", &format!("t{n}"))).collect();
    store
        .create_run(run("r1", "job", RunStatus::Running, 1), tasks)
        .await?;

    let writers: Vec<_> = (0..WRITERS)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let task_id = format!("t{n}");
                let batch = (1..=LINES)
                    .map(|seq| {
                        log(
                            "r1",
                            &task_id,
                            LogStream::Stdout,
                            seq,
                            &format!("{n}:{seq}"),
                        )
                    })
                    .collect();
                store.append_logs(batch).await
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer task")?;
    }

    let all = store.logs("r1", None).await?;
    assert_eq!(all.len() as u64, WRITERS * LINES);
    for n in 0..WRITERS {
        let mine = store.logs("r1", Some(&format!("t{n}"))).await?;
        let expected: Vec<String> = (1..=LINES).map(|seq| format!("{n}:{seq}")).collect();
        assert_eq!(lines(&mine), expected, "writer {n}: all lines, in order");
    }
    Ok(())
}

#[tokio::test]
async fn sqlite_write_issued_right_before_drop_is_durable() -> StoreResult<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = open_at(&dir);
        store
            .create_run(
                run("r1", "job", RunStatus::Running, 1),
                vec![task("r1", "a")],
            )
            .await?;
        // Polling once hands each write to the writer thread; then nobody waits for
        // them, and the store is dropped with them most likely still queued.
        let _ = store
            .append_logs(vec![log("r1", "a", LogStream::Stdout, 1, "last words")])
            .now_or_never();
        let ended = Run {
            status: RunStatus::Succeeded,
            ..run("r1", "job", RunStatus::Running, 1)
        };
        let _ = store.update_run(ended).now_or_never();
    }
    let store = open_at(&dir);
    assert_eq!(lines(&store.logs("r1", None).await?), ["last words"]);
    let run = store.get_run("r1").await?.expect("run stored");
    assert_eq!(run.status, RunStatus::Succeeded);
    Ok(())
}
