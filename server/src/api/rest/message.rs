//! Builds an RPC's request message from an HTTP request the way grpc-gateway does: the
//! JSON body (proto3 JSON mapping), or the query string, then the path variables, which
//! win over both.
//!
//! Stricter than grpc-gateway in one respect, on purpose: a query parameter that names no
//! field is refused (grpc-gateway drops it), so a typo such as `?page_sise=5` is a 400
//! rather than a silently ignored limit.

use std::collections::HashSet;

use percent_encoding::percent_decode_str;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    Value,
};

use super::error::RestError;

/// A dotted field path resolved against a message type (`page_size`, `filter.name`).
#[derive(Debug, Clone)]
pub struct FieldPath {
    /// As written in the template or the query string.
    pub name: String,
    /// The field at each step; all but the last are singular message fields.
    pub fields: Vec<FieldDescriptor>,
}

impl FieldPath {
    fn leaf(&self) -> &FieldDescriptor {
        // `resolve` never builds an empty path: `split` yields at least one piece.
        &self.fields[self.fields.len() - 1]
    }

    /// The path in proto field names, so `pageSize` and `page_size` compare equal.
    fn canonical(&self) -> String {
        let names: Vec<&str> = self.fields.iter().map(FieldDescriptor::name).collect();
        names.join(".")
    }
}

/// Resolves `name` (proto or JSON names, dot-separated) in `desc`.
fn resolve(desc: &MessageDescriptor, name: &str) -> Result<FieldPath, String> {
    let mut fields: Vec<FieldDescriptor> = Vec::new();
    let mut current = desc.clone();
    for piece in name.split('.') {
        if let Some(parent) = fields.last() {
            match parent.kind() {
                Kind::Message(inner) if !parent.is_list() && !parent.is_map() => current = inner,
                _ => return Err(format!("{} is not a message field", parent.name())),
            }
        }
        let field = current
            .get_field_by_name(piece)
            .or_else(|| current.get_field_by_json_name(piece))
            .ok_or_else(|| format!("{} has no field {piece:?}", current.full_name()))?;
        fields.push(field);
    }
    let path = FieldPath {
        name: name.to_string(),
        fields,
    };
    if path.leaf().is_map() {
        return Err(format!("map field {name} can't be set from the URL"));
    }
    Ok(path)
}

/// Resolves a template variable: it must bind one singular scalar (or enum) field.
pub fn resolve_path_field(desc: &MessageDescriptor, name: &str) -> Result<FieldPath, String> {
    let path = resolve(desc, name)?;
    let leaf = path.leaf();
    if leaf.is_list() || matches!(leaf.kind(), Kind::Message(_)) {
        return Err(format!("variable {name} must bind a singular scalar field"));
    }
    Ok(path)
}

