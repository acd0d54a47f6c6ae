//! The queue across nodes: one run per fire whoever inserts it, per-job limits held
//! cluster-wide by concurrent claimers, each node's share.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{at, node, run, stores, LEASE};
use crate::core::{RunStatus, TriggerReason};
use crate::store::{ClaimLimits, ClusterStore, Run, Store, StoreError, StoreResult};

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
