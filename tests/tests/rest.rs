//! The REST shim end to end, on the real `petitd`: every `google.api.http` route of the
//! contract (read from the descriptor set, so a new RPC can't be forgotten) answers over
//! REST with what the same RPC answers over gRPC; errors come back as grpc-gateway's
//! JSON body with its HTTP status.

use std::collections::BTreeMap;
use std::time::Duration;

use petit_proto::v1::job_service_client::JobServiceClient;
use petit_proto::v1::run_service_client::RunServiceClient;
use petit_proto::v1::scheduler_service_client::SchedulerServiceClient;
use petit_proto::v1::*;
use petit_tests::{eventually, jobs_dir, Daemon};
use prost_reflect::{
    DescriptorPool, DynamicMessage, MethodDescriptor, ReflectMessage, SerializeOptions,
};
use reqwest::Method;
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic::Code;

/// Longest a run of these jobs may take; every wait below is bounded by it.
const RUN_TIMEOUT: Duration = Duration::from_secs(10);

const HELLO: &str = r#"
id: hello
name: Hello
description: Greets, then says it is done
config:
  greeting: hello
tasks:
  - id: greet
    type: command
    command: echo
    args: ["${params.greeting} from petit"]
  - id: done
    type: command
    command: echo
    args: ["done"]
    depends_on: [greet]
"#;

/// Scheduled, so that jobs carry next fire times, but not due during a test.
const NEW_YEAR: &str = r#"
id: new_year
name: New Year
schedule: "0 0 0 1 1 *"
tasks:
  - id: cheer
    type: command
    command: "true"
"#;

const SLOW: &str = r#"
id: slow
name: Slow
tasks:
  - id: wait
    type: command
    command: sleep
    args: ["30"]
"#;

fn start() -> Daemon {
    let jobs = jobs_dir(&[
        ("hello.yaml", HELLO),
        ("new_year.yaml", NEW_YEAR),
        ("slow.yaml", SLOW),
    ]);
    let daemon = Daemon::start(jobs.path());
    // The daemon read the files at start; the directory may go.
    drop(jobs);
    daemon
}

/// One REST binding, read from the descriptor set as the server reads it.
struct HttpRoute {
    rpc: MethodDescriptor,
    method: Method,
    template: String,
    body: bool,
}

fn http_routes() -> Vec<HttpRoute> {
    let pool = DescriptorPool::decode(petit_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let http = pool
        .get_extension_by_name("google.api.http")
        .expect("google.api.http in the descriptor set");
    let mut routes = Vec::new();
    for service in pool.services() {
        for rpc in service.methods() {
            let options = rpc.options();
            if !options.has_extension(&http) {
                continue;
            }
            let rule = options.get_extension(&http);
            let rule = rule.as_message().expect("HttpRule");
            let (verb, template) = ["get", "post", "put", "delete", "patch"]
                .into_iter()
                .find(|verb| rule.has_field_by_name(verb))
                .map(|verb| {
                    let template = rule.get_field_by_name(verb).expect("path");
                    (verb, template.as_str().expect("path").to_string())
                })
                .unwrap_or_else(|| panic!("{}: no HTTP verb", rpc.full_name()));
            let body = rule.get_field_by_name("body").expect("body");
            routes.push(HttpRoute {
                method: Method::from_bytes(verb.to_uppercase().as_bytes()).expect("method"),
                template,
                body: body.as_str() == Some("*"),
                rpc,
            });
        }
    }
    routes
}

/// Proto3 JSON as the shim writes it: defaults included.
fn to_json(message: &DynamicMessage) -> Value {
    message
        .serialize_with_options(
            serde_json::value::Serializer,
            &SerializeOptions::new().skip_default_fields(false),
        )
        .expect("JSON")
}

/// grpc-gateway's code → HTTP status mapping.
fn http_status(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::Cancelled => 499,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::DeadlineExceeded => 504,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::PermissionDenied => 403,
        Code::Unauthenticated => 401,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
    }
}

