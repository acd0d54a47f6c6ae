//! The JSON of every REST reply, written from the prost message (`petit_proto::json`),
//! against what the shim wrote before: the reply decoded into a prost-reflect dynamic
//! message and serialized with defaults included. Byte for byte, for every routed RPC's
//! reply type, filled by reflection (every field set, each oneof member and enum value in
//! turn, unknown enum numbers, strings that need escaping, each sub-second precision).

use petit_proto::json::to_json;
use petit_proto::v1 as pb;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    SerializeOptions, Value,
};

use super::RouteTable;

/// The reply types of the routed RPCs, by full name: the new encoder of each.
type Encode = fn(&DynamicMessage) -> Result<Vec<u8>, String>;

macro_rules! replies {
    ($($name:literal => $ty:ty,)*) => {
        &[$(($name, |m: &DynamicMessage| {
            let typed: $ty = m.transcode_to().map_err(|e| e.to_string())?;
            to_json(&typed, 0).map_err(|e| e.to_string())
        }),)*]
    };
}

const REPLIES: &[(&str, Encode)] = replies! {
    "petit.v1.GetHealthResponse" => pb::GetHealthResponse,
    "petit.v1.GetSchedulerStateResponse" => pb::GetSchedulerStateResponse,
    "petit.v1.PauseSchedulerResponse" => pb::PauseSchedulerResponse,
    "petit.v1.ResumeSchedulerResponse" => pb::ResumeSchedulerResponse,
    "petit.v1.ListAuditRecordsResponse" => pb::ListAuditRecordsResponse,
    "petit.v1.ListNodesResponse" => pb::ListNodesResponse,
    "petit.v1.ListJobsResponse" => pb::ListJobsResponse,
    "petit.v1.GetJobResponse" => pb::GetJobResponse,
    "petit.v1.TriggerJobResponse" => pb::TriggerJobResponse,
    "petit.v1.ListJobRunsResponse" => pb::ListJobRunsResponse,
    "petit.v1.GetRunResponse" => pb::GetRunResponse,
    "petit.v1.ListTaskRunsResponse" => pb::ListTaskRunsResponse,
    "petit.v1.CancelRunResponse" => pb::CancelRunResponse,
    "petit.v1.GetTaskLogsResponse" => pb::GetTaskLogsResponse,
    "petit.v1.PauseJobResponse" => pb::PauseJobResponse,
    "petit.v1.ResumeJobResponse" => pb::ResumeJobResponse,
    "petit.v1.BackfillJobResponse" => pb::BackfillJobResponse,
    "petit.v1.ReloadJobsResponse" => pb::ReloadJobsResponse,
    "petit.v1.RerunRunResponse" => pb::RerunRunResponse,
    // Not a REST reply (a stream's), but it holds the contract's one oneof.
    "petit.v1.WatchEventsResponse" => pb::WatchEventsResponse,
};

/// What the shim wrote before.
fn before(message: &DynamicMessage) -> Result<Vec<u8>, String> {
    let options = SerializeOptions::new().skip_default_fields(false);
    let mut serializer = serde_json::Serializer::new(Vec::new());
    message
        .serialize_with_options(&mut serializer, &options)
        .map_err(|e| e.to_string())?;
    Ok(serializer.into_inner())
}

fn pool() -> DescriptorPool {
    DescriptorPool::decode(petit_proto::FILE_DESCRIPTOR_SET).expect("descriptor set")
}

fn encoder(name: &str) -> Encode {
    REPLIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, e)| *e)
        .unwrap_or_else(|| panic!("{name} is missing from REPLIES"))
}

/// Strings that exercise serde_json's escaping.
const STRINGS: &[&str] = &[
    "plain",
    "",
    "quote \" backslash \\ slash /",
    "tab\tnewline\nreturn\rbell\u{7}nul\u{0}esc\u{1b}del\u{7f}",
    "é ✓ 𝄞 \u{2028}\u{2029}",
];

const NANOS: &[i32] = &[0, 500_000_000, 123_456_000, 123_456_789, 1];

/// A value of `field` (one element of it, when repeated) for case `seed`.
fn scalar(field: &FieldDescriptor, kind: &Kind, seed: usize, depth: usize) -> Option<Value> {
    Some(match kind {
        Kind::Double => Value::F64([0.0, 1.5, -2.25e300, 1e-7][seed % 4]),
        Kind::Float => Value::F32([0.0, 1.5, -2.25e30, 1e-7][seed % 4]),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32([0, -1, 7, i32::MIN, i32::MAX][seed % 5])
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64([0, -1, 7, i64::MIN, i64::MAX][seed % 5])
        }
        Kind::Uint32 | Kind::Fixed32 => Value::U32([0, 1, 300, u32::MAX][seed % 4]),
        Kind::Uint64 | Kind::Fixed64 => Value::U64([0, 1, 300, u64::MAX][seed % 4]),
        Kind::Bool => Value::Bool(seed % 2 == 0),
        Kind::String => Value::String(format!(
            "{}{}",
            STRINGS[seed % STRINGS.len()],
            if seed % 3 == 0 { field.name() } else { "" }
        )),
        Kind::Bytes => Value::Bytes(bytes::Bytes::from(vec![0xfb; seed % 5])),
        Kind::Enum(desc) => {
            let values: Vec<i32> = desc.values().map(|v| v.number()).collect();
            // Now and then a number the enum does not name (a newer peer's value).
            if seed % 5 == 4 {
                Value::EnumNumber(99)
            } else {
                Value::EnumNumber(values[seed % values.len()])
            }
        }
        Kind::Message(desc) => match desc.full_name() {
            "google.protobuf.Timestamp" => {
                let mut ts = DynamicMessage::new(desc.clone());
                let seconds = [1_700_000_000, 0, -1, 253_402_300_799, -62_135_596_800][seed % 5];
                ts.set_field_by_name("seconds", Value::I64(seconds));
                ts.set_field_by_name("nanos", Value::I32(NANOS[seed % NANOS.len()]));
                Value::Message(ts)
            }
            "google.protobuf.Duration" => {
                let mut d = DynamicMessage::new(desc.clone());
                let sign = if seed % 3 == 1 { -1 } else { 1 };
                d.set_field_by_name("seconds", Value::I64(sign * [0, 1, 86_400][seed % 3]));
                d.set_field_by_name("nanos", Value::I32(sign as i32 * NANOS[seed % NANOS.len()]));
                Value::Message(d)
            }
            _ if depth >= 4 => return None,
            _ => Value::Message(filled(desc, seed, depth + 1)),
        },
    })
}

