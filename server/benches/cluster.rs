//! Cluster mode on a real PostgreSQL (a private one the test harness starts, or
//! `PETIT_TEST_POSTGRES_URL`): 1, 2 and 3 nodes (engines in this process, each with
//! its own store and connections, as separate petitd would have) sharing one database.
//!
//! For each: task starts per second (manual runs of a one-`true`-task job, spread over
//! the nodes) against the same processes spawned directly at the same parallelism
//! (the raw limit), claim latency (queued → running) p50/p99 from the stored times,
//! and database write transactions per run (transaction ids taken). Then the fires of
//! 50 every-second jobs on 3 nodes: runs per fire (exactly 1 is right) and how late the
//! runs start. Nothing asserts a time: the figures go in notes and BENCHMARKS.md.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use petit_server::config::{parse_job, GlobalConfig};
use petit_server::core::{JobDef, RunStatus};
use petit_server::engine::ClusterOptions;
use petit_server::store::{NodeInfo, PostgresStore, RunPage, StoreOptions};
use petit_server::{Engine, EngineOptions};
use petit_tests::postgres::TestPostgres;

/// Runs each node count starts (spread over the nodes).
const RUNS: usize = 300;
/// Runs executing at once on each node.
const PER_NODE: usize = 8;

fn job(yaml: &str) -> JobDef {
    parse_job(yaml, Path::new("bench.yaml"), &GlobalConfig::default()).expect("job")
}

async fn nodes(url: &str, n: usize, jobs: &[JobDef]) -> Vec<Engine> {
    let mut engines = Vec::new();
    for i in 0..n {
        let store = Arc::new(
            PostgresStore::connect(url, StoreOptions::default())
                .await
                .expect("store"),
        );
        let options = EngineOptions {
            max_concurrent_runs: PER_NODE,
            cluster: Some(ClusterOptions::new(NodeInfo {
                id: format!("n{i}"),
                address: String::new(),
                version: String::new(),
            })),
            ..Default::default()
        };
        let engine = Engine::start_cluster(jobs.to_vec(), store.clone(), store, options)
            .await
            .expect("engine");
        engines.push(engine);
    }
    engines
}

/// Write transactions the database has begun so far: each takes a transaction id
/// (this query's own included, which the difference of two readings subtracts).
async fn commits(url: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("stats connection");
    tokio::spawn(connection);
    client
        .query_one("SELECT txid_current()", &[])
        .await
        .expect("txid")
        .get(0)
}

