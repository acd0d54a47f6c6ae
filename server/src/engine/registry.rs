//! The registry of runs that have not ended: the queue of stored `queued` runs in the
//! order they came, and the runs executing now. Owned by the engine's owner task alone;
//! pure bookkeeping (no I/O), so that the limits it applies are tested on their own.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::watch;

use crate::core::{JobDef, Run, TaskRun};
use crate::exec::StopReason;

/// A stored run waiting for a slot.
pub struct Queued {
    pub job: Arc<JobDef>,
    pub run: Run,
    pub tasks: Vec<TaskRun>,
    /// Starts whatever the job's `max_concurrency` (a fire under `overlap: allow`).
    pub unlimited: bool,
}

/// A run executing now: how to stop it, and where its final record appears.
pub struct Active {
    /// Order of activation (the oldest running run has the lowest).
    pub seq: u64,
    pub job_id: String,
    pub stop: watch::Sender<Option<StopReason>>,
    pub done: watch::Receiver<Option<Run>>,
}

/// Queued and running runs, with the count of each job's.
#[derive(Default)]
pub struct Registry {
    queue: VecDeque<Queued>,
    running: HashMap<String, Active>,
    /// Queued plus running runs of each job (what a fire's admission looks at).
    per_job: HashMap<String, usize>,
    /// Running runs of each job (what a claim's `max_concurrency` looks at).
    running_of: HashMap<String, usize>,
    next_seq: u64,
}

