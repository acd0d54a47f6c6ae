//! Resource pools shared by a cluster: a task's slots are rows of the shared store
//! (`ClusterStore::take_pool_slots`), so that a pool of 2 means 2 tasks at once across
//! every node. A task waits for its slots until one is given back here (a wake-up) or
//! on another node (a note the relay turns into the same wake-up), with a slow retry
//! for a note lost with a connection.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::store::ClusterStore;

/// Between two tries when no wake-up came.
const RETRY: Duration = Duration::from_secs(2);

/// The cluster's pools as this node knows them.
pub struct SharedPools {
    pub store: Arc<dyn ClusterStore>,
    /// Each pool's slots (`pools:` in `petit.yaml`).
    pub sizes: BTreeMap<String, u32>,
    /// Woken when slots may have been given back.
    pub freed: Arc<Notify>,
}

/// The slots a task attempt holds; given back when dropped.
pub struct Slots {
    pools: Arc<SharedPools>,
    run_id: String,
    task_id: String,
    held: Vec<String>,
}

impl SharedPools {
    /// Takes the slots a task needs (`resources`: pool → slots), pool by pool in name
    /// order (two tasks never wait on each other), waiting for each as long as it takes;
    /// cancel the future to give up (what it holds is given back).
    pub async fn take(
        self: &Arc<Self>,
        resources: &BTreeMap<String, u32>,
        run_id: &str,
        task_id: &str,
    ) -> Slots {
        let mut slots = Slots {
            pools: self.clone(),
            run_id: run_id.to_string(),
            task_id: task_id.to_string(),
            held: Vec::new(),
        };
        for (pool, &want) in resources {
            let Some(&size) = self.sizes.get(pool) else {
                continue;
            };
            loop {
                // Registered before the try, so that a release between the try and the
                // wait still wakes it.
                let freed = self.freed.notified();
                tokio::pin!(freed);
                freed.as_mut().enable();
                match self
                    .store
                    .take_pool_slots(pool, size, want, run_id, task_id)
                    .await
                {
                    Ok(true) => {
                        slots.held.push(pool.clone());
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(pool = %pool, "cannot take a slot of a shared pool: {e}")
                    }
                }
                tokio::select! {
                    _ = freed => {}
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
        slots
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let (pools, held) = (self.pools.clone(), std::mem::take(&mut self.held));
        let (run_id, task_id) = (self.run_id.clone(), self.task_id.clone());
        tokio::spawn(async move {
            for pool in held {
                if let Err(e) = pools
                    .store
                    .release_pool_slots(&pool, &run_id, &task_id)
                    .await
                {
                    // Not lost: a slot whose run has ended is free anyway.
                    tracing::warn!(pool = %pool, "cannot give back a slot of a shared pool: {e}");
                }
            }
            pools.freed.notify_waiters();
        });
    }
}
