//! Tasks that misbehave on purpose: one prints a single 100 MB line, one prints bytes
//! that are not UTF-8, one closes its output and keeps running, one stops itself
//! (SIGSTOP), one leaves a FIFO where its `$PETIT_OUTPUT` file was. petitd stays responsive, stores logs within their bound, keeps text
//! lossily rather than rejecting it, and ends each run as its job says.

use std::time::Duration;

use petit_proto::v1::scheduler_service_client::SchedulerServiceClient;
use petit_proto::v1::*;
use petit_tests::{eventually, get_run, jobs_dir, run_log, task_runs, trigger, Daemon};
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(120);

async fn ended(channel: &Channel, run_id: &str) -> Run {
    eventually(WAIT, "the run to end", || async {
        let run = get_run(channel, run_id).await;
        (!matches!(run.status(), RunStatus::Queued | RunStatus::Running)).then_some(run)
    })
    .await
}

#[tokio::test]
async fn a_100_mb_line_is_kept_within_the_log_bound_and_petitd_keeps_answering() {
    let jobs = jobs_dir(&[(
        "big.yaml",
        "id: big\ntasks:\n  - {id: t, command: sh, args: ['-c', 'head -c 104857600 /dev/zero | tr \"\\\\0\" x']}\n",
    )]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    let run = trigger(&channel, "big", &[]).await;
    // While the line streams in, the API answers.
    let mut answered = 0;
    while matches!(
        get_run(&channel, &run.id).await.status(),
        RunStatus::Queued | RunStatus::Running
    ) {
        SchedulerServiceClient::new(channel.clone())
            .get_health(GetHealthRequest {})
            .await
            .expect("health while the line streams");
        answered += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = ended(&channel, &run.id).await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
    assert!(answered > 0);
    let lines = run_log(&channel, &run.id).await;
    let bytes: usize = lines.iter().map(String::len).sum();
    // The default bound: 1 MiB per stream; the tail of the line is what is kept.
    assert!(bytes <= 1 << 20, "{bytes} bytes stored");
    assert!(bytes >= 512 << 10, "only {bytes} bytes stored");
    assert!(lines.iter().all(|l| l.bytes().all(|b| b == b'x')));
}

#[tokio::test]
async fn bytes_that_are_not_utf8_are_kept_lossily() {
    let jobs = jobs_dir(&[(
        "bad.yaml",
        "id: bad\ntasks:\n  - {id: t, command: printf, args: ['ok \\377\\376 end\\nno newline at the end']}\n",
    )]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    let run = trigger(&channel, "bad", &[]).await;
    assert_eq!(
        ended(&channel, &run.id).await.status(),
        RunStatus::Succeeded
    );
    assert_eq!(
        run_log(&channel, &run.id).await,
        ["ok \u{FFFD}\u{FFFD} end", "no newline at the end"]
    );
}

#[tokio::test]
async fn a_task_that_closes_its_output_and_goes_on_is_waited_for() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let done = scratch.path().join("done");
    let job = format!(
        "id: quiet\ntasks:\n  - {{id: t, command: sh, args: ['-c', 'echo before; exec >&- 2>&-; sleep 1; touch {}']}}\n",
        done.display()
    );
    let jobs = jobs_dir(&[("quiet.yaml", job.as_str())]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    let run = trigger(&channel, "quiet", &[]).await;
    let run = ended(&channel, &run.id).await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
    assert!(done.exists(), "the run ended before its task did");
    assert_eq!(run_log(&channel, &run.id).await, ["before"]);
}

#[tokio::test]
async fn a_task_that_stops_itself_is_ended_by_its_timeout() {
    let jobs = jobs_dir(&[(
        "stopped.yaml",
        "id: stopped\ntasks:\n  - {id: t, command: sh, args: ['-c', 'kill -STOP $$; echo never'], timeout_secs: 1}\n",
    )]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    let run = trigger(&channel, "stopped", &[]).await;
    let run = ended(&channel, &run.id).await;
    assert_eq!(run.status(), RunStatus::Failed, "{run:?}");
    let tasks = task_runs(&channel, &run.id).await;
    assert!(
        tasks[0].error.contains("timed out") || tasks[0].error.contains("timeout"),
        "{tasks:?}"
    );
    // The daemon still works.
    let again = trigger(&channel, "stopped", &[]).await;
    assert_eq!(ended(&channel, &again.id).await.status(), RunStatus::Failed);
}

/// A FIFO in place of the outputs file: reading it would wait for a writer that never
/// comes (and, being a quick file read, on one of the runtime's threads). The run ends,
/// with no outputs, and the next task runs.
#[tokio::test]
async fn a_fifo_left_as_the_outputs_file_is_not_waited_on() {
    let jobs = jobs_dir(&[(
        "fifo.yaml",
        "id: fifo\ntasks:\n  - {id: t, command: sh, args: ['-c', 'rm \"$PETIT_OUTPUT\" && mkfifo \"$PETIT_OUTPUT\"']}\n  - {id: after, command: 'true', depends_on: [t]}\n",
    )]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    let run = trigger(&channel, "fifo", &[]).await;
    let run = ended(&channel, &run.id).await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
    let tasks = task_runs(&channel, &run.id).await;
    assert!(
        tasks
            .iter()
            .all(|t| t.status() == TaskStatus::Succeeded && t.outputs.is_empty()),
        "{tasks:?}"
    );
}
