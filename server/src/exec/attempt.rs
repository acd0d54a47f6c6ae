//! All attempts of one task in one run: resources, placeholders rendered, the process
//! (or embedded task) started, its outcome recorded, retried per its policy.

use super::logs::{pump_logs, LOG_CHANNEL};
use super::*;

/// Stores a task record, then publishes its event.
pub(super) async fn record_task(
    env: &ExecEnv,
    job_id: &str,
    record: &TaskRun,
    message: Option<String>,
) {
    if let Err(e) = env.store.update_task_run(record.clone()).await {
        tracing::error!(run = %record.run_id, task = %record.task_id, "cannot record task state: {e}");
    }
    env.bus
        .publish(Event::of_task(job_id, record.clone(), message));
}

/// A task's final record and what its event says, not stored yet: the walk stores it
/// with the starts it allows (or with the run's end), in one write.
pub(super) type Ended = (TaskRun, Option<String>);

/// An end and the slots its last attempt held: kept until the end is stored, so that
/// no task takes them and is seen starting before the end is.
pub(super) type Settled = (Ended, Option<Permits>);

/// The slots an attempt holds while it runs: the run's and each pool's.
pub(super) type Permits = (
    Vec<OwnedSemaphorePermit>,
    Option<super::shared_pools::Slots>,
);

/// Makes `record` the start of its next attempt.
pub(super) fn begin_attempt(record: &mut TaskRun) {
    record.attempts += 1;
    record.status = TaskStatus::Running;
    record.started_at.get_or_insert_with(Utc::now);
    record.ended_at = None;
    record.exit_code = None;
    record.error = None;
}

/// A task its run stopped, settled: `cancelled`, `interrupted` or `timed_out`.
pub(super) fn stopped_record(mut record: TaskRun, reason: Option<StopReason>) -> TaskRun {
    let (status, error) = match reason {
        Some(StopReason::Interrupt) => {
            (TaskStatus::Interrupted, "interrupted: the daemon shut down")
        }
        Some(StopReason::RunTimeout) => (TaskStatus::TimedOut, "stopped: the run's timeout passed"),
        _ => (TaskStatus::Cancelled, "cancelled"),
    };
    record.status = status;
    record.error = Some(error.to_string());
    record.ended_at = Some(Utc::now());
    record
}

/// All attempts of one task in one run.
pub(super) struct TaskAttempts {
    pub(super) env: Arc<ExecEnv>,
    pub(super) job_id: String,
    pub(super) run_id: String,
    pub(super) task: TaskDef,
    pub(super) env_policy: EnvPolicy,
    pub(super) config: Arc<BTreeMap<String, String>>,
    pub(super) outputs: BTreeMap<String, BTreeMap<String, String>>,
    pub(super) run_slots: Arc<Semaphore>,
    pub(super) stop: watch::Receiver<Option<StopReason>>,
}

