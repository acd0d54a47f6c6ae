//! What one log append costs as the database grows (issue 11): the median time to
//! append one batch (20 lines to one task's stdout, as the executor sends them) in a
//! new database and in one that already keeps 100,000 chunks of other runs, printed
//! with their ratio; then the same with the stream at its byte cap, so that every
//! append also trims, and with the task's other stream holding many small chunks.
//! A last line shows what the issue was: the big database without the index on
//! `batch` (as before migration 3), where each append's next batch number scans every
//! chunk. Run with `make bench` (or `cargo bench -p petit-server --bench log_append`);
//! nothing here asserts a time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use petit_server::core::{LogStream, RunStatus, TriggerReason};
use petit_server::store::{LogLine, Run, SqliteStore, Store, StoreOptions, TaskRun};

/// Chunks kept in the big database: 2,000 runs × 5 tasks × 2 streams × 5 appends.
const RUNS: usize = 2_000;
const TASKS: usize = 5;
const APPENDS_PER_RUN: usize = 5;
/// Appends timed per case (after as many untimed ones).
const TIMED: usize = 400;
const LINES_PER_BATCH: u64 = 20;
/// The cap of the trimming cases: about 20 batches of 20 lines.
const SMALL_CAP: usize = 16 * 1024;

fn run(id: &str) -> Run {
    Run {
        status: RunStatus::Running,
        started_at: Some(Utc::now()),
        ..Run::queued(id, "bench", TriggerReason::Manual, Utc::now())
    }
}

fn line(run_id: &str, task_id: &str, stream: LogStream, seq: u64, text: String) -> LogLine {
    LogLine {
        run_id: run_id.into(),
        seq,
        task_id: task_id.into(),
        attempt: 1,
        stream,
        line: text,
        time: Utc::now(),
    }
}

fn open(path: &Path, cap: usize) -> SqliteStore {
    SqliteStore::open(
        path,
        StoreOptions {
            max_log_bytes_per_stream: cap,
        },
    )
    .expect("open the database")
}

/// A database at `path` keeping `RUNS * TASKS * 2 * APPENDS_PER_RUN` chunks; how many.
async fn fill(path: &Path) -> i64 {
    let store = open(path, usize::MAX);
    for r in 0..RUNS {
        let run_id = format!("old-{r}");
        let tasks = (0..TASKS)
            .map(|t| TaskRun::pending(&run_id, &format!("t{t}")))
            .collect();
        store.create_run(run(&run_id), tasks).await.expect("run");
        for a in 0..APPENDS_PER_RUN {
            let mut batch = Vec::new();
            for t in 0..TASKS {
                for stream in [LogStream::Stdout, LogStream::Stderr] {
                    let seq = batch.len() as u64 + 1;
                    let text = format!("run {r} append {a} task {t} {stream} line");
                    batch.push(line(&run_id, &format!("t{t}"), stream, seq, text));
                }
            }
            store.append_logs(batch).await.expect("append");
        }
    }
    drop(store);
    rusqlite::Connection::open(path)
        .and_then(|conn| conn.query_row("SELECT COUNT(*) FROM log_chunks", [], |r| r.get(0)))
        .expect("count chunks")
}

/// A copy of the database at `from` (closed, so one file), for one case to change.
fn copy(from: &Path, dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(from, &to).expect("copy the database");
    to
}

/// The median time of one append of `LINES_PER_BATCH` lines to a new run's task, in
/// the database at `path`; with `other_stream` small chunks written to the task's
/// stderr first.
async fn median_append(path: &Path, cap: usize, other_stream: usize) -> Duration {
    let store = open(path, cap);
    store
        .create_run(run("bench"), vec![TaskRun::pending("bench", "t")])
        .await
        .expect("run");
    let mut seq = 0;
    for _ in 0..other_stream {
        seq += 1;
        let stderr = line("bench", "t", LogStream::Stderr, seq, "e".into());
        store.append_logs(vec![stderr]).await.expect("append");
    }
    let mut times = Vec::with_capacity(TIMED);
    for round in 0..2 * TIMED {
        let batch: Vec<LogLine> = (0..LINES_PER_BATCH)
            .map(|_| {
                seq += 1;
                let text = format!("line {seq:>10} of a task writing steadily to stdout");
                line("bench", "t", LogStream::Stdout, seq, text)
            })
            .collect();
        let start = Instant::now();
        store.append_logs(batch).await.expect("append");
        if round >= TIMED {
            times.push(start.elapsed());
        }
    }
    times.sort();
    times[times.len() / 2]
}

fn report(name: &str, fresh: Duration, grown: Duration) {
    println!(
        "{name:<52} new {:>7.1} µs   100k chunks {:>7.1} µs   ratio {:>5.2}x",
        fresh.as_secs_f64() * 1e6,
        grown.as_secs_f64() * 1e6,
        grown.as_secs_f64() / fresh.as_secs_f64(),
    );
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; any other argument filters nothing here.
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let big = dir.path().join("big.db");
    let chunks = fill(&big).await;
    println!(
        "median of {TIMED} appends of {LINES_PER_BATCH} lines; big database: {chunks} chunks \
         (filled in {:.1} s)",
        started.elapsed().as_secs_f64()
    );

    let cases: [(&str, usize, usize); 3] = [
        ("append, under the cap", usize::MAX, 0),
        ("append at the 16 KiB cap (each one trims)", SMALL_CAP, 0),
        (
            "append at the cap, 5,000 one-line stderr chunks",
            SMALL_CAP,
            5_000,
        ),
    ];
    for (n, (name, cap, other_stream)) in cases.into_iter().enumerate() {
        let fresh = dir.path().join(format!("fresh-{n}.db"));
        let fresh = median_append(&fresh, cap, other_stream).await;
        let grown = copy(&big, dir.path(), &format!("grown-{n}.db"));
        let grown = median_append(&grown, cap, other_stream).await;
        report(name, fresh, grown);
    }

    // Before migration 3: no index on `batch`.
    let fresh = median_append(&dir.path().join("fresh-x.db"), usize::MAX, 0).await;
    let unindexed = copy(&big, dir.path(), "unindexed.db");
    rusqlite::Connection::open(&unindexed)
        .and_then(|conn| conn.execute_batch("DROP INDEX log_chunks_by_batch"))
        .expect("drop the index");
    let unindexed = median_append(&unindexed, usize::MAX, 0).await;
    report(
        "append, under the cap, no index on batch (before 3)",
        fresh,
        unindexed,
    );
}
