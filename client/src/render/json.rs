//! The proto3 JSON mapping of Petit messages (what grpcurl and the REST API print):
//! lowerCamelCase field names, enum values by name, 64-bit integers as strings, RFC 3339
//! timestamps, and unpopulated scalar fields included so scripts always find them.
//!
//! The generated types carry no reflection, so each message names its descriptor
//! through [`ProtoMessage`]; the descriptors come from `petit_proto::FILE_DESCRIPTOR_SET`.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, SerializeOptions};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

/// Why a message could not be turned into JSON (a build whose descriptor set does not
/// match its generated code; not something a user can cause).
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("cannot read the embedded descriptor set: {0}")]
    Descriptors(String),
    #[error("message type '{0}' is not in the descriptor set")]
    UnknownMessage(&'static str),
    #[error("cannot re-read a '{name}' message: {source}")]
    Decode {
        name: &'static str,
        source: prost::DecodeError,
    },
    #[error("cannot write JSON: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// A generated message with its fully-qualified protobuf name.
pub trait ProtoMessage: prost::Message {
    const FULL_NAME: &'static str;
}

macro_rules! proto_messages {
    ($($name:ident),* $(,)?) => {
        $(
            impl ProtoMessage for petit_proto::v1::$name {
                const FULL_NAME: &'static str = concat!("petit.v1.", stringify!($name));
            }
        )*
        #[cfg(test)]
        const ALL_NAMES: &[&str] = &[$(concat!("petit.v1.", stringify!($name))),*];
    };
}

proto_messages!(
    // types.proto
    Schedule,
    RetryPolicy,
    TaskDefinition,
    JobDependency,
    Job,
    Run,
    TaskRun,
    LogLine,
    Event,
    // scheduler.proto
    GetHealthRequest,
    GetHealthResponse,
    GetSchedulerStateRequest,
    SchedulerState,
    GetSchedulerStateResponse,
    PauseSchedulerRequest,
    PauseSchedulerResponse,
    ResumeSchedulerRequest,
    ResumeSchedulerResponse,
    WatchEventsRequest,
    Snapshot,
    WatchEventsResponse,
    ListAuditRecordsRequest,
    AuditRecord,
    ListAuditRecordsResponse,
    // job.proto
    ListJobsRequest,
    ListJobsResponse,
    GetJobRequest,
    GetJobResponse,
    TriggerJobRequest,
    TriggerJobResponse,
    ListJobRunsRequest,
    ListJobRunsResponse,
    // run.proto
    GetRunRequest,
    GetRunResponse,
    NotificationAttempt,
    ListTaskRunsRequest,
    ListTaskRunsResponse,
    CancelRunRequest,
    CancelRunResponse,
    WatchRunRequest,
    WatchRunResponse,
    GetTaskLogsRequest,
    GetTaskLogsResponse,
    FollowTaskLogsRequest,
    FollowTaskLogsResponse,
);

/// Decoded once, on the first JSON output: commands printing tables never pay for it.
fn pool() -> Result<&'static DescriptorPool, JsonError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(petit_proto::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| JsonError::Descriptors(e.clone()))
}

/// `message` in the proto3 JSON mapping, as a value (object keys sorted).
pub fn to_json<M: ProtoMessage>(message: &M) -> Result<serde_json::Value, JsonError> {
    Ok(reflect(message)?.serialize_with_options(serde_json::value::Serializer, &options())?)
}

/// `message` in the proto3 JSON mapping as text: pretty-printed over several lines, or
/// compact on one (for NDJSON). The same message always gives the same text: fields
/// come in `.proto` order and map keys sorted (protobuf maps have no order of their
/// own).
pub fn to_json_string<M: ProtoMessage>(message: &M, pretty: bool) -> Result<String, JsonError> {
    let value = to_json(message)?;
    let desc = message_descriptor::<M>()?;
    let ordered = Ordered {
        value: &value,
        shape: Shape::Message(&desc),
    };
    Ok(if pretty {
        serde_json::to_string_pretty(&ordered)?
    } else {
        serde_json::to_string(&ordered)?
    })
}

/// What a JSON value stands for, so that its keys can be put in order.
#[derive(Clone, Copy)]
enum Shape<'a> {
    /// An object whose keys are the message's fields.
    Message(&'a MessageDescriptor),
    /// An object whose keys are map keys; the values have the inner shape.
    Map(&'a Shape<'a>),
    /// Anything else: scalars, and well-known types written as strings.
    Plain,
}

fn shape_of(kind: Option<&Kind>) -> Shape<'_> {
    match kind.and_then(Kind::as_message) {
        Some(message) => Shape::Message(message),
        None => Shape::Plain,
    }
}

struct Ordered<'a> {
    value: &'a serde_json::Value,
    shape: Shape<'a>,
}

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde_json::Value;
        match (self.value, self.shape) {
            (Value::Array(items), shape) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for value in items {
                    seq.serialize_element(&Ordered { value, shape })?;
                }
                seq.end()
            }
            (Value::Object(object), Shape::Message(desc)) => {
                let mut map = serializer.serialize_map(Some(object.len()))?;
                for field in desc.fields() {
                    let Some(value) = object.get(field.json_name()) else {
                        continue;
                    };
                    let kind = field.kind();
                    // A map field is a message of entries; its values' kind decides.
                    let value_kind = kind
                        .as_message()
                        .filter(|_| field.is_map())
                        .map(|entry| entry.map_entry_value_field().kind());
                    let inner = shape_of(value_kind.as_ref());
                    let shape = if field.is_map() {
                        Shape::Map(&inner)
                    } else {
                        shape_of(Some(&kind))
                    };
                    map.serialize_entry(field.json_name(), &Ordered { value, shape })?;
                }
                map.end()
            }
            (Value::Object(object), Shape::Map(inner)) => {
                // Sorted here rather than trusting `serde_json::Map`, whose order
                // depends on a cargo feature (`preserve_order`).
                let mut entries: Vec<_> = object.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    let shape = *inner;
                    map.serialize_entry(key, &Ordered { value, shape })?;
                }
                map.end()
            }
            (value, _) => value.serialize(serializer),
        }
    }
}

