//! The shim against fake services called in process: routing, request building, the
//! token check, status mapping and reply encoding, without the engine.

use axum::body::Body;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use petit_proto::v1 as pb;
use petit_proto::v1::job_service_server::{JobService, JobServiceServer};
use petit_proto::v1::run_service_server::RunService;
use petit_proto::v1::scheduler_service_server::SchedulerService;
use petit_proto::v1::{
    GetJobRequest, GetJobResponse, Job, ListJobRunsRequest, ListJobRunsResponse, ListJobsRequest,
    ListJobsResponse, Run, RunStatus, TriggerJobRequest, TriggerJobResponse,
};
use serde_json::{json, Value};
use tonic::{Response as GrpcResponse, Status};
use tower::ServiceExt;

use super::*;

/// Knows one job, `hello`; echoes what it is sent so tests can see the request message.
struct FakeJobs;

fn job(id: &str) -> Job {
    Job {
        id: id.to_string(),
        name: format!("Job {id}"),
        enabled: true,
        ..Job::default()
    }
}

impl super::Services for FakeJobs {}

#[tonic::async_trait]
impl JobService for FakeJobs {
    async fn list_jobs(
        &self,
        request: tonic::Request<ListJobsRequest>,
    ) -> Result<GrpcResponse<ListJobsResponse>, Status> {
        let request = request.into_inner();
        let jobs = (0..request.page_size)
            .map(|i| job(&format!("j{i}")))
            .collect();
        Ok(GrpcResponse::new(ListJobsResponse {
            jobs,
            next_page_token: request.page_token,
        }))
    }

    async fn get_job(
        &self,
        request: tonic::Request<GetJobRequest>,
    ) -> Result<GrpcResponse<GetJobResponse>, Status> {
        let auth = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let tenant = request
            .metadata()
            .get("tenant")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let caller = crate::auth::Caller::of(&request).name;
        let id = request.into_inner().job_id;
        if id != "hello" {
            return Err(Status::not_found(format!("job '{id}' not found")));
        }
        let mut job = job(&id);
        job.description = format!("auth={auth} tenant={tenant} caller={caller}");
        Ok(GrpcResponse::new(GetJobResponse { job: Some(job) }))
    }

    async fn trigger_job(
        &self,
        request: tonic::Request<TriggerJobRequest>,
    ) -> Result<GrpcResponse<TriggerJobResponse>, Status> {
        let request = request.into_inner();
        if request.job_id == "blocked" && !request.force {
            return Err(Status::failed_precondition("job 'blocked' depends on 'x'"));
        }
        Ok(GrpcResponse::new(TriggerJobResponse {
            run: Some(Run {
                id: "r1".to_string(),
                job_id: request.job_id,
                status: RunStatus::Running as i32,
                params: request.params,
                created_at: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                duration: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 500_000_000,
                }),
                ..Run::default()
            }),
        }))
    }

    async fn list_job_runs(
        &self,
        _request: tonic::Request<ListJobRunsRequest>,
    ) -> Result<GrpcResponse<ListJobRunsResponse>, Status> {
        Err(Status::resource_exhausted("too many"))
    }

    async fn pause_job(
        &self,
        _request: tonic::Request<petit_proto::v1::PauseJobRequest>,
    ) -> Result<GrpcResponse<petit_proto::v1::PauseJobResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn backfill_job(
        &self,
        _request: tonic::Request<petit_proto::v1::BackfillJobRequest>,
    ) -> Result<GrpcResponse<petit_proto::v1::BackfillJobResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn reload_jobs(
        &self,
        _request: tonic::Request<petit_proto::v1::ReloadJobsRequest>,
    ) -> Result<GrpcResponse<petit_proto::v1::ReloadJobsResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn resume_job(
        &self,
        _request: tonic::Request<petit_proto::v1::ResumeJobRequest>,
    ) -> Result<GrpcResponse<petit_proto::v1::ResumeJobResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
}

/// The methods the fake does not answer: UNIMPLEMENTED naming the method, so that a test
/// can tell which method a route called (written as `async_trait` expands them: its
/// attribute can't see into a macro).
macro_rules! unanswered {
    ($($method:ident($request:ty) -> $response:ty;)*) => {$(
        fn $method<'life0, 'async_trait>(
            &'life0 self,
            _request: tonic::Request<$request>,
        ) -> std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<GrpcResponse<$response>, Status>>
                    + Send
                    + 'async_trait,
            >,
        >
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async { Err(Status::unimplemented(stringify!($method))) })
        }
    )*};
}

type NoStream<T> = futures::stream::Empty<Result<T, Status>>;

