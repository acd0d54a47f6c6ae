//! REST and gRPC unary calls under load, against a release petitd serving generated jobs
//! (each with a daily schedule, three tasks and one finished run): `GET /api/health` (the
//! floor: the cost of an HTTP round trip through petitd), `GET /api/jobs` with 10 jobs,
//! `GET /api/jobs/{id}` and `GET /api/jobs?pageSize=50` with 1,000, and the same four
//! calls over gRPC. `wrk` drives REST, `h2load` gRPC (`apt-get install wrk
//! nghttp2-client`); a missing tool skips its half.
//!
//! Each line gives requests per second, the 99th percentile latency, the ratio to the
//! floor of the same daemon and transport, and petitd's CPU time (utime + stime from
//! `/proc/PID/stat`) per request over the load: the medians of `REST_BENCH_ROUNDS`
//! loads (default 3) of `REST_BENCH_SECONDS` each (default 5). The machine is shared:
//! compare ratios and CPU per request, not raw rates. Nothing here asserts.
//!
//! `PETITD=/old/petitd:/new/petitd` compares builds (a saved binary of an older commit):
//! each gets its own daemons, and their loads take turns, so that both see the same
//! machine. The jobs fire at 02:00 UTC only, so that no fire lands inside a load.
//!
//! `PETIT_STACK_FLOOR` (set by `make bench`) names the `stack_floor` example: the crates
//! petitd is built from answering health with nothing of Petit (`GET /api/health`,
//! `grpc.health.v1.Health/Check`). Its loads take turns with the floor's, and the
//! floor's rows compare petitd's health call with it: what this machine and these
//! crates allow any call at all.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use petit_proto::v1::job_service_client::JobServiceClient;
use petit_proto::v1::run_service_client::RunServiceClient;
use petit_proto::v1::{
    GetHealthRequest, GetJobRequest, GetRunRequest, ListJobsRequest, TriggerJobRequest,
};
use prost::Message;
use tonic::transport::Channel;

#[path = "support/table.rs"]
mod table;

/// wrk's and h2load's shape: 2 threads, 32 connections, one request at a time each.
const THREADS: u32 = 2;
const CONNECTIONS: u32 = 32;

/// The crates' floor's gRPC call: the standard health check, for the whole server.
const STACK_HEALTH: &str = "/grpc.health.v1.Health/Check";

fn job_yaml(id: &str) -> String {
    format!(
        r#"id: {id}
name: Job {id}
description: A generated job for the REST bench, with a schedule and a three-task chain.
schedule: "0 0 2 * * *"
max_concurrency: 1
config:
  batch_size: 100
tasks:
  - id: extract
    command: sh
    args: ["-c", "echo extracting $1", "extract", "${{config.batch_size}}"]
    environment:
      WORK_DIR: /tmp/petit-bench
    timeout: 1m
  - id: transform
    command: "true"
    depends_on: [extract]
    retry:
      max_attempts: 2
      delay_secs: 5
      condition: always
  - id: load
    command: "true"
    depends_on: [transform]
"#
    )
}

fn job_id(i: usize) -> String {
    format!("job_{i:04}")
}

