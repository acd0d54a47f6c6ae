//! The systemd notify protocol, with this test playing systemd's part: a datagram
//! socket given to petitd as NOTIFY_SOCKET receives READY=1 with a STATUS once petitd
//! serves, WATCHDOG=1 pings at half WATCHDOG_USEC, STATUS updates as runs come and go,
//! and STOPPING=1 on SIGTERM; a task never sees the socket.

use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use petit_tests::{eventually, get_run, jobs_dir, trigger, Daemon};

const ENV_JOB: &str = r#"
id: env
tasks:
  - id: show
    type: command
    command: sh
    args: ["-c", "env | grep -c NOTIFY_SOCKET || true"]
"#;

/// What the test's "systemd" received, read continuously by a thread (as systemd
/// does: a notify socket queues only a few datagrams).
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<String>>>);

impl Received {
    fn listen(socket: UnixDatagram) -> Received {
        let received = Received::default();
        let sink = received.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.0.lock().unwrap().push(message);
            }
        });
        received
    }

    /// Waits until `count` messages satisfy `what`; all messages so far.
    fn wait(&self, count: usize, what: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.0.lock().unwrap().clone();
            if got.iter().filter(|m| what(m)).count() >= count {
                return got;
            }
            assert!(Instant::now() < deadline, "timed out; received: {got:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[tokio::test]
async fn ready_status_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let received = Received::listen(UnixDatagram::bind(&path).unwrap());
    let jobs = jobs_dir(&[("env.yaml", ENV_JOB)]);
    let mut daemon = Daemon::start_with_env(
        jobs.path(),
        &[],
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            // 200 ms: a ping every 100 ms.
            ("WATCHDOG_USEC", "200000"),
        ],
    );

    let got = received.wait(1, |m| m.contains("READY=1"));
    let ready = got.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(
        ready.contains("STATUS=1 jobs, 0 runs going, scheduler running"),
        "{ready}"
    );
    // The service manager can already reach the API.
    let channel = daemon.channel().await;

    received.wait(3, |m| m == "WATCHDOG=1");

    let run = trigger(&channel, "env", &[]).await;
    received.wait(1, |m| m.contains("STATUS=1 jobs, 1 runs going"));
    eventually(Duration::from_secs(10), "the run to end", || {
        let channel = channel.clone();
        let id = run.id.clone();
        async move {
            let run = get_run(&channel, &id).await;
            (run.status == petit_proto::v1::RunStatus::Succeeded as i32).then_some(())
        }
    })
    .await;
    // The task counted the NOTIFY_SOCKET lines of its environment: none.
    let logs = petit_proto::v1::run_service_client::RunServiceClient::new(channel.clone())
        .get_task_logs(petit_proto::v1::GetTaskLogsRequest {
            run_id: run.id.clone(),
            task_id: "show".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let lines: Vec<&str> = logs.lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(lines, ["0"], "a task saw NOTIFY_SOCKET");

    daemon.signal("TERM");
    received.wait(1, |m| m.starts_with("STOPPING=1"));
    assert!(daemon.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn without_notify_socket_nothing_is_sent_and_nothing_breaks() {
    let jobs = jobs_dir(&[("env.yaml", ENV_JOB)]);
    let daemon = Daemon::start(jobs.path());
    assert!(
        !daemon.stderr().contains("service manager"),
        "{}",
        daemon.stderr()
    );
}
