//! petitd's resident memory while it serves the log of a task that printed 2,000,000
//! lines (`seq 2000000`): idle, after the run, and at the peak of and a few seconds
//! after one and six concurrent whole reads, paged as `petitctl logs` reads them over
//! gRPC and as plain REST calls of the default page. Each figure is printed beside the
//! idle baseline of the same run. Run with `make bench`; nothing here asserts.
//!
//! Peaks are exact: VmHWM after resetting it through `/proc/PID/clear_refs`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use petit_proto::v1::job_service_client::JobServiceClient;
use petit_proto::v1::run_service_client::RunServiceClient;
use petit_proto::v1::{GetRunRequest, GetTaskLogsRequest, RunStatus, TriggerJobRequest};
use tonic::transport::Channel;

const LINES: u64 = 2_000_000;
const READERS: usize = 6;
/// How long after a burst "after" is measured.
const SETTLE: Duration = Duration::from_secs(3);

const JOB: &str = r#"
id: big
name: Big
tasks:
  - id: count
    type: command
    command: seq
    args: ["2000000"]
"#;
/// Keeps all of `seq 2000000` (about 14 MB), not the default cap's last MiB.
const CONFIG: &str = "logs:\n  max_bytes_per_stream: 32MiB\n";

struct Daemon {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        let jobs = dir.join("jobs");
        std::fs::create_dir_all(&jobs).expect("jobs dir");
        std::fs::write(jobs.join("big.yaml"), JOB).expect("job file");
        std::fs::write(dir.join("petit.yaml"), CONFIG).expect("config file");
        let log = dir.join("petitd.log");
        let child = Command::new(env!("CARGO_BIN_EXE_petitd"))
            .arg("--jobs")
            .arg(&jobs)
            .arg("--config")
            .arg(dir.join("petit.yaml"))
            .arg("--db")
            .arg(dir.join("petit.db"))
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn petitd");
        // Owned at once, so that it is killed (and waited for) whatever happens next.
        let mut daemon = Daemon {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let addr = text
                .lines()
                .find(|l| l.contains("listening (gRPC"))
                .and_then(|l| l.split_once("addr="))
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .and_then(|a| a.parse().ok());
            if let Some(addr) = addr {
                daemon.addr = addr;
                return daemon;
            }
            assert!(Instant::now() < deadline, "petitd did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn status(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a /proc status field")
    }

    fn rss_kib(&self) -> u64 {
        self.status("VmRSS:")
    }

    /// Resets the peak, so that the next `peak_kib` is the peak since now.
    fn reset_peak(&self) {
        let path = format!("/proc/{}/clear_refs", self.child.id());
        if std::fs::write(path, "5").is_err() {
            eprintln!("cannot reset VmHWM: peaks below are since start");
        }
    }

    fn peak_kib(&self) -> u64 {
        self.status("VmHWM:")
    }
}

/// Reads the whole log page by page, the largest pages, as petitctl does; the lines.
async fn paged_read(channel: Channel, run_id: String) -> u64 {
    let mut runs = RunServiceClient::new(channel);
    let mut request = GetTaskLogsRequest {
        run_id,
        task_id: "count".into(),
        page_size: 10_000,
        ..Default::default()
    };
    let mut lines = 0;
    loop {
        let page = runs
            .get_task_logs(request.clone())
            .await
            .expect("a page")
            .into_inner();
        lines += page.lines.len() as u64;
        if page.next_page_token.is_empty() {
            return lines;
        }
        request.page_token = page.next_page_token;
    }
}

/// One REST call with no parameters (the default page); the body's size.
fn rest_read(addr: SocketAddr, run_id: &str) -> usize {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET /api/runs/{run_id}/tasks/count/logs HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut body = Vec::new();
    stream.read_to_end(&mut body).expect("response");
    body.len()
}

fn report(what: &str, idle: u64, peak: u64, after: u64, elapsed: Duration) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "{what:<34} peak {:6.1} MiB (+{:5.1})  after {}s {:6.1} MiB (+{:5.1})  in {:6.2}s",
        mib(peak),
        mib(peak.saturating_sub(idle)),
        SETTLE.as_secs(),
        mib(after),
        mib(after.saturating_sub(idle)),
        elapsed.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = Daemon::start(dir.path());
    let channel = Channel::from_shared(format!("http://{}", daemon.addr))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = daemon.rss_kib();
    println!(
        "log memory: {LINES} lines, petitd idle {:.1} MiB",
        idle as f64 / 1024.0
    );

    let started = Instant::now();
    daemon.reset_peak();
    let run = JobServiceClient::new(channel.clone())
        .trigger_job(TriggerJobRequest {
            job_id: "big".into(),
            ..Default::default()
        })
        .await
        .expect("trigger")
        .into_inner()
        .run
        .expect("a run");
    loop {
        let now = RunServiceClient::new(channel.clone())
            .get_run(GetRunRequest {
                run_id: run.id.clone(),
            })
            .await
            .expect("get run")
            .into_inner()
            .run
            .expect("a run");
        match now.status() {
            RunStatus::Queued | RunStatus::Running => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            RunStatus::Succeeded => break,
            other => panic!("the run ended {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    let peak = daemon.peak_kib();
    tokio::time::sleep(SETTLE).await;
    report(
        "write 2M lines (the run)",
        idle,
        peak,
        daemon.rss_kib(),
        elapsed,
    );

    for readers in [1, READERS] {
        daemon.reset_peak();
        let started = Instant::now();
        let reads: Vec<_> = (0..readers)
            .map(|_| tokio::spawn(paged_read(channel.clone(), run.id.clone())))
            .collect();
        for read in reads {
            assert_eq!(read.await.expect("reader"), LINES);
        }
        let elapsed = started.elapsed();
        let peak = daemon.peak_kib();
        tokio::time::sleep(SETTLE).await;
        let what = format!("{readers} paged gRPC read(s), whole log");
        report(&what, idle, peak, daemon.rss_kib(), elapsed);
    }

    for readers in [1, READERS] {
        daemon.reset_peak();
        let started = Instant::now();
        let addr = daemon.addr;
        let reads: Vec<_> = (0..readers)
            .map(|_| {
                let run_id = run.id.clone();
                std::thread::spawn(move || rest_read(addr, &run_id))
            })
            .collect();
        let bytes: Vec<usize> = reads
            .into_iter()
            .map(|r| r.join().expect("reader"))
            .collect();
        let elapsed = started.elapsed();
        let peak = daemon.peak_kib();
        tokio::time::sleep(SETTLE).await;
        let what = format!("{readers} REST call(s), default page");
        report(&what, idle, peak, daemon.rss_kib(), elapsed);
        println!("  (each response {} bytes)", bytes[0]);
    }
}
