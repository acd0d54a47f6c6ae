//! `SchedulerService`: health, scheduler state, pause/resume, and the event feed
//! (`WatchEvents`: a snapshot, then every engine event).

use std::collections::HashSet;

use chrono::Utc;
use petit_proto::v1 as pb;
use petit_proto::v1::scheduler_service_server::SchedulerService;
use petit_proto::v1::watch_events_response::Item;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use super::page::Page;
use super::stream::{self, ResponseStream};
use super::{convert, PetitApi};
use crate::auth::Caller;
use crate::engine::EngineError;
use crate::events::Event;
use crate::events::{EventKind, Logs};
use crate::store::RunPage;

/// Finished runs a snapshot carries, after the runs still going.
const SNAPSHOT_RECENT_RUNS: usize = 50;

#[tonic::async_trait]
impl SchedulerService for PetitApi {
    async fn get_health(
        &self,
        _request: Request<pb::GetHealthRequest>,
    ) -> Result<Response<pb::GetHealthResponse>, Status> {
        let state = self.engine.state();
        let (status, reason) = match (state.stopping, self.engine.store().write_failure()) {
            (true, _) => ("NOT_SERVING", "stopping".to_string()),
            (false, Some(failure)) => ("NOT_SERVING", failure),
            (false, None) => ("SERVING", String::new()),
        };
        Ok(Response::new(pb::GetHealthResponse {
            status: status.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime: Some(convert::elapsed(state.started_at, Utc::now())),
            reason,
        }))
    }

    async fn get_scheduler_state(
        &self,
        _request: Request<pb::GetSchedulerStateRequest>,
    ) -> Result<Response<pb::GetSchedulerStateResponse>, Status> {
        let mut state = self.scheduler_state(&self.engine.state());
        state.nodes = self.nodes().await?;
        Ok(Response::new(pb::GetSchedulerStateResponse {
            state: Some(state),
        }))
    }

    async fn list_nodes(
        &self,
        _request: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        Ok(Response::new(pb::ListNodesResponse {
            nodes: self.nodes().await?,
        }))
    }

    async fn pause_scheduler(
        &self,
        request: Request<pb::PauseSchedulerRequest>,
    ) -> Result<Response<pb::PauseSchedulerResponse>, Status> {
        let caller = Caller::of(&request);
        let result = self.engine.pause().await.map_err(Status::from);
        self.audit(&caller, "PauseScheduler", "", &result, |_| String::new())
            .await;
        Ok(Response::new(pb::PauseSchedulerResponse {
            state: Some(self.scheduler_state(&result?)),
        }))
    }

    async fn resume_scheduler(
        &self,
        request: Request<pb::ResumeSchedulerRequest>,
    ) -> Result<Response<pb::ResumeSchedulerResponse>, Status> {
        let caller = Caller::of(&request);
        let result = self.engine.resume().await.map_err(Status::from);
        self.audit(&caller, "ResumeScheduler", "", &result, |_| String::new())
            .await;
        Ok(Response::new(pb::ResumeSchedulerResponse {
            state: Some(self.scheduler_state(&result?)),
        }))
    }

    async fn list_audit_records(
        &self,
        request: Request<pb::ListAuditRecordsRequest>,
    ) -> Result<Response<pb::ListAuditRecordsResponse>, Status> {
        let request = request.into_inner();
        let page = Page::parse(request.page_size, &request.page_token)?;
        // One more than a page tells whether another page follows.
        let mut records = self
            .engine
            .store()
            .list_audit(RunPage {
                limit: page.size + 1,
                offset: page.offset,
                after: None,
            })
            .await?;
        let next_page_token = page.next_token(page.offset + records.len());
        records.truncate(page.size);
        Ok(Response::new(pb::ListAuditRecordsResponse {
            records: records.into_iter().map(convert::audit_record).collect(),
            next_page_token,
        }))
    }

