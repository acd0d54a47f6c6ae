//! Bounded connections, against the real petitd with short limits: idle, half-sent and
//! keep-alive connections are closed while fresh clients are served; past the limit a
//! new connection is closed at once and runs still get their descriptors; a quiet
//! stream outlives the idle timeout; oversized gRPC messages and non-gRPC content
//! types are refused with the codes the gRPC spec gives.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use petit_proto::v1::run_service_client::RunServiceClient;
use petit_proto::v1::scheduler_service_client::SchedulerServiceClient;
use petit_proto::v1::{
    GetHealthRequest, GetRunRequest, RunStatus, TriggerJobRequest, WatchEventsRequest,
};
use petit_tests::{eventually, jobs_dir, raw, trigger, Daemon, HELLO_JOB};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous bound for what the short limits below should do in about a second.
const DEADLINE: Duration = Duration::from_secs(30);

/// A job whose one task writes `path` (a file of its own, as task outputs are).
fn writer_job(path: &std::path::Path) -> String {
    format!(
        r#"
id: writer
name: Writer
tasks:
  - id: write
    type: command
    command: sh
    args: ["-c", "echo written > '{}'"]
"#,
        path.display()
    )
}

async fn connect(daemon: &Daemon) -> TcpStream {
    TcpStream::connect(daemon.addr).await.expect("connect")
}

/// Reads until the server closes the connection (end of stream or reset); what it
/// sent before that.
async fn until_closed(mut stream: TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn closed_within(stream: TcpStream, what: &str) -> Vec<u8> {
    tokio::time::timeout(DEADLINE, until_closed(stream))
        .await
        .unwrap_or_else(|_| panic!("petitd did not close the {what} connection in {DEADLINE:?}"))
}

/// Reads one HTTP/1.1 response (headers and a Content-Length body) from `stream`.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .expect("content-length");
            if body.len() >= length {
                return text;
            }
        }
        let n = stream.read(&mut buf).await.expect("read response");
        assert!(n > 0, "closed before the response ended: {text}");
        got.extend_from_slice(&buf[..n]);
    }
}

async fn health(channel: tonic::transport::Channel) -> Result<(), tonic::Status> {
    SchedulerServiceClient::new(channel)
        .get_health(GetHealthRequest {})
        .await
        .map(|_| ())
}

/// SETTINGS_MAX_CONCURRENT_STREAMS from the first frame of `bytes`, if that frame is
/// a SETTINGS frame (9-byte header, then 6-byte entries: id, value).
fn max_concurrent_streams(bytes: &[u8]) -> Option<u32> {
    let header = bytes.get(..9)?;
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    if header[3] != 0x4 {
        return None;
    }
    let payload = bytes.get(9..9 + length)?;
    payload.chunks_exact(6).find_map(|entry| {
        (u16::from_be_bytes([entry[0], entry[1]]) == 0x3)
            .then(|| u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]))
    })
}

/// The HTTP/2 client preface and an empty SETTINGS frame: an HTTP/2 connection that
/// then opens no stream.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn idle_and_half_sent_connections_are_closed_while_fresh_clients_are_served() {
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let daemon = Daemon::start_with(
        jobs.path(),
        &[
            "--header-timeout",
            "1s",
            "--idle-timeout",
            "2s",
            "--max-streams",
            "7",
        ],
    );

    let silent = connect(&daemon).await;

    let mut keep_alive = connect(&daemon).await;
    keep_alive
        .write_all(b"GET /api/health HTTP/1.1\r\nHost: petit\r\n\r\n")
        .await
        .unwrap();
    let response = read_response(&mut keep_alive).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(!response.to_ascii_lowercase().contains("connection: close"));

    let mut half_sent = connect(&daemon).await;
    half_sent
        .write_all(b"GET /api/health HTTP/1.1\r\nHost: petit\r\nX-Slow: ")
        .await
        .unwrap();

    let mut h2 = connect(&daemon).await;
    h2.write_all(H2_PREFACE).await.unwrap();

    // Meanwhile a fresh client is served.
    let fresh = daemon.channel().await;
    health(fresh.clone())
        .await
        .expect("a fresh client is served");

    let (silent, keep_alive, half_sent, h2) = tokio::join!(
        closed_within(silent, "silent"),
        closed_within(keep_alive, "keep-alive"),
        closed_within(half_sent, "half-sent"),
        closed_within(h2, "HTTP/2 without streams"),
    );
    assert!(silent.is_empty() && keep_alive.is_empty());
    // hyper answers a header that never ends with 408 or nothing; either is fine.
    let half_sent = String::from_utf8_lossy(&half_sent);
    assert!(
        half_sent.is_empty() || half_sent.starts_with("HTTP/1.1 408"),
        "{half_sent}"
    );
    // The HTTP/2 connection got the server's SETTINGS first, with the stream limit.
    assert_eq!(max_concurrent_streams(&h2), Some(7), "{h2:?}");

    // And the daemon still serves, on the channel it closed too (tonic reconnects).
    eventually(DEADLINE, "health after the idle closes", || {
        let channel = fresh.clone();
        async move { health(channel).await.ok() }
    })
    .await;
}

