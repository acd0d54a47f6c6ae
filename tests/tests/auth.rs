//! Authentication end to end on the real petitd: tokens made with the real
//! `petitd token` CLI, each role allowed and refused over gRPC and REST, missing and
//! wrong tokens, revocation and new tokens without a restart, the audit record and a
//! run's "triggered by", and the refusal to serve a network address without tokens.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use petit_proto::v1::job_service_client::JobServiceClient;
use petit_proto::v1::run_service_client::RunServiceClient;
use petit_proto::v1::scheduler_service_client::SchedulerServiceClient;
use petit_proto::v1::*;
use petit_tests::{bin, eventually, jobs_dir, run_to_exit, Daemon, HELLO_JOB, SLOW_JOB};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request};

const CLI_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `petitd token ARGS --tokens FILE`; its output.
fn token_cli(file: &Path, args: &[&str]) -> std::process::Output {
    run_to_exit(
        Command::new(bin("petitd"))
            .arg("token")
            .args(args)
            .arg("--tokens")
            .arg(file)
            .env_remove("PETIT_TOKENS")
            .env_remove("PETIT_CONFIG"),
        CLI_TIMEOUT,
    )
}

/// Creates a token with the real CLI and returns it.
fn create(file: &Path, name: &str, role: &str) -> String {
    let out = token_cli(file, &["create", name, "--role", role]);
    assert!(
        out.status.success(),
        "token create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("petit_") && token.len() >= 32, "{token}");
    token
}

/// A request carrying `token` (none when `None`).
fn with<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    request
}

struct Setup {
    daemon: Daemon,
    file: PathBuf,
    viewer: String,
    operator: String,
    admin: String,
    _jobs: tempfile::TempDir,
    _keys: tempfile::TempDir,
}

fn setup() -> Setup {
    let keys = tempfile::tempdir().unwrap();
    let file = keys.path().join("tokens.yaml");
    let viewer = create(&file, "dash", "viewer");
    let operator = create(&file, "ops", "operator");
    let admin = create(&file, "root", "admin");
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB), ("slow.yaml", SLOW_JOB)]);
    let daemon = Daemon::start_with(jobs.path(), &["--tokens", file.to_str().unwrap()]);
    Setup {
        daemon,
        file,
        viewer,
        operator,
        admin,
        _jobs: jobs,
        _keys: keys,
    }
}

async fn list_jobs(
    channel: &Channel,
    token: Option<&str>,
) -> Result<ListJobsResponse, tonic::Status> {
    JobServiceClient::new(channel.clone())
        .list_jobs(with(ListJobsRequest::default(), token))
        .await
        .map(|r| r.into_inner())
}

