//! The scheduling knobs of a job file, on the real `petitd`: a job timeout, overlap
//! under a slow job, catch-up after a restart, and history bounds.

use std::time::Duration;

use petit_proto::v1::job_service_client::JobServiceClient;
use petit_proto::v1::*;
use petit_tests::{eventually, get_run, jobs_dir, Daemon};
use tonic::transport::Channel;
use tonic::Code;

const LIMIT: Duration = Duration::from_secs(20);

async fn trigger(channel: &Channel, job_id: &str) -> Result<Run, tonic::Status> {
    JobServiceClient::new(channel.clone())
        .trigger_job(TriggerJobRequest {
            job_id: job_id.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().run.expect("run"))
}

async fn ended(channel: &Channel, run_id: &str) -> Run {
    eventually(LIMIT, "the run's end", || async {
        let run = get_run(channel, run_id).await;
        (!matches!(run.status(), RunStatus::Queued | RunStatus::Running)).then_some(run)
    })
    .await
}

/// Job `job_id` (written as `<job_id>.yaml`) run once by a petitd of its own: the
/// ended run and its task runs.
async fn run_once(job_id: &str, yaml: &str) -> (Run, Vec<TaskRun>) {
    let jobs = jobs_dir(&[(format!("{job_id}.yaml").as_str(), yaml)]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    let run = trigger(&channel, job_id).await.unwrap();
    let run = ended(&channel, &run.id).await;
    let tasks = petit_tests::task_runs(&channel, &run.id).await;
    (run, tasks)
}

/// The task run of `id` among a run's `tasks`.
fn task<'a>(tasks: &'a [TaskRun], id: &str) -> &'a TaskRun {
    tasks
        .iter()
        .find(|t| t.task_id == id)
        .unwrap_or_else(|| panic!("no task {id}"))
}

