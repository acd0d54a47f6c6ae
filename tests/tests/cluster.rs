//! Cluster mode end to end: several real petitd on one host share a real PostgreSQL
//! (started by the test harness from the installed server binaries, or
//! `PETIT_TEST_POSTGRES_URL`), and behave as one scheduler: one run per fire, every
//! run exactly once, limits cluster-wide, takeover of a dead node, fencing of a node
//! that was presumed dead, one view from any node, nothing lost over restarts.
//!
//! Without PostgreSQL binaries these tests skip loudly (and fail under CI).
//! `PETIT_CLUSTER_SECONDS` and `PETIT_CLUSTER_TRIGGERS` lengthen the first two
//! (`make test-long`: 30 s and 1,000).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use petit_proto::v1::job_service_client::JobServiceClient;
use petit_proto::v1::run_service_client::RunServiceClient;
use petit_proto::v1::scheduler_service_client::SchedulerServiceClient;
use petit_proto::v1::*;
use petit_tests::postgres::TestPostgres;
use petit_tests::{
    eventually, get_run, job_runs, jobs_dir, petitctl_run, task_runs, trigger, Daemon,
};
use tempfile::TempDir;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(30);
/// Short, so that the takeover tests take seconds: a node is dead 3 s after its last
/// heartbeat (long enough that a busy CI machine does not starve a live node past it).
const FAST_LEASE: &[&str] = &["--heartbeat", "500ms", "--lease", "3s"];

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fresh database on the shared test PostgreSQL, or `None` (skipped loudly).
fn database(test: &str) -> Option<String> {
    Some(TestPostgres::shared()?.fresh_database(test))
}

/// A petitd node of the cluster at `url`, named `id`, with `NODE_LABEL=<id>` in its
/// tasks' environment.
fn node(url: &str, jobs: &Path, id: &str, extra: &[&str]) -> Daemon {
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().join("node");
    let dir = dir.to_str().expect("utf-8 path");
    let mut args = vec!["--node-id", id, "--node-dir", dir];
    args.extend_from_slice(extra);
    Daemon::start_on_with_env(jobs, data, PathBuf::from(url), &args, &[("NODE_LABEL", id)])
}

async fn nodes(channel: &Channel) -> Vec<Node> {
    SchedulerServiceClient::new(channel.clone())
        .list_nodes(ListNodesRequest {})
        .await
        .expect("list nodes")
        .into_inner()
        .nodes
}

/// The lines of a file the tasks append to (none yet: empty).
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn seconds(ts: &Option<prost_types::Timestamp>) -> i64 {
    ts.as_ref().map_or(0, |t| t.seconds)
}

#[tokio::test]
async fn an_every_second_job_fires_once_per_second_across_three_nodes() {
    let Some(url) = database("every_second") else {
        return;
    };
    let span = env_number("PETIT_CLUSTER_SECONDS", 8) as i64;
    let jobs = jobs_dir(&[(
        "tick.yaml",
        "id: tick\nschedule: '@every 1s'\ntasks:\n  - {id: t, command: 'true'}\n",
    )]);
    let nodes_up: Vec<Daemon> = ["a", "b", "c"]
        .iter()
        .map(|id| node(&url, jobs.path(), id, &[]))
        .collect();
    let channel = nodes_up[0].channel().await;
    // From the first second all three nodes fire, for `span` seconds.
    let all_up = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
        + 1;
    let runs = eventually(
        Duration::from_secs(span as u64 + 20),
        "the fires of the span",
        || async {
            let runs = job_runs(&channel, "tick").await;
            let ended = runs
                .iter()
                .filter(|r| seconds(&r.scheduled_for) >= all_up + span)
                .any(|r| r.status() == RunStatus::Succeeded);
            ended.then_some(runs)
        },
    )
    .await;
    let mut fires: Vec<i64> = runs.iter().map(|r| seconds(&r.scheduled_for)).collect();
    fires.sort();
    let distinct: BTreeSet<i64> = fires.iter().copied().collect();
    assert_eq!(distinct.len(), fires.len(), "a fire ran twice: {fires:?}");
    let window: Vec<i64> = distinct.range(all_up..=all_up + span).copied().collect();
    assert_eq!(
        window,
        (all_up..=all_up + span).collect::<Vec<_>>(),
        "a second without its fire"
    );
    for run in &runs {
        assert_ne!(run.status(), RunStatus::Failed, "{run:?}");
    }
    // Every node is listed, alive, by any node and by petitctl.
    let listed = nodes(&nodes_up[2].channel().await).await;
    let alive: Vec<&str> = listed
        .iter()
        .filter(|n| n.alive)
        .map(|n| n.id.as_str())
        .collect();
    assert_eq!(alive, ["a", "b", "c"], "{listed:?}");
    let (code, out, err) = petitctl_run(&nodes_up[1].url(), &["nodes"], WAIT);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("b (this)") && out.contains("alive"), "{out}");
    let (code, out, err) = petitctl_run(&nodes_up[1].url(), &["state"], WAIT);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3 nodes, 3 alive"), "{out}");
}

