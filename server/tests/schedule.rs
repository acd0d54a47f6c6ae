//! Scheduling on a controlled clock: the engine reads its time from a `ManualClock` the
//! test moves, so every assertion is about an exact instant and nothing sleeps. After
//! moving the clock, `Engine::settle` returns once the engine has handled every fire
//! due at the new time.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use petit_server::config::{parse_job, GlobalConfig};
use petit_server::core::clock::ManualClock;
use petit_server::core::{JobDef, RunStatus, TriggerReason};
use petit_server::events::{Event, EventKind, RecvError, Subscription};
use petit_server::store::{RunPage, SqliteStore, Store, StoreOptions};
use petit_server::testing::Harness;
use petit_server::{Engine, EngineOptions};

fn job(yaml: &str) -> JobDef {
    parse_job(yaml, Path::new("test.yaml"), &GlobalConfig::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn t(h: u32, m: u32, s: u32, ms: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 3, 2, h, m, s).unwrap() + chrono::Duration::milliseconds(ms)
}

/// Every second; runs may overlap (a run's real process may outlive a clock step).
const TICK: &str =
    "id: tick\nschedule: '* * * * * *'\nmax_concurrency: 100\ntasks:\n  - {id: t, command: 'true'}\n";

async fn start(jobs: &[&str], clock: &Arc<ManualClock>, store: Option<Arc<dyn Store>>) -> Engine {
    let mut harness = Harness::new(job(jobs[0]));
    for yaml in &jobs[1..] {
        harness = harness.with_job(job(yaml));
    }
    if let Some(store) = store {
        harness = harness.with_store(store);
    }
    harness
        .with_options(EngineOptions {
            clock: Some(clock.clone()),
            ..Default::default()
        })
        .start()
        .await
        .unwrap()
}

/// The instants the job's scheduled runs stand for, oldest first.
async fn fired(engine: &Engine, job_id: &str) -> Vec<DateTime<Utc>> {
    runs_by(engine, job_id, TriggerReason::Schedule).await
}

/// Moves the clock to `to` and lets the engine handle what fell due.
async fn at(engine: &Engine, clock: &ManualClock, to: DateTime<Utc>) {
    clock.set(to);
    engine.settle().await;
}

async fn wait_event(rx: &mut Subscription, pred: impl Fn(&Event) -> bool) -> Arc<Event> {
    tokio::time::timeout(Duration::from_secs(10), async {
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

#[tokio::test]
async fn an_every_second_job_fires_at_each_exact_second_and_pause_stops_it() {
    let clock = Arc::new(ManualClock::new(t(10, 0, 0, 300)));
    let engine = start(&[TICK], &clock, None).await;
    assert_eq!(
        engine.next_fires("tick", 3),
        [t(10, 0, 1, 0), t(10, 0, 2, 0), t(10, 0, 3, 0)]
    );

    at(&engine, &clock, t(10, 0, 0, 999)).await;
    assert!(
        fired(&engine, "tick").await.is_empty(),
        "nothing before the second"
    );
    at(&engine, &clock, t(10, 0, 1, 0)).await;
    at(&engine, &clock, t(10, 0, 2, 400)).await;
    assert_eq!(
        fired(&engine, "tick").await,
        [t(10, 0, 1, 0), t(10, 0, 2, 0)]
    );

    // Paused: no fire, and no next fire listed as if it would happen.
    assert!(engine.pause().await.unwrap().paused);
    assert!(engine.next_fires("tick", 5).is_empty());
    at(&engine, &clock, t(10, 0, 9, 0)).await;
    assert_eq!(
        fired(&engine, "tick").await.len(),
        2,
        "no fire while paused"
    );

    // Manual triggers still work while paused.
    let manual = engine
        .trigger("tick", BTreeMap::new(), false)
        .await
        .unwrap();
    assert_eq!(
        (manual.trigger, manual.scheduled_for),
        (TriggerReason::Manual, None)
    );
    assert_eq!(
        manual.created_at,
        t(10, 0, 9, 0),
        "created at the engine's time"
    );

    // Resumed at 10:00:09.5: what was missed is not made up; the next fire is 10:00:10.
    clock.set(t(10, 0, 9, 500));
    assert!(!engine.resume().await.unwrap().paused);
    assert_eq!(engine.next_fires("tick", 1), [t(10, 0, 10, 0)]);
    at(&engine, &clock, t(10, 0, 10, 0)).await;
    assert_eq!(
        fired(&engine, "tick").await,
        [t(10, 0, 1, 0), t(10, 0, 2, 0), t(10, 0, 10, 0)]
    );
}

#[tokio::test]
async fn a_late_wake_fires_once_and_skips_the_missed_instants() {
    // A suspended machine, or a clock stepped forward: 3 periods late.
    let five = "id: five\nschedule: '0 */5 * * * *'\ntasks:\n  - {id: t, command: 'true'}\n";
    let clock = Arc::new(ManualClock::new(t(10, 0, 1, 0)));
    let engine = start(&[five], &clock, None).await;
    at(&engine, &clock, t(10, 17, 0, 0)).await;
    assert_eq!(fired(&engine, "five").await, [t(10, 5, 0, 0)]);
    assert_eq!(engine.next_fires("five", 1), [t(10, 20, 0, 0)]);
}

#[tokio::test]
async fn a_clock_set_back_rearms_the_timers() {
    // Armed for 02:00 while the clock read 01:59; the clock is then set back a day and
    // a half (a Pi that booted with a time from the future learns the real one).
    let nightly = "id: nightly\nschedule: '0 0 2 * * *'\ntasks:\n  - {id: t, command: 'true'}\n";
    let clock = Arc::new(ManualClock::new(t(1, 59, 0, 0)));
    let engine = start(&[nightly], &clock, None).await;
    assert_eq!(engine.next_fires("nightly", 1), [t(2, 0, 0, 0)]);
    let back = t(14, 0, 0, 0) - chrono::Duration::days(2);
    at(&engine, &clock, back).await;
    let rearmed = t(2, 0, 0, 0) - chrono::Duration::days(1);
    assert_eq!(engine.next_fires("nightly", 1), [rearmed]);
    assert!(fired(&engine, "nightly").await.is_empty());
    at(&engine, &clock, rearmed).await;
    assert_eq!(fired(&engine, "nightly").await, [rearmed]);
}

#[tokio::test]
async fn a_paused_scheduler_stays_paused_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = || -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&dir.path().join("petit.db"), StoreOptions::default()).unwrap())
    };
    let clock = Arc::new(ManualClock::new(t(10, 0, 0, 500)));
    let engine = start(&[TICK], &clock, Some(sqlite())).await;
    assert!(engine.pause().await.unwrap().paused);
    engine.shutdown(Duration::from_secs(5)).await;
    drop(engine);

    let engine = start(&[TICK], &clock, Some(sqlite())).await;
    assert!(engine.state().paused, "the restarted scheduler is paused");
    at(&engine, &clock, t(10, 0, 5, 0)).await;
    assert!(
        fired(&engine, "tick").await.is_empty(),
        "no fire while paused"
    );

    assert!(!engine.resume().await.unwrap().paused);
    at(&engine, &clock, t(10, 0, 6, 0)).await;
    assert_eq!(fired(&engine, "tick").await, [t(10, 0, 6, 0)]);
}

