//! The PostgreSQL store: the shared store of a cluster (DESIGN.md, "Cluster mode"),
//! also a plain [`Store`] with the SQLite store's semantics. How it reaches the
//! database (`connect`), the schema (`schema`), rows (`rows`), the run writes and their
//! fencing (`write`), the queue's claims (`queue`), logs (`logs`), reads (`read`),
//! membership, leases and takeover (`cluster`) and the notes between nodes (`notes`). This file is the store's face:
//! connecting, and each call given a pooled connection (and a transaction for writes,
//! whose notes go out when it commits).

mod cluster;
mod connect;
mod logs;
mod queue;
mod read;
mod rows;
mod schema;
#[cfg(test)]
mod tests;
mod write;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Client, GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use self::connect::DatabaseUrl;
pub use self::connect::{redact, PostgresConfig};
use self::notes::Sender;
use self::rows::{pg, pool as pool_failed};
use super::{
    AuditRecord, ClaimLimits, ClusterStore, JobRecord, Lease, LogLine, LogPage, LogPageLimit,
    LogStart, NodeInfo, NodeRecord, Note, NoteKind, NotificationRecord, Run, RunPage, Store,
    StoreOptions, StoreResult, TaskRun,
};
use crate::core::RunStatus;

mod notes;
mod pools;

/// Connections a store keeps to its database at most.
const POOL_SIZE: usize = 8;
/// How long a call waits for a free connection before failing.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// A [`Store`] and [`ClusterStore`] in a PostgreSQL database.
pub struct PostgresStore {
    pool: Pool,
    /// The database's URL without its password, for messages.
    database: String,
    /// Bytes of log kept per stream (see [`StoreOptions`]).
    log_cap: usize,
    /// Who this store's notes come from, and the lease its claims and writes carry.
    sender: Sender,
    notes: broadcast::Sender<Note>,
    /// The notes listener; aborted when the store goes.
    listener: JoinHandle<()>,
}

impl PostgresStore {
    /// Connects to the database at `url` (the password from the URL or a libpq
    /// password file), brings its schema up to date, and starts listening for notes.
    pub async fn connect(url: &str, options: StoreOptions) -> StoreResult<PostgresStore> {
        let config = PostgresConfig {
            url: url.to_owned(),
            password_file: None,
        };
        PostgresStore::connect_with(&config, options).await
    }

    /// As [`PostgresStore::connect`], with a password file.
    pub async fn connect_with(
        config: &PostgresConfig,
        options: StoreOptions,
    ) -> StoreResult<PostgresStore> {
        let url = Arc::new(DatabaseUrl::parse(config)?);
        let database = url.redacted.clone();
        let manager = Manager::from_config(
            url.config.clone(),
            url.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| super::StoreError::PostgresUnavailable {
                context: format!("cannot connect to {database}"),
                reason: e.to_string(),
            })?;
        let context = format!("cannot connect to {database}");
        let mut client = pool.get().await.map_err(pool_failed(context.as_str()))?;
        schema::migrate(&mut client, &database).await?;
        drop(client);

        // Listening before the constructor returns: no note sent after it is missed.
        let listening = notes::listen(&url).await?;
        let (notes, _) = broadcast::channel(notes::CAPACITY);
        let instance: Arc<str> = Arc::from(uuid::Uuid::now_v7().to_string());
        let listener = tokio::spawn(notes::run(
            Arc::clone(&url),
            listening,
            Arc::clone(&instance),
            notes.clone(),
        ));
        Ok(PostgresStore {
            pool,
            database,
            log_cap: options.max_log_bytes_per_stream,
            sender: Sender {
                instance,
                lease: Arc::new(RwLock::new(None)),
            },
            notes,
            listener,
        })
    }

    /// The database's URL, without its password.
    pub fn database(&self) -> &str {
        &self.database
    }

    async fn client(&self, context: &str) -> StoreResult<Client> {
        self.pool.get().await.map_err(pool_failed(context))
    }