/// Removes `keys` wherever they occur in `value`.
fn strip(value: &mut Value, keys: &[&str]) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !keys.contains(&k.as_str()));
            map.values_mut().for_each(|v| strip(v, keys));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| strip(v, keys)),
        _ => {}
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
    scheduler: SchedulerServiceClient<Channel>,
    jobs: JobServiceClient<Channel>,
    runs: RunServiceClient<Channel>,
}

impl Api {
    async fn connect(daemon: &Daemon) -> Api {
        let channel = Channel::from_shared(daemon.url())
            .expect("url")
            .connect()
            .await
            .expect("gRPC connect");
        Api {
            http: reqwest::Client::new(),
            base: daemon.url(),
            scheduler: SchedulerServiceClient::new(channel.clone()),
            jobs: JobServiceClient::new(channel.clone()),
            runs: RunServiceClient::new(channel),
        }
    }

    /// Sends a REST request; the HTTP status and the JSON body (every reply must be JSON).
    async fn rest(&self, method: Method, path_and_query: &str, body: Option<&str>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path_and_query}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("REST request");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .unwrap_or_default();
        let text = response.text().await.expect("REST body");
        assert_eq!(
            content_type, "application/json",
            "{method} {path_and_query}: {status} {text}"
        );
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path_and_query}: not JSON ({e}): {text}"));
        (status, json)
    }

    /// The same RPC over gRPC, its reply as proto3 JSON.
    async fn grpc(
        &mut self,
        rpc: &MethodDescriptor,
        request: &DynamicMessage,
    ) -> Result<Value, tonic::Status> {
        macro_rules! call {
            ($client:ident . $method:ident ( $request:ty )) => {{
                let request: $request = request.transcode_to().expect("typed request");
                let reply = self.$client.$method(request).await?.into_inner();
                let mut dynamic = DynamicMessage::new(rpc.output());
                dynamic.transcode_from(&reply).expect("dynamic reply");
                Ok(to_json(&dynamic))
            }};
        }
        match rpc.full_name() {
            "petit.v1.SchedulerService.GetHealth" => call!(scheduler.get_health(GetHealthRequest)),
            "petit.v1.SchedulerService.GetSchedulerState" => {
                call!(scheduler.get_scheduler_state(GetSchedulerStateRequest))
            }
            "petit.v1.SchedulerService.PauseScheduler" => {
                call!(scheduler.pause_scheduler(PauseSchedulerRequest))
            }
            "petit.v1.SchedulerService.ResumeScheduler" => {
                call!(scheduler.resume_scheduler(ResumeSchedulerRequest))
            }
            "petit.v1.SchedulerService.ListAuditRecords" => {
                call!(scheduler.list_audit_records(ListAuditRecordsRequest))
            }
            "petit.v1.SchedulerService.ListNodes" => call!(scheduler.list_nodes(ListNodesRequest)),
            "petit.v1.JobService.ListJobs" => call!(jobs.list_jobs(ListJobsRequest)),
            "petit.v1.JobService.GetJob" => call!(jobs.get_job(GetJobRequest)),
            "petit.v1.JobService.TriggerJob" => call!(jobs.trigger_job(TriggerJobRequest)),
            "petit.v1.JobService.ListJobRuns" => call!(jobs.list_job_runs(ListJobRunsRequest)),
            "petit.v1.RunService.GetRun" => call!(runs.get_run(GetRunRequest)),
            "petit.v1.RunService.ListTaskRuns" => call!(runs.list_task_runs(ListTaskRunsRequest)),
            "petit.v1.RunService.CancelRun" => call!(runs.cancel_run(CancelRunRequest)),
            "petit.v1.RunService.GetTaskLogs" => call!(runs.get_task_logs(GetTaskLogsRequest)),
            "petit.v1.RunService.RerunRun" => call!(runs.rerun_run(RerunRunRequest)),
            "petit.v1.JobService.PauseJob" => call!(jobs.pause_job(PauseJobRequest)),
            "petit.v1.JobService.ResumeJob" => call!(jobs.resume_job(ResumeJobRequest)),
            "petit.v1.JobService.BackfillJob" => call!(jobs.backfill_job(BackfillJobRequest)),
            "petit.v1.JobService.ReloadJobs" => call!(jobs.reload_jobs(ReloadJobsRequest)),
            other => {
                panic!("{other} has a REST route but this test can't call it over gRPC: add it")
            }
        }
    }

    /// Waits until a run has ended, and returns it (as REST JSON).
    async fn wait_ended(&self, run_id: &str) -> Value {
        eventually(RUN_TIMEOUT, &format!("run {run_id} to end"), || async {
            let (status, body) = self
                .rest(Method::GET, &format!("/api/runs/{run_id}"), None)
                .await;
            assert_eq!(status, 200, "{body}");
            let ended = !matches!(
                body["run"]["status"].as_str(),
                Some("RUN_STATUS_QUEUED" | "RUN_STATUS_RUNNING")
            );
            ended.then(|| body["run"].clone())
        })
        .await
    }

    /// Triggers `job_id` over REST, waits for the run to end, and returns it.
    async fn run_to_end(&self, job_id: &str, body: &str) -> Value {
        let (status, reply) = self
            .rest(
                Method::POST,
                &format!("/api/jobs/{job_id}/trigger"),
                Some(body),
            )
            .await;
        assert_eq!(status, 200, "{reply}");
        let run_id = reply["run"]["id"].as_str().expect("run id").to_string();
        self.wait_ended(&run_id).await
    }
}