#[tokio::test]
async fn a_fire_over_max_concurrency_is_skipped_with_an_event() {
    let slow = "id: slow\nschedule: '* * * * * *'\nmax_concurrency: 1\ntasks:\n  - {id: t, command: sleep, args: ['30']}\n";
    let clock = Arc::new(ManualClock::new(t(10, 0, 0, 500)));
    let engine = start(&[slow], &clock, None).await;
    let mut events = engine.subscribe();
    at(&engine, &clock, t(10, 0, 1, 0)).await;
    at(&engine, &clock, t(10, 0, 2, 0)).await;
    let skipped = wait_event(&mut events, |e| e.kind() == EventKind::JobSkipped).await;
    assert_eq!(skipped.reason(), Some("concurrency"));
    assert_eq!(fired(&engine, "slow").await, [t(10, 0, 1, 0)]);
    engine.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_run_waiting_for_a_slot_is_queued_visibly_and_can_be_cancelled() {
    let a = "id: a\ntasks:\n  - {id: t, command: sleep, args: ['30']}\n";
    let b = "id: b\ntasks:\n  - {id: t, command: 'true'}\n";
    let engine = Harness::new(job(a))
        .with_job(job(b))
        .with_options(EngineOptions {
            max_concurrent_runs: 1,
            ..Default::default()
        })
        .start()
        .await
        .unwrap();
    let mut events = engine.subscribe();
    let first = engine.trigger("a", BTreeMap::new(), false).await.unwrap();
    wait_event(&mut events, |e| {
        e.kind() == EventKind::RunStarted && e.run_id() == Some(first.id.as_str())
    })
    .await;
    let second = engine.trigger("b", BTreeMap::new(), false).await.unwrap();
    assert_eq!(second.status, RunStatus::Queued);
    let queued = wait_event(&mut events, |e| e.kind() == EventKind::RunQueued).await;
    assert_eq!(queued.run_id(), Some(second.id.as_str()));
    assert_eq!(engine.state().queued_runs, 1);
    assert_eq!(
        engine.get_run(&second.id).await.unwrap().status,
        RunStatus::Queued
    );

    // Cancelled while it waits: it ends at once, and was seen before it ended.
    let cancelled = engine.cancel(&second.id).await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert_eq!(cancelled.started_at, None);
    let ended = wait_event(&mut events, |e| e.ends_run()).await;
    assert_eq!(ended.run_id(), Some(second.id.as_str()));
    assert_eq!(engine.state().queued_runs, 0);

    // A third waits, and starts when the first ends.
    let third = engine.trigger("b", BTreeMap::new(), false).await.unwrap();
    engine.cancel(&first.id).await.unwrap();
    let done = wait_event(&mut events, |e| {
        e.ends_run() && e.run_id() == Some(third.id.as_str())
    })
    .await;
    assert_eq!(done.run().unwrap().status, RunStatus::Succeeded);
}

#[tokio::test]
async fn a_retrigger_after_seeing_the_end_is_never_refused() {
    let one = "id: one\nmax_concurrency: 1\ntasks:\n  - {id: t, command: 'true'}\n";
    let engine = Harness::new(job(one)).start().await.unwrap();
    let mut events = engine.subscribe();
    for i in 0..500 {
        let run = engine
            .trigger("one", BTreeMap::new(), false)
            .await
            .unwrap_or_else(|e| panic!("trigger {i} after the previous run's end: {e}"));
        let end = wait_event(&mut events, |e| {
            e.ends_run() && e.run_id() == Some(run.id.as_str())
        })
        .await;
        assert_eq!(end.run().unwrap().status, RunStatus::Succeeded);
    }
}

#[tokio::test]
async fn queued_runs_survive_a_stop_and_run_after_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = || -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&dir.path().join("petit.db"), StoreOptions::default()).unwrap())
    };
    let a = "id: a\ntasks:\n  - {id: t, command: sleep, args: ['30']}\n";
    let b = "id: b\ntasks:\n  - {id: t, command: 'true'}\n";
    let options = || EngineOptions {
        max_concurrent_runs: 1,
        ..Default::default()
    };
    let engine = Harness::new(job(a))
        .with_job(job(b))
        .with_store(sqlite())
        .with_options(options())
        .start()
        .await
        .unwrap();
    let mut events = engine.subscribe();
    let first = engine.trigger("a", BTreeMap::new(), false).await.unwrap();
    wait_event(&mut events, |e| {
        e.kind() == EventKind::RunStarted && e.run_id() == Some(first.id.as_str())
    })
    .await;
    let waiting = engine.trigger("b", BTreeMap::new(), false).await.unwrap();
    engine.shutdown(Duration::from_millis(100)).await;
    assert_eq!(
        engine.get_run(&first.id).await.unwrap().status,
        RunStatus::Interrupted
    );
    assert_eq!(
        engine.get_run(&waiting.id).await.unwrap().status,
        RunStatus::Queued
    );
    drop(engine);

    let engine = Harness::new(job(a))
        .with_job(job(b))
        .with_store(sqlite())
        .with_options(options())
        .start()
        .await
        .unwrap();
    let mut events = engine.subscribe();
    // It may have ended before the subscription: poll the store with a deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let run = engine.get_run(&waiting.id).await.unwrap();
        if run.status.is_terminal() {
            assert_eq!(run.status, RunStatus::Succeeded);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queued run never ran"
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), events.recv()).await;
    }
}

