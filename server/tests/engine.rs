//! The engine end to end: real processes, real SQLite files, the real scheduler.
//! Each test waits on engine events (or polls with a deadline), never on a fixed sleep.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use petit_server::config::{parse_job, GlobalConfig};
use petit_server::core::{JobDef, RunStatus, TaskStatus, TriggerReason};
use petit_server::events::{Event, EventKind, RecvError, Subscription};
use petit_server::exec::{StopReason, Task, TaskContext, TaskOutcome};
use petit_server::store::{Run, SqliteStore, Store, StoreOptions, TaskRun};
use petit_server::testing::{run_to_end, Harness, MockTaskContext};
use petit_server::{Engine, EngineError, EngineOptions};

fn job(yaml: &str) -> JobDef {
    parse_job(yaml, Path::new("test.yaml"), &GlobalConfig::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn sqlite(dir: &Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(&dir.join("petit.db"), StoreOptions::default()).expect("open store"))
}

/// Waits for the first event matching `pred`, up to `timeout`.
async fn wait_event(
    rx: &mut Subscription,
    timeout: Duration,
    pred: impl Fn(&Event) -> bool,
) -> Arc<Event> {
    tokio::time::timeout(timeout, async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => panic!("bus closed"),
            }
        }
    })
    .await
    .expect("event did not arrive in time")
}

/// Triggers `job_id` on `engine` and waits until one of its tasks has started; the run,
/// and the event feed subscribed before the trigger.
async fn trigger_until_running(engine: &Engine, job_id: &str) -> (Run, Subscription) {
    let mut events = engine.subscribe();
    let run = engine
        .trigger(job_id, BTreeMap::new(), false)
        .await
        .unwrap();
    wait_event(&mut events, Duration::from_secs(10), |e| {
        e.kind() == EventKind::TaskStarted && e.run_id() == Some(run.id.as_str())
    })
    .await;
    (run, events)
}

