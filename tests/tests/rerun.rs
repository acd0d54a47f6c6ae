//! `petitctl rerun`: a new run of the same job and params, reason retry, pointing at
//! the original; `petitctl run` says why each run started.

use std::time::Duration;

use petit_proto::v1::*;
use petit_tests::{eventually, get_run, jobs_dir, petitctl_run, trigger, Daemon};

const GREET: &str = "id: greet\nconfig: {who: world}\ntasks:\n  - {id: say, command: echo, args: ['hello ${config.who}']}\n";
const LIMIT: Duration = Duration::from_secs(15);

fn petitctl(server: &str, args: &[&str]) -> (i32, String, String) {
    petitctl_run(server, args, LIMIT)
}

#[tokio::test]
async fn rerun_repeats_a_run_with_its_params_and_says_so() {
    let jobs = jobs_dir(&[("greet.yaml", GREET)]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    let original = trigger(&channel, "greet", &[("who", "petit")]).await;
    eventually(LIMIT, "the first run's end", || async {
        (get_run(&channel, &original.id).await.status() == RunStatus::Succeeded).then_some(())
    })
    .await;

    let (code, stdout, stderr) = petitctl(&daemon.url(), &["rerun", &original.id, "--wait"]);
    assert_eq!(code, 0, "{stderr}");
    let new_id = stdout
        .lines()
        .next()
        .expect("the new run's id")
        .trim()
        .to_string();
    let rerun = get_run(&channel, &new_id).await;
    assert_eq!(rerun.trigger(), TriggerReason::Retry);
    assert_eq!(rerun.retry_of, original.id);
    assert_eq!(rerun.params.get("who").map(String::as_str), Some("petit"));
    assert_eq!(rerun.status(), RunStatus::Succeeded);
    assert!(!rerun.definition.is_empty());

    let (code, shown, _) = petitctl(&daemon.url(), &["run", &new_id]);
    assert_eq!(code, 0);
    assert!(shown.contains("retry"), "{shown}");
    assert!(
        shown.contains(&format!("Re-run of     {}", original.id)) || shown.contains(&original.id),
        "{shown}"
    );
    assert!(shown.contains(&rerun.definition), "{shown}");

    let (code, _, stderr) = petitctl(&daemon.url(), &["rerun", "no-such-run"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no-such-run"), "{stderr}");
}
