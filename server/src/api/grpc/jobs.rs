//! `JobService`: list and describe jobs, trigger a run, list a job's runs.

use chrono::Utc;
use petit_proto::v1 as pb;
use petit_proto::v1::job_service_server::JobService;
use tonic::{Request, Response, Status};

use std::sync::Arc;

use super::error::required;
use super::job_cache::{self, JobEntry, Shape};
use super::page::{Page, RunsPage};
use super::{convert, PetitApi};
use crate::auth::Caller;
use crate::engine::EngineError;

impl PetitApi {
    /// `PauseJob` / `ResumeJob`: the change, audited, then the job as it now stands.
    async fn set_job_paused(
        &self,
        caller: &Caller,
        job_id: &str,
        paused: bool,
    ) -> Result<pb::Job, Status> {
        let job_id = required("job_id", job_id)?;
        let result = match paused {
            true => self.engine.pause_job(job_id).await,
            false => self.engine.resume_job(job_id).await,
        }
        .map_err(Status::from);
        let call = if paused { "PauseJob" } else { "ResumeJob" };
        self.audit(caller, call, job_id, &result, |_| String::new())
            .await;
        result?;
        Ok(self.job_entry(job_id)?.job(Shape::Full).clone())
    }

    /// A loaded job's entry in the job cache; NOT_FOUND for another id.
    pub(super) fn job_entry(&self, job_id: &str) -> Result<Arc<JobEntry>, Status> {
        let job_id = required("job_id", job_id)?;
        self.jobs
            .one(&self.engine, job_id)
            .ok_or_else(|| EngineError::JobNotFound(job_id.to_string()).into())
    }

    /// The page of jobs a `ListJobs` request asks for: the entries, in the view asked
    /// for, and the next page's token. gRPC sends their messages, REST their JSON.
    pub(crate) fn job_page(
        &self,
        request: &pb::ListJobsRequest,
    ) -> Result<(Vec<Arc<JobEntry>>, Shape, String), Status> {
        let page = Page::parse(request.page_size, &request.page_token)?;
        let (entries, total) = self.jobs.page(&self.engine, page.offset, page.size);
        Ok((
            entries,
            Shape::of_list(request.view),
            page.next_token(total),
        ))
    }

    /// `ListJobs`, answered as JSON (the REST route): the same page `list_jobs` sends.
    pub(crate) fn list_jobs_json(
        &self,
        request: &pb::ListJobsRequest,
        capacity: usize,
    ) -> Result<Vec<u8>, Status> {
        let (entries, shape, token) = self.job_page(request)?;
        job_cache::list_json(&entries, shape, &token, capacity).map_err(json_error)
    }

    /// `GetJob`, answered as JSON (the REST route).
    pub(crate) fn get_job_json(&self, request: &pb::GetJobRequest) -> Result<Vec<u8>, Status> {
        let entry = self.job_entry(&request.job_id)?;
        job_cache::get_json(&entry).map_err(json_error)
    }

    /// The jobs of a `WatchEvents` snapshot: all, or the one watched (none if unknown).
    pub(super) fn snapshot_jobs(&self, job_id: Option<&str>) -> Vec<pb::Job> {
        let entries = match job_id {
            Some(id) => self.jobs.one(&self.engine, id).into_iter().collect(),
            None => self.jobs.page(&self.engine, 0, usize::MAX).0,
        };
        entries.iter().map(|e| e.job(Shape::Full).clone()).collect()
    }
}

fn json_error(e: petit_proto::json::JsonError) -> Status {
    Status::internal(format!("cannot encode the reply as JSON: {e}"))
}

