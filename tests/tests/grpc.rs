//! The gRPC API end to end: the real `petitd`, driven by the generated tonic clients.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use petit_proto::v1::job_service_client::JobServiceClient;
use petit_proto::v1::run_service_client::RunServiceClient;
use petit_proto::v1::scheduler_service_client::SchedulerServiceClient;
use petit_proto::v1::watch_events_response::Item;
use petit_proto::v1::*;
use petit_tests::{jobs_dir, trigger, Daemon, SLOW_JOB};
use tonic::transport::Channel;
use tonic::Code;

/// Longest a run of these jobs may take; every wait below is bounded by it.
const RUN_TIMEOUT: Duration = Duration::from_secs(8);

const HELLO: &str = r#"
id: hello
name: Hello
description: Says hello, then shouts
schedule: "0 0 2 * * *"
config:
  greeting: hi
tasks:
  - id: greet
    type: command
    command: echo
    args: ["${config.greeting} from petit"]
  - id: shout
    type: command
    command: sh
    args: ["-c", "echo loud >&2"]
    depends_on: [greet]
"#;

const FAILING: &str = r#"
id: failing
name: Failing
tasks:
  - id: boom
    type: command
    command: sh
    args: ["-c", "echo about to fail; exit 3"]
"#;

fn standard_jobs() -> tempfile::TempDir {
    jobs_dir(&[
        ("hello.yaml", HELLO),
        ("failing.yaml", FAILING),
        ("slow.yaml", SLOW_JOB),
    ])
}