/// `desc` with every field set for case `seed`: repeated fields get two values, maps
/// one entry (their order is the one difference, tested apart), oneofs their
/// `seed`-th member.
fn filled(desc: &MessageDescriptor, seed: usize, depth: usize) -> DynamicMessage {
    let mut message = DynamicMessage::new(desc.clone());
    for (i, field) in desc.fields().enumerate() {
        let seed = seed + i;
        if let Some(oneof) = field.containing_oneof().filter(|o| !o.is_synthetic()) {
            let members: Vec<_> = oneof.fields().collect();
            if members[seed % members.len()].number() != field.number() {
                continue;
            }
        }
        let kind = field.kind();
        if field.is_map() {
            let Kind::Message(entry) = &kind else {
                unreachable!("a map is a message of entries")
            };
            let value_field = entry.map_entry_value_field();
            let Some(value) = scalar(&value_field, &value_field.kind(), seed, depth) else {
                continue;
            };
            let key = MapKey::String(format!("key {}", STRINGS[seed % STRINGS.len()]));
            message.set_field(&field, Value::Map([(key, value)].into_iter().collect()));
        } else if field.is_list() {
            let items: Vec<Value> = (0..2)
                .filter_map(|n| scalar(&field, &kind, seed + n, depth))
                .collect();
            message.set_field(&field, Value::List(items));
        } else if let Some(value) = scalar(&field, &kind, seed, depth) {
            // Every fourth singular field stays at its default: presence matters.
            if seed % 4 != 3 {
                message.set_field(&field, value);
            }
        }
    }
    message
}

#[test]
fn every_routed_reply_is_written_as_before() {
    let pool = pool();
    let table = RouteTable::from_pool(&pool).expect("route table");
    let mut outputs: Vec<String> = table
        .routes()
        .iter()
        .map(|r| r.rpc.output().full_name().to_string())
        .collect();
    outputs.sort();
    outputs.dedup();
    outputs.push("petit.v1.WatchEventsResponse".to_string());
    for name in &outputs {
        let desc = pool.get_message_by_name(name).expect("reply type");
        let encode = encoder(name);
        let mut cases = vec![DynamicMessage::new(desc.clone())];
        cases.extend((0..24).map(|seed| filled(&desc, seed, 0)));
        for (n, message) in cases.iter().enumerate() {
            let utf8 = |bytes: Vec<u8>| String::from_utf8(bytes).expect("UTF-8");
            let want = before(message).map(utf8);
            let got = encode(message).map(utf8);
            match (&want, &got) {
                (Ok(want), Ok(got)) => assert_eq!(got, want, "{name} case {n}"),
                (Err(want), Err(got)) => assert_eq!(got, want, "{name} case {n}"),
                _ => panic!("{name} case {n}: before {want:?}, now {got:?}"),
            }
        }
    }
}

#[test]
fn out_of_range_values_fail_as_before() {
    let cases = [
        pb::Run {
            created_at: Some(prost_types::Timestamp {
                seconds: 253_402_300_800,
                nanos: 0,
            }),
            ..pb::Run::default()
        },
        pb::Run {
            created_at: Some(prost_types::Timestamp {
                seconds: -62_135_596_801,
                nanos: 0,
            }),
            ..pb::Run::default()
        },
        pb::Run {
            duration: Some(prost_types::Duration {
                seconds: 315_576_000_001,
                nanos: 0,
            }),
            ..pb::Run::default()
        },
        pb::Run {
            duration: Some(prost_types::Duration {
                seconds: 0,
                nanos: -1_000_000_000,
            }),
            ..pb::Run::default()
        },
    ];
    let desc = pool()
        .get_message_by_name("petit.v1.Run")
        .expect("petit.v1.Run");
    for run in cases {
        let dynamic =
            DynamicMessage::decode(desc.clone(), prost::Message::encode_to_vec(&run).as_slice())
                .expect("decode");
        let want = before(&dynamic).expect_err("out of range");
        let got = to_json(&run, 0).expect_err("out of range").to_string();
        assert_eq!(got, want, "{run:?}");
    }
}

#[test]
fn map_entries_come_sorted_by_key() {
    let job = pb::Job {
        config: [("b", "2"), ("a", "1"), ("é", "3"), ("B", "0")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..pb::Job::default()
    };
    let text = String::from_utf8(to_json(&job, 0).expect("json")).expect("utf-8");
    assert!(
        text.contains(r#""config":{"B":"0","a":"1","b":"2","é":"3"}"#),
        "{text}"
    );
    // The same content as before, in the only order that does not depend on a hash.
    let desc = pool()
        .get_message_by_name("petit.v1.Job")
        .expect("petit.v1.Job");
    let dynamic = DynamicMessage::decode(desc, prost::Message::encode_to_vec(&job).as_slice())
        .expect("decode");
    let parse = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).expect("json");
    assert_eq!(
        parse(text.as_bytes()),
        parse(&before(&dynamic).expect("json"))
    );
}
