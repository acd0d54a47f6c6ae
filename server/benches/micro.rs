//! Micro-benchmarks of the hot pure parts, with criterion, and their instruction counts
//! under callgrind (a quiet measure on a shared machine):
//!
//! - `cron`: `Schedule::next_after`, as a job's timer is armed: every 5 minutes in UTC,
//!   and daily at 02:30 in Europe/Paris (a zone with DST);
//! - `ready`: a run's whole walk through `Readiness` (which tasks may start as others
//!   settle) of a 1,000-task chain, a wide DAG (one root, 998 tasks beside each other,
//!   one sink), and a 20,000-task chain (linear: 20 times the 1,000);
//! - `json`: a `ListJobsResponse` of 10 and 50 jobs (three tasks, a schedule with five
//!   next fires, a last run) encoded by `petit_proto::json` as the REST path writes it
//!   (with the previous reply's size as capacity); and for 50 jobs the whole pure part
//!   of `GET /api/jobs`: the reply built by `convert::job`, encoded, dropped;
//! - `yaml`: `config::parse_job` of a 20,000-task chain (1 MB), against serde_yaml
//!   reading the same text into a `serde_yaml::Value` (the raw limit).
//!
//! Then, unless `MICRO_BENCH_CALLGRIND=0`, the binary runs itself under `valgrind
//! --tool=callgrind` (`--callgrind CASE N`: one case N times, nothing else) for N and 2N
//! and reports instructions per operation as the difference over N, so start-up and
//! set-up cancel out. Without valgrind that part is skipped, loudly.
//!
//! Rows go to `make bench`'s summary table (section `micro`): criterion's median time
//! and the instructions per operation. Nothing here asserts.

#[path = "support/table.rs"]
mod table;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, TimeZone, Utc};
use criterion::Criterion;
use petit_proto::json::to_json;
use petit_proto::v1 as pb;
use petit_server::api::grpc::convert;
use petit_server::config::{parse_job, GlobalConfig};
use petit_server::core::{Dag, JobDef, Readiness, Run, RunStatus, Schedule, TriggerReason};

/// One measured case: its name (`group/function`), what it does once, and the raw
/// limit it compares with, if any.
struct Case {
    name: &'static str,
    raw: Option<&'static str>,
    op: Box<dyn FnMut()>,
}

fn instant() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 28, 12, 34, 56).unwrap()
}

fn cron_case(expr: &'static str, tz: chrono_tz::Tz) -> Box<dyn FnMut()> {
    let schedule = Schedule::parse(expr, tz).expect("schedule");
    let mut at = instant();
    Box::new(move || {
        // Walk forwards, as a timer re-arms itself, across the DST change of the 29th;
        // back to the start after a year so the walk stays in one range.
        at = schedule.next_after(black_box(at)).expect("a next fire");
        if at > instant() + chrono::Duration::days(365) {
            at = instant();
        }
    })
}

fn chain(n: usize) -> Dag {
    let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    let tasks: Vec<(&str, Vec<&str>)> = (0..n)
        .map(|i| {
            let deps = if i == 0 {
                vec![]
            } else {
                vec![names[i - 1].as_str()]
            };
            (names[i].as_str(), deps)
        })
        .collect();
    Dag::build(&tasks).expect("a chain")
}

fn wide(n: usize) -> Dag {
    let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    let middle: Vec<&str> = names[1..n - 1].iter().map(String::as_str).collect();
    let tasks: Vec<(&str, Vec<&str>)> = (0..n)
        .map(|i| {
            let deps = match i {
                0 => vec![],
                i if i == n - 1 => middle.clone(),
                _ => vec![names[0].as_str()],
            };
            (names[i].as_str(), deps)
        })
        .collect();
    Dag::build(&tasks).expect("a wide DAG")
}

/// A run's whole walk of `dag` as `exec/walk.rs` makes it: the readiness set up, then
/// each ready task handed out and settled, until none is left.
fn walk_case(dag: Dag) -> Box<dyn FnMut()> {
    Box::new(move || {
        let mut readiness = Readiness::new(black_box(&dag), |_| false);
        let mut walked = 0;
        while let Some(i) = readiness.next(&dag) {
            readiness.settle(&dag, i);
            walked += 1;
        }
        assert_eq!(walked, dag.len());
    })
}

