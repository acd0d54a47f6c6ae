//! The PostgreSQL schema: every migration in order, and bringing a database up to date
//! when a store connects. All pending migrations run in one transaction under an
//! advisory lock, so that several nodes starting at once migrate once (the others wait,
//! then find nothing to do), and `schema_migrations` records each version applied.
//!
//! Times of the model are `BIGINT` nanoseconds since the Unix epoch: the model keeps
//! nanoseconds and PostgreSQL's timestamps keep microseconds. Times that the database
//! decides (heartbeats, leases) are `timestamptz` from `now()`.

use deadpool_postgres::Client;

use super::rows::pg;
use crate::store::{StoreError, StoreResult};

/// The advisory lock held while migrating (an arbitrary constant: "petit" in ASCII).
const MIGRATION_LOCK: i64 = 0x0070_6574_6974;

/// Schema changes in order: entry `i` takes a database from version `i` to `i + 1`.
/// Append only; never edit a migration that has shipped.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the history (as SQLite's schema at version 9), the queue and cluster mode.
    r#"
    CREATE TABLE jobs (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        source      TEXT NOT NULL,
        schedule    TEXT,
        updated_at  BIGINT NOT NULL
    );

    -- No foreign key to jobs: runs outlive the job files that defined them. A claimed
    -- run records the node and epoch that claimed it (fencing).
    CREATE TABLE runs (
        id            TEXT PRIMARY KEY,
        job_id        TEXT NOT NULL,
        status        TEXT NOT NULL,
        "trigger"     TEXT NOT NULL,
        params        TEXT NOT NULL,
        created_at    BIGINT NOT NULL,
        started_at    BIGINT,
        ended_at      BIGINT,
        error         TEXT,
        triggered_by  TEXT,
        scheduled_for BIGINT,
        definition    TEXT,
        retry_of      TEXT,
        node_id       TEXT,
        node_epoch    BIGINT,
        -- Someone asked the owner to cancel this running run (cluster mode).
        cancel_requested BOOLEAN NOT NULL DEFAULT false
    );
    CREATE INDEX runs_by_job ON runs (job_id, created_at DESC, id DESC);
    CREATE INDEX runs_by_created ON runs (created_at DESC, id DESC);
    -- One run per fire instant, whoever inserts it.
    CREATE UNIQUE INDEX runs_by_fire ON runs (job_id, scheduled_for)
        WHERE scheduled_for IS NOT NULL;
    -- The queue's head (and the runs of a status, oldest first), and the running runs
    -- counted per job and per node (small partial indexes): a claim costs the queue
    -- and the running runs, not the history.
    CREATE INDEX runs_by_status ON runs (status, created_at, id);
    CREATE INDEX runs_running_by_job ON runs (job_id) WHERE status = 'running';
    CREATE INDEX runs_running_by_node ON runs (node_id, node_epoch)
        WHERE status = 'running';
    CREATE INDEX runs_ended ON runs (ended_at) WHERE ended_at IS NOT NULL;

    CREATE TABLE task_runs (
        run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        task_id     TEXT NOT NULL,
        ordinal     INTEGER NOT NULL,
        status      TEXT NOT NULL,
        attempts    BIGINT NOT NULL,
        exit_code   INTEGER,
        started_at  BIGINT,
        ended_at    BIGINT,
        error       TEXT,
        outputs     TEXT NOT NULL,
        PRIMARY KEY (run_id, task_id)
    );

    -- One row per line. `batch` (from a sequence, so an append never reads the table
    -- for it) and `pos` (the line's place in its append) order a run's lines as they
    -- were written; `line` is bytes because text cannot hold a NUL that a task wrote.
    CREATE SEQUENCE log_batches;
    CREATE TABLE log_lines (
        run_id      TEXT NOT NULL,
        batch       BIGINT NOT NULL,
        pos         BIGINT NOT NULL,
        task_id     TEXT NOT NULL,
        stream      TEXT NOT NULL,
        attempt     BIGINT NOT NULL,
        seq         BIGINT NOT NULL,
        time        BIGINT NOT NULL,
        line        BYTEA NOT NULL,
        bytes       INTEGER NOT NULL,  -- the line's UTF-8 length (the cap's unit)
        PRIMARY KEY (run_id, batch, pos)
    );
    -- A task's pages, and trimming a stream from its oldest line (with each line's
    -- size in the index, so finding the cut reads no line).
    CREATE INDEX log_lines_of_task ON log_lines (run_id, task_id, batch, pos);
    CREATE INDEX log_lines_of_stream ON log_lines (run_id, task_id, stream, batch, pos)
        INCLUDE (bytes);

    -- Bytes currently kept per stream, so that the cap costs one row update per
    -- append rather than a sum over the stream.
    CREATE TABLE log_totals (
        run_id      TEXT NOT NULL,
        task_id     TEXT NOT NULL,
        stream      TEXT NOT NULL,
        bytes       BIGINT NOT NULL,
        PRIMARY KEY (run_id, task_id, stream)
    );

    CREATE TABLE settings (
        key         TEXT PRIMARY KEY,
        value       TEXT NOT NULL
    );

    CREATE TABLE paused_jobs (
        job_id      TEXT PRIMARY KEY,
        since       BIGINT NOT NULL
    );

    CREATE TABLE audit (
        id          BIGSERIAL PRIMARY KEY,
        time        BIGINT NOT NULL,
        actor       TEXT NOT NULL,
        call        TEXT NOT NULL,
        target      TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        message     TEXT NOT NULL
    );

    -- No foreign key: a skipped fire's has no run (run_id is empty).
    CREATE TABLE notifications (
        id          BIGSERIAL PRIMARY KEY,
        run_id      TEXT NOT NULL,
        job_id      TEXT NOT NULL,
        time        BIGINT NOT NULL,
        event       TEXT NOT NULL,
        target      TEXT NOT NULL,
        attempt     BIGINT NOT NULL,
        outcome     TEXT NOT NULL,
        message     TEXT NOT NULL
    );
    CREATE INDEX notifications_by_run ON notifications (run_id, id);

    -- Cluster membership: one row per epoch of each node. The latest epoch of an id
    -- is the node's current one; earlier epochs are dead (superseded by a join).
    CREATE TABLE nodes (
        id            TEXT NOT NULL,
        epoch         BIGINT NOT NULL,
        address       TEXT NOT NULL,
        version       TEXT NOT NULL,
        joined_at     TIMESTAMPTZ NOT NULL,
        heartbeat_at  TIMESTAMPTZ NOT NULL,
        dead          BOOLEAN NOT NULL DEFAULT false,
        "left"        BOOLEAN NOT NULL DEFAULT false,
        mismatched    TEXT[] NOT NULL DEFAULT '{}',
        PRIMARY KEY (id, epoch)
    );

    -- The cluster's job definitions (content hashes), as the last node to load them
    -- stored them.
    CREATE TABLE definitions (
        job_id        TEXT PRIMARY KEY,
        hash          TEXT NOT NULL,
        published_by  TEXT NOT NULL,
        published_at  TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    "#,
    // 2: resource pools shared by the cluster, one row per slot (see pools.rs).
    r#"
    CREATE TABLE pool_slots (
        pool        TEXT NOT NULL,
        slot        INTEGER NOT NULL,
        run_id      TEXT,
        task_id     TEXT,
        node_id     TEXT,
        node_epoch  BIGINT,
        PRIMARY KEY (pool, slot)
    );
    CREATE INDEX pool_slots_by_holder ON pool_slots (pool, run_id, task_id);
    "#,
];

/// Applies the migrations this database lacks, in one transaction under the lock.
pub(super) async fn migrate(client: &mut Client, database: &str) -> StoreResult<()> {
    let failed = |e| pg(format!("cannot migrate database {database}"))(e);
    let tx = client.transaction().await.map_err(failed)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(failed)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version     BIGINT PRIMARY KEY,
             applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(failed)?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(failed)?
        .get(0);
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::PostgresSchemaTooNew {
            database: database.to_owned(),
            found: current,
            known,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        tx.batch_execute(sql).await.map_err(|e| {
            pg(format!(
                "cannot migrate database {database} to schema version {version}"
            ))(e)
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(failed)?;
    }
    tx.commit().await.map_err(failed)
}