struct Daemon {
    child: Child,
    binary: PathBuf,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// A petitd on a temp dir holding `jobs` generated jobs.
    fn start(petitd: &Path, jobs: usize) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let jobs_dir = dir.path().join("jobs");
        std::fs::create_dir_all(&jobs_dir).expect("jobs dir");
        for i in 0..jobs {
            let id = job_id(i);
            std::fs::write(jobs_dir.join(format!("{id}.yaml")), job_yaml(&id)).expect("job");
        }
        let log = dir.path().join("petitd.log");
        let child = Command::new(petitd)
            .arg("--jobs")
            .arg(&jobs_dir)
            .arg("--db")
            .arg(dir.path().join("petit.db"))
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn petitd");
        let mut daemon = Daemon {
            child,
            binary: petitd.to_path_buf(),
            addr: String::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let addr = text
                .lines()
                .find(|l| l.contains("listening (gRPC"))
                .and_then(|l| l.split_once("addr="))
                .and_then(|(_, rest)| rest.split_whitespace().next());
            if let Some(addr) = addr {
                daemon.addr = addr.to_string();
                return daemon;
            }
            assert!(Instant::now() < deadline, "petitd did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// utime + stime so far, in microseconds.
    fn cpu_us(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("/proc/PID/stat");
        // Fields after the `(comm)`, which may hold spaces: state is field 3, utime 14.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 =
            fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as f64;
        ticks * 1e6 / hz
    }

    /// Triggers every job once and waits until each run has ended, so that every job
    /// shows a finished last run.
    async fn run_every_job_once(&self, jobs: usize) {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let client = JobServiceClient::new(channel.clone());
        let triggers: Vec<_> = (0..jobs)
            .map(|i| {
                let mut client = client.clone();
                tokio::spawn(async move {
                    client
                        .trigger_job(TriggerJobRequest {
                            job_id: job_id(i),
                            ..Default::default()
                        })
                        .await
                        .expect("trigger")
                })
            })
            .collect();
        let mut pending = Vec::new();
        for trigger in triggers {
            let run = trigger.await.expect("trigger task").into_inner().run;
            pending.push(run.expect("a run").id);
        }
        let mut runs = RunServiceClient::new(channel);
        let deadline = Instant::now() + Duration::from_secs(300);
        while let Some(run_id) = pending.last() {
            let run = runs
                .get_run(GetRunRequest {
                    run_id: run_id.clone(),
                })
                .await
                .expect("get run")
                .into_inner()
                .run
                .expect("a run");
            if run.ended_at.is_some() {
                pending.pop();
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "runs did not end: {} left",
                pending.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One load's figures.
#[derive(Clone)]
struct Load {
    requests: f64,
    per_second: f64,
    p99_ms: f64,
    cpu_us_per_request: f64,
    /// Responses that were not 2xx (wrk) or failed (h2load): the figures are void.
    failed: u64,
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// `12.5us`, `3.1ms`, `1.2s` in milliseconds.
fn millis(text: &str) -> f64 {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(0));
    let number: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        _ => f64::NAN,
    }
}

fn wrk(daemon: &Daemon, path: &str, seconds: u64) -> Load {
    let before = daemon.cpu_us();
    let output = Command::new("wrk")
        .args([
            format!("-t{THREADS}"),
            format!("-c{CONNECTIONS}"),
            format!("-d{seconds}s"),
            "--latency".to_string(),
            format!("http://{}{path}", daemon.addr),
        ])
        .output()
        .expect("run wrk");
    let cpu = daemon.cpu_us() - before;
    let text = String::from_utf8_lossy(&output.stdout);
    let requests: f64 = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("wrk said:\n{text}"));
    let per_second = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(f64::NAN);
    let p99_ms = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| millis(v.trim()))
        .unwrap_or(f64::NAN);
    let failed = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    Load {
        requests,
        per_second,
        p99_ms,
        cpu_us_per_request: cpu / requests,
        failed,
    }
}

/// A gRPC unary call of `method` with `request`, driven by h2load for `seconds`.
fn h2load(daemon: &Daemon, method: &str, payload: &[u8], seconds: u64) -> Load {
    let dir = tempfile::tempdir().expect("temp dir");
    let body = dir.path().join("request.bin");
    let log = dir.path().join("requests.log");
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    std::fs::write(&body, frame).expect("request file");
    let before = daemon.cpu_us();
    let output = Command::new("h2load")
        .args([
            format!("-t{THREADS}"),
            format!("-c{CONNECTIONS}"),
            "-m1".to_string(),
            format!("-D{seconds}"),
            "-Hcontent-type: application/grpc".to_string(),
            "-Hte: trailers".to_string(),
        ])
        .arg("-d")
        .arg(&body)
        .arg(format!("--log-file={}", log.display()))
        .arg(format!("http://{}{method}", daemon.addr))
        .output()
        .expect("run h2load");
    let cpu = daemon.cpu_us() - before;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut latencies: Vec<u64> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.parse().ok())
        .collect();
    latencies.sort_unstable();
    let requests = latencies.len() as f64;
    let elapsed: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split_once("s,"))
        .and_then(|(s, _)| s.parse().ok())
        .unwrap_or_else(|| panic!("h2load said:\n{text}"));
    let failed = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .and_then(|l| l.split(", ").find(|p| p.ends_with(" failed")))
        .and_then(|p| p.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let p99_ms = latencies
        .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
        .map_or(f64::NAN, |&us| us as f64 / 1000.0);
    Load {
        requests,
        per_second: requests / elapsed,
        p99_ms,
        cpu_us_per_request: cpu / requests,
        failed,
    }
}

/// The median of each figure over rounds.
fn median(loads: &[Load]) -> Load {
    let mid = |f: fn(&Load) -> f64| {
        let mut values: Vec<f64> = loads.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Load {
        requests: mid(|l| l.requests),
        per_second: mid(|l| l.per_second),
        p99_ms: mid(|l| l.p99_ms),
        cpu_us_per_request: mid(|l| l.cpu_us_per_request),
        failed: loads.iter().map(|l| l.failed).sum(),
    }
}

fn report(transport: &str, what: &str, load: &Load, floor: &Load) {
    let failed = if load.failed > 0 {
        format!("  ({} FAILED: figures void)", load.failed)
    } else {
        String::new()
    };
    println!(
        "{transport:<5} {what:<44} {:>8.0} req/s  p99 {:>7.2} ms  {:>5.2}x floor  {:>7.1} µs CPU/req{failed}",
        load.per_second,
        load.p99_ms,
        load.per_second / floor.per_second,
        load.cpu_us_per_request,
    );
}

/// A summary-table row of the last build measured.
fn record(transport: &str, what: &str, case: &Case, load: &Load, floor: &Load, rest: bool) {
    record_against(transport, what, case, load, (floor, "health"), rest);
}

/// A summary-table row against `raw` (a load and what it was).
fn record_against(
    transport: &str,
    what: &str,
    case: &Case,
    load: &Load,
    raw: (&Load, &str),
    rest: bool,
) {
    let (floor, raw_what) = raw;
    let void = if load.failed > 0 {
        " (FAILED: void)"
    } else {
        ""
    };
    table::record(table::Row {
        section: "API",
        figure: &format!("{transport} {what}"),
        petit: format!(
            "{:.0} req/s, p99 {:.2} ms, {:.1} µs CPU{void}",
            load.per_second, load.p99_ms, load.cpu_us_per_request
        ),
        raw: format!("{:.0} req/s ({raw_what})", floor.per_second),
        ratio: table::ratio(load.per_second, floor.per_second),
        target: if rest { case.targets.0 } else { case.targets.1 },
        original: if rest { case.original } else { "—" },
    });
}

/// The size of a REST reply, to say what each case moves.
fn rest_bytes(daemon: &Daemon, path: &str) -> usize {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&daemon.addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        daemon.addr
    )
    .expect("request");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("reply");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 200"), "GET {path}: {text}");
    text.split_once("\r\n\r\n")
        .map_or(0, |(_, body)| body.len())
}

struct Case {
    what: String,
    rest_path: String,
    grpc_method: &'static str,
    grpc_request: Box<dyn Fn() -> Vec<u8>>,
    /// For the summary table: the issue's targets (REST, gRPC) and the original
    /// Petit's REST figure.
    targets: (&'static str, &'static str),
    original: &'static str,
}

/// Runs every case on every daemon (one per binary), `rounds` times, the daemons taking
/// turns, and reports the medians per binary; the first case is the floor.
/// `stack`: the crates' floor, loaded with the floor case in each round.
fn run_cases(
    daemons: &[Daemon],
    stack: Option<&Daemon>,
    cases: &[Case],
    seconds: u64,
    rounds: usize,
    tools: (bool, bool),
) {
    let (with_wrk, with_h2load) = tools;
    // stack_loads[transport]: the crates' floor, the rounds.
    let mut stack_loads = vec![Vec::new(); 2];
    for case in cases {
        println!(
            "      {} replies {} bytes of JSON",
            case.rest_path,
            rest_bytes(&daemons[0], &case.rest_path)
        );
    }
    // loads[transport][case][daemon]: the rounds.
    let mut loads = vec![vec![vec![Vec::new(); daemons.len()]; cases.len()]; 2];
    for _ in 0..rounds {
        for (c, case) in cases.iter().enumerate() {
            for (d, daemon) in daemons.iter().enumerate() {
                if with_wrk {
                    loads[0][c][d].push(wrk(daemon, &case.rest_path, seconds));
                }
                if with_h2load {
                    let request = (case.grpc_request)();
                    loads[1][c][d].push(h2load(daemon, case.grpc_method, &request, seconds));
                }
            }
            if let (0, Some(stack)) = (c, stack) {
                if with_wrk {
                    stack_loads[0].push(wrk(stack, "/api/health", seconds));
                }
                if with_h2load {
                    stack_loads[1].push(h2load(stack, STACK_HEALTH, &[], seconds));
                }
            }
        }
    }
    if let Some(stack) = stack {
        println!("    the crates alone: {}", stack.binary.display());
        for (t, transport) in ["REST", "gRPC"].into_iter().enumerate() {
            if !stack_loads[t].is_empty() {
                let load = median(&stack_loads[t]);
                let what = ["GET /api/health", "Health/Check"][t];
                report(transport, what, &load, &load);
            }
        }
    }
    for (d, daemon) in daemons.iter().enumerate() {
        println!("    petitd {}", daemon.binary.display());
        for (t, transport) in ["REST", "gRPC"].into_iter().enumerate() {
            if loads[t][0][d].is_empty() {
                continue;
            }
            let floor = median(&loads[t][0][d]);
            for (c, case) in cases.iter().enumerate() {
                let what = match t {
                    0 => format!("GET {}", case.what),
                    _ => format!(
                        "{} ({})",
                        case.grpc_method.rsplit('/').next().unwrap_or_default(),
                        case.what
                    ),
                };
                let load = median(&loads[t][c][d]);
                report(transport, &what, &load, &floor);
                if d + 1 == daemons.len() {
                    match (c, stack_loads[t].is_empty()) {
                        (0, false) => {
                            let stack = median(&stack_loads[t]);
                            let raw = (&stack, "its crates alone");
                            record_against(transport, &what, case, &load, raw, t == 0);
                        }
                        _ => record(transport, &what, case, &load, &floor, t == 0),
                    }
                }
            }
        }
    }
}

/// The builds to measure: `PETITD` (several, `:`-separated), else this one.
fn binaries() -> Vec<PathBuf> {
    match std::env::var_os("PETITD") {
        Some(list) => std::env::split_paths(&list).collect(),
        None => vec![PathBuf::from(env!("CARGO_BIN_EXE_petitd"))],
    }
}

/// One daemon per binary, each with `jobs` jobs that have run once.
async fn daemons(binaries: &[PathBuf], jobs: usize) -> Vec<Daemon> {
    let mut daemons = Vec::new();
    for binary in binaries {
        let daemon = Daemon::start(binary, jobs);
        daemon.run_every_job_once(jobs).await;
        daemons.push(daemon);
    }
    daemons
}

#[tokio::main]
async fn main() {
    let seconds = std::env::var("REST_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let tools = (have("wrk"), have("h2load"));
    if !tools.0 {
        println!("rest: wrk is not installed (apt-get install wrk): REST loads skipped");
    }
    if !tools.1 {
        println!(
            "rest: h2load is not installed (apt-get install nghttp2-client): gRPC loads skipped"
        );
    }
    let rounds = std::env::var("REST_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let binaries = binaries();
    println!(
        "rest: wrk / h2load -t{THREADS} -c{CONNECTIONS}, medians of {rounds} loads of {seconds} s"
    );
    let health = || GetHealthRequest {}.encode_to_vec();

    let stack =
        std::env::var_os("PETIT_STACK_FLOOR").map(|path| Daemon::start(Path::new(&path), 0));
    if stack.is_none() {
        println!("rest: PETIT_STACK_FLOOR unset (make bench sets it): the crates' floor skipped");
    }
    let small = daemons(&binaries, 10).await;
    let cases = [
        Case {
            what: "/api/health (floor)".into(),
            rest_path: "/api/health".into(),
            grpc_method: "/petit.v1.SchedulerService/GetHealth",
            grpc_request: Box::new(health),
            targets: ("the floor", "the floor"),
            original: "71,802 req/s",
        },
        Case {
            what: "/api/jobs (10 jobs)".into(),
            rest_path: "/api/jobs".into(),
            grpc_method: "/petit.v1.JobService/ListJobs",
            grpc_request: Box::new(|| ListJobsRequest::default().encode_to_vec()),
            targets: ("≥ 0.75×, p99 ≤ 2 ms", "≥ 50,000 req/s, p99 ≤ 2 ms"),
            original: "56,388 req/s = 0.79×, p99 2.2 ms",
        },
    ];
    run_cases(&small, stack.as_ref(), &cases, seconds, rounds, tools);
    drop(small);

    let large = daemons(&binaries, 1000).await;
    let one = job_id(500);
    let cases = [
        Case {
            what: "/api/health (floor, 1,000 jobs)".into(),
            rest_path: "/api/health".into(),
            grpc_method: "/petit.v1.SchedulerService/GetHealth",
            grpc_request: Box::new(health),
            targets: ("the floor", "the floor"),
            original: "—",
        },
        Case {
            what: "/api/jobs/{id} (1,000 jobs)".into(),
            rest_path: format!("/api/jobs/{one}"),
            grpc_method: "/petit.v1.JobService/GetJob",
            grpc_request: Box::new(move || {
                GetJobRequest {
                    job_id: job_id(500),
                }
                .encode_to_vec()
            }),
            targets: ("≥ 0.75×", "≥ 50,000 req/s, p99 ≤ 2 ms"),
            original: "79,191 req/s = 1.1×",
        },
        Case {
            what: "/api/jobs?pageSize=50 (1,000 jobs)".into(),
            rest_path: "/api/jobs?pageSize=50".into(),
            grpc_method: "/petit.v1.JobService/ListJobs",
            grpc_request: Box::new(|| {
                ListJobsRequest {
                    page_size: 50,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
            targets: ("≥ 3,770 req/s (10× 377)", "—"),
            original: "3,090 req/s (all 1,000)",
        },
    ];
    run_cases(&large, None, &cases, seconds, rounds, tools);
}
