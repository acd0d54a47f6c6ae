//! Membership: fencing of a node taken over, one taker of a dead node, a restart
//! taking its own runs back, leaving, definitions and cancel requests.

use std::collections::HashMap;

use super::{age, at, node, note_where, run, stores, LEASE};
use crate::core::{LogStream, RunStatus, TaskStatus};
use crate::store::{ClusterStore, LogLine, NoteKind, Run, Store, StoreError, StoreResult, TaskRun};

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

/// After an outage longer than the lease every node looks expired to every other:
/// two of them taking over at once must not deadlock (each holds its own row); each
/// call ends, with runs, nothing, or the news that its own lease is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_expired_for_each_other_take_over_without_deadlock() -> StoreResult<()> {
    let Some(stores) = stores("mutual", 2).await else {
        return Ok(());
    };
    let (b, c) = (&stores[0], &stores[1]);
    for round in 0..10 {
        b.join(&node("b")).await?;
        c.join(&node("c")).await?;
        age(b, "b").await;
        age(b, "c").await;
        let (from_b, from_c) = tokio::join!(b.take_over_expired(LEASE), c.take_over_expired(LEASE));
        for result in [from_b, from_c] {
            match result {
                Ok(_) | Err(StoreError::LeaseLost { .. }) => {}
                Err(e) => panic!("round {round}: {e}"),
            }
        }
    }
    Ok(())
}