    fn current_lease(&self) -> Option<Lease> {
        self.sender
            .lease
            .read()
            .ok()
            .and_then(|lease| lease.clone())
    }

    fn set_lease(&self, lease: Option<Lease>) {
        if let Ok(mut slot) = self.sender.lease.write() {
            *slot = lease;
        }
    }

    /// Sends the notes of a write and commits it: the notes go out with the commit.
    async fn commit(
        &self,
        tx: deadpool_postgres::Transaction<'_>,
        notes: &[NoteKind],
        context: &str,
    ) -> StoreResult<()> {
        notes::send(&tx, &self.sender, notes).await?;
        tx.commit().await.map_err(pg(context))
    }

    /// The recorded jobs (the trait has no reader for them), for tests.
    #[cfg(test)]
    pub(super) async fn stored_jobs(&self) -> StoreResult<Vec<JobRecord>> {
        let client = self.client("cannot read jobs").await?;
        read::jobs(&client).await
    }
}

#[cfg(test)]
impl PostgresStore {
    /// Runs SQL on the store's database (tests age heartbeats, look at rows).
    pub(super) async fn sql(&self, sql: &str) -> StoreResult<Vec<Row>> {
        let client = self.client("test SQL").await?;
        client
            .query(sql, &[])
            .await
            .map_err(pg(format!("test SQL {sql}")))
    }

    /// The plan PostgreSQL would run `sql` with, as prepared (a generic plan, with
    /// `args` as the parameters' values), with sequential scans, bitmap scans and sorts
    /// ruled out wherever there is another way: a plan that still has one has no index
    /// that serves the query in its order.
    pub(super) async fn plan(&self, sql: &str, args: &str) -> StoreResult<String> {
        let client = self.client("test SQL").await?;
        let failed = || pg(format!("cannot explain {sql}"));
        client
            .batch_execute(&format!(
                "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off;
                 SET enable_bitmapscan = off; SET enable_sort = off;
                 PREPARE planned AS {sql}"
            ))
            .await
            .map_err(failed())?;
        let rows = client
            .query(&format!("EXPLAIN EXECUTE planned ({args})"), &[])
            .await
            .map_err(failed())?;
        client
            .batch_execute("DEALLOCATE planned; RESET ALL")
            .await
            .map_err(failed())?;
        let lines: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
        Ok(lines.join("\n"))
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
        self.pool.close();
    }
}

/// A query through the connection's statement cache.
pub(super) async fn query<C: GenericClient + Sync>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let statement = client.prepare_cached(sql).await?;
    client.query(&statement, params).await
}

pub(super) async fn query_opt<C: GenericClient + Sync>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, tokio_postgres::Error> {
    let statement = client.prepare_cached(sql).await?;
    client.query_opt(&statement, params).await
}

pub(super) async fn execute<C: GenericClient + Sync>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let statement = client.prepare_cached(sql).await?;
    client.execute(&statement, params).await
}

