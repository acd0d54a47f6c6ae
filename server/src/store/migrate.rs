//! `petitd migrate`: copies a history from one store to another (a SQLite file to a
//! cluster's PostgreSQL), through the [`Store`] trait alone, so that any pair works.
//!
//! Runs keep their ids, times and statuses, with their task runs, outputs, log lines
//! (in the order they were written), notifications and the audit record; the pauses
//! too. A run already in the target is left alone, so a migration that stopped half
//! way can be run again (the audit record is copied only into a target without one). Runs the source left `running` (a daemon that crashed) end
//! `interrupted`: no node of the target would ever resume them.

use chrono::Utc;

use super::{
    LogPageLimit, LogStart, Run, RunKey, RunPage, Store, StoreError, StoreResult, TaskRun,
};
use crate::core::{RunStatus, TaskStatus};

/// What a migration copied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub runs: usize,
    /// Runs the target already had (a second migration), left alone.
    pub skipped: usize,
    pub task_runs: usize,
    pub log_lines: usize,
    pub notifications: usize,
    pub audit_records: usize,
    pub paused_jobs: usize,
}

/// Runs read from the source at once.
const PAGE: usize = 500;

/// Copies everything of `from` into `to`; `progress` hears how many runs are done.
pub async fn migrate(
    from: &dyn Store,
    to: &dyn Store,
    mut progress: impl FnMut(&Migrated),
) -> StoreResult<Migrated> {
    let mut done = Migrated::default();
    // Oldest first, so that an interrupted migration leaves a prefix of the history.
    let mut runs: Vec<Run> = Vec::new();
    let mut after = None;
    loop {
        let page = from
            .list_runs(
                None,
                RunPage {
                    limit: PAGE,
                    offset: 0,
                    after,
                },
            )
            .await?;
        after = page.last().map(RunKey::of);
        let last = page.len() < PAGE;
        runs.extend(page);
        if last {
            break;
        }
    }
    runs.reverse();
    for run in runs {
        let mut tasks = from.task_runs(&run.id).await?;
        let run = settle(run, &mut tasks);
        let task_count = tasks.len();
        match to.create_run(run.clone(), tasks).await {
            Ok(()) => {}
            Err(StoreError::RunExists { .. }) => {
                done.skipped += 1;
                continue;
            }
            Err(e) => return Err(e),
        }
        done.runs += 1;
        done.task_runs += task_count;
        done.log_lines += copy_logs(from, to, &run.id).await?;
        for record in from.notifications(&run.id).await? {
            to.append_notification(record).await?;
            done.notifications += 1;
        }
        if done.runs % 100 == 0 {
            progress(&done);
        }
    }
    done.audit_records = copy_audit(from, to).await?;
    to.set_scheduler_paused(from.scheduler_paused().await?)
        .await?;
    for job_id in from.paused_jobs().await? {
        to.set_job_paused(&job_id, true).await?;
        done.paused_jobs += 1;
    }
    progress(&done);
    Ok(done)
}

/// A run as the target gets it: one left running ends interrupted (its tasks too).
fn settle(mut run: Run, tasks: &mut [TaskRun]) -> Run {
    if run.status != RunStatus::Running {
        return run;
    }
    let now = Utc::now();
    for task in tasks
        .iter_mut()
        .filter(|t| matches!(t.status, TaskStatus::Running | TaskStatus::Retrying))
    {
        task.status = TaskStatus::Interrupted;
        task.ended_at = Some(now);
        task.error = Some("interrupted: the history was migrated while the task ran".into());
    }
    run.status = RunStatus::Interrupted;
    run.ended_at = Some(now);
    run.error = Some("interrupted: the history was migrated while the run was going".into());
    run
}

/// Copies a run's log lines, page by page, in the order they were written.
async fn copy_logs(from: &dyn Store, to: &dyn Store, run_id: &str) -> StoreResult<usize> {
    let limit = LogPageLimit {
        lines: 5_000,
        bytes: 4 << 20,
    };
    let mut start = LogStart::First;
    let mut copied = 0;
    loop {
        let page = from.log_page(run_id, None, start, limit).await?;
        copied += page.lines.len();
        if !page.lines.is_empty() {
            to.append_logs(page.lines).await?;
        }
        match page.next {
            Some(next) => start = LogStart::At(next),
            None => return Ok(copied),
        }
    }
}