/// Polls `f` until true, up to `timeout`.
async fn until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn pid_alive(pid: i32) -> bool {
    // Zombies count as dead: read the state from /proc.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test]
async fn dag_runs_in_dependency_order_and_in_parallel() {
    let yaml = r#"
id: diamond
tasks:
  - {id: a, command: echo, args: [a]}
  - {id: b, command: sleep, args: ["0.3"], depends_on: [a]}
  - {id: c, command: sleep, args: ["0.3"], depends_on: [a]}
  - {id: d, command: echo, args: [d], depends_on: [b, c]}
"#;
    let out = Harness::new(job(yaml)).run().await.unwrap();
    assert_eq!(out.run.status, RunStatus::Succeeded);
    out.tracker.assert_completed_before("a", "b");
    out.tracker.assert_completed_before("a", "c");
    out.tracker.assert_completed_before("b", "d");
    out.tracker.assert_completed_before("c", "d");
    assert_eq!(out.tracker.max_parallelism(), 2, "b and c run together");

    let limited = EngineOptions {
        max_concurrent_tasks: 1,
        ..Default::default()
    };
    let out = Harness::new(job(yaml))
        .with_options(limited)
        .run()
        .await
        .unwrap();
    assert_eq!(out.run.status, RunStatus::Succeeded);
    assert_eq!(
        out.tracker.max_parallelism(),
        1,
        "max_concurrent_tasks 1 serializes b and c"
    );
}

#[tokio::test]
async fn conditions_decide_what_runs_and_skips_do_not_fail_a_run() {
    let yaml = r#"
id: conditions
tasks:
  - {id: setup, command: "true"}
  - {id: will_fail, command: sh, args: ["-c", "echo oops >&2; exit 3"], depends_on: [setup]}
  - {id: after_success, command: echo, args: [never], depends_on: [will_fail]}
  - {id: grandchild, command: echo, args: [never], depends_on: [after_success]}
  - {id: cleanup, command: echo, args: [cleaning], depends_on: [will_fail], condition: on_failure}
  - {id: report, command: echo, args: [report], depends_on: [will_fail, after_success], condition: all_done}
  - {id: always_alias, command: echo, args: [x], depends_on: [will_fail], condition: always}
"#;
    let out = Harness::new(job(yaml)).run().await.unwrap();
    let status = |id: &str| out.task(id).status;
    assert_eq!(out.run.status, RunStatus::Failed);
    assert!(
        out.run.error.as_deref().unwrap().contains("will_fail"),
        "{:?}",
        out.run.error
    );
    assert_eq!(status("will_fail"), TaskStatus::Failed);
    assert_eq!(out.task("will_fail").exit_code, Some(3));
    assert_eq!(status("after_success"), TaskStatus::Skipped);
    assert_eq!(
        status("grandchild"),
        TaskStatus::Skipped,
        "a skipped dependency is not a success"
    );
    assert_eq!(status("cleanup"), TaskStatus::Succeeded);
    assert_eq!(status("report"), TaskStatus::Succeeded);
    assert_eq!(status("always_alias"), TaskStatus::Succeeded);
    assert_eq!(out.logs("will_fail").await, vec!["oops"]);

    // A task skipped by its condition does not fail the run.
    let yaml = r#"
id: fine
tasks:
  - {id: work, command: "true"}
  - {id: on_error, command: "false", depends_on: [work], condition: on_failure}
"#;
    let out = Harness::new(job(yaml)).run().await.unwrap();
    assert_eq!(out.task("on_error").status, TaskStatus::Skipped);
    assert_eq!(out.run.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn retries_count_attempts_and_follow_their_condition() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("count");
    let flaky = format!(
        r#"n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; echo "attempt $n"; [ $n -ge 3 ]"#,
        c = counter.display()
    );
    let yaml = format!(
        r#"
id: retries
tasks:
  - id: flaky
    command: sh
    args: ["-c", '{flaky}']
    retry: {{max_attempts: 3, delay_secs: 0}}
  - id: hopeless
    command: "false"
    retry: {{max_attempts: 2, delay: 10ms, backoff: exponential}}
  - id: never
    command: "false"
    retry: {{max_attempts: 5, condition: never}}
  - id: transient_exit_1
    command: "false"
    retry: {{max_attempts: 5, condition: transient_only}}
  - id: transient_tempfail
    command: sh
    args: ["-c", "exit 75"]
    retry: {{max_attempts: 2, condition: transient_only, delay_secs: 0}}
"#
    );
    let out = Harness::new(job(&yaml)).run().await.unwrap();
    let flaky = out.task("flaky");
    assert_eq!((flaky.status, flaky.attempts), (TaskStatus::Succeeded, 3));
    assert_eq!(out.tracker.count("flaky", EventKind::TaskRetrying), 2);
    assert_eq!(
        out.logs("flaky").await,
        vec!["attempt 1", "attempt 2", "attempt 3"]
    );
    let expect = [
        ("hopeless", 3),
        ("never", 1),
        ("transient_exit_1", 1),
        ("transient_tempfail", 3),
    ];
    for (id, attempts) in expect {
        let t = out.task(id);
        assert_eq!(
            (t.status, t.attempts),
            (TaskStatus::Failed, attempts),
            "{id}"
        );
    }
    assert_eq!(out.run.status, RunStatus::Failed);
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_tree() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let yaml = format!(
        r#"
id: slow
tasks:
  - id: slow
    command: sh
    args: ["-c", "sleep 30 & echo $! > {}; echo started; wait"]
    timeout_secs: 1
"#,
        pidfile.display()
    );
    let out = Harness::new(job(&yaml)).run().await.unwrap();
    let t = out.task("slow");
    assert_eq!(t.status, TaskStatus::TimedOut);
    assert_eq!(out.run.status, RunStatus::Failed);
    assert!(
        t.error.as_deref().unwrap().contains("timed out"),
        "{:?}",
        t.error
    );
    assert_eq!(out.logs("slow").await, vec!["started"]);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    until(
        Duration::from_secs(5),
        "the background sleep to die",
        || !pid_alive(pid),
    )
    .await;
}

#[tokio::test]
async fn outputs_flow_downstream_without_a_shell() {
    let yaml = r#"
id: outputs
config: {greeting: hello}
tasks:
  - id: extract
    command: sh
    args: ["-c", 'echo "rows=42" >> "$PETIT_OUTPUT"; echo "path=/tmp/a b;c" >> "$PETIT_OUTPUT"; echo "$PETIT_JOB_ID/$PETIT_TASK_ID"']
  - id: transform
    command: printf
    args: ["%s|", "${tasks.extract.outputs.rows}", "${tasks.extract.outputs.path}", "${config.greeting}"]
    depends_on: [extract]
    environment: {ROWS: "${tasks.extract.outputs.rows}"}
  - id: env
    command: sh
    args: ["-c", 'echo "$ROWS $PETIT_RUN_ID"']
    depends_on: [transform]
    environment: {ROWS: "${tasks.extract.outputs.rows}"}
"#;
    let out = Harness::new(job(yaml))
        .run_with(BTreeMap::from([("greeting".into(), "bonjour".into())]))
        .await
        .unwrap();
    assert_eq!(out.run.status, RunStatus::Succeeded, "{:?}", out.tasks);
    assert_eq!(
        out.task("extract").outputs.get("rows").map(String::as_str),
        Some("42")
    );
    assert_eq!(out.logs("extract").await, vec!["outputs/extract"]);
    assert_eq!(out.logs("transform").await, vec!["42|/tmp/a b;c|bonjour|"]);
    assert_eq!(out.logs("env").await, vec![format!("42 {}", out.run.id)]);
    assert_eq!(
        out.run.params.get("greeting").map(String::as_str),
        Some("bonjour")
    );
}

/// An engine given its own scratch directory (petitd: beside the database) empties it
/// at start, so that the output files of tasks a crash interrupted do not pile up.
#[tokio::test]
async fn an_owned_scratch_directory_is_emptied_at_start_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("petit.db.scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let stale = scratch.join("01crashed-run-extract.out");
    std::fs::write(&stale, "rows=1\n").unwrap();
    let yaml = r#"
id: outputs
tasks:
  - id: extract
    command: sh
    args: ["-c", 'echo "rows=42" >> "$PETIT_OUTPUT"; dirname "$PETIT_OUTPUT"']
  - id: load
    command: echo
    args: ["${tasks.extract.outputs.rows}"]
    depends_on: [extract]
"#;
    let options = EngineOptions {
        scratch_dir: Some(scratch.clone()),
        ..Default::default()
    };
    let out = Harness::new(job(yaml))
        .with_options(options)
        .run()
        .await
        .unwrap();
    assert_eq!(out.run.status, RunStatus::Succeeded, "{:?}", out.tasks);
    assert!(!stale.exists(), "what a crash left is gone");
    assert_eq!(
        out.logs("extract").await,
        vec![scratch.display().to_string()]
    );
    assert_eq!(out.logs("load").await, vec!["42"]);
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "each task's output file goes when the task ends"
    );
}

#[tokio::test]
async fn big_output_on_both_streams_does_not_deadlock() {
    let yaml = r#"
id: chatty
tasks:
  - id: chatty
    command: sh
    args: ["-c", "i=0; while [ $i -lt 3000 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done"]
"#;
    let out = Harness::new(job(yaml)).run().await.unwrap();
    assert_eq!(out.run.status, RunStatus::Succeeded);
    let lines = out.logs("chatty").await;
    assert_eq!(lines.len(), 6000);
    assert_eq!(
        lines
            .iter()
            .rfind(|l| l.starts_with("out"))
            .map(String::as_str),
        Some("out2999")
    );
}

#[tokio::test]
async fn a_missing_program_fails_with_a_clear_error() {
    let yaml = "id: missing\ntasks:\n  - {id: t, command: /no/such/program}\n";
    let out = Harness::new(job(yaml)).run().await.unwrap();
    let t = out.task("t");
    assert_eq!(t.status, TaskStatus::Failed);
    assert!(
        t.error
            .as_deref()
            .unwrap()
            .contains("cannot start '/no/such/program'"),
        "{:?}",
        t.error
    );
}

#[tokio::test]
async fn cross_job_dependencies_gate_runs_unless_forced() {
    let upstream = job("id: upstream\nconfig: {code: '0'}\ntasks:\n  - {id: t, command: sh, args: ['-c', 'exit ${config.code}']}\n");
    let downstream =
        job("id: downstream\ndepends_on: [upstream]\ntasks:\n  - {id: t, command: 'true'}\n");
    let windowed = job(
        "id: windowed\ndepends_on:\n  - job: upstream\n    condition: {within_window: {seconds: 3600}}\ntasks:\n  - {id: t, command: 'true'}\n",
    );
    let engine = Harness::new(downstream)
        .with_job(upstream)
        .with_job(windowed)
        .start()
        .await
        .unwrap();

    match engine.trigger("downstream", BTreeMap::new(), false).await {
        Err(EngineError::DependencyUnmet { dependency, .. }) => assert_eq!(dependency, "upstream"),
        other => panic!("expected DependencyUnmet, got {other:?}"),
    }
    let forced = run_to_end(&engine, "downstream", BTreeMap::new(), true)
        .await
        .unwrap();
    assert_eq!(forced.run.status, RunStatus::Succeeded);

    let failed = run_to_end(
        &engine,
        "upstream",
        BTreeMap::from([("code".into(), "1".into())]),
        false,
    )
    .await
    .unwrap();
    assert_eq!(failed.run.status, RunStatus::Failed);
    let err = engine
        .trigger("downstream", BTreeMap::new(), false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("failed"), "{err}");

    run_to_end(&engine, "upstream", BTreeMap::new(), false)
        .await
        .unwrap();
    let ok = run_to_end(&engine, "downstream", BTreeMap::new(), false)
        .await
        .unwrap();
    assert_eq!(ok.run.status, RunStatus::Succeeded);
    let ok = run_to_end(&engine, "windowed", BTreeMap::new(), false)
        .await
        .unwrap();
    assert_eq!(ok.run.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn unknown_params_are_refused() {
    let engine = Harness::new(job(
        "id: j\nconfig: {a: 1}\ntasks:\n  - {id: t, command: 'true'}\n",
    ))
    .start()
    .await
    .unwrap();
    let err = engine
        .trigger("j", BTreeMap::from([("b".into(), "2".into())]), false)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::InvalidArgument(_)), "{err}");
    assert!(matches!(
        engine.trigger("nope", BTreeMap::new(), false).await,
        Err(EngineError::JobNotFound(_))
    ));
}

#[tokio::test]
async fn cancel_kills_the_processes_and_ends_the_run_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let yaml = format!(
        "id: long\ntasks:\n  - {{id: wait, command: sh, args: ['-c', 'echo $$ > {}; exec sleep 30']}}\n  - {{id: after, command: 'true', depends_on: [wait]}}\n",
        pidfile.display()
    );
    let engine = Harness::new(job(&yaml))
        .with_store(sqlite(dir.path()))
        .start()
        .await
        .unwrap();
    let (run, _) = trigger_until_running(&engine, "long").await;
    until(Duration::from_secs(5), "the pid file", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
    })
    .await;
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let ended = engine.cancel(&run.id).await.unwrap();
    assert_eq!(ended.status, RunStatus::Cancelled);
    let tasks = engine.store().task_runs(&run.id).await.unwrap();
    assert_eq!(tasks[0].status, TaskStatus::Cancelled);
    assert_eq!(tasks[1].status, TaskStatus::Cancelled);
    until(Duration::from_secs(5), "the task process to die", || {
        !pid_alive(pid)
    })
    .await;
    assert!(matches!(
        engine.cancel(&run.id).await,
        Err(EngineError::RunEnded { .. })
    ));
    assert!(matches!(
        engine.cancel("nope").await,
        Err(EngineError::RunNotFound(_))
    ));
}

