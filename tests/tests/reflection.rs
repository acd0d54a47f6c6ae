//! Server reflection as grpcurl uses it, over `grpc.reflection.v1alpha` (grpcurl up to
//! 1.8) and `grpc.reflection.v1`: list the services, fetch the file that defines
//! `petit.v1.JobService` and its imports, and call `ListJobs` knowing nothing but what
//! reflection said.

use std::collections::{BTreeSet, VecDeque};

use petit_tests::{jobs_dir, raw, Daemon, HELLO_JOB};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Value};
use tonic::transport::Channel;

/// What the tests ask a reflection service, whatever its version.
enum Question {
    ListServices,
    FileContainingSymbol(String),
    FileByFilename(String),
}

/// What it answers.
#[derive(Debug)]
enum Answer {
    Services(Vec<String>),
    Files(Vec<Vec<u8>>),
    Error(String),
}

/// Defines `$name(channel, question) -> Answer` over one version of the reflection
/// protocol: the two versions have the same messages in different packages.
macro_rules! reflection_client {
    ($name:ident, $($pb:ident)::+) => {
        async fn $name(channel: &Channel, question: Question) -> Answer {
            use $($pb)::+ as pb;
            use pb::server_reflection_request::MessageRequest;
            use pb::server_reflection_response::MessageResponse;

            let request = pb::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(match question {
                    Question::ListServices => MessageRequest::ListServices(String::new()),
                    Question::FileContainingSymbol(s) => MessageRequest::FileContainingSymbol(s),
                    Question::FileByFilename(f) => MessageRequest::FileByFilename(f),
                }),
            };
            let mut responses = pb::server_reflection_client::ServerReflectionClient::new(
                channel.clone(),
            )
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("server_reflection_info")
            .into_inner();
            // Errors come as the stream's status, not as an ErrorResponse.
            let response = match responses.message().await {
                Ok(Some(response)) => response.message_response.expect("a reflection answer"),
                Ok(None) => return Answer::Error("the stream ended without an answer".into()),
                Err(status) => return Answer::Error(status.message().to_string()),
            };
            match response {
                MessageResponse::ListServicesResponse(list) => {
                    Answer::Services(list.service.into_iter().map(|s| s.name).collect())
                }
                MessageResponse::FileDescriptorResponse(files) => {
                    Answer::Files(files.file_descriptor_proto)
                }
                MessageResponse::ErrorResponse(e) => Answer::Error(e.error_message),
                other => Answer::Error(format!("unexpected answer {other:?}")),
            }
        }
    };
}

reflection_client!(ask_v1alpha, tonic_reflection::pb::v1alpha);
reflection_client!(ask_v1, tonic_reflection::pb::v1);

async fn list_services<F, Fut>(ask: F) -> BTreeSet<String>
where
    F: Fn(Question) -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    match ask(Question::ListServices).await {
        Answer::Services(names) => names.into_iter().collect(),
        other => panic!("list services: {other:?}"),
    }
}

/// The files defining `symbols` and every file they import, fetched one by one as
/// grpcurl does, in a descriptor pool.
async fn pool_for<F, Fut>(ask: F, symbols: &[&str]) -> DescriptorPool
where
    F: Fn(Question) -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let mut files = Vec::new();
    let mut fetched = BTreeSet::new();
    let mut queue: VecDeque<Question> = symbols
        .iter()
        .map(|s| Question::FileContainingSymbol(s.to_string()))
        .collect();
    while let Some(question) = queue.pop_front() {
        let encoded = match ask(question).await {
            Answer::Files(encoded) => encoded,
            other => panic!("fetching descriptors: {other:?}"),
        };
        for bytes in encoded {
            let file = prost_types::FileDescriptorProto::decode(bytes.as_slice())
                .expect("a FileDescriptorProto");
            if !fetched.insert(file.name().to_string()) {
                continue;
            }
            for import in &file.dependency {
                if !fetched.contains(import) {
                    queue.push_back(Question::FileByFilename(import.clone()));
                }
            }
            files.push(file);
        }
    }
    let mut pool = DescriptorPool::new();
    pool.add_file_descriptor_protos(files)
        .expect("the fetched files form a whole pool");
    pool
}

async fn check_reflection<F, Fut>(daemon: &Daemon, ask: F)
where
    F: Fn(Question) -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let services = list_services(&ask).await;
    for want in [
        "petit.v1.SchedulerService",
        "petit.v1.JobService",
        "petit.v1.RunService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(services.contains(want), "{want} not listed: {services:?}");
    }

    let pool = pool_for(&ask, petit_proto::SERVICES).await;
    // Every method of every Petit service resolves, with its message types.
    let mut methods = 0;
    for name in petit_proto::SERVICES {
        let service = pool
            .get_service_by_name(name)
            .unwrap_or_else(|| panic!("{name} is not in the fetched files"));
        for method in service.methods() {
            assert!(!method.input().full_name().is_empty());
            assert!(!method.output().full_name().is_empty());
            methods += 1;
        }
    }
    assert!(methods >= 15, "only {methods} methods");

    // Call ListJobs with a request built from the descriptors alone.
    let service = pool
        .get_service_by_name("petit.v1.JobService")
        .expect("JobService");
    let method = service
        .methods()
        .find(|m| m.name() == "ListJobs")
        .expect("ListJobs");
    let mut request = DynamicMessage::new(method.input());
    request
        .try_set_field_by_name("page_size", Value::U32(10))
        .expect("page_size");
    let path = format!("/{}/{}", service.full_name(), method.name());
    let response = raw::unary(&daemon.channel().await, &path, request.encode_to_vec())
        .await
        .expect("ListJobs, called dynamically");
    let response =
        DynamicMessage::decode(method.output(), response.as_slice()).expect("a ListJobsResponse");
    let jobs = response.get_field_by_name("jobs").expect("jobs field");
    let jobs = jobs.as_list().expect("a list");
    assert_eq!(jobs.len(), 1);
    let id = jobs[0]
        .as_message()
        .and_then(|job| job.get_field_by_name("id"))
        .and_then(|id| id.as_str().map(String::from));
    assert_eq!(id.as_deref(), Some("hello"));
}

#[tokio::test]
async fn reflection_v1alpha_works_as_grpcurl_uses_it() {
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    check_reflection(&daemon, |q| ask_v1alpha(&channel, q)).await;
}

#[tokio::test]
async fn reflection_v1_works_too() {
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    check_reflection(&daemon, |q| ask_v1(&channel, q)).await;
}

#[tokio::test]
async fn unknown_symbols_are_reported() {
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    let answer = ask_v1alpha(
        &channel,
        Question::FileContainingSymbol("petit.v1.NoSuchService".into()),
    )
    .await;
    assert!(
        matches!(&answer, Answer::Error(m) if m.contains("petit.v1.NoSuchService")),
        "{answer:?}"
    );
}

/// The descriptor set compiled into petit-proto lists every service; reflection and the
/// REST shim serve it.
#[test]
fn compiled_descriptor_set_lists_every_service() {
    let pool = DescriptorPool::decode(petit_proto::FILE_DESCRIPTOR_SET).expect("decodes");
    let names: BTreeSet<String> = pool.services().map(|s| s.full_name().to_string()).collect();
    let want: BTreeSet<String> = petit_proto::SERVICES
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, want);
}