impl TaskAttempts {
    /// Runs the attempts to the task's end and returns its final record, unstored, with
    /// the slots it still holds (see [`Settled`]). `started`: the walk has already
    /// taken the first attempt's slots and stored (and published) its start.
    pub(super) async fn run(self, mut record: TaskRun, mut started: Option<Permits>) -> Settled {
        let policy = &self.task.retry;
        let mut seq = 0;
        if record.status == TaskStatus::Interrupted {
            // Resumed after a crash: an interruption is a transient failure.
            let allowed =
                policy.condition != RetryCondition::Never && record.attempts <= policy.max_attempts;
            if !allowed {
                record.status = TaskStatus::Failed;
                record.ended_at = Some(Utc::now());
                record.error = Some(format!(
                    "interrupted by a daemon restart during attempt {} and not retried (max_attempts {})",
                    record.attempts, policy.max_attempts
                ));
                return ((record, None), None);
            }
            // Only the last stored line is needed, not the whole log.
            let last = LogPageLimit { lines: 1, bytes: 0 };
            seq = self
                .env
                .store
                .log_page(&self.run_id, Some(&self.task.id), LogStart::Tail(1), last)
                .await
                .ok()
                .and_then(|page| page.lines.last().map(|l| l.seq))
                .unwrap_or(0);
        }
        loop {
            let permits = match started.take() {
                Some(permits) => permits,
                None => {
                    let Some(permits) = self.acquire().await else {
                        return ((stopped_record(record, self.stop_reason()), None), None);
                    };
                    begin_attempt(&mut record);
                    self.record(&record, None).await;
                    permits
                }
            };

            let (outcome, last_seq) = self.attempt(record.attempts, seq).await;
            seq = last_seq;
            record.ended_at = Some(Utc::now());
            let (exit_code, error, transient, timed_out) = match outcome {
                TaskOutcome::Succeeded { outputs, exit_code } => {
                    record.status = TaskStatus::Succeeded;
                    record.exit_code = exit_code;
                    record.outputs = outputs;
                    return ((record, None), Some(permits));
                }
                TaskOutcome::Stopped(StopReason::Timeout) => {
                    let t = self.task.timeout.unwrap_or_default();
                    (
                        None,
                        format!("timed out after {}s", t.as_secs_f64()),
                        true,
                        true,
                    )
                }
                TaskOutcome::Stopped(reason) => {
                    return ((stopped_record(record, Some(reason)), None), Some(permits))
                }
                TaskOutcome::Failed {
                    exit_code,
                    error,
                    transient,
                } => (exit_code, error, transient, false),
            };
            record.exit_code = exit_code;
            record.error = Some(error.clone());
            let retry = record.attempts; // the retry this would be
            let may_retry = retry <= policy.max_attempts
                && match policy.condition {
                    RetryCondition::Always => true,
                    RetryCondition::TransientOnly => transient,
                    RetryCondition::Never => false,
                };
            if !may_retry {
                record.status = if timed_out {
                    TaskStatus::TimedOut
                } else {
                    TaskStatus::Failed
                };
                return ((record, Some(error)), Some(permits));
            }
            // Not held through the retry's delay.
            drop(permits);
            let mut delay = policy.delay_before(retry);
            if policy.jitter && !delay.is_zero() {
                // Up to ±25 %, so that many tasks retrying together spread out.
                let factor = rand::rng().random_range(0.75..=1.25);
                delay = delay.mul_f64(factor);
            }
            record.status = TaskStatus::Retrying;
            let message = format!(
                "attempt {} failed ({error}); retry {retry} of {} in {:.1}s",
                record.attempts,
                policy.max_attempts,
                delay.as_secs_f64()
            );
            self.record(&record, Some(message)).await;
            let mut stop = self.stop.clone();
            let stopped = tokio::select! {
                _ = tokio::time::sleep(delay) => false,
                r = stop.wait_for(Option::is_some) => r.is_ok(),
            };
            if stopped {
                return ((stopped_record(record, self.stop_reason()), None), None);
            }
        }
    }

    pub(super) fn stop_reason(&self) -> Option<StopReason> {
        *self.stop.borrow()
    }

    /// Waits for a slot of the run and of each pool the task uses (in name order, so
    /// two tasks never wait on each other). `None` if the run is stopped meanwhile.
    pub(super) async fn acquire(&self) -> Option<Permits> {
        let mut stop = self.stop.clone();
        let acquire = async {
            let mut permits = Vec::with_capacity(1 + self.task.resources.len());
            permits.push(self.run_slots.clone().acquire_owned().await.ok()?);
            if let Some(shared) = &self.env.shared_pools {
                let slots = shared
                    .take(&self.task.resources, &self.run_id, &self.task.id)
                    .await;
                return Some((permits, Some(slots)));
            }
            for (pool, &slots) in &self.task.resources {
                if let Some(sem) = self.env.pools.get(pool) {
                    permits.push(sem.clone().acquire_many_owned(slots).await.ok()?);
                }
            }
            Some((permits, None))
        };
        tokio::select! {
            biased;
            r = stop.wait_for(Option::is_some) => {
                drop(r);
                None
            }
            permits = acquire => permits,
        }
    }

