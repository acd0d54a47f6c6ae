//! Cluster mode: what a store shared by several petitd (PostgreSQL) adds to [`Store`].
//!
//! - **Membership.** Each node has a row with a heartbeat and an epoch. A node joins as
//!   a new epoch (one more than any epoch that node id had), renews its lease by
//!   heartbeats, and is dead when its heartbeat is older than the lease by the
//!   database's clock: then a live node takes its runs over.
//! - **Ownership and fencing.** A claim records the claiming node and epoch on the run;
//!   every later write of that run (its record, its task runs, its logs) checks them and
//!   is refused with [`StoreError::Fenced`] once the run belongs to someone else, so a
//!   node that was presumed dead (paused, cut off) cannot overwrite what its successor
//!   does.
//! - **Notes.** Each write tells the other nodes what changed (`NOTIFY`), as a [`Note`]
//!   small enough for a notification; the store stays the source of truth for
//!   anything larger, which a node reads back when a note arrives.
//!
//! [`StoreError::Fenced`]: super::StoreError::Fenced

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use super::{Run, Store, StoreResult};

/// Who a node is, as it tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Stable across restarts (`--node-id`, default the host name).
    pub id: String,
    /// Where its API listens, for operators (`host:port`).
    pub address: String,
    /// petitd's version.
    pub version: String,
}

/// The lease a node holds: its id and the epoch it joined as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub node_id: String,
    pub epoch: u64,
}

/// A node as its row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub id: String,
    /// The node's current (latest) epoch.
    pub epoch: u64,
    pub address: String,
    pub version: String,
    /// When this epoch joined.
    pub joined_at: DateTime<Utc>,
    /// Its latest heartbeat (the database's clock).
    pub heartbeat_at: DateTime<Utc>,
    /// Heartbeat within the lease and not taken over, by the database's clock.
    pub alive: bool,
    /// Left the cluster by a clean stop.
    pub left: bool,
    /// Runs `running` that this node (this epoch) has claimed.
    pub running: u32,
    /// Jobs whose definition on this node differs from the cluster's (see
    /// [`ClusterStore::publish_definitions`]), sorted.
    pub mismatched: Vec<String>,
}

/// What another node changed, as a notification delivers it. A node ignores notes it
/// sent itself (`from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The node id that sent it.
    pub from: String,
    pub what: NoteKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteKind {
    /// A run was created, claimed, changed or ended: read it back.
    Run { run_id: String },
    /// A task run changed: read it back.
    Task { run_id: String, task_id: String },
    /// Lines were appended to a run's log: read the new ones.
    Logs { run_id: String },
    /// A run was queued or a slot freed (a run ended): try to claim.
    Queue,
    /// The scheduler's pause or a job's pause changed: read them back.
    Paused,
    /// Someone asked for a running run to be cancelled: its owner stops it.
    Cancel { run_id: String },
    /// A node stored new job definitions: compare.
    Definitions,
    /// A node joined, left, or was taken over.
    Nodes,
    /// The notification connection was lost and is back: notes may have been missed,
    /// so whatever a node keeps from notes is to be read again.
    Resync,
}

/// Membership, claims owned by a node and epoch, takeover, notes: see the module.
#[async_trait::async_trait]
pub trait ClusterStore: Store {
    /// Joins as a new epoch of node `info.id` (one more than the highest epoch that
    /// id has had; 1 for a new id), heartbeat now, and takes over the runs that earlier
    /// epochs of this node left `running` (a restart after a crash), returning them as
    /// [`ClusterStore::take_over_expired`] does. From then on every claim records this
    /// node and epoch.
    async fn join(&self, info: &NodeInfo) -> StoreResult<(Lease, Vec<Run>)>;

    /// Renews this node's lease. `Ok(false)`: fenced. The epoch was declared dead and
    /// its runs taken over (or it never joined); the caller stops its runs and joins
    /// again.
    async fn heartbeat(&self) -> StoreResult<bool>;

    /// Declares dead every other node whose latest epoch's heartbeat is older than
    /// `lease` by the database's clock, and moves the runs those epochs had claimed
    /// that are still `running` to this node's epoch, returning them with their task
    /// runs as they were stored (the caller settles the running ones as crash recovery
    /// does). Of two nodes taking over one dead node, exactly one gets its runs.
    async fn take_over_expired(&self, lease: Duration) -> StoreResult<Vec<Run>>;

    /// Leaves the cluster on a clean stop: the node's row says so, and its lease is
    /// given up (runs it still had are taken over by the others at once).
    async fn leave(&self) -> StoreResult<()>;

    /// Every node that ever joined, by id, as seen with `lease`.
    async fn nodes(&self, lease: Duration) -> StoreResult<Vec<NodeRecord>>;

    /// How many runs of a job are `queued` and `running`, cluster-wide.
    async fn job_counts(&self, job_id: &str) -> StoreResult<(usize, usize)>;

    /// Asks whichever node runs `run_id` to cancel it (a [`NoteKind::Cancel`]);
    /// `Ok(false)` if it is not running. The request is also stored on the run, so
    /// that an owner that missed the note (a [`NoteKind::Resync`], a takeover) finds
    /// it with [`ClusterStore::cancel_requests`].
    async fn request_cancel(&self, run_id: &str) -> StoreResult<bool>;

    /// The runs this node (this epoch) has running that someone asked to cancel, by
    /// id: what a node reads after a `Resync` or a takeover. The default (a store
    /// that keeps no requests) has none.
    async fn cancel_requests(&self) -> StoreResult<Vec<String>> {
        Ok(Vec::new())
    }

    /// Stores this node's definition hashes (job id → hash) as the cluster's (the node
    /// loaded or reloaded its job files: its definitions are the latest), replacing
    /// those of the jobs given and leaving the others.
    async fn publish_definitions(&self, definitions: &HashMap<String, String>) -> StoreResult<()>;

    /// The cluster's definition hashes, by job id.
    async fn definitions(&self) -> StoreResult<HashMap<String, String>>;

    /// Records which of this node's jobs differ from the cluster's definitions (shown
    /// in [`ClusterStore::nodes`]).
    async fn set_mismatched(&self, jobs: &[String]) -> StoreResult<()>;

    /// Takes `slots` slots of resource pool `pool` (`size` slots, cluster-wide) for a
    /// task of a run this node claimed, in one transaction; `Ok(false)` (and none taken)
    /// when fewer are free. A slot is free when nobody holds it, or when its holder's
    /// run no longer runs under the epoch that took it (it ended, or its node died).
    async fn take_pool_slots(
        &self,
        pool: &str,
        size: u32,
        slots: u32,
        run_id: &str,
        task_id: &str,
    ) -> StoreResult<bool>;

    /// Gives back the slots of `pool` a task holds; the nodes waiting for one hear of
    /// it (a [`NoteKind::Queue`]).
    async fn release_pool_slots(&self, pool: &str, run_id: &str, task_id: &str) -> StoreResult<()>;

    /// Notes from the other nodes, as they arrive.
    fn notes(&self) -> broadcast::Receiver<Note>;

    /// The lease this store's writes are fenced with (`None` before [`ClusterStore::join`]).
    fn lease(&self) -> Option<Lease>;
}
