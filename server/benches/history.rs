//! History at scale: a release petitd on a SQLite database holding 1,000,000 task runs,
//! and the latency of the reads a dashboard and `petitctl` make of it.
//!
//! The database: three jobs of five tasks with 66,600 finished runs each (999,000 task
//! runs) and one run of a 1,000-task job. It is written with raw SQL (one transaction,
//! prepared statements, the crate's own status and time forms) into a schema made by
//! `SqliteStore::open`, the store petitd uses: the store API has no bulk insert, and a
//! million rows one `create_run` at a time would take minutes. The job files are on
//! disk too (no schedule, so nothing fires during the bench).
//!
//! Then petitd starts on it (start-up to a SERVING health answer is timed, three times),
//! and each call is made `HISTORY_BENCH_CALLS` times (default 2,000), sequentially, from
//! one client on one connection; each line gives p50 and p99. The calls: `GetRun` of a
//! five-task run, `ListTaskRuns` of it, the first page of `ListJobRuns` (50 runs), page
//! 500 of 50 (its token found by following `next_page_token` from the first page),
//! `ListTaskRuns` of the 1,000-task run, and over REST the deep page and the 1,000
//! tasks. The floor of each transport is its health call on the same daemon
//! (`GetHealth`, `GET /api/health`), measured in the same run.
//!
//! `PETITD=/path/to/petitd` measures another build (a saved binary of an older commit)
//! on the same database. Rows go to `make bench`'s summary table (section `history`).
//! Nothing here asserts.

#[path = "support/table.rs"]
mod table;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use petit_proto::v1::job_service_client::JobServiceClient;
use petit_proto::v1::run_service_client::RunServiceClient;
use petit_proto::v1::scheduler_service_client::SchedulerServiceClient;
use petit_proto::v1::{GetHealthRequest, GetRunRequest, ListJobRunsRequest, ListTaskRunsRequest};
use petit_server::core::{RunStatus, TaskStatus, TriggerReason};
use petit_server::store::{SqliteStore, StoreOptions};
use tonic::transport::Channel;

/// Jobs with a long history, their tasks, and runs each: 3 × 5 × 66,600 = 999,000.
const JOBS: usize = 3;
const TASKS: usize = 5;
const RUNS_PER_JOB: usize = 66_600;
/// The one run of the wide job: the last 1,000 of the million.
const WIDE_TASKS: usize = 1_000;
/// The deep page: page 500 of 50.
const PAGE_SIZE: u32 = 50;
const DEEP_PAGE: usize = 500;

fn job_id(j: usize) -> String {
    format!("history_{j}")
}

fn task_id(t: usize) -> String {
    format!("step_{t:04}")
}

fn job_yaml(id: &str, tasks: usize, chain: bool) -> String {
    let mut yaml = format!("id: {id}\nname: Job {id}\ntasks:\n");
    for t in 0..tasks {
        yaml.push_str(&format!("  - id: {}\n    command: \"true\"\n", task_id(t)));
        if chain && t > 0 {
            yaml.push_str(&format!("    depends_on: [{}]\n", task_id(t - 1)));
        }
    }
    yaml
}

fn sql_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// What the bench reads back: a five-task run, the wide run, and the job of the deep page.
struct History {
    some_run: String,
    wide_run: String,
    job: String,
}

/// Writes the history into `db` (schema by the store, rows by raw SQL).
fn build(db: &Path) -> History {
    drop(SqliteStore::open(db, StoreOptions::default()).expect("create the schema"));
    let mut conn = rusqlite::Connection::open(db).expect("open the database");
    conn.pragma_update(None, "synchronous", "OFF")
        .expect("pragma");
    let tx = conn.transaction().expect("transaction");
    let mut some_run = String::new();
    let wide_run;
    {
        let mut run = tx
            .prepare(
                r#"INSERT INTO runs (id, job_id, status, "trigger", params, created_at,
                    started_at, ended_at, error, triggered_by, scheduled_for, definition, retry_of)
                   VALUES (?1, ?2, ?3, ?4, '{}', ?5, ?5, ?6, NULL, 'bench', NULL, NULL, NULL)"#,
            )
            .expect("prepare");
        let mut task = tx
            .prepare(
                "INSERT INTO task_runs (run_id, task_id, ordinal, status, attempts, exit_code,
                    started_at, ended_at, error, outputs)
                 VALUES (?1, ?2, ?3, ?4, 1, 0, ?5, ?6, NULL, '{}')",
            )
            .expect("prepare");
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let mut insert = |job: &str, at: DateTime<Utc>, tasks: usize| -> String {
            let id = uuid::Uuid::now_v7().to_string();
            let (created, ended) = (sql_time(at), sql_time(at + chrono::Duration::seconds(3)));
            run.execute(rusqlite::params![
                id,
                job,
                RunStatus::Succeeded.as_str(),
                TriggerReason::Manual.as_str(),
                created,
                ended
            ])
            .expect("insert run");
            for t in 0..tasks {
                task.execute(rusqlite::params![
                    id,
                    task_id(t),
                    t,
                    TaskStatus::Succeeded.as_str(),
                    created,
                    ended
                ])
                .expect("insert task run");
            }
            id
        };
        // Interleaved, as real runs of several jobs are: one run of each job a minute.
        for r in 0..RUNS_PER_JOB {
            for j in 0..JOBS {
                let at = start + chrono::Duration::seconds((r * JOBS + j) as i64 * 20);
                let id = insert(&job_id(j), at, TASKS);
                if r == RUNS_PER_JOB / 2 && j == 0 {
                    some_run = id;
                }
            }
        }
        let at = start + chrono::Duration::seconds((RUNS_PER_JOB * JOBS) as i64 * 20);
        wide_run = insert("history_wide", at, WIDE_TASKS);
    }
    tx.commit().expect("commit");
    History {
        some_run,
        wide_run,
        job: job_id(0),
    }
}

