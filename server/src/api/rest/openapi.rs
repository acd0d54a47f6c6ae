//! The OpenAPI 3 document of the REST shim (`GET /api/openapi.json`), generated from
//! the same descriptor set and `google.api.http` rules that route the requests, as
//! grpc-gateway users get from `protoc-gen-openapiv2`: every route with its path and
//! query parameters, request and response schemas in their proto3 JSON form (lowerCamel
//! names, enums by name, 64-bit integers as strings, RFC 3339 timestamps, `"1.5s"`
//! durations), the error body, the bearer scheme, and the proto comments as
//! descriptions.

use std::collections::BTreeMap;

use prost_reflect::{FieldDescriptor, FileDescriptor, Kind, MessageDescriptor};
use serde_json::{json, Map, Value};

use super::table::{BodyRule, Route, RouteTable};

/// The path the document is served at.
pub const PATH: &str = "/api/openapi.json";

/// Routes that answer without a token (see `auth::access`).
const OPEN_ROUTES: &[&str] = &["/api/health"];

/// The document for `table`'s routes.
pub fn document(table: &RouteTable) -> Value {
    let mut schemas = BTreeMap::new();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut strict_inputs = Vec::new();
    for route in table.routes() {
        let operation = operation(route, &mut schemas, &mut strict_inputs);
        paths
            .entry(route.template.to_string())
            .or_default()
            .insert(route.method.as_str().to_lowercase(), operation);
    }
    paths
        .entry(PATH.to_string())
        .or_default()
        .insert("get".into(), json!({
            "operationId": "OpenApi",
            "summary": "This document.",
            "tags": ["Meta"],
            "responses": {"200": {"description": "The OpenAPI document", "content": {"application/json": {"schema": {"type": "object"}}}}}
        }));
    // Request bodies with a field the message lacks are refused (400).
    // proto3 JSON parsers take `null` for any field as its default.
    for name in strict_inputs {
        if let Some(schema) = schemas.get_mut(&name) {
            schema["additionalProperties"] = json!(false);
            if let Some(Value::Object(properties)) = schema.get_mut("properties") {
                for property in properties.values_mut() {
                    if property.get("$ref").is_some() {
                        *property = json!({"allOf": [property.clone()]});
                    }
                    property["nullable"] = json!(true);
                }
            }
        }
    }
    schemas.insert(
        "Status".to_string(),
        json!({
            "type": "object",
            "description": "An error, as grpc-gateway writes it: the gRPC status code, a message, and details (always empty).",
            "properties": {
                "code": {"type": "integer", "format": "int32", "description": "The gRPC status code (5 = NOT_FOUND...)"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object"}}
            },
            "required": ["code", "message", "details"]
        }),
    );
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Petit API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The REST form of Petit's gRPC API (package petit.v1). Every route is one RPC; \
                            errors carry the gRPC status code. When petitd runs with tokens, every route \
                            but the health check needs `Authorization: Bearer <token>`."
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
    })
}

fn operation(
    route: &Route,
    schemas: &mut BTreeMap<String, Value>,
    strict_inputs: &mut Vec<String>,
) -> Value {
    let rpc = &route.rpc;
    let service = rpc.parent_service();
    let mut op = Map::new();
    op.insert(
        "operationId".into(),
        json!(format!("{}_{}", service.name(), rpc.name())),
    );
    op.insert("tags".into(), json!([service.name()]));
    let description = comments(&rpc.parent_file(), rpc.path());
    op.insert(
        "summary".into(),
        json!(description
            .clone()
            .unwrap_or_else(|| rpc.name().to_string())),
    );
    let input = rpc.input();
    let mut parameters = Vec::new();
    let bound: Vec<&str> = route
        .path_fields
        .iter()
        .filter_map(|p| p.fields.first().map(FieldDescriptor::name))
        .collect();
    for path in &route.path_fields {
        let Some(leaf) = path.fields.last() else {
            continue;
        };
        parameters.push(json!({
            "name": path.name,
            "in": "path",
            "required": true,
            "schema": field_schema(leaf, schemas, false),
        }));
    }
    match route.body {
        BodyRule::None => {
            for field in input.fields() {
                if bound.contains(&field.name()) || field.is_map() {
                    continue;
                }
                // Only scalars and enums (or lists of them) fit in a query string.
                if matches!(field.kind(), Kind::Message(_)) {
                    continue;
                }
                let mut schema = field_schema(&field, schemas, false);
                // A query string may name an enum value or give its number (as in
                // grpc-gateway).
                if matches!(field.kind(), Kind::Enum(_)) && !field.is_list() {
                    schema = json!({"oneOf": [schema, {"type": "integer", "format": "int32"}]});
                }
                let mut parameter = json!({
                    "name": field.json_name(),
                    "in": "query",
                    "required": false,
                    "schema": schema,
                });
                if let Some(text) = comments(&field.parent_file(), field.path()) {
                    parameter["description"] = json!(text);
                }
                parameters.push(parameter);
            }
        }
        BodyRule::Whole => {
            strict_inputs.push(input.full_name().to_string());
            op.insert(
                "requestBody".into(),
                json!({
                    // An empty body is the empty message.
                    "required": false,
                    "content": {"application/json": {"schema": message_ref(&input, schemas)}}
                }),
            );
        }
    }
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    op.insert(
        "responses".into(),
        json!({
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": message_ref(&rpc.output(), schemas)}}
            },
            "default": {
                "description": "An error: 400 bad request, 401 no valid token, 403 role not allowed, 404 not found, 429 limit reached, 503 stopping...",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}
            }
        }),
    );
    if OPEN_ROUTES.contains(&route.template.to_string().as_str()) {
        op.insert("security".into(), json!([]));
    }
    Value::Object(op)
}