impl SchedulerService for FakeJobs {
    type WatchEventsStream = NoStream<pb::WatchEventsResponse>;
    unanswered! {
        get_health(pb::GetHealthRequest) -> pb::GetHealthResponse;
        get_scheduler_state(pb::GetSchedulerStateRequest) -> pb::GetSchedulerStateResponse;
        pause_scheduler(pb::PauseSchedulerRequest) -> pb::PauseSchedulerResponse;
        resume_scheduler(pb::ResumeSchedulerRequest) -> pb::ResumeSchedulerResponse;
        watch_events(pb::WatchEventsRequest) -> Self::WatchEventsStream;
        list_audit_records(pb::ListAuditRecordsRequest) -> pb::ListAuditRecordsResponse;
        list_nodes(pb::ListNodesRequest) -> pb::ListNodesResponse;
    }
}

impl RunService for FakeJobs {
    type WatchRunStream = NoStream<pb::WatchRunResponse>;
    type FollowTaskLogsStream = NoStream<pb::FollowTaskLogsResponse>;
    unanswered! {
        get_run(pb::GetRunRequest) -> pb::GetRunResponse;
        list_task_runs(pb::ListTaskRunsRequest) -> pb::ListTaskRunsResponse;
        cancel_run(pb::CancelRunRequest) -> pb::CancelRunResponse;
        rerun_run(pb::RerunRunRequest) -> pb::RerunRunResponse;
        watch_run(pb::WatchRunRequest) -> Self::WatchRunStream;
        get_task_logs(pb::GetTaskLogsRequest) -> pb::GetTaskLogsResponse;
        follow_task_logs(pb::FollowTaskLogsRequest) -> Self::FollowTaskLogsStream;
    }
}

fn rest() -> Router {
    router(FakeJobs, crate::auth::Authenticator::default())
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    body: &str,
) -> (StatusCode, HeaderMap, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body.to_string()))
        .expect("request");
    send_request(app, request).await
}

async fn send_request(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, headers, json)
}

fn error(code: i32, message: &str) -> Value {
    json!({"code": code, "message": message, "details": []})
}

#[tokio::test]
async fn replies_are_proto3_json_with_defaults() {
    let (status, headers, body) = send(&rest(), Method::GET, "/api/jobs/hello", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[CONTENT_TYPE], "application/json");
    assert_eq!(
        body,
        json!({"job": {
            "id": "hello",
            "name": "Job hello",
            "description": "auth= tenant= caller=anonymous",
            "enabled": true,
            "maxConcurrency": 0,
            "dependsOn": [],
            "config": {},
            "tasks": [],
            "paused": false,
            "overlap": "",
            "maxQueued": 0,
            "catchup": "",
            "historyMaxRuns": 0,
            "definition": "",
            "taskCount": 0,
            "source": "",
        }})
    );
}

