//! The cluster contract on a real PostgreSQL (the plain `Store` contract is the
//! conformance suite's, in store/tests.rs): several `PostgresStore`s on one database
//! as several nodes. Nothing here sleeps: a heartbeat is aged by SQL instead of by
//! waiting, and notes are waited for with a deadline.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::broadcast;

use super::PostgresStore;
use crate::core::{LogStream, RunStatus, TaskStatus, TriggerReason};
use crate::store::tests::{postgres_database, test_options};
use crate::store::{
    ClaimLimits, ClusterStore, LogLine, NodeInfo, Note, NoteKind, Run, Store, StoreError,
    StoreResult, TaskRun,
};

/// What the cluster tests call a lease: long enough that no node expires by itself
/// during a test (expiry is made by [`age`]).
const LEASE: Duration = Duration::from_secs(60);
/// How long a note may take to arrive before the test fails.
const NOTE_DEADLINE: Duration = Duration::from_secs(20);

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 123_456_789)
        .single()
        .expect("valid time")
}

fn run(id: &str, job_id: &str, created: i64) -> Run {
    Run {
        id: id.into(),
        job_id: job_id.into(),
        status: RunStatus::Queued,
        trigger: TriggerReason::Manual,
        params: BTreeMap::new(),
        created_at: at(created),
        started_at: None,
        ended_at: None,
        error: None,
        triggered_by: None,
        scheduled_for: None,
        definition: None,
        retry_of: None,
    }
}

fn node(id: &str) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        address: format!("{id}.example:8565"),
        version: "test".into(),
    }
}

/// `n` stores on one fresh database, or `None` without PostgreSQL (skipped loudly).
async fn stores(name: &str, n: usize) -> Option<Vec<Arc<PostgresStore>>> {
    let url = postgres_database(name)?;
    let mut stores = Vec::new();
    for _ in 0..n {
        let store = PostgresStore::connect(&url, test_options())
            .await
            .expect("connect");
        stores.push(Arc::new(store));
    }
    Some(stores)
}

/// Makes node `id`'s latest heartbeat an hour old: expired for any test lease.
async fn age(store: &PostgresStore, id: &str) {
    store
        .sql(&format!(
            "UPDATE nodes SET heartbeat_at = now() - interval '1 hour' WHERE id = '{id}'"
        ))
        .await
        .expect("age a heartbeat");
}

/// The next note matching `wanted`, within the deadline.
async fn note_where(notes: &mut broadcast::Receiver<Note>, wanted: impl Fn(&Note) -> bool) -> Note {
    let deadline = tokio::time::Instant::now() + NOTE_DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, notes.recv()).await {
            Ok(Ok(note)) if wanted(&note) => return note,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("notes channel: {e}"),
            Err(_) => panic!("no matching note within {NOTE_DEADLINE:?}"),
        }
    }
}

#[tokio::test]
async fn each_fire_is_taken_by_exactly_one_node() -> StoreResult<()> {
    let Some(stores) = stores("fires", 2).await else {
        return Ok(());
    };
    stores[0].join(&node("a")).await?;
    stores[1].join(&node("b")).await?;
    let fire = |node: &str, n: i64| Run {
        trigger: TriggerReason::Schedule,
        scheduled_for: Some(at(n)),
        ..run(&format!("{node}-{n}"), "every-second", n)
    };
    for n in 0..40 {
        let (a, b) = tokio::join!(
            stores[0].create_run(fire("a", n), vec![]),
            stores[1].create_run(fire("b", n), vec![])
        );
        let won = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "fire {n}: {a:?} {b:?}");
        for result in [a, b] {
            if let Err(e) = result {
                assert!(e.is_fire_taken(), "fire {n}: {e:?}");
            }
        }
    }
    let fires = stores[1]
        .fires_between("every-second", at(0), at(39))
        .await?;
    assert_eq!(fires, (0..40).map(at).collect::<Vec<_>>());
    Ok(())
}