#[tokio::test]
async fn a_paused_job_stops_firing_alone_and_stays_paused_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = || -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&dir.path().join("petit.db"), StoreOptions::default()).unwrap())
    };
    let other = "id: other\nschedule: '* * * * * *'\nmax_concurrency: 100\ntasks:\n  - {id: t, command: 'true'}\n";
    let clock = Arc::new(ManualClock::new(t(10, 0, 0, 500)));
    let engine = start(&[TICK, other], &clock, Some(sqlite())).await;
    let mut events = engine.subscribe();
    engine.pause_job("tick").await.unwrap();
    let paused = wait_event(&mut events, |e| e.kind() == EventKind::JobPaused).await;
    assert_eq!(paused.job_id(), "tick");
    assert!(engine.is_job_paused("tick"));
    assert!(engine.next_fires("tick", 3).is_empty(), "no fire listed");
    assert_eq!(engine.next_fires("other", 1), [t(10, 0, 1, 0)]);
    assert!(!engine.state().paused, "the scheduler itself runs");
    assert!(matches!(
        engine.pause_job("nope").await,
        Err(petit_server::EngineError::JobNotFound(_))
    ));

    at(&engine, &clock, t(10, 0, 2, 0)).await;
    assert!(fired(&engine, "tick").await.is_empty());
    assert_eq!(
        fired(&engine, "other").await,
        [t(10, 0, 1, 0), t(10, 0, 2, 0)]
    );
    // A manual trigger of the paused job still works.
    engine
        .trigger("tick", BTreeMap::new(), false)
        .await
        .unwrap();
    engine.shutdown(Duration::from_secs(5)).await;
    drop(engine);

    let engine = start(&[TICK, other], &clock, Some(sqlite())).await;
    assert!(engine.is_job_paused("tick"), "the pause is stored");
    at(&engine, &clock, t(10, 0, 4, 0)).await;
    assert!(fired(&engine, "tick").await.is_empty());

    // Resumed at 10:00:04.5: armed from then, nothing made up.
    clock.set(t(10, 0, 4, 500));
    engine.resume_job("tick").await.unwrap();
    assert_eq!(
        engine.next_fires("tick", 2),
        [t(10, 0, 5, 0), t(10, 0, 6, 0)]
    );
    at(&engine, &clock, t(10, 0, 5, 0)).await;
    assert_eq!(fired(&engine, "tick").await, [t(10, 0, 5, 0)]);
}

