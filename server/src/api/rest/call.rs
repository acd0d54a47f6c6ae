//! One unary call of the services, in process and without a gRPC round trip: the request
//! message the shim decoded becomes the RPC's typed request, the service method the gRPC
//! server would run is called directly (so both transports run one code path), and its
//! reply is written as proto3 JSON straight from the prost message
//! (`petit_proto::json`). The caller's token is checked by the shim first, exactly as the
//! auth middleware checks a gRPC call, and reaches the method the same way (the
//! [`Caller`] extension).

use futures::future::BoxFuture;
use petit_proto::json::{self, ToJson};
use petit_proto::v1::job_service_server::JobService;
use petit_proto::v1::run_service_server::RunService;
use petit_proto::v1::scheduler_service_server::SchedulerService;
use prost_reflect::DynamicMessage;
use tonic::metadata::MetadataMap;

use petit_proto::v1 as pb;

use super::error::RestError;
use crate::auth::Caller;

/// What the REST routes call: the three `petit.v1` services, answered by one value
/// (`PetitApi` in petitd, a fake in tests).
pub trait Services: SchedulerService + JobService + RunService {
    /// `ListJobs` answered as JSON by the service itself, from the JSON it keeps of each
    /// job (the same page and bytes as the RPC's reply written out); `None`: no such
    /// path, call the RPC.
    fn list_jobs_json(
        &self,
        _request: &pb::ListJobsRequest,
        _capacity: usize,
    ) -> Option<Result<Vec<u8>, tonic::Status>> {
        None
    }

    /// `GetJob` answered as JSON, as `list_jobs_json`.
    fn get_job_json(&self, _request: &pb::GetJobRequest) -> Option<Result<Vec<u8>, tonic::Status>> {
        None
    }
}

impl Services for crate::api::grpc::PetitApi {
    fn list_jobs_json(
        &self,
        request: &pb::ListJobsRequest,
        capacity: usize,
    ) -> Option<Result<Vec<u8>, tonic::Status>> {
        Some(self.list_jobs_json(request, capacity))
    }

    fn get_job_json(&self, request: &pb::GetJobRequest) -> Option<Result<Vec<u8>, tonic::Status>> {
        Some(self.get_job_json(request))
    }
}

/// A request as the shim built it: the request message (from the path, query and body),
/// the metadata a gRPC client would have sent (`authorization`, `grpc-metadata-*`), and
/// who is calling.
pub struct Call {
    pub message: DynamicMessage,
    pub metadata: MetadataMap,
    pub caller: Caller,
    /// A guess of the reply's JSON size (the last reply of the route), to spare regrowing.
    pub reply_capacity: usize,
}

/// Calls one RPC: the reply as JSON, or the status the service answered.
pub type Handler<S> = for<'a> fn(&'a S, Call) -> BoxFuture<'a, Result<Vec<u8>, RestError>>;

/// A `Handler` of `Service::method`, whose request type is `$request`.
macro_rules! handler {
    ($service:ident :: $method:ident, $request:ty) => {{
        fn handle<S: Services>(
            services: &S,
            call: Call,
        ) -> BoxFuture<'_, Result<Vec<u8>, RestError>> {
            Box::pin(async move {
                let capacity = call.reply_capacity;
                let request = typed_request::<$request>(call)?;
                let reply = $service::$method(services, request)
                    .await
                    .map_err(|status| RestError::from_grpc(status.code(), status.message()))?;
                reply_json(reply.get_ref(), capacity)
            })
        }
        handle::<S> as Handler<S>
    }};
}

/// A `Handler` of `Service::method` that the service may answer as JSON itself
/// (`Services::$json`), falling back to the RPC.
macro_rules! json_handler {
    ($service:ident :: $method:ident, $request:ty, $json:ident) => {{
        fn handle<S: Services>(
            services: &S,
            call: Call,
        ) -> BoxFuture<'_, Result<Vec<u8>, RestError>> {
            Box::pin(async move {
                let capacity = call.reply_capacity;
                let request = typed_request::<$request>(call)?;
                let status =
                    |status: tonic::Status| RestError::from_grpc(status.code(), status.message());
                if let Some(reply) = json_reply!(services, $json, request.get_ref(), capacity) {
                    return reply.map_err(status);
                }
                let reply = $service::$method(services, request).await.map_err(status)?;
                reply_json(reply.get_ref(), capacity)
            })
        }
        handle::<S> as Handler<S>
    }};
}