/// Three nodes, three claimers each, claim and finish runs of three jobs as fast as
/// they can, all at once, while an observer counts the running runs per job in one
/// snapshot after another: no count ever exceeds a job's limit, every run is
/// claimed exactly once, and all finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_hold_max_concurrency_cluster_wide() -> StoreResult<()> {
    const RUNS: usize = 300;
    const CLAIMERS_PER_NODE: usize = 3;
    let Some(stores) = stores("claims", 3).await else {
        return Ok(());
    };
    let limits = ClaimLimits {
        max_running: 100,
        per_job: HashMap::from([("a".into(), 1), ("b".into(), 2), ("c".into(), 3)]),
    };
    for (n, store) in stores.iter().enumerate() {
        store.join(&node(&format!("n{n}"))).await?;
    }
    for n in 0..RUNS {
        let job = ["a", "b", "c"][n % 3];
        stores[n % 3]
            .create_run(run(&format!("r{n:03}"), job, n as i64), vec![])
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let observer = {
        let store = Arc::clone(&stores[0]);
        let done = Arc::clone(&done);
        let limits = limits.clone();
        tokio::spawn(async move {
            let mut checks = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let rows = store
                    .sql(
                        "SELECT job_id, count(*) FROM runs WHERE status = 'running'
                         GROUP BY job_id",
                    )
                    .await?;
                for row in rows {
                    let (job, running): (String, i64) = (row.get(0), row.get(1));
                    assert!(
                        running <= i64::from(limits.per_job[&job]),
                        "{job}: {running} running at once"
                    );
                }
                checks += 1;
            }
            Ok::<_, StoreError>(checks)
        })
    };
    let started = Instant::now();
    let mut workers = Vec::new();
    for store in &stores {
        for _ in 0..CLAIMERS_PER_NODE {
            let store = Arc::clone(store);
            let limits = limits.clone();
            workers.push(tokio::spawn(async move {
                let mut claimed = Vec::new();
                loop {
                    assert!(Instant::now() < deadline, "claiming does not finish");
                    match store.claim_next(&limits, at(1000)).await? {
                        Some(run) => {
                            let (_, running) = store.job_counts(&run.job_id).await?;
                            let limit = limits.per_job[&run.job_id] as usize;
                            assert!(running <= limit, "{}: {running} running", run.job_id);
                            let ended = Run {
                                status: RunStatus::Succeeded,
                                ended_at: Some(at(1001)),
                                ..run.clone()
                            };
                            store.update_run(ended).await?;
                            claimed.push(run.id);
                        }
                        None => {
                            if store.queued_runs().await?.is_empty() {
                                return Ok::<_, StoreError>(claimed);
                            }
                            // Other claimers hold the slots, and end their runs at once.
                            tokio::task::yield_now().await;
                        }
                    }
                }
            }));
        }
    }
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.expect("worker")?);
    }
    let elapsed = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let checks = observer.await.expect("observer")?;
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "a run claimed twice");
    assert_eq!(all.len(), RUNS, "every run claimed");
    for job in ["a", "b", "c"] {
        assert_eq!(stores[1].job_counts(job).await?, (0, 0), "{job}");
    }
    eprintln!(
        "3 nodes x {CLAIMERS_PER_NODE} claimers claimed and ended {RUNS} runs in {elapsed:?} \
         ({:.0} claims/s; {checks} counts by the observer)",
        RUNS as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// A node's share: `max_running` counts the runs this node claimed, not the others'.
#[tokio::test]
async fn max_running_is_each_nodes_share() -> StoreResult<()> {
    let Some(stores) = stores("share", 2).await else {
        return Ok(());
    };
    stores[0].join(&node("a")).await?;
    stores[1].join(&node("b")).await?;
    for n in 0..6 {
        stores[0]
            .create_run(run(&format!("r{n}"), "j", n), vec![])
            .await?;
    }
    let limits = ClaimLimits {
        max_running: 2,
        per_job: HashMap::from([("j".into(), 10)]),
    };
    for store in &stores {
        for _ in 0..2 {
            assert!(store.claim_next(&limits, at(50)).await?.is_some());
        }
        assert_eq!(store.claim_next(&limits, at(50)).await?, None, "share full");
    }
    assert_eq!(stores[0].job_counts("j").await?, (2, 4));
    let nodes = stores[0].nodes(LEASE).await?;
    let running: Vec<(String, u32)> = nodes.iter().map(|n| (n.id.clone(), n.running)).collect();
    assert_eq!(running, [("a".into(), 2), ("b".into(), 2)]);
    Ok(())
}

#[tokio::test]
async fn a_taken_over_node_is_fenced() -> StoreResult<()> {
    let Some(stores) = stores("fencing", 2).await else {
        return Ok(());
    };
    let (a, b) = (&stores[0], &stores[1]);
    let (lease_a, _) = a.join(&node("a")).await?;
    b.join(&node("b")).await?;
    a.create_run(run("r1", "j", 1), vec![TaskRun::pending("r1", "t")])
        .await?;
    let claimed = a.claim_run("r1", at(2)).await?.expect("claimed");
    assert!(a.heartbeat().await?);

    age(b, "a").await;
    let taken = b.take_over_expired(LEASE).await?;
    assert_eq!(taken, vec![claimed.clone()], "the run, as it was stored");
    assert!(!a.heartbeat().await?, "a's epoch is over");
    assert_eq!(
        a.lease(),
        Some(lease_a),
        "the lease a still believes it has"
    );

    // a's stale writes: refused, and nothing of them stored.
    let stale = Run {
        status: RunStatus::Failed,
        ended_at: Some(at(3)),
        ..claimed.clone()
    };
    let task = TaskRun {
        status: TaskStatus::Failed,
        attempts: 1,
        ..TaskRun::pending("r1", "t")
    };
    let line = LogLine {
        run_id: "r1".into(),
        seq: 1,
        task_id: "t".into(),
        attempt: 1,
        stream: LogStream::Stdout,
        line: "stale".into(),
        time: at(3),
    };
    for error in [
        a.update_run(stale).await.expect_err("stale run write"),
        a.update_task_run(task.clone())
            .await
            .expect_err("stale task write"),
        a.append_logs(vec![line.clone()])
            .await
            .expect_err("stale log write"),
    ] {
        assert!(
            matches!(&error, StoreError::Fenced { run_id } if run_id == "r1"),
            "{error:?}"
        );
    }
    let lost = a
        .claim_run("r1", at(4))
        .await
        .expect_err("a fenced node claims nothing");
    assert!(matches!(lost, StoreError::LeaseLost { .. }), "{lost:?}");
    assert_eq!(b.get_run("r1").await?, Some(claimed.clone()));
    assert_eq!(b.task_runs("r1").await?, vec![TaskRun::pending("r1", "t")]);
    assert!(b.logs("r1", None).await?.is_empty());

    // The new owner writes as usual.
    b.update_task_run(task.clone()).await?;
    b.append_logs(vec![line]).await?;
    assert_eq!(b.task_runs("r1").await?, vec![task]);
    assert_eq!(b.logs("r1", None).await?.len(), 1);

    // a comes back as a new epoch, and claims again.
    let (again, runs) = a.join(&node("a")).await?;
    assert_eq!((again.epoch, runs), (2, vec![]));
    assert!(a.heartbeat().await?);
    Ok(())
}

/// Two live nodes take one dead node over at once: each of its runs goes to exactly
/// one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_runs_go_to_exactly_one_taker() -> StoreResult<()> {
    let Some(stores) = stores("takeover", 3).await else {
        return Ok(());
    };
    let (dead, b, c) = (&stores[0], &stores[1], &stores[2]);
    dead.join(&node("dead")).await?;
    b.join(&node("b")).await?;
    c.join(&node("c")).await?;
    let mut ids = Vec::new();
    for n in 0..20 {
        let id = format!("r{n:02}");
        dead.create_run(run(&id, "j", n), vec![]).await?;
        dead.claim_run(&id, at(100)).await?.expect("claimed");
        ids.push(id);
    }
    age(b, "dead").await;
    let (from_b, from_c) = tokio::join!(b.take_over_expired(LEASE), c.take_over_expired(LEASE));
    let (from_b, from_c) = (from_b?, from_c?);
    assert!(
        from_b.is_empty() || from_c.is_empty(),
        "split: {} and {}",
        from_b.len(),
        from_c.len()
    );
    let mut taken: Vec<String> = from_b.iter().chain(&from_c).map(|r| r.id.clone()).collect();
    taken.sort();
    assert_eq!(taken, ids);
    let nodes = b.nodes(LEASE).await?;
    let alive: Vec<(&str, bool, u32)> = nodes
        .iter()
        .map(|n| (n.id.as_str(), n.alive, n.running))
        .collect();
    let winner = if from_b.is_empty() { "c" } else { "b" };
    let expected: Vec<(&str, bool, u32)> = [("b", true), ("c", true), ("dead", false)]
        .into_iter()
        .map(|(id, alive)| (id, alive, if id == winner { 20 } else { 0 }))
        .collect();
    assert_eq!(alive, expected);
    assert!(
        b.take_over_expired(LEASE).await?.is_empty(),
        "nothing left to take"
    );
    Ok(())
}

