//! Conformance checks for the run queue: its order, claims of one run and of the next
//! one the limits allow, cancelling a run that has not started, and that a claim and a
//! cancel never both win.

use std::collections::HashMap;

use super::{at, ids, run, task, Subject};
use crate::core::{RunStatus, TaskStatus};
use crate::store::{ClaimLimits, Run, StoreError, StoreResult};

fn limits(max_running: usize, per_job: &[(&str, u32)]) -> ClaimLimits {
    ClaimLimits {
        max_running,
        per_job: per_job
            .iter()
            .map(|&(job, limit)| (job.to_owned(), limit))
            .collect::<HashMap<_, _>>(),
    }
}

/// Queued runs `(id, job, created)`, created in the order given.
async fn enqueue(subject: &Subject, runs: &[(&str, &str, i64)]) -> StoreResult<()> {
    let store = subject.store();
    for &(id, job, created) in runs {
        store
            .create_run(
                run(id, job, RunStatus::Queued, created),
                vec![task(id, "t")],
            )
            .await?;
    }
    Ok(())
}

/// What `claim_next` gives, one call after another, until it gives nothing.
async fn claim_all(subject: &Subject, limits: &ClaimLimits) -> StoreResult<Vec<String>> {
    let store = subject.store();
    let mut claimed = Vec::new();
    while let Some(run) = store.claim_next(limits, at(100)).await? {
        assert_eq!(run.status, RunStatus::Running);
        assert!(claimed.len() < 100, "claim_next does not stop");
        claimed.push(run.id);
    }
    Ok(claimed)
}

pub(super) async fn queued_runs_are_oldest_first(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    assert!(store.queued_runs().await?.is_empty());
    // Created out of order; "q3" and "q2" share an instant, so the id breaks the tie.
    enqueue(subject, &[("q4", "a", 4), ("q3", "b", 2), ("q1", "a", 1)]).await?;
    for (id, status, created) in [
        ("running", RunStatus::Running, 0),
        ("done", RunStatus::Succeeded, 0),
        ("cancelled", RunStatus::Cancelled, 0),
    ] {
        store
            .create_run(run(id, "a", status, created), vec![])
            .await?;
    }
    enqueue(subject, &[("q2", "a", 2)]).await?;

    let queued = store.queued_runs().await?;
    assert_eq!(ids(&queued), ["q1", "q2", "q3", "q4"]);
    assert_eq!(
        queued[0],
        run("q1", "a", RunStatus::Queued, 1),
        "whole runs"
    );
    assert_eq!(
        ids(&store.unfinished_runs().await?),
        ["running", "q1", "q2", "q3", "q4"],
        "unfinished runs are the queue and the running runs"
    );

    store.claim_run("q2", at(10)).await?;
    store.cancel_queued("q3", at(10), "cancelled").await?;
    assert_eq!(ids(&store.queued_runs().await?), ["q1", "q4"]);
    Ok(())
}

pub(super) async fn claim_run_takes_a_queued_run_once(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    enqueue(subject, &[("r1", "job", 1)]).await?;

    let claimed = store.claim_run("r1", at(5)).await?;
    let expected = Run {
        status: RunStatus::Running,
        started_at: Some(at(5)),
        ..run("r1", "job", RunStatus::Queued, 1)
    };
    assert_eq!(claimed, Some(expected.clone()));
    assert_eq!(store.get_run("r1").await?, Some(expected.clone()));
    assert_eq!(
        store.task_runs("r1").await?,
        vec![task("r1", "t")],
        "task runs stay pending"
    );

    // No longer queued: neither a second claim nor a cancel changes it.
    assert_eq!(store.claim_run("r1", at(6)).await?, None);
    assert_eq!(store.cancel_queued("r1", at(6), "too late").await?, None);
    assert_eq!(store.get_run("r1").await?, Some(expected.clone()));

    // Nor does anything claim a run that has ended.
    let ended = Run {
        status: RunStatus::Succeeded,
        ended_at: Some(at(7)),
        ..expected
    };
    store.update_run(ended.clone()).await?;
    assert_eq!(store.claim_run("r1", at(8)).await?, None);
    assert_eq!(store.get_run("r1").await?, Some(ended));

    for error in [
        store
            .claim_run("nope", at(1))
            .await
            .expect_err("unknown run"),
        store
            .cancel_queued("nope", at(1), "x")
            .await
            .expect_err("unknown run"),
    ] {
        assert!(
            matches!(&error, StoreError::RunNotFound { run_id } if run_id == "nope"),
            "{error:?}"
        );
    }
    Ok(())
}

