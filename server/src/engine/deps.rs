//! Job dependencies (`depends_on` other jobs): whether each is met at an instant, read
//! from the store's history.

use chrono::{DateTime, Utc};

use super::EngineError;
use crate::core::{DepCondition, JobDef, RunStatus};
use crate::store::Store;

/// Whether every job dependency of `job` is met at `now`; the first unmet one as an
/// error that says why.
pub async fn check(store: &dyn Store, job: &JobDef, now: DateTime<Utc>) -> Result<(), EngineError> {
    let terminal = [
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::Interrupted,
    ];
    for dep in &job.depends_on {
        let unmet = |reason: String| EngineError::DependencyUnmet {
            job_id: job.id.clone(),
            dependency: dep.job_id.clone(),
            reason,
        };
        match dep.condition {
            DepCondition::LastSuccess => match store.last_run(&dep.job_id, &terminal).await? {
                None => return Err(unmet("it has never finished a run".into())),
                Some(r) if r.status != RunStatus::Succeeded => {
                    return Err(unmet(format!("its last run {} {}", r.id, r.status)))
                }
                Some(_) => {}
            },
            DepCondition::LastComplete => match store.last_run(&dep.job_id, &[]).await? {
                None => return Err(unmet("it has never run".into())),
                Some(r) if !r.status.is_terminal() => {
                    return Err(unmet(format!(
                        "its last run {} is still {}",
                        r.id, r.status
                    )))
                }
                Some(_) => {}
            },
            DepCondition::WithinWindow(window) => {
                let last = store.last_run(&dep.job_id, &[RunStatus::Succeeded]).await?;
                let since =
                    now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
                let ok = last
                    .as_ref()
                    .and_then(|r| r.ended_at)
                    .is_some_and(|t| t >= since);
                if !ok {
                    return Err(unmet(format!(
                        "no successful run in the last {}s",
                        window.as_secs()
                    )));
                }
            }
        }
    }
    Ok(())
}
