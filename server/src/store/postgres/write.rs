//! Writes of runs, task runs and records: creating a run (one per fire instant), the
//! fencing of every later write of a claimed run (refused once the run belongs to
//! another node or epoch), settings, pauses, pruning, audit and notification records.
//! Each function runs inside the caller's transaction (the queue's claims are in
//! queue.rs) and returns the notes it owes.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};

use super::queue::owner;
use super::rows::{map_to_sql, ns, opt_ns, opt_text, pg, text, RUN_COLUMNS};
use super::{execute, query, query_opt};
use crate::core::RunStatus;
use crate::store::{
    check_new_run, AuditRecord, JobRecord, Lease, NoteKind, NotificationRecord, Run, StoreError,
    StoreResult, TaskRun,
};

/// The `settings` key holding whether the scheduler is paused (`true` / `false`).
pub(super) const SCHEDULER_PAUSED: &str = "scheduler_paused";

pub(super) async fn upsert_jobs(tx: &Transaction<'_>, jobs: &[JobRecord]) -> StoreResult<()> {
    for job in jobs {
        execute(
            tx,
            "INSERT INTO jobs (id, name, source, schedule, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, source = excluded.source,
                 schedule = excluded.schedule, updated_at = excluded.updated_at",
            &[
                &job.id,
                &job.name,
                &job.source,
                &job.schedule,
                &ns(&job.updated_at)?,
            ],
        )
        .await
        .map_err(pg("cannot record jobs"))?;
    }
    Ok(())
}

pub(super) async fn create_run(
    tx: &Transaction<'_>,
    run: &Run,
    tasks: &[TaskRun],
) -> StoreResult<Vec<NoteKind>> {
    check_new_run(run, tasks)?;
    let failed = || pg(format!("cannot create run '{}'", run.id));
    // DO NOTHING on either unique key (the id, the fire): a refusal, not a failure.
    let inserted = execute(
        tx,
        &format!(
            "INSERT INTO runs ({RUN_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT DO NOTHING"
        ),
        &[
            &run.id,
            &run.job_id,
            &run.status.as_str(),
            &run.trigger.as_str(),
            &map_to_sql(&run.params),
            &ns(&run.created_at)?,
            &opt_ns(&run.started_at)?,
            &opt_ns(&run.ended_at)?,
            &opt_text(&run.error),
            &run.triggered_by,
            &opt_ns(&run.scheduled_for)?,
            &run.definition,
            &run.retry_of,
        ],
    )
    .await
    .map_err(failed())?;
    if inserted == 0 {
        let same_id = query_opt(tx, "SELECT 1 FROM runs WHERE id = $1", &[&run.id])
            .await
            .map_err(failed())?
            .is_some();
        return Err(match run.scheduled_for {
            Some(at) if !same_id => StoreError::FireTaken {
                job_id: run.job_id.clone(),
                at,
            },
            _ => StoreError::RunExists {
                run_id: run.id.clone(),
            },
        });
    }
    if !tasks.is_empty() {
        let mut columns = TaskColumns::default();
        for (ordinal, task) in tasks.iter().enumerate() {
            columns.push(task, ordinal as i32)?;
        }
        execute(
            tx,
            "INSERT INTO task_runs (run_id, task_id, ordinal, status, attempts, exit_code,
                 started_at, ended_at, error, outputs)
             SELECT $1, * FROM unnest($2::text[], $3::int[], $4::text[], $5::bigint[],
                 $6::int[], $7::bigint[], $8::bigint[], $9::text[], $10::text[])",
            &[
                &run.id,
                &columns.task_id,
                &columns.ordinal,
                &columns.status,
                &columns.attempts,
                &columns.exit_code,
                &columns.started_at,
                &columns.ended_at,
                &columns.error,
                &columns.outputs,
            ],
        )
        .await
        .map_err(failed())?;
    }
    let mut notes = vec![NoteKind::Run {
        run_id: run.id.clone(),
    }];
    if run.status == RunStatus::Queued {
        notes.push(NoteKind::Queue);
    }
    Ok(notes)
}

