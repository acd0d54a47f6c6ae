//! The grpc-gateway-style REST shim. Routes come from the `google.api.http` rules of
//! `petit_proto::FILE_DESCRIPTOR_SET`; each REST request becomes one direct call of the
//! service method its RPC names (`call`: the same code the gRPC server runs, after the
//! same token check), and the reply (or error) goes back as proto3 JSON written straight
//! from the reply message.
//!
//! Choices a client can see:
//! - Replies use the proto3 JSON mapping (lowerCamelCase names, enum names, 64-bit
//!   integers as strings, RFC 3339 timestamps, durations as `"1.5s"`) and include fields
//!   at their default value (`[]`, `0`, `""`, `false`), so a client never has to guess
//!   whether a missing key means "empty"; only unset message fields are left out. Map
//!   entries come sorted by key (`petit_proto::json`).
//! - Errors are `{"code": <gRPC code>, "message": "...", "details": []}` with the HTTP
//!   status grpc-gateway uses ([`http_status`]); a bad body or query is 400, an
//!   unknown path under a REST prefix 404, a wrong method 405, a body over
//!   [`BODY_LIMIT`] 413.
//! - `body: "*"` RPCs take their fields from the JSON body only: a query string there is
//!   refused rather than ignored.
//! - The shim claims only `/{prefix}` and `/{prefix}/…` for each first path segment
//!   the rules use (`/api`). petitd's listener hands it those paths itself
//!   ([`RestService`]), before axum's router: the shim matches its routes itself, and
//!   a router's wildcard route captured, percent-decoded and stored the rest of each
//!   path for nothing (`GET /api/health`: 23.5k instructions through the router, 19.5k
//!   without). [`router`] serves the same shim as an axum router, with no fallback, so
//!   that it merges with the gRPC router.

mod call;
mod error;
mod message;
pub mod openapi;
mod table;
mod template;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prost_reflect::DynamicMessage;
use tonic::metadata::MetadataMap;

use crate::auth::Authenticator;
pub use call::Services;

pub use error::{http_status, ErrorBody, RestError};
pub use message::FieldPath;

/// The JSON body decoding of `body: "*"` routes, for the hostile-input tests and the
/// fuzz targets.
#[doc(hidden)]
pub fn from_json_body_for_tests(
    desc: &prost_reflect::MessageDescriptor,
    body: &[u8],
) -> Result<DynamicMessage, RestError> {
    message::from_json_body(desc, body)
}
pub use table::{BodyRule, Lookup, Route, RouteError, RouteTable};
pub use template::{RouteTemplate, Segment, TemplateError};

/// The largest request body accepted, in bytes.
pub const BODY_LIMIT: usize = 1 << 20;

/// Request headers whose name starts with this are passed on as gRPC metadata, without
/// the prefix (grpc-gateway's convention).
const METADATA_PREFIX: &str = "grpc-metadata-";

/// The REST routes of every `google.api.http`-annotated RPC in
/// `petit_proto::FILE_DESCRIPTOR_SET`, each answered by calling that RPC's method of
/// `services` (checked by `auth` as a gRPC call of the RPC is).
pub fn router<S: Services>(services: S, auth: Authenticator) -> Router {
    routes(shim(
        embedded_routes(),
        Documented::Embedded,
        services,
        auth,
    ))
}

/// The routes of `petit_proto::FILE_DESCRIPTOR_SET`, read from its copy without
/// comments (`FILE_DESCRIPTOR_SET_LEAN`): the table holds its descriptor pool for the
/// whole life of petitd, and the comments were 0.33 MiB of that pool's 0.84 MiB.
fn embedded_routes() -> RouteTable {
    RouteTable::from_descriptor_set(petit_proto::FILE_DESCRIPTOR_SET_LEAN)
        .expect("the embedded descriptor set has valid google.api.http rules")
}

/// As [`router`], for any route table (its OpenAPI document is written from it).
pub fn router_for<S: Services>(table: RouteTable, services: S, auth: Authenticator) -> Router {
    routes(shim(table, Documented::Table, services, auth))
}