macro_rules! json_reply {
    ($services:expr, list_jobs_json, $request:expr, $capacity:expr) => {
        $services.list_jobs_json($request, $capacity)
    };
    ($services:expr, get_job_json, $request:expr, $capacity:expr) => {
        $services.get_job_json($request)
    };
}

/// The handler of the RPC at `grpc_path` (`/petit.v1.JobService/GetJob`); `None` for an
/// RPC this shim does not know (a unit test keeps every routed RPC known).
pub fn handler<S: Services>(grpc_path: &str) -> Option<Handler<S>> {
    Some(match grpc_path.strip_prefix("/petit.v1.")? {
        "SchedulerService/GetHealth" => {
            handler!(SchedulerService::get_health, pb::GetHealthRequest)
        }
        "SchedulerService/GetSchedulerState" => handler!(
            SchedulerService::get_scheduler_state,
            pb::GetSchedulerStateRequest
        ),
        "SchedulerService/PauseScheduler" => {
            handler!(SchedulerService::pause_scheduler, pb::PauseSchedulerRequest)
        }
        "SchedulerService/ResumeScheduler" => handler!(
            SchedulerService::resume_scheduler,
            pb::ResumeSchedulerRequest
        ),
        "SchedulerService/ListAuditRecords" => handler!(
            SchedulerService::list_audit_records,
            pb::ListAuditRecordsRequest
        ),
        "SchedulerService/ListNodes" => {
            handler!(SchedulerService::list_nodes, pb::ListNodesRequest)
        }
        "JobService/ListJobs" => {
            json_handler!(JobService::list_jobs, pb::ListJobsRequest, list_jobs_json)
        }
        "JobService/GetJob" => json_handler!(JobService::get_job, pb::GetJobRequest, get_job_json),
        "JobService/TriggerJob" => handler!(JobService::trigger_job, pb::TriggerJobRequest),
        "JobService/ListJobRuns" => handler!(JobService::list_job_runs, pb::ListJobRunsRequest),
        "RunService/GetRun" => handler!(RunService::get_run, pb::GetRunRequest),
        "RunService/ListTaskRuns" => handler!(RunService::list_task_runs, pb::ListTaskRunsRequest),
        "RunService/CancelRun" => handler!(RunService::cancel_run, pb::CancelRunRequest),
        "RunService/GetTaskLogs" => handler!(RunService::get_task_logs, pb::GetTaskLogsRequest),
        "RunService/RerunRun" => handler!(RunService::rerun_run, pb::RerunRunRequest),
        "JobService/PauseJob" => handler!(JobService::pause_job, pb::PauseJobRequest),
        "JobService/ResumeJob" => handler!(JobService::resume_job, pb::ResumeJobRequest),
        "JobService/BackfillJob" => handler!(JobService::backfill_job, pb::BackfillJobRequest),
        "JobService/ReloadJobs" => handler!(JobService::reload_jobs, pb::ReloadJobsRequest),
        _ => return None,
    })
}

/// The typed request of a call, with its metadata and caller, as tonic would hand it to
/// the service. The dynamic message was built from the same descriptors, so it always
/// converts; a failure would be the shim's own bug.
fn typed_request<T: prost::Message + Default>(call: Call) -> Result<tonic::Request<T>, RestError> {
    let message = call
        .message
        .transcode_to::<T>()
        .map_err(|e| RestError::internal(format!("cannot build the request message: {e}")))?;
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() = call.metadata;
    request.extensions_mut().insert(call.caller);
    Ok(request)
}

fn reply_json<M: ToJson>(reply: &M, capacity: usize) -> Result<Vec<u8>, RestError> {
    json::to_json(reply, capacity)
        .map_err(|e| RestError::internal(format!("cannot encode the reply as JSON: {e}")))
}
