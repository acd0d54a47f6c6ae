//! The route table: every unary RPC of the descriptor set with a `google.api.http` rule,
//! read once, and the lookup of a request's method and path in it.

use std::collections::{BTreeMap, BTreeSet};

use http::Method;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, Value};

use super::message::{resolve_path_field, FieldPath};
use super::template::{RouteTemplate, Segment, TemplateError};

const HTTP_RULE_EXTENSION: &str = "google.api.http";

/// What part of the request message the HTTP body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BodyRule {
    /// `body: ""`: no body; the fields not bound by the path come from the query string.
    None,
    /// `body: "*"`: the whole message as JSON, except the fields the path binds.
    Whole,
}

/// One REST binding of one RPC.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: Method,
    pub template: RouteTemplate,
    pub body: BodyRule,
    pub rpc: MethodDescriptor,
    /// The gRPC request path, `/petit.v1.JobService/GetJob`.
    pub grpc_path: String,
    /// The fields the template's variables bind, in template order.
    pub path_fields: Vec<FieldPath>,
}

/// Why a descriptor set's HTTP rules can't be served.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("cannot decode the file descriptor set: {0}")]
    Decode(#[from] prost_reflect::DescriptorError),
    #[error("the descriptor set does not define the {HTTP_RULE_EXTENSION} extension")]
    NoHttpExtension,
    #[error("{rpc}: {source}")]
    Template { rpc: String, source: TemplateError },
    #[error("{rpc}: {what}")]
    Unsupported { rpc: String, what: String },
    #[error("{method} {template} is bound to both {first} and {second}")]
    Duplicate {
        method: Method,
        template: String,
        first: String,
        second: String,
    },
}

/// Where a request goes.
#[derive(Debug)]
pub enum Lookup<'t, 'p> {
    /// The route, and the raw (percent-encoded) segment bound to each of its
    /// `path_fields`.
    Found(&'t Route, Vec<&'p str>),
    /// Routes exist for the path, with these methods only.
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

/// Every REST route, most specific template first.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Reads the HTTP rules of an encoded `FileDescriptorSet`.
    pub fn from_descriptor_set(bytes: &[u8]) -> Result<RouteTable, RouteError> {
        RouteTable::from_pool(&DescriptorPool::decode(bytes)?)
    }

    /// Reads the HTTP rules of every unary RPC in `pool`. Streaming RPCs are skipped:
    /// they have no REST form.
    pub fn from_pool(pool: &DescriptorPool) -> Result<RouteTable, RouteError> {
        let extension = pool
            .get_extension_by_name(HTTP_RULE_EXTENSION)
            .ok_or(RouteError::NoHttpExtension)?;
        let mut routes = Vec::new();
        for service in pool.services() {
            for rpc in service.methods() {
                let options = rpc.options();
                if !options.has_extension(&extension) {
                    continue;
                }
                if rpc.is_client_streaming() || rpc.is_server_streaming() {
                    tracing::debug!(rpc = rpc.full_name(), "streaming RPC not exposed over REST");
                    continue;
                }
                let Value::Message(rule) = options.get_extension(&extension).into_owned() else {
                    return Err(unsupported(&rpc, "google.api.http is not a message"));
                };
                add_rule(&mut routes, &rpc, &rule, true)?;
            }
        }
        routes.sort_by_key(|r| r.template.specificity_key());
        check_duplicates(&routes)?;
        Ok(RouteTable { routes })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The first literal segments of every template (`api`): the path prefixes the REST
    /// router claims.
    pub fn prefixes(&self) -> BTreeSet<String> {
        self.routes
            .iter()
            .filter_map(|r| r.template.first_literal())
            .map(str::to_string)
            .collect()
    }

    pub fn lookup<'t, 'p>(&'t self, method: &Method, path: &'p str) -> Lookup<'t, 'p> {
        let mut allowed = Vec::new();
        for route in &self.routes {
            let Some(bound) = route.template.matches(path) else {
                continue;
            };
            if route.method == *method {
                return Lookup::Found(route, bound.into_iter().map(|(_, raw)| raw).collect());
            }
            if !allowed.contains(&route.method) {
                allowed.push(route.method.clone());
            }
        }
        if allowed.is_empty() {
            Lookup::NotFound
        } else {
            Lookup::MethodNotAllowed(allowed)
        }
    }
}

/// Adds the route of `rule` and, for the top-level rule, of its additional bindings.
fn add_rule(
    routes: &mut Vec<Route>,
    rpc: &MethodDescriptor,
    rule: &DynamicMessage,
    top_level: bool,
) -> Result<(), RouteError> {
    let verb = ["get", "put", "post", "delete", "patch"]
        .into_iter()
        .find(|verb| rule.has_field_by_name(verb));
    let custom = rule
        .get_field_by_name("custom")
        .filter(|_| rule.has_field_by_name("custom"));
    let (method, path) = match (verb, custom.as_deref()) {
        (Some(verb), _) => (verb.to_uppercase(), string_field(rule, verb)),
        (None, Some(Value::Message(custom))) => {
            (string_field(custom, "kind"), string_field(custom, "path"))
        }
        (None, _) => return Err(unsupported(rpc, "google.api.http rule has no HTTP method")),
    };
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| unsupported(rpc, "google.api.http rule has an invalid method"))?;
    let template = RouteTemplate::parse(&path).map_err(|source| RouteError::Template {
        rpc: rpc.full_name().to_string(),
        source,
    })?;
    if template.first_literal().is_none() {
        return Err(unsupported(
            rpc,
            &format!("path {template} must start with a literal segment"),
        ));
    }
    let body = match string_field(rule, "body").as_str() {
        "" => BodyRule::None,
        "*" => BodyRule::Whole,
        other => {
            return Err(unsupported(
                rpc,
                &format!("body {other:?} is not supported (only \"*\" or none)"),
            ))
        }
    };
    if !string_field(rule, "response_body").is_empty() {
        return Err(unsupported(rpc, "response_body is not supported"));
    }
    let path_fields = template
        .variables()
        .map(|name| resolve_path_field(&rpc.input(), name))
        .collect::<Result<Vec<_>, String>>()
        .map_err(|what| unsupported(rpc, &format!("path {template}: {what}")))?;
    routes.push(Route {
        method,
        template,
        body,
        rpc: rpc.clone(),
        grpc_path: format!("/{}/{}", rpc.parent_service().full_name(), rpc.name()),
        path_fields,
    });

