//! The cluster contract on a real PostgreSQL (the plain `Store` contract is the
//! conformance suite's, in store/tests.rs): several `PostgresStore`s on one database
//! as several nodes, by subject: the queue across nodes (`queue`), membership,
//! fencing and takeover (`membership`), notes (`notes`), and connecting (`connect`:
//! migrations, passwords, index plans). Nothing here sleeps: a heartbeat is aged by SQL
//! instead of by waiting, and notes are waited for with a deadline. This file holds
//! the helpers.

mod connect;
mod membership;
mod notes;
mod queue;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::broadcast;

use super::PostgresStore;
use crate::core::TriggerReason;
use crate::store::tests::{postgres_database, test_options};
use crate::store::{NodeInfo, Note, Run};

/// What the cluster tests call a lease: long enough that no node expires by itself
/// during a test (expiry is made by [`age`]).
pub(super) const LEASE: Duration = Duration::from_secs(60);
/// How long a note may take to arrive before the test fails.
const NOTE_DEADLINE: Duration = Duration::from_secs(20);

pub(super) fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 123_456_789)
        .single()
        .expect("valid time")
}

pub(super) fn run(id: &str, job_id: &str, created: i64) -> Run {
    Run::queued(id, job_id, TriggerReason::Manual, at(created))
}

pub(super) fn node(id: &str) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        address: format!("{id}.example:8565"),
        version: "test".into(),
    }
}

/// `n` stores on one fresh database, or `None` without PostgreSQL (skipped loudly).
pub(super) async fn stores(name: &str, n: usize) -> Option<Vec<Arc<PostgresStore>>> {
    let url = postgres_database(name)?;
    let mut stores = Vec::new();
    for _ in 0..n {
        let store = PostgresStore::connect(&url, test_options())
            .await
            .expect("connect");
        stores.push(Arc::new(store));
    }
    Some(stores)
}

/// Makes node `id`'s latest heartbeat an hour old: expired for any test lease.
pub(super) async fn age(store: &PostgresStore, id: &str) {
    store
        .sql(&format!(
            "UPDATE nodes SET heartbeat_at = now() - interval '1 hour' WHERE id = '{id}'"
        ))
        .await
        .expect("age a heartbeat");
}

/// The next note matching `wanted`, within the deadline.
pub(super) async fn note_where(
    notes: &mut broadcast::Receiver<Note>,
    wanted: impl Fn(&Note) -> bool,
) -> Note {
    let deadline = tokio::time::Instant::now() + NOTE_DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, notes.recv()).await {
            Ok(Ok(note)) if wanted(&note) => return note,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("notes channel: {e}"),
            Err(_) => panic!("no matching note within {NOTE_DEADLINE:?}"),
        }
    }
}