#[tokio::test]
async fn a_quiet_stream_outlives_the_idle_timeout() {
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let daemon = Daemon::start_with(
        jobs.path(),
        &["--header-timeout", "1s", "--idle-timeout", "1s"],
    );
    let channel = daemon.channel().await;
    let mut events = SchedulerServiceClient::new(channel.clone())
        .watch_events(WatchEventsRequest {
            exclude_logs: true,
            ..Default::default()
        })
        .await
        .expect("watch_events")
        .into_inner();
    let snapshot = tokio::time::timeout(DEADLINE, events.message())
        .await
        .expect("a snapshot in time")
        .expect("stream");
    assert!(snapshot.is_some());

    // Three silent connections closed one after the other: more than the idle timeout
    // plus the time a closing connection is given (1s + 1s) has passed since the
    // stream's last message, measured by the daemon's own clock.
    for _ in 0..3 {
        let silent = connect(&daemon).await;
        closed_within(silent, "silent").await;
    }

    // The stream is still open: the next event comes through it.
    let other = daemon.channel().await;
    trigger(&other, "hello", &[]).await;
    let next = tokio::time::timeout(DEADLINE, events.message())
        .await
        .expect("an event in time");
    assert!(
        matches!(next, Ok(Some(_))),
        "the stream ended or failed: {next:?}"
    );
}

#[tokio::test]
async fn past_the_connection_limit_new_connections_are_closed_and_runs_still_succeed() {
    let out = tempfile::tempdir().unwrap();
    let written = out.path().join("written.txt");
    let jobs = jobs_dir(&[("writer.yaml", &writer_job(&written))]);
    let daemon = Daemon::start_with(
        jobs.path(),
        &[
            "--max-connections",
            "3",
            "--header-timeout",
            "60s",
            "--idle-timeout",
            "60s",
        ],
    );
    assert!(
        daemon.stderr().contains("max_connections=3"),
        "{}",
        daemon.stderr()
    );

    // The limit: this client and two silent connections.
    let channel = daemon.channel().await;
    let held = [connect(&daemon).await, connect(&daemon).await];
    // The fourth is closed at once, having received nothing.
    let refused = closed_within(connect(&daemon).await, "fourth").await;
    assert!(refused.is_empty());
    let refusals = eventually(DEADLINE, "the refusal in the log", || {
        let log = daemon.stderr();
        async move { log.contains("refusing new connections").then_some(()) }
    });
    refusals.await;

    // Clients already connected go on, and runs get what they need.
    let run = trigger(&channel, "writer", &[]).await;
    let status = eventually(DEADLINE, "the run to end", || {
        let mut runs = RunServiceClient::new(channel.clone());
        let id = run.id.clone();
        async move {
            let run = runs
                .get_run(GetRunRequest { run_id: id })
                .await
                .ok()?
                .into_inner()
                .run?;
            (run.status() != RunStatus::Queued && run.status() != RunStatus::Running)
                .then(|| run.status())
        }
    })
    .await;
    assert_eq!(status, RunStatus::Succeeded);
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "written\n");

    // A connection that goes makes room for a new one.
    drop(held);
    eventually(DEADLINE, "a new client once there is room", || {
        let url = daemon.url();
        async move {
            let channel = tonic::transport::Endpoint::from_shared(url)
                .ok()?
                .connect()
                .await
                .ok()?;
            health(channel).await.ok()
        }
    })
    .await;
}

