//! The run queue in PostgreSQL: claims (of one run, and of the next one the limits
//! allow, cluster-wide, by the node and epoch of this store's lease) and cancelling a
//! run that has not started. Each function runs inside the caller's transaction (or
//! its own short ones, for `claim_next`).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Client, GenericClient, Transaction};

use super::notes::{self, Sender};
use super::rows::{ns, pg, run_from_row, text, RUN_COLUMNS};
use super::{execute, query, query_opt};
use crate::core::TaskStatus;
use crate::store::{ClaimLimits, Lease, NoteKind, Run, StoreError, StoreResult};

/// Advisory lock namespaces (the first key of `pg_advisory_xact_lock(int, int)`): a
/// node's claims, and a job's claims, each taken one at a time cluster-wide.
const NODE_CLAIMS: i32 = 1;
const JOB_CLAIMS: i32 = 2;
/// Refuses a claim by a node whose lease is gone (declared dead, or left); holds its
/// row (shared) until the transaction ends, so a takeover of this node waits for the
/// claim and then moves the run it made.
async fn check_lease<C: GenericClient + Sync>(client: &C, lease: &Lease) -> StoreResult<()> {
    let epoch = lease.epoch as i64;
    let alive = query_opt(
        client,
        r#"SELECT 1 FROM nodes WHERE id = $1 AND epoch = $2 AND NOT dead AND NOT "left"
           FOR SHARE"#,
        &[&lease.node_id, &epoch],
    )
    .await
    .map_err(pg("cannot check this node's lease"))?;
    match alive {
        Some(_) => Ok(()),
        None => Err(StoreError::LeaseLost {
            node_id: lease.node_id.clone(),
            epoch: lease.epoch,
        }),
    }
}

/// The `(node_id, node_epoch)` a claim by this store records (none before a join).
pub(super) fn owner(lease: Option<&Lease>) -> (Option<&str>, Option<i64>) {
    match lease {
        Some(lease) => (Some(lease.node_id.as_str()), Some(lease.epoch as i64)),
        None => (None, None),
    }
}

/// Makes a queued run `running` from `at`, owned by this store's lease; `None` if it
/// is not queued.
pub(super) async fn claim_run<C: GenericClient + Sync>(
    client: &C,
    run_id: &str,
    at: DateTime<Utc>,
    lease: Option<&Lease>,
) -> StoreResult<Option<Run>> {
    if let Some(lease) = lease {
        check_lease(client, lease).await?;
    }
    let (node, epoch) = owner(lease);
    let claimed = query_opt(
        client,
        &format!(
            "UPDATE runs SET status = 'running', started_at = $2, node_id = $3, node_epoch = $4
             WHERE id = $1 AND status = 'queued' RETURNING {RUN_COLUMNS}"
        ),
        &[&run_id, &ns(&at)?, &node, &epoch],
    )
    .await
    .map_err(pg(format!("cannot claim run '{run_id}'")))?;
    match claimed {
        Some(row) => run_from_row(&row).map(Some),
        None => {
            known_run(client, run_id).await?;
            Ok(None)
        }
    }
}

/// The runs this node (this epoch; before a join, nobody) has running: its share.
pub(super) const NODE_SHARE: &str = "SELECT count(*) FROM runs WHERE status = 'running'
     AND node_id IS NOT DISTINCT FROM $1 AND node_epoch IS NOT DISTINCT FROM $2";
/// The running runs of some jobs, cluster-wide.
pub(super) const RUNNING_OF_JOBS: &str = "SELECT job_id, count(*) FROM runs
     WHERE status = 'running' AND job_id = ANY($1) GROUP BY job_id";
pub(super) const RUNNING_OF_JOB: &str =
    "SELECT count(*) FROM runs WHERE status = 'running' AND job_id = $1";
/// The oldest queued run of some jobs that no other claimer holds.
pub(super) const QUEUE_HEAD: &str = "SELECT id, job_id FROM runs
     WHERE status = 'queued' AND job_id = ANY($1)
     ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED";