#[tokio::test]
async fn calls_answer_or_fail_as_grpc_gateway_would() {
    let big = format!("{{\"params\": {{\"k\": \"{}\"}}}}", "x".repeat(BODY_LIMIT));
    let cases: Vec<(Method, &str, &str, StatusCode, Value)> = vec![
        (
            Method::GET,
            "/api/jobs?pageSize=2&pageToken=next",
            "",
            StatusCode::OK,
            json!({"jobs": [job_json("j0"), job_json("j1")], "nextPageToken": "next"}),
        ),
        (
            Method::GET,
            "/api/jobs?page_size=0",
            "",
            StatusCode::OK,
            json!({"jobs": [], "nextPageToken": ""}),
        ),
        (
            Method::GET,
            "/api/jobs/nope",
            "",
            StatusCode::NOT_FOUND,
            error(5, "job 'nope' not found"),
        ),
        (
            Method::GET,
            "/api/jobs/%C3%A9t%C3%A9",
            "",
            StatusCode::NOT_FOUND,
            error(5, "job 'été' not found"),
        ),
        (
            Method::GET,
            "/api/jobs/a%20b",
            "",
            StatusCode::NOT_FOUND,
            error(5, "job 'a b' not found"),
        ),
        (
            Method::POST,
            "/api/jobs/hello/trigger",
            r#"{"params": {"day": "mon"}}"#,
            StatusCode::OK,
            run_json("hello", json!({"day": "mon"})),
        ),
        (
            Method::POST,
            "/api/jobs/hello/trigger",
            "",
            StatusCode::OK,
            run_json("hello", json!({})),
        ),
        (
            Method::POST,
            "/api/jobs/hello/trigger",
            r#"{"jobId": "other", "job_id": "other"}"#,
            StatusCode::OK,
            run_json("hello", json!({})),
        ),
        (
            Method::POST,
            "/api/jobs/blocked/trigger",
            "{}",
            StatusCode::BAD_REQUEST,
            error(9, "job 'blocked' depends on 'x'"),
        ),
        (
            Method::POST,
            "/api/jobs/blocked/trigger",
            r#"{"force": true}"#,
            StatusCode::OK,
            run_json("blocked", json!({})),
        ),
        (
            Method::GET,
            "/api/jobs/hello/runs",
            "",
            StatusCode::TOO_MANY_REQUESTS,
            error(8, "too many"),
        ),
        (
            Method::GET,
            "/api/health",
            "",
            StatusCode::NOT_IMPLEMENTED,
            error(12, "get_health"),
        ),
        (
            Method::GET,
            "/api/nope",
            "",
            StatusCode::NOT_FOUND,
            error(5, "no route for GET /api/nope"),
        ),
        (
            Method::GET,
            "/api",
            "",
            StatusCode::NOT_FOUND,
            error(5, "no route for GET /api"),
        ),
        (
            Method::GET,
            "/api/jobs/hello/trigger/x",
            "",
            StatusCode::NOT_FOUND,
            error(5, "no route for GET /api/jobs/hello/trigger/x"),
        ),
        (
            Method::PUT,
            "/api/jobs",
            "",
            StatusCode::METHOD_NOT_ALLOWED,
            error(12, "method PUT is not allowed for /api/jobs (allowed: GET)"),
        ),
        (
            Method::GET,
            "/api/jobs/hello/trigger",
            "",
            StatusCode::METHOD_NOT_ALLOWED,
            error(
                12,
                "method GET is not allowed for /api/jobs/hello/trigger (allowed: POST)",
            ),
        ),
        (
            Method::POST,
            "/api/jobs/hello/trigger",
            &big,
            StatusCode::PAYLOAD_TOO_LARGE,
            error(8, "request body is larger than 1048576 bytes"),
        ),
    ];
    let app = rest();
    for (method, uri, body, want_status, want_body) in cases {
        let (status, _, got) = send(&app, method.clone(), uri, body).await;
        assert_eq!((status, &got), (want_status, &want_body), "{method} {uri}");
    }
}

#[tokio::test]
async fn bad_requests_are_400_naming_the_problem() {
    let cases: &[(Method, &str, &str, &str)] = &[
        (
            Method::POST,
            "/api/jobs/hello/trigger",
            "{",
            "invalid JSON body",
        ),
        (
            Method::POST,
            "/api/jobs/hello/trigger",
            r#"{"force": "yes"}"#,
            "field force",
        ),
        (
            Method::POST,
            "/api/jobs/hello/trigger",
            r#"{"bogus": 1}"#,
            "unrecognized field name 'bogus'",
        ),
        (
            Method::POST,
            "/api/jobs/hello/trigger",
            "[1]",
            "invalid JSON body",
        ),
        (
            Method::POST,
            "/api/jobs/hello/trigger?force=true",
            "",
            "takes its fields from the JSON body",
        ),
        (
            Method::GET,
            "/api/jobs?pageSize=many",
            "",
            "query parameter \"pageSize\": \"many\" is not a valid uint32",
        ),
        (
            Method::GET,
            "/api/jobs?limit=3",
            "",
            "query parameter \"limit\"",
        ),
        (Method::GET, "/api/jobs/%FF", "", "path parameter job_id"),
    ];
    let app = rest();
    for (method, uri, body, want) in cases {
        let (status, headers, got) = send(&app, method.clone(), uri, body).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {uri} {body}: {got}"
        );
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert_eq!(got["code"], 3, "{got}");
        assert_eq!(got["details"], json!([]));
        let message = got["message"].as_str().expect("message");
        assert!(message.contains(want), "{method} {uri} {body}: {message}");
    }
}

#[tokio::test]
async fn wrong_method_says_what_is_allowed() {
    let request = Request::builder()
        .method(Method::DELETE)
        .uri("/api/jobs/hello")
        .body(Body::empty())
        .expect("request");
    let (status, headers, _) = send_request(&rest(), request).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[ALLOW], "GET");
}

#[tokio::test]
async fn authorization_and_grpc_metadata_headers_reach_the_service() {
    let request = Request::builder()
        .uri("/api/jobs/hello")
        .header("authorization", "Bearer t")
        .header("grpc-metadata-tenant", "acme")
        .header("x-other", "dropped")
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = send_request(&rest(), request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["job"]["description"],
        "auth=Bearer t tenant=acme caller=anonymous"
    );
}

