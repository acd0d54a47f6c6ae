//! One unary gRPC call made in process: the request message framed as gRPC, handed to
//! the tonic services' router with `oneshot` (no socket, no second hop), and the reply
//! unframed, with its status read from the trailers (or the headers of a trailers-only
//! reply).

use axum::body::Body;
use axum::Router;
use bytes::{Buf, Bytes};
use http::header::{CONTENT_TYPE, TE};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Version};
use http_body_util::BodyExt;
use percent_encoding::percent_decode;
use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::Code;
use tower::ServiceExt;

use super::error::RestError;

/// Length-prefixed message header: 1 byte compression flag, 4 bytes big-endian length.
const FRAME_HEADER: usize = 5;

/// Calls `grpc_path` (`/petit.v1.JobService/GetJob`) on `grpc` with `request`, and
/// decodes the reply as `output`. `metadata` is sent as request headers.
pub async fn unary(
    grpc: Router,
    grpc_path: &str,
    request: &DynamicMessage,
    output: &MessageDescriptor,
    metadata: HeaderMap,
) -> Result<DynamicMessage, RestError> {
    let frame = encode_frame(&request.encode_to_vec())?;
    let mut http_request = Request::builder()
        .method(Method::POST)
        .uri(grpc_path)
        .version(Version::HTTP_2)
        .body(Body::from(frame))
        .map_err(|e| RestError::internal(format!("cannot build the gRPC request: {e}")))?;
    let headers = http_request.headers_mut();
    headers.extend(metadata);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(TE, HeaderValue::from_static("trailers"));

    let response = match grpc.oneshot(http_request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    if parts.status != StatusCode::OK {
        return Err(RestError::from_grpc(
            code_from_http(parts.status),
            format!("the gRPC service answered HTTP {}", parts.status),
        ));
    }
    let collected = body
        .collect()
        .await
        .map_err(|e| RestError::internal(format!("cannot read the gRPC reply: {e}")))?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let (code, message) = status(&trailers)
        .or_else(|| status(&parts.headers))
        .unwrap_or((
            Code::Internal,
            "the gRPC reply has no grpc-status".to_string(),
        ));
    if code != Code::Ok {
        return Err(RestError::from_grpc(code, message));
    }
    let payload = decode_frame(collected.to_bytes()).map_err(RestError::internal)?;
    DynamicMessage::decode(output.clone(), payload)
        .map_err(|e| RestError::internal(format!("cannot decode the gRPC reply: {e}")))
}

fn encode_frame(payload: &[u8]) -> Result<Vec<u8>, RestError> {
    let length = u32::try_from(payload.len())
        .map_err(|_| RestError::invalid_argument("request message is too large"))?;
    let mut frame = Vec::with_capacity(FRAME_HEADER + payload.len());
    frame.push(0);
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(payload);
    Ok(frame)
}

/// The one uncompressed message of a unary reply.
fn decode_frame(mut body: Bytes) -> Result<Bytes, String> {
    if body.len() < FRAME_HEADER {
        return Err(format!(
            "the gRPC reply is {} bytes, too short for a message",
            body.len()
        ));
    }
    let compressed = body.get_u8();
    let length = body.get_u32() as usize;
    if compressed != 0 {
        return Err("the gRPC reply is compressed, which was not asked for".to_string());
    }
    if body.len() != length {
        return Err(format!(
            "the gRPC reply frame announces {length} bytes but carries {}",
            body.len()
        ));
    }
    Ok(body)
}

/// `grpc-status` and the percent-decoded `grpc-message` of a header or trailer map.
fn status(headers: &HeaderMap) -> Option<(Code, String)> {
    let code = headers.get("grpc-status")?;
    let code = Code::from_bytes(code.as_bytes());
    let message = headers
        .get("grpc-message")
        .map(|m| {
            percent_decode(m.as_bytes())
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    Some((code, message))
}

/// The gRPC code of a non-200 reply, per gRPC's "HTTP to gRPC status code mapping".
fn code_from_http(status: StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        for payload in [&b""[..], b"x", &[7u8; 300]] {
            let frame = encode_frame(payload).expect("frame");
            assert_eq!(frame[0], 0);
            assert_eq!(&frame[1..5], &(payload.len() as u32).to_be_bytes());
            assert_eq!(decode_frame(Bytes::from(frame)).expect("decode"), payload);
        }
    }

    #[test]
    fn bad_frames_are_refused() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "too short"),
            (b"\0\0\0", "too short"),
            (b"\x01\0\0\0\x01x", "compressed"),
            (b"\0\0\0\0\x05abc", "announces 5 bytes but carries 3"),
            (b"\0\0\0\0\x01ab", "announces 1 bytes but carries 2"),
        ];
        for (body, want) in cases {
            let err = decode_frame(Bytes::copy_from_slice(body)).expect_err("bad frame");
            assert!(err.contains(want), "{body:?}: {err}");
        }
    }

    #[test]
    fn status_reads_code_and_decodes_message() {
        type Headers = &'static [(&'static str, &'static str)];
        let cases: &[(Headers, Option<(Code, &str)>)] = &[
            (&[], None),
            (&[("grpc-status", "0")], Some((Code::Ok, ""))),
            (
                &[("grpc-status", "5"), ("grpc-message", "job%20%27%C3%A9%27")],
                Some((Code::NotFound, "job 'é'")),
            ),
            (&[("grpc-status", "99")], Some((Code::Unknown, ""))),
            (&[("grpc-status", "x")], Some((Code::Unknown, ""))),
        ];
        for (pairs, want) in cases {
            let mut headers = HeaderMap::new();
            for (k, v) in pairs.iter() {
                headers.insert(*k, HeaderValue::from_static(v));
            }
            let got = status(&headers);
            let want = want.map(|(c, m)| (c, m.to_string()));
            assert_eq!(got, want, "{pairs:?}");
        }
    }

    #[test]
    fn http_failures_map_to_codes() {
        let cases = [
            (400, Code::Internal),
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (404, Code::Unimplemented),
            (429, Code::Unavailable),
            (502, Code::Unavailable),
            (503, Code::Unavailable),
            (504, Code::Unavailable),
            (500, Code::Unknown),
        ];
        for (status, want) in cases {
            let status = StatusCode::from_u16(status).expect("status");
            assert_eq!(code_from_http(status), want, "{status}");
        }
    }
}