/// Parses one URL-supplied value for `field` (one element, for a repeated field).
/// Scalars and enums are parsed here so that the error says what was expected; bytes and
/// well-known message types (Timestamp, Duration, wrappers…) take their proto3 JSON
/// string form.
fn parse_value(field: &FieldDescriptor, raw: &str) -> Result<Value, String> {
    fn number<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, String> {
        raw.trim()
            .parse()
            .map_err(|_| format!("{raw:?} is not a valid {what}"))
    }
    Ok(match field.kind() {
        Kind::Double => Value::F64(number(raw, "double")?),
        Kind::Float => Value::F32(number(raw, "float")?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(number(raw, "int32")?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(number(raw, "int64")?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(number(raw, "uint32")?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(number(raw, "uint64")?),
        Kind::Bool => Value::Bool(match raw {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(format!("{raw:?} is not a valid bool (true or false)")),
        }),
        Kind::String => Value::String(raw.to_string()),
        Kind::Enum(desc) => {
            let number = match desc.get_value_by_name(raw) {
                Some(value) => value.number(),
                None => raw.parse::<i32>().map_err(|_| {
                    let names: Vec<String> = desc.values().map(|v| v.name().to_string()).collect();
                    format!("{raw:?} is not one of {}", names.join(", "))
                })?,
            };
            Value::EnumNumber(number)
        }
        Kind::Bytes | Kind::Message(_) => parse_json_string(field, raw)?,
    })
}

/// Reads `raw` as the proto3 JSON string form of `field`, by deserializing
/// `{"field": raw}` as the field's parent message.
fn parse_json_string(field: &FieldDescriptor, raw: &str) -> Result<Value, String> {
    let value = serde_json::Value::String(raw.to_string());
    let value = if field.is_list() {
        serde_json::Value::Array(vec![value])
    } else {
        value
    };
    let mut object = serde_json::Map::new();
    object.insert(field.name().to_string(), value);
    let mut parent = DynamicMessage::deserialize_with_options(
        field.parent_message().clone(),
        serde_json::Value::Object(object),
        &DeserializeOptions::new(),
    )
    .map_err(|e| e.to_string())?;
    match parent.take_field(field) {
        Some(Value::List(mut items)) if field.is_list() => {
            items.pop().ok_or_else(|| format!("{raw:?} gave no value"))
        }
        Some(value) => Ok(value),
        None => Ok(Value::default_value_for_field(field)),
    }
}

/// Sets (or, for a repeated field, appends) `value` at `path` in `message`.
fn set(message: &mut DynamicMessage, path: &FieldPath, value: Value) -> Result<(), String> {
    let (leaf, parents) = path
        .fields
        .split_last()
        .ok_or_else(|| "empty field path".to_string())?;
    let mut target = message;
    for field in parents {
        target = match target.get_field_mut(field) {
            Value::Message(inner) => inner,
            _ => return Err(format!("{} is not a message field", field.name())),
        };
    }
    if leaf.is_list() {
        match target.get_field_mut(leaf) {
            Value::List(items) => items.push(value),
            _ => return Err(format!("{} is not a repeated field", leaf.name())),
        }
        Ok(())
    } else {
        target.try_set_field(leaf, value).map_err(|e| e.to_string())
    }
}

/// The request message of a `body: "*"` RPC. An empty body is an empty message.
pub fn from_json_body(desc: &MessageDescriptor, body: &[u8]) -> Result<DynamicMessage, RestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DynamicMessage::new(desc.clone()));
    }
    let invalid = |path: Option<String>, error: serde_json::Error| match path {
        Some(path) if !path.is_empty() && path != "." && !error.is_syntax() && !error.is_eof() => {
            RestError::invalid_argument(format!("invalid JSON body: field {path}: {error}"))
        }
        _ => RestError::invalid_argument(format!("invalid JSON body: {error}")),
    };
    let mut json = serde_json::Deserializer::from_slice(body);
    let mut track = serde_path_to_error::Track::new();
    let message = DynamicMessage::deserialize_with_options(
        desc.clone(),
        serde_path_to_error::Deserializer::new(&mut json, &mut track),
        &DeserializeOptions::new(),
    )
    .map_err(|error| invalid(Some(track.path().to_string()), error))?;
    json.end().map_err(|error| invalid(None, error))?;
    Ok(message)
}

/// Splits a raw query string into decoded `(key, value)` pairs (`+` is a space).
fn parse_query(query: &str) -> Result<Vec<(String, String)>, String> {
    let decode = |text: &str| {
        let text = text.replace('+', " ");
        percent_decode_str(&text)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| format!("query string part {text:?} is not valid UTF-8"))
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(key)?, decode(value)?))
        })
        .collect()
}

/// Sets the fields named by the query string; repeated keys fill repeated fields.
pub fn apply_query(message: &mut DynamicMessage, query: &str) -> Result<(), RestError> {
    let pairs = parse_query(query).map_err(RestError::invalid_argument)?;
    let desc = message.descriptor();
    let mut seen = HashSet::new();
    for (key, raw) in pairs {
        let bad =
            |what: String| RestError::invalid_argument(format!("query parameter {key:?}: {what}"));
        let path = resolve(&desc, &key).map_err(bad)?;
        let leaf = path.leaf();
        if !leaf.is_list() && !seen.insert(path.canonical()) {
            return Err(bad("given more than once".to_string()));
        }
        let value = parse_value(leaf, &raw).map_err(bad)?;
        set(message, &path, value).map_err(bad)?;
    }
    Ok(())
}