#[tokio::test]
async fn the_listeners_shim_claims_the_paths_the_router_routes_and_answers_alike() {
    let service = RestService::new(FakeJobs, crate::auth::Authenticator::default());
    let router = rest();
    // The shim also claims `/api/`, which the router's `/api/{*rest}` leaves out (its
    // fallback then says "no such path"): the shim says "no route", a 404 either way.
    let paths = [
        ("/api", true),
        ("/api/", true),
        ("/api/jobs", true),
        ("/api/jobs/hello", true),
        ("/api/jobs/hello/extra", true),
        ("/api/nope", true),
        ("/apiary", false),
        ("/ap", false),
        ("/", false),
        ("/metrics", false),
        ("/petit.v1.JobService/GetJob", false),
    ];
    let bytes = |r: axum::response::Response| axum::body::to_bytes(r.into_body(), 1 << 20);
    // HEAD: the same status and length, no body, as axum's routes answer it.
    let head = || {
        Request::head("/api/jobs/hello")
            .body(Body::empty())
            .expect("request")
    };
    let answered = service.call(head()).await;
    let routed = router.clone().oneshot(head()).await.expect("infallible");
    assert_eq!(answered.status(), routed.status());
    assert_eq!(
        answered.headers().get("content-length"),
        routed.headers().get("content-length")
    );
    assert!(bytes(answered).await.expect("body").is_empty());
    for (path, claimed) in paths {
        assert_eq!(service.claims(path), claimed, "{path}");
        let request = || Request::get(path).body(Body::empty()).expect("request");
        let routed = router.clone().oneshot(request()).await.expect("infallible");
        // The router has no fallback: axum's bare 404 for what it does not route.
        let router_routes = !(routed.status() == StatusCode::NOT_FOUND
            && routed.headers().get(CONTENT_TYPE).is_none());
        assert_eq!(router_routes, claimed && path != "/api/", "{path}");
        if !claimed {
            continue;
        }
        let answered = service.call(request()).await;
        if path == "/api/" {
            assert_eq!(answered.status(), StatusCode::NOT_FOUND);
            let body: Value =
                serde_json::from_slice(&bytes(answered).await.expect("body")).expect("JSON");
            assert_eq!(body, error(5, "no route for GET /api/"));
            continue;
        }
        assert_eq!(answered.status(), routed.status(), "{path}");
        assert_eq!(
            answered.headers().get("content-length"),
            routed.headers().get("content-length"),
            "{path}"
        );
        let answered = bytes(answered).await.expect("body");
        assert_eq!(answered, bytes(routed).await.expect("body"), "{path}");
    }
}

#[tokio::test]
async fn merges_with_the_grpc_router() {
    // Both routers must coexist on one listener: the REST router sets no fallback and
    // claims only `/api…`, tonic claims `/{service}/…` and the fallback.
    let grpc = tonic::service::Routes::new(JobServiceServer::new(FakeJobs)).into_axum_router();
    let app = grpc.merge(rest());
    let (status, _, body) = send(&app, Method::GET, "/api/jobs/hello", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = send(&app, Method::GET, "/api/nope", "").await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::NOT_FOUND, json!(5))
    );

    // A gRPC call of the same method still reaches tonic.
    let message = prost::Message::encode_to_vec(&GetJobRequest {
        job_id: "hello".to_string(),
    });
    let mut frame = vec![0];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let request = Request::builder()
        .method(Method::POST)
        .uri("/petit.v1.JobService/GetJob")
        .version(http::Version::HTTP_2)
        .header(CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(Body::from(frame))
        .expect("request");
    let response = app.oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
    let body = response.into_body().collect().await.expect("gRPC reply");
    let trailers = body.trailers().cloned().unwrap_or_default();
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
    let reply: GetJobResponse =
        prost::Message::decode(&body.to_bytes()[5..]).expect("a GetJobResponse");
    assert_eq!(reply.job.expect("job").id, "hello");
}

#[tokio::test]
async fn every_route_calls_its_own_rpc() {
    // The fake answers JobService (its routes are checked above); every other method
    // names itself in its refusal.
    let table =
        RouteTable::from_descriptor_set(petit_proto::FILE_DESCRIPTOR_SET).expect("route table");
    let app = rest();
    for route in table.routes() {
        let service = route.rpc.parent_service().name();
        if service == "JobService" {
            continue;
        }
        let mut path = route.template.to_string();
        for field in &route.path_fields {
            path = path.replace(&format!("{{{}}}", field.name), "x");
        }
        let body = if route.body == BodyRule::Whole {
            "{}"
        } else {
            ""
        };
        let (status, _, got) = send(&app, route.method.clone(), &path, body).await;
        let method = snake_case(route.rpc.name());
        assert_eq!(
            (status, &got),
            (StatusCode::NOT_IMPLEMENTED, &error(12, &method)),
            "{} {path} should call {service}::{method}",
            route.method
        );
    }
}

