//! The log pipeline's cost (issue 11, "fast where users feel it"): tasks printing many
//! lines, triggered in an embedded engine on a SQLite file store (the daemon's default,
//! with its default per-stream cap) until the run is finished and its log stored,
//! against the raw cost of producing and moving the same bytes measured in the same
//! run. Nobody watches the runs (the bus carries the lines to no one), so the figure is
//! the pipeline's own: capture, channel, store, publish.
//!
//! Raw, per case: the same commands spawned directly, `parallel` at a time, their
//! stdout pipes read to the end in this process in 64 KiB reads and dropped (the least
//! any capture must do); beside it, `sh -c 'seq N | cat >/dev/null'` for reference.
//! The last case runs the 1M-line job 5 times in a row on one database, so a growing
//! cost per stored run would show. Run with `make bench`; nothing here asserts a time.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use petit_server::config::{parse_job, GlobalConfig};
use petit_server::core::RunStatus;
use petit_server::events::Logs;
use petit_server::store::{SqliteStore, Store, StoreOptions};
use petit_server::{Engine, EngineOptions};

#[path = "support/table.rs"]
mod table;

const ROUNDS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `tasks` processes in waves of at most `parallel`: `wave(n)` starts `n` of them
/// and waits for them. Returns the time all the waves took.
fn in_waves(tasks: usize, parallel: usize, mut wave: impl FnMut(usize)) -> Duration {
    let start = Instant::now();
    let mut left = tasks;
    while left > 0 {
        let n = left.min(parallel);
        wave(n);
        left -= n;
    }
    start.elapsed()
}

/// Spawns `seq lines` `tasks` times, `parallel` at a time, and reads each stdout pipe
/// to the end (64 KiB reads, bytes dropped).
fn raw_pipe(lines: usize, tasks: usize, parallel: usize) -> Duration {
    in_waves(tasks, parallel, |n| {
        let readers: Vec<_> = (0..n)
            .map(|_| {
                let mut child = Command::new("seq")
                    .arg(lines.to_string())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn seq");
                std::thread::spawn(move || {
                    let mut out = child.stdout.take().expect("stdout");
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut total = 0;
                    loop {
                        match out.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => total += n,
                            Err(e) => panic!("read: {e}"),
                        }
                    }
                    child.wait().expect("wait");
                    total
                })
            })
            .collect();
        for r in readers {
            assert!(r.join().expect("reader") > 0);
        }
    })
}

/// `sh -c 'seq N | cat >/dev/null'`, `tasks` times, `parallel` at a time.
fn raw_shell(lines: usize, tasks: usize, parallel: usize) -> Duration {
    in_waves(tasks, parallel, |n| {
        let children: Vec<_> = (0..n)
            .map(|_| {
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("seq {lines} | cat >/dev/null"))
                    .spawn()
                    .expect("spawn sh")
            })
            .collect();
        for mut c in children {
            assert!(c.wait().expect("wait").success());
        }
    })
}

fn job_yaml(tasks: usize, lines: usize) -> String {
    let mut y = String::from("id: logs\nmax_concurrency: 1\ntasks:\n");
    for i in 0..tasks {
        y += &format!("  - id: t{i}\n    command: seq\n    args: [\"{lines}\"]\n");
    }
    y
}

async fn engine(dir: &Path, tasks: usize, lines: usize, parallel: usize) -> Engine {
    let job = parse_job(
        &job_yaml(tasks, lines),
        Path::new("logs.yaml"),
        &GlobalConfig::default(),
    )
    .expect("job");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.join("bench.db"), StoreOptions::default()).expect("store"));
    let options = EngineOptions {
        max_concurrent_tasks: parallel,
        ..Default::default()
    };
    Engine::start(vec![job], store, options)
        .await
        .expect("engine")
}