/// The petitd under test: this build's, or `PETITD` (a saved binary of another commit,
/// for a before/after).
fn petitd() -> PathBuf {
    std::env::var_os("PETITD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_petitd")))
}

struct Daemon {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts petitd on `dir`'s database and job files; returns it once its health
    /// answers SERVING, with the time that took.
    async fn start(dir: &Path, run: usize) -> (Daemon, Duration) {
        let log = dir.join(format!("petitd-{run}.log"));
        let started = Instant::now();
        let child = Command::new(petitd())
            .arg("--jobs")
            .arg(dir.join("jobs"))
            .arg("--db")
            .arg(dir.join("petit.db"))
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn petitd");
        let mut daemon = Daemon {
            child,
            addr: String::new(),
            log,
        };
        let deadline = started + Duration::from_secs(120);
        while daemon.addr.is_empty() {
            let text = std::fs::read_to_string(&daemon.log).unwrap_or_default();
            if let Some(addr) = text
                .lines()
                .find(|l| l.contains("listening (gRPC"))
                .and_then(|l| l.split_once("addr="))
                .and_then(|(_, rest)| rest.split_whitespace().next())
            {
                daemon.addr = addr.to_string();
                break;
            }
            assert!(Instant::now() < deadline, "petitd did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut health = SchedulerServiceClient::new(daemon.channel().await);
        loop {
            if let Ok(answer) = health.get_health(GetHealthRequest {}).await {
                if answer.into_inner().status == "SERVING" {
                    return (daemon, started.elapsed());
                }
            }
            assert!(Instant::now() < deadline, "petitd never became healthy");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }
}

/// A minimal HTTP/1.1 keep-alive client: one connection, one request at a time, so a
/// REST figure is petitd's work plus one round trip, not a client library's.
struct Http {
    reader: BufReader<TcpStream>,
    host: String,
}

impl Http {
    fn connect(addr: &str) -> Http {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Http {
            reader: BufReader::new(stream),
            host: addr.to_string(),
        }
    }

    /// GETs `path`; returns the body's length (panics on a status other than 200).
    fn get(&mut self, path: &str) -> usize {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.reader
            .get_mut()
            .write_all(request.as_bytes())
            .expect("send");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        assert!(line.starts_with("HTTP/1.1 200"), "GET {path}: {line}");
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("content-length");
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("body");
        length
    }
}

/// p50 and p99 of `times`.
fn percentiles(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    (at(0.50), at(0.99))
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// Times `calls` sequential calls of `call` (after a tenth as many to warm up).
async fn time<F, Fut>(calls: usize, mut call: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..calls / 10 {
        call().await;
    }
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        call().await;
        times.push(started.elapsed());
    }
    percentiles(times)
}

fn time_blocking(calls: usize, mut call: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..calls / 10 {
        call();
    }
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        call();
        times.push(started.elapsed());
    }
    percentiles(times)
}

/// Prints one figure and records its row; `floor` is the transport's health call.
fn report(
    figure: &str,
    (p50, p99): (Duration, Duration),
    (floor50, floor99): (Duration, Duration),
    target: &str,
) {
    println!(
        "  {figure:<44} p50 {:>8}  p99 {:>8}   (health p50 {}, p99 {})",
        us(p50),
        us(p99),
        us(floor50),
        us(floor99)
    );
    table::record(table::Row {
        section: "history",
        figure,
        petit: format!("p50 {} / p99 {}", table::ms(p50), table::ms(p99)),
        raw: format!("p99 {}", table::ms(floor99)),
        ratio: table::ratio(p99.as_secs_f64(), floor99.as_secs_f64()),
        target,
        original: "",
    });
}

#[tokio::main]
async fn main() {
    let calls: usize = std::env::var("HISTORY_BENCH_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs = dir.path().join("jobs");
    std::fs::create_dir_all(&jobs).expect("jobs dir");
    for j in 0..JOBS {
        let id = job_id(j);
        std::fs::write(jobs.join(format!("{id}.yaml")), job_yaml(&id, TASKS, true)).expect("job");
    }
    let wide = job_yaml("history_wide", WIDE_TASKS, false);
    std::fs::write(jobs.join("history_wide.yaml"), wide).expect("job");

    let started = Instant::now();
    let history = build(&dir.path().join("petit.db"));
    let size = std::fs::metadata(dir.path().join("petit.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "history: {} task runs in {} runs written in {:.1} s ({:.0} MiB), {calls} calls each",
        JOBS * TASKS * RUNS_PER_JOB + WIDE_TASKS,
        JOBS * RUNS_PER_JOB + 1,
        started.elapsed().as_secs_f64(),
        size as f64 / (1 << 20) as f64
    );

    let mut startups = Vec::new();
    for run in 0..3 {
        let (daemon, took) = Daemon::start(dir.path(), run).await;
        startups.push(took);
        drop(daemon);
    }
    startups.sort();
    let startup = startups[1];
    println!(
        "  start-up to SERVING health (median of 3)     {}  (all: {})",
        table::ms(startup),
        startups
            .iter()
            .map(|d| table::ms(*d))
            .collect::<Vec<_>>()
            .join(", ")
    );
    table::record(table::Row {
        section: "history",
        figure: "start-up to healthy, 1M task runs",
        petit: table::ms(startup),
        raw: String::new(),
        ratio: String::new(),
        target: "",
        original: "",
    });

    let (daemon, _) = Daemon::start(dir.path(), 3).await;
    let channel = daemon.channel().await;
    let mut health = SchedulerServiceClient::new(channel.clone());
    let runs = RunServiceClient::new(channel.clone());
    let jobs = JobServiceClient::new(channel);

    // The deep page's token, found as a client would: page after page.
    let mut token = String::new();
    for _ in 1..DEEP_PAGE {
        token = jobs
            .clone()
            .list_job_runs(ListJobRunsRequest {
                job_id: history.job.clone(),
                page_size: PAGE_SIZE,
                page_token: token,
            })
            .await
            .expect("list runs")
            .into_inner()
            .next_page_token;
        assert!(!token.is_empty(), "history ended before page {DEEP_PAGE}");
    }

    println!("gRPC (one client, sequential):");
    let floor = time(calls, || {
        let mut health = health.clone();
        async move {
            health
                .get_health(GetHealthRequest {})
                .await
                .expect("health");
        }
    })
    .await;
    report("GetHealth (the floor)", floor, floor, "");
    health
        .get_health(GetHealthRequest {})
        .await
        .expect("health");

    let get_run = |run_id: String| {
        let mut runs = runs.clone();
        async move {
            let run = runs
                .get_run(GetRunRequest { run_id })
                .await
                .expect("get run");
            assert!(run.into_inner().run.is_some());
        }
    };
    let figures = time(calls, || get_run(history.some_run.clone())).await;
    report("GetRun", figures, floor, "p99 ≤ 2 ms");

    let task_runs = |run_id: String, want: usize| {
        let mut runs = runs.clone();
        async move {
            let tasks = runs
                .list_task_runs(ListTaskRunsRequest { run_id })
                .await
                .expect("list task runs")
                .into_inner()
                .task_runs;
            assert_eq!(tasks.len(), want);
        }
    };
    let figures = time(calls, || task_runs(history.some_run.clone(), TASKS)).await;
    report("ListTaskRuns, 5 tasks", figures, floor, "p99 ≤ 2 ms");

    let page = |page_token: String| {
        let mut jobs = jobs.clone();
        let job_id = history.job.clone();
        async move {
            let runs = jobs
                .list_job_runs(ListJobRunsRequest {
                    job_id,
                    page_size: PAGE_SIZE,
                    page_token,
                })
                .await
                .expect("list runs")
                .into_inner()
                .runs;
            assert_eq!(runs.len(), PAGE_SIZE as usize);
        }
    };
    let figures = time(calls, || page(String::new())).await;
    report(
        "ListJobRuns, first page of 50",
        figures,
        floor,
        "p99 ≤ 2 ms",
    );
    let figures = time(calls, || page(token.clone())).await;
    report("ListJobRuns, page 500 of 50", figures, floor, "p99 ≤ 2 ms");

    let figures = time(calls, || task_runs(history.wide_run.clone(), WIDE_TASKS)).await;
    report("ListTaskRuns, 1,000 tasks", figures, floor, "p99 ≤ 10 ms");

    println!("REST (one keep-alive connection, sequential):");
    let mut http = Http::connect(&daemon.addr);
    let floor = time_blocking(calls, || {
        http.get("/api/health");
    });
    report("GET /api/health (the floor)", floor, floor, "");
    let deep = format!(
        "/api/jobs/{}/runs?pageSize={PAGE_SIZE}&pageToken={token}",
        history.job
    );
    let figures = time_blocking(calls, || {
        http.get(&deep);
    });
    report("GET …/runs, page 500 of 50", figures, floor, "p99 ≤ 2 ms");
    let tasks = format!("/api/runs/{}/tasks", history.wide_run);
    let figures = time_blocking(calls, || {
        http.get(&tasks);
    });
    report(
        "GET /api/runs/{id}/tasks, 1,000 tasks",
        figures,
        floor,
        "p99 ≤ 10 ms",
    );
    println!("  (petitd log: {})", daemon.log.display());
}