#[tokio::test]
async fn max_concurrency_refuses_overlapping_triggers() {
    let engine = Harness::new(job(
        "id: one\ntasks:\n  - {id: t, command: sleep, args: ['30']}\n",
    ))
    .start()
    .await
    .unwrap();
    let first = engine.trigger("one", BTreeMap::new(), false).await.unwrap();
    let err = engine
        .trigger("one", BTreeMap::new(), false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::ConcurrencyLimit { limit: 1, .. }),
        "{err}"
    );
    engine.cancel(&first.id).await.unwrap();
    let second = engine.trigger("one", BTreeMap::new(), false).await.unwrap();
    engine.cancel(&second.id).await.unwrap();
}

#[tokio::test]
async fn the_global_run_limit_keeps_runs_pending() {
    let a = job("id: a\ntasks:\n  - {id: t, command: sleep, args: ['30']}\n");
    let b = job("id: b\ntasks:\n  - {id: t, command: 'true'}\n");
    let options = EngineOptions {
        max_concurrent_runs: 1,
        ..Default::default()
    };
    let engine = Harness::new(a)
        .with_job(b)
        .with_options(options)
        .start()
        .await
        .unwrap();
    let (first, mut events) = trigger_until_running(&engine, "a").await;
    let second = engine.trigger("b", BTreeMap::new(), false).await.unwrap();
    assert_eq!(
        engine.get_run(&second.id).await.unwrap().status,
        RunStatus::Queued
    );
    engine.cancel(&first.id).await.unwrap();
    let done = wait_event(&mut events, Duration::from_secs(10), |e| {
        e.ends_run() && e.run().as_ref().is_some_and(|r| r.id == second.id)
    })
    .await;
    assert_eq!(done.run().unwrap().status, RunStatus::Succeeded);
}

