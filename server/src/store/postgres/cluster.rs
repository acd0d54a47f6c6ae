//! Membership in PostgreSQL: one `nodes` row per epoch of each node; joining (a new
//! epoch, taking over the runs of the earlier ones), heartbeats, declaring expired
//! nodes dead and moving their runs (by the database's clock, atomically: the dead
//! node's row is updated once, and each run row moves once), leaving, the nodes as
//! seen with a lease, cancel requests, and the cluster's job definitions.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::{Client, GenericClient};

use super::notes::{self, Sender};
use super::rows::{pg, runs_from_rows, R_RUN_COLUMNS};
use super::{execute, query, query_opt};
use crate::store::{Lease, NodeInfo, NodeRecord, NoteKind, Run, StoreError, StoreResult};

/// Advisory lock namespace of joins: two joins of one node id, one at a time.
const JOINS: i32 = 3;

/// The lease, or the refusal of a cluster call made before joining.
pub(super) fn joined(lease: Option<Lease>) -> StoreResult<Lease> {
    lease.ok_or_else(|| {
        StoreError::Invalid("this node has not joined the cluster (no lease)".to_owned())
    })
}

fn micros(lease: Duration) -> i64 {
    i64::try_from(lease.as_micros()).unwrap_or(i64::MAX)
}

/// A note for each run moved, and one for the membership.
fn moved_notes(runs: &[Run]) -> Vec<NoteKind> {
    let mut notes = vec![NoteKind::Nodes];
    notes.extend(runs.iter().map(|run| NoteKind::Run {
        run_id: run.id.clone(),
    }));
    notes
}

pub(super) async fn join(
    client: &mut Client,
    info: &NodeInfo,
    sender: &Sender,
) -> StoreResult<(Lease, Vec<Run>)> {
    let failed = || pg(format!("cannot join the cluster as node '{}'", info.id));
    let tx = client.transaction().await.map_err(failed())?;
    execute(
        &tx,
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&JOINS, &info.id],
    )
    .await
    .map_err(failed())?;
    let epoch: i64 = query_opt(
        &tx,
        "SELECT COALESCE(MAX(epoch), 0) + 1 FROM nodes WHERE id = $1",
        &[&info.id],
    )
    .await
    .map_err(failed())?
    .map_or(1, |row| row.get(0));
    // The earlier epochs are over: a node that restarts is a new epoch. Their runs
    // are locked in id order (see take_over_expired).
    execute(
        &tx,
        "UPDATE nodes SET dead = true WHERE id = $1 AND NOT dead",
        &[&info.id],
    )
    .await
    .map_err(failed())?;
    execute(
        &tx,
        "INSERT INTO nodes (id, epoch, address, version, joined_at, heartbeat_at)
         VALUES ($1, $2, $3, $4, now(), now())",
        &[&info.id, &epoch, &info.address, &info.version],
    )
    .await
    .map_err(failed())?;
    let rows = query(
        &tx,
        &format!(
            "WITH moving AS (
                 SELECT id FROM runs
                 WHERE status = 'running' AND node_id = $1 AND node_epoch < $2
                 ORDER BY id FOR UPDATE)
             UPDATE runs AS r SET node_epoch = $2 FROM moving WHERE r.id = moving.id
             RETURNING {R_RUN_COLUMNS}"
        ),
        &[&info.id, &epoch],
    )
    .await
    .map_err(failed())?;
    let mut runs = runs_from_rows(&rows)?;
    runs.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    let lease = Lease {
        node_id: info.id.clone(),
        epoch: epoch as u64,
    };
    // The store's lease is set once this commits; these notes name the node already.
    let as_node = sender.as_node(&lease);
    notes::send(&tx, &as_node, &moved_notes(&runs)).await?;
    tx.commit().await.map_err(failed())?;
    Ok((lease, runs))
}

pub(super) async fn heartbeat<C: GenericClient + Sync>(
    client: &C,
    lease: &Lease,
) -> StoreResult<bool> {
    // Atomic with a takeover: whichever updates the row first wins, and the other
    // sees its result (a renewed heartbeat is not expired; a dead epoch not renewed).
    let renewed = execute(
        client,
        r#"UPDATE nodes SET heartbeat_at = now()
           WHERE id = $1 AND epoch = $2 AND NOT dead AND NOT "left""#,
        &[&lease.node_id, &(lease.epoch as i64)],
    )
    .await
    .map_err(pg("cannot renew the lease"))?;
    Ok(renewed == 1)
}