fn routes<S: Services>(shim: Arc<Shim<S>>) -> Router {
    let prefixes = shim.table.prefixes();
    let mut router = Router::new();
    for prefix in prefixes {
        router = router
            .route(&format!("/{prefix}"), any(handle::<S>))
            .route(&format!("/{prefix}/{{*rest}}"), any(handle::<S>));
    }
    router.with_state(shim)
}

/// The shim as the listener calls it, ahead of any router: [`RestService::claims`] says
/// whether a path is the shim's, [`RestService::call`] answers it (as [`router`]'s
/// routes do).
#[derive(Clone)]
pub struct RestService {
    shim: Arc<dyn Answer>,
}

impl RestService {
    /// The routes of `petit_proto::FILE_DESCRIPTOR_SET`, as [`router`].
    pub fn new<S: Services>(services: S, auth: Authenticator) -> RestService {
        RestService {
            shim: shim(embedded_routes(), Documented::Embedded, services, auth),
        }
    }

    /// Whether `path` is `/{prefix}` or under it, for a prefix of the routes.
    pub fn claims(&self, path: &str) -> bool {
        self.shim.claims(path)
    }

    /// The shim's answer, finished as axum's router finishes a route's: a
    /// `Content-Length` when the body's size is known (else HTTP/1.1 would send it
    /// chunked), and no body for a HEAD request.
    pub async fn call(&self, request: Request) -> Response {
        let head = request.method() == http::Method::HEAD;
        let mut response = self.shim.clone().answer(request).await;
        if let Some(size) = hyper::body::Body::size_hint(response.body()).exact() {
            response
                .headers_mut()
                .entry(http::header::CONTENT_LENGTH)
                .or_insert_with(|| HeaderValue::from(size));
        }
        if head {
            response = response.map(|_| Body::empty());
        }
        response
    }
}

/// [`Shim`] whatever its services.
trait Answer: Send + Sync {
    fn claims(&self, path: &str) -> bool;
    fn answer(self: Arc<Self>, request: Request) -> futures::future::BoxFuture<'static, Response>;
}

