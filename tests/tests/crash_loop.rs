//! The crash loop: petitd killed with SIGKILL at random moments while a mix of jobs
//! runs (an every-second job, a DAG, a task that fails once and is retried, outputs
//! passed between tasks, a task that leaves a long-lived child), restarted on the same
//! database each time. Afterwards: every run that had finished before a kill is
//! intact, nothing is left queued or running, no fire instant has two runs, the
//! schedule still fires, no task process is left alive, and SQLite's integrity check
//! passes.
//!
//! The moments are drawn from a seeded generator (`PETIT_CRASH_SEED`, default 1) so a
//! failure can be replayed; `PETIT_CRASH_KILLS` sets the number of kills (5 here, 25 in
//! `make test-long`).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use petit_proto::v1::run_service_client::RunServiceClient;
use petit_proto::v1::*;
use petit_tests::{alive, eventually, job_runs, jobs_dir, task_runs, trigger, Daemon};
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(60);
const JOBS: &[&str] = &["tick", "dag", "flaky", "handoff", "spawner"];

/// A small deterministic generator (xorshift64*): the kill moments of a seed.
struct Moments(u64);

impl Moments {
    fn next_ms(&mut self, from: u64, to: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        from + x % (to - from)
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn job_files(pids: &Path) -> Vec<(String, String)> {
    let pids = pids.display();
    vec![
        (
            "tick.yaml".into(),
            "id: tick\nschedule: '@every 1s'\ntasks:\n  - {id: t, command: 'true'}\n".into(),
        ),
        (
            "dag.yaml".into(),
            "id: dag\nmax_concurrency: 4\ntasks:\n  - {id: a, command: sh, args: ['-c', 'echo a; sleep 0.1']}\n  - {id: b, command: sh, args: ['-c', 'echo b; sleep 0.1'], depends_on: [a]}\n  - {id: c, command: sh, args: ['-c', 'echo c; sleep 0.1'], depends_on: [a]}\n  - {id: d, command: sh, args: ['-c', 'echo d'], depends_on: [b, c]}\n"
                .into(),
        ),
        (
            "flaky.yaml".into(),
            "id: flaky\nmax_concurrency: 4\ntasks:\n  - id: t\n    command: sh\n    args: ['-c', 'sleep 0.1; test \"$PETIT_ATTEMPT\" -ge 2']\n    retry: {max_attempts: 1, delay_secs: 0, condition: always}\n".into(),
        ),
        (
            "handoff.yaml".into(),
            "id: handoff\nmax_concurrency: 4\ntasks:\n  - {id: make, command: sh, args: ['-c', 'echo n=42 >> \"$PETIT_OUTPUT\"']}\n  - {id: use, command: echo, args: ['got ${tasks.make.outputs.n}'], depends_on: [make]}\n".into(),
        ),
        (
            "spawner.yaml".into(),
            format!(
                "id: spawner\nmax_concurrency: 8\ntasks:\n  - id: t\n    command: sh\n    args: ['-c', 'echo $$ >> {pids}; sleep 30 & echo $! >> {pids}; wait']\n"
            ),
        ),
    ]
}

/// Every run of every job, by id.
async fn all_runs(channel: &Channel) -> BTreeMap<String, Run> {
    let mut runs = BTreeMap::new();
    for job in JOBS {
        runs.extend(
            job_runs(channel, job)
                .await
                .into_iter()
                .map(|r| (r.id.clone(), r)),
        );
    }
    runs
}

fn unfinished(run: &Run) -> bool {
    matches!(run.status(), RunStatus::Queued | RunStatus::Running)
}

#[tokio::test]
async fn killed_at_random_moments_nothing_is_lost_or_left_running() {
    let kills = env_number("PETIT_CRASH_KILLS", 5);
    let seed = env_number("PETIT_CRASH_SEED", 1);
    let mut moments = Moments(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let scratch = tempfile::tempdir().expect("tempdir");
    let pids = scratch.path().join("pids");
    let files = job_files(&pids);
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, y)| (n.as_str(), y.as_str()))
        .collect();
    let jobs = jobs_dir(&files);

    let mut daemon = Daemon::start(jobs.path());
    // Runs seen ended before some kill, with their tasks: they must come back as they
    // were.
    let mut finished: BTreeMap<String, (Run, Vec<TaskRun>)> = BTreeMap::new();
    for kill in 0..kills {
        let channel = daemon.channel().await;
        for job in &JOBS[1..] {
            trigger(&channel, job, &[]).await;
        }
        let moment = moments.next_ms(50, 900);
        tokio::time::sleep(Duration::from_millis(moment)).await;
        for (id, run) in all_runs(&channel).await {
            if !unfinished(&run) && !finished.contains_key(&id) {
                let tasks = task_runs(&channel, &id).await;
                finished.insert(id, (run, tasks));
            }
        }
        eprintln!(
            "kill {}/{kills} (seed {seed}) after {moment} ms, {} finished runs so far",
            kill + 1,
            finished.len()
        );
        let (data, db) = daemon.crash();
        daemon = Daemon::start_on(jobs.path(), data, db, &[]);
    }

    let channel = daemon.channel().await;
    // Everything from before the last start settles: resumed, retried or failed.
    let last_start = all_runs(&channel)
        .await
        .values()
        .map(|r| r.created_at.as_ref().map_or(0, |t| t.seconds))
        .max()
        .unwrap_or(0);
    let runs = eventually(
        WAIT,
        "every run from before the last start to end",
        || async {
            let runs = all_runs(&channel).await;
            runs.values()
                .filter(|r| r.created_at.as_ref().map_or(0, |t| t.seconds) <= last_start)
                .all(|r| !unfinished(r))
                .then_some(runs)
        },
    )
    .await;
    for (id, (before, tasks)) in &finished {
        let after = runs
            .get(id)
            .unwrap_or_else(|| panic!("finished run {id} lost"));
        assert_eq!(after, before, "finished run {id} changed");
        assert_eq!(
            &task_runs(&channel, id).await,
            tasks,
            "tasks of {id} changed"
        );
    }
    let mut instants = HashSet::new();
    for run in runs.values().filter(|r| r.job_id == "tick") {
        let at = run.scheduled_for.as_ref().map(|t| (t.seconds, t.nanos));
        assert!(instants.insert(at), "two runs of the fire at {at:?}");
    }
    // The schedule still fires after it all.
    eventually(WAIT, "a tick after the last start", || async {
        all_runs(&channel)
            .await
            .values()
            .any(|r| {
                r.job_id == "tick"
                    && r.status() == RunStatus::Succeeded
                    && r.created_at.as_ref().map_or(0, |t| t.seconds) > last_start
            })
            .then_some(())
    })
    .await;
    // No task process of any incarnation is left (the watchdog, or the next start, kills
    // what a killed daemon left; the running spawner of the last one is cancelled).
    for run in all_runs(&channel).await.values() {
        if run.job_id == "spawner" && run.status() == RunStatus::Running {
            let _ = RunServiceClient::new(channel.clone())
                .cancel_run(CancelRunRequest {
                    run_id: run.id.clone(),
                })
                .await;
        }
    }
    let recorded: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(!recorded.is_empty(), "the spawner never ran");
    eventually(WAIT, "every task process to be gone", || async {
        recorded.iter().all(|&pid| !alive(pid)).then_some(())
    })
    .await;

    let (_data, db) = daemon.stop();
    let conn = rusqlite::Connection::open(&db).expect("open the database");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity check");
    assert_eq!(check, "ok");
}