pub(super) async fn take_over_expired(
    client: &mut Client,
    lease: Duration,
    mine: &Lease,
    sender: &Sender,
) -> StoreResult<Vec<Run>> {
    let failed = || pg("cannot take over expired nodes");
    let epoch = mine.epoch as i64;
    let tx = client.transaction().await.map_err(failed())?;
    // Only a live node takes over; its own row held (shared) meanwhile, so that it is
    // not itself declared dead halfway.
    let alive = query_opt(
        &tx,
        r#"SELECT 1 FROM nodes WHERE id = $1 AND epoch = $2 AND NOT dead AND NOT "left"
           FOR SHARE"#,
        &[&mine.node_id, &epoch],
    )
    .await
    .map_err(failed())?;
    if alive.is_none() {
        return Err(StoreError::LeaseLost {
            node_id: mine.node_id.clone(),
            epoch: mine.epoch,
        });
    }
    // SKIP LOCKED: a row another transaction holds is its node claiming or taking
    // over right now (alive, then) or another taker declaring it dead; waiting for it
    // could deadlock two takers that each see the other expired (after an outage of
    // the database longer than the lease, say).
    let declared = execute(
        &tx,
        r#"UPDATE nodes SET dead = true
           WHERE (id, epoch) IN (
               SELECT id, epoch FROM nodes
               WHERE NOT dead AND NOT "left" AND id <> $1
                 AND heartbeat_at < now() - $2::bigint * interval '1 microsecond'
               FOR UPDATE SKIP LOCKED)"#,
        &[&mine.node_id, &micros(lease)],
    )
    .await
    .map_err(failed())?;
    // Every run still running under an epoch that is over (declared dead now or
    // before, or left): a run row moves once, whoever else tries (a row another
    // taker moved meanwhile no longer matches once its lock is had). Rows are locked
    // in id order, as every statement that locks several runs does, so that two of
    // them cannot deadlock.
    let rows = query(
        &tx,
        &format!(
            r#"WITH moving AS (
                   SELECT r.id FROM runs AS r
                   JOIN nodes AS n ON r.node_id = n.id AND r.node_epoch = n.epoch
                   WHERE r.status = 'running' AND (n.dead OR n."left")
                     AND NOT (r.node_id = $1 AND r.node_epoch = $2)
                   ORDER BY r.id FOR UPDATE OF r)
               UPDATE runs AS r SET node_id = $1, node_epoch = $2
               FROM moving WHERE r.id = moving.id
               RETURNING {R_RUN_COLUMNS}"#
        ),
        &[&mine.node_id, &epoch],
    )
    .await
    .map_err(failed())?;
    let mut runs = runs_from_rows(&rows)?;
    runs.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    if declared > 0 || !runs.is_empty() {
        notes::send(&tx, sender, &moved_notes(&runs)).await?;
    }
    tx.commit().await.map_err(failed())?;
    Ok(runs)
}

pub(super) async fn leave(client: &mut Client, lease: &Lease, sender: &Sender) -> StoreResult<()> {
    let failed = || pg("cannot leave the cluster");
    let tx = client.transaction().await.map_err(failed())?;
    execute(
        &tx,
        r#"UPDATE nodes SET "left" = true WHERE id = $1 AND epoch = $2"#,
        &[&lease.node_id, &(lease.epoch as i64)],
    )
    .await
    .map_err(failed())?;
    // Its runs, if any, are for the others to take over now.
    notes::send(&tx, sender, &[NoteKind::Nodes, NoteKind::Queue]).await?;
    tx.commit().await.map_err(failed())
}

pub(super) async fn nodes<C: GenericClient + Sync>(
    client: &C,
    lease: Duration,
) -> StoreResult<Vec<NodeRecord>> {
    let rows = query(
        client,
        r#"SELECT n.id, n.epoch, n.address, n.version, n.joined_at, n.heartbeat_at,
               NOT n.dead AND NOT n."left"
                   AND n.heartbeat_at >= now() - $1::bigint * interval '1 microsecond',
               n."left", n.mismatched,
               (SELECT count(*) FROM runs AS r WHERE r.status = 'running'
                    AND r.node_id = n.id AND r.node_epoch = n.epoch)
           FROM (SELECT DISTINCT ON (id) * FROM nodes ORDER BY id, epoch DESC) AS n
           ORDER BY n.id"#,
        &[&micros(lease)],
    )
    .await
    .map_err(pg("cannot read nodes"))?;
    rows.iter()
        .map(|row| {
            let epoch: i64 = row.get(1);
            let running: i64 = row.get(9);
            let mut mismatched: Vec<String> = row.get(8);
            mismatched.sort();
            Ok(NodeRecord {
                id: row.get(0),
                epoch: epoch as u64,
                address: row.get(2),
                version: row.get(3),
                joined_at: row.get(4),
                heartbeat_at: row.get(5),
                alive: row.get(6),
                left: row.get(7),
                running: u32::try_from(running).unwrap_or(u32::MAX),
                mismatched,
            })
        })
        .collect()
}