    type WatchEventsStream = ResponseStream<pb::WatchEventsResponse>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let request = request.into_inner();
        let exclude_logs = request.exclude_logs;
        let job_id = Some(request.job_id).filter(|j| !j.is_empty());
        if let Some(job_id) = &job_id {
            if self.engine.job(job_id).is_none() {
                return Err(EngineError::JobNotFound(job_id.clone()).into());
            }
        }
        // Subscribe before reading the state, so that nothing happens unseen between
        // the snapshot and the first forwarded event.
        let mut events =
            self.engine
                .subscribe_with(if exclude_logs { Logs::None } else { Logs::All });
        let first = snapshot(self, job_id.as_deref()).await?;
        let api = self.clone();
        let stream = stream::spawn(&self.streams, move |out| async move {
            out.send(snapshot_message(first)).await?;
            loop {
                match events.recv().await {
                    Ok(event) if exclude_logs && event.kind() == EventKind::LogLine => {}
                    Ok(event) if concerns(&event, job_id.as_deref()) => {
                        for e in convert::events(&event) {
                            let item = Item::Event(e);
                            out.send(pb::WatchEventsResponse { item: Some(item) })
                                .await?;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        // Events were lost: a fresh snapshot makes the client whole.
                        tracing::debug!(missed, "WatchEvents client lagged; resending a snapshot");
                        match snapshot(&api, job_id.as_deref()).await {
                            Ok(s) => out.send(snapshot_message(s)).await?,
                            Err(status) => return out.fail(status).await,
                        }
                    }
                    Err(RecvError::Closed) => return Ok(()),
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// Whether a watcher of `job_id` (all jobs when `None`) wants `event`. Scheduler
/// events (no job) concern every watcher.
fn concerns(event: &Event, job_id: Option<&str>) -> bool {
    match job_id {
        None => true,
        Some(job_id) => event.job_id().is_empty() || event.job_id() == job_id,
    }
}

fn snapshot_message(snapshot: pb::Snapshot) -> pb::WatchEventsResponse {
    pb::WatchEventsResponse {
        item: Some(Item::Snapshot(snapshot)),
    }
}

/// The scheduler state, the jobs (or the one job watched), the runs still going and the
/// most recent ones, newest first.
async fn snapshot(api: &PetitApi, job_id: Option<&str>) -> Result<pb::Snapshot, Status> {
    let engine = &api.engine;
    let mut state = api.scheduler_state(&engine.state());
    state.nodes = api.nodes().await?;
    let jobs = api.snapshot_jobs(job_id);

    let store = engine.store();
    let mut going = store.unfinished_runs().await?;
    going.retain(|r| job_id.is_none_or(|j| j == r.job_id));
    going.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    let recent = store
        .list_runs(
            job_id,
            RunPage {
                limit: SNAPSHOT_RECENT_RUNS,
                ..Default::default()
            },
        )
        .await?;
    let listed: HashSet<&str> = going.iter().map(|r| r.id.as_str()).collect();
    let now = Utc::now();
    let runs = going
        .iter()
        .chain(recent.iter().filter(|r| !listed.contains(r.id.as_str())))
        .map(|r| convert::run(r, now))
        .collect();
    Ok(pb::Snapshot {
        state: Some(state),
        jobs,
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_filter_keeps_scheduler_events() {
        let of_job = |job_id: &str| Event::Skipped {
            time: chrono::Utc::now(),
            job_id: job_id.to_string(),
            reason: "concurrency",
            message: String::new(),
        };
        let paused = Event::Scheduler {
            time: chrono::Utc::now(),
            paused: true,
        };
        let cases = [
            (of_job("a"), None, true),
            (of_job("a"), Some("a"), true),
            (of_job("b"), Some("a"), false),
            (paused, Some("a"), true),
        ];
        for (event, filter, want) in cases {
            assert_eq!(
                concerns(&event, filter),
                want,
                "{:?} {filter:?}",
                event.kind()
            );
        }
    }
}