async fn trigger(channel: &Channel, token: Option<&str>, job: &str) -> Result<Run, tonic::Status> {
    JobServiceClient::new(channel.clone())
        .trigger_job(with(
            TriggerJobRequest {
                job_id: job.into(),
                ..Default::default()
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().run.unwrap())
}

#[test]
fn the_tokens_file_is_private_and_holds_no_token() {
    let keys = tempfile::tempdir().unwrap();
    let file = keys.path().join("tokens.yaml");
    let token = create(&file, "ci", "operator");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "tokens file mode");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&token));
    assert!(text.contains("name: \"ci\"") && text.contains("role: operator"));

    let list = token_cli(&file, &["list"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success());
    assert!(
        listed.contains("ci") && listed.contains("operator"),
        "{listed}"
    );
    assert!(!listed.contains(&token));

    let dup = token_cli(&file, &["create", "ci", "--role", "viewer"]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let bad_role = token_cli(&file, &["create", "x", "--role", "root"]);
    assert!(!bad_role.status.success());
    let missing = token_cli(&file, &["revoke", "nobody"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no token named 'nobody'"));
}

#[tokio::test]
async fn grpc_calls_need_a_token_with_the_right_role() {
    let s = setup();
    let channel = s.daemon.channel().await;

    // Health is open.
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health without a token");
    assert_eq!(health.into_inner().status, 1);
    SchedulerServiceClient::new(channel.clone())
        .get_health(GetHealthRequest {})
        .await
        .expect("GetHealth without a token");

    // No token, a wrong one.
    let missing = list_jobs(&channel, None).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(
        missing.message().contains("PETIT_TOKEN"),
        "{}",
        missing.message()
    );
    let wrong = list_jobs(&channel, Some("petit_0000")).await.unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let not_bearer = JobServiceClient::new(channel.clone())
        .list_jobs({
            let mut r = Request::new(ListJobsRequest::default());
            r.metadata_mut().insert(
                "authorization",
                format!("Basic {}", s.viewer).parse().unwrap(),
            );
            r
        })
        .await
        .unwrap_err();
    assert_eq!(not_bearer.code(), Code::Unauthenticated);

    // A viewer reads but may not act.
    assert_eq!(
        list_jobs(&channel, Some(&s.viewer))
            .await
            .unwrap()
            .jobs
            .len(),
        2
    );
    let denied = trigger(&channel, Some(&s.viewer), "hello")
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied.message().contains("operator"),
        "{}",
        denied.message()
    );
    let pause = SchedulerServiceClient::new(channel.clone())
        .pause_scheduler(with(PauseSchedulerRequest {}, Some(&s.viewer)))
        .await
        .unwrap_err();
    assert_eq!(pause.code(), Code::PermissionDenied);

    // An operator acts, and the run says who started it.
    let run = trigger(&channel, Some(&s.operator), "hello").await.unwrap();
    assert_eq!(run.triggered_by, "ops");
    let read = RunServiceClient::new(channel.clone())
        .get_run(with(
            GetRunRequest {
                run_id: run.id.clone(),
            },
            Some(&s.viewer),
        ))
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(read.triggered_by, "ops");

    // The audit record is for admins.
    let audit = |token: String| {
        let channel = channel.clone();
        async move {
            SchedulerServiceClient::new(channel)
                .list_audit_records(with(ListAuditRecordsRequest::default(), Some(&token)))
                .await
        }
    };
    assert_eq!(
        audit(s.operator.clone()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let records = audit(s.admin.clone()).await.unwrap().into_inner().records;
    let first = records.last().expect("the trigger is recorded");
    assert_eq!(
        (
            first.actor.as_str(),
            first.call.as_str(),
            first.target.as_str(),
            first.outcome.as_str()
        ),
        ("ops", "TriggerJob", "hello", "OK")
    );
    assert_eq!(first.message, format!("run {}", run.id));

    // The scheduler state says tokens are required.
    let state = SchedulerServiceClient::new(channel.clone())
        .get_scheduler_state(with(GetSchedulerStateRequest {}, Some(&s.viewer)))
        .await
        .unwrap()
        .into_inner()
        .state
        .unwrap();
    assert!(state.tokens_required);
    assert!(state.warnings.is_empty(), "{:?}", state.warnings);
    // Nothing logged a token.
    let log = s.daemon.stderr();
    for token in [&s.viewer, &s.operator, &s.admin] {
        assert!(!log.contains(token.as_str()), "a token in the log:\n{log}");
    }
}

#[tokio::test]
async fn cancels_and_pauses_are_audited_with_their_outcome() {
    let s = setup();
    let channel = s.daemon.channel().await;
    let slow = trigger(&channel, Some(&s.operator), "slow").await.unwrap();
    let runs = RunServiceClient::new(channel.clone());
    runs.clone()
        .cancel_run(with(
            CancelRunRequest {
                run_id: slow.id.clone(),
            },
            Some(&s.admin),
        ))
        .await
        .expect("cancel");
    let missing = runs
        .clone()
        .cancel_run(with(
            CancelRunRequest {
                run_id: "no-such-run".into(),
            },
            Some(&s.operator),
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let scheduler = SchedulerServiceClient::new(channel.clone());
    scheduler
        .clone()
        .pause_scheduler(with(PauseSchedulerRequest {}, Some(&s.operator)))
        .await
        .unwrap();
    scheduler
        .clone()
        .resume_scheduler(with(ResumeSchedulerRequest {}, Some(&s.operator)))
        .await
        .unwrap();
    let records = scheduler
        .clone()
        .list_audit_records(with(ListAuditRecordsRequest::default(), Some(&s.admin)))
        .await
        .unwrap()
        .into_inner()
        .records;
    let seen: Vec<(&str, &str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r.actor.as_str(),
                r.call.as_str(),
                r.target.as_str(),
                r.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("ops", "ResumeScheduler", "", "OK"),
            ("ops", "PauseScheduler", "", "OK"),
            ("ops", "CancelRun", "no-such-run", "NOT_FOUND"),
            ("root", "CancelRun", slow.id.as_str(), "OK"),
            ("ops", "TriggerJob", "slow", "OK"),
        ]
    );
    assert!(records.iter().all(|r| r.time.is_some()));
    // Paged.
    let page = scheduler
        .clone()
        .list_audit_records(with(
            ListAuditRecordsRequest {
                page_size: 2,
                page_token: String::new(),
            },
            Some(&s.admin),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.records.len(), 2);
    assert!(!page.next_page_token.is_empty());
}

#[tokio::test]
async fn reflection_needs_a_token() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let s = setup();
    let channel = s.daemon.channel().await;
    let ask = |token: Option<String>| {
        let channel = channel.clone();
        async move {
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut client = ServerReflectionClient::new(channel);
            let outbound = tokio_stream::iter(vec![request]);
            let mut call = Request::new(outbound);
            if let Some(token) = token {
                call.metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
            }
            match client.server_reflection_info(call).await {
                Ok(response) => {
                    let mut stream = response.into_inner();
                    stream.message().await.map(|m| m.is_some())
                }
                Err(status) => Err(status),
            }
        }
    };
    assert_eq!(ask(None).await.unwrap_err().code(), Code::Unauthenticated);
    assert!(ask(Some(s.viewer.clone())).await.unwrap());
}

#[tokio::test]
async fn rest_answers_401_and_403() {
    let s = setup();
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", s.daemon.url());

    let health = http.get(url("/api/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "health is open");

    let missing = http.get(url("/api/jobs")).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(
        missing.headers().get("www-authenticate").unwrap(),
        "Bearer realm=\"petit\""
    );
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["code"], Code::Unauthenticated as i32);

    let wrong = http
        .get(url("/api/jobs"))
        .bearer_auth("petit_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let viewed = http
        .get(url("/api/jobs"))
        .bearer_auth(&s.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(viewed.status(), 200);

    let refused = http
        .post(url("/api/jobs/hello/trigger"))
        .bearer_auth(&s.viewer)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], Code::PermissionDenied as i32);

    let triggered = http
        .post(url("/api/jobs/hello/trigger"))
        .bearer_auth(&s.operator)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(triggered.status(), 200);
    let body: serde_json::Value = triggered.json().await.unwrap();
    assert_eq!(body["run"]["triggeredBy"], "ops");

    assert_eq!(
        http.get(url("/api/audit"))
            .bearer_auth(&s.viewer)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let audit: serde_json::Value = http
        .get(url("/api/audit"))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit["records"][0]["call"], "TriggerJob");
    assert_eq!(audit["records"][0]["actor"], "ops");
}

#[tokio::test]
async fn revocation_and_new_tokens_apply_without_a_restart() {
    let s = setup();
    let channel = s.daemon.channel().await;
    list_jobs(&channel, Some(&s.operator))
        .await
        .expect("before");

    let out = token_cli(&s.file, &["revoke", "ops"]);
    assert!(out.status.success());
    // The next call already sees the change (one stat per call, no watcher delay).
    let refused = list_jobs(&channel, Some(&s.operator)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(
        refused.message().contains("revoked"),
        "{}",
        refused.message()
    );
    list_jobs(&channel, Some(&s.viewer))
        .await
        .expect("others still work");

    let fresh = create(&s.file, "ops2", "operator");
    let run = trigger(&channel, Some(&fresh), "hello").await.unwrap();
    assert_eq!(run.triggered_by, "ops2");

    // A file broken by a bad edit refuses everyone (fail closed), and says why.
    let saved = std::fs::read(&s.file).unwrap();
    std::fs::write(&s.file, "tokens: [").unwrap();
    let closed = list_jobs(&channel, Some(&s.viewer)).await.unwrap_err();
    assert_eq!(closed.code(), Code::Unauthenticated);
    assert!(
        closed.message().contains("cannot check tokens"),
        "{}",
        closed.message()
    );
    std::fs::write(&s.file, saved).unwrap();
    list_jobs(&channel, Some(&s.viewer)).await.expect("fixed");
    assert!(s.daemon.stderr().contains("tokens file unusable"));
}

#[test]
fn a_network_address_needs_tokens() {
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let data = tempfile::tempdir().unwrap();
    let out = run_to_exit(
        Command::new(bin("petitd"))
            .args(["--jobs", jobs.path().to_str().unwrap()])
            .args(["--db", data.path().join("p.db").to_str().unwrap()])
            .args(["--listen", "0.0.0.0:0"])
            .env_remove("PETIT_TOKENS")
            .env_remove("PETIT_CONFIG"),
        CLI_TIMEOUT,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing to serve 0.0.0.0"), "{stderr}");
    assert!(stderr.contains("petitd token create"), "{stderr}");
    assert!(stderr.contains("--allow-unauthenticated"), "{stderr}");
    assert!(!data.path().join("p.db").exists(), "nothing was started");
}

#[tokio::test]
async fn allow_unauthenticated_warns_and_says_so_in_the_state() {
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("p.db");
    let daemon = Daemon::start_at(
        jobs.path(),
        data,
        db,
        "0.0.0.0:0".parse().unwrap(),
        &["--allow-unauthenticated"],
    );
    assert!(
        daemon
            .stderr()
            .contains("without authentication (--allow-unauthenticated)"),
        "{}",
        daemon.stderr()
    );
    let url = format!("http://127.0.0.1:{}", daemon.addr.port());
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let state = SchedulerServiceClient::new(channel)
        .get_scheduler_state(GetSchedulerStateRequest {})
        .await
        .unwrap()
        .into_inner()
        .state
        .unwrap();
    assert!(!state.tokens_required);
    assert_eq!(state.warnings.len(), 1, "{:?}", state.warnings);
    assert!(state.warnings[0].contains("anyone who reaches it"));
}

#[tokio::test]
async fn a_network_address_with_tokens_warns_about_clear_text() {
    let keys = tempfile::tempdir().unwrap();
    let file = keys.path().join("tokens.yaml");
    let viewer = create(&file, "dash", "viewer");
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("p.db");
    let daemon = Daemon::start_at(
        jobs.path(),
        data,
        db,
        "0.0.0.0:0".parse().unwrap(),
        &["--tokens", file.to_str().unwrap()],
    );
    let url = format!("http://127.0.0.1:{}", daemon.addr.port());
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let state = eventually(Duration::from_secs(5), "scheduler state", || {
        let channel = channel.clone();
        let viewer = viewer.clone();
        async move {
            SchedulerServiceClient::new(channel)
                .get_scheduler_state(with(GetSchedulerStateRequest {}, Some(&viewer)))
                .await
                .ok()
        }
    })
    .await
    .into_inner()
    .state
    .unwrap();
    assert!(state.tokens_required);
    assert!(
        state.warnings.iter().any(|w| w.contains("without TLS")),
        "{:?}",
        state.warnings
    );
}