#[tokio::test]
async fn resource_pools_limit_tasks_across_branches() {
    let yaml = r#"
id: gpu
tasks:
  - {id: a, command: sleep, args: ["0.2"], resources: {slots: {gpu: 1}}}
  - {id: b, command: sleep, args: ["0.2"], resources: {slots: {gpu: 1}}}
  - {id: c, command: sleep, args: ["0.2"]}
"#;
    let global = GlobalConfig {
        pools: BTreeMap::from([("gpu".to_string(), 1)]),
        ..Default::default()
    };
    let def = parse_job(yaml, Path::new("gpu.yaml"), &global).unwrap();
    let options = EngineOptions {
        pools: global.pools.clone(),
        ..Default::default()
    };
    let out = Harness::new(def).with_options(options).run().await.unwrap();
    assert_eq!(out.run.status, RunStatus::Succeeded);
    let (a_start, a_end) = (
        out.tracker.started("a").unwrap(),
        out.tracker.completed("a").unwrap(),
    );
    let (b_start, b_end) = (
        out.tracker.started("b").unwrap(),
        out.tracker.completed("b").unwrap(),
    );
    assert!(
        a_end < b_start || b_end < a_start,
        "a and b never hold the one gpu slot together"
    );
    assert_eq!(
        out.tracker.max_parallelism(),
        2,
        "c runs beside whichever holds the gpu"
    );
}