#[tokio::test]
async fn manual_triggers_spread_over_three_nodes_each_run_exactly_once() {
    let Some(url) = database("triggers") else {
        return;
    };
    let total = env_number("PETIT_CLUSTER_TRIGGERS", 300);
    let scratch = tempfile::tempdir().expect("tempdir");
    let ledger = scratch.path().join("ran");
    let job = format!(
        "id: once\nmax_concurrency: 64\noverlap: queue\nmax_queued: 100000\ntasks:\n  - id: t\n    command: sh\n    args: ['-c', 'echo \"$PETIT_RUN_ID $NODE_LABEL\" >> {}']\n",
        ledger.display()
    );
    let jobs = jobs_dir(&[("once.yaml", job.as_str())]);
    let nodes_up: Vec<Daemon> = ["a", "b", "c"]
        .iter()
        .map(|id| node(&url, jobs.path(), id, &[]))
        .collect();
    let mut channels = Vec::new();
    for n in &nodes_up {
        channels.push(n.channel().await);
    }
    let mut triggered = HashSet::new();
    let mut pending = Vec::new();
    for i in 0..total {
        let channel = channels[i % channels.len()].clone();
        pending.push(tokio::spawn(async move {
            trigger(&channel, "once", &[]).await.id
        }));
        if pending.len() == 32 {
            for handle in pending.drain(..) {
                triggered.insert(handle.await.expect("trigger"));
            }
        }
    }
    for handle in pending {
        triggered.insert(handle.await.expect("trigger"));
    }
    assert_eq!(triggered.len(), total);
    eventually(WAIT * 4, "every run to have run", || async {
        (lines(&ledger).len() >= total).then_some(())
    })
    .await;
    let ran = lines(&ledger);
    let ids: Vec<&str> = ran
        .iter()
        .map(|l| l.split(' ').next().unwrap_or_default())
        .collect();
    let distinct: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), total, "a run ran twice");
    assert_eq!(
        distinct,
        triggered.iter().map(String::as_str).collect::<HashSet<_>>()
    );
    let mut by_node: BTreeMap<&str, usize> = BTreeMap::new();
    for line in &ran {
        *by_node
            .entry(line.split(' ').nth(1).unwrap_or("?"))
            .or_default() += 1;
    }
    eprintln!("runs per node: {by_node:?}");
    assert!(by_node.len() > 1, "one node ran everything: {by_node:?}");
    let runs = eventually(WAIT, "every run to be recorded as ended", || async {
        let runs = job_runs(&channels[1], "once").await;
        runs.iter()
            .all(|r| r.status() == RunStatus::Succeeded)
            .then_some(runs)
    })
    .await;
    assert_eq!(runs.len(), total);
}