/// Claims the oldest queued run the limits allow (see `Store::claim_next`), in short
/// transactions. Per-job limits hold cluster-wide because a job's claims are taken
/// one at a time (an advisory lock per job, then its running runs counted afresh);
/// `SKIP LOCKED` lets claimers of other jobs pass a run another claimer holds. Each
/// transaction holds at most one job's lock and never waits for another claimer's
/// row, so claimers cannot deadlock: a job found full after its lock ends the
/// transaction, and the next one looks past that job.
pub(super) async fn claim_next(
    client: &mut Client,
    limits: &ClaimLimits,
    at: DateTime<Utc>,
    lease: Option<&Lease>,
    sender: &Sender,
) -> StoreResult<Option<Run>> {
    let failed = || pg("cannot claim the next run");
    let (node, epoch) = owner(lease);
    let mut full: HashSet<&str> = HashSet::new();
    loop {
        let jobs: Vec<&str> = limits
            .per_job
            .iter()
            .filter(|&(job, &limit)| limit > 0 && !full.contains(job.as_str()))
            .map(|(job, _)| job.as_str())
            .collect();
        if jobs.is_empty() || limits.max_running == 0 {
            return Ok(None);
        }
        let tx = client.transaction().await.map_err(failed())?;
        // This node's claims one at a time, so that its share holds.
        execute(
            &tx,
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&NODE_CLAIMS, &node.unwrap_or("")],
        )
        .await
        .map_err(failed())?;
        if let Some(lease) = lease {
            check_lease(&tx, lease).await?;
        }
        let mine: i64 = query_opt(&tx, NODE_SHARE, &[&node, &epoch])
            .await
            .map_err(failed())?
            .map_or(0, |row| row.get(0));
        if mine as usize >= limits.max_running {
            return Ok(None);
        }
        let running = query(&tx, RUNNING_OF_JOBS, &[&jobs])
            .await
            .map_err(failed())?;
        let count_of = |job: &str| {
            running
                .iter()
                .find(|row| row.get::<_, &str>(0) == job)
                .map_or(0, |row| row.get::<_, i64>(1))
        };
        let limit_of = |job: &str| i64::from(limits.per_job.get(job).copied().unwrap_or(0));
        let eligible: Vec<&str> = jobs
            .iter()
            .copied()
            .filter(|job| count_of(job) < limit_of(job))
            .collect();
        if eligible.is_empty() {
            return Ok(None);
        }
        let head = query_opt(&tx, QUEUE_HEAD, &[&eligible])
            .await
            .map_err(failed())?;
        let Some(head) = head else {
            return Ok(None);
        };
        let (run_id, job_id): (String, String) = (head.get(0), head.get(1));
        execute(
            &tx,
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&JOB_CLAIMS, &job_id],
        )
        .await
        .map_err(failed())?;
        // Counted again under the job's lock: what the claimers before it committed.
        let now_running: i64 = query_opt(&tx, RUNNING_OF_JOB, &[&job_id])
            .await
            .map_err(failed())?
            .map_or(0, |row| row.get(0));
        if now_running >= limit_of(&job_id) {
            tx.rollback().await.map_err(failed())?;
            let job = limits
                .per_job
                .get_key_value(&job_id)
                .map_or("", |(job, _)| job.as_str());
            full.insert(job);
            continue;
        }
        let row = query_opt(
            &tx,
            &format!(
                "UPDATE runs SET status = 'running', started_at = $2, node_id = $3,
                     node_epoch = $4
                 WHERE id = $1 RETURNING {RUN_COLUMNS}"
            ),
            &[&run_id, &ns(&at)?, &node, &epoch],
        )
        .await
        .map_err(failed())?;
        let Some(row) = row else {
            return Ok(None);
        };
        let run = run_from_row(&row)?;
        notes::send(&tx, sender, &[NoteKind::Run { run_id }]).await?;
        tx.commit().await.map_err(failed())?;
        return Ok(Some(run));
    }
}

/// `Ok` if the run is stored, else `RunNotFound`.
async fn known_run<C: GenericClient + Sync>(client: &C, run_id: &str) -> StoreResult<()> {
    let found = query_opt(client, "SELECT 1 FROM runs WHERE id = $1", &[&run_id])
        .await
        .map_err(pg("cannot read run"))?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::RunNotFound {
            run_id: run_id.to_owned(),
        }),
    }
}

/// The statuses a task run keeps once it has one.
fn terminal_task_statuses() -> Vec<&'static str> {
    [
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Skipped,
        TaskStatus::TimedOut,
        TaskStatus::Cancelled,
    ]
    .into_iter()
    .filter(|s| s.is_terminal())
    .map(|s| s.as_str())
    .collect()
}

pub(super) async fn cancel_queued(
    tx: &Transaction<'_>,
    run_id: &str,
    at: DateTime<Utc>,
    message: &str,
) -> StoreResult<Option<Run>> {
    let failed = || pg(format!("cannot cancel run '{run_id}'"));
    let at = ns(&at)?;
    let cancelled = query_opt(
        tx,
        &format!(
            "UPDATE runs SET status = 'cancelled', ended_at = $2, error = $3
             WHERE id = $1 AND status = 'queued' RETURNING {RUN_COLUMNS}"
        ),
        &[&run_id, &at, &text(message)],
    )
    .await
    .map_err(failed())?;
    let Some(row) = cancelled else {
        known_run(tx, run_id).await?;
        return Ok(None);
    };
    // A queued run's task runs are all pending; the filter keeps any the engine may
    // have settled before as they are.
    execute(
        tx,
        "UPDATE task_runs SET status = $3, ended_at = $2
         WHERE run_id = $1 AND status <> ALL($4)",
        &[
            &run_id,
            &at,
            &TaskStatus::Cancelled.as_str(),
            &terminal_task_statuses(),
        ],
    )
    .await
    .map_err(failed())?;
    run_from_row(&row).map(Some)
}