#[tokio::test]
async fn a_restarted_node_takes_its_own_runs_back() -> StoreResult<()> {
    let Some(stores) = stores("restart", 2).await else {
        return Ok(());
    };
    let (before, after) = (&stores[0], &stores[1]);
    let (first, _) = before.join(&node("a")).await?;
    assert_eq!(first.epoch, 1);
    for id in ["r1", "r2"] {
        before.create_run(run(id, "j", 1), vec![]).await?;
        before.claim_run(id, at(5)).await?.expect("claimed");
    }
    // The process "crashed": the same id joins again from a new store.
    let (second, runs) = after.join(&node("a")).await?;
    assert_eq!(second.epoch, 2);
    let mut ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["r1", "r2"]);
    assert!(!before.heartbeat().await?, "the old epoch is fenced");
    let ended = Run {
        status: RunStatus::Interrupted,
        ended_at: Some(at(6)),
        ..runs[0].clone()
    };
    let stale = before.update_run(ended.clone()).await;
    assert!(matches!(stale, Err(StoreError::Fenced { .. })), "{stale:?}");
    after.update_run(ended).await?;
    let nodes = after.nodes(LEASE).await?;
    assert_eq!(nodes.len(), 1, "one row per node id: {nodes:?}");
    assert_eq!((nodes[0].epoch, nodes[0].running), (2, 1));
    Ok(())
}