#[tokio::test]
async fn shutdown_interrupts_runs_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Harness::new(job(
        "id: long\ntasks:\n  - {id: t, command: sleep, args: ['30']}\n",
    ))
    .with_store(sqlite(dir.path()))
    .start()
    .await
    .unwrap();
    let (run, _) = trigger_until_running(&engine, "long").await;
    let began = std::time::Instant::now();
    engine.shutdown(Duration::from_millis(200)).await;
    assert!(began.elapsed() < Duration::from_secs(10));
    let run = engine.get_run(&run.id).await.unwrap();
    assert_eq!(run.status, RunStatus::Interrupted);
    assert_eq!(
        engine.store().task_runs(&run.id).await.unwrap()[0].status,
        TaskStatus::Interrupted
    );
    assert!(matches!(
        engine.trigger("long", BTreeMap::new(), false).await,
        Err(EngineError::ShuttingDown)
    ));
}

/// A crash leaves a run `running` in the database; the next start settles it: the
/// interrupted task is retried if its policy allows, else failed, and finished runs
/// are untouched.
#[tokio::test]
async fn recovery_settles_runs_a_crash_left_running() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = r#"
id: pipeline
tasks:
  - {id: extract, command: echo, args: [extract]}
  - {id: transform, command: echo, args: [again], depends_on: [extract], retry: {max_attempts: 2}}
  - {id: load, command: echo, args: [load], depends_on: [transform]}