/// Copies the audit record, oldest first (the target lists it newest first again),
/// unless the target has one already (a second migration, or a target in use).
async fn copy_audit(from: &dyn Store, to: &dyn Store) -> StoreResult<usize> {
    let one = RunPage {
        limit: 1,
        ..Default::default()
    };
    if !to.list_audit(one).await?.is_empty() {
        return Ok(0);
    }
    let mut records = Vec::new();
    loop {
        let page = from
            .list_audit(RunPage {
                limit: PAGE,
                offset: records.len(),
                after: None,
            })
            .await?;
        let last = page.len() < PAGE;
        records.extend(page);
        if last {
            break;
        }
    }
    let n = records.len();
    for record in records.into_iter().rev() {
        to.append_audit(record).await?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;

    use super::*;
    use crate::core::{LogStream, TriggerReason};
    use crate::store::{AuditRecord, LogLine, MemoryStore, SqliteStore, StoreOptions};

    fn run(id: &str, status: RunStatus, created: i64) -> Run {
        Run {
            id: id.into(),
            job_id: "job".into(),
            status,
            trigger: TriggerReason::Manual,
            retry_of: None,
            params: BTreeMap::new(),
            created_at: Utc.timestamp_opt(created, 0).unwrap(),
            started_at: None,
            ended_at: None,
            error: None,
            triggered_by: None,
            scheduled_for: Some(Utc.timestamp_opt(created, 0).unwrap()),
            definition: None,
        }
    }

    #[tokio::test]
    async fn a_history_moves_whole_and_twice_is_harmless() -> StoreResult<()> {
        let dir = tempfile::tempdir().expect("temp dir");
        let from = SqliteStore::open(&dir.path().join("from.db"), StoreOptions::default())?;
        for (i, status) in [RunStatus::Succeeded, RunStatus::Failed, RunStatus::Running]
            .into_iter()
            .enumerate()
        {
            let id = format!("r{i}");
            let mut task = TaskRun::pending(&id, "t");
            from.create_run(run(&id, RunStatus::Queued, i as i64), vec![task.clone()])
                .await?;
            from.update_run(run(&id, status, i as i64)).await?;
            task.status = match status {
                RunStatus::Running => TaskStatus::Running,
                _ => TaskStatus::Succeeded,
            };
            from.update_task_run(task).await?;
            let lines = (1..=3)
                .map(|seq| LogLine {
                    run_id: id.clone(),
                    seq,
                    task_id: "t".into(),
                    attempt: 1,
                    stream: LogStream::Stdout,
                    line: format!("line {seq} of {id}"),
                    time: Utc::now(),
                })
                .collect();
            from.append_logs(lines).await?;
        }
        from.append_audit(AuditRecord {
            time: Utc::now(),
            actor: "alice".into(),
            call: "TriggerJob".into(),
            target: "job".into(),
            outcome: "OK".into(),
            message: String::new(),
        })
        .await?;
        from.set_job_paused("job", true).await?;

        let to = MemoryStore::new(StoreOptions::default());
        let done = migrate(&from, &to, |_| {}).await?;
        assert_eq!(
            done,
            Migrated {
                runs: 3,
                skipped: 0,
                task_runs: 3,
                log_lines: 9,
                notifications: 0,
                audit_records: 1,
                paused_jobs: 1,
            }
        );
        let copied = to.get_run("r1").await?.expect("copied");
        assert_eq!(copied.status, RunStatus::Failed);
        assert_eq!(
            to.logs("r2", Some("t"))
                .await?
                .iter()
                .map(|l| l.line.as_str())
                .collect::<Vec<_>>(),
            ["line 1 of r2", "line 2 of r2", "line 3 of r2"]
        );
        // Left running by the source: ended, never resumed by anyone.
        let orphan = to.get_run("r2").await?.expect("copied");
        assert_eq!(orphan.status, RunStatus::Interrupted);
        assert_eq!(to.task_runs("r2").await?[0].status, TaskStatus::Interrupted);
        assert_eq!(to.paused_jobs().await?, ["job"]);

        let again = migrate(&from, &to, |_| {}).await?;
        assert_eq!((again.runs, again.skipped, again.audit_records), (0, 3, 0));
        assert_eq!(
            to.list_audit(RunPage {
                limit: 10,
                ..Default::default()
            })
            .await?
            .len(),
            1
        );
        Ok(())
    }
}
