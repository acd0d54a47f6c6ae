//! The grpc-gateway-style REST shim. Routes come from the `google.api.http` rules of
//! `petit_proto::FILE_DESCRIPTOR_SET`; each REST request becomes one in-process call of
//! the tonic services, and the reply (or error) goes back as proto3 JSON.
//!
//! Choices a client can see:
//! - Replies use the proto3 JSON mapping (lowerCamelCase names, enum names, 64-bit
//!   integers as strings, RFC 3339 timestamps, durations as `"1.5s"`) and include fields
//!   at their default value (`[]`, `0`, `""`, `false`), so a client never has to guess
//!   whether a missing key means "empty"; only unset message fields are left out.
//! - Errors are `{"code": <gRPC code>, "message": "...", "details": []}` with the HTTP
//!   status grpc-gateway uses ([`http_status`]); a bad body or query is 400, an
//!   unknown path under a REST prefix 404, a wrong method 405, a body over
//!   [`BODY_LIMIT`] 413.
//! - `body: "*"` RPCs take their fields from the JSON body only: a query string there is
//!   refused rather than ignored.
//! - The router claims only `/{prefix}` and `/{prefix}/…` for each first path segment
//!   the rules use (`/api`) and sets no fallback, so it merges with the gRPC router.

mod call;
mod error;
mod message;
pub mod openapi;
mod table;
mod template;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prost_reflect::{DynamicMessage, SerializeOptions};

use crate::auth::Authenticator;

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
/// `petit_proto::FILE_DESCRIPTOR_SET`, each translated into an in-process call of `grpc`
/// (the tonic services as an axum Router).
pub fn router(grpc: Router, auth: Authenticator) -> Router {
    let table = RouteTable::from_descriptor_set(petit_proto::FILE_DESCRIPTOR_SET)
        .expect("the embedded descriptor set has valid google.api.http rules");
    router_for(table, grpc, auth)
}

/// As [`router`], for any route table.
pub fn router_for(table: RouteTable, grpc: Router, auth: Authenticator) -> Router {
    let prefixes = table.prefixes();
    // Built once: it only changes with the binary.
    let openapi = bytes::Bytes::from(openapi::document(&table).to_string());
    let shim = Arc::new(Shim {
        table,
        grpc,
        body_limit: BODY_LIMIT,
        openapi,
        auth,
    });
    let mut router = Router::new();
    for prefix in prefixes {
        router = router
            .route(&format!("/{prefix}"), any(handle))
            .route(&format!("/{prefix}/{{*rest}}"), any(handle));
    }
    router.with_state(shim)
}

struct Shim {
    table: RouteTable,
    grpc: Router,
    body_limit: usize,
    /// The OpenAPI document, as served.
    openapi: bytes::Bytes,
    auth: Authenticator,
}

async fn handle(State(shim): State<Arc<Shim>>, request: Request) -> Response {
    match shim.serve(request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

impl Shim {
    async fn serve(&self, request: Request) -> Result<Response, RestError> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path();
        if path == openapi::PATH && parts.method == http::Method::GET {
            // Like reflection, it needs a token (of any role) when tokens are on.
            self.auth
                .check(path, &parts.headers)
                .map_err(|s| RestError::from_grpc(s.code(), s.message()))?;
            let mut response = (StatusCode::OK, self.openapi.clone()).into_response();
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
        let reply = call::unary(
            self.grpc.clone(),
            &route.grpc_path,
            &request,
            &route.rpc.output(),
            metadata(&parts.headers),
        )
        .await?;
        json_response(&reply)
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

/// The request headers passed on to the service: `authorization`, and `grpc-metadata-*`
/// without the prefix.
fn metadata(headers: &HeaderMap) -> HeaderMap {
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
    metadata
}

fn json_response(reply: &DynamicMessage) -> Result<Response, RestError> {
    let options = SerializeOptions::new().skip_default_fields(false);
    let mut serializer = serde_json::Serializer::new(Vec::new());
    reply
        .serialize_with_options(&mut serializer, &options)
        .map_err(|e| RestError::internal(format!("cannot encode the reply as JSON: {e}")))?;
    let mut response = (StatusCode::OK, serializer.into_inner()).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

#[cfg(test)]
mod json_tests;
#[cfg(test)]
mod tests;