/// Opens a transaction on `$client` (a pooled connection), doing `$context`.
macro_rules! transaction {
    ($client:expr, $context:expr) => {
        $client.transaction().await.map_err(pg($context))?
    };
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn upsert_jobs(&self, jobs: Vec<JobRecord>) -> StoreResult<()> {
        let context = "cannot record jobs";
        let mut client = self.client(context).await?;
        let tx = transaction!(client, context);
        write::upsert_jobs(&tx, &jobs).await?;
        self.commit(tx, &[], context).await
    }

    async fn create_run(&self, run: Run, tasks: Vec<TaskRun>) -> StoreResult<()> {
        let context = format!("cannot create run '{}'", run.id);
        let mut client = self.client(&context).await?;
        let tx = transaction!(client, &context);
        let notes = write::create_run(&tx, &run, &tasks).await?;
        self.commit(tx, &notes, &context).await
    }

    async fn claim_run(&self, run_id: &str, at: DateTime<Utc>) -> StoreResult<Option<Run>> {
        let context = format!("cannot claim run '{run_id}'");
        let mut client = self.client(&context).await?;
        let tx = transaction!(client, &context);
        let lease = self.current_lease();
        let claimed = queue::claim_run(&tx, run_id, at, lease.as_ref()).await?;
        let notes = match &claimed {
            Some(run) => vec![NoteKind::Run {
                run_id: run.id.clone(),
            }],
            None => vec![],
        };
        self.commit(tx, &notes, &context).await?;
        Ok(claimed)
    }

    async fn claim_next(
        &self,
        limits: &ClaimLimits,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<Run>> {
        let mut client = self.client("cannot claim the next run").await?;
        let lease = self.current_lease();
        queue::claim_next(&mut client, limits, at, lease.as_ref(), &self.sender).await
    }

    async fn queued_runs(&self) -> StoreResult<Vec<Run>> {
        let client = self.client("cannot read queued runs").await?;
        read::runs_with_status(&client, &[RunStatus::Queued], "queued runs").await
    }

    async fn cancel_queued(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
        message: &str,
    ) -> StoreResult<Option<Run>> {
        let context = format!("cannot cancel run '{run_id}'");
        let mut client = self.client(&context).await?;
        let tx = transaction!(client, &context);
        let cancelled = queue::cancel_queued(&tx, run_id, at, message).await?;
        let notes = match &cancelled {
            Some(_) => vec![
                NoteKind::Run {
                    run_id: run_id.to_owned(),
                },
                NoteKind::Queue,
            ],
            None => vec![],
        };
        self.commit(tx, &notes, &context).await?;
        Ok(cancelled)
    }

    async fn update_run(&self, run: Run) -> StoreResult<()> {
        let context = format!("cannot update run '{}'", run.id);
        let mut client = self.client(&context).await?;
        let tx = transaction!(client, &context);
        let notes = write::update_run(&tx, &run, self.current_lease().as_ref()).await?;
        self.commit(tx, &notes, &context).await
    }

    async fn update_task_run(&self, task: TaskRun) -> StoreResult<()> {
        let context = format!(
            "cannot update task run '{}' of run '{}'",
            task.task_id, task.run_id
        );
        let mut client = self.client(&context).await?;
        let tx = transaction!(client, &context);
        let notes = write::update_task_run(&tx, &task, self.current_lease().as_ref()).await?;
        self.commit(tx, &notes, &context).await
    }

    async fn append_logs(&self, lines: Vec<LogLine>) -> StoreResult<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let context = "cannot append logs";
        let mut client = self.client(context).await?;
        let tx = transaction!(client, context);
        let notes = logs::append(&tx, &lines, self.log_cap, self.current_lease().as_ref()).await?;
        self.commit(tx, &notes, context).await
    }

    async fn get_run(&self, run_id: &str) -> StoreResult<Option<Run>> {
        let client = self.client("cannot read run").await?;
        read::run(&client, run_id).await
    }

    async fn list_runs(&self, job_id: Option<&str>, page: RunPage) -> StoreResult<Vec<Run>> {
        let client = self.client("cannot read runs").await?;
        read::runs(&client, job_id, &page).await
    }

    async fn last_run(&self, job_id: &str, statuses: &[RunStatus]) -> StoreResult<Option<Run>> {
        let client = self.client("cannot read runs").await?;
        read::last_run(&client, job_id, statuses).await
    }

    async fn last_runs(&self, job_ids: &[String]) -> StoreResult<HashMap<String, Run>> {
        let client = self.client("cannot read runs").await?;
        read::last_runs(&client, job_ids).await
    }

    async fn task_runs(&self, run_id: &str) -> StoreResult<Vec<TaskRun>> {
        let client = self.client("cannot read task runs").await?;
        read::task_runs(&client, run_id).await
    }

    async fn log_page(
        &self,
        run_id: &str,
        task_id: Option<&str>,
        start: LogStart,
        limit: LogPageLimit,
    ) -> StoreResult<LogPage> {
        let mut client = self.client("cannot read logs").await?;
        logs::page(&mut client, run_id, task_id, start, limit).await
    }

    async fn prune_logs(&self, cutoff: DateTime<Utc>) -> StoreResult<u64> {
        let context = "cannot prune logs";
        let mut client = self.client(context).await?;
        let tx = transaction!(client, context);
        let gone = logs::prune(&tx, cutoff).await?;
        self.commit(tx, &[], context).await?;
        Ok(gone)
    }

    async fn unfinished_runs(&self) -> StoreResult<Vec<Run>> {
        let client = self.client("cannot read unfinished runs").await?;
        read::runs_with_status(
            &client,
            &[RunStatus::Queued, RunStatus::Running],
            "unfinished runs",
        )
        .await
    }

    async fn set_scheduler_paused(&self, paused: bool) -> StoreResult<()> {
        let context = "cannot record the scheduler's pause";
        let mut client = self.client(context).await?;
        let tx = transaction!(client, context);
        write::set_setting(&tx, write::SCHEDULER_PAUSED, &paused.to_string()).await?;
        self.commit(tx, &[NoteKind::Paused], context).await
    }

    async fn scheduler_paused(&self) -> StoreResult<bool> {
        let client = self.client("cannot read settings").await?;
        read::scheduler_paused(&client).await
    }

    async fn fires_between(
        &self,
        job_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<DateTime<Utc>>> {
        let client = self.client("cannot read fire instants").await?;
        read::fires_between(&client, job_id, from, to).await
    }

    async fn last_fire(&self, job_id: &str) -> StoreResult<Option<DateTime<Utc>>> {
        let client = self.client("cannot read fire instants").await?;
        read::last_fire(&client, job_id).await
    }

    async fn prune_runs(
        &self,
        job_id: &str,
        keep: Option<u32>,
        ended_before: Option<DateTime<Utc>>,
        batch: usize,
    ) -> StoreResult<usize> {
        let context = format!("cannot prune the history of job '{job_id}'");
        let mut client = self.client(&context).await?;
        let tx = transaction!(client, &context);
        let gone = write::prune_runs(&tx, job_id, keep, ended_before, batch).await?;
        self.commit(tx, &[], &context).await?;
        Ok(gone)
    }

    async fn set_job_paused(&self, job_id: &str, paused: bool) -> StoreResult<()> {
        let context = format!("cannot record the pause of job '{job_id}'");
        let mut client = self.client(&context).await?;
        let tx = transaction!(client, &context);
        write::set_job_paused(&tx, job_id, paused).await?;
        self.commit(tx, &[NoteKind::Paused], &context).await
    }

    async fn paused_jobs(&self) -> StoreResult<Vec<String>> {
        let client = self.client("cannot read paused jobs").await?;
        read::paused_jobs(&client).await
    }

    async fn append_audit(&self, record: AuditRecord) -> StoreResult<()> {
        let client = self.client("cannot record the audit entry").await?;
        write::append_audit(&client, &record).await
    }

    async fn list_audit(&self, page: RunPage) -> StoreResult<Vec<AuditRecord>> {
        let client = self.client("cannot read audit").await?;
        read::audit(&client, &page).await
    }

    async fn append_notification(&self, record: NotificationRecord) -> StoreResult<()> {
        let client = self.client("cannot record the notification").await?;
        write::append_notification(&client, &record).await
    }

    async fn notifications(&self, run_id: &str) -> StoreResult<Vec<NotificationRecord>> {
        let client = self.client("cannot read notifications").await?;
        read::notifications(&client, run_id).await
    }
}

#[async_trait::async_trait]
impl ClusterStore for PostgresStore {
    async fn join(&self, info: &NodeInfo) -> StoreResult<(Lease, Vec<Run>)> {
        let mut client = self.client("cannot join the cluster").await?;
        let (lease, runs) = cluster::join(&mut client, info, &self.sender).await?;
        self.set_lease(Some(lease.clone()));
        Ok((lease, runs))
    }

    async fn heartbeat(&self) -> StoreResult<bool> {
        let Some(lease) = self.current_lease() else {
            return Ok(false);
        };
        let client = self.client("cannot renew the lease").await?;
        cluster::heartbeat(&client, &lease).await
    }

    async fn take_over_expired(&self, lease: Duration) -> StoreResult<Vec<Run>> {
        let mine = cluster::joined(self.current_lease())?;
        let mut client = self.client("cannot take over expired nodes").await?;
        cluster::take_over_expired(&mut client, lease, &mine, &self.sender).await
    }

    async fn leave(&self) -> StoreResult<()> {
        let Some(lease) = self.current_lease() else {
            return Ok(());
        };
        let mut client = self.client("cannot leave the cluster").await?;
        cluster::leave(&mut client, &lease, &self.sender).await?;
        self.set_lease(None);
        Ok(())
    }

    async fn nodes(&self, lease: Duration) -> StoreResult<Vec<NodeRecord>> {
        let client = self.client("cannot read nodes").await?;
        cluster::nodes(&client, lease).await
    }

    async fn job_counts(&self, job_id: &str) -> StoreResult<(usize, usize)> {
        let client = self.client("cannot count runs").await?;
        cluster::job_counts(&client, job_id).await
    }

    async fn request_cancel(&self, run_id: &str) -> StoreResult<bool> {
        let mut client = self.client("cannot request a cancel").await?;
        cluster::request_cancel(&mut client, run_id, &self.sender).await
    }

    async fn cancel_requests(&self) -> StoreResult<Vec<String>> {
        let Some(mine) = self.current_lease() else {
            return Ok(Vec::new());
        };
        let client = self.client("cannot read cancel requests").await?;
        cluster::cancel_requests(&client, &mine).await
    }

    async fn publish_definitions(&self, definitions: &HashMap<String, String>) -> StoreResult<()> {
        let mut client = self.client("cannot publish definitions").await?;
        cluster::publish_definitions(&mut client, definitions, &self.sender).await
    }

    async fn definitions(&self) -> StoreResult<HashMap<String, String>> {
        let client = self.client("cannot read definitions").await?;
        cluster::definitions(&client).await
    }

    async fn set_mismatched(&self, jobs: &[String]) -> StoreResult<()> {
        let mine = cluster::joined(self.current_lease())?;
        let mut client = self.client("cannot record mismatched jobs").await?;
        cluster::set_mismatched(&mut client, &mine, jobs, &self.sender).await
    }

    async fn take_pool_slots(
        &self,
        pool: &str,
        size: u32,
        slots: u32,
        run_id: &str,
        task_id: &str,
    ) -> StoreResult<bool> {
        let mine = cluster::joined(self.current_lease())?;
        let context = format!("cannot take a slot of pool '{pool}'");
        let mut client = self.client(&context).await?;
        let tx = transaction!(client, &context);
        let taken = pools::take(&tx, pool, size, slots, (run_id, task_id), &mine).await?;
        self.commit(tx, &[], &context).await?;
        Ok(taken)
    }

    async fn release_pool_slots(&self, pool: &str, run_id: &str, task_id: &str) -> StoreResult<()> {
        let context = format!("cannot give back the slots of pool '{pool}'");
        let mut client = self.client(&context).await?;
        let tx = transaction!(client, &context);
        pools::release(&tx, pool, (run_id, task_id)).await?;
        // Whoever waits for a slot tries again.
        self.commit(tx, &[NoteKind::Queue], &context).await
    }

    fn notes(&self) -> broadcast::Receiver<Note> {
        self.notes.subscribe()
    }

    fn lease(&self) -> Option<Lease> {
        self.current_lease()
    }
}
