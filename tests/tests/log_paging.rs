//! Log paging end to end, on the real `petitd`: a task that prints 2,000,000 lines
//! (`seq 2000000`) is read page by page over gRPC and REST (every line once, in order,
//! no page over its bounds), by tail, by `petitctl logs` (whose output is exactly
//! `seq`'s) and followed from a tail. The daemon's resident memory stays near its idle
//! figure throughout; the tight figures are measured by `make bench`, this only guards
//! against a whole log being built in memory again.

use std::process::Command;
use std::time::Duration;

use petit_proto::v1::run_service_client::RunServiceClient;
use petit_proto::v1::{
    FollowTaskLogsRequest, GetTaskLogsRequest, GetTaskLogsResponse, LogStream, RunStatus,
};
use petit_tests::{bin, eventually, get_run, jobs_dir, rss_kib, trigger, Daemon};
use serde_json::Value;
use tonic::transport::Channel;
use tonic::Code;

const LINES: u64 = 2_000_000;
/// Pages read over REST one after the other.
const REST_PAGES: u64 = 5;

const BIG_JOB: &str = r#"
id: big
name: Big
tasks:
  - id: count
    type: command
    command: seq
    args: ["2000000"]
"#;

/// `seq 2000000` prints about 14 MB; the default cap (1 MiB per stream) would keep
/// only its last ~150,000 lines.
const CONFIG: &str = "logs:\n  max_bytes_per_stream: 32MiB\n";

/// How far above its idle figure the daemon's resident memory may go: generous, as a
/// debug build, SQLite's page caches and the allocator all move it; a log built whole
/// in memory costs hundreds of MiB.
const RSS_MARGIN_KIB: u64 = 40 * 1024;

/// Longest the 2,000,000-line run may take (a debug build, two busy cores).
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

struct Big {
    daemon: Daemon,
    channel: Channel,
    run_id: String,
    idle_kib: u64,
    /// The highest VmRSS seen so far.
    peak_kib: u64,
    _config: tempfile::TempDir,
    _jobs: tempfile::TempDir,
}

impl Big {
    async fn start() -> Big {
        let jobs = jobs_dir(&[("big.yaml", BIG_JOB)]);
        let config = jobs_dir(&[("petit.yaml", CONFIG)]);
        let config_path = config.path().join("petit.yaml");
        let daemon = Daemon::start_with(
            jobs.path(),
            &["--config", config_path.to_str().expect("utf-8 path")],
        );
        let channel = daemon.channel().await;
        let idle_kib = rss_kib(daemon.child.id());
        let run = trigger(&channel, "big", &[]).await;
        let ended = eventually(RUN_TIMEOUT, "the 2,000,000-line run to end", || {
            let channel = channel.clone();
            let id = run.id.clone();
            async move {
                let run = get_run(&channel, &id).await;
                (run.status() != RunStatus::Running && run.status() != RunStatus::Queued)
                    .then_some(run)
            }
        })
        .await;
        assert_eq!(ended.status(), RunStatus::Succeeded, "{ended:?}");
        let mut big = Big {
            peak_kib: idle_kib,
            daemon,
            channel,
            run_id: run.id,
            idle_kib,
            _config: config,
            _jobs: jobs,
        };
        big.sample();
        big
    }

    fn sample(&mut self) {
        self.peak_kib = self.peak_kib.max(rss_kib(self.daemon.child.id()));
    }

    fn request(&self, page_size: u32, page_token: &str, tail: u32) -> GetTaskLogsRequest {
        GetTaskLogsRequest {
            run_id: self.run_id.clone(),
            task_id: "count".into(),
            page_size,
            page_token: page_token.into(),
            tail,
        }
    }

    async fn page(
        &self,
        request: GetTaskLogsRequest,
    ) -> Result<GetTaskLogsResponse, tonic::Status> {
        RunServiceClient::new(self.channel.clone())
            .get_task_logs(request)
            .await
            .map(tonic::Response::into_inner)
    }
}

