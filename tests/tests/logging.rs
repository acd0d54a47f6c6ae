//! petitd's own log with `--log-format json`: every line written while a run goes on
//! (the engine's and its tasks') carries the job and run ids as span fields, so a log
//! pipeline can select one run's lines.

use std::time::Duration;

use petit_tests::{eventually, get_run, jobs_dir, trigger, Daemon};

const RETRIED: &str = r#"
id: retried
tasks:
  - id: flaky
    type: command
    command: sh
    args: ["-c", "echo trying; exit 75"]
    retry: {max_attempts: 1, delay_secs: 0, condition: transient_only}
"#;

#[tokio::test]
async fn every_line_of_a_run_names_its_job_and_run() {
    let jobs = jobs_dir(&[("retried.yaml", RETRIED)]);
    let daemon = Daemon::start_with(jobs.path(), &["--log-format", "json"]);
    let channel = daemon.channel().await;
    let run = trigger(&channel, "retried", &[]).await;
    eventually(Duration::from_secs(15), "the run to end", || {
        let channel = channel.clone();
        let id = run.id.clone();
        async move {
            let status = get_run(&channel, &id).await.status;
            (status == petit_proto::v1::RunStatus::Failed as i32).then_some(())
        }
    })
    .await;
    let log = eventually(Duration::from_secs(5), "the run's end in the log", || {
        let log = daemon.stderr();
        async move { log.contains("run ended").then_some(log) }
    })
    .await;
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.contains(&run.id))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 2, "{log}");
    let mut in_span = 0;
    for line in &lines {
        // The audit line of the trigger is written before the run exists.
        if line["fields"]["message"] == "audit" {
            continue;
        }
        assert_eq!(line["span"]["run"], run.id.as_str(), "{line}");
        assert_eq!(line["span"]["job"], "retried", "{line}");
        in_span += 1;
    }
    assert!(in_span >= 2, "{log}");
}
