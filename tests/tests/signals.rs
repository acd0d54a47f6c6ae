//! Stopping petitd mid-run, gracefully (SIGTERM) or not (SIGKILL), then restarting it
//! on the same database: no run stays `running`, and the history from before is intact.

use std::time::{Duration, Instant};

use petit_proto::v1::run_service_client::RunServiceClient;
use petit_proto::v1::*;
use petit_tests::{
    alive, bin, eventually, get_run, jobs_dir, run_to_exit, task_runs, trigger, Daemon, SLOW_JOB,
};
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(8);

const QUICK: &str = r#"
id: quick
name: Quick
tasks:
  - id: say
    type: command
    command: echo
    args: ["done quickly"]
"#;

/// Follows `WatchRun` until `until` holds for a message (or the stream ends); the last
/// run seen.
async fn watch_until(
    channel: &Channel,
    run_id: &str,
    until: impl Fn(&WatchRunResponse) -> bool,
) -> Run {
    let mut stream = RunServiceClient::new(channel.clone())
        .watch_run(WatchRunRequest {
            run_id: run_id.into(),
        })
        .await
        .expect("watch_run")
        .into_inner();
    let mut last = None;
    tokio::time::timeout(WAIT, async {
        while let Some(message) = stream.message().await.expect("watch stream") {
            last = message.run.clone();
            if until(&message) {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("run {run_id}: condition not met in {WAIT:?}"));
    last.expect("at least one message")
}

/// A finished run of `quick` and a run of `slow` whose task is running.
async fn one_done_one_running(channel: &Channel) -> (Run, Run) {
    let quick = trigger(channel, "quick", &[]).await;
    let quick = watch_until(channel, &quick.id, |_| false).await;
    assert_eq!(quick.status(), RunStatus::Succeeded);

    let slow = trigger(channel, "slow", &[]).await;
    watch_until(channel, &slow.id, |m| {
        m.task_runs
            .iter()
            .any(|t| t.task_id == "nap" && t.status() == TaskStatus::Running)
    })
    .await;
    (quick, slow)
}

/// The run from before the restart, unchanged, with its logs.
async fn assert_intact(channel: &Channel, before: &Run) {
    let after = get_run(channel, &before.id).await;
    assert_eq!(&after, before);
    let lines: Vec<String> = RunServiceClient::new(channel.clone())
        .get_task_logs(GetTaskLogsRequest {
            run_id: before.id.clone(),
            task_id: "say".into(),
            ..Default::default()
        })
        .await
        .expect("get_task_logs")
        .into_inner()
        .lines
        .into_iter()
        .map(|l| l.line)
        .collect();
    assert_eq!(lines, ["done quickly"]);
}

// Multi-threaded: the test thread blocks while petitd stops, and the client connection
// must still answer the server's graceful HTTP/2 shutdown meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_interrupts_running_runs_and_exits_cleanly() {
    let jobs = jobs_dir(&[("quick.yaml", QUICK), ("slow.yaml", SLOW_JOB)]);
    let mut daemon = Daemon::start_with(jobs.path(), &["--shutdown-grace", "1s"]);
    let channel = daemon.channel().await;
    let (quick, slow) = one_done_one_running(&channel).await;

    let stopping = Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait_exit(WAIT);
    assert!(status.success(), "{status}:\n{}", daemon.stderr());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "took {:?} to stop:\n{}",
        stopping.elapsed(),
        daemon.stderr()
    );

    assert_interrupted_after_restart(daemon, jobs.path(), &quick, &slow).await;
}

/// Restarts a daemon that has exited on its database: `slow` was interrupted, `quick`
/// is intact.
async fn assert_interrupted_after_restart(
    mut daemon: Daemon,
    jobs: &std::path::Path,
    quick: &Run,
    slow: &Run,
) {
    let data = std::mem::replace(&mut daemon.data, tempfile::tempdir().expect("tempdir"));
    let db = daemon.db.clone();
    drop(daemon);
    let daemon = Daemon::start_on(jobs, data, db, &[]);
    let channel = daemon.channel().await;
    let slow = get_run(&channel, &slow.id).await;
    assert_eq!(slow.status(), RunStatus::Interrupted, "{slow:?}");
    let tasks = task_runs(&channel, &slow.id).await;
    assert_eq!(tasks[0].status(), TaskStatus::Interrupted, "{tasks:?}");
    assert_intact(&channel, quick).await;
}

/// A second signal during the grace period stops the running tasks at once, and the
/// stop is as orderly as after the grace period: exit 0, the run recorded interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_cuts_the_grace_period_short() {
    let jobs = jobs_dir(&[("quick.yaml", QUICK), ("slow.yaml", SLOW_JOB)]);
    // The grace outlasts the task (30 s): only the second signal can interrupt it.
    let mut daemon = Daemon::start_with(jobs.path(), &["--shutdown-grace", "5m"]);
    let channel = daemon.channel().await;
    let (quick, slow) = one_done_one_running(&channel).await;

    daemon.signal("TERM");
    eventually(WAIT, "petitd to start shutting down", || async {
        daemon.stderr().contains("shutting down").then_some(())
    })
    .await;
    daemon.signal("INT");
    let status = daemon.wait_exit(WAIT);
    assert!(status.success(), "{status}:\n{}", daemon.stderr());
    assert!(
        daemon.stderr().contains("asked again to stop"),
        "{}",
        daemon.stderr()
    );
    assert_interrupted_after_restart(daemon, jobs.path(), &quick, &slow).await;
}