fn options() -> SerializeOptions {
    SerializeOptions::new()
        .skip_default_fields(false)
        .stringify_64_bit_integers(true)
        .use_enum_numbers(false)
        .use_proto_field_name(false)
}

fn message_descriptor<M: ProtoMessage>() -> Result<MessageDescriptor, JsonError> {
    pool()?
        .get_message_by_name(M::FULL_NAME)
        .ok_or(JsonError::UnknownMessage(M::FULL_NAME))
}

/// The message as a `DynamicMessage`, by way of its encoding.
fn reflect<M: ProtoMessage>(message: &M) -> Result<DynamicMessage, JsonError> {
    let desc = message_descriptor::<M>()?;
    DynamicMessage::decode(desc, message.encode_to_vec().as_slice()).map_err(|source| {
        JsonError::Decode {
            name: M::FULL_NAME,
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use petit_proto::v1::{
        GetJobResponse, Job, LogLine, LogStream, Run, RunStatus, TaskRun, TriggerReason,
    };
    use serde_json::json;

    #[test]
    fn every_listed_message_is_in_the_descriptor_set() {
        let pool = pool().expect("pool");
        for name in ALL_NAMES {
            assert!(pool.get_message_by_name(name).is_some(), "{name}");
        }
        // And every message of the package is listed, so none prints as an error.
        let listed: std::collections::BTreeSet<_> = ALL_NAMES.iter().copied().collect();
        for message in pool.all_messages() {
            let name = message.full_name();
            if name.starts_with("petit.v1.") && message.parent_message().is_none() {
                assert!(listed.contains(name), "{name} missing from proto_messages!");
            }
        }
    }

    #[test]
    fn proto3_json_mapping() {
        let run = Run {
            id: "r1".into(),
            job_id: "hello".into(),
            status: RunStatus::Succeeded as i32,
            trigger: TriggerReason::Manual as i32,
            created_at: Some(prost_types::Timestamp {
                seconds: 1_764_150_903,
                nanos: 0,
            }),
            duration: Some(prost_types::Duration {
                seconds: 1,
                nanos: 500_000_000,
            }),
            ..Default::default()
        };
        let cases: Vec<(serde_json::Value, serde_json::Value)> = vec![
            (
                to_json(&run).expect("json"),
                json!({
                    "id": "r1",
                    "jobId": "hello",
                    "status": "RUN_STATUS_SUCCEEDED",
                    "trigger": "TRIGGER_REASON_MANUAL",
                    "params": {},
                    "createdAt": "2025-11-26T09:55:03Z",
                    "duration": "1.500s",
                    "error": "",
                    "triggeredBy": "",
                }),
            ),
            (
                to_json(&LogLine {
                    seq: 7,
                    stream: LogStream::Stderr as i32,
                    ..Default::default()
                })
                .expect("json")["seq"]
                    .clone(),
                json!("7"),
            ),
            (
                // An unset optional field stays absent; a set one is a number.
                to_json(&TaskRun {
                    exit_code: Some(2),
                    ..Default::default()
                })
                .expect("json")["exitCode"]
                    .clone(),
                json!(2),
            ),
            (
                to_json(&TaskRun::default()).expect("json")["exitCode"].clone(),
                serde_json::Value::Null,
            ),
            (
                to_json(&GetJobResponse {
                    job: Some(Job {
                        id: "j".into(),
                        ..Default::default()
                    }),
                })
                .expect("json")["job"]["enabled"]
                    .clone(),
                json!(false),
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn map_keys_come_sorted() {
        let run = Run {
            params: (0..20)
                .map(|i| (format!("k{i:02}"), i.to_string()))
                .collect(),
            ..Default::default()
        };
        let text = to_json_string(&run, false).expect("json");
        let keys: Vec<usize> = (0..20)
            .map(|i| text.find(&format!("\"k{i:02}\"")).expect("key"))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{text}");
        // Maps of messages, nested in lists, keep their inner messages in order too.
        let snapshot = petit_proto::v1::WatchEventsResponse {
            item: Some(petit_proto::v1::watch_events_response::Item::Snapshot(
                petit_proto::v1::Snapshot {
                    jobs: vec![Job {
                        id: "j".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )),
        };
        let text = to_json_string(&snapshot, false).expect("json");
        assert!(
            text.starts_with(r#"{"snapshot":{"jobs":[{"id":"j","name":"""#),
            "{text}"
        );
    }

    #[test]
    fn strings_keep_proto_field_order() {
        let run = Run {
            id: "r1".into(),
            job_id: "hello".into(),
            ..Default::default()
        };
        let compact = to_json_string(&run, false).expect("json");
        assert_eq!(
            compact,
            r#"{"id":"r1","jobId":"hello","status":"RUN_STATUS_UNSPECIFIED","trigger":"TRIGGER_REASON_UNSPECIFIED","params":{},"error":"","triggeredBy":""}"#
        );
        let pretty = to_json_string(&run, true).expect("json");
        assert!(
            pretty.starts_with("{\n  \"id\": \"r1\",\n  \"jobId\""),
            "{pretty}"
        );
        let reparsed: serde_json::Value = serde_json::from_str(&pretty).expect("valid");
        assert_eq!(reparsed, to_json(&run).expect("json"));
    }
}
