//! Notifications end to end: a real HTTP receiver in the test (loopback) gets the
//! failure webhook with its body and HMAC signature, retried after it fails twice, each
//! attempt listed by GetRun and shown by petitctl; a receiver that never answers holds
//! up no run; a command target gets the same JSON on its stdin; `petit.yaml`'s default
//! applies to jobs without a `notify` of their own.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use petit_proto::v1::run_service_client::RunServiceClient;
use petit_proto::v1::{GetRunRequest, GetRunResponse, RunStatus};
use petit_tests::{bin, eventually, jobs_dir, run_to_exit, trigger, Daemon};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A minimal HTTP/1.1 receiver: answers 500 to the first `failures` requests, then 200;
/// or, with `hang`, reads requests and never answers.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(failures: usize, hang: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(AtomicUsize::new(0));
        let sink = got.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let sink = sink.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut socket).await else {
                        return;
                    };
                    sink.lock().unwrap().push(request);
                    if hang {
                        // Keep the connection open, answer nothing.
                        tokio::time::sleep(Duration::from_secs(600)).await;
                        return;
                    }
                    let n = seen.fetch_add(1, Ordering::SeqCst);
                    let status = if n < failures {
                        "500 Internal Server Error"
                    } else {
                        "200 OK"
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                });
            }
        });
        Receiver { url, got }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while data.len() < head_end + length {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    }
    Some(Received {
        headers,
        body: data[head_end..head_end + length].to_vec(),
    })
}