/// The raw limit: `n` `true` processes, `parallel` at a time.
fn raw(n: usize, parallel: usize) -> Duration {
    let start = Instant::now();
    let mut left = n;
    while left > 0 {
        let batch = left.min(parallel);
        let children: Vec<_> = (0..batch)
            .map(|_| {
                Command::new("true")
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

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn starts(pg: &TestPostgres, n: usize) {
    let url = pg.fresh_database(&format!("bench_starts_{n}"));
    let yaml = format!(
        "id: once\nmax_concurrency: {}\noverlap: queue\nmax_queued: 100000\ntasks:\n  - {{id: t, command: 'true'}}\n",
        PER_NODE * n
    );
    let engines = nodes(&url, n, &[job(&yaml)]).await;
    let store = engines[0].store().clone();
    let before = commits(&url).await;
    let start = Instant::now();
    let mut triggers = Vec::new();
    for i in 0..RUNS {
        let engine = engines[i % n].clone();
        triggers.push(tokio::spawn(async move {
            engine
                .trigger("once", Default::default(), false)
                .await
                .expect("trigger")
        }));
    }
    for t in triggers {
        t.await.expect("trigger");
    }
    let runs = loop {
        let runs = store
            .list_runs(
                Some("once"),
                RunPage {
                    limit: RUNS + 1,
                    ..Default::default()
                },
            )
            .await
            .expect("runs");
        if runs.len() == RUNS && runs.iter().all(|r| r.status.is_terminal()) {
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let took = start.elapsed();
    let after = commits(&url).await;
    let failed = runs
        .iter()
        .filter(|r| r.status != RunStatus::Succeeded)
        .count();
    let mut latency: Vec<f64> = runs
        .iter()
        .filter_map(|r| Some((r.started_at? - r.created_at).num_microseconds()? as f64 / 1e3))
        .collect();
    latency.sort_by(f64::total_cmp);
    let floor = tokio::task::spawn_blocking(move || raw(RUNS, PER_NODE * n))
        .await
        .expect("raw");
    println!(
        "{n} node(s): {RUNS} runs in {:>7.1} ms = {:>6.0} starts/s   raw {:>6.1} ms ({:.2}x)   claim p50 {:>6.2} ms p99 {:>7.2} ms   {:.1} write transactions/run   {failed} not succeeded",
        took.as_secs_f64() * 1e3,
        RUNS as f64 / took.as_secs_f64(),
        floor.as_secs_f64() * 1e3,
        took.as_secs_f64() / floor.as_secs_f64(),
        percentile(&latency, 0.5),
        percentile(&latency, 0.99),
        (after - before) as f64 / RUNS as f64,
    );
    for engine in engines {
        engine.shutdown(Duration::from_secs(5)).await;
    }
}

/// One run at a time (nothing queued ahead): queued → running is the claim itself;
/// and what one run costs the database.
async fn claim_latency(pg: &TestPostgres, n: usize) {
    const ONE_BY_ONE: usize = 60;
    let url = pg.fresh_database(&format!("bench_claim_{n}"));
    let engines = nodes(
        &url,
        n,
        &[job("id: one\ntasks:\n  - {id: t, command: 'true'}\n")],
    )
    .await;
    let before = commits(&url).await;
    let mut latency = Vec::new();
    for i in 0..ONE_BY_ONE {
        let engine = &engines[i % n];
        let mut events = engine.subscribe_with(petit_server::events::Logs::None);
        let run = engine
            .trigger("one", Default::default(), false)
            .await
            .expect("trigger");
        let ended = loop {
            let event = events.recv().await.expect("events");
            if let Some(r) = event.run() {
                if r.id == run.id && r.status.is_terminal() {
                    break r.clone();
                }
            }
        };
        let started = ended.started_at.expect("started");
        latency.push((started - ended.created_at).num_microseconds().unwrap_or(0) as f64 / 1e3);
    }
    let after = commits(&url).await;
    latency.sort_by(f64::total_cmp);
    println!(
        "{n} node(s), one run at a time: claim (queued -> running) p50 {:.2} ms p99 {:.2} ms   {:.1} write transactions/run",
        percentile(&latency, 0.5),
        percentile(&latency, 0.99),
        (after - before) as f64 / ONE_BY_ONE as f64,
    );
    for engine in engines {
        engine.shutdown(Duration::from_secs(5)).await;
    }
}

async fn fires(pg: &TestPostgres) {
    const JOBS: usize = 50;
    const SECONDS: u64 = 5;
    let url = pg.fresh_database("bench_fires");
    let jobs: Vec<JobDef> = (0..JOBS)
        .map(|i| {
            job(&format!(
                "id: tick{i}\nschedule: '@every 1s'\ntasks:\n  - {{id: t, command: 'true'}}\n"
            ))
        })
        .collect();
    let engines = nodes(&url, 3, &jobs).await;
    tokio::time::sleep(Duration::from_secs(SECONDS)).await;
    for engine in &engines {
        engine.pause().await.expect("pause");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let runs = engines[0]
        .store()
        .list_runs(
            None,
            RunPage {
                limit: 100_000,
                ..Default::default()
            },
        )
        .await
        .expect("runs");
    let mut instants = std::collections::HashMap::new();
    let mut late: Vec<f64> = Vec::new();
    for run in &runs {
        *instants
            .entry((run.job_id.clone(), run.scheduled_for))
            .or_insert(0usize) += 1;
        if let (Some(at), Some(started)) = (run.scheduled_for, run.started_at) {
            late.push((started - at).num_microseconds().unwrap_or(0) as f64 / 1e3);
        }
    }
    late.sort_by(f64::total_cmp);
    let duplicated = instants.values().filter(|&&n| n > 1).count();
    println!(
        "3 nodes, {JOBS} every-second jobs for {SECONDS} s: {} fires, {} runs, {duplicated} fires with more than one run; start after the fire instant p50 {:.2} ms p99 {:.2} ms",
        instants.len(),
        runs.len(),
        percentile(&late, 0.5),
        percentile(&late, 0.99),
    );
    for engine in engines {
        engine.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::main]
async fn main() {
    let Some(pg) = TestPostgres::shared() else {
        println!(
            "cluster bench skipped: no PostgreSQL server binaries (or PETIT_TEST_POSTGRES_URL)"
        );
        return;
    };
    println!(
        "cluster on PostgreSQL: {RUNS} manual runs of one `true` task, {PER_NODE} at a time per node; raw = the same processes spawned directly, {PER_NODE} per node at a time"
    );
    for n in 1..=3 {
        starts(pg, n).await;
    }
    for n in 1..=3 {
        claim_latency(pg, n).await;
    }
    fires(pg).await;
}
