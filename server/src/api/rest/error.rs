//! REST errors as grpc-gateway writes them: the HTTP status it maps each gRPC code to,
//! and the JSON body `{"code": <gRPC code>, "message": "...", "details": []}`.

use axum::response::{IntoResponse, Response};
use http::header::{ALLOW, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, StatusCode};
use tonic::Code;

/// grpc-gateway's `HTTPStatusFromCode`.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        // Not in the `http` crate's list (it is nginx's "client closed request"), but a
        // valid status all the same.
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        Code::Aborted => StatusCode::CONFLICT,
        Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A failed REST call: the gRPC status it stands for, and the HTTP status it is sent
/// with (the mapped one, except where the failure is HTTP's own: 405, 413).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestError {
    status: StatusCode,
    code: Code,
    message: String,
    /// The `Allow` header of a 405.
    allow: Option<String>,
}

impl RestError {
    /// A status the gRPC service answered with.
    pub fn from_grpc(code: Code, message: impl Into<String>) -> RestError {
        RestError {
            status: http_status(code),
            code,
            message: message.into(),
            allow: None,
        }
    }

    /// The request can't be turned into the RPC's request message.
    pub fn invalid_argument(message: impl Into<String>) -> RestError {
        RestError::from_grpc(Code::InvalidArgument, message)
    }

    /// The shim itself failed (a broken reply from the service, not the client's fault).
    pub fn internal(message: impl Into<String>) -> RestError {
        RestError::from_grpc(Code::Internal, message)
    }

    pub fn no_route(method: &Method, path: &str) -> RestError {
        RestError::from_grpc(Code::NotFound, format!("no route for {method} {path}"))
    }

    pub fn method_not_allowed(method: &Method, path: &str, allowed: &[Method]) -> RestError {
        let allow = allowed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        RestError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: Code::Unimplemented,
            message: format!("method {method} is not allowed for {path} (allowed: {allow})"),
            allow: Some(allow),
        }
    }

    pub fn body_too_large(limit: usize) -> RestError {
        RestError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: Code::ResourceExhausted,
            message: format!("request body is larger than {limit} bytes"),
            allow: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> Code {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON body. `details` stays empty: the status details a service may attach
    /// are `google.protobuf.Any`s of types outside Petit's descriptor set.
    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            code: self.code as i32,
            message: &self.message,
            details: [],
        }
    }
}

/// The JSON error body, its keys in grpc-gateway's order.
#[derive(Debug, serde::Serialize)]
pub struct ErrorBody<'a> {
    pub code: i32,
    pub message: &'a str,
    pub details: [serde_json::Value; 0],
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = ?self.code, message = %self.message, "REST call failed");
        }
        // A struct of an integer, a string and an empty array always serializes.
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(allow) = self.allow.as_deref() {
            if let Ok(value) = HeaderValue::from_str(allow) {
                headers.insert(ALLOW, value);
            }
        }
        // RFC 6750: a 401 says which scheme to use.
        if self.code == Code::Unauthenticated {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"petit\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_codes_as_grpc_gateway_does() {
        let cases = [
            (Code::Ok, 200),
            (Code::Cancelled, 499),
            (Code::Unknown, 500),
            (Code::InvalidArgument, 400),
            (Code::DeadlineExceeded, 504),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::Unauthenticated, 401),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 400),
            (Code::Aborted, 409),
            (Code::OutOfRange, 400),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DataLoss, 500),
        ];
        for (code, want) in cases {
            assert_eq!(http_status(code).as_u16(), want, "{code:?}");
        }
    }

    #[test]
    fn errors_carry_status_code_and_message() {
        let cases = [
            (
                RestError::from_grpc(Code::NotFound, "job 'x' not found"),
                404,
                5,
                "job 'x' not found",
            ),
            (
                RestError::invalid_argument("bad field"),
                400,
                3,
                "bad field",
            ),
            (
                RestError::no_route(&Method::GET, "/api/nope"),
                404,
                5,
                "no route for GET /api/nope",
            ),
            (
                RestError::method_not_allowed(&Method::PUT, "/api/jobs", &[Method::GET]),
                405,
                12,
                "method PUT is not allowed for /api/jobs (allowed: GET)",
            ),
            (
                RestError::body_too_large(10),
                413,
                8,
                "request body is larger than 10 bytes",
            ),
            (RestError::internal("broken"), 500, 13, "broken"),
        ];
        for (error, status, code, message) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            // Keys in grpc-gateway's order.
            let message = serde_json::to_string(message).expect("json");
            assert_eq!(
                serde_json::to_string(&error.body()).expect("json"),
                format!(r#"{{"code":{code},"message":{message},"details":[]}}"#),
            );
        }
    }

    #[tokio::test]
    async fn response_is_json_with_allow_on_405() {
        let response = RestError::method_not_allowed(
            &Method::DELETE,
            "/api/jobs/x",
            &[Method::GET, Method::POST],
        )
        .into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(response.headers()[ALLOW], "GET, POST");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["code"], 12);
        assert_eq!(body["details"], serde_json::json!([]));
    }
}