async fn get_run(channel: &tonic::transport::Channel, run_id: &str) -> GetRunResponse {
    RunServiceClient::new(channel.clone())
        .get_run(GetRunRequest {
            run_id: run_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn failing_job(url: &str, timeout: &str) -> String {
    format!(
        r#"
id: nightly
tasks:
  - id: load
    type: command
    command: sh
    args: ["-c", "echo loading; echo 'disk full' >&2; exit 3"]
notify:
  on: [failure]
  targets:
    - webhook:
        url: "{url}"
        headers: {{X-Team: data}}
        secret: s3cret
        timeout: {timeout}
        retries: 3
"#
    )
}

#[tokio::test]
async fn a_failure_webhook_is_signed_and_retried_until_delivered() {
    let receiver = Receiver::start(2, false).await;
    let jobs = jobs_dir(&[("nightly.yaml", &failing_job(&receiver.url, "5s"))]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    let run = trigger(&channel, "nightly", &[]).await;

    // Two failures, backoff 1 s then 2 s, then delivered.
    let attempts = eventually(
        Duration::from_secs(20),
        "three attempts, the last delivered",
        || {
            let channel = channel.clone();
            let id = run.id.clone();
            async move {
                let n = get_run(&channel, &id).await.notifications;
                (n.len() == 3).then_some(n)
            }
        },
    )
    .await;
    let outcomes: Vec<(&str, u32, &str)> = attempts
        .iter()
        .map(|a| (a.outcome.as_str(), a.attempt, a.message.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("failed", 1, "HTTP 500"),
            ("failed", 2, "HTTP 500"),
            ("delivered", 3, "HTTP 200")
        ]
    );
    assert!(attempts
        .iter()
        .all(|a| a.event == "failure" && a.target.starts_with("webhook http://127.0.0.1:")));
    assert!(
        !attempts[0].target.contains("/hook"),
        "the URL's path is not shown"
    );

    let got = receiver.received();
    assert_eq!(got.len(), 3);
    let last = &got[2];
    assert_eq!(last.header("content-type"), Some("application/json"));
    assert_eq!(last.header("x-team"), Some("data"));
    let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(&last.body);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        last.header("x-petit-signature"),
        Some(format!("sha256={want}").as_str())
    );
    let body = last.json();
    assert_eq!(body["event"], "failure");
    assert_eq!(body["job"], "nightly");
    assert_eq!(body["run_id"], run.id.as_str());
    assert_eq!(body["status"], "failed");
    assert!(body["duration_seconds"].as_f64().is_some());
    assert_eq!(
        body["link"],
        format!("{}/api/runs/{}", daemon.url(), run.id)
    );
    let failed = &body["failed_tasks"][0];
    assert_eq!(failed["task"], "load");
    assert_eq!(failed["exit_code"], 3);
    assert_eq!(failed["stderr_tail"], serde_json::json!(["disk full"]));

    // petitctl shows them with the run.
    let out = run_to_exit(
        Command::new(bin("petitctl"))
            .args(["--server", &daemon.url(), "run", &run.id])
            .env("NO_COLOR", "1")
            .env_remove("PETIT_TOKEN"),
        Duration::from_secs(20),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("NOTIFIED") && text.contains("delivered"),
        "{text}"
    );
    assert!(!daemon.stderr().contains("s3cret"), "the secret in the log");
}

#[tokio::test]
async fn a_receiver_that_never_answers_holds_up_no_run() {
    let receiver = Receiver::start(0, true).await;
    let jobs = jobs_dir(&[("nightly.yaml", &failing_job(&receiver.url, "60s"))]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let run = trigger(&channel, "nightly", &[]).await;
        // Each run ends on its own while its notification hangs (60 s timeout).
        eventually(Duration::from_secs(10), "the run to end", || {
            let channel = channel.clone();
            let id = run.id.clone();
            async move {
                let run = get_run(&channel, &id).await.run.unwrap();
                (run.status == RunStatus::Failed as i32).then_some(())
            }
        })
        .await;
        ids.push(run.id);
    }
    eventually(
        Duration::from_secs(10),
        "the three deliveries to be under way",
        || {
            let n = receiver.received().len();
            async move { (n == 3).then_some(()) }
        },
    )
    .await;
    for id in &ids {
        assert!(
            get_run(&channel, id).await.notifications.is_empty(),
            "no attempt has ended yet"
        );
    }
}

#[tokio::test]
async fn commands_get_the_json_and_petit_yaml_gives_the_default() {
    let out_dir = tempfile::tempdir().unwrap();
    // A file per delivery: the two may run at once, and appends to one file would
    // interleave.
    let sink = out_dir.path().join("got");
    std::fs::create_dir(&sink).unwrap();
    let config = format!(
        r#"
notify:
  on: [success, retry]
  targets:
    - command: ["sh", "-c", "cat > \"$(mktemp -p {})\""]
      timeout: 10s
"#,
        sink.display(),
    );
    let jobs = jobs_dir(&[
        (
            "quiet.yaml",
            "id: quiet\nnotify: {on: []}\ntasks:\n  - id: t\n    command: \"true\"\n",
        ),
        (
            "hello.yaml",
            "id: hello\ntasks:\n  - id: t\n    command: sh\n    args: [\"-c\", \"[ $PETIT_ATTEMPT -gt 1 ] || exit 75\"]\n    retry: {max_attempts: 1, delay_secs: 0, condition: transient_only}\n",
        ),
    ]);
    let config_file = out_dir.path().join("petit.yaml");
    std::fs::write(&config_file, config).unwrap();
    let daemon = Daemon::start_with(jobs.path(), &["--config", config_file.to_str().unwrap()]);
    let channel = daemon.channel().await;
    let quiet = trigger(&channel, "quiet", &[]).await;
    let run = trigger(&channel, "hello", &[]).await;
    let attempts = eventually(
        Duration::from_secs(20),
        "the retry and success notifications",
        || {
            let channel = channel.clone();
            let id = run.id.clone();
            async move {
                let n = get_run(&channel, &id).await.notifications;
                (n.len() == 2).then_some(n)
            }
        },
    )
    .await;
    let mut events: Vec<&str> = attempts.iter().map(|a| a.event.as_str()).collect();
    events.sort();
    assert_eq!(events, ["retry", "success"]);
    assert!(attempts
        .iter()
        .all(|a| a.outcome == "delivered" && a.target == "command sh"));
    let bodies: Vec<serde_json::Value> = std::fs::read_dir(&sink)
        .unwrap()
        .map(|entry| {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
        })
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(bodies
        .iter()
        .all(|b| b["job"] == "hello" && b["run_id"] == run.id.as_str()));
    assert!(bodies
        .iter()
        .any(|b| b["event"] == "retry" && b["task"] == "t"));
    // The job that turned notifications off sent none.
    assert!(get_run(&channel, &quiet.id).await.notifications.is_empty());
}

#[tokio::test]
async fn a_skipped_fire_is_told() {
    let out_dir = tempfile::tempdir().unwrap();
    let sink = out_dir.path().join("skipped.json");
    // Fires every second, each run takes 30 s: from the second fire on, each is skipped.
    let job = format!(
        r#"
id: busy
schedule: "@every 1s"
tasks:
  - id: nap
    command: sleep
    args: ["30"]
notify:
  on: [skipped_fire]
  targets:
    - command: ["sh", "-c", "cat > {}"]
"#,
        sink.display()
    );
    let jobs = jobs_dir(&[("busy.yaml", &job)]);
    let _daemon = Daemon::start(jobs.path());
    let body = eventually(
        Duration::from_secs(20),
        "the skipped fire's notification",
        || {
            let text = std::fs::read_to_string(&sink).unwrap_or_default();
            async move { serde_json::from_str::<serde_json::Value>(&text).ok() }
        },
    )
    .await;
    assert_eq!(body["event"], "skipped_fire");
    assert_eq!(body["job"], "busy");
    assert!(body["reason"].as_str().unwrap().contains("busy"), "{body}");
    assert!(body.get("link").is_none(), "no run, no link: {body}");
}