pub(super) async fn job_counts<C: GenericClient + Sync>(
    client: &C,
    job_id: &str,
) -> StoreResult<(usize, usize)> {
    let row = query_opt(
        client,
        "SELECT count(*) FILTER (WHERE status = 'queued'),
                count(*) FILTER (WHERE status = 'running')
         FROM runs WHERE job_id = $1 AND status IN ('queued', 'running')",
        &[&job_id],
    )
    .await
    .map_err(pg(format!("cannot count the runs of job '{job_id}'")))?;
    Ok(row.map_or((0, 0), |row| {
        (row.get::<_, i64>(0) as usize, row.get::<_, i64>(1) as usize)
    }))
}

pub(super) async fn request_cancel(
    client: &mut Client,
    run_id: &str,
    sender: &Sender,
) -> StoreResult<bool> {
    let failed = || pg(format!("cannot request the cancel of run '{run_id}'"));
    let tx = client.transaction().await.map_err(failed())?;
    let running = query_opt(
        &tx,
        "UPDATE runs SET cancel_requested = true WHERE id = $1 AND status = 'running'
         RETURNING 1",
        &[&run_id],
    )
    .await
    .map_err(failed())?
    .is_some();
    if running {
        let cancel = NoteKind::Cancel {
            run_id: run_id.to_owned(),
        };
        notes::send(&tx, sender, &[cancel]).await?;
    }
    tx.commit().await.map_err(failed())?;
    Ok(running)
}

pub(super) async fn cancel_requests<C: GenericClient + Sync>(
    client: &C,
    mine: &Lease,
) -> StoreResult<Vec<String>> {
    let rows = query(
        client,
        "SELECT id FROM runs
         WHERE status = 'running' AND node_id = $1 AND node_epoch = $2 AND cancel_requested
         ORDER BY created_at, id",
        &[&mine.node_id, &(mine.epoch as i64)],
    )
    .await
    .map_err(pg("cannot read cancel requests"))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

pub(super) async fn publish_definitions(
    client: &mut Client,
    definitions: &HashMap<String, String>,
    sender: &Sender,
) -> StoreResult<()> {
    let failed = || pg("cannot publish job definitions");
    let (jobs, hashes): (Vec<&str>, Vec<&str>) = definitions
        .iter()
        .map(|(job, hash)| (job.as_str(), hash.as_str()))
        .unzip();
    let tx = client.transaction().await.map_err(failed())?;
    execute(
        &tx,
        "INSERT INTO definitions (job_id, hash, published_by, published_at)
         SELECT job, hash, $3, now() FROM unnest($1::text[], $2::text[]) AS d (job, hash)
         ON CONFLICT (job_id) DO UPDATE SET hash = excluded.hash,
             published_by = excluded.published_by, published_at = excluded.published_at",
        &[&jobs, &hashes, &sender.node_id()],
    )
    .await
    .map_err(failed())?;
    notes::send(&tx, sender, &[NoteKind::Definitions]).await?;
    tx.commit().await.map_err(failed())
}

pub(super) async fn definitions<C: GenericClient + Sync>(
    client: &C,
) -> StoreResult<HashMap<String, String>> {
    let rows = query(client, "SELECT job_id, hash FROM definitions", &[])
        .await
        .map_err(pg("cannot read job definitions"))?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

pub(super) async fn set_mismatched(
    client: &mut Client,
    mine: &Lease,
    jobs: &[String],
    sender: &Sender,
) -> StoreResult<()> {
    let failed = || pg("cannot record this node's mismatched jobs");
    let mut jobs = jobs.to_vec();
    jobs.sort();
    jobs.dedup();
    let tx = client.transaction().await.map_err(failed())?;
    execute(
        &tx,
        "UPDATE nodes SET mismatched = $3 WHERE id = $1 AND epoch = $2",
        &[&mine.node_id, &(mine.epoch as i64), &jobs],
    )
    .await
    .map_err(failed())?;
    notes::send(&tx, sender, &[NoteKind::Nodes]).await?;
    tx.commit().await.map_err(failed())
}