#[tonic::async_trait]
impl JobService for PetitApi {
    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let (entries, shape, next_page_token) = self.job_page(request.get_ref())?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: entries.iter().map(|e| e.job(shape).clone()).collect(),
            next_page_token,
        }))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::GetJobResponse>, Status> {
        let entry = self.job_entry(&request.get_ref().job_id)?;
        Ok(Response::new(pb::GetJobResponse {
            job: Some(entry.job(Shape::Full).clone()),
        }))
    }

    async fn trigger_job(
        &self,
        request: Request<pb::TriggerJobRequest>,
    ) -> Result<Response<pb::TriggerJobResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let job_id = required("job_id", &request.job_id)?;
        let params = request.params.into_iter().collect();
        let result = self
            .engine
            .trigger_as(job_id, params, request.force, Some(caller.name.clone()))
            .await
            .map_err(Status::from);
        self.audit(&caller, "TriggerJob", job_id, &result, |run| {
            format!("run {}", run.id)
        })
        .await;
        Ok(Response::new(pb::TriggerJobResponse {
            run: Some(convert::run(&result?, Utc::now())),
        }))
    }

    async fn pause_job(
        &self,
        request: Request<pb::PauseJobRequest>,
    ) -> Result<Response<pb::PauseJobResponse>, Status> {
        let caller = Caller::of(&request);
        let job = self
            .set_job_paused(&caller, &request.get_ref().job_id, true)
            .await?;
        Ok(Response::new(pb::PauseJobResponse { job: Some(job) }))
    }

    async fn resume_job(
        &self,
        request: Request<pb::ResumeJobRequest>,
    ) -> Result<Response<pb::ResumeJobResponse>, Status> {
        let caller = Caller::of(&request);
        let job = self
            .set_job_paused(&caller, &request.get_ref().job_id, false)
            .await?;
        Ok(Response::new(pb::ResumeJobResponse { job: Some(job) }))
    }

    async fn backfill_job(
        &self,
        request: Request<pb::BackfillJobRequest>,
    ) -> Result<Response<pb::BackfillJobResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let job_id = required("job_id", &request.job_id)?;
        let instant = |field: &str, t: Option<prost_types::Timestamp>| {
            t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.try_into().ok()?))
                .ok_or_else(|| {
                    Status::invalid_argument(format!("{field} is required (an instant)"))
                })
        };
        let (from, to) = (instant("from", request.from)?, instant("to", request.to)?);
        let result = self
            .engine
            .backfill(job_id, from, to, request.dry_run, Some(caller.name.clone()))
            .await
            .map_err(Status::from);
        if !request.dry_run {
            self.audit(&caller, "BackfillJob", job_id, &result, |done| {
                format!("{} runs from {from} to {to}", done.runs.len())
            })
            .await;
        }
        let done = result?;
        let now = Utc::now();
        Ok(Response::new(pb::BackfillJobResponse {
            instants: done.instants.into_iter().map(convert::timestamp).collect(),
            runs: done.runs.iter().map(|r| convert::run(r, now)).collect(),
            already_run: u32::try_from(done.already_run).unwrap_or(u32::MAX),
        }))
    }

    async fn reload_jobs(
        &self,
        request: Request<pb::ReloadJobsRequest>,
    ) -> Result<Response<pb::ReloadJobsResponse>, Status> {
        let caller = Caller::of(&request);
        let result = self.engine.reload().await.map_err(Status::from);
        self.audit(&caller, "ReloadJobs", "", &result, |d| {
            format!(
                "{} added, {} removed, {} changed, {} unchanged",
                d.added.len(),
                d.removed.len(),
                d.changed.len(),
                d.unchanged.len()
            )
        })
        .await;
        let diff = result?;
        Ok(Response::new(pb::ReloadJobsResponse {
            added: diff.added,
            removed: diff.removed,
            changed: diff.changed,
            unchanged: diff.unchanged,
        }))
    }

    async fn list_job_runs(
        &self,
        request: Request<pb::ListJobRunsRequest>,
    ) -> Result<Response<pb::ListJobRunsResponse>, Status> {
        let request = request.into_inner();
        let job_id = required("job_id", &request.job_id)?;
        let page = RunsPage::parse(request.page_size, &request.page_token)?;
        let store = self.engine.store();
        // A job whose file was removed still has its history.
        if self.engine.job(job_id).is_none() && store.last_run(job_id, &[]).await?.is_none() {
            return Err(EngineError::JobNotFound(job_id.to_string()).into());
        }
        let mut runs = store.list_runs(Some(job_id), page.store_page()).await?;
        let next_page_token = page.finish(&mut runs);
        let now = Utc::now();
        Ok(Response::new(pb::ListJobRunsResponse {
            runs: runs.iter().map(|r| convert::run(r, now)).collect(),
            next_page_token,
        }))
    }
}
