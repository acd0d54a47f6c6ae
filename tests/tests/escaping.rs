//! Task processes that leave their process group (`setsid`, a double fork, a program
//! that daemonizes) are still stopped with their task: on a timeout, a cancel, a
//! shutdown, and after a crash (by the watchdog). Each test's task starts such a
//! process, which writes its pid, then waits; the test checks that process is gone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use petit_proto::v1::run_service_client::RunServiceClient;
use petit_proto::v1::*;
use petit_tests::{alive, eventually, get_run, jobs_dir, ledger_groups, trigger, Daemon};

const WAIT: Duration = Duration::from_secs(20);

/// A job whose task leaves behind, in a session of its own, a sleeper that writes its
/// pid to `pidfile` (`how`: `setsid` or a double fork), then sleeps itself.
fn escaper(pidfile: &Path, how: &str, extra: &str) -> String {
    let pidfile = pidfile.display();
    let leave = match how {
        // A new session (and process group) of its own.
        "setsid" => format!("setsid sh -c \"echo \\$\\$ > {pidfile}; exec sleep 60\" &"),
        // The classic daemon: fork, new session, fork again, the middle one exits.
        _ => format!("(setsid sh -c \"echo \\$\\$ > {pidfile}; exec sleep 60\" &);"),
    };
    format!(
        "id: escape\ntasks:\n  - id: t\n    command: sh\n    args: ['-c', '{leave} sleep 60']\n{extra}"
    )
}

/// Process group of `pid` (field 5 of its stat line).
fn group_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(") ").next()?.split(' ').nth(2)?.parse().ok()
}

/// Waits for the escaped process to write its pid; checks it did leave the group of
/// petitd's task (so the test tests something).
async fn escaped_pid(pidfile: &PathBuf) -> i32 {
    let pid: i32 = eventually(WAIT, "the escaped process to write its pid", || async {
        let text = std::fs::read_to_string(pidfile).ok()?;
        text.ends_with('\n')
            .then(|| text.trim().parse().ok())
            .flatten()
    })
    .await;
    assert!(alive(pid));
    assert_eq!(
        group_of(pid),
        Some(pid),
        "the sleeper leads a group of its own"
    );
    pid
}

async fn gone(pid: i32) {
    eventually(WAIT, "the escaped process to be killed", || async {
        (!alive(pid)).then_some(())
    })
    .await;
}

/// What a test of an escaping task has once the escaped process runs: petitd, a
/// channel, the run, the escaped pid, and the files to keep (jobs, pid file).
type Escaping = (
    Daemon,
    tonic::transport::Channel,
    Run,
    i32,
    (tempfile::TempDir, tempfile::TempDir),
);

/// Starts petitd (with `args`) on the escaper job (`how`, `extra`), triggers it, and
/// waits for the escaped process.
async fn escaping(how: &str, extra: &str, args: &[&str]) -> Escaping {
    let scratch = tempfile::tempdir().expect("tempdir");
    let pidfile = scratch.path().join("pid");
    let job = escaper(&pidfile, how, extra);
    let jobs = jobs_dir(&[("escape.yaml", job.as_str())]);
    let daemon = Daemon::start_with(jobs.path(), args);
    let channel = daemon.channel().await;
    let run = trigger(&channel, "escape", &[]).await;
    let pid = escaped_pid(&pidfile).await;
    (daemon, channel, run, pid, (jobs, scratch))
}

#[tokio::test]
async fn a_timeout_kills_a_process_that_called_setsid() {
    let (_daemon, channel, run, pid, _files) =
        escaping("setsid", "    timeout_secs: 2\n", &[]).await;
    eventually(WAIT, "the run to fail on its timeout", || async {
        (get_run(&channel, &run.id).await.status() == RunStatus::Failed).then_some(())
    })
    .await;
    gone(pid).await;
}

#[tokio::test]
async fn a_cancel_kills_a_double_forked_daemon() {
    let (_daemon, channel, run, pid, _files) = escaping("double-fork", "", &[]).await;
    let cancelled = RunServiceClient::new(channel.clone())
        .cancel_run(CancelRunRequest {
            run_id: run.id.clone(),
        })
        .await
        .expect("cancel")
        .into_inner()
        .run
        .expect("run");
    assert_eq!(cancelled.status(), RunStatus::Cancelled);
    gone(pid).await;
}

#[tokio::test]
async fn a_shutdown_kills_it() {
    let (mut daemon, _channel, _run, pid, _files) =
        escaping("setsid", "", &["--shutdown-grace", "1s"]).await;
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).success(), "{}", daemon.stderr());
    gone(pid).await;
}

#[tokio::test]
async fn a_crash_leaves_it_to_the_watchdog() {
    let (daemon, _channel, _run, pid, _files) = escaping("double-fork", "", &[]).await;
    // The task's group is recorded right after its spawn: crash after that.
    let mut ledger = daemon.db.clone().into_os_string();
    ledger.push(".pids");
    let ledger = PathBuf::from(ledger);
    eventually(WAIT, "the task to be recorded", || async {
        (!ledger_groups(&ledger).is_empty()).then_some(())
    })
    .await;
    // The data directory (and the ledger in it) stays until the watchdog has read it.
    let (_data, _) = daemon.crash();
    gone(pid).await;
}