/// A task whose process outlives a `kill -9` of petitd is killed at once by petitd's
/// watchdog, without waiting for a restart.
#[tokio::test]
async fn after_sigkill_the_watchdog_kills_orphaned_task_processes() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let pidfile = scratch.path().join("nap.pid");
    let (daemon, pid, _run, jobs) = crash_ready(&pidfile).await;
    let watchdog = watchdog_of(daemon.child.id() as i32).expect("petitd runs a watchdog");
    // The data directory (and the ledger in it) stays until the watchdog has read it.
    let (_data, _) = daemon.crash();
    eventually(
        WAIT,
        "the watchdog to kill the orphaned task process",
        || async { (!alive(pid)).then_some(()) },
    )
    .await;
    eventually(WAIT, "the watchdog to exit", || async {
        (!alive(watchdog)).then_some(())
    })
    .await;
    drop(jobs);
}

/// A second petitd started on a database in use stops (the first holds its lock), and
/// so does the watchdog it forked: unarmed, it leaves the ledger, which is the first
/// daemon's, alone, and the first daemon's task goes on.
#[tokio::test]
async fn a_refused_second_daemon_leaves_the_first_ones_tasks_alone() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let pidfile = scratch.path().join("nap.pid");
    let (first, pid, _run, jobs) = crash_ready(&pidfile).await;
    let output = run_to_exit(
        std::process::Command::new(bin("petitd"))
            .arg("--jobs")
            .arg(jobs.path())
            .arg("--db")
            .arg(&first.db)
            .args(["--listen", "127.0.0.1:0"]),
        WAIT,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in use by another petitd"), "{stderr}");
    // petitd waits for its watchdog before it exits: the watchdog is gone too.
    assert!(alive(pid), "the first daemon's task was killed:\n{stderr}");
    let mut ledger = first.db.clone().into_os_string();
    ledger.push(".pids");
    assert!(
        petit_tests::ledger_groups(std::path::Path::new(&ledger)).contains(&pid),
        "the first daemon's ledger lost its task"
    );
    // The first daemon's own watchdog still does its work.
    let (_data, _) = first.crash();
    eventually(
        WAIT,
        "the first daemon's watchdog to kill its task",
        || async { (!alive(pid)).then_some(()) },
    )
    .await;
}

/// A clean stop ends the watchdog with petitd.
#[tokio::test]
async fn the_watchdog_ends_with_a_clean_stop() {
    let jobs = jobs_dir(&[("quick.yaml", QUICK)]);
    let mut daemon = Daemon::start(jobs.path());
    let watchdog = watchdog_of(daemon.child.id() as i32).expect("petitd runs a watchdog");
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).success());
    eventually(WAIT, "the watchdog to exit", || async {
        (!alive(watchdog)).then_some(())
    })
    .await;
}