#[tokio::test]
async fn a_backfill_queues_the_missing_instants_once_and_runs_them_within_the_limit() {
    let hourly = "id: hourly\nschedule: '0 0 * * * *'\ntasks:\n  - {id: t, command: 'true'}\n";
    let manual = "id: manual\ntasks:\n  - {id: t, command: 'true'}\n";
    let clock = Arc::new(ManualClock::new(t(2, 59, 59, 0)));
    let engine = start(&[hourly, manual], &clock, None).await;
    let mut events = engine.subscribe();
    at(&engine, &clock, t(3, 0, 0, 0)).await;
    assert_eq!(fired(&engine, "hourly").await, [t(3, 0, 0, 0)]);
    wait_event(&mut events, |e| e.ends_run()).await;

    let dry = engine
        .backfill("hourly", t(1, 0, 0, 0), t(5, 0, 0, 0), true, None)
        .await
        .unwrap();
    assert_eq!(
        dry.instants,
        [t(1, 0, 0, 0), t(2, 0, 0, 0), t(4, 0, 0, 0), t(5, 0, 0, 0)]
    );
    assert_eq!((dry.runs.len(), dry.already_run), (0, 1));
    assert_eq!(
        fired(&engine, "hourly").await.len(),
        1,
        "a dry run queues nothing"
    );

    let done = engine
        .backfill(
            "hourly",
            t(1, 0, 0, 0),
            t(5, 0, 0, 0),
            false,
            Some("ops".into()),
        )
        .await
        .unwrap();
    assert_eq!(done.instants, dry.instants);
    assert_eq!(
        done.runs.len(),
        4,
        "more than max_concurrency 1: they wait in the queue"
    );
    for run in &done.runs {
        assert_eq!(run.trigger, TriggerReason::Backfill);
        assert_eq!(run.triggered_by.as_deref(), Some("ops"));
    }
    let again = engine
        .backfill("hourly", t(1, 0, 0, 0), t(5, 0, 0, 0), false, None)
        .await
        .unwrap();
    assert_eq!(
        (again.runs.len(), again.already_run),
        (0, 5),
        "no instant twice"
    );

    // One at a time (max_concurrency 1), oldest first, all to their end.
    let mut ended = Vec::new();
    while ended.len() < 4 {
        let e = wait_event(&mut events, |e| e.ends_run()).await;
        let run = e.run().unwrap();
        assert_eq!(run.status, RunStatus::Succeeded);
        ended.push(run.scheduled_for.unwrap());
    }
    assert_eq!(ended, dry.instants);

    let refused = engine
        .backfill(
            "hourly",
            t(0, 0, 0, 0),
            t(0, 0, 0, 0) + chrono::Duration::days(500),
            true,
            None,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("12001 fire instants"), "{refused}");
    let refused = engine
        .backfill("manual", t(0, 0, 0, 0), t(5, 0, 0, 0), true, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("no schedule"), "{refused}");
}