#[tokio::test]
async fn membership_leave_definitions_and_cancel_requests() -> StoreResult<()> {
    let Some(stores) = stores("membership", 2).await else {
        return Ok(());
    };
    let (a, b) = (&stores[0], &stores[1]);
    assert_eq!(a.lease(), None);
    assert!(!a.heartbeat().await?, "not joined: no lease to renew");
    a.join(&node("a")).await?;
    b.join(&node("b")).await?;
    let mut b_notes = b.notes();

    a.publish_definitions(&HashMap::from([
        ("j".into(), "h1".into()),
        ("k".into(), "h2".into()),
    ]))
    .await?;
    b.publish_definitions(&HashMap::from([("j".into(), "h3".into())]))
        .await?;
    assert_eq!(
        a.definitions().await?,
        HashMap::from([("j".into(), "h3".into()), ("k".into(), "h2".into())])
    );
    a.set_mismatched(&["k".into(), "j".into()]).await?;

    a.create_run(run("r1", "j", 1), vec![]).await?;
    assert!(!b.request_cancel("r1").await?, "queued, not running");
    a.claim_run("r1", at(2)).await?;
    assert!(a.cancel_requests().await?.is_empty());
    assert!(b.request_cancel("r1").await?);
    assert!(!b.request_cancel("unknown").await?);
    assert_eq!(
        a.cancel_requests().await?,
        ["r1"],
        "kept for an owner that missed it"
    );
    assert!(b.cancel_requests().await?.is_empty(), "b does not run it");
    assert_eq!(a.job_counts("j").await?, (0, 1));

    let nodes = b.nodes(LEASE).await?;
    assert_eq!(nodes.len(), 2);
    let na = &nodes[0];
    assert_eq!(
        (
            na.id.as_str(),
            na.epoch,
            na.address.as_str(),
            na.alive,
            na.left
        ),
        ("a", 1, "a.example:8565", true, false)
    );
    assert_eq!(
        (na.running, na.mismatched.clone()),
        (1, vec!["j".into(), "k".into()])
    );
    assert!(na.heartbeat_at >= na.joined_at);

    a.leave().await?;
    assert_eq!(a.lease(), None);
    let nodes = b.nodes(LEASE).await?;
    assert_eq!((nodes[0].alive, nodes[0].left), (false, true));
    // A node that left gives its runs up at once: no lease to wait for.
    let taken = b.take_over_expired(LEASE).await?;
    assert_eq!(taken.len(), 1);
    // The notes a's calls sent, as b saw them (its own are not among them).
    note_where(&mut b_notes, |n| {
        n.from == "a" && n.what == NoteKind::Definitions
    })
    .await;
    note_where(&mut b_notes, |n| n.from == "a" && n.what == NoteKind::Nodes).await;
    Ok(())
}