/// `GetTaskLogs` -> `get_task_logs`.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[tokio::test]
async fn tokens_are_checked_per_rpc_as_for_grpc() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("tokens");
    let viewer = crate::auth::create_token(&file, "ci", crate::auth::Role::Viewer).expect("token");
    let keyring = crate::auth::Keyring::open(&file).expect("keyring");
    let app = router(
        FakeJobs,
        crate::auth::Authenticator::new(Some(std::sync::Arc::new(keyring))),
    );
    let bearer = format!("Bearer {viewer}");
    // (method, uri, body, authorization, status, message).
    type Case<'a> = (
        Method,
        &'a str,
        &'a str,
        Option<&'a str>,
        StatusCode,
        &'a str,
    );
    let cases: &[Case] = &[
        (
            Method::GET,
            "/api/jobs/hello",
            "",
            Some(&bearer),
            StatusCode::OK,
            "",
        ),
        (
            Method::GET,
            "/api/jobs/hello",
            "",
            None,
            StatusCode::UNAUTHORIZED,
            "",
        ),
        (
            Method::GET,
            "/api/jobs/hello",
            "",
            Some("Bearer nope"),
            StatusCode::UNAUTHORIZED,
            "",
        ),
        (
            Method::POST,
            "/api/jobs/hello/trigger",
            "{}",
            Some(&bearer),
            StatusCode::FORBIDDEN,
            "token 'ci' has role viewer; TriggerJob needs operator",
        ),
        // Health is open: the fake's own answer, no token needed.
        (
            Method::GET,
            "/api/health",
            "",
            None,
            StatusCode::NOT_IMPLEMENTED,
            "get_health",
        ),
        // The request is read before the token is checked, as it was when REST went
        // through the gRPC server.
        (
            Method::GET,
            "/api/jobs?pageSize=many",
            "",
            None,
            StatusCode::BAD_REQUEST,
            "query parameter",
        ),
        (
            Method::GET,
            "/api/openapi.json",
            "",
            None,
            StatusCode::UNAUTHORIZED,
            "",
        ),
    ];
    for (method, uri, body, token, want_status, want_message) in cases {
        let mut request = Request::builder().method(method.clone()).uri(*uri);
        if let Some(token) = token {
            request = request.header("authorization", *token);
        }
        let request = request.body(Body::from(body.to_string())).expect("request");
        let (status, headers, got) = send_request(&app, request).await;
        assert_eq!(status, *want_status, "{method} {uri} {token:?}: {got}");
        if status == StatusCode::OK {
            if let Some(description) = got["job"]["description"].as_str() {
                assert!(description.ends_with("caller=ci"), "{description}");
            }
            continue;
        }
        let message = got["message"].as_str().expect("message");
        assert!(message.contains(want_message), "{method} {uri}: {message}");
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(headers["www-authenticate"], "Bearer realm=\"petit\"");
        }
    }
}

#[test]
fn every_routed_rpc_has_a_handler() {
    let table =
        RouteTable::from_descriptor_set(petit_proto::FILE_DESCRIPTOR_SET).expect("route table");
    for route in table.routes() {
        assert!(
            call::handler::<FakeJobs>(&route.grpc_path).is_some(),
            "{} {} calls {}, which has no handler in rest/call.rs",
            route.method,
            route.template,
            route.grpc_path
        );
    }
}

#[test]
fn the_embedded_descriptor_set_builds_a_router() {
    // `router` panics only on a broken embedded descriptor set; prove it isn't.
    let _ = rest();
}

fn job_json(id: &str) -> Value {
    json!({
        "id": id,
        "name": format!("Job {id}"),
        "description": "",
        "enabled": true,
        "maxConcurrency": 0,
        "dependsOn": [],
        "config": {},
        "tasks": [],
        "paused": false,
        "overlap": "",
        "maxQueued": 0,
        "catchup": "",
        "historyMaxRuns": 0,
        "definition": "",
        "taskCount": 0,
        "source": "",
    })
}

fn run_json(job_id: &str, params: Value) -> Value {
    json!({"run": {
        "id": "r1",
        "jobId": job_id,
        "status": "RUN_STATUS_RUNNING",
        "trigger": "TRIGGER_REASON_UNSPECIFIED",
        "params": params,
        "createdAt": "2023-11-14T22:13:20Z",
        "duration": "1.500s",
        "error": "",
        "triggeredBy": "",
        "definition": "",
        "retryOf": "",
    }})
}
