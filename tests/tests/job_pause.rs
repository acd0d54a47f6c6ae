//! Pausing one job, from outside: petitctl, gRPC and REST on the real `petitd`. A
//! paused job lists no next fire times, says it is paused, is recorded in the audit,
//! and is still paused after a restart on the same database.

use std::time::Duration;

use petit_proto::v1::job_service_client::JobServiceClient;
use petit_proto::v1::scheduler_service_client::SchedulerServiceClient;
use petit_proto::v1::*;
use petit_tests::{jobs_dir, petitctl_run, Daemon};
use serde_json::Value;
use tonic::transport::Channel;

/// Scheduled, but not due during a test.
const NEW_YEAR: &str =
    "id: new_year\nschedule: '0 0 0 1 1 *'\ntasks:\n  - {id: t, command: 'true'}\n";
const DAILY: &str = "id: daily\nschedule: '@daily'\ntasks:\n  - {id: t, command: 'true'}\n";
const LIMIT: Duration = Duration::from_secs(10);

fn petitctl(server: &str, args: &[&str]) -> (bool, String, String) {
    let (code, stdout, stderr) = petitctl_run(server, args, LIMIT);
    (code == 0, stdout, stderr)
}

async fn job(channel: &Channel, job_id: &str) -> Job {
    JobServiceClient::new(channel.clone())
        .get_job(GetJobRequest {
            job_id: job_id.into(),
        })
        .await
        .expect("get job")
        .into_inner()
        .job
        .expect("job")
}

#[tokio::test]
async fn a_paused_job_says_so_everywhere_and_stays_paused_after_a_restart() {
    let jobs = jobs_dir(&[("new_year.yaml", NEW_YEAR), ("daily.yaml", DAILY)]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;

    let (ok, stdout, stderr) = petitctl(&daemon.url(), &["pause", "new_year"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "job new_year paused");
    let paused = job(&channel, "new_year").await;
    assert!(paused.paused);
    assert!(
        paused
            .schedule
            .expect("schedule")
            .next_fire_times
            .is_empty(),
        "a paused job lists no next fire"
    );
    let other = job(&channel, "daily").await;
    assert!(!other.paused);
    assert_eq!(other.schedule.expect("schedule").next_fire_times.len(), 5);
    let state = SchedulerServiceClient::new(channel.clone())
        .get_scheduler_state(GetSchedulerStateRequest {})
        .await
        .expect("state")
        .into_inner()
        .state
        .expect("state");
    assert_eq!(
        state.status(),
        SchedulerStatus::Running,
        "only the job is paused"
    );

    // Unknown job: NOT_FOUND, and petitctl says so.
    let (ok, _, stderr) = petitctl(&daemon.url(), &["pause", "nope"]);
    assert!(!ok);
    assert!(stderr.contains("nope"), "{stderr}");

    // REST: resume, then pause again.
    let http = reqwest::Client::new();
    let post = |path: String| {
        let http = http.clone();
        async move {
            let response = http.post(path).body("{}").send().await.expect("POST");
            assert!(response.status().is_success(), "{}", response.status());
            response.json::<Value>().await.expect("json")
        }
    };
    let resumed = post(format!("{}/api/jobs/new_year/resume", daemon.url())).await;
    assert_eq!(resumed["job"]["paused"], false, "{resumed}");
    assert_eq!(
        resumed["job"]["schedule"]["nextFireTimes"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
    let paused = post(format!("{}/api/jobs/new_year/pause", daemon.url())).await;
    assert_eq!(paused["job"]["paused"], true, "{paused}");

    // Who did it is on record.
    let (ok, audit, stderr) = petitctl(&daemon.url(), &["audit", "--output", "json"]);
    assert!(ok, "{stderr}");
    for call in ["PauseJob", "ResumeJob"] {
        assert!(audit.contains(call), "{call} in the audit:\n{audit}");
    }

    let (data, db) = daemon.stop();
    let daemon = Daemon::start_on(jobs.path(), data, db, &[]);
    let channel = daemon.channel().await;
    assert!(
        job(&channel, "new_year").await.paused,
        "still paused after a restart"
    );
    let (ok, stdout, _) = petitctl(&daemon.url(), &["jobs"]);
    assert!(ok);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("new_year"))
        .expect("the job's line");
    assert!(line.contains("paused"), "petitctl jobs shows it: {line}");
}