/// The instants of a job's runs of one trigger reason, oldest first.
async fn runs_by(engine: &Engine, job_id: &str, trigger: TriggerReason) -> Vec<DateTime<Utc>> {
    let runs = engine
        .store()
        .list_runs(
            Some(job_id),
            RunPage {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut at: Vec<DateTime<Utc>> = runs
        .iter()
        .filter(|r| r.trigger == trigger)
        .map(|r| r.scheduled_for.expect("a scheduled run stores its instant"))
        .collect();
    at.sort();
    at
}

#[tokio::test]
async fn catch_up_after_a_restart_runs_the_missed_fires_once() {
    for (policy, want) in [("all", vec![2, 3, 4, 5]), ("latest", vec![5])] {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = || -> Arc<dyn Store> {
            Arc::new(
                SqliteStore::open(&dir.path().join("petit.db"), StoreOptions::default()).unwrap(),
            )
        };
        let yaml = format!(
            "id: minutely\nschedule: '0 * * * * *'\ncatchup: {policy}\ncatchup_window: 1h\n\
             max_concurrency: 10\ntasks:\n  - {{id: t, command: 'true'}}\n"
        );
        let clock = Arc::new(ManualClock::new(t(10, 0, 30, 0)));
        let engine = start(&[&yaml], &clock, Some(sqlite())).await;
        at(&engine, &clock, t(10, 1, 0, 0)).await;
        assert_eq!(fired(&engine, "minutely").await, [t(10, 1, 0, 0)]);
        engine.shutdown(Duration::from_secs(5)).await;
        drop(engine);

        // Down from 10:01 to 10:05:30.
        clock.set(t(10, 5, 30, 0));
        let engine = start(&[&yaml], &clock, Some(sqlite())).await;
        engine.settle().await;
        let want: Vec<DateTime<Utc>> = want.iter().map(|m| t(10, *m, 0, 0)).collect();
        assert_eq!(
            runs_by(&engine, "minutely", TriggerReason::Catchup).await,
            want,
            "{policy}"
        );
        engine.shutdown(Duration::from_secs(5)).await;
        drop(engine);

        // Started again at once: nothing missed since, nothing twice.
        let engine = start(&[&yaml], &clock, Some(sqlite())).await;
        engine.settle().await;
        assert_eq!(
            runs_by(&engine, "minutely", TriggerReason::Catchup).await,
            want,
            "{policy}"
        );
        engine.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn catch_up_after_a_pause_and_none_by_default() {
    let caught = "id: caught\nschedule: '0 * * * * *'\ncatchup: all\nmax_concurrency: 10\ntasks:\n  - {id: t, command: 'true'}\n";
    let plain = "id: plain\nschedule: '0 * * * * *'\nmax_concurrency: 10\ntasks:\n  - {id: t, command: 'true'}\n";
    let clock = Arc::new(ManualClock::new(t(10, 0, 30, 0)));
    let engine = start(&[caught, plain], &clock, None).await;
    at(&engine, &clock, t(10, 1, 0, 0)).await;
    engine.pause().await.unwrap();
    clock.set(t(10, 3, 10, 0));
    engine.resume().await.unwrap();
    assert_eq!(
        runs_by(&engine, "caught", TriggerReason::Catchup).await,
        [t(10, 2, 0, 0), t(10, 3, 0, 0)]
    );
    assert!(runs_by(&engine, "plain", TriggerReason::Catchup)
        .await
        .is_empty());
}

#[tokio::test]
async fn overlap_policies_decide_what_a_fire_does_while_the_job_runs() {
    let job = |policy: &str| {
        format!(
            "id: {policy}\nschedule: '* * * * * *'\noverlap: {policy}\nmax_queued: 2\n\
             tasks:\n  - {{id: t, command: sleep, args: ['30']}}\n"
        )
    };
    let (skip, queue, allow, cancel) = (
        job("skip"),
        job("queue"),
        job("allow"),
        job("cancel_previous"),
    );
    let clock = Arc::new(ManualClock::new(t(10, 0, 0, 500)));
    let engine =
        Harness::new(parse_job(&skip, Path::new("s.yaml"), &GlobalConfig::default()).unwrap())
            .with_job(parse_job(&queue, Path::new("q.yaml"), &GlobalConfig::default()).unwrap())
            .with_job(parse_job(&allow, Path::new("a.yaml"), &GlobalConfig::default()).unwrap())
            .with_job(parse_job(&cancel, Path::new("c.yaml"), &GlobalConfig::default()).unwrap())
            .with_options(EngineOptions {
                clock: Some(clock.clone()),
                kill_grace: Duration::from_millis(200),
                ..Default::default()
            })
            .start()
            .await
            .unwrap();
    let mut events = engine.subscribe();
    for s in 1..=4 {
        at(&engine, &clock, t(10, 0, s, 0)).await;
    }
    let count = |job: &str, status: RunStatus| {
        let engine = engine.clone();
        let job = job.to_string();
        async move {
            engine
                .store()
                .list_runs(
                    Some(&job),
                    RunPage {
                        limit: 100,
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
                .iter()
                .filter(|r| r.status == status)
                .count()
        }
    };
    // skip: one run, three fires skipped.
    assert_eq!(fired(&engine, "skip").await.len(), 1);
    // queue: one running, two queued (max_queued 2), the fourth fire skipped.
    assert_eq!(fired(&engine, "queue").await.len(), 3);
    assert_eq!(count("queue", RunStatus::Queued).await, 2);
    // allow: every fire starts.
    assert_eq!(fired(&engine, "allow").await.len(), 4);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count("allow", RunStatus::Running).await < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "allow runs did not all start"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), events.recv()).await;
    }
    // cancel_previous: each fire cancels the one before; the last runs.
    assert_eq!(fired(&engine, "cancel_previous").await.len(), 4);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count("cancel_previous", RunStatus::Cancelled).await < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "earlier runs were not cancelled"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), events.recv()).await;
    }
    // A manual trigger over the limit: queued under queue (room left: none), refused under skip.
    assert!(matches!(
        engine.trigger("skip", BTreeMap::new(), false).await,
        Err(petit_server::EngineError::ConcurrencyLimit { .. })
    ));
    assert!(matches!(
        engine.trigger("queue", BTreeMap::new(), false).await,
        Err(petit_server::EngineError::QueueFull { .. })
    ));
    engine.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_job_timeout_stops_the_run_and_fails_it() {
    let slow = "id: slow\ntimeout: 300ms\ntasks:\n  - {id: wait, command: sleep, args: ['30']}\n  - {id: after, command: 'true', depends_on: [wait]}\n";
    let engine = Harness::new(job(slow))
        .with_options(EngineOptions {
            kill_grace: Duration::from_millis(200),
            ..Default::default()
        })
        .start()
        .await
        .unwrap();
    let mut events = engine.subscribe();
    let run = engine
        .trigger("slow", BTreeMap::new(), false)
        .await
        .unwrap();
    let ended = wait_event(&mut events, |e| {
        e.ends_run() && e.run_id() == Some(run.id.as_str())
    })
    .await;
    let ended = ended.run().unwrap();
    assert_eq!(ended.status, RunStatus::Failed);
    assert!(
        ended.error.as_deref().unwrap_or("").starts_with("timeout"),
        "{:?}",
        ended.error
    );
    let tasks = engine.store().task_runs(&run.id).await.unwrap();
    assert_eq!(tasks[0].status, petit_server::core::TaskStatus::TimedOut);
    assert_eq!(tasks[1].status, petit_server::core::TaskStatus::Cancelled);
}

#[tokio::test]
async fn history_bounds_keep_the_runs_table_and_the_file_from_growing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("petit.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db, StoreOptions::default()).unwrap());
    let yaml = "id: chatty\nhistory: {max_runs: 20}\ntasks:\n  - {id: t, command: sh, args: ['-c', 'seq 1 200']}\n";
    let engine = Harness::new(job(yaml))
        .with_store(store)
        .start()
        .await
        .unwrap();
    let mut events = engine.subscribe();
    let mut sizes = Vec::new();
    for round in 0..4 {
        for _ in 0..50 {
            let run = engine
                .trigger("chatty", BTreeMap::new(), false)
                .await
                .unwrap();
            wait_event(&mut events, |e| {
                e.ends_run() && e.run_id() == Some(run.id.as_str())
            })
            .await;
        }
        let deleted = engine.apply_history().await.unwrap();
        assert_eq!(deleted, if round == 0 { 30 } else { 50 }, "round {round}");
        let kept = engine
            .store()
            .list_runs(
                Some("chatty"),
                RunPage {
                    limit: 1000,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(kept.len(), 20);
        // The WAL is checkpointed into the file as it goes; sum both.
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        sizes.push(size(&db) + size(&db.with_extension("db-wal")));
    }
    // Freed pages are reused: after the first rounds the file stops growing.
    let (second, last) = (sizes[1], sizes[3]);
    assert!(
        last <= second + second / 4,
        "the database kept growing under a bounded history: {sizes:?}"
    );
}