/// A `$ref` to `message`'s schema, adding it (and every message it uses) to `schemas`.
fn message_ref(message: &MessageDescriptor, schemas: &mut BTreeMap<String, Value>) -> Value {
    if let Some(schema) = well_known(message) {
        return schema;
    }
    let name = message.full_name().to_string();
    if !schemas.contains_key(&name) {
        // Inserted first, so that recursive messages end.
        schemas.insert(name.clone(), Value::Null);
        let mut properties = Map::new();
        for field in message.fields() {
            let mut schema = field_schema(&field, schemas, true);
            if let Some(text) = comments(&field.parent_file(), field.path()) {
                // A `$ref` takes no siblings in OpenAPI 3.0: wrap it.
                if schema.get("$ref").is_some() {
                    schema = json!({"allOf": [schema]});
                }
                schema["description"] = json!(text);
            }
            properties.insert(field.json_name().to_string(), schema);
        }
        let mut schema = json!({"type": "object", "properties": properties});
        if let Some(text) = comments(&message.parent_file(), message.path()) {
            schema["description"] = json!(text);
        }
        schemas.insert(name.clone(), schema);
    }
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The proto3 JSON form of the well-known types Petit uses.
fn well_known(message: &MessageDescriptor) -> Option<Value> {
    Some(match message.full_name() {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => {
            json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$", "example": "1.5s"})
        }
        "google.protobuf.Struct" => json!({"type": "object"}),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.Empty" => json!({"type": "object"}),
        _ => return None,
    })
}

fn field_schema(
    field: &FieldDescriptor,
    schemas: &mut BTreeMap<String, Value>,
    allow_messages: bool,
) -> Value {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            return json!({"type": "object"});
        };
        let value = entry.map_entry_value_field();
        return json!({"type": "object", "additionalProperties": kind_schema(&value.kind(), schemas)});
    }
    let item = match field.kind() {
        Kind::Message(m) if !allow_messages => {
            json!({"type": "string", "description": m.full_name()})
        }
        kind => kind_schema(&kind, schemas),
    };
    if field.is_list() {
        json!({"type": "array", "items": item})
    } else {
        item
    }
}

fn kind_schema(kind: &Kind, schemas: &mut BTreeMap<String, Value>) -> Value {
    match kind {
        Kind::Double => json!({"type": "number", "format": "double"}),
        Kind::Float => json!({"type": "number", "format": "float"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Kind::Uint32 | Kind::Fixed32 => {
            json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": u32::MAX})
        }
        // proto3 JSON writes 64-bit integers as strings.
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => json!({"type": "string", "format": "int64"}),
        Kind::Uint64 | Kind::Fixed64 => json!({"type": "string", "format": "uint64"}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::String => json!({"type": "string"}),
        Kind::Bytes => json!({"type": "string", "format": "byte"}),
        Kind::Enum(e) => json!({
            "type": "string",
            "enum": e.values().map(|v| v.name().to_string()).collect::<Vec<_>>(),
        }),
        Kind::Message(m) => message_ref(m, schemas),
    }
}

/// The leading comment of the element at `path` in `file`, trimmed.
fn comments(file: &FileDescriptor, path: &[i32]) -> Option<String> {
    let proto = file.file_descriptor_proto();
    let info = proto.source_code_info.as_ref()?;
    let location = info.location.iter().find(|l| l.path == path)?;
    let text = location.leading_comments.as_deref()?;
    let text = text
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        document(&RouteTable::from_descriptor_set(petit_proto::FILE_DESCRIPTOR_SET).unwrap())
    }

    #[test]
    fn every_route_is_in_the_document() {
        let table = RouteTable::from_descriptor_set(petit_proto::FILE_DESCRIPTOR_SET).unwrap();
        let doc = document(&table);
        for route in table.routes() {
            let op =
                &doc["paths"][route.template.to_string()][route.method.as_str().to_lowercase()];
            assert!(
                op.is_object(),
                "{} {} missing",
                route.method,
                route.template
            );
            assert_eq!(
                op["operationId"],
                format!("{}_{}", route.rpc.parent_service().name(), route.rpc.name())
            );
        }
    }

    #[test]
    fn schemas_follow_the_proto3_json_mapping() {
        let doc = doc();
        let run = &doc["components"]["schemas"]["petit.v1.Run"]["properties"];
        assert_eq!(run["jobId"]["type"], "string");
        assert_eq!(run["createdAt"]["type"], "string");
        assert_eq!(run["createdAt"]["format"], "date-time");
        assert_eq!(run["status"]["type"], "string");
        assert!(run["status"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("RUN_STATUS_SUCCEEDED")));
        assert_eq!(run["params"]["additionalProperties"]["type"], "string");
        let get_job = &doc["paths"]["/api/jobs/{job_id}"]["get"];
        assert_eq!(get_job["parameters"][0]["in"], "path");
        assert_eq!(get_job["parameters"][0]["name"], "job_id");
        let list = &doc["paths"]["/api/jobs"]["get"]["parameters"];
        let names: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["pageSize", "pageToken", "view"]);
        let trigger = &doc["paths"]["/api/jobs/{job_id}/trigger"]["post"];
        assert_eq!(
            trigger["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/petit.v1.TriggerJobRequest"
        );
        assert_eq!(doc["paths"]["/api/health"]["get"]["security"], json!([]));
        assert!(doc["paths"]["/api/jobs"]["get"]["summary"].is_string());
        // Every $ref resolves.
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
    }
}