/// A write on one node is a note on the other, sent by the writer's node id; a
/// store's own notes are dropped; a lost notes connection comes back with a Resync.
#[tokio::test]
async fn notes_reach_the_other_nodes() -> StoreResult<()> {
    let Some(stores) = stores("notes", 2).await else {
        return Ok(());
    };
    let (a, b) = (&stores[0], &stores[1]);
    a.join(&node("a")).await?;
    b.join(&node("b")).await?;
    let mut a_notes = a.notes();
    let mut b_notes = b.notes();

    a.create_run(run("r1", "j", 1), vec![TaskRun::pending("r1", "t")])
        .await?;
    let from_a = |what: NoteKind| Note {
        from: "a".into(),
        what,
    };
    assert_eq!(
        note_where(&mut b_notes, |_| true).await,
        from_a(NoteKind::Run {
            run_id: "r1".into()
        })
    );
    assert_eq!(
        note_where(&mut b_notes, |_| true).await,
        from_a(NoteKind::Queue)
    );
    a.claim_run("r1", at(2)).await?;
    a.update_task_run(TaskRun {
        status: TaskStatus::Running,
        ..TaskRun::pending("r1", "t")
    })
    .await?;
    a.append_logs(vec![LogLine {
        run_id: "r1".into(),
        seq: 1,
        task_id: "t".into(),
        attempt: 1,
        stream: LogStream::Stdout,
        line: "hello".into(),
        time: at(3),
    }])
    .await?;
    for what in [
        NoteKind::Run {
            run_id: "r1".into(),
        },
        NoteKind::Task {
            run_id: "r1".into(),
            task_id: "t".into(),
        },
        NoteKind::Logs {
            run_id: "r1".into(),
        },
    ] {
        assert_eq!(note_where(&mut b_notes, |_| true).await, from_a(what));
    }
    // a's own notes were dropped: the first note a hears is b's, sent after them all.
    b.set_job_paused("j", true).await?;
    assert_eq!(
        note_where(&mut a_notes, |_| true).await,
        Note {
            from: "b".into(),
            what: NoteKind::Paused
        }
    );

    // Cut b's notes connection (its last statement was LISTEN): b reconnects and says
    // that notes may have been lost, then hears notes again.
    let cut = a
        .sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%'
               AND pid <> pg_backend_pid()",
        )
        .await?;
    assert_eq!(cut.len(), 2, "both stores' listeners");
    note_where(&mut b_notes, |n| n.what == NoteKind::Resync).await;
    a.set_scheduler_paused(true).await?;
    assert_eq!(
        note_where(&mut b_notes, |n| n.what != NoteKind::Resync).await,
        from_a(NoteKind::Paused)
    );
    Ok(())
}

#[tokio::test]
async fn nodes_starting_at_once_migrate_once() -> StoreResult<()> {
    let Some(url) = postgres_database("migrate") else {
        return Ok(());
    };
    let connects = (0..3).map(|_| PostgresStore::connect(&url, test_options()));
    let stores = futures::future::join_all(connects).await;
    let stores: Vec<PostgresStore> = stores.into_iter().collect::<StoreResult<_>>()?;
    let versions = stores[0]
        .sql("SELECT version FROM schema_migrations ORDER BY version")
        .await?;
    let versions: Vec<i64> = versions.iter().map(|row| row.get(0)).collect();
    assert_eq!(
        versions,
        (1..=super::schema::MIGRATIONS.len() as i64).collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test]
async fn passwords_never_appear_in_errors() {
    let secret = "s3cret-Pa55";
    let urls = [
        format!("postgres://petit:{secret}@127.0.0.1:1/petit"),
        format!("postgres://petit@127.0.0.1:1/petit?password={secret}&connect_timeout=5"),
        format!("postgres://petit:{secret}@127.0.0.1:notaport/petit"),
        format!("postgres://petit:{secret}@127.0.0.1:1/petit?sslmode=bogus"),
    ];
    for url in urls {
        let error = match PostgresStore::connect(&url, test_options()).await {
            Ok(_) => panic!("{url}: nothing listens on port 1"),
            Err(error) => error,
        };
        let text = format!("{error} {error:?}");
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("127.0.0.1"), "says which database: {text}");
    }
}