/// Runs a command to its end, reading its (long) output while it runs: a pipe left
/// unread would fill and stop it.
fn output_of(mut command: Command) -> std::process::Output {
    let what = format!("{command:?}");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(command.output());
    });
    rx.recv_timeout(RUN_TIMEOUT)
        .unwrap_or_else(|_| panic!("{what} still running after {RUN_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn petitctl_output(args: &[&str]) -> std::process::Output {
    let mut command = Command::new(bin("petitctl"));
    command.args(args);
    output_of(command)
}

/// Checks that `lines` continue the count at `next` and moves it on.
fn expect_count(next: &mut u64, lines: impl IntoIterator<Item = String>) {
    for line in lines {
        assert_eq!(line, next.to_string(), "line {next}");
        *next += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_million_line_log_reads_page_by_page() {
    let mut big = Big::start().await;

    // gRPC, in the largest pages: every line once, in order; every page but the last
    // is full, and only the last has no token.
    let mut next = 1;
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = big
            .page(big.request(10_000, &token, 0))
            .await
            .expect("a page");
        pages += 1;
        let count = page.lines.len() as u64;
        let first = page.lines.first().cloned().expect("a non-empty page");
        assert_eq!(first.stream(), LogStream::Stdout);
        assert_eq!(first.seq, next, "seq counts the task's lines");
        expect_count(&mut next, page.lines.into_iter().map(|l| l.line));
        if pages % 20 == 0 {
            big.sample();
        }
        if page.next_page_token.is_empty() {
            assert!(count <= 10_000);
            break;
        }
        assert_eq!(count, 10_000, "page {pages} is full");
        token = page.next_page_token;
    }
    assert_eq!(next, LINES + 1, "every line came");
    assert_eq!(pages, 200);
    big.sample();

    // No page_size (what clients older than paging send): the first 1,000 lines and a
    // token; an oversized page_size is clamped to 10,000.
    let first = big.page(big.request(0, "", 0)).await.expect("default page");
    assert_eq!(first.lines.len(), 1_000);
    assert!(!first.next_page_token.is_empty());
    let clamped = big
        .page(big.request(u32::MAX, "", 0))
        .await
        .expect("clamped");
    assert_eq!(clamped.lines.len(), 10_000);

    // Tails: the last lines at once, or the first page of a longer tail and the rest
    // after it.
    let tail = big.page(big.request(0, "", 5)).await.expect("tail");
    let got: Vec<&str> = tail.lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(got, ["1999996", "1999997", "1999998", "1999999", "2000000"]);
    assert!(tail.next_page_token.is_empty());
    let mut next = LINES - 25_000 + 1;
    let mut request = big.request(10_000, "", 25_000);
    loop {
        let page = big.page(request.clone()).await.expect("a tail page");
        assert!(page.lines.len() <= 10_000);
        expect_count(&mut next, page.lines.into_iter().map(|l| l.line));
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(next, LINES + 1);

    // A token this server never gave out is refused, not a panic or a page.
    for garbage in ["garbage", "00000000000000000000000000000zzz", "-1"] {
        let status = big
            .page(big.request(0, garbage, 0))
            .await
            .expect_err("a garbage token");
        assert_eq!(status.code(), Code::InvalidArgument, "{garbage}: {status}");
    }

    // REST: the same pages as query parameters, as JSON; the first call with no
    // parameters is the default page. The REST shim calls the same service code in
    // process, so its pages are the ones checked whole over gRPC above; here the first
    // REST_PAGES pages follow each other's tokens (all 200 would take minutes of JSON
    // in a debug build), then a tail gives the end.
    let http = reqwest::Client::new();
    let url = format!(
        "{}/api/runs/{}/tasks/count/logs",
        big.daemon.url(),
        big.run_id
    );
    let get = |query: Vec<(&'static str, String)>| {
        let request = http.get(&url).query(&query);
        async move {
            let response = request.send().await.expect("REST call");
            assert_eq!(response.status(), 200);
            let body = response.bytes().await.expect("REST body");
            assert!(body.len() < 4 << 20, "a page of {} bytes", body.len());
            serde_json::from_slice::<Value>(&body).expect("JSON")
        }
    };
    let default = get(vec![]).await;
    assert_eq!(default["lines"].as_array().map(Vec::len), Some(1_000));
    let mut next = 1;
    let mut token = String::new();
    loop {
        let page = get(vec![("page_size", "10000".into()), ("page_token", token)]).await;
        let lines = page["lines"].as_array().expect("lines");
        assert!(lines.len() <= 10_000);
        expect_count(
            &mut next,
            lines
                .iter()
                .map(|l| l["line"].as_str().unwrap_or_default().to_string()),
        );
        big.sample();
        token = page["nextPageToken"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(!token.is_empty(), "more pages after line {next}");
        if next > REST_PAGES * 10_000 {
            break;
        }
    }
    assert_eq!(next, REST_PAGES * 10_000 + 1);
    let tail = get(vec![
        ("tail", "10000".into()),
        ("page_size", "10000".into()),
    ])
    .await;
    let mut next = LINES - 10_000 + 1;
    expect_count(
        &mut next,
        tail["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .map(|l| l["line"].as_str().unwrap_or_default().to_string()),
    );
    assert_eq!(next, LINES + 1, "the tail ends with the last line");
    assert_eq!(
        tail["nextPageToken"].as_str().unwrap_or_default(),
        "",
        "no page after the last"
    );
    let refused = http
        .get(&url)
        .query(&[("page_token", "garbage")])
        .send()
        .await
        .expect("REST call");
    assert_eq!(refused.status(), 400);

    // petitctl pages through by itself; its output is seq's, byte for byte.
    let server = big.daemon.url();
    let output = petitctl_output(&["--server", &server, "logs", &big.run_id, "count"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut seq = Command::new("seq");
    seq.arg(LINES.to_string());
    let seq = output_of(seq);
    assert!(
        output.stdout == seq.stdout,
        "petitctl logs differs from seq ({} bytes, seq {})",
        output.stdout.len(),
        seq.stdout.len()
    );
    let output = petitctl_output(&[
        "--server",
        &server,
        "logs",
        &big.run_id,
        "count",
        "--tail",
        "3",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "1999998\n1999999\n2000000\n"
    );
    // `tail -f`: the last stored lines, then (the task having ended) the end.
    let output = petitctl_output(&[
        "--server",
        &server,
        "logs",
        &big.run_id,
        "count",
        "--tail",
        "3",
        "--follow",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "1999998\n1999999\n2000000\n"
    );
    let mut runs = RunServiceClient::new(big.channel.clone());
    let mut follow = runs
        .follow_task_logs(FollowTaskLogsRequest {
            run_id: big.run_id.clone(),
            task_id: "count".into(),
            tail: 2,
        })
        .await
        .expect("follow with a tail")
        .into_inner();
    let mut followed = Vec::new();
    while let Some(message) = follow.message().await.expect("a message") {
        followed.extend(message.line.map(|l| l.line));
    }
    assert_eq!(followed, ["1999999", "2000000"]);
    // A whole run has no one order of seq to cut a tail by: refused.
    let status = runs
        .follow_task_logs(FollowTaskLogsRequest {
            run_id: big.run_id.clone(),
            task_id: String::new(),
            tail: 2,
        })
        .await
        .expect_err("a tail of the whole run");
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    big.sample();

    assert!(
        big.peak_kib <= big.idle_kib + RSS_MARGIN_KIB,
        "petitd went from {} KiB idle to {} KiB while serving the pages",
        big.idle_kib,
        big.peak_kib
    );
}