/// A new run's task runs, column by column, for one `unnest` insert.
#[derive(Default)]
struct TaskColumns {
    task_id: Vec<String>,
    ordinal: Vec<i32>,
    status: Vec<&'static str>,
    attempts: Vec<i64>,
    exit_code: Vec<Option<i32>>,
    started_at: Vec<Option<i64>>,
    ended_at: Vec<Option<i64>>,
    error: Vec<Option<String>>,
    outputs: Vec<String>,
}

impl TaskColumns {
    fn push(&mut self, task: &TaskRun, ordinal: i32) -> StoreResult<()> {
        self.task_id.push(task.task_id.clone());
        self.ordinal.push(ordinal);
        self.status.push(task.status.as_str());
        self.attempts.push(i64::from(task.attempts));
        self.exit_code.push(task.exit_code);
        self.started_at.push(opt_ns(&task.started_at)?);
        self.ended_at.push(opt_ns(&task.ended_at)?);
        self.error
            .push(opt_text(&task.error).map(|e| e.into_owned()));
        self.outputs.push(map_to_sql(&task.outputs));
        Ok(())
    }
}
/// Whether a write by `lease` of a run owned by `(node, epoch)` is fenced: the run
/// was claimed, and not by this lease.
pub(super) fn fenced(node: Option<&str>, epoch: Option<i64>, lease: Option<&Lease>) -> bool {
    match (node, lease) {
        (None, _) => false,
        (Some(node), Some(lease)) => node != lease.node_id || epoch != Some(lease.epoch as i64),
        (Some(_), None) => true,
    }
}

pub(super) async fn update_run(
    tx: &Transaction<'_>,
    run: &Run,
    lease: Option<&Lease>,
) -> StoreResult<Vec<NoteKind>> {
    let failed = || pg(format!("cannot update run '{}'", run.id));
    let (node, epoch) = owner(lease);
    // The owner is checked in the update itself, on the row's latest version.
    let changed = execute(
        tx,
        "UPDATE runs SET status = $2, started_at = $3, ended_at = $4, error = $5
         WHERE id = $1 AND (node_id IS NULL OR (node_id = $6 AND node_epoch = $7))",
        &[
            &run.id,
            &run.status.as_str(),
            &opt_ns(&run.started_at)?,
            &opt_ns(&run.ended_at)?,
            &opt_text(&run.error),
            &node,
            &epoch,
        ],
    )
    .await
    .map_err(failed())?;
    if changed == 0 {
        let exists = query_opt(tx, "SELECT 1 FROM runs WHERE id = $1", &[&run.id])
            .await
            .map_err(failed())?;
        return Err(match exists {
            Some(_) => StoreError::Fenced {
                run_id: run.id.clone(),
            },
            None => StoreError::RunNotFound {
                run_id: run.id.clone(),
            },
        });
    }
    let mut notes = vec![NoteKind::Run {
        run_id: run.id.clone(),
    }];
    if run.status.is_terminal() {
        notes.push(NoteKind::Queue);
    }
    Ok(notes)
}

pub(super) async fn update_task_run(
    tx: &Transaction<'_>,
    task: &TaskRun,
    lease: Option<&Lease>,
) -> StoreResult<Vec<NoteKind>> {
    let failed = || {
        pg(format!(
            "cannot update task run '{}' of run '{}'",
            task.task_id, task.run_id
        ))
    };
    let not_found = || StoreError::TaskRunNotFound {
        run_id: task.run_id.clone(),
        task_id: task.task_id.clone(),
    };
    // The run's row held (shared) until commit: a takeover waits for this write, then
    // reads the task runs with it.
    let owner_row = query_opt(
        tx,
        "SELECT node_id, node_epoch FROM runs WHERE id = $1 FOR SHARE",
        &[&task.run_id],
    )
    .await
    .map_err(failed())?
    .ok_or_else(not_found)?;
    if fenced(owner_row.get(0), owner_row.get(1), lease) {
        return Err(StoreError::Fenced {
            run_id: task.run_id.clone(),
        });
    }
    let changed = execute(
        tx,
        "UPDATE task_runs SET status = $3, attempts = $4, exit_code = $5, started_at = $6,
             ended_at = $7, error = $8, outputs = $9
         WHERE run_id = $1 AND task_id = $2",
        &[
            &task.run_id,
            &task.task_id,
            &task.status.as_str(),
            &i64::from(task.attempts),
            &task.exit_code,
            &opt_ns(&task.started_at)?,
            &opt_ns(&task.ended_at)?,
            &opt_text(&task.error),
            &map_to_sql(&task.outputs),
        ],
    )
    .await
    .map_err(failed())?;
    if changed == 0 {
        return Err(not_found());
    }
    Ok(vec![NoteKind::Task {
        run_id: task.run_id.clone(),
        task_id: task.task_id.clone(),
    }])
}

