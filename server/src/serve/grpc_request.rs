//! What a request must be before it reaches a gRPC service: of a gRPC content type
//! (anything else gets 415, as the gRPC spec asks, so that a stray HTTP client is not
//! answered with a 200 carrying a gRPC error), and made of messages within the size
//! limit (a larger one ends the call with RESOURCE_EXHAUSTED, the code the spec gives;
//! tonic's own check says OUT_OF_RANGE).

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use hyper::body::Frame;

/// The largest request message a gRPC service accepts (tonic's default limit, which
/// stays in place behind this one).
pub const MAX_REQUEST_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The middleware in front of the gRPC services (not the REST shim, which calls them in
/// process with its own body limit).
pub async fn check(request: Request, next: Next) -> Response {
    if !is_grpc(request.headers()) {
        return unsupported_media_type(&request);
    }
    let request = request.map(|body| {
        Body::new(LimitedMessages {
            inner: body,
            scanner: Scanner::new(MAX_REQUEST_MESSAGE_BYTES),
        })
    });
    next.run(request).await
}

/// `application/grpc`, `application/grpc+proto`, `application/grpc; charset=...`; not
/// `application/grpc-web`, which these services do not speak.
fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let value = value.trim().to_ascii_lowercase();
    match value.strip_prefix("application/grpc") {
        Some(rest) => rest.is_empty() || rest.starts_with('+') || rest.starts_with(';'),
        None => false,
    }
}

fn unsupported_media_type(request: &Request) -> Response {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let given = match &content_type {
        Some(ct) => format!("content type '{ct}'"),
        None => "no content type".to_string(),
    };
    let message = format!(
        "{} is a gRPC method and the request has {given}: gRPC clients send application/grpc (the REST API is under /api)",
        request.uri().path()
    );
    let body = serde_json::json!({
        "code": tonic::Code::InvalidArgument as i32,
        "message": message,
        "details": [],
    });
    let mut response = (StatusCode::UNSUPPORTED_MEDIA_TYPE, axum::Json(body)).into_response();
    // For a gRPC client that sent a wrong content type after all.
    response
        .headers_mut()
        .insert("grpc-status", HeaderValue::from_static("3"));
    response
}

/// A request body that fails with RESOURCE_EXHAUSTED at the first message whose
/// length prefix is over the limit, before any of it is buffered.
struct LimitedMessages {
    inner: Body,
    scanner: Scanner,
}

impl HttpBody for LimitedMessages {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    if let Err(TooLarge { length, limit }) = this.scanner.feed(data.chunk()) {
                        let status = tonic::Status::resource_exhausted(format!(
                            "request message of {length} bytes is over the limit of {limit} bytes"
                        ));
                        return Poll::Ready(Some(Err(Box::new(status))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(err)) => Poll::Ready(Some(Err(err.into()))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A message whose length prefix is over the limit.
#[derive(Debug, PartialEq, Eq)]
struct TooLarge {
    length: u64,
    limit: usize,
}

/// Follows the gRPC framing (1 flag byte, a 4-byte big-endian length, the message) over
/// the body's chunks, however they are split, looking only at the length prefixes:
/// constant memory, linear in the body.
#[derive(Debug)]
struct Scanner {
    limit: usize,
    state: ScanState,
}

#[derive(Debug)]
enum ScanState {
    /// Reading a prefix; `have` of its 5 bytes are in `bytes`.
    Prefix { bytes: [u8; 5], have: usize },
    /// Skipping the rest of a message.
    Message { remaining: u64 },
}

impl Scanner {
    fn new(limit: usize) -> Scanner {
        Scanner {
            limit,
            state: ScanState::Prefix {
                bytes: [0; 5],
                have: 0,
            },
        }
    }

    fn feed(&mut self, mut data: &[u8]) -> Result<(), TooLarge> {
        while !data.is_empty() {
            match &mut self.state {
                ScanState::Prefix { bytes, have } => {
                    let take = (5 - *have).min(data.len());
                    bytes[*have..*have + take].copy_from_slice(&data[..take]);
                    *have += take;
                    data = &data[take..];
                    if *have == 5 {
                        let length =
                            u64::from(u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]));
                        if length > self.limit as u64 {
                            return Err(TooLarge {
                                length,
                                limit: self.limit,
                            });
                        }
                        self.state = ScanState::Message { remaining: length };
                    }
                }
                ScanState::Message { remaining } => {
                    let skip = (*remaining).min(data.len() as u64);
                    *remaining -= skip;
                    // `skip` is at most `data.len()`, so it fits a usize.
                    data = &data[skip as usize..];
                }
            }
            if matches!(self.state, ScanState::Message { remaining: 0 }) {
                self.state = ScanState::Prefix {
                    bytes: [0; 5],
                    have: 0,
                };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: u32) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&len.to_be_bytes());
        out.resize(5 + len as usize, b'x');
        out
    }

    /// Feeds `body` split at every position into two chunks, and byte by byte.
    fn scan_every_split(body: &[u8], limit: usize) -> Vec<Result<(), TooLarge>> {
        let mut results = Vec::new();
        for at in 0..=body.len() {
            let mut s = Scanner::new(limit);
            results.push(s.feed(&body[..at]).and_then(|()| s.feed(&body[at..])));
        }
        let mut s = Scanner::new(limit);
        results.push(
            body.iter()
                .try_for_each(|b| s.feed(std::slice::from_ref(b))),
        );
        results
    }

    #[test]
    fn messages_within_the_limit_pass_however_split() {
        let cases: [&[u32]; 4] = [&[], &[0], &[10], &[3, 0, 10, 7]];
        for lengths in cases {
            let body: Vec<u8> = lengths.iter().flat_map(|&n| message(n)).collect();
            for result in scan_every_split(&body, 10) {
                assert_eq!(result, Ok(()), "{lengths:?}");
            }
        }
    }

    #[test]
    fn the_first_message_over_the_limit_fails_however_split() {
        let cases: [(&[u32], u64); 3] = [(&[11], 11), (&[3, 11], 11), (&[10, 0, 12, 2], 12)];
        for (lengths, length) in cases {
            let body: Vec<u8> = lengths.iter().flat_map(|&n| message(n)).collect();
            for result in scan_every_split(&body, 10) {
                assert_eq!(result, Err(TooLarge { length, limit: 10 }), "{lengths:?}");
            }
        }
        // The prefix alone is enough: nothing of the message need arrive.
        let mut s = Scanner::new(4 << 20);
        assert!(s.feed(&[0, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn grpc_content_types() {
        let cases = [
            (Some("application/grpc"), true),
            (Some("application/grpc+proto"), true),
            (Some("Application/GRPC; charset=utf-8"), true),
            (Some("application/grpc-web"), false),
            (Some("application/grpcx"), false),
            (Some("text/plain"), false),
            (Some("application/json"), false),
            (None, false),
        ];
        for (value, want) in cases {
            let mut headers = HeaderMap::new();
            if let Some(v) = value {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            }
            assert_eq!(is_grpc(&headers), want, "{value:?}");
        }
    }
}