fn job_yaml(i: usize) -> String {
    format!(
        r#"id: job_{i:04}
name: Job {i}
description: A generated job for the micro bench, with a schedule and a three-task chain.
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

/// `jobs` generated jobs as the API shows them: definition, next fires, last run.
fn job_views(jobs: usize) -> Vec<(JobDef, Vec<DateTime<Utc>>, Run)> {
    let global = GlobalConfig::default();
    let now = instant();
    (0..jobs)
        .map(|i| {
            let def = parse_job(&job_yaml(i), Path::new("job.yaml"), &global).expect("job");
            let fires = def
                .schedule
                .as_ref()
                .map(|s| s.upcoming(now, 5))
                .unwrap_or_default();
            let run = Run {
                id: uuid::Uuid::now_v7().to_string(),
                job_id: def.id.clone(),
                status: RunStatus::Succeeded,
                trigger: TriggerReason::Schedule,
                params: Default::default(),
                created_at: now,
                started_at: Some(now),
                ended_at: Some(now + chrono::Duration::seconds(2)),
                error: None,
                triggered_by: None,
                scheduled_for: Some(now),
                definition: Some("a1b2c3d4e5f6".into()),
                retry_of: None,
            };
            (def, fires, run)
        })
        .collect()
}

fn list_jobs(views: &[(JobDef, Vec<DateTime<Utc>>, Run)]) -> pb::ListJobsResponse {
    pb::ListJobsResponse {
        jobs: views
            .iter()
            .map(|(def, fires, run)| convert::job(def, fires, Some(run), false, instant()))
            .collect(),
        next_page_token: String::new(),
    }
}

/// The reply's JSON encoding alone, with the previous reply's size as capacity (as
/// the REST path does).
fn json_case(jobs: usize) -> Box<dyn FnMut()> {
    let reply = list_jobs(&job_views(jobs));
    let mut last_size = 0;
    Box::new(move || {
        let body = to_json(black_box(&reply), last_size * 9 / 8 + 128).expect("json");
        last_size = body.len();
        black_box(body);
    })
}

/// The whole pure part of `GET /api/jobs`: the reply built from the jobs, encoded,
/// dropped.
fn convert_and_json_case(jobs: usize) -> Box<dyn FnMut()> {
    let views = job_views(jobs);
    let mut last_size = 0;
    Box::new(move || {
        let reply = list_jobs(black_box(&views));
        let body = to_json(&reply, last_size * 9 / 8 + 128).expect("json");
        last_size = body.len();
        black_box(body);
    })
}

/// A 20,000-task chain, written as the engine bench writes it (1 MB).
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

fn cases() -> Vec<Case> {
    let yaml = chain_yaml(20_000);
    let raw_yaml = yaml.clone();
    let global = GlobalConfig::default();
    vec![
        Case {
            name: "cron/next_after_every_5_min_utc",
            raw: None,
            op: cron_case("0 */5 * * * *", chrono_tz::UTC),
        },
        Case {
            name: "cron/next_after_daily_paris",
            raw: None,
            op: cron_case("0 30 2 * * *", chrono_tz::Europe::Paris),
        },
        Case {
            name: "ready/chain_1000_whole_walk",
            raw: None,
            op: walk_case(chain(1_000)),
        },
        Case {
            name: "ready/wide_1000_whole_walk",
            raw: None,
            op: walk_case(wide(1_000)),
        },
        Case {
            name: "ready/chain_20000_whole_walk",
            raw: None,
            op: walk_case(chain(20_000)),
        },
        Case {
            name: "json/list_jobs_10",
            raw: None,
            op: json_case(10),
        },
        Case {
            name: "json/list_jobs_50",
            raw: None,
            op: json_case(50),
        },
        Case {
            name: "json/convert_and_encode_list_jobs_50",
            raw: None,
            op: convert_and_json_case(50),
        },
        Case {
            name: "yaml/serde_yaml_value_20000",
            raw: None,
            op: Box::new(move || {
                let value: serde_yaml::Value =
                    serde_yaml::from_str(black_box(&raw_yaml)).expect("yaml");
                black_box(value);
            }),
        },
        Case {
            name: "yaml/load_chain_20000",
            raw: Some("yaml/serde_yaml_value_20000"),
            op: Box::new(move || {
                let job = parse_job(black_box(&yaml), Path::new("chain.yaml"), &global)
                    .expect("the chain loads");
                assert_eq!(job.tasks.len(), 20_000);
            }),
        },
    ]
}

/// Where criterion keeps its figures (read back for the summary table).
fn criterion_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion")
}

/// Criterion's median for `name`, in nanoseconds.
fn median_ns(name: &str) -> Option<f64> {
    let file = criterion_dir().join(name).join("new/estimates.json");
    let text = std::fs::read_to_string(file).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["median"]["point_estimate"].as_f64()
}

fn duration_text(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Runs one case `n` times and nothing else (the body of a callgrind run).
fn callgrind_body(name: &str, n: usize) {
    let mut case = cases()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name}"));
    for _ in 0..n {
        (case.op)();
    }
}

/// How many times a case runs under callgrind (N; the second run makes 2N).
fn callgrind_runs(name: &str) -> usize {
    match name.split('/').next() {
        Some("yaml") => 1,
        Some("ready") if name.contains("20000") => 5,
        Some("ready") | Some("json") => 200,
        _ => 2_000,
    }
}

/// Instructions of one `--callgrind` run of `name`, `n` times.
fn instructions(name: &str, n: usize, dir: &Path) -> Option<u64> {
    let out = dir.join(format!("{}-{n}.out", name.replace('/', "_")));
    let exe = std::env::current_exe().ok()?;
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&exe)
        .args(["--callgrind", name, &n.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let text = std::fs::read_to_string(&out).ok()?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn have_valgrind() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--callgrind") {
        let name = args.get(at + 1).expect("--callgrind CASE N");
        let n = args
            .get(at + 2)
            .and_then(|n| n.parse().ok())
            .expect("--callgrind CASE N");
        callgrind_body(name, n);
        return;
    }

    let mut criterion = Criterion::default()
        .output_directory(&criterion_dir())
        .configure_from_args();
    for mut case in cases() {
        let (group, function) = case.name.split_once('/').expect("group/function");
        let mut group = criterion.benchmark_group(group);
        if case.name.starts_with("yaml/") {
            group.sample_size(10);
        }
        group.bench_function(function, |b| b.iter(&mut case.op));
        group.finish();
    }
    criterion.final_summary();

    let callgrind = std::env::var("MICRO_BENCH_CALLGRIND").map_or(true, |v| v != "0");
    let valgrind = callgrind && have_valgrind();
    if callgrind && !valgrind {
        println!("micro: SKIPPED instruction counts: valgrind is not installed");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut counts = std::collections::HashMap::new();
    println!("micro (criterion median; instructions per op under callgrind, (2N - N) / N):");
    for case in cases() {
        let ns = median_ns(case.name);
        let per_op = valgrind
            .then(|| {
                let n = callgrind_runs(case.name);
                let once = instructions(case.name, n, dir.path())?;
                let twice = instructions(case.name, 2 * n, dir.path())?;
                Some(twice.saturating_sub(once) as f64 / n as f64)
            })
            .flatten();
        if let Some(per_op) = per_op {
            counts.insert(case.name, per_op);
        }
        let (raw_ns, raw_per_op) = match case.raw {
            Some(raw) => (median_ns(raw), counts.get(raw).copied()),
            None => (None, None),
        };
        let time = ns.map(duration_text).unwrap_or_else(|| "—".into());
        let instr = per_op.map_or_else(|| "—".into(), |i| format!("{i:.0} instr"));
        let mut line = format!("  {:<36} {time:>10}  {instr:>16}", case.name);
        if let (Some(raw), Some(ns), Some(raw_ns)) = (case.raw, ns, raw_ns) {
            line += &format!("   {:.2}× {raw} (time)", ns / raw_ns);
            if let (Some(i), Some(r)) = (per_op, raw_per_op) {
                line += &format!(", {:.2}× (instructions)", i / r);
            }
        }
        println!("{line}");
        table::record(table::Row {
            section: "micro",
            figure: case.name,
            petit: if per_op.is_some() {
                format!("{time} / {instr}")
            } else {
                time.clone()
            },
            raw: match (raw_ns, raw_per_op) {
                (Some(t), Some(i)) => format!("{} / {i:.0} instr", duration_text(t)),
                (Some(t), None) => duration_text(t),
                _ => String::new(),
            },
            ratio: match (ns, raw_ns) {
                (Some(ns), Some(raw)) => table::ratio(ns, raw),
                _ => String::new(),
            },
            target: if case.raw.is_some() { "≤ 1.2×" } else { "" },
            original: "",
        });
    }
}