#[tokio::test]
async fn clients_cannot_take_the_descriptors_runs_need() {
    // Under a low open-file limit, far more connections than descriptors: petitd keeps
    // the connections it accepts within what the limit leaves once runs are provided
    // for, and closes the rest at once.
    const OPEN_FILES: u32 = 256;
    const CLIENTS: usize = 300;
    let out = tempfile::tempdir().unwrap();
    let written = out.path().join("written.txt");
    let jobs = jobs_dir(&[("writer.yaml", &writer_job(&written))]);
    let daemon = Daemon::start_with_open_files(
        jobs.path(),
        OPEN_FILES,
        &["--header-timeout", "60s", "--idle-timeout", "60s"],
    );
    assert!(
        daemon.stderr().contains("at most 128 connections"),
        "{}",
        daemon.stderr()
    );
    let channel = daemon.channel().await;

    let closed = Arc::new(AtomicUsize::new(0));
    let mut flood = Vec::new();
    for _ in 0..CLIENTS {
        let stream = connect(&daemon).await;
        let closed = closed.clone();
        flood.push(tokio::spawn(async move {
            until_closed(stream).await;
            closed.fetch_add(1, Ordering::SeqCst);
        }));
    }
    // 128 connections at most: the channel above and 127 of the flood; the others
    // are closed.
    eventually(
        DEADLINE,
        "the connections past the limit to be closed",
        || {
            let n = closed.load(Ordering::SeqCst);
            async move { (n == CLIENTS - 127).then_some(()) }
        },
    )
    .await;

    let run = trigger(&channel, "writer", &[]).await;
    let status = eventually(DEADLINE, "the run to end", || {
        let mut runs = RunServiceClient::new(channel.clone());
        let id = run.id.clone();
        async move {
            let run = runs
                .get_run(GetRunRequest { run_id: id })
                .await
                .ok()?
                .into_inner()
                .run?;
            (run.status() != RunStatus::Queued && run.status() != RunStatus::Running)
                .then(|| run.status())
        }
    })
    .await;
    assert_eq!(status, RunStatus::Succeeded, "{}", daemon.stderr());
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "written\n");
    assert_eq!(closed.load(Ordering::SeqCst), CLIENTS - 127);
    for task in flood {
        task.abort();
    }
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_resource_exhausted() {
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    let mut client = petit_proto::v1::job_service_client::JobServiceClient::new(channel);
    let huge = "x".repeat(5 * 1024 * 1024);
    let status = client
        .trigger_job(TriggerJobRequest {
            job_id: "hello".into(),
            params: [("x".to_string(), huge)].into(),
            force: false,
        })
        .await
        .expect_err("a 5 MiB request is refused");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("over the limit"), "{status:?}");

    // A request within the limit is decoded as usual (and refused for its own reason).
    let status = client
        .trigger_job(TriggerJobRequest {
            job_id: "nope".into(),
            params: [("x".to_string(), "x".repeat(1024 * 1024))].into(),
            force: false,
        })
        .await
        .expect_err("no such job");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
}

#[tokio::test]
async fn a_non_grpc_content_type_on_a_grpc_path_is_415() {
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let daemon = Daemon::start(jobs.path());
    let http = reqwest::Client::new();
    for path in [
        "/petit.v1.SchedulerService/GetHealth",
        "/grpc.health.v1.Health/Check",
    ] {
        for content_type in [Some("text/plain"), Some("application/json"), None] {
            let mut request = http.post(format!("{}{path}", daemon.url())).body("hello");
            if let Some(ct) = content_type {
                request = request.header("content-type", ct);
            }
            let response = request.send().await.expect("response");
            assert_eq!(response.status(), 415, "{path} {content_type:?}");
            let body: serde_json::Value = response.json().await.expect("JSON");
            assert_eq!(body["code"], 3, "{body}");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(message.contains("application/grpc"), "{message}");
        }
    }
}

/// `GetJob` and `ListJobs` are written from the job cache's bytes, beside tonic: their
/// requests are checked as tonic checks them, and their answers decode as the messages.
#[tokio::test]
async fn the_job_reads_answered_from_cached_bytes_check_requests_as_tonic_does() {
    use petit_proto::v1::{GetJobRequest, GetJobResponse, ListJobsRequest, ListJobsResponse};
    use prost::Message;

    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    const GET: &str = "/petit.v1.JobService/GetJob";
    const LIST: &str = "/petit.v1.JobService/ListJobs";

    let request = GetJobRequest {
        job_id: "hello".into(),
    };
    let reply = raw::unary(&channel, GET, request.encode_to_vec())
        .await
        .expect("GetJob");
    let job = GetJobResponse::decode(&reply[..])
        .expect("a GetJobResponse")
        .job;
    assert_eq!(job.expect("a job").id, "hello");
    let reply = raw::unary(&channel, LIST, ListJobsRequest::default().encode_to_vec())
        .await
        .expect("ListJobs");
    let list = ListJobsResponse::decode(&reply[..]).expect("a ListJobsResponse");
    let ids: Vec<&str> = list.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["hello"]);

    // A field whose length runs past the message: not protobuf.
    for path in [GET, LIST] {
        let status = raw::unary(&channel, path, vec![0x0a, 0x05, b'h'])
            .await
            .expect_err("a broken message");
        assert_eq!(status.code(), tonic::Code::Internal, "{path}: {status:?}");
    }
    // The unknown job and the missing id, with the services' own codes and words.
    let unknown = GetJobRequest {
        job_id: "nope".into(),
    };
    let status = raw::unary(&channel, GET, unknown.encode_to_vec())
        .await
        .expect_err("no such job");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert!(status.message().contains("nope"), "{status:?}");
    let status = raw::unary(&channel, GET, Vec::new())
        .await
        .expect_err("no id");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    // A bad page token, and a message over the size limit.
    let bad_page = ListJobsRequest {
        page_token: "not a token".into(),
        ..Default::default()
    };
    let status = raw::unary(&channel, LIST, bad_page.encode_to_vec())
        .await
        .expect_err("a bad token");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let huge = ListJobsRequest {
        page_token: "x".repeat(5 * 1024 * 1024),
        ..Default::default()
    };
    let status = raw::unary(&channel, LIST, huge.encode_to_vec())
        .await
        .expect_err("a 5 MiB request");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
}
