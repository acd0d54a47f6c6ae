//! Resource pools shared by the cluster: one row per slot (`pool_slots`), held by a
//! task of a run and the node epoch that runs it. A slot is free when nobody holds it,
//! or when its holder's run no longer runs under that epoch (it ended, or was taken
//! over with its node): so slots never leak with a crashed node.

use deadpool_postgres::GenericClient;

use super::rows::pg;
use super::{execute, query};
use crate::store::{Lease, StoreResult};

/// Takes `want` free slots of `pool` (slots `0..size`) for `(run_id, task_id)` in the
/// caller's transaction; whether there were enough (none is taken otherwise).
pub(super) async fn take<C: GenericClient + Sync>(
    tx: &C,
    pool: &str,
    size: u32,
    want: u32,
    holder: (&str, &str),
    lease: &Lease,
) -> StoreResult<bool> {
    let failed = || pg(format!("cannot take a slot of pool '{pool}'"));
    let (size, want) = (i32::try_from(size).unwrap_or(i32::MAX), i64::from(want));
    if want > i64::from(size) {
        return Ok(false);
    }
    // The slots exist once: every node that uses the pool makes sure of it.
    execute(
        tx,
        "INSERT INTO pool_slots (pool, slot)
         SELECT $1, s FROM generate_series(0, $2::int - 1) AS s
         ON CONFLICT (pool, slot) DO NOTHING",
        &[&pool, &size],
    )
    .await
    .map_err(failed())?;
    let free = query(
        tx,
        "SELECT s.slot FROM pool_slots s
         WHERE s.pool = $1 AND s.slot < $2
           AND (s.run_id IS NULL OR NOT EXISTS (
                SELECT 1 FROM runs r
                WHERE r.id = s.run_id AND r.status = 'running'
                  AND r.node_id = s.node_id AND r.node_epoch = s.node_epoch))
         ORDER BY s.slot
         LIMIT $3
         FOR UPDATE OF s SKIP LOCKED",
        &[&pool, &size, &want],
    )
    .await
    .map_err(failed())?;
    if (free.len() as i64) < want {
        return Ok(false);
    }
    let slots: Vec<i32> = free.iter().map(|row| row.get(0)).collect();
    let epoch = i64::try_from(lease.epoch).unwrap_or(i64::MAX);
    execute(
        tx,
        "UPDATE pool_slots SET run_id = $3, task_id = $4, node_id = $5, node_epoch = $6
         WHERE pool = $1 AND slot = ANY($2)",
        &[&pool, &slots, &holder.0, &holder.1, &lease.node_id, &epoch],
    )
    .await
    .map_err(failed())?;
    Ok(true)
}

/// Gives back every slot of `pool` that `(run_id, task_id)` holds.
pub(super) async fn release<C: GenericClient + Sync>(
    tx: &C,
    pool: &str,
    holder: (&str, &str),
) -> StoreResult<()> {
    execute(
        tx,
        "UPDATE pool_slots SET run_id = NULL, task_id = NULL, node_id = NULL, node_epoch = NULL
         WHERE pool = $1 AND run_id = $2 AND task_id = $3",
        &[&pool, &holder.0, &holder.1],
    )
    .await
    .map_err(pg(format!("cannot give back the slots of pool '{pool}'")))?;
    Ok(())
}
