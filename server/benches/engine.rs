//! Engine overhead, as ratios against the raw cost of the same work.
//!
//! Each case runs a job through a real engine (SQLite file store, real processes) and
//! the same processes spawned directly, and prints both medians and their ratio.
//! Run with `make bench`. Nothing here asserts a time: the figures go in notes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use petit_server::config::{parse_job, GlobalConfig};
use petit_server::core::{RunStatus, TaskRun, TaskStatus, TriggerReason};
use petit_server::events::{Event, Logs};
use petit_server::store::{MemoryStore, Run, SqliteStore, Store, StoreOptions};
use petit_server::testing::run_to_end;
use petit_server::{Engine, EngineOptions};

#[path = "support/table.rs"]
mod table;

const ROUNDS: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The raw cost: spawn `argv` `n` times, `parallel` at a time, and wait for each.
fn raw(argv: &[&str], n: usize, parallel: usize) -> Duration {
    let start = Instant::now();
    let mut left = n;
    while left > 0 {
        let batch = left.min(parallel);
        let children: Vec<_> = (0..batch)
            .map(|_| {
                Command::new(argv[0])
                    .args(&argv[1..])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for c in children {
            c.wait_with_output().expect("wait");
        }
        left -= batch;
    }
    start.elapsed()
}

fn job_yaml(id: &str, n: usize, chain: bool, argv: &[&str]) -> String {
    let mut y = format!("id: {id}\nmax_concurrency: 1\ntasks:\n");
    let args: Vec<String> = argv[1..].iter().map(|a| format!("{a:?}")).collect();
    for i in 0..n {
        y += &format!(
            "  - id: t{i}\n    command: {:?}\n    args: [{}]\n",
            argv[0],
            args.join(", ")
        );
        if chain && i > 0 {
            y += &format!("    depends_on: [t{}]\n", i - 1);
        }
    }
    y
}

/// A SQLite file store in `dir`, or the in-memory store with `PETIT_BENCH_MEMORY` set
/// (to separate SQLite's cost from the rest).
fn bench_store(dir: &Path) -> Arc<dyn Store> {
    if std::env::var_os("PETIT_BENCH_MEMORY").is_some() {
        Arc::new(MemoryStore::new(StoreOptions::default()))
    } else {
        Arc::new(SqliteStore::open(&dir.join("bench.db"), StoreOptions::default()).expect("store"))
    }
}

async fn engine_case(name: &str, n: usize, chain: bool, parallel: usize, argv: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = parse_job(
        &job_yaml("bench", n, chain, argv),
        Path::new("bench.yaml"),
        &GlobalConfig::default(),
    )
    .expect("job");
    let store = bench_store(dir.path());
    let options = EngineOptions {
        max_concurrent_tasks: parallel,
        ..Default::default()
    };
    let engine = Engine::start(vec![job], store, options)
        .await
        .expect("engine");

    let mut petit = Vec::new();
    let mut direct = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let out = run_to_end(&engine, "bench", BTreeMap::new(), false)
            .await
            .expect("run");
        assert_eq!(out.run.status, RunStatus::Succeeded);
        petit.push(start.elapsed());
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let p = if chain { 1 } else { parallel };
        direct.push(
            tokio::task::spawn_blocking(move || {
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                raw(&argv, n, p)
            })
            .await
            .expect("raw"),
        );
    }
    let (p, d) = (median(petit), median(direct));
    println!(
        "{name:<44} petit {:>9.2} ms   raw {:>9.2} ms   ratio {:>5.2}x   per task +{:.3} ms",
        p.as_secs_f64() * 1e3,
        d.as_secs_f64() * 1e3,
        p.as_secs_f64() / d.as_secs_f64(),
        (p.as_secs_f64() - d.as_secs_f64()) * 1e3 / n as f64,
    );
    engine.shutdown(Duration::from_secs(1)).await;
}

/// How late an every-second job's runs start after the second they fire on.
async fn fire_latency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = "id: tick\nschedule: '* * * * * *'\ntasks:\n  - {id: t, command: 'true'}\n";
    let job = parse_job(yaml, Path::new("tick.yaml"), &GlobalConfig::default()).expect("job");
    let store = bench_store(dir.path());
    let engine = Engine::start(vec![job], store, EngineOptions::default())
        .await
        .expect("engine");
    let mut events = engine.subscribe();
    let mut created = Vec::new();
    let mut started = Vec::new();
    while started.len() < 5 {
        let Ok(event) = events.recv().await else {
            continue;
        };
        if event.kind() != petit_server::events::EventKind::RunStarted {
            continue;
        }
        let run = event.run().expect("run event");
        let ms = |t: chrono::DateTime<chrono::Utc>| f64::from(t.timestamp_subsec_micros()) / 1e3;
        created.push(ms(run.created_at));
        started.push(ms(run.started_at.expect("started")));
    }
    created.sort_by(f64::total_cmp);
    started.sort_by(f64::total_cmp);
    println!(
        "{:<44} run created +{:.2} ms, started +{:.2} ms after the second (median of 5; max {:.2} / {:.2})",
        "every-second job: fire latency", created[2], started[2], created[4], started[4]
    );
    engine.shutdown(Duration::from_secs(1)).await;
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; any other argument filters nothing here.
    // `PETIT_BENCH_TASKS=only` runs the per-task cases alone; `=profile` only 1,000
    // runs of the one-task job, for `strace -c -f` or `perf record` (no raw spawns).
    if std::env::var("PETIT_BENCH_TASKS").as_deref() == Ok("profile") {
        return profile_one_task(1000).await;
    }
    task_cases().await;
    if std::env::var("PETIT_BENCH_TASKS").as_deref() == Ok("only") {
        return;
    }
    println!("median of {ROUNDS} rounds; raw = the same processes spawned directly and awaited");
    engine_case(
        "100 independent `true` tasks, 8 at a time",
        100,
        false,
        8,
        &["true"],
    )
    .await;
    engine_case("50 `true` tasks in a chain", 50, true, 8, &["true"]).await;
    engine_case(
        "1 task printing 100k lines",
        1,
        false,
        1,
        &["seq", "100000"],
    )
    .await;
    engine_case(
        "20 tasks printing 5k lines each, 4 at a time",
        20,
        false,
        4,
        &["seq", "5000"],
    )
    .await;
    fire_latency().await;
    validate_cases();
}