async fn runs(channel: &Channel, job_id: &str) -> Vec<Run> {
    JobServiceClient::new(channel.clone())
        .list_job_runs(ListJobRunsRequest {
            job_id: job_id.into(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("runs")
        .into_inner()
        .runs
}

#[tokio::test]
async fn a_job_timeout_fails_the_run_and_queue_overlap_queues_a_manual_trigger() {
    let jobs = jobs_dir(&[
        (
            "capped.yaml",
            "id: capped\ntimeout: 1s\ntasks:\n  - {id: wait, command: sleep, args: ['30']}\n",
        ),
        (
            "queued.yaml",
            "id: queued\noverlap: queue\nmax_queued: 1\ntasks:\n  - {id: wait, command: sleep, args: ['30']}\n",
        ),
    ]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;

    let capped = trigger(&channel, "capped").await.unwrap();
    let capped = ended(&channel, &capped.id).await;
    assert_eq!(capped.status(), RunStatus::Failed);
    assert!(capped.error.starts_with("timeout"), "{}", capped.error);

    let first = trigger(&channel, "queued").await.unwrap();
    let second = trigger(&channel, "queued").await.unwrap();
    assert_eq!(
        second.status(),
        RunStatus::Queued,
        "queued behind the first"
    );
    let third = trigger(&channel, "queued").await.unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted, "{third:?}");
    assert!(
        third.message().contains("max_queued 1"),
        "{}",
        third.message()
    );
    assert_eq!(
        get_run(&channel, &first.id).await.status(),
        RunStatus::Running
    );
}

#[tokio::test]
async fn catch_up_after_a_restart_and_history_bounds_at_start() {
    let jobs = jobs_dir(&[
        (
            "ticks.yaml",
            "id: ticks\nschedule: '@every 1s'\ncatchup: all\ncatchup_window: 1m\nmax_concurrency: 100\ntasks:\n  - {id: t, command: 'true'}\n",
        ),
        (
            "kept.yaml",
            "id: kept\nhistory: {max_runs: 2}\ntasks:\n  - {id: t, command: 'true'}\n",
        ),
    ]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    for _ in 0..4 {
        let run = trigger(&channel, "kept").await.unwrap();
        ended(&channel, &run.id).await;
    }
    eventually(LIMIT, "a scheduled fire", || async {
        (!runs(&channel, "ticks").await.is_empty()).then_some(())
    })
    .await;
    let (data, db) = daemon.stop();
    // Down for at least three fire instants.
    std::thread::sleep(Duration::from_millis(3500));
    let daemon = Daemon::start_on(jobs.path(), data, db, &[]);
    let channel = daemon.channel().await;
    let caught = eventually(LIMIT, "the catch-up runs", || async {
        let caught: Vec<Run> = runs(&channel, "ticks")
            .await
            .into_iter()
            .filter(|r| r.trigger() == TriggerReason::Catchup)
            .collect();
        (caught.len() >= 3).then_some(caught)
    })
    .await;
    let mut instants: Vec<i64> = runs(&channel, "ticks")
        .await
        .iter()
        .map(|r| r.scheduled_for.as_ref().expect("scheduled").seconds)
        .collect();
    let count = instants.len();
    instants.sort();
    instants.dedup();
    assert_eq!(instants.len(), count, "no instant has two runs");
    assert!(caught.iter().all(|r| r.scheduled_for.is_some()));

    // The history bound applied at start: the newest 2 runs of `kept` remain.
    let kept = eventually(LIMIT, "the history bound", || async {
        let kept = runs(&channel, "kept").await;
        (kept.len() == 2).then_some(kept)
    })
    .await;
    assert!(kept.iter().all(|r| r.status() == RunStatus::Succeeded));
}

/// A failed root under forty layers of two tasks, each depending on both tasks of the
/// layer before, and a last task that runs whatever they did (`condition: all_done`):
/// the layers are skipped, and the last task's start gathers the outputs upstream of
/// it. 2^40 paths lead from it to the root; a walk along each (as petitd once made it)
/// never ends. Each task is visited once, and the run ends at once.
#[tokio::test]
async fn a_task_under_a_lattice_of_skipped_tasks_starts_and_the_run_ends() {
    let mut yaml = String::from("id: lattice\ntasks:\n  - {id: root, command: \"false\"}\n");
    let mut previous = vec!["root".to_string()];
    for layer in 0..40 {
        let ids = vec![format!("a{layer}"), format!("b{layer}")];
        for id in &ids {
            yaml += &format!(
                "  - {{id: {id}, command: \"true\", depends_on: [{}]}}\n",
                previous.join(", ")
            );
        }
        previous = ids;
    }
    yaml += &format!(
        "  - {{id: last, command: sh, args: ['-c', 'echo reached'], condition: all_done, depends_on: [{}]}}\n",
        previous.join(", ")
    );
    let (run, tasks) = run_once("lattice", &yaml).await;
    assert_eq!(run.status(), RunStatus::Failed, "{run:?}");
    assert_eq!(tasks.len(), 82);
    let status = |id: &str| task(&tasks, id).status();
    assert_eq!(status("root"), TaskStatus::Failed);
    assert_eq!(status("a0"), TaskStatus::Skipped);
    assert_eq!(status("b39"), TaskStatus::Skipped);
    assert_eq!(status("last"), TaskStatus::Succeeded);
}

/// Outputs reach the tasks downstream, and a placeholder reading a key that a task
/// which succeeded did not write says so (not that the task failed), whether or not
/// that task wrote other keys.
#[tokio::test]
async fn a_missing_output_of_a_task_that_succeeded_is_named_as_such() {
    let yaml = r#"id: outputs
tasks:
  - {id: quiet, command: "true"}
  - {id: speaks, command: sh, args: ["-c", 'echo "rows=42" >> "$PETIT_OUTPUT"']}
  - id: reads_quiet
    command: echo
    args: ['${tasks.quiet.outputs.rows}']
    depends_on: [quiet]
  - id: reads_speaks
    command: sh
    args: ["-c", 'test "$1" = 42 && test "$PETIT_OUTPUT_SPEAKS_ROWS" = 42', "-", '${tasks.speaks.outputs.rows}']
    depends_on: [speaks, quiet]
"#;
    let (run, tasks) = run_once("outputs", yaml).await;
    assert_eq!(run.status(), RunStatus::Failed, "{run:?}");
    assert_eq!(task(&tasks, "reads_speaks").status(), TaskStatus::Succeeded);
    let quiet = task(&tasks, "reads_quiet");
    assert_eq!(quiet.status(), TaskStatus::Failed);
    assert!(
        quiet.error.contains("task 'quiet' wrote no output 'rows'"),
        "{:?}",
        quiet.error
    );
}
