//! `GET /metrics` on the real petitd: what runs, tasks, retries and scheduled fires do
//! to the counters, the pools' and scheduler's gauges, the process metrics, and the
//! token check when tokens are on.

use std::process::Command;
use std::time::Duration;

use petit_tests::{bin, eventually, jobs_dir, run_to_exit, trigger, Daemon, HELLO_JOB};

const FLAKY: &str = r#"
id: flaky
tasks:
  - id: fail
    type: command
    command: sh
    args: ["-c", "exit 3"]
    retry: {max_attempts: 1, delay_secs: 0}
"#;

const TICK: &str = r#"
id: tick
schedule: "@every 1s"
tasks:
  - id: beat
    type: command
    command: "true"
    resources: {slots: {gpu: 1}}
"#;

async fn scrape(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{url}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("GET /metrics")
}

/// The value of the sample line that starts with `sample` (name and labels).
fn value(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[tokio::test]
async fn runs_tasks_fires_and_the_process_are_measured() {
    let jobs = jobs_dir(&[
        ("hello.yaml", HELLO_JOB),
        ("flaky.yaml", FLAKY),
        ("tick.yaml", TICK),
    ]);
    let config = jobs.path().join("petit.yaml.conf");
    std::fs::write(&config, "resources: {pools: {gpu: 2}}\n").unwrap();
    let daemon = Daemon::start_with(jobs.path(), &["--config", config.to_str().unwrap()]);
    let channel = daemon.channel().await;
    trigger(&channel, "hello", &[]).await;
    trigger(&channel, "flaky", &[]).await;
    let url = daemon.url();

    let text = eventually(Duration::from_secs(20), "runs in the metrics", || async {
        let text = scrape(&url, None).await.text().await.ok()?;
        let done = value(
            &text,
            "petit_runs_total{job=\"hello\",status=\"succeeded\"}",
        )? >= 1.0
            && value(&text, "petit_runs_total{job=\"flaky\",status=\"failed\"}")? >= 1.0
            && value(&text, "petit_runs_total{job=\"tick\",status=\"succeeded\"}")? >= 1.0;
        done.then_some(text)
    })
    .await;
    let response = scrape(&url, None).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));

    assert_eq!(
        value(&text, "petit_tasks_total{job=\"flaky\",status=\"failed\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "petit_task_retries_total{job=\"flaky\"}"),
        Some(1.0)
    );
    assert!(
        value(&text, "petit_fire_lag_seconds_count").unwrap() >= 1.0,
        "{text}"
    );
    assert!(value(&text, "petit_run_duration_seconds_count{job=\"hello\"}").unwrap() >= 1.0);
    assert!(
        value(
            &text,
            "petit_job_last_success_timestamp_seconds{job=\"hello\"}"
        )
        .unwrap()
            > 1.7e9
    );
    assert_eq!(value(&text, "petit_scheduler_paused"), Some(0.0));
    let used = value(&text, "petit_pool_slots{pool=\"gpu\",state=\"used\"}").unwrap();
    let free = value(&text, "petit_pool_slots{pool=\"gpu\",state=\"free\"}").unwrap();
    assert_eq!(used + free, 2.0, "{text}");
    assert!(value(&text, "process_resident_memory_bytes").unwrap() > 1e6);
    assert!(value(&text, "process_open_fds").unwrap() > 3.0);
    assert!(text.contains("petit_build_info{version="));
    assert!(text.trim_end().ends_with("# EOF"));

    // Pausing shows at once.
    petit_proto::v1::scheduler_service_client::SchedulerServiceClient::new(channel.clone())
        .pause_scheduler(petit_proto::v1::PauseSchedulerRequest {})
        .await
        .unwrap();
    let text = scrape(&url, None).await.text().await.unwrap();
    assert_eq!(value(&text, "petit_scheduler_paused"), Some(1.0));
}

#[tokio::test]
async fn metrics_need_a_token_when_tokens_are_on() {
    let keys = tempfile::tempdir().unwrap();
    let file = keys.path().join("tokens.yaml");
    let out = run_to_exit(
        Command::new(bin("petitd"))
            .args([
                "token",
                "create",
                "prometheus",
                "--role",
                "viewer",
                "--tokens",
            ])
            .arg(&file),
        Duration::from_secs(20),
    );
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let daemon = Daemon::start_with(jobs.path(), &["--tokens", file.to_str().unwrap()]);
    let url = daemon.url();
    let refused = scrape(&url, None).await;
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().contains_key("www-authenticate"));
    assert_eq!(scrape(&url, Some("petit_wrong")).await.status(), 401);
    let ok = scrape(&url, Some(&token)).await;
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("petit_scheduler_paused"));
}