/// A job of `n` tasks, each depending on the one before, written compactly (20,000
/// of them stay under the 1 MiB limit of a job file).
fn chain_yaml(n: usize) -> String {
    let mut y = String::from("id: chain\ntasks:\n");
    for i in 0..n {
        y += &format!("- id: t{i}\n  command: echo\n");
        if i > 0 {
            y += &format!("  depends_on: [t{}]\n", i - 1);
        }
    }
    y
}

/// The median time of `ROUNDS` calls of `f`.
fn time(mut f: impl FnMut()) -> Duration {
    median(
        (0..ROUNDS)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

fn print_ratio(name: &str, what: &str, petit: Duration, raw: Duration) {
    println!(
        "{name:<44} petit {:>9.2} ms   raw {:>9.2} ms   ratio {:>5.2}x   (raw: {what})",
        petit.as_secs_f64() * 1e3,
        raw.as_secs_f64() * 1e3,
        petit.as_secs_f64() / raw.as_secs_f64(),
    );
}

/// Loading job files (`load_jobs_dir`, what `petitd validate` and start-up do): a
/// 20,000-task chain against serde_yaml reading the same text into a plain `Value`;
/// a file opening 100,000 lists (refused by the nesting limit) against reading the
/// file; and the whole `petitd validate` command on the chain against the same
/// command on an empty directory (the process's start-up alone).
fn validate_cases() {
    use petit_server::config::load_jobs_dir;
    let global = GlobalConfig::default();
    let dirs = |name: &str, text: &str| {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(name);
        std::fs::write(&file, text).expect("write");
        (dir, file)
    };

    let chain = chain_yaml(20_000);
    let (chain_dir, chain_file) = dirs("chain.yaml", &chain);
    let petit = time(|| {
        let jobs = load_jobs_dir(chain_dir.path(), &global).expect("the chain loads");
        assert_eq!(jobs[0].tasks.len(), 20_000);
    });
    let raw = time(|| {
        let text = std::fs::read_to_string(&chain_file).expect("read");
        serde_yaml::from_str::<serde_yaml::Value>(&text).expect("yaml");
    });
    print_ratio(
        "load a 20,000-task chained job",
        "read + serde_yaml::Value",
        petit,
        raw,
    );

    let nested = format!(
        "id: deep\ntasks:\n  - id: t\n    command: echo\n    args: {}\n",
        "[".repeat(100_000)
    );
    let (nest_dir, nest_file) = dirs("deep.yaml", &nested);
    let petit = time(|| {
        let errors = load_jobs_dir(nest_dir.path(), &global).expect_err("too deep");
        assert!(errors.to_string().contains("nested more than 64 deep"));
    });
    let raw = time(|| {
        std::fs::read_to_string(&nest_file).expect("read");
    });
    print_ratio("refuse 100,000 nested `[`", "read the file", petit, raw);

    let petitd = |dir: &Path| {
        let status = Command::new(env!("CARGO_BIN_EXE_petitd"))
            .arg("validate")
            .arg(dir)
            .env_remove("PETIT_CONFIG")
            .stdout(Stdio::null())
            .status()
            .expect("petitd validate");
        assert!(status.success());
    };
    let empty = tempfile::tempdir().expect("tempdir");
    let petit = time(|| petitd(chain_dir.path()));
    let raw = time(|| petitd(empty.path()));
    print_ratio(
        "`petitd validate` a 20,000-task chained job",
        "an empty directory",
        petit,
        raw,
    );
}

/// An engine set up as petitd sets its own up: a SQLite file, the process ledger and
/// the scratch directory beside it.
async fn daemon_engine(dir: &Path, yaml: &str, max_concurrent_tasks: usize) -> Engine {
    let job = parse_job(yaml, Path::new("bench.yaml"), &GlobalConfig::default()).expect("job");
    let options = EngineOptions {
        max_concurrent_tasks,
        process_ledger: Some(dir.join("bench.db.pids")),
        scratch_dir: Some(dir.join("bench.db.scratch")),
        ..Default::default()
    };
    Engine::start(vec![job], bench_store(dir), options)
        .await
        .expect("engine")
}

/// `rounds` runs of the one-task job, one after the other; prints the median.
async fn profile_one_task(rounds: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = daemon_engine(
        dir.path(),
        "id: one\ntasks:\n  - {id: t, command: /bin/true}\n",
        8,
    )
    .await;
    let mut petit = Vec::new();
    for _ in 0..rounds {
        petit.push(trigger_to_end(&engine, "one").await);
    }
    engine.shutdown(Duration::from_secs(1)).await;
    println!(
        "1 `/bin/true` task, {rounds} runs: median {:.3} ms",
        median(petit).as_secs_f64() * 1e3
    );
}

/// Triggers `job_id` and waits for its run's end event: trigger → run finished.
async fn trigger_to_end(engine: &Engine, job_id: &str) -> Duration {
    let mut events = engine.subscribe_with(Logs::None);
    let start = Instant::now();
    let run = engine
        .trigger(job_id, BTreeMap::new(), false)
        .await
        .expect("trigger");
    loop {
        let event = events.recv().await.expect("events");
        if let Event::Run { run: r, .. } = &*event {
            if r.id == run.id && r.status.is_terminal() {
                assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
                return start.elapsed();
            }
        }
    }
}

/// Spawns `argv` and waits for it, its output piped as a task's is; how long it took.
fn spawn_wait(argv: &[&str]) -> Duration {
    let start = Instant::now();
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn");
    assert!(out.status.success(), "{argv:?}");
    start.elapsed()
}

/// `spawn_wait` on a blocking thread (the time is taken there).
async fn raw_async(argv: &'static [&'static str]) -> Duration {
    tokio::task::spawn_blocking(move || spawn_wait(argv))
        .await
        .expect("raw")
}

/// The per-task overhead (section "tasks" of make bench's table): each case against
/// the raw cost of the same spawns in the same run, rounds taking turns.
async fn task_cases() {
    const ONE_ROUNDS: usize = 200;
    const MANY_ROUNDS: usize = 21;
    println!(
        "per-task cases: SQLite file, process ledger and scratch directory as petitd has them"
    );

    // One `/bin/true` task: trigger → run finished, against spawning and waiting for
    // `/bin/true` directly.
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = daemon_engine(
        dir.path(),
        "id: one\ntasks:\n  - {id: t, command: /bin/true}\n",
        8,
    )
    .await;
    let floor_dir = tempfile::tempdir().expect("tempdir");
    let floor_store =
        SqliteStore::open(&floor_dir.path().join("floor.db"), StoreOptions::default())
            .expect("store");
    let (mut petit, mut direct, mut durable) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ONE_ROUNDS {
        petit.push(trigger_to_end(&engine, "one").await);
        direct.push(raw_async(&["/bin/true"]).await);
        durable.push(durable_chain(&floor_store, 1).await);
    }
    engine.shutdown(Duration::from_secs(1)).await;
    let (p, r) = (median(petit), median(direct));
    row(
        "1 `/bin/true` task: trigger → run finished",
        &format!("median of {ONE_ROUNDS}; raw: spawn + wait `/bin/true`"),
        p,
        r,
        "≤ 1.5 ms",
        "4.47 ms",
    );
    durable_floor("1 task", p, median(durable));

    // A 50-task chain against the same 50 spawns in a shell loop (the whole `sh -c`).
    let dir = tempfile::tempdir().expect("tempdir");
    let mut chain = String::from("id: chain\ntasks:\n");
    for i in 0..50 {
        chain += &format!("  - id: t{i}\n    command: /bin/true\n");
        if i > 0 {
            chain += &format!("    depends_on: [t{}]\n", i - 1);
        }
    }
    let engine = daemon_engine(dir.path(), &chain, 8).await;
    let (mut petit, mut shell, mut rust, mut durable) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..MANY_ROUNDS {
        petit.push(trigger_to_end(&engine, "chain").await);
        shell.push(raw_async(&["sh", "-c", "for i in $(seq 50); do /bin/true; done"]).await);
        rust.push(
            tokio::task::spawn_blocking(|| raw(&["/bin/true"], 50, 1))
                .await
                .expect("raw"),
        );
        durable.push(durable_chain(&floor_store, 50).await);
    }
    engine.shutdown(Duration::from_secs(1)).await;
    let (p, r, s) = (median(petit), median(shell), median(rust));
    println!(
        "{:<44} (the same 50 spawns from Rust one after the other: {:.2} ms, {:.2}x)",
        "",
        s.as_secs_f64() * 1e3,
        p.as_secs_f64() / s.as_secs_f64()
    );
    row(
        "50 `/bin/true` tasks in a chain",
        &format!("median of {MANY_ROUNDS}; raw: `sh -c 'for i in $(seq 50); do /bin/true; done'`"),
        p,
        r,
        "≤ 1.2×",
        "2.40×",
    );
    durable_floor("50-task chain", p, median(durable));

    // 200 independent tasks, 16 at a time, against `xargs -P16` (the same argv).
    let dir = tempfile::tempdir().expect("tempdir");
    let mut wide = String::from("id: wide\ntasks:\n");
    for i in 1..=200 {
        wide += &format!("  - {{id: t{i}, command: /bin/true, args: ['{i}']}}\n");
    }
    let engine = daemon_engine(dir.path(), &wide, 16).await;
    let (mut petit, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..MANY_ROUNDS {
        petit.push(trigger_to_end(&engine, "wide").await);
        direct.push(raw_async(&["sh", "-c", "seq 200 | xargs -P16 -n1 /bin/true"]).await);
    }
    engine.shutdown(Duration::from_secs(1)).await;
    let (p, r) = (median(petit), median(direct));
    row(
        "200 `/bin/true` tasks, 16 at a time",
        &format!("median of {MANY_ROUNDS}; raw: `seq 200 | xargs -P16 -n1 /bin/true`"),
        p,
        r,
        "≤ 1.1×",
        "2.58×",
    );
}

/// The floor under a durable chain of `n` `/bin/true` tasks: the same spawns one
/// after the other, with the writes the engine must make, made directly on a SQLite
/// store: the run created and claimed with the first task's start, then before each
/// next spawn the task's end with that start in one write (an end is durable before
/// its dependents run), and the last end with the run's.
async fn durable_chain(store: &SqliteStore, n: usize) -> Duration {
    let start = Instant::now();
    let now = chrono::Utc::now();
    let run = Run::queued(
        uuid::Uuid::now_v7().to_string(),
        "floor",
        TriggerReason::Manual,
        now,
    );
    let mut tasks: Vec<TaskRun> = (0..n)
        .map(|i| TaskRun::pending(&run.id, &format!("t{i}")))
        .collect();
    let begin = |task: &mut TaskRun| {
        task.status = TaskStatus::Running;
        task.attempts = 1;
        task.started_at = Some(chrono::Utc::now());
    };
    let mut first = tasks[0].clone();
    begin(&mut first);
    let mut run = store
        .create_claimed_run(run, tasks.clone(), vec![first.clone()], now)
        .await
        .expect("claim")
        .expect("claimed");
    tasks[0] = first;
    for i in 0..n {
        raw_async(&["/bin/true"]).await;
        let mut writes = Vec::with_capacity(2);
        tasks[i].status = TaskStatus::Succeeded;
        tasks[i].exit_code = Some(0);
        tasks[i].ended_at = Some(chrono::Utc::now());
        writes.push(tasks[i].clone());
        if i + 1 < n {
            begin(&mut tasks[i + 1]);
            writes.push(tasks[i + 1].clone());
            store.update_task_runs(writes).await.expect("step");
        } else {
            run.status = RunStatus::Succeeded;
            run.ended_at = Some(chrono::Utc::now());
            store.finish_run(run.clone(), writes).await.expect("end");
        }
    }
    start.elapsed()
}

/// Prints and records `petit` against the durable floor of the same case (see
/// [`durable_chain`]): what is left of the overhead once the writes it must make are
/// counted in the raw cost.
fn durable_floor(case: &str, petit: Duration, floor: Duration) {
    row(
        &format!("{case} vs spawns + its writes, direct"),
        "raw: the same spawns with the run's store writes, made directly",
        petit,
        floor,
        "—",
        "—",
    );
}

/// Prints a per-task case and records it in the summary table.
fn row(figure: &str, how: &str, petit: Duration, raw: Duration, target: &str, original: &str) {
    let ratio = table::ratio(petit.as_secs_f64(), raw.as_secs_f64());
    println!(
        "{figure:<44} petit {:>9.3} ms   raw {:>9.3} ms   ratio {ratio:>6}   ({how})",
        petit.as_secs_f64() * 1e3,
        raw.as_secs_f64() * 1e3,
    );
    table::record(table::Row {
        section: "tasks",
        figure,
        petit: table::ms(petit),
        raw: table::ms(raw),
        ratio,
        target,
        original,
    });
}