pub(super) async fn cancel_queued_ends_a_run_and_its_tasks(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    store
        .create_run(
            run("r1", "job", RunStatus::Queued, 1),
            vec![task("r1", "a"), task("r1", "b")],
        )
        .await?;

    let cancelled = store
        .cancel_queued("r1", at(7), "cancelled before it started")
        .await?;
    let expected = Run {
        status: RunStatus::Cancelled,
        ended_at: Some(at(7)),
        error: Some("cancelled before it started".into()),
        ..run("r1", "job", RunStatus::Queued, 1)
    };
    assert_eq!(cancelled, Some(expected.clone()));
    assert_eq!(store.get_run("r1").await?, Some(expected.clone()));
    let tasks = store.task_runs("r1").await?;
    assert_eq!(tasks.len(), 2);
    for t in &tasks {
        assert_eq!(t.status, TaskStatus::Cancelled, "{}", t.task_id);
        assert_eq!(t.ended_at, Some(at(7)), "{}", t.task_id);
        assert_eq!(t.started_at, None, "{}", t.task_id);
    }

    assert_eq!(store.claim_run("r1", at(8)).await?, None);
    assert_eq!(store.cancel_queued("r1", at(8), "again").await?, None);
    assert_eq!(store.get_run("r1").await?, Some(expected));
    assert!(store.queued_runs().await?.is_empty());
    Ok(())
}

/// A claim and a cancel of the same run, issued together: exactly one wins, and the
/// run ends up as the winner left it.
pub(super) async fn claim_and_cancel_never_both_win(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    let runs: Vec<String> = (0..20).map(|n| format!("r{n:02}")).collect();
    for (n, id) in runs.iter().enumerate() {
        store
            .create_run(
                run(id, "job", RunStatus::Queued, n as i64),
                vec![task(id, "t")],
            )
            .await?;
    }
    for (n, id) in runs.iter().enumerate() {
        // Alternate which is issued first.
        let (claimed, cancelled) = if n % 2 == 0 {
            tokio::join!(
                store.claim_run(id, at(50)),
                store.cancel_queued(id, at(50), "cancelled")
            )
        } else {
            let (cancelled, claimed) = tokio::join!(
                store.cancel_queued(id, at(50), "cancelled"),
                store.claim_run(id, at(50))
            );
            (claimed, cancelled)
        };
        let (claimed, cancelled) = (claimed?, cancelled?);
        assert!(
            claimed.is_some() != cancelled.is_some(),
            "{id}: claimed {claimed:?}, cancelled {cancelled:?}"
        );
        let winner = claimed.or(cancelled);
        assert_eq!(store.get_run(id).await?, winner, "{id}");
    }
    assert!(store.queued_runs().await?.is_empty());
    Ok(())
}