/// A petitd with a task running, crashed only once the task's process is recorded in
/// the ledger; the task process's pid, its run, the jobs.
async fn crash_ready(
    pidfile: &std::path::Path,
) -> (Daemon, i32, petit_proto::v1::Run, tempfile::TempDir) {
    let job = format!(
        "id: orphan\ntasks:\n  - id: nap\n    command: sh\n    args: ['-c', 'echo $$ > {}; exec sleep 30']\n",
        pidfile.display()
    );
    let jobs = jobs_dir(&[("orphan.yaml", job.as_str())]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    let run = trigger(&channel, "orphan", &[]).await;
    let pid: i32 = eventually(WAIT, "the task to write its pid", || async {
        let text = std::fs::read_to_string(pidfile).ok()?;
        text.ends_with('\n')
            .then(|| text.trim().parse().ok())
            .flatten()
    })
    .await;
    // petitd records each task process group in `<db>.pids` right after spawning it; a
    // crash in the microseconds before that record cannot be recovered from, so the
    // test crashes the daemon only once the record is there.
    let mut ledger = daemon.db.clone().into_os_string();
    ledger.push(".pids");
    let ledger = std::path::PathBuf::from(ledger);
    eventually(WAIT, "petitd to record the task process", || async {
        petit_tests::ledger_groups(&ledger)
            .contains(&pid)
            .then_some(())
    })
    .await;
    (daemon, pid, run, jobs)
}

/// The pid of petitd's watchdog: its child named `petitd-watchdog`.
fn watchdog_of(petitd: i32) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid: i32 = stat.rsplit(") ").next()?.split(' ').nth(1)?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (ppid == petitd && comm.trim_end() == "petitd-watchdog").then_some(pid)
        })
}

/// A task whose process outlives a `kill -9` of petitd and of its watchdog (both
/// killed at once, as by an out-of-memory kill of the whole service) is killed by the
/// next start, before its run resumes.
#[tokio::test]
async fn after_sigkill_the_restart_kills_orphaned_task_processes() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let pidfile = scratch.path().join("nap.pid");
    let (daemon, pid, run, jobs) = crash_ready(&pidfile).await;
    let watchdog = watchdog_of(daemon.child.id() as i32).expect("petitd runs a watchdog");
    nix_kill(watchdog);
    eventually(WAIT, "the watchdog to die", || async {
        (!alive(watchdog)).then_some(())
    })
    .await;
    let (data, db) = daemon.crash();
    assert!(
        alive(pid),
        "the task process outlives a kill -9 of petitd and its watchdog"
    );

    let daemon = Daemon::start_on(jobs.path(), data, db, &[]);
    eventually(WAIT, "the orphaned task process to be killed", || async {
        (!alive(pid)).then_some(())
    })
    .await;
    let channel = daemon.channel().await;
    let settled = eventually(WAIT, "the crashed run to settle", || async {
        let run = get_run(&channel, &run.id).await;
        (!matches!(run.status(), RunStatus::Running | RunStatus::Queued)).then_some(run)
    })
    .await;
    assert_eq!(settled.status(), RunStatus::Failed, "{settled:?}");
}

/// SIGKILL to one process.
fn nix_kill(pid: i32) {
    let status = std::process::Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -KILL {pid} failed");
}

#[tokio::test]
async fn after_sigkill_the_unfinished_run_settles_on_restart() {
    let jobs = jobs_dir(&[("quick.yaml", QUICK), ("slow.yaml", SLOW_JOB)]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    let (quick, slow) = one_done_one_running(&channel).await;

    let (data, db) = daemon.crash();
    let daemon = Daemon::start_on(jobs.path(), data, db, &[]);
    let channel = daemon.channel().await;
    // The engine settles what the crash left behind (the task did not finish, and has
    // no retry): the run must end, whichever way its recovery decides.
    let settled = eventually(WAIT, "the crashed run to settle", || async {
        let run = get_run(&channel, &slow.id).await;
        let going = matches!(run.status(), RunStatus::Running | RunStatus::Queued);
        (!going).then_some(run)
    })
    .await;
    assert!(
        matches!(settled.status(), RunStatus::Interrupted | RunStatus::Failed),
        "{settled:?}"
    );
    assert!(settled.ended_at.is_some());
    assert_intact(&channel, &quick).await;
}