/// The request message a route is exercised with: its path variables from `ids`, plus a
/// few non-path fields so that bodies and query strings are exercised too.
fn request_for(route: &HttpRoute, ids: &BTreeMap<&str, String>) -> DynamicMessage {
    let mut message = DynamicMessage::new(route.rpc.input());
    for var in variables(&route.template) {
        let id = ids
            .get(var)
            .unwrap_or_else(|| panic!("{}: no test value for path variable {var}", route.template));
        message.set_field_by_name(var, prost_reflect::Value::String(id.clone()));
    }
    match route.rpc.name() {
        "ListJobs" | "ListJobRuns" => {
            message.set_field_by_name("page_size", prost_reflect::Value::U32(10));
        }
        "TriggerJob" => {
            let mut params = std::collections::HashMap::new();
            params.insert(
                prost_reflect::MapKey::String("greeting".to_string()),
                prost_reflect::Value::String("hola".to_string()),
            );
            message.set_field_by_name("params", prost_reflect::Value::Map(params));
        }
        _ => {}
    }
    message
}

fn variables(template: &str) -> impl Iterator<Item = &str> {
    template
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

/// The REST form of `message` on `route`: path variables in the path, the other fields
/// in the JSON body (`body: "*"`) or the query string.
fn rest_request(route: &HttpRoute, message: &DynamicMessage) -> (String, Option<String>) {
    let mut json = to_json(message);
    let mut path = route.template.clone();
    for var in variables(&route.template) {
        let field = message
            .descriptor()
            .get_field_by_name(var)
            .expect("path field");
        let value = json
            .as_object_mut()
            .and_then(|o| o.remove(field.json_name()))
            .expect("path value");
        path = path.replace(&format!("{{{var}}}"), value.as_str().expect("string id"));
    }
    if route.body {
        return (path, Some(json.to_string()));
    }
    let query: Vec<String> = message
        .fields()
        .filter(|(field, _)| !variables(&route.template).any(|v| v == field.name()))
        .map(|(field, _)| match &json[field.json_name()] {
            Value::String(text) => format!("{}={text}", field.json_name()),
            other => format!("{}={other}", field.json_name()),
        })
        .collect();
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    (path, None)
}

#[tokio::test]
async fn every_rest_route_answers_like_grpc() {
    let daemon = start();
    let mut api = Api::connect(&daemon).await;
    let routes = http_routes();

    // The public HTTP API of DESIGN.md is all there.
    let bound: Vec<String> = routes
        .iter()
        .map(|r| format!("{} {}", r.method, r.template))
        .collect();
    for public in [
        "GET /api/health",
        "GET /api/scheduler/state",
        "POST /api/scheduler/pause",
        "POST /api/scheduler/resume",
        "GET /api/jobs",
        "GET /api/jobs/{job_id}",
        "POST /api/jobs/{job_id}/trigger",
        "GET /api/jobs/{job_id}/runs",
        "GET /api/runs/{run_id}",
        "GET /api/runs/{run_id}/tasks",
    ] {
        assert!(
            bound.iter().any(|b| b == public),
            "{public} missing from {bound:?}"
        );
    }

    // A finished run, so that run, task and log routes have something to show.
    let run = api
        .run_to_end("hello", r#"{"params": {"greeting": "bonjour"}}"#)
        .await;
    assert_eq!(
        run["status"],
        "RUN_STATUS_SUCCEEDED",
        "{run}\n{}",
        daemon.stderr()
    );
    let ids = BTreeMap::from([
        ("job_id", "hello".to_string()),
        ("run_id", run["id"].as_str().expect("run id").to_string()),
        ("task_id", "greet".to_string()),
    ]);

    for route in &routes {
        let what = format!(
            "{} {} ({})",
            route.method,
            route.template,
            route.rpc.full_name()
        );
        let request = request_for(route, &ids);
        let (path, body) = rest_request(route, &request);
        let (status, mut rest) = api.rest(route.method.clone(), &path, body.as_deref()).await;

        // What legitimately differs between two calls.
        let mut volatile = vec!["uptime"];
        let triggers = matches!(route.rpc.name(), "TriggerJob" | "RerunRun");
        if triggers {
            // Two calls start two runs, one after the other (the job allows one at a
            // time), and the walk goes on once both have ended.
            volatile.extend([
                "id",
                "status",
                "createdAt",
                "startedAt",
                "endedAt",
                "duration",
            ]);
            api.wait_ended(rest["run"]["id"].as_str().expect("run id"))
                .await;
        }
        let grpc = api.grpc(&route.rpc, &request).await;
        if triggers {
            let grpc_run = grpc.as_ref().expect("gRPC trigger")["run"]["id"].clone();
            api.wait_ended(grpc_run.as_str().expect("run id")).await;
        }
        match grpc {
            Ok(mut grpc) => {
                assert_eq!(status, 200, "{what}: {rest}");
                strip(&mut rest, &volatile);
                strip(&mut grpc, &volatile);
                assert_eq!(rest, grpc, "{what}: REST (left) and gRPC (right) differ");
            }
            Err(error) => {
                assert_eq!(status, http_status(error.code()), "{what}: {rest}");
                assert_eq!(
                    rest,
                    json!({"code": error.code() as i32, "message": error.message(), "details": []}),
                    "{what}"
                );
            }
        }
    }

    // The list's views: BASIC by default, FULL (by name or number) what GetJob sends.
    let list = routes
        .iter()
        .find(|r| r.rpc.name() == "ListJobs")
        .expect("ListJobs route");
    let mut full = DynamicMessage::new(list.rpc.input());
    full.set_field_by_name("view", prost_reflect::Value::EnumNumber(2));
    let grpc_full = api.grpc(&list.rpc, &full).await.expect("gRPC full list");
    for query in ["view=JOB_VIEW_FULL", "view=2"] {
        let (status, rest) = api
            .rest(Method::GET, &format!("/api/jobs?{query}"), None)
            .await;
        assert_eq!(status, 200, "{query}: {rest}");
        assert_eq!(rest, grpc_full, "{query}");
    }
    let hello = &grpc_full["jobs"][0];
    assert_eq!(hello["id"], "hello");
    assert_eq!(hello["tasks"].as_array().map(Vec::len), Some(2), "{hello}");
    let (_, basic) = api.rest(Method::GET, "/api/jobs", None).await;
    assert_eq!(basic["jobs"][0]["tasks"], json!([]), "{basic}");
    assert_eq!(basic["jobs"][0]["taskCount"], 2, "{basic}");
    let (status, bad) = api
        .rest(Method::GET, "/api/jobs?view=JOB_VIEW_HUGE", None)
        .await;
    assert_eq!(status, 400, "{bad}");
}

#[tokio::test]
async fn trigger_with_params_and_read_the_run_back() {
    let daemon = start();
    let api = Api::connect(&daemon).await;

    let (status, reply) = api
        .rest(
            Method::POST,
            "/api/jobs/hello/trigger",
            Some(r#"{"params": {"greeting": "bonjour"}}"#),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let run = &reply["run"];
    assert_eq!(run["jobId"], "hello");
    assert_eq!(run["trigger"], "TRIGGER_REASON_MANUAL");
    assert_eq!(run["params"], json!({"greeting": "bonjour"}));
    let run_id = run["id"].as_str().expect("run id");

    let run = api.wait_ended(run_id).await;
    assert_eq!(
        run["status"],
        "RUN_STATUS_SUCCEEDED",
        "{run}\n{}",
        daemon.stderr()
    );
    assert_eq!(run["params"], json!({"greeting": "bonjour"}));
    assert!(
        run["createdAt"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{run}"
    );
    assert!(
        run["duration"].as_str().is_some_and(|d| d.ends_with('s')),
        "{run}"
    );

    let (status, tasks) = api
        .rest(Method::GET, &format!("/api/runs/{run_id}/tasks"), None)
        .await;
    assert_eq!(status, 200, "{tasks}");
    let statuses: Vec<(&str, &str)> = tasks["taskRuns"]
        .as_array()
        .expect("taskRuns")
        .iter()
        .map(|t| {
            (
                t["taskId"].as_str().unwrap_or(""),
                t["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("greet", "TASK_STATUS_SUCCEEDED"),
            ("done", "TASK_STATUS_SUCCEEDED")
        ]
    );

    let (status, logs) = api
        .rest(
            Method::GET,
            &format!("/api/runs/{run_id}/tasks/greet/logs"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{logs}");
    let lines: Vec<&str> = logs["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["line"].as_str())
        .collect();
    assert_eq!(lines, ["bonjour from petit"]);

    let (status, runs) = api
        .rest(Method::GET, "/api/jobs/hello/runs?pageSize=5", None)
        .await;
    assert_eq!(status, 200, "{runs}");
    assert_eq!(runs["runs"][0]["id"], run_id, "{runs}");
}

#[tokio::test]
async fn cancel_a_running_run() {
    let daemon = start();
    let api = Api::connect(&daemon).await;
    let (status, reply) = api.rest(Method::POST, "/api/jobs/slow/trigger", None).await;
    assert_eq!(status, 200, "{reply}");
    let run_id = reply["run"]["id"].as_str().expect("run id").to_string();
    eventually(RUN_TIMEOUT, "the slow run to start", || async {
        let (_, body) = api
            .rest(Method::GET, &format!("/api/runs/{run_id}"), None)
            .await;
        (body["run"]["status"] == "RUN_STATUS_RUNNING").then_some(())
    })
    .await;

    let (status, reply) = api
        .rest(
            Method::POST,
            &format!("/api/runs/{run_id}/cancel"),
            Some(""),
        )
        .await;
    assert_eq!(status, 200, "{reply}\n{}", daemon.stderr());
    assert_eq!(reply["run"]["status"], "RUN_STATUS_CANCELLED", "{reply}");

    // Cancelling it again is refused, as over gRPC.
    let (status, reply) = api
        .rest(
            Method::POST,
            &format!("/api/runs/{run_id}/cancel"),
            Some("{}"),
        )
        .await;
    assert_eq!(
        (status, &reply["code"]),
        (400, &json!(Code::FailedPrecondition as i32)),
        "{reply}"
    );
}

#[tokio::test]
async fn errors_are_grpc_gateway_json_and_never_500() {
    let daemon = start();
    let mut api = Api::connect(&daemon).await;

    // The same message as over gRPC.
    let grpc = api
        .jobs
        .get_job(GetJobRequest {
            job_id: "nope".to_string(),
        })
        .await
        .expect_err("unknown job");
    let (status, body) = api.rest(Method::GET, "/api/jobs/nope", None).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"code": 5, "message": grpc.message(), "details": []})
    );

    let too_big = format!(r#"{{"params": {{"k": "{}"}}}}"#, "x".repeat(1 << 20));
    // (method, path, body, HTTP status, gRPC code, a piece of the message)
    type Case<'a> = (Method, &'a str, Option<&'a str>, u16, i32, &'a str);
    let cases: &[Case] = &[
        (
            Method::POST,
            "/api/jobs/nope/trigger",
            Some("{}"),
            404,
            5,
            "nope",
        ),
        (Method::GET, "/api/runs/nope", None, 404, 5, "nope"),
        (
            Method::POST,
            "/api/jobs/hello/trigger",
            Some("{"),
            400,
            3,
            "invalid JSON body",
        ),
        (
            Method::POST,
            "/api/jobs/hello/trigger",
            Some("not json"),
            400,
            3,
            "invalid JSON body",
        ),
        (
            Method::POST,
            "/api/jobs/hello/trigger",
            Some(r#"{"force": "yes"}"#),
            400,
            3,
            "force",
        ),
        (
            Method::POST,
            "/api/jobs/hello/trigger",
            Some(r#"{"params": ["a"]}"#),
            400,
            3,
            "params",
        ),
        (
            Method::POST,
            "/api/jobs/hello/trigger",
            Some(r#"{"bogus": 1}"#),
            400,
            3,
            "bogus",
        ),
        (
            Method::POST,
            "/api/jobs/hello/trigger",
            Some("[]"),
            400,
            3,
            "invalid JSON body",
        ),
        (
            Method::GET,
            "/api/jobs?pageSize=lots",
            None,
            400,
            3,
            "pageSize",
        ),
        (
            Method::GET,
            "/api/jobs?pageSize=-1",
            None,
            400,
            3,
            "pageSize",
        ),
        (Method::GET, "/api/jobs?bogus=1", None, 400, 3, "bogus"),
        (Method::GET, "/api/jobs/%FF", None, 400, 3, "job_id"),
        (
            Method::GET,
            "/api/nope",
            None,
            404,
            5,
            "no route for GET /api/nope",
        ),
        (
            Method::GET,
            "/api/jobs/hello/nope",
            None,
            404,
            5,
            "no route",
        ),
        (Method::DELETE, "/api/jobs", None, 405, 12, "allowed: GET"),
        (
            Method::GET,
            "/api/jobs/hello/trigger",
            None,
            405,
            12,
            "allowed: POST",
        ),
        (
            Method::POST,
            "/api/jobs/hello/trigger",
            Some(&too_big),
            413,
            8,
            "larger than",
        ),
    ];
    for (method, path, body, want_status, want_code, want_message) in cases {
        let (status, reply) = api.rest(method.clone(), path, *body).await;
        let what = format!(
            "{method} {path} {}",
            body.map(|b| &b[..b.len().min(40)]).unwrap_or("")
        );
        assert_eq!(status, *want_status, "{what}: {reply}");
        assert_eq!(reply["code"], *want_code, "{what}: {reply}");
        assert_eq!(reply["details"], json!([]), "{what}: {reply}");
        let message = reply["message"].as_str().unwrap_or_default();
        assert!(message.contains(want_message), "{what}: {message}");
    }

    // The daemon is still whole.
    let (status, health) = api.rest(Method::GET, "/api/health", None).await;
    assert_eq!(
        (status, &health["status"]),
        (200, &json!("SERVING")),
        "{health}"
    );
}