#[tokio::test]
async fn max_concurrency_holds_across_the_cluster() {
    let Some(url) = database("concurrency") else {
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let marks = scratch.path().join("marks");
    let job = format!(
        "id: solo\nmax_concurrency: 1\noverlap: queue\nmax_queued: 100\ntasks:\n  - id: t\n    command: sh\n    args: ['-c', 'echo start >> {0}; sleep 0.1; echo end >> {0}']\n",
        marks.display()
    );
    let jobs = jobs_dir(&[("solo.yaml", job.as_str())]);
    let nodes_up: Vec<Daemon> = ["a", "b", "c"]
        .iter()
        .map(|id| node(&url, jobs.path(), id, &[]))
        .collect();
    let runs = 12;
    for i in 0..runs {
        trigger(&nodes_up[i % 3].channel().await, "solo", &[]).await;
    }
    eventually(WAIT, "every run to end", || async {
        (lines(&marks).len() >= runs * 2).then_some(())
    })
    .await;
    let marks = lines(&marks);
    let expected: Vec<&str> = (0..runs).flat_map(|_| ["start", "end"]).collect();
    assert_eq!(marks, expected, "two runs of the job overlapped");
}

/// A job whose one task writes `<attempt> start`, naps, then `<attempt> end`, with one
/// retry (an interrupted task is retried).
fn napper(marks: &Path, nap: &str) -> String {
    format!(
        "id: nap\ntasks:\n  - id: t\n    command: sh\n    args: ['-c', 'echo \"$PETIT_ATTEMPT start $NODE_LABEL\" >> {0}; sleep {nap}; echo \"$PETIT_ATTEMPT end $NODE_LABEL\" >> {0}']\n    retry: {{max_attempts: 1, delay_secs: 0, condition: always}}\n",
        marks.display()
    )
}

/// Starts node `a` alone and a run of `nap` on it; the run once its task started.
async fn run_on_a(url: &str, jobs: &TempDir, marks: &Path) -> (Daemon, Run) {
    let a = node(url, jobs.path(), "a", FAST_LEASE);
    let run = trigger(&a.channel().await, "nap", &[]).await;
    eventually(WAIT, "the task to start on a", || async {
        lines(marks).iter().any(|l| l == "1 start a").then_some(())
    })
    .await;
    (a, run)
}

#[tokio::test]
async fn a_killed_nodes_run_is_taken_over_and_finishes_elsewhere() {
    let Some(url) = database("takeover") else {
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let marks = scratch.path().join("marks");
    let jobs = jobs_dir(&[("nap.yaml", napper(&marks, "2").as_str())]);
    let (a, run) = run_on_a(&url, &jobs, &marks).await;
    let b = node(&url, jobs.path(), "b", FAST_LEASE);
    let channel = b.channel().await;
    // petitd records a task's process group right after the spawn: crash it after.
    let ledger = a.data.path().join("node").join("node.pids");
    eventually(WAIT, "a to record its task's process", || async {
        (!petit_tests::ledger_groups(&ledger).is_empty()).then_some(())
    })
    .await;
    let stderr_of_a = a.stderr_path.clone();
    let (_a_data, _) = a.crash();
    let ended = eventually(WAIT, "b to take the run over and finish it", || async {
        let run = get_run(&channel, &run.id).await;
        (run.status() == RunStatus::Succeeded).then_some(run)
    })
    .await;
    assert_eq!(ended.status(), RunStatus::Succeeded);
    // a's task died with a (its watchdog); b ran the retry alone.
    assert_eq!(
        lines(&marks),
        ["1 start a", "2 start b", "2 end b"],
        "a's log:\n{}",
        std::fs::read_to_string(&stderr_of_a).unwrap_or_default()
    );
    let tasks = task_runs(&channel, &run.id).await;
    assert_eq!(tasks[0].attempts, 2, "{tasks:?}");
    let listed = nodes(&channel).await;
    let a_row = listed.iter().find(|n| n.id == "a").expect("a listed");
    assert!(!a_row.alive, "{a_row:?}");
}

#[tokio::test]
async fn a_node_stopped_past_its_lease_is_fenced_and_rejoins() {
    let Some(url) = database("fencing") else {
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let marks = scratch.path().join("marks");
    let jobs = jobs_dir(&[("nap.yaml", napper(&marks, "8").as_str())]);
    let (a, run) = run_on_a(&url, &jobs, &marks).await;
    let b = node(&url, jobs.path(), "b", FAST_LEASE);
    let channel = b.channel().await;
    a.signal("STOP");
    eventually(WAIT, "b to take the run over", || async {
        lines(&marks).iter().any(|l| l == "2 start b").then_some(())
    })
    .await;
    a.signal("CONT");
    eventually(WAIT, "a to notice it was fenced", || async {
        a.stderr().contains("lease was taken over").then_some(())
    })
    .await;
    let ended = eventually(WAIT, "b to finish the run", || async {
        let run = get_run(&channel, &run.id).await;
        run.status().is_terminal().then_some(run)
    })
    .await;
    // a's stale "interrupted" was refused: the run is b's, and b finished it.
    assert_eq!(ended.status(), RunStatus::Succeeded, "{ended:?}");
    let rejoined = eventually(WAIT, "a to join again as a new epoch", || async {
        let listed = nodes(&channel).await;
        listed
            .into_iter()
            .find(|n| n.id == "a" && n.alive && n.epoch >= 2)
    })
    .await;
    assert!(rejoined.epoch >= 2);
    assert!(
        !lines(&marks).iter().any(|l| l == "1 end a"),
        "a's task went on after a was fenced: {:?}",
        lines(&marks)
    );
}

#[tokio::test]
async fn a_client_of_one_node_follows_a_task_running_on_another() {
    let Some(url) = database("follow") else {
        return;
    };
    let jobs = jobs_dir(&[(
        "chatty.yaml",
        "id: chatty\ntasks:\n  - id: talk\n    command: sh\n    args: ['-c', 'for i in $(seq 1 40); do echo \"line $i\"; sleep 0.05; done']\n",
    )]);
    let b = node(&url, jobs.path(), "b", &[]);
    let run = trigger(&b.channel().await, "chatty", &[]).await;
    let a = node(&url, jobs.path(), "a", &[]);
    let mut stream = RunServiceClient::new(a.channel().await)
        .follow_task_logs(FollowTaskLogsRequest {
            run_id: run.id.clone(),
            task_id: "talk".into(),
            ..Default::default()
        })
        .await
        .expect("follow on a")
        .into_inner();
    let mut seen = Vec::new();
    let followed = tokio::time::timeout(WAIT, async {
        while let Some(message) = stream.message().await.expect("stream") {
            seen.extend(message.line.map(|l| l.line));
        }
    })
    .await;
    assert!(
        followed.is_ok(),
        "the follow did not end with the run: {seen:?}"
    );
    let expected: Vec<String> = (1..=40).map(|i| format!("line {i}")).collect();
    assert_eq!(seen, expected);
    // The run's end, written by b after the task's, reaches a too.
    let a_channel = a.channel().await;
    eventually(WAIT, "the run's end on a", || async {
        (get_run(&a_channel, &run.id).await.status() == RunStatus::Succeeded).then_some(())
    })
    .await;
}

#[tokio::test]
async fn restarting_every_node_loses_nothing() {
    let Some(url) = database("restart") else {
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let ledger = scratch.path().join("ran");
    let job = format!(
        "id: queue\nmax_concurrency: 1\noverlap: queue\nmax_queued: 100\ntasks:\n  - id: t\n    command: sh\n    args: ['-c', 'sleep 0.2; echo $PETIT_RUN_ID >> {}']\n",
        ledger.display()
    );
    let jobs = jobs_dir(&[("queue.yaml", job.as_str())]);
    let nodes_up: Vec<Daemon> = ["a", "b"]
        .iter()
        .map(|id| node(&url, jobs.path(), id, &[]))
        .collect();
    let mut triggered = Vec::new();
    for i in 0..10 {
        triggered.push(
            trigger(&nodes_up[i % 2].channel().await, "queue", &[])
                .await
                .id,
        );
    }
    // Stopped while most of them wait.
    for n in nodes_up {
        let _ = n.stop();
    }
    let nodes_up: Vec<Daemon> = ["a", "b"]
        .iter()
        .map(|id| node(&url, jobs.path(), id, &[]))
        .collect();
    let channel = nodes_up[0].channel().await;
    let runs = eventually(WAIT, "every run to end after the restart", || async {
        let runs = job_runs(&channel, "queue").await;
        runs.iter()
            .all(|r| r.status().is_terminal())
            .then_some(runs)
    })
    .await;
    assert_eq!(runs.len(), triggered.len());
    let ran: HashSet<String> = lines(&ledger).into_iter().collect();
    for run in &runs {
        match run.status() {
            RunStatus::Succeeded => assert!(ran.contains(&run.id)),
            // A run the stop cut short ends interrupted, never lost or left running.
            status => assert_eq!(status, RunStatus::Interrupted, "{run:?}"),
        }
    }
    assert!(
        runs.iter()
            .filter(|r| r.status() == RunStatus::Succeeded)
            .count()
            >= 8,
        "{runs:?}"
    );
}

trait Terminal {
    fn is_terminal(&self) -> bool;
}

impl Terminal for RunStatus {
    fn is_terminal(&self) -> bool {
        !matches!(
            self,
            RunStatus::Queued | RunStatus::Running | RunStatus::Unspecified
        )
    }
}

#[tokio::test]
async fn a_node_with_other_job_files_says_so_and_leaves_the_job_alone_until_it_matches() {
    let Some(url) = database("definitions") else {
        return;
    };
    let v1 = "id: d\ntasks:\n  - {id: t, command: echo, args: ['v1']}\n";
    let v2 = "id: d\ntasks:\n  - {id: t, command: echo, args: ['v2']}\n";
    let old = jobs_dir(&[("d.yaml", v1)]);
    let new = jobs_dir(&[("d.yaml", v2)]);
    let a = node(&url, old.path(), "a", &[]);
    // b loaded its files last: its definitions are the cluster's.
    let b = node(&url, new.path(), "b", &[]);
    let (a_channel, b_channel) = (a.channel().await, b.channel().await);
    eventually(WAIT, "a to notice its definition of d differs", || async {
        let listed = nodes(&b_channel).await;
        listed
            .iter()
            .any(|n| n.id == "a" && n.mismatched_jobs == ["d"])
            .then_some(())
    })
    .await;
    let refused = JobServiceClient::new(a_channel.clone())
        .trigger_job(TriggerJobRequest {
            job_id: "d".into(),
            ..Default::default()
        })
        .await
        .expect_err("a refuses a job it defines differently");
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("reload"),
        "{}",
        refused.message()
    );
    // b's run runs b's definition, whichever node has room.
    let run = trigger(&b_channel, "d", &[]).await;
    eventually(WAIT, "b's run of d to succeed", || async {
        (get_run(&b_channel, &run.id).await.status() == RunStatus::Succeeded).then_some(())
    })
    .await;
    let logs = RunServiceClient::new(b_channel.clone())
        .get_task_logs(GetTaskLogsRequest {
            run_id: run.id.clone(),
            ..Default::default()
        })
        .await
        .expect("logs")
        .into_inner();
    let text: Vec<String> = logs.lines.into_iter().map(|l| l.line).collect();
    assert_eq!(text, ["v2"]);
    // a's files catch up; a reload there makes it match.
    std::fs::write(old.path().join("d.yaml"), v2).expect("rewrite");
    let (code, _, err) = petitctl_run(&a.url(), &["reload"], WAIT);
    assert_eq!(code, 0, "{err}");
    eventually(WAIT, "every node to match", || async {
        let listed = nodes(&a_channel).await;
        listed
            .iter()
            .all(|n| n.mismatched_jobs.is_empty())
            .then_some(())
    })
    .await;
    trigger(&a_channel, "d", &[]).await;
}

#[tokio::test]
async fn pauses_and_cancels_reach_every_node() {
    let Some(url) = database("pause_cancel") else {
        return;
    };
    let jobs = jobs_dir(&[(
        "slow.yaml",
        "id: slow\ntasks:\n  - {id: nap, command: sleep, args: ['30']}\n",
    )]);
    let b = node(&url, jobs.path(), "b", &[]);
    let b_channel = b.channel().await;
    let run = trigger(&b_channel, "slow", &[]).await;
    eventually(WAIT, "the run to start on b", || async {
        (get_run(&b_channel, &run.id).await.status() == RunStatus::Running).then_some(())
    })
    .await;
    let a = node(&url, jobs.path(), "a", &[]);
    let a_channel = a.channel().await;

    // Pausing on a pauses b.
    SchedulerServiceClient::new(a_channel.clone())
        .pause_scheduler(PauseSchedulerRequest {})
        .await
        .expect("pause on a");
    let state_of = |channel: Channel| async move {
        SchedulerServiceClient::new(channel)
            .get_scheduler_state(GetSchedulerStateRequest {})
            .await
            .expect("state")
            .into_inner()
            .state
            .expect("state")
            .status()
    };
    eventually(WAIT, "b to be paused", || async {
        (state_of(b_channel.clone()).await == SchedulerStatus::Paused).then_some(())
    })
    .await;
    SchedulerServiceClient::new(b_channel.clone())
        .resume_scheduler(ResumeSchedulerRequest {})
        .await
        .expect("resume on b");
    eventually(WAIT, "a to be running again", || async {
        (state_of(a_channel.clone()).await == SchedulerStatus::Running).then_some(())
    })
    .await;
    // Pausing a job on b pauses it on a.
    JobServiceClient::new(b_channel.clone())
        .pause_job(PauseJobRequest {
            job_id: "slow".into(),
        })
        .await
        .expect("pause job on b");
    eventually(WAIT, "a to see the job paused", || async {
        let job = JobServiceClient::new(a_channel.clone())
            .get_job(GetJobRequest {
                job_id: "slow".into(),
            })
            .await
            .expect("job")
            .into_inner()
            .job
            .expect("job");
        job.paused.then_some(())
    })
    .await;

    // Cancelling on a the run b runs: b stops it, a answers with its end.
    let cancelled = RunServiceClient::new(a_channel.clone())
        .cancel_run(CancelRunRequest {
            run_id: run.id.clone(),
        })
        .await
        .expect("cancel on a")
        .into_inner()
        .run
        .expect("run");
    assert_eq!(cancelled.status(), RunStatus::Cancelled, "{cancelled:?}");
}

#[tokio::test]
async fn a_sqlite_history_migrates_into_a_cluster() {
    let Some(url) = database("migrate") else {
        return;
    };
    let jobs = jobs_dir(&[("hello.yaml", petit_tests::HELLO_JOB)]);
    let alone = Daemon::start(jobs.path());
    let channel = alone.channel().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let run = trigger(&channel, "hello", &[]).await;
        eventually(WAIT, "the run to succeed", || async {
            (get_run(&channel, &run.id).await.status() == RunStatus::Succeeded).then_some(())
        })
        .await;
        ids.push(run.id);
    }
    let (data, db) = alone.stop();
    let from = format!("sqlite:{}", db.display());
    let output = std::process::Command::new(petit_tests::bin("petitd"))
        .args(["migrate", "--from", &from, "--to", &url])
        .output()
        .expect("petitd migrate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("migrated 3 runs"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let n = node(&url, jobs.path(), "a", &[]);
    let channel = n.channel().await;
    let runs = job_runs(&channel, "hello").await;
    let mut migrated: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
    migrated.sort();
    ids.sort();
    assert_eq!(migrated, ids);
    let logs = RunServiceClient::new(channel.clone())
        .get_task_logs(GetTaskLogsRequest {
            run_id: ids[0].clone(),
            ..Default::default()
        })
        .await
        .expect("logs")
        .into_inner();
    assert_eq!(
        logs.lines.into_iter().map(|l| l.line).collect::<Vec<_>>(),
        ["hi"]
    );
    // A second migration changes nothing.
    let again = std::process::Command::new(petit_tests::bin("petitd"))
        .args(["migrate", "--from", &from, "--to", &url])
        .output()
        .expect("petitd migrate");
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("3 runs were already in the target"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    drop(data);
}

#[tokio::test]
async fn a_pool_of_two_holds_across_the_cluster() {
    let Some(url) = database("pools") else {
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let marks = scratch.path().join("marks");
    let config = scratch.path().join("petit.yaml");
    std::fs::write(&config, "resources: {pools: {db: 2}}\n").expect("config");
    // Many runs at once, each task holding one of the pool's two slots.
    let job = format!(
        "id: load\nmax_concurrency: 20\noverlap: queue\nmax_queued: 100\ntasks:\n  - id: t\n    command: sh\n    args: ['-c', 'echo + >> {0}; sleep 0.2; echo - >> {0}']\n    resources: {{slots: {{db: 1}}}}\n",
        marks.display()
    );
    let jobs = jobs_dir(&[("load.yaml", job.as_str())]);
    let config = config.to_str().expect("utf-8 path");
    let nodes_up: Vec<Daemon> = ["a", "b", "c"]
        .iter()
        .map(|id| node(&url, jobs.path(), id, &["--config", config]))
        .collect();
    let runs = 12;
    for i in 0..runs {
        trigger(&nodes_up[i % 3].channel().await, "load", &[]).await;
    }
    eventually(WAIT, "every task to end", || async {
        (lines(&marks).len() >= runs * 2).then_some(())
    })
    .await;
    let (mut holding, mut most) = (0i32, 0i32);
    for mark in lines(&marks) {
        holding += if mark == "+" { 1 } else { -1 };
        most = most.max(holding);
    }
    assert!(most <= 2, "{most} tasks held the pool of 2 at once");
    assert_eq!(most, 2, "the pool's two slots were never both used");
}

/// The database goes away under a node with a run going: the node stops its run
/// (fences itself) rather than go on unrecorded, and when the database is back it joins
/// again and the run is resumed (its task retried by its policy) to its end.
#[tokio::test]
async fn a_database_outage_fences_the_node_and_the_run_resumes_after_it() {
    // A server of its own, to stop and start.
    let Some(pg) = TestPostgres::start() else {
        return;
    };
    let url = pg.fresh_database("outage");
    let scratch = tempfile::tempdir().expect("tempdir");
    let marks = scratch.path().join("marks");
    let jobs = jobs_dir(&[("nap.yaml", napper(&marks, "6").as_str())]);
    let (a, run) = run_on_a(&url, &jobs, &marks).await;
    if !pg.stop_server() {
        eprintln!("SKIPPED: an external PostgreSQL cannot be stopped by the test");
        return;
    }
    eventually(WAIT, "a to fence itself", || async {
        a.stderr().contains("lost its cluster lease").then_some(())
    })
    .await;
    pg.start_server();
    eventually(WAIT, "a to join again", || async {
        a.stderr()
            .contains("joined the cluster again")
            .then_some(())
    })
    .await;
    let channel = a.channel().await;
    let ended = eventually(WAIT, "the run to end after the outage", || async {
        let run = get_run(&channel, &run.id).await;
        run.status().is_terminal().then_some(run)
    })
    .await;
    assert_eq!(
        ended.status(),
        RunStatus::Succeeded,
        "{ended:?}\n{}",
        a.stderr()
    );
    assert_eq!(lines(&marks), ["1 start a", "2 start a", "2 end a"]);
}

#[tokio::test]
async fn a_second_live_node_with_the_same_id_is_refused_at_start() {
    let Some(url) = database("same_id") else {
        return;
    };
    let jobs = jobs_dir(&[("hello.yaml", petit_tests::HELLO_JOB)]);
    let _a = node(&url, jobs.path(), "a", &[]);
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().join("node");
    let output = std::process::Command::new(petit_tests::bin("petitd"))
        .arg("--jobs")
        .arg(jobs.path())
        .args(["--db", &url, "--listen", "127.0.0.1:0", "--node-id", "a"])
        .arg("--node-dir")
        .arg(&dir)
        .output()
        .expect("petitd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("node id 'a' is in use by a live node"),
        "{stderr}"
    );
}