impl Registry {
    /// Runs of `job_id` queued or running.
    pub fn of_job(&self, job_id: &str) -> usize {
        self.per_job.get(job_id).copied().unwrap_or(0)
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Adds a run at the back of the queue.
    pub fn enqueue(&mut self, queued: Queued) {
        *self.per_job.entry(queued.run.job_id.clone()).or_default() += 1;
        self.queue.push_back(queued);
    }

    /// The oldest queued run that may start: under `max_running` runs at once, and
    /// with fewer running runs of its job than `job_limit` says (runs of a job at its
    /// limit wait without holding up the others). It still counts for its job until
    /// it is made active or forgotten.
    pub fn next_to_claim(
        &mut self,
        max_running: usize,
        job_limit: impl Fn(&JobDef) -> usize,
    ) -> Option<Queued> {
        if self.running.len() >= max_running.max(1) {
            return None;
        }
        let running_of = &self.running_of;
        let at = self.queue.iter().position(|q| {
            q.unlimited || running_of.get(&q.job.id).copied().unwrap_or(0) < job_limit(&q.job)
        })?;
        self.queue.remove(at)
    }

    /// Queued runs of `job_id`.
    pub fn queued_of(&self, job_id: &str) -> usize {
        self.of_job(job_id) - self.running_of(job_id)
    }

    /// The run of `job_id` running the longest that is not being stopped already.
    pub fn oldest_running_of(&self, job_id: &str) -> Option<&Active> {
        self.running
            .values()
            .filter(|a| a.job_id == job_id && a.stop.borrow().is_none())
            .min_by_key(|a| a.seq)
    }

    /// The ids of `job_id`'s queued runs, oldest first.
    pub fn queued_ids_of(&self, job_id: &str) -> Vec<String> {
        self.queue
            .iter()
            .filter(|q| q.job.id == job_id)
            .map(|q| q.run.id.clone())
            .collect()
    }

    /// Running runs of `job_id`.
    pub fn running_of(&self, job_id: &str) -> usize {
        self.running_of.get(job_id).copied().unwrap_or(0)
    }

    /// Puts back at the front a run whose claim could not be recorded (a store error),
    /// to be tried again on the next change.
    pub fn requeue_front(&mut self, queued: Queued) {
        self.queue.push_front(queued);
    }

    /// Puts back at the front, counted again, a run taken out of the queue whose
    /// cancel could not be recorded.
    pub fn enqueue_front(&mut self, queued: Queued) {
        *self.per_job.entry(queued.run.job_id.clone()).or_default() += 1;
        self.queue.push_front(queued);
    }

    /// Removes a queued run (cancelled before it started).
    pub fn take_queued(&mut self, run_id: &str) -> Option<Queued> {
        let at = self.queue.iter().position(|q| q.run.id == run_id)?;
        let queued = self.queue.remove(at)?;
        self.forget(&queued.run.job_id);
        Some(queued)
    }

    /// Counts for its job a run claimed before this registry existed (resumed after a
    /// restart); `activate` follows.
    pub fn adopt(&mut self, job_id: &str) {
        *self.per_job.entry(job_id.to_string()).or_default() += 1;
    }

    /// Records a claimed run as executing (it was counted since it was queued).
    pub fn activate(&mut self, run_id: String, mut active: Active) {
        active.seq = self.next_seq;
        self.next_seq += 1;
        *self.running_of.entry(active.job_id.clone()).or_default() += 1;
        self.running.insert(run_id, active);
    }

    /// Records a run whose end is being written, or a claimed run that is gone: its
    /// slot and its job's count are free from now on.
    pub fn end(&mut self, run_id: &str) -> Option<Active> {
        let active = self.running.remove(run_id)?;
        if let Some(n) = self.running_of.get_mut(&active.job_id) {
            *n -= 1;
            if *n == 0 {
                self.running_of.remove(&active.job_id);
            }
        }
        self.forget(&active.job_id);
        Some(active)
    }

    /// Drops one run of `job_id` from the job's count.
    pub fn forget(&mut self, job_id: &str) {
        if let Some(n) = self.per_job.get_mut(job_id) {
            *n -= 1;
            if *n == 0 {
                self.per_job.remove(job_id);
            }
        }
    }

    pub fn active(&self, run_id: &str) -> Option<&Active> {
        self.running.get(run_id)
    }

    #[cfg(test)]
    pub fn is_queued(&self, run_id: &str) -> bool {
        self.queue.iter().any(|q| q.run.id == run_id)
    }

    pub fn actives(&self) -> impl Iterator<Item = &Active> {
        self.running.values()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{parse_job, GlobalConfig};
    use crate::core::TriggerReason;

    fn queued(job: &Arc<JobDef>, id: &str) -> Queued {
        Queued {
            job: job.clone(),
            run: Run::queued(id, &job.id, TriggerReason::Manual, chrono::Utc::now()),
            tasks: Vec::new(),
            unlimited: false,
        }
    }

    fn active(job_id: &str) -> Active {
        Active {
            seq: 0,
            job_id: job_id.to_string(),
            stop: watch::channel(None).0,
            done: watch::channel(None).1,
        }
    }

    #[test]
    fn the_queue_is_served_in_order_within_the_run_limit_and_counts_stay_true() {
        let yaml = "id: j\ntasks:\n  - {id: t, command: 'true'}\n";
        let job = Arc::new(parse_job(yaml, Path::new("j.yaml"), &GlobalConfig::default()).unwrap());
        let mut registry = Registry::default();
        for id in ["r1", "r2", "r3"] {
            registry.enqueue(queued(&job, id));
        }
        assert_eq!((registry.of_job("j"), registry.queued()), (3, 3));

        let first = registry.next_to_claim(1, |_| 10).expect("a free slot");
        assert_eq!(first.run.id, "r1");
        registry.activate(first.run.id, active("j"));
        assert!(
            registry.next_to_claim(1, |_| 10).is_none(),
            "one run at a time"
        );
        assert_eq!(registry.of_job("j"), 3, "claimed, queued and running alike");

        // r2 is cancelled while it waits: r3 is next.
        assert!(registry.take_queued("r2").is_some());
        assert!(registry.take_queued("r2").is_none());
        assert_eq!(registry.of_job("j"), 2);

        // r1's end frees its slot before anything else happens.
        assert!(registry.end("r1").is_some());
        assert!(registry.end("r1").is_none(), "ending twice counts once");
        assert_eq!(registry.of_job("j"), 1);
        let next = registry.next_to_claim(1, |_| 10).expect("the slot is free");
        assert_eq!(next.run.id, "r3");
        registry.requeue_front(next);
        assert!(registry.is_queued("r3"));
        assert_eq!(registry.of_job("j"), 1);
    }

    #[test]
    fn a_job_at_its_limit_waits_without_holding_up_the_others() {
        let global = GlobalConfig::default();
        let one = Arc::new(
            parse_job(
                "id: one\ntasks:\n  - {id: t, command: 'true'}\n",
                Path::new("one.yaml"),
                &global,
            )
            .unwrap(),
        );
        let other = Arc::new(
            parse_job(
                "id: other\ntasks:\n  - {id: t, command: 'true'}\n",
                Path::new("other.yaml"),
                &global,
            )
            .unwrap(),
        );
        let mut registry = Registry::default();
        registry.enqueue(queued(&one, "a1"));
        registry.enqueue(queued(&one, "a2"));
        registry.enqueue(queued(&other, "b1"));
        let limit = |job: &JobDef| job.max_concurrency as usize;
        let first = registry.next_to_claim(8, limit).unwrap();
        registry.activate(first.run.id.clone(), active("one"));
        assert_eq!(first.run.id, "a1");
        let second = registry.next_to_claim(8, limit).unwrap();
        assert_eq!(
            second.run.id, "b1",
            "a2 waits for one's slot; b1 goes ahead"
        );
        registry.activate(second.run.id.clone(), active("other"));
        assert!(registry.next_to_claim(8, limit).is_none());
        assert_eq!((registry.running_of("one"), registry.of_job("one")), (1, 2));
        registry.end("a1");
        assert_eq!(registry.next_to_claim(8, limit).unwrap().run.id, "a2");
    }
}