pub(super) async fn claim_next_respects_max_running(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    // A run of a job the limits do not name still counts against the total.
    store
        .create_run(run("other", "elsewhere", RunStatus::Running, 0), vec![])
        .await?;
    enqueue(subject, &[("a2", "a", 2), ("a1", "a", 1), ("a3", "a", 3)]).await?;

    let limits = limits(3, &[("a", 10)]);
    let claimed = store.claim_next(&limits, at(10)).await?;
    let expected = Run {
        status: RunStatus::Running,
        started_at: Some(at(10)),
        ..run("a1", "a", RunStatus::Queued, 1)
    };
    assert_eq!(claimed, Some(expected.clone()), "the oldest, made running");
    assert_eq!(store.get_run("a1").await?, Some(expected));
    assert_eq!(claim_all(subject, &limits).await?, ["a2"], "three running");
    assert_eq!(ids(&store.queued_runs().await?), ["a3"]);

    // One ends: there is room for one more.
    let ended = Run {
        status: RunStatus::Succeeded,
        ended_at: Some(at(20)),
        ..run("other", "elsewhere", RunStatus::Running, 0)
    };
    store.update_run(ended).await?;
    assert_eq!(claim_all(subject, &limits).await?, ["a3"]);
    assert_eq!(
        claim_all(subject, &self::limits(0, &[("a", 10)])).await?,
        Vec::<String>::new()
    );
    Ok(())
}

pub(super) async fn claim_next_skips_jobs_at_their_limit(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    enqueue(
        subject,
        &[
            ("a1", "a", 1),
            ("a2", "a", 2),
            ("b1", "b", 3),
            ("a3", "a", 4),
            ("b2", "b", 5),
            ("b3", "b", 6),
        ],
    )
    .await?;
    let limits = limits(100, &[("a", 1), ("b", 2)]);
    // a1 fills a; a2 and a3 wait while b's runs, queued after them, go.
    assert_eq!(claim_all(subject, &limits).await?, ["a1", "b1", "b2"]);
    assert_eq!(ids(&store.queued_runs().await?), ["a2", "a3", "b3"]);

    let ended = Run {
        status: RunStatus::Failed,
        ended_at: Some(at(200)),
        ..run("a1", "a", RunStatus::Running, 1)
    };
    store.update_run(ended).await?;
    assert_eq!(claim_all(subject, &limits).await?, ["a2"]);

    // A higher limit lets more of a job run at once.
    let wider = self::limits(100, &[("a", 2), ("b", 3)]);
    assert_eq!(claim_all(subject, &wider).await?, ["a3", "b3"]);
    Ok(())
}

pub(super) async fn claim_next_never_claims_absent_jobs(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    enqueue(
        subject,
        &[("p1", "paused", 1), ("p2", "paused", 2), ("o1", "other", 3)],
    )
    .await?;
    assert_eq!(
        claim_all(subject, &limits(10, &[])).await?,
        Vec::<String>::new()
    );
    assert_eq!(
        claim_all(subject, &limits(10, &[("other", 5), ("unknown", 5)])).await?,
        ["o1"]
    );
    // A limit of 0 is as good as absent.
    assert_eq!(
        claim_all(subject, &limits(10, &[("paused", 0)])).await?,
        Vec::<String>::new()
    );
    assert_eq!(ids(&store.queued_runs().await?), ["p1", "p2"]);
    // Still claimable one by one (the engine decides what it claims by id).
    assert!(store.claim_run("p1", at(9)).await?.is_some());
    Ok(())
}

/// Many claimers at once (as an engine's loop and its triggers may be): together they
/// claim no more than the limits allow, and each run once.
pub(super) async fn concurrent_claims_respect_the_limits(subject: &Subject) -> StoreResult<()> {
    let store = subject.store();
    for n in 0..30 {
        let job = if n % 2 == 0 { "a" } else { "b" };
        enqueue(subject, &[(&format!("r{n:02}"), job, n)]).await?;
    }
    let limits = limits(4, &[("a", 1), ("b", 5)]);
    let claims = (0..12).map(|_| store.claim_next(&limits, at(100)));
    let claimed: Vec<Run> = futures::future::join_all(claims)
        .await
        .into_iter()
        .collect::<StoreResult<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    let mut claimed_ids = ids(&claimed);
    claimed_ids.sort_unstable();
    // a's first run, then b's three oldest (a is full after one).
    assert_eq!(claimed_ids, ["r00", "r01", "r03", "r05"]);
    let running: Vec<Run> = store
        .unfinished_runs()
        .await?
        .into_iter()
        .filter(|r| r.status == RunStatus::Running)
        .collect();
    assert_eq!(running.len(), 4);
    Ok(())
}