    /// Runs one attempt; returns its outcome and the last log sequence number used.
    pub(super) async fn attempt(&self, attempt: u32, seq: u64) -> (TaskOutcome, u64) {
        let (log_tx, log_rx) = mpsc::channel(LOG_CHANNEL);
        let (finish_tx, finish_rx) = oneshot::channel();
        let pump = tokio::spawn(tracing::Instrument::in_current_span(pump_logs(
            self.env.clone(),
            self.job_id.clone(),
            (self.run_id.clone(), self.task.id.clone(), attempt),
            seq,
            log_rx,
            finish_rx,
        )));
        let ctx = TaskContext::new(
            (
                self.run_id.clone(),
                self.job_id.clone(),
                self.task.id.clone(),
            ),
            attempt,
            log_tx,
            self.stop.clone(),
            self.task.timeout,
        );
        let outcome = match self.implementation() {
            Ok(task) => task.run(ctx).await,
            Err(error) => {
                drop(ctx);
                TaskOutcome::Failed {
                    exit_code: None,
                    error,
                    transient: false,
                }
            }
        };
        let _ = finish_tx.send(());
        let last = pump.await.unwrap_or(seq);
        (outcome, last)
    }

    /// The embedded implementation of this task, or its command with every
    /// placeholder substituted.
    pub(super) fn implementation(&self) -> Result<Arc<dyn Task>, String> {
        if let Some(custom) = self
            .env
            .custom_tasks
            .get(&(self.job_id.clone(), self.task.id.clone()))
        {
            return Ok(custom.clone());
        }
        let scope = Scope {
            config: &self.config,
            outputs: &self.outputs,
            run_id: &self.run_id,
            job_id: &self.job_id,
        };
        let (program, args) = self.task.kind.templates();
        let program = substitute(program, &scope)?;
        let plain = args
            .iter()
            .map(|a| substitute(a, &scope))
            .collect::<Result<Vec<_>, _>>()?;
        // The script argument as written, and as substituted: a value (a param laid
        // over `config.flag`, say, set to `-c`) must not turn an argument into a script
        // unseen.
        let scripts: Vec<script::ScriptArg> = match &self.task.kind {
            TaskKind::Python { inline: true, .. } => vec![script::ScriptArg {
                index: 1,
                offset: 0,
                lang: script::Lang::Python,
            }],
            _ => [
                script::script_arg(&program, &args),
                script::script_arg(&program, &plain),
            ]
            .into_iter()
            .flatten()
            .collect(),
        };
        let args = plain
            .into_iter()
            .enumerate()
            .map(|(i, plain)| match scripts.iter().find(|s| s.index == i) {
                Some(s) => substitute_script(args[i], *s, &scope),
                None => Ok(plain),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let environment = self
            .task
            .environment
            .iter()
            .map(|(k, v)| Ok((k.clone(), substitute_text(v, &scope)?)))
            .collect::<Result<BTreeMap<_, _>, String>>()?;
        let working_dir = self
            .task
            .working_dir
            .as_deref()
            .map(|d| substitute_text(d, &scope))
            .transpose()?
            .map(PathBuf::from);
        let output_file = self.env.scratch.path().join(format!(
            "{}-{}.out",
            self.run_id,
            sanitize(&self.task.id)
        ));
        Ok(Arc::new(CommandTask {
            program,
            args,
            env_policy: self.env_policy.clone(),
            exported: crate::exec::environment::exported(&self.config, &self.outputs),
            environment,
            working_dir,
            kill_grace: self.env.kill_grace,
            output_file,
            ledger: self.env.ledger.clone(),
        }))
    }

    pub(super) async fn record(&self, record: &TaskRun, message: Option<String>) {
        record_task(&self.env, &self.job_id, record, message).await;
    }
}

pub(super) fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