    let bindings = rule
        .get_field_by_name("additional_bindings")
        .map(|v| v.as_list().map(<[Value]>::to_vec).unwrap_or_default())
        .unwrap_or_default();
    if !bindings.is_empty() && !top_level {
        return Err(unsupported(rpc, "additional_bindings may not nest"));
    }
    for binding in bindings {
        if let Value::Message(binding) = binding {
            add_rule(routes, rpc, &binding, false)?;
        }
    }
    Ok(())
}

/// A string field of a dynamic message; empty when unset.
fn string_field(message: &DynamicMessage, name: &str) -> String {
    message
        .get_field_by_name(name)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Two RPCs on the same method and path shape would make one of them unreachable.
fn check_duplicates(routes: &[Route]) -> Result<(), RouteError> {
    let mut seen: BTreeMap<(String, Vec<Option<&str>>), &Route> = BTreeMap::new();
    for route in routes {
        let shape = route
            .template
            .segments()
            .iter()
            .map(|s| match s {
                Segment::Literal(text) => Some(text.as_str()),
                Segment::Variable(_) => None,
            })
            .collect();
        if let Some(first) = seen.insert((route.method.to_string(), shape), route) {
            return Err(RouteError::Duplicate {
                method: route.method.clone(),
                template: route.template.to_string(),
                first: first.rpc.full_name().to_string(),
                second: route.rpc.full_name().to_string(),
            });
        }
    }
    Ok(())
}

fn unsupported(rpc: &MethodDescriptor, what: &str) -> RouteError {
    RouteError::Unsupported {
        rpc: rpc.full_name().to_string(),
        what: what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::from_descriptor_set(petit_proto::FILE_DESCRIPTOR_SET)
            .expect("the embedded descriptor set builds a route table")
    }

    #[test]
    fn embedded_descriptor_set_gives_every_annotated_rpc() {
        let table = table();
        let mut got: Vec<(String, String, BodyRule, String)> = table
            .routes()
            .iter()
            .map(|r| {
                (
                    r.method.to_string(),
                    r.template.to_string(),
                    r.body,
                    r.grpc_path.clone(),
                )
            })
            .collect();
        got.sort();
        let mut want = vec![
            (
                "GET",
                "/api/audit",
                BodyRule::None,
                "/petit.v1.SchedulerService/ListAuditRecords",
            ),
            (
                "GET",
                "/api/health",
                BodyRule::None,
                "/petit.v1.SchedulerService/GetHealth",
            ),
            (
                "GET",
                "/api/scheduler/state",
                BodyRule::None,
                "/petit.v1.SchedulerService/GetSchedulerState",
            ),
            (
                "POST",
                "/api/scheduler/pause",
                BodyRule::Whole,
                "/petit.v1.SchedulerService/PauseScheduler",
            ),
            (
                "POST",
                "/api/scheduler/resume",
                BodyRule::Whole,
                "/petit.v1.SchedulerService/ResumeScheduler",
            ),
            (
                "GET",
                "/api/jobs",
                BodyRule::None,
                "/petit.v1.JobService/ListJobs",
            ),
            (
                "GET",
                "/api/jobs/{job_id}",
                BodyRule::None,
                "/petit.v1.JobService/GetJob",
            ),
            (
                "POST",
                "/api/jobs/{job_id}/trigger",
                BodyRule::Whole,
                "/petit.v1.JobService/TriggerJob",
            ),
            (
                "GET",
                "/api/jobs/{job_id}/runs",
                BodyRule::None,
                "/petit.v1.JobService/ListJobRuns",
            ),
            (
                "GET",
                "/api/runs/{run_id}",
                BodyRule::None,
                "/petit.v1.RunService/GetRun",
            ),
            (
                "GET",
                "/api/runs/{run_id}/tasks",
                BodyRule::None,
                "/petit.v1.RunService/ListTaskRuns",
            ),
            (
                "POST",
                "/api/runs/{run_id}/cancel",
                BodyRule::Whole,
                "/petit.v1.RunService/CancelRun",
            ),
            (
                "GET",
                "/api/runs/{run_id}/tasks/{task_id}/logs",
                BodyRule::None,
                "/petit.v1.RunService/GetTaskLogs",
            ),
            (
                "POST",
                "/api/jobs/{job_id}/pause",
                BodyRule::Whole,
                "/petit.v1.JobService/PauseJob",
            ),
            (
                "POST",
                "/api/jobs/{job_id}/resume",
                BodyRule::Whole,
                "/petit.v1.JobService/ResumeJob",
            ),
            (
                "POST",
                "/api/jobs/{job_id}/backfill",
                BodyRule::Whole,
                "/petit.v1.JobService/BackfillJob",
            ),
            (
                "POST",
                "/api/runs/{run_id}/rerun",
                BodyRule::Whole,
                "/petit.v1.RunService/RerunRun",
            ),
            (
                "POST",
                "/api/jobs:reload",
                BodyRule::Whole,
                "/petit.v1.JobService/ReloadJobs",
            ),
            (
                "GET",
                "/api/nodes",
                BodyRule::None,
                "/petit.v1.SchedulerService/ListNodes",
            ),
        ]
        .into_iter()
        .map(|(m, t, b, g)| (m.to_string(), t.to_string(), b, g.to_string()))
        .collect::<Vec<_>>();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(table.prefixes().into_iter().collect::<Vec<_>>(), ["api"]);
    }

    #[test]
    fn looks_up_method_and_path() {
        let table = table();
        // Ok(rpc, raw bindings) or Err(allowed methods).
        type Want = Result<(&'static str, Vec<&'static str>), Vec<Method>>;
        let cases: &[(Method, &str, Want)] = &[
            (Method::GET, "/api/jobs", Ok(("ListJobs", vec![]))),
            (
                Method::GET,
                "/api/jobs/hello",
                Ok(("GetJob", vec!["hello"])),
            ),
            (
                Method::POST,
                "/api/jobs/hello/trigger",
                Ok(("TriggerJob", vec!["hello"])),
            ),
            (
                Method::GET,
                "/api/runs/r1/tasks/t1/logs",
                Ok(("GetTaskLogs", vec!["r1", "t1"])),
            ),
            (
                Method::GET,
                "/api/jobs/hello/trigger",
                Err(vec![Method::POST]),
            ),
            (Method::DELETE, "/api/jobs", Err(vec![Method::GET])),
            (Method::GET, "/api/scheduler/pause", Err(vec![Method::POST])),
        ];
        for (method, path, want) in cases {
            match (table.lookup(method, path), want) {
                (Lookup::Found(route, bound), Ok((rpc, raw))) => {
                    assert_eq!(route.rpc.name(), *rpc, "{method} {path}");
                    assert_eq!(&bound, raw, "{method} {path}");
                }
                (Lookup::MethodNotAllowed(allowed), Err(want)) => {
                    assert_eq!(&allowed, want, "{method} {path}");
                }
                (got, _) => panic!("{method} {path}: got {got:?}"),
            }
        }
        for path in [
            "/api/nope",
            "/api/jobs/",
            "/api/jobs/a/b/c",
            "/api",
            "/",
            "/other",
        ] {
            assert!(
                matches!(table.lookup(&Method::GET, path), Lookup::NotFound),
                "{path}"
            );
        }
    }

    #[test]
    fn path_fields_resolve_to_request_fields() {
        let table = table();
        let logs = table
            .routes()
            .iter()
            .find(|r| r.rpc.name() == "GetTaskLogs")
            .expect("GetTaskLogs route");
        let names: Vec<&str> = logs.path_fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["run_id", "task_id"]);
    }

    /// The embedded set plus `test.proto`, whose service `test.T` has one method per
    /// `(name, server_streaming, google.api.http rule)`.
    fn pool_with(methods: &[(&str, bool, serde_json::Value)]) -> DescriptorPool {
        let mut pool =
            DescriptorPool::decode(petit_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
        let methods: Vec<serde_json::Value> = methods
            .iter()
            .map(|(name, streaming, rule)| {
                serde_json::json!({
                    "name": name,
                    "inputType": ".petit.v1.GetJobRequest",
                    "outputType": ".petit.v1.GetJobResponse",
                    "serverStreaming": streaming,
                    "options": {"[google.api.http]": rule},
                })
            })
            .collect();
        let file = serde_json::json!({
            "name": "test.proto",
            "package": "test",
            "syntax": "proto3",
            "dependency": ["google/api/annotations.proto", "petit/v1/job.proto"],
            "service": [{"name": "T", "method": methods}],
        });
        let desc = pool
            .get_message_by_name("google.protobuf.FileDescriptorProto")
            .expect("FileDescriptorProto");
        let file = DynamicMessage::deserialize(desc, file).expect("test.proto as JSON");
        pool.decode_file_descriptor_proto(prost::Message::encode_to_vec(&file).as_slice())
            .expect("test.proto");
        pool
    }

    #[test]
    fn reads_bindings_custom_methods_and_skips_streams() {
        let pool = pool_with(&[
            (
                "A",
                false,
                serde_json::json!({
                    "get": "/x/{job_id}",
                    "additionalBindings": [{"post": "/x/{job_id}/a", "body": "*"}],
                }),
            ),
            (
                "B",
                false,
                serde_json::json!({"custom": {"kind": "HEAD", "path": "/x"}}),
            ),
            ("C", true, serde_json::json!({"get": "/x/c"})),
        ]);
        let table = RouteTable::from_pool(&pool).expect("table");
        let mut got: Vec<(String, String, String)> = table
            .routes()
            .iter()
            .filter(|r| r.rpc.parent_service().full_name() == "test.T")
            .map(|r| {
                (
                    r.method.to_string(),
                    r.template.to_string(),
                    r.grpc_path.clone(),
                )
            })
            .collect();
        got.sort();
        let want = [
            ("GET", "/x/{job_id}", "/test.T/A"),
            ("HEAD", "/x", "/test.T/B"),
            ("POST", "/x/{job_id}/a", "/test.T/A"),
        ]
        .map(|(m, t, g)| (m.to_string(), t.to_string(), g.to_string()));
        assert_eq!(got, want);
        assert_eq!(
            table.prefixes().into_iter().collect::<Vec<_>>(),
            ["api", "x"]
        );
    }

    #[test]
    fn refuses_rules_it_cannot_serve() {
        let cases = [
            (
                vec![("A", serde_json::json!({"post": "/x", "body": "job_id"}))],
                "body \"job_id\" is not supported",
            ),
            (
                vec![("A", serde_json::json!({"get": "/x", "responseBody": "job"}))],
                "response_body is not supported",
            ),
            (
                vec![("A", serde_json::json!({"get": "/x/{nope}"}))],
                "has no field \"nope\"",
            ),
            (
                vec![("A", serde_json::json!({"get": "/{job_id}"}))],
                "must start with a literal segment",
            ),
            (
                vec![("A", serde_json::json!({"get": "/x/*"}))],
                "is not supported",
            ),
            (
                vec![("A", serde_json::json!({"body": "*"}))],
                "has no HTTP method",
            ),
            (
                vec![(
                    "A",
                    serde_json::json!({"custom": {"kind": "BAD KIND", "path": "/x"}}),
                )],
                "invalid method",
            ),
            (
                vec![
                    ("A", serde_json::json!({"get": "/x/{job_id}"})),
                    ("B", serde_json::json!({"get": "/x/{jobId}"})),
                ],
                "is bound to both test.T.A and test.T.B",
            ),
            (
                vec![(
                    "A",
                    serde_json::json!({
                        "get": "/x",
                        "additionalBindings": [{
                            "get": "/y",
                            "additionalBindings": [{"get": "/z"}],
                        }],
                    }),
                )],
                "additional_bindings may not nest",
            ),
        ];
        for (methods, want) in cases {
            let methods: Vec<(&str, bool, serde_json::Value)> = methods
                .into_iter()
                .map(|(name, rule)| (name, false, rule))
                .collect();
            let err = RouteTable::from_pool(&pool_with(&methods))
                .expect_err(want)
                .to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn a_pool_without_the_http_extension_is_refused() {
        let pool = DescriptorPool::new();
        assert!(matches!(
            RouteTable::from_pool(&pool),
            Err(RouteError::NoHttpExtension)
        ));
    }
}