/// A password file (`--db-password-file`) is read; an unreadable one is a clear error.
#[tokio::test]
async fn password_files_are_read_and_their_errors_are_clear() -> StoreResult<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing");
    let config = super::PostgresConfig {
        url: "postgres://petit@127.0.0.1:1/petit".into(),
        password_file: Some(missing.clone()),
    };
    let error = match PostgresStore::connect_with(&config, test_options()).await {
        Ok(_) => panic!("a missing password file"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("cannot read the password file") && error.contains("missing"),
        "{error}"
    );
    let Some(url) = postgres_database("password_file") else {
        return Ok(());
    };
    let file = dir.path().join("password");
    std::fs::write(&file, "any-password-trust-accepts\n").expect("write");
    let config = super::PostgresConfig {
        url,
        password_file: Some(file),
    };
    let store = PostgresStore::connect_with(&config, test_options()).await?;
    assert!(!store.scheduler_paused().await?);
    Ok(())
}

/// Appends, trims, pages and tails, and the claim's reads, each go through an index
/// in its order: none scans a table or sorts (issue 11's rule, on PostgreSQL).
#[tokio::test]
async fn log_and_claim_queries_use_their_indexes() -> StoreResult<()> {
    use super::{logs, write};
    let Some(stores) = stores("plans", 1).await else {
        return Ok(());
    };
    let store = &stores[0];
    let cases = [
        (logs::PAGE_OF_RUN, "'r', 1, 0, 10", "log_lines_pkey"),
        (
            logs::PAGE_OF_TASK,
            "'r', 't', 1, 0, 10",
            "log_lines_of_task",
        ),
        (logs::TAIL_OF_RUN, "'r', 5", "log_lines_pkey"),
        (logs::TAIL_OF_TASK, "'r', 't', 5", "log_lines_of_task"),
        (
            logs::OLDEST_OF_STREAM,
            "'r', 't', 'stdout', 1, 0, 10",
            "Index Only Scan using log_lines_of_stream",
        ),
        (
            logs::CUT_STREAM,
            "'r', 't', 'stdout', 1, 0",
            "log_lines_of_stream",
        ),
        // Any index of the running runs only: a count costs them, not the history.
        (write::NODE_SHARE, "'n', 1", "runs_running_by"),
        (write::RUNNING_OF_JOBS, "'{a,b}'", "runs_running_by"),
        (write::RUNNING_OF_JOB, "'a'", "runs_running_by"),
        (write::QUEUE_HEAD, "'{a,b}'", "runs_by_status"),
    ];
    for (sql, args, index) in cases {
        let plan = store.plan(sql, args).await?;
        assert!(plan.contains(index), "{sql}\n{plan}");
        assert!(!plan.contains("Seq Scan"), "{sql}\n{plan}");
        assert!(!plan.contains("Sort"), "{sql}\n{plan}");
    }
    Ok(())
}

/// PostgreSQL's text cannot hold NUL: an error text with one is kept with U+FFFD in
/// its place rather than failing the write (log lines keep NUL: the suite checks).
#[tokio::test]
async fn nul_in_free_text_does_not_fail_a_write() -> StoreResult<()> {
    let Some(stores) = stores("nul", 1).await else {
        return Ok(());
    };
    let store = &stores[0];
    store.create_run(run("r1", "j", 1), vec![]).await?;
    let failed = Run {
        status: RunStatus::Failed,
        ended_at: Some(at(2)),
        error: Some("exit 1: \0garbage".into()),
        ..run("r1", "j", 1)
    };
    store.update_run(failed).await?;
    let stored = store.get_run("r1").await?.expect("stored");
    assert_eq!(stored.error.as_deref(), Some("exit 1: \u{FFFD}garbage"));
    Ok(())
}