/// Sets the fields bound by the path's variables (`raw` are the captured segments, still
/// percent-encoded, aligned with `fields`), overriding the body and query.
pub fn apply_path(
    message: &mut DynamicMessage,
    fields: &[FieldPath],
    raw: &[&str],
) -> Result<(), RestError> {
    for (path, raw) in fields.iter().zip(raw) {
        let bad = |what: String| {
            RestError::invalid_argument(format!("path parameter {}: {what}", path.name))
        };
        let text = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| bad(format!("{raw:?} is not valid UTF-8 once percent-decoded")))?;
        let value = parse_value(path.leaf(), &text).map_err(bad)?;
        set(message, path, value).map_err(bad)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use prost_reflect::DescriptorPool;

    use super::*;

    fn pool() -> DescriptorPool {
        DescriptorPool::decode(petit_proto::FILE_DESCRIPTOR_SET).expect("descriptor set")
    }

    fn message(name: &str) -> MessageDescriptor {
        pool()
            .get_message_by_name(name)
            .unwrap_or_else(|| panic!("{name}"))
    }

    fn to_json(message: &DynamicMessage) -> serde_json::Value {
        serde_json::to_value(message).expect("json")
    }

    #[test]
    fn query_strings_decode() {
        type Pairs = Vec<(&'static str, &'static str)>;
        let cases: &[(&str, Result<Pairs, ()>)] = &[
            ("", Ok(vec![])),
            ("a=1", Ok(vec![("a", "1")])),
            ("a=1&&b=", Ok(vec![("a", "1"), ("b", "")])),
            ("flag", Ok(vec![("flag", "")])),
            ("a=x+y%20z&a=%C3%A9", Ok(vec![("a", "x y z"), ("a", "é")])),
            ("a=%zz", Ok(vec![("a", "%zz")])),
            ("a=%FF", Err(())),
        ];
        for (query, want) in cases {
            let got = parse_query(query).map_err(|_| ());
            let want = want.clone().map(|pairs| {
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, want, "{query}");
        }
    }

    #[test]
    fn query_parameters_set_fields_by_type() {
        let cases: &[(&str, &str, Result<serde_json::Value, &str>)] = &[
            (
                "petit.v1.ListJobsRequest",
                "pageSize=10&pageToken=abc",
                Ok(serde_json::json!({"pageSize": 10, "pageToken": "abc"})),
            ),
            (
                "petit.v1.ListJobsRequest",
                "page_size=7",
                Ok(serde_json::json!({"pageSize": 7})),
            ),
            (
                "petit.v1.ListJobsRequest",
                "pageSize=ten",
                Err("query parameter \"pageSize\": \"ten\" is not a valid uint32"),
            ),
            (
                "petit.v1.ListJobsRequest",
                "pageSize=-1",
                Err("is not a valid uint32"),
            ),
            (
                "petit.v1.ListJobsRequest",
                "pageSize=1&page_size=2",
                Err("given more than once"),
            ),
            (
                "petit.v1.ListJobsRequest",
                "page_sise=2",
                Err("query parameter \"page_sise\": petit.v1.ListJobsRequest has no field \"page_sise\""),
            ),
            (
                "petit.v1.TriggerJobRequest",
                "force=true",
                Ok(serde_json::json!({"force": true})),
            ),
            (
                "petit.v1.TriggerJobRequest",
                "force=yes",
                Err("\"yes\" is not a valid bool"),
            ),
            (
                "petit.v1.TriggerJobRequest",
                "params=x",
                Err("map field params can't be set from the URL"),
            ),
            (
                "petit.v1.TaskDefinition",
                "args=a&args=b&timeout=1.5s",
                Ok(serde_json::json!({"args": ["a", "b"], "timeout": "1.500s"})),
            ),
            (
                "petit.v1.TaskDefinition",
                "retry.maxAttempts=3&retry.delay=2s",
                Ok(serde_json::json!({"retry": {"maxAttempts": 3, "delay": "2s"}})),
            ),
            (
                "petit.v1.TaskDefinition",
                "retry=3",
                Err("query parameter \"retry\""),
            ),
            (
                "petit.v1.TaskDefinition",
                "id.x=3",
                Err("id is not a message field"),
            ),
            (
                "petit.v1.Run",
                "status=RUN_STATUS_FAILED&createdAt=2024-01-02T03:04:05Z",
                Ok(serde_json::json!({"status": "RUN_STATUS_FAILED", "createdAt": "2024-01-02T03:04:05Z"})),
            ),
            (
                "petit.v1.Run",
                "status=2",
                Ok(serde_json::json!({"status": "RUN_STATUS_RUNNING"})),
            ),
            (
                "petit.v1.Run",
                "status=BOGUS",
                Err("\"BOGUS\" is not one of RUN_STATUS_UNSPECIFIED"),
            ),
            (
                "petit.v1.Run",
                "createdAt=yesterday",
                Err("query parameter \"createdAt\""),
            ),
            (
                "petit.v1.LogLine",
                "seq=18446744073709551615",
                Ok(serde_json::json!({"seq": "18446744073709551615"})),
            ),
        ];
        for (name, query, want) in cases {
            let mut msg = DynamicMessage::new(message(name));
            let got = apply_query(&mut msg, query).map(|()| to_json(&msg));
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{name}?{query}"),
                (Err(e), Err(want)) => {
                    assert_eq!(e.code(), tonic::Code::InvalidArgument);
                    assert!(
                        e.message().contains(want),
                        "{name}?{query}: {}",
                        e.message()
                    );
                }
                (got, want) => panic!("{name}?{query}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn json_bodies_use_the_proto3_mapping() {
        let desc = message("petit.v1.TriggerJobRequest");
        let cases: &[(&str, Result<serde_json::Value, &str>)] = &[
            ("", Ok(serde_json::json!({}))),
            ("  \n", Ok(serde_json::json!({}))),
            ("{}", Ok(serde_json::json!({}))),
            (
                r#"{"jobId": "a", "params": {"k": "v"}, "force": true}"#,
                Ok(serde_json::json!({"jobId": "a", "params": {"k": "v"}, "force": true})),
            ),
            (r#"{"job_id": "a"}"#, Ok(serde_json::json!({"jobId": "a"}))),
            (r#"{"force": "yes"}"#, Err("field force:")),
            (r#"{"bogus": 1}"#, Err("unrecognized field name 'bogus'")),
            (r#"{"params": {"k": 1}}"#, Err("field params.k:")),
            ("{", Err("invalid JSON body: EOF")),
            ("{} x", Err("invalid JSON body: trailing characters")),
            ("[]", Err("invalid JSON body")),
            ("null", Err("invalid JSON body")),
            ("\u{0}", Err("invalid JSON body")),
        ];
        for (body, want) in cases {
            let got = from_json_body(&desc, body.as_bytes()).map(|m| to_json(&m));
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{body}"),
                (Err(e), Err(want)) => {
                    assert_eq!(e.code(), tonic::Code::InvalidArgument);
                    assert!(e.message().contains(want), "{body}: {}", e.message());
                }
                (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn path_variables_win_and_decode() {
        let desc = message("petit.v1.GetTaskLogsRequest");
        let fields = vec![
            resolve_path_field(&desc, "run_id").expect("run_id"),
            resolve_path_field(&desc, "task_id").expect("task_id"),
        ];
        let cases: &[(&str, [&str; 2], Result<serde_json::Value, &str>)] = &[
            (
                "",
                ["r1", "t1"],
                Ok(serde_json::json!({"runId": "r1", "taskId": "t1"})),
            ),
            (
                "runId=other&taskId=x",
                ["r1", "a%20b%2Fc"],
                Ok(serde_json::json!({"runId": "r1", "taskId": "a b/c"})),
            ),
            ("", ["r1", "%FF"], Err("path parameter task_id:")),
        ];
        for (query, raw, want) in cases {
            let mut msg = DynamicMessage::new(desc.clone());
            apply_query(&mut msg, query).expect("query");
            let got = apply_path(&mut msg, &fields, raw).map(|()| to_json(&msg));
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{raw:?}"),
                (Err(e), Err(want)) => assert!(e.message().contains(want), "{}", e.message()),
                (got, want) => panic!("{raw:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn path_variables_must_bind_singular_scalars() {
        let cases = [
            ("petit.v1.GetJobRequest", "job_id", Ok(())),
            ("petit.v1.GetJobRequest", "jobId", Ok(())),
            ("petit.v1.GetJobRequest", "nope", Err("has no field")),
            ("petit.v1.TaskDefinition", "args", Err("singular scalar")),
            ("petit.v1.TaskDefinition", "retry", Err("singular scalar")),
            ("petit.v1.TaskDefinition", "environment", Err("map field")),
            ("petit.v1.TaskDefinition", "retry.condition", Ok(())),
        ];
        for (name, field, want) in cases {
            let got = resolve_path_field(&message(name), field).map(|_| ());
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(want)) => assert!(e.contains(want), "{name} {field}: {e}"),
                (got, want) => panic!("{name} {field}: got {got:?}, want {want:?}"),
            }
        }
    }
}