/// Every message of `WatchRun` until the stream ends.
async fn watch_to_end(channel: &Channel, run_id: &str) -> Vec<WatchRunResponse> {
    let mut stream = RunServiceClient::new(channel.clone())
        .watch_run(WatchRunRequest {
            run_id: run_id.into(),
        })
        .await
        .expect("watch_run")
        .into_inner();
    let mut messages = Vec::new();
    tokio::time::timeout(RUN_TIMEOUT, async {
        while let Some(message) = stream.message().await.expect("watch stream") {
            messages.push(message);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("WatchRun did not end; got {messages:?}"));
    messages
}

/// Waits (on `WatchRun`) until task `task_id` of the run is running.
async fn wait_task_running(channel: &Channel, run_id: &str, task_id: &str) {
    let mut stream = RunServiceClient::new(channel.clone())
        .watch_run(WatchRunRequest {
            run_id: run_id.into(),
        })
        .await
        .expect("watch_run")
        .into_inner();
    tokio::time::timeout(RUN_TIMEOUT, async {
        while let Some(message) = stream.message().await.expect("watch stream") {
            let running = message
                .task_runs
                .iter()
                .any(|t| t.task_id == task_id && t.status() == TaskStatus::Running);
            if running {
                return;
            }
        }
        panic!("the run ended before {task_id} ran");
    })
    .await
    .unwrap_or_else(|_| panic!("{task_id} never started"));
}

fn final_run(messages: &[WatchRunResponse]) -> Run {
    messages
        .last()
        .and_then(|m| m.run.clone())
        .expect("a last message with the run")
}

#[tokio::test]
async fn jobs_are_listed_and_described() {
    let jobs = standard_jobs();
    let daemon = Daemon::start(jobs.path());
    let mut client = JobServiceClient::new(daemon.channel().await);

    let list = client
        .list_jobs(ListJobsRequest::default())
        .await
        .expect("list_jobs")
        .into_inner();
    let ids: Vec<&str> = list.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["failing", "hello", "slow"]);
    assert!(list.next_page_token.is_empty());

    let hello = client
        .get_job(GetJobRequest {
            job_id: "hello".into(),
        })
        .await
        .expect("get_job")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(hello.name, "Hello");
    assert_eq!(hello.description, "Says hello, then shouts");
    assert!(hello.source.ends_with("hello.yaml"), "{}", hello.source);
    let schedule = hello.schedule.expect("a scheduled job has a schedule");
    assert_eq!(schedule.expression, "0 0 2 * * *");
    assert_eq!(schedule.next_fire_times.len(), 5);
    let fires: Vec<i64> = schedule.next_fire_times.iter().map(|t| t.seconds).collect();
    assert!(fires.windows(2).all(|w| w[0] < w[1]), "{fires:?}");
    let tasks: Vec<(&str, &[String])> = hello
        .tasks
        .iter()
        .map(|t| (t.id.as_str(), t.depends_on.as_slice()))
        .collect();
    assert_eq!(tasks[0], ("greet", &[][..]));
    assert_eq!(tasks[1], ("shout", &["greet".to_string()][..]));
    assert_eq!(hello.config.get("greeting").map(String::as_str), Some("hi"));
    assert!(hello.last_run.is_none());

    let failing = client
        .get_job(GetJobRequest {
            job_id: "failing".into(),
        })
        .await
        .expect("get_job")
        .into_inner()
        .job
        .expect("job");
    assert!(failing.schedule.is_none(), "a manual job has no schedule");
}

#[tokio::test]
async fn a_list_sends_the_basic_view_unless_asked_for_the_full_one() {
    let jobs = standard_jobs();
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    let mut client = JobServiceClient::new(channel.clone());
    let run = trigger(&channel, "failing", &[]).await;
    petit_tests::eventually(RUN_TIMEOUT, "the run to end", || {
        let channel = channel.clone();
        let id = run.id.clone();
        async move {
            petit_tests::get_run(&channel, &id)
                .await
                .ended_at
                .map(|_| ())
        }
    })
    .await;

    let list = |view: JobView| {
        let mut client = client.clone();
        async move {
            client
                .list_jobs(ListJobsRequest {
                    view: view.into(),
                    ..Default::default()
                })
                .await
                .expect("list_jobs")
                .into_inner()
                .jobs
        }
    };
    let basic = list(JobView::Unspecified).await;
    assert_eq!(basic, list(JobView::Basic).await);
    let full = list(JobView::Full).await;
    assert_eq!(basic.len(), 3);
    for (basic, full) in basic.iter().zip(&full) {
        let got = client
            .get_job(GetJobRequest {
                job_id: full.id.clone(),
            })
            .await
            .expect("get_job")
            .into_inner()
            .job
            .expect("job");
        assert_eq!(&got, full, "the full view is what GetJob sends");
        assert!(
            basic.tasks.is_empty() && basic.config.is_empty(),
            "{basic:?}"
        );
        assert_eq!(basic.task_count as usize, full.tasks.len());
        assert_eq!(
            (&basic.id, &basic.name, basic.enabled, &basic.last_run),
            (&full.id, &full.name, full.enabled, &full.last_run)
        );
        if let Some(schedule) = &basic.schedule {
            let all = &full.schedule.as_ref().expect("schedule").next_fire_times;
            assert_eq!(schedule.next_fire_times, all[..1], "one next fire");
        }
    }
    let hello = full.iter().find(|j| j.id == "hello").expect("hello");
    assert_eq!(hello.tasks.len(), 2);
    assert_eq!(hello.config.get("greeting").map(String::as_str), Some("hi"));
}

#[tokio::test]
async fn job_list_pages() {
    let jobs = standard_jobs();
    let daemon = Daemon::start(jobs.path());
    let mut client = JobServiceClient::new(daemon.channel().await);

    let mut ids = Vec::new();
    let mut token = String::new();
    for _ in 0..3 {
        let page = client
            .list_jobs(ListJobsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("list_jobs")
            .into_inner();
        ids.extend(page.jobs.into_iter().map(|j| j.id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(ids, ["failing", "hello", "slow"]);
    assert!(token.is_empty());

    let bad = client
        .list_jobs(ListJobsRequest {
            page_size: 2,
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .expect_err("a bad page token");
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad}");
}

#[tokio::test]
async fn a_triggered_run_is_watched_to_its_end() {
    let jobs = standard_jobs();
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;

    let run = trigger(&channel, "hello", &[]).await;
    assert_eq!(run.job_id, "hello");
    assert_eq!(run.trigger(), TriggerReason::Manual);

    let messages = watch_to_end(&channel, &run.id).await;
    let first = &messages[0];
    assert!(first.event.is_none(), "the first message is the state");
    let mut first_tasks: Vec<&str> = first.task_runs.iter().map(|t| t.task_id.as_str()).collect();
    first_tasks.sort();
    assert_eq!(first_tasks, ["greet", "shout"]);
    let events: Vec<EventType> = messages[1..]
        .iter()
        .filter_map(|m| m.event.as_ref().map(|e| e.r#type()))
        .collect();
    // Unless the run ended before the watch began, its changes arrive as events.
    if first.run.as_ref().map(|r| r.status()) != Some(RunStatus::Succeeded) {
        assert_eq!(events.last(), Some(&EventType::RunSucceeded), "{events:?}");
    }
    let run = final_run(&messages);
    assert_eq!(run.status(), RunStatus::Succeeded);
    assert!(run.duration.is_some() && run.ended_at.is_some());

    let mut runs = RunServiceClient::new(channel.clone());
    let tasks = runs
        .list_task_runs(ListTaskRunsRequest {
            run_id: run.id.clone(),
        })
        .await
        .expect("list_task_runs")
        .into_inner()
        .task_runs;
    for task in &tasks {
        assert_eq!(task.status(), TaskStatus::Succeeded, "{task:?}");
        assert_eq!(task.attempts, 1, "{task:?}");
        assert_eq!(task.exit_code, Some(0), "{task:?}");
    }

    let logs = runs
        .get_task_logs(GetTaskLogsRequest {
            run_id: run.id.clone(),
            task_id: String::new(),
            ..Default::default()
        })
        .await
        .expect("get_task_logs")
        .into_inner()
        .lines;
    let lines: Vec<(&str, &str, LogStream)> = logs
        .iter()
        .map(|l| (l.task_id.as_str(), l.line.as_str(), l.stream()))
        .collect();
    assert!(
        lines.contains(&("greet", "hi from petit", LogStream::Stdout)),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("shout", "loud", LogStream::Stderr)),
        "{lines:?}"
    );

    // The run is now the job's last run, and in its history.
    let mut jobs_client = JobServiceClient::new(channel.clone());
    let job = jobs_client
        .get_job(GetJobRequest {
            job_id: "hello".into(),
        })
        .await
        .expect("get_job")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(job.last_run.map(|r| r.id), Some(run.id.clone()));
    let history = jobs_client
        .list_job_runs(ListJobRunsRequest {
            job_id: "hello".into(),
            ..Default::default()
        })
        .await
        .expect("list_job_runs")
        .into_inner()
        .runs;
    assert_eq!(history.iter().map(|r| &r.id).collect::<Vec<_>>(), [&run.id]);
}

#[tokio::test]
async fn params_override_config() {
    let jobs = standard_jobs();
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;

    let run = trigger(&channel, "hello", &[("greeting", "bonjour")]).await;
    assert_eq!(
        run.params.get("greeting").map(String::as_str),
        Some("bonjour")
    );
    assert_eq!(
        final_run(&watch_to_end(&channel, &run.id).await).status(),
        RunStatus::Succeeded
    );
    let lines: Vec<String> = RunServiceClient::new(channel)
        .get_task_logs(GetTaskLogsRequest {
            run_id: run.id,
            task_id: "greet".into(),
            ..Default::default()
        })
        .await
        .expect("get_task_logs")
        .into_inner()
        .lines
        .into_iter()
        .map(|l| l.line)
        .collect();
    assert_eq!(lines, ["bonjour from petit"]);
}

#[tokio::test]
async fn a_failing_task_fails_the_run() {
    let jobs = standard_jobs();
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;

    let run = trigger(&channel, "failing", &[]).await;
    let run = final_run(&watch_to_end(&channel, &run.id).await);
    assert_eq!(run.status(), RunStatus::Failed);

    let tasks = RunServiceClient::new(channel)
        .list_task_runs(ListTaskRunsRequest { run_id: run.id })
        .await
        .expect("list_task_runs")
        .into_inner()
        .task_runs;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].status(), TaskStatus::Failed);
    assert_eq!(tasks[0].exit_code, Some(3));
}

#[tokio::test]
async fn follow_task_logs_streams_lines_while_the_task_runs() {
    // The task prints a line, then blocks reading a FIFO until the test writes to it:
    // the first line must arrive while the task is provably still running.
    let scratch = tempfile::tempdir().expect("tempdir");
    let gate = scratch.path().join("gate");
    let status = std::process::Command::new("mkfifo")
        .arg(&gate)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let gated = format!(
        r#"
id: gated
name: Gated
tasks:
  - id: talk
    type: command
    command: sh
    args: ["-c", "echo first; read x < \"$0\"; echo second", "{}"]
"#,
        gate.display()
    );
    let jobs = jobs_dir(&[("gated.yaml", &gated)]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;

    let run = trigger(&channel, "gated", &[]).await;
    let mut follow = RunServiceClient::new(channel.clone())
        .follow_task_logs(FollowTaskLogsRequest {
            run_id: run.id.clone(),
            task_id: "talk".into(),
            ..Default::default()
        })
        .await
        .expect("follow_task_logs")
        .into_inner();
    let first = tokio::time::timeout(RUN_TIMEOUT, follow.message())
        .await
        .expect("the first line in time")
        .expect("stream")
        .and_then(|m| m.line)
        .expect("a line");
    assert_eq!(first.line, "first");
    assert_eq!(first.seq, 1);

    let still_running = RunServiceClient::new(channel.clone())
        .list_task_runs(ListTaskRunsRequest {
            run_id: run.id.clone(),
        })
        .await
        .expect("list_task_runs")
        .into_inner()
        .task_runs;
    assert_eq!(still_running[0].status(), TaskStatus::Running);

    // Opening the FIFO for writing completes once the task has it open for reading.
    tokio::task::spawn_blocking(move || std::fs::write(&gate, "go\n"))
        .await
        .expect("join")
        .expect("write the gate");

    let rest = tokio::time::timeout(RUN_TIMEOUT, async {
        let mut lines = Vec::new();
        while let Some(message) = follow.message().await.expect("stream") {
            lines.extend(message.line.map(|l| l.line));
        }
        lines
    })
    .await
    .expect("the stream ends when the task does");
    assert_eq!(rest, ["second"]);
}

// Multi-threaded: the test thread blocks while petitd stops, and the client connection
// must still answer the server's graceful HTTP/2 shutdown meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_pauses_and_resumes_and_stays_paused_after_a_restart() {
    let jobs = standard_jobs();
    let daemon = Daemon::start(jobs.path());
    let mut client = SchedulerServiceClient::new(daemon.channel().await);

    let state = |s: Option<SchedulerState>| s.expect("state").status();
    let initial = client
        .get_scheduler_state(GetSchedulerStateRequest {})
        .await
        .expect("state")
        .into_inner()
        .state
        .expect("state");
    assert_eq!(initial.status(), SchedulerStatus::Running);
    assert_eq!(initial.job_count, 3);

    let paused = client
        .pause_scheduler(PauseSchedulerRequest {})
        .await
        .expect("pause")
        .into_inner();
    assert_eq!(state(paused.state), SchedulerStatus::Paused);
    let now = client
        .get_scheduler_state(GetSchedulerStateRequest {})
        .await
        .expect("state")
        .into_inner();
    assert_eq!(state(now.state), SchedulerStatus::Paused);

    // An operator's pause outlives a restart of the daemon.
    drop(client);
    let (data, db) = daemon.stop();
    let daemon = Daemon::start_on(jobs.path(), data, db, &[]);
    let mut client = SchedulerServiceClient::new(daemon.channel().await);
    let restarted = client
        .get_scheduler_state(GetSchedulerStateRequest {})
        .await
        .expect("state")
        .into_inner();
    assert_eq!(state(restarted.state), SchedulerStatus::Paused);

    let resumed = client
        .resume_scheduler(ResumeSchedulerRequest {})
        .await
        .expect("resume")
        .into_inner();
    assert_eq!(state(resumed.state), SchedulerStatus::Running);
}

#[tokio::test]
async fn cancel_stops_a_running_task_quickly() {
    let jobs = standard_jobs();
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;

    let run = trigger(&channel, "slow", &[]).await;
    wait_task_running(&channel, &run.id, "nap").await;

    let started = Instant::now();
    let cancelled = RunServiceClient::new(channel.clone())
        .cancel_run(CancelRunRequest {
            run_id: run.id.clone(),
        })
        .await
        .expect("cancel_run")
        .into_inner()
        .run
        .expect("run");
    assert_eq!(cancelled.status(), RunStatus::Cancelled);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cancel took {:?}",
        started.elapsed()
    );

    // Cancelling again is refused: the run has ended.
    let again = RunServiceClient::new(channel)
        .cancel_run(CancelRunRequest { run_id: run.id })
        .await
        .expect_err("a second cancel");
    assert_eq!(again.code(), Code::FailedPrecondition, "{again}");
}

#[tokio::test]
async fn unknown_and_missing_ids_are_refused() {
    let jobs = standard_jobs();
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    let mut jobs = JobServiceClient::new(channel.clone());
    let mut runs = RunServiceClient::new(channel.clone());
    let run_id = || "0000-no-such-run".to_string();

    let cases: Vec<(&str, Code, Result<(), tonic::Status>)> = vec![
        (
            "GetJob unknown",
            Code::NotFound,
            jobs.get_job(GetJobRequest {
                job_id: "nope".into(),
            })
            .await
            .map(drop),
        ),
        (
            "GetJob empty",
            Code::InvalidArgument,
            jobs.get_job(GetJobRequest::default()).await.map(drop),
        ),
        (
            "TriggerJob unknown",
            Code::NotFound,
            jobs.trigger_job(TriggerJobRequest {
                job_id: "nope".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        ),
        (
            "ListJobRuns unknown",
            Code::NotFound,
            jobs.list_job_runs(ListJobRunsRequest {
                job_id: "nope".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        ),
        (
            "GetRun unknown",
            Code::NotFound,
            runs.get_run(GetRunRequest { run_id: run_id() })
                .await
                .map(drop),
        ),
        (
            "GetRun empty",
            Code::InvalidArgument,
            runs.get_run(GetRunRequest::default()).await.map(drop),
        ),
        (
            "ListTaskRuns unknown",
            Code::NotFound,
            runs.list_task_runs(ListTaskRunsRequest { run_id: run_id() })
                .await
                .map(drop),
        ),
        (
            "GetTaskLogs unknown",
            Code::NotFound,
            runs.get_task_logs(GetTaskLogsRequest {
                run_id: run_id(),
                task_id: String::new(),
                ..Default::default()
            })
            .await
            .map(drop),
        ),
        (
            "CancelRun unknown",
            Code::NotFound,
            runs.cancel_run(CancelRunRequest { run_id: run_id() })
                .await
                .map(drop),
        ),
        (
            "WatchRun unknown",
            Code::NotFound,
            runs.watch_run(WatchRunRequest { run_id: run_id() })
                .await
                .map(drop),
        ),
        (
            "FollowTaskLogs unknown",
            Code::NotFound,
            runs.follow_task_logs(FollowTaskLogsRequest {
                run_id: run_id(),
                task_id: String::new(),
                ..Default::default()
            })
            .await
            .map(drop),
        ),
    ];
    for (what, code, result) in cases {
        let status = result.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status}");
        assert!(!status.message().is_empty(), "{what}: no message");
    }

    // A task the run does not have.
    let run = trigger(&channel, "hello", &[]).await;
    let status = runs
        .get_task_logs(GetTaskLogsRequest {
            run_id: run.id,
            task_id: "nope".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown task");
    assert_eq!(status.code(), Code::NotFound, "{status}");
}

#[tokio::test]
async fn watch_events_starts_with_a_snapshot_then_reports_runs() {
    let jobs = standard_jobs();
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;

    let mut events = SchedulerServiceClient::new(channel.clone())
        .watch_events(WatchEventsRequest::default())
        .await
        .expect("watch_events")
        .into_inner();
    let first = tokio::time::timeout(RUN_TIMEOUT, events.message())
        .await
        .expect("a snapshot in time")
        .expect("stream")
        .and_then(|m| m.item);
    let Some(Item::Snapshot(snapshot)) = first else {
        panic!("the first message is not a snapshot: {first:?}");
    };
    assert_eq!(snapshot.jobs.len(), 3);
    assert_eq!(
        snapshot.state.map(|s| s.status()),
        Some(SchedulerStatus::Running)
    );

    let mut quiet = SchedulerServiceClient::new(channel.clone())
        .watch_events(WatchEventsRequest {
            exclude_logs: true,
            ..Default::default()
        })
        .await
        .expect("watch_events without logs")
        .into_inner();

    let run = trigger(&channel, "hello", &[]).await;
    let seen = events_of_run(&mut events, &run.id).await;
    assert_eq!(seen.get(&EventType::RunStarted), Some(&1), "{seen:?}");
    assert_eq!(seen.get(&EventType::TaskSucceeded), Some(&2), "{seen:?}");
    assert!(seen.contains_key(&EventType::LogLine), "{seen:?}");

    let seen = events_of_run(&mut quiet, &run.id).await;
    assert_eq!(seen.get(&EventType::TaskSucceeded), Some(&2), "{seen:?}");
    assert!(
        !seen.contains_key(&EventType::LogLine),
        "exclude_logs: {seen:?}"
    );
}

/// Counts the events of `run_id` by type until the run succeeds.
async fn events_of_run(
    events: &mut tonic::Streaming<WatchEventsResponse>,
    run_id: &str,
) -> HashMap<EventType, usize> {
    let mut seen = HashMap::new();
    tokio::time::timeout(RUN_TIMEOUT, async {
        while let Some(message) = events.message().await.expect("stream") {
            if let Some(Item::Event(event)) = message.item {
                if event.run_id == run_id {
                    *seen.entry(event.r#type()).or_insert(0) += 1;
                    if event.r#type() == EventType::RunSucceeded {
                        return;
                    }
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no RUN_SUCCEEDED; saw {seen:?}"));
    seen
}

#[tokio::test]
async fn health_says_serving() {
    let jobs = standard_jobs();
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in [
        "",
        "petit.v1.JobService",
        "petit.v1.RunService",
        "petit.v1.SchedulerService",
    ] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|s| panic!("health of '{service}': {s}"))
            .into_inner()
            .status();
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving,
            "'{service}'"
        );
    }

    let own = SchedulerServiceClient::new(channel)
        .get_health(GetHealthRequest {})
        .await
        .expect("get_health")
        .into_inner();
    assert_eq!(own.status, "SERVING");
    assert!(!own.version.is_empty());
    assert!(own.uptime.is_some());
}

#[tokio::test]
async fn health_watch_sends_the_status_then_its_changes() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::HealthCheckRequest;
    let jobs = standard_jobs();
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let unknown = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    let err = health
        .check(unknown("nope"))
        .await
        .expect_err("unknown service");
    assert_eq!(err.code(), Code::NotFound);
    let err = health
        .watch(unknown("nope"))
        .await
        .expect_err("unknown service");
    assert_eq!(err.code(), Code::NotFound);

    // A run in flight keeps the daemon up through the grace period after SIGTERM.
    trigger(&channel, "slow", &[]).await;
    let mut watch = health
        .watch(unknown("petit.v1.JobService"))
        .await
        .expect("watch")
        .into_inner();
    let first = watch
        .message()
        .await
        .expect("message")
        .expect("a first status");
    assert_eq!(first.status(), ServingStatus::Serving);
    daemon.signal("TERM");
    let next = tokio::time::timeout(RUN_TIMEOUT, watch.message())
        .await
        .expect("a change within the timeout")
        .expect("message")
        .expect("a second status");
    assert_eq!(next.status(), ServingStatus::NotServing);
}

#[tokio::test]
async fn http1_and_grpc_share_the_port() {
    let jobs = standard_jobs();
    let daemon = Daemon::start(jobs.path());
    let http = reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("http client");

    let health = http
        .get(format!("{}/api/health", daemon.url()))
        .send()
        .await
        .expect("GET /api/health");
    assert_eq!(health.status(), 200);
    let body: serde_json::Value = health.json().await.expect("json");
    assert_eq!(body["status"], "SERVING", "{body}");

    let unknown = http
        .get(format!("{}/no/such/page", daemon.url()))
        .send()
        .await
        .expect("GET unknown");
    assert_eq!(unknown.status(), 404);

    // And gRPC on the very same port.
    let state = SchedulerServiceClient::new(daemon.channel().await)
        .get_scheduler_state(GetSchedulerStateRequest {})
        .await
        .expect("gRPC on the same port");
    assert!(state.into_inner().state.is_some());
}