/// Triggers the job and waits for its run to end (no log lines subscribed); checks
/// that it succeeded and that each task's last line is stored.
async fn one_run(engine: &Engine, tasks: usize, lines: usize) -> Duration {
    let mut events = engine.subscribe_with(Logs::None);
    let start = Instant::now();
    let run = engine
        .trigger("logs", BTreeMap::new(), false)
        .await
        .expect("trigger");
    let end = async {
        loop {
            match events.recv().await {
                Ok(event) if event.run_id() == Some(run.id.as_str()) && event.ends_run() => {
                    return;
                }
                Ok(_) => {}
                Err(petit_server::events::RecvError::Lagged(_)) => {}
                Err(e) => panic!("bus closed: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), end)
        .await
        .expect("the run ends within 120 s");
    let elapsed = start.elapsed();
    let stored = engine.get_run(&run.id).await.expect("run");
    assert_eq!(stored.status, RunStatus::Succeeded);
    for t in 0..tasks {
        let task = format!("t{t}");
        let last = engine
            .store()
            .log_page(
                &run.id,
                Some(&task),
                petit_server::store::LogStart::Tail(1),
                petit_server::store::LogPageLimit {
                    lines: 1,
                    bytes: 1 << 20,
                },
            )
            .await
            .expect("tail");
        assert_eq!(
            last.lines.last().map(|l| l.line.as_str()),
            Some(lines.to_string().as_str()),
            "task {task}'s last line is stored"
        );
    }
    elapsed
}

struct Figures {
    petit: Duration,
    raw: Duration,
    shell: Duration,
}

async fn case(name: &str, tasks: usize, lines: usize, parallel: usize) -> Figures {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path(), tasks, lines, parallel).await;
    let (mut petit, mut raw, mut shell) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        petit.push(one_run(&engine, tasks, lines).await);
        raw.push(
            tokio::task::spawn_blocking(move || raw_pipe(lines, tasks, parallel))
                .await
                .expect("raw"),
        );
        shell.push(
            tokio::task::spawn_blocking(move || raw_shell(lines, tasks, parallel))
                .await
                .expect("shell"),
        );
    }
    engine.shutdown(Duration::from_secs(5)).await;
    let f = Figures {
        petit: median(petit),
        raw: median(raw),
        shell: median(shell),
    };
    println!(
        "{name:<46} petit {:>8.2} ms   raw {:>7.2} ms   ratio {:>6.2}x   (sh seq|cat {:>7.2} ms: {:>5.2}x)",
        ms(f.petit),
        ms(f.raw),
        f.petit.as_secs_f64() / f.raw.as_secs_f64(),
        ms(f.shell),
        f.petit.as_secs_f64() / f.shell.as_secs_f64(),
    );
    f
}

/// The 1M-line job 5 times in a row on one database: each run's time, and the raw
/// cost measured after it.
async fn repeated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path(), 1, 1_000_000, 1).await;
    let mut line = String::from("1M lines, 5 runs in a row on one database:");
    for _ in 0..5 {
        let petit = one_run(&engine, 1, 1_000_000).await;
        let raw = tokio::task::spawn_blocking(|| raw_pipe(1_000_000, 1, 1))
            .await
            .expect("raw");
        line += &format!(
            "  {:.1} ms ({:.2}x)",
            ms(petit),
            petit.as_secs_f64() / raw.as_secs_f64()
        );
    }
    engine.shutdown(Duration::from_secs(5)).await;
    println!("{line}");
}

fn record(figure: &str, f: &Figures, original: &str) {
    table::record(table::Row {
        section: "logs",
        figure,
        petit: format!("{:.1} ms", ms(f.petit)),
        raw: format!("{:.1} ms (seq, its pipe read)", ms(f.raw)),
        ratio: format!("{:.2}×", f.petit.as_secs_f64() / f.raw.as_secs_f64()),
        target: "≤ 3×",
        original,
    });
}

fn main() {
    // The allocator as petitd sets it up (fixed mmap and trim thresholds, two arenas),
    // before the runtime's threads exist.
    petit_server::alloc::tune();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(bench());
}

async fn bench() {
    println!(
        "median of {ROUNDS} rounds; SQLite file store, cap {} KiB per stream; raw = seq spawned \
         directly, its pipe read in 64 KiB reads",
        StoreOptions::default().max_log_bytes_per_stream / 1024
    );
    let million = case("1 task printing 1,000,000 lines", 1, 1_000_000, 1).await;
    record(
        "one task printing 1,000,000 lines",
        &million,
        "285× (4.1 s)",
    );
    let hundred = case("1 task printing 100k lines", 1, 100_000, 1).await;
    record("one task printing 100,000 lines", &hundred, "—");
    let many = case("20 tasks printing 5k lines each, 4 at a time", 20, 5_000, 4).await;
    record("20 tasks × 5,000 lines, 4 at a time", &many, "—");
    repeated().await;
}