impl<S: Services> Answer for Shim<S> {
    fn claims(&self, path: &str) -> bool {
        self.prefixes.iter().any(|prefix| {
            path.strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    fn answer(self: Arc<Self>, request: Request) -> futures::future::BoxFuture<'static, Response> {
        Box::pin(handle(State(self), request))
    }
}

/// What the OpenAPI document is written from.
enum Documented {
    /// `petit_proto::FILE_DESCRIPTOR_SET`, whose comments it shows.
    Embedded,
    /// The shim's own route table.
    Table,
}

fn shim<S: Services>(
    table: RouteTable,
    documented: Documented,
    services: S,
    auth: Authenticator,
) -> Arc<Shim<S>> {
    let prefixes = table
        .prefixes()
        .into_iter()
        .map(|p| format!("/{p}"))
        .collect();
    let handlers = table
        .routes()
        .iter()
        .filter_map(|route| {
            let handler = call::handler::<S>(&route.grpc_path)?;
            Some((route.grpc_path.clone(), (handler, AtomicUsize::new(0))))
        })
        .collect();
    Arc::new(Shim {
        prefixes,
        table,
        handlers,
        services,
        body_limit: BODY_LIMIT,
        openapi: OnceLock::new(),
        documented,
        auth,
    })
}

struct Shim<S> {
    /// `/api`: the paths the shim claims are these and those under them.
    prefixes: Vec<String>,
    table: RouteTable,
    /// By gRPC path: the RPC's handler, and the size of its last reply.
    handlers: HashMap<String, (call::Handler<S>, AtomicUsize)>,
    services: S,
    body_limit: usize,
    /// The OpenAPI document, as served: written at its first request (it only changes
    /// with the binary, is seldom asked for, and its tree and text would otherwise sit
    /// in memory from start to stop).
    openapi: OnceLock<bytes::Bytes>,
    documented: Documented,
    auth: Authenticator,
}

async fn handle<S: Services>(State(shim): State<Arc<Shim<S>>>, request: Request) -> Response {
    match shim.serve(request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

impl<S: Services> Shim<S> {
    fn openapi(&self) -> &bytes::Bytes {
        self.openapi.get_or_init(|| {
            let document = match self.documented {
                Documented::Embedded => openapi::document(
                    &RouteTable::from_descriptor_set(petit_proto::FILE_DESCRIPTOR_SET)
                        .expect("the embedded descriptor set has valid google.api.http rules"),
                ),
                Documented::Table => openapi::document(&self.table),
            };
            crate::alloc::large_response_built();
            bytes::Bytes::from(document.to_string())
        })
    }

    async fn serve(&self, request: Request) -> Result<Response, RestError> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path();
        if path == openapi::PATH && parts.method == http::Method::GET {
            // Like reflection, it needs a token (of any role) when tokens are on.
            self.auth
                .check(path, &parts.headers)
                .map_err(|s| RestError::from_grpc(s.code(), s.message()))?;
            let mut response = (StatusCode::OK, self.openapi().clone()).into_response();
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return Ok(response);
        }
        let (route, raw) = match self.table.lookup(&parts.method, path) {
            Lookup::Found(route, raw) => (route, raw),
            Lookup::MethodNotAllowed(allowed) => {
                return Err(RestError::method_not_allowed(&parts.method, path, &allowed))
            }
            Lookup::NotFound => return Err(RestError::no_route(&parts.method, path)),
        };
        let query = parts.uri.query().unwrap_or_default();
        let mut request = match route.body {
            BodyRule::Whole => {
                if !query.is_empty() {
                    return Err(RestError::invalid_argument(format!(
                        "{} {} takes its fields from the JSON body, not the query string",
                        route.method, route.template
                    )));
                }
                let body = self.read_body(body).await?;
                message::from_json_body(&route.rpc.input(), &body)?
            }
            BodyRule::None => {
                let mut request = DynamicMessage::new(route.rpc.input());
                message::apply_query(&mut request, query)?;
                request
            }
        };
        message::apply_path(&mut request, &route.path_fields, &raw)?;
        // The check the auth middleware makes of a gRPC call to this RPC, after the
        // request was read (as when REST went through the gRPC server).
        let caller = self
            .auth
            .check(&route.grpc_path, &parts.headers)
            .map_err(|s| RestError::from_grpc(s.code(), s.message()))?;
        let Some((handler, last_size)) = self.handlers.get(&route.grpc_path) else {
            return Err(RestError::from_grpc(
                tonic::Code::Unimplemented,
                format!("{} has no REST handler", route.grpc_path),
            ));
        };
        let reply = handler(
            &self.services,
            call::Call {
                message: request,
                metadata: metadata(&parts.headers),
                caller,
                // A reply of the same size plus some, so that one a little longer fits.
                reply_capacity: last_size.load(Ordering::Relaxed) * 9 / 8 + 128,
            },
        )
        .await?;
        last_size.store(reply.len(), Ordering::Relaxed);
        Ok(json_response(reply))
    }

    async fn read_body(&self, body: Body) -> Result<bytes::Bytes, RestError> {
        match Limited::new(body, self.body_limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(error) if error.is::<LengthLimitError>() => {
                Err(RestError::body_too_large(self.body_limit))
            }
            Err(error) => Err(RestError::invalid_argument(format!(
                "cannot read the request body: {error}"
            ))),
        }
    }
}

/// The metadata passed on to the service, as a gRPC client would send it:
/// `authorization`, and `grpc-metadata-*` without the prefix.
fn metadata(headers: &HeaderMap) -> MetadataMap {
    let mut metadata = HeaderMap::new();
    for (name, value) in headers {
        if *name == AUTHORIZATION {
            metadata.append(name.clone(), value.clone());
        } else if let Some(key) = name.as_str().strip_prefix(METADATA_PREFIX) {
            if let Ok(key) = HeaderName::from_bytes(key.as_bytes()) {
                metadata.append(key, value.clone());
            }
        }
    }
    MetadataMap::from_headers(metadata)
}

fn json_response(body: Vec<u8>) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod json_tests;
#[cfg(test)]
mod tests;
