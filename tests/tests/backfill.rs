//! Backfill from outside: petitctl and REST on the real `petitd`.

use std::time::Duration;

use petit_tests::{jobs_dir, petitctl_run, Daemon};
use serde_json::{json, Value};

const HOURLY: &str = "id: hourly\nschedule: '0 0 * * * *'\ntasks:\n  - {id: t, command: 'true'}\n";
const LIMIT: Duration = Duration::from_secs(10);

fn petitctl(server: &str, args: &[&str]) -> (i32, String, String) {
    petitctl_run(server, args, LIMIT)
}

#[tokio::test]
async fn petitctl_and_rest_backfill_each_missing_instant_once() {
    let jobs = jobs_dir(&[("hourly.yaml", HOURLY)]);
    let daemon = Daemon::start(jobs.path());
    let url = daemon.url();

    let (code, stdout, stderr) = petitctl(
        &url,
        &[
            "backfill",
            "hourly",
            "--from",
            "2026-11-30",
            "--to",
            "2026-11-30T03:00:00Z",
            "--dry-run",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("would queue 4 runs of hourly:"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 5, "{stdout}");

    let (code, stdout, stderr) = petitctl(
        &url,
        &[
            "backfill",
            "hourly",
            "--from",
            "2026-11-30",
            "--to",
            "2026-11-30T01:00:00Z",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("queued 2 runs of hourly"), "{stdout}");

    // REST: the rest of the range; the two instants queued above are left alone.
    let response = reqwest::Client::new()
        .post(format!("{url}/api/jobs/hourly/backfill"))
        .json(&json!({"from": "2026-11-30T00:00:00Z", "to": "2026-11-30T03:00:00Z"}))
        .send()
        .await
        .expect("POST");
    assert!(response.status().is_success(), "{}", response.status());
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["runs"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(body["alreadyRun"], 2, "{body}");
    assert_eq!(body["runs"][0]["trigger"], "TRIGGER_REASON_BACKFILL");
    assert_eq!(body["runs"][0]["scheduledFor"], "2026-11-30T02:00:00Z");

    // A huge range is refused with its count; a bad instant is a usage error.
    let (code, _, stderr) = petitctl(
        &url,
        &[
            "backfill",
            "hourly",
            "--from",
            "2020-01-01",
            "--to",
            "2026-01-01",
            "--dry-run",
        ],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("52609 fire instants"), "{stderr}");
    let (code, _, stderr) = petitctl(
        &url,
        &[
            "backfill",
            "hourly",
            "--from",
            "yesterday",
            "--to",
            "2026-01-01",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("RFC 3339"), "{stderr}");
}