"#;
    let no_retry = "id: fragile\ntasks:\n  - {id: only, command: 'true'}\n";
    let now = chrono::Utc::now();
    let task = |run: &str, id: &str, status: TaskStatus, attempts: u32| TaskRun {
        run_id: run.into(),
        task_id: id.into(),
        status,
        attempts,
        exit_code: None,
        started_at: (attempts > 0).then_some(now),
        ended_at: None,
        error: None,
        outputs: BTreeMap::new(),
    };
    let run = |id: &str, job: &str, status: RunStatus| Run {
        id: id.into(),
        job_id: job.into(),
        status,
        trigger: TriggerReason::Schedule,
        params: BTreeMap::new(),
        created_at: now,
        started_at: Some(now),
        ended_at: status.is_terminal().then_some(now),
        error: None,
        triggered_by: None,
        scheduled_for: None,
        definition: None,
        retry_of: None,
    };
    {
        // The state a kill -9 leaves behind.
        let store = sqlite(dir.path());
        let mut extract = task("crashed", "extract", TaskStatus::Succeeded, 1);
        extract.ended_at = Some(now);
        let tasks = vec![
            extract,
            task("crashed", "transform", TaskStatus::Running, 1),
            task("crashed", "load", TaskStatus::Pending, 0),
        ];
        store
            .create_run(run("crashed", "pipeline", RunStatus::Running), tasks)
            .await
            .unwrap();
        store
            .create_run(
                run("fragile-run", "fragile", RunStatus::Running),
                vec![task("fragile-run", "only", TaskStatus::Running, 1)],
            )
            .await
            .unwrap();
        store
            .create_run(run("gone-run", "deleted_job", RunStatus::Queued), vec![])
            .await
            .unwrap();
        store
            .create_run(run("done", "pipeline", RunStatus::Succeeded), vec![])
            .await
            .unwrap();
    }
    let store = sqlite(dir.path());
    let engine = Harness::new(job(yaml))
        .with_job(job(no_retry))
        .with_store(store.clone())
        .start()
        .await
        .unwrap();
    let mut ended = None;
    for _ in 0..500 {
        let crashed = store.get_run("crashed").await.unwrap().unwrap();
        let fragile = store.get_run("fragile-run").await.unwrap().unwrap();
        if crashed.status.is_terminal() && fragile.status.is_terminal() {
            ended = Some((crashed, fragile));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (crashed, fragile) = ended.expect("recovered runs end");
    assert_eq!(crashed.status, RunStatus::Succeeded);
    let tasks = store.task_runs("crashed").await.unwrap();
    assert_eq!(
        (tasks[1].status, tasks[1].attempts),
        (TaskStatus::Succeeded, 2),
        "transform retried: {tasks:?}"
    );
    assert_eq!(tasks[2].status, TaskStatus::Succeeded);
    assert_eq!(fragile.status, RunStatus::Failed);
    let only = &store.task_runs("fragile-run").await.unwrap()[0];
    assert_eq!(only.status, TaskStatus::Failed);
    assert!(
        only.error.as_deref().unwrap().contains("interrupted"),
        "{:?}",
        only.error
    );
    assert_eq!(
        store.get_run("gone-run").await.unwrap().unwrap().status,
        RunStatus::Failed
    );
    assert_eq!(
        store.get_run("done").await.unwrap().unwrap(),
        run("done", "pipeline", RunStatus::Succeeded)
    );
    assert!(store.unfinished_runs().await.unwrap().is_empty());
    drop(engine);
}

/// An embedded task, exercised both through the harness and on its own.
struct Countdown;

#[async_trait::async_trait]
impl Task for Countdown {
    async fn run(&self, ctx: TaskContext) -> TaskOutcome {
        for i in (1..=3).rev() {
            ctx.log(petit_server::core::LogStream::Stdout, i.to_string())
                .await;
        }
        tokio::select! {
            biased;
            reason = ctx.stopped() => TaskOutcome::Stopped(reason),
            _ = std::future::ready(()) => TaskOutcome::Succeeded { outputs: BTreeMap::from([("left".into(), "0".into())]), exit_code: None },
        }
    }
}

#[tokio::test]
async fn custom_tasks_run_in_the_harness_and_in_a_mock_context() {
    let yaml = "id: custom\ntasks:\n  - {id: count, command: 'false'}\n  - {id: show, command: echo, args: ['${tasks.count.outputs.left}'], depends_on: [count]}\n";
    let out = Harness::new(job(yaml))
        .with_task("count", Countdown)
        .run()
        .await
        .unwrap();
    assert_eq!(out.run.status, RunStatus::Succeeded);
    assert_eq!(out.logs("count").await, vec!["3", "2", "1"]);
    assert_eq!(out.logs("show").await, vec!["0"]);
    out.tracker.assert_completed_before("count", "show");

    let (ctx, mut mock) = MockTaskContext::new("count", None);
    mock.stop(StopReason::Cancel);
    let outcome = Countdown.run(ctx).await;
    assert_eq!(outcome, TaskOutcome::Stopped(StopReason::Cancel));
    assert_eq!(mock.lines().len(), 3);
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Engine>();
}

#[tokio::test]
async fn log_retention_prunes_logs_of_old_runs_at_start() {
    let store: Arc<dyn Store> = Arc::new(petit_server::store::MemoryStore::new(
        StoreOptions::default(),
    ));
    let long_ago = chrono::Utc::now() - chrono::Duration::days(40);
    let old = Run {
        id: "old".into(),
        job_id: "j".into(),
        status: RunStatus::Succeeded,
        trigger: TriggerReason::Manual,
        params: BTreeMap::new(),
        created_at: long_ago,
        started_at: Some(long_ago),
        ended_at: Some(long_ago),
        error: None,
        triggered_by: None,
        scheduled_for: None,
        definition: None,
        retry_of: None,
    };
    store.create_run(old, vec![]).await.unwrap();
    let line = petit_server::store::LogLine {
        run_id: "old".into(),
        seq: 1,
        task_id: "t".into(),
        attempt: 1,
        stream: petit_server::core::LogStream::Stdout,
        line: "old news".into(),
        time: long_ago,
    };
    store.append_logs(vec![line]).await.unwrap();
    let options = EngineOptions {
        log_retention: Some(Duration::from_secs(30 * 86400)),
        ..Default::default()
    };
    let engine = Harness::new(job("id: j\ntasks:\n  - {id: t, command: 'true'}\n"))
        .with_store(store.clone())
        .with_options(options)
        .start()
        .await
        .unwrap();
    let fresh = run_to_end(&engine, "j", BTreeMap::new(), false)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !store.logs("old", None).await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "old logs were not pruned"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(store.get_run("old").await.unwrap().is_some());
    assert_eq!(fresh.run.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn python_tasks_run_inline_source_and_script_files() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("greet.py");
    std::fs::write(&script, "import sys\nprint('file says', sys.argv[1])\n").unwrap();
    let yaml = format!(
        r#"
id: py
config: {{who: world}}
tasks:
  - id: inline
    type: python
    inline: true
    script: "import os; print('inline', os.environ['PETIT_TASK_ID'])"
  - id: file
    type: python
    script: {}
    args: ["${{config.who}}"]
    depends_on: [inline]
"#,
        script.display()
    );
    let out = Harness::new(job(&yaml)).run().await.unwrap();
    assert_eq!(out.run.status, RunStatus::Succeeded, "{:?}", out.tasks);
    assert_eq!(out.logs("inline").await, vec!["inline inline"]);
    assert_eq!(out.logs("file").await, vec!["file says world"]);
}

/// A run started the moment it is triggered stores its first tasks' starts in the
/// write that claims it, and then one write per step: a task's end with the starts it
/// lets run, the last end with the run's. One task: 2 commits (it was 3); a chain of
/// three: 4. Counted on the SQLite writer, whose transactions these are.
#[tokio::test]
async fn a_run_costs_one_commit_per_step_its_first_tasks_starting_with_its_claim() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteStore::open(&dir.path().join("petit.db"), StoreOptions::default()).unwrap());
    let one = job("id: one\ntasks:\n  - {id: t, command: 'true'}\n");
    let chain = job(
        "id: chain\ntasks:\n  - {id: a, command: 'true'}\n  - {id: b, command: 'true', depends_on: [a]}\n  - {id: c, command: 'true', depends_on: [b]}\n",
    );
    let engine = Engine::start(vec![one, chain], store.clone(), EngineOptions::default())
        .await
        .unwrap();

    for (job_id, commits, tasks) in [("one", 2, &["t"][..]), ("chain", 4, &["a", "b", "c"])] {
        let before = store.commits();
        let events = engine.subscribe();
        let run = engine
            .trigger(job_id, BTreeMap::new(), false)
            .await
            .unwrap();
        let tracker = petit_server::testing::ExecutionTracker::follow(events, &run.id).await;
        assert_eq!(
            store.commits() - before,
            commits,
            "{job_id}: {:?}",
            tracker.events
        );
        assert_eq!(tracker.start_order(), tasks, "{job_id}");
        for pair in tasks.windows(2) {
            tracker.assert_completed_before(pair[0], pair[1]);
        }
        let stored = store.get_run(&run.id).await.unwrap().unwrap();
        assert_eq!(stored.status, RunStatus::Succeeded, "{stored:?}");
        for task in store.task_runs(&run.id).await.unwrap() {
            assert_eq!(task.status, TaskStatus::Succeeded, "{task:?}");
            assert_eq!(task.attempts, 1, "{task:?}");
            assert!(
                task.started_at.is_some() && task.started_at <= task.ended_at,
                "{task:?}"
            );
        }
    }
    engine.shutdown(Duration::from_secs(5)).await;
}