pub(super) async fn set_setting(tx: &Transaction<'_>, key: &str, value: &str) -> StoreResult<()> {
    execute(
        tx,
        "INSERT INTO settings (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&key, &value],
    )
    .await
    .map_err(pg(format!("cannot record setting '{key}'")))?;
    Ok(())
}

pub(super) async fn set_job_paused(
    tx: &Transaction<'_>,
    job_id: &str,
    paused: bool,
) -> StoreResult<()> {
    let failed = || pg(format!("cannot record the pause of job '{job_id}'"));
    if paused {
        execute(
            tx,
            "INSERT INTO paused_jobs (job_id, since) VALUES ($1, $2)
             ON CONFLICT (job_id) DO NOTHING",
            &[&job_id, &ns(&Utc::now())?],
        )
        .await
        .map_err(failed())?;
    } else {
        execute(tx, "DELETE FROM paused_jobs WHERE job_id = $1", &[&job_id])
            .await
            .map_err(failed())?;
    }
    Ok(())
}

pub(super) async fn prune_runs(
    tx: &Transaction<'_>,
    job_id: &str,
    keep: Option<u32>,
    ended_before: Option<DateTime<Utc>>,
    batch: usize,
) -> StoreResult<usize> {
    let failed = || pg(format!("cannot prune the history of job '{job_id}'"));
    let keep = keep.map(i64::from);
    let cutoff = opt_ns(&ended_before)?;
    let batch = i64::try_from(batch).unwrap_or(i64::MAX);
    let ids: Vec<String> = query(
        tx,
        "SELECT id FROM runs
         WHERE job_id = $1 AND status NOT IN ('queued', 'running')
           AND (($2::bigint IS NOT NULL AND id NOT IN (
                    SELECT id FROM runs WHERE job_id = $1
                    ORDER BY created_at DESC, id DESC LIMIT $2))
                OR ($3::bigint IS NOT NULL AND ended_at < $3))
         ORDER BY created_at, id LIMIT $4",
        &[&job_id, &keep, &cutoff, &batch],
    )
    .await
    .map_err(failed())?
    .iter()
    .map(|row| row.get(0))
    .collect();
    for sql in [
        "DELETE FROM log_lines WHERE run_id = ANY($1)",
        "DELETE FROM log_totals WHERE run_id = ANY($1)",
        "DELETE FROM notifications WHERE run_id = ANY($1)",
        // Its task runs go with it (ON DELETE CASCADE).
        "DELETE FROM runs WHERE id = ANY($1)",
    ] {
        execute(tx, sql, &[&ids]).await.map_err(failed())?;
    }
    Ok(ids.len())
}

pub(super) async fn append_audit<C: GenericClient + Sync>(
    client: &C,
    record: &AuditRecord,
) -> StoreResult<()> {
    execute(
        client,
        "INSERT INTO audit (time, actor, call, target, outcome, message)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &ns(&record.time)?,
            &record.actor,
            &record.call,
            &record.target,
            &record.outcome,
            &text(&record.message),
        ],
    )
    .await
    .map_err(pg("cannot record the audit entry"))?;
    Ok(())
}

pub(super) async fn append_notification<C: GenericClient + Sync>(
    client: &C,
    n: &NotificationRecord,
) -> StoreResult<()> {
    execute(
        client,
        "INSERT INTO notifications (run_id, job_id, time, event, target, attempt, outcome, message)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &n.run_id,
            &n.job_id,
            &ns(&n.time)?,
            &n.event,
            &n.target,
            &i64::from(n.attempt),
            &n.outcome,
            &text(&n.message),
        ],
    )
    .await
    .map_err(pg("cannot record the notification"))?;
    Ok(())
}
