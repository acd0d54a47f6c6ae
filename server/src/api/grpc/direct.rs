//! `GetJob` and `ListJobs` over gRPC, answered from the bytes each job's cache entry
//! keeps (as the REST shim answers them from the entries' JSON). Through tonic, every
//! call cloned each job's message into the response, encoded it, and dropped it: half
//! the instructions of a `ListJobs` of 10 jobs (callgrind). The logic is the services'
//! own (`job_entry`, `job_page`); only the wire form is written here, the same bytes
//! prost writes for the response (a test holds them equal). These routes sit beside
//! tonic's in the same router, behind the same token check and request checks.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use hyper::body::Frame;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;
use tonic::Status;

use petit_proto::v1 as pb;

use super::job_cache::{JobEntry, Shape};
use super::PetitApi;

/// The paths these routes answer; everything else of `JobService` stays with tonic.
pub const GET_JOB: &str = "/petit.v1.JobService/GetJob";
pub const LIST_JOBS: &str = "/petit.v1.JobService/ListJobs";

/// The two routes, for merging into the gRPC router (under its layers).
pub fn routes(api: PetitApi) -> Router {
    Router::new()
        .route(GET_JOB, any(get_job))
        .route(LIST_JOBS, any(list_jobs))
        .with_state(api)
}

async fn get_job(State(api): State<PetitApi>, request: Request) -> Response {
    let answer = async {
        let request: pb::GetJobRequest = read_message(request).await?;
        let entry = api.job_entry(&request.job_id)?;
        Ok(get_job_response(&entry))
    };
    reply(answer.await)
}

async fn list_jobs(State(api): State<PetitApi>, request: Request) -> Response {
    let answer = async {
        let request: pb::ListJobsRequest = read_message(request).await?;
        let (entries, shape, token) = api.job_page(&request)?;
        Ok(list_jobs_response(&entries, shape, &token))
    };
    reply(answer.await)
}

/// `GetJobResponse { job }`, encoded, with the gRPC message prefix.
fn get_job_response(entry: &JobEntry) -> Bytes {
    let job = entry.proto(Shape::Full);
    let len = field_len(job.len());
    let mut out = framed(len);
    put_field(&mut out, 1, job);
    out.freeze()
}

/// `ListJobsResponse { jobs, next_page_token }`, encoded, with the message prefix.
fn list_jobs_response(entries: &[std::sync::Arc<JobEntry>], shape: Shape, token: &str) -> Bytes {
    let jobs: Vec<&[u8]> = entries.iter().map(|e| e.proto(shape)).collect();
    let mut len: usize = jobs.iter().map(|j| field_len(j.len())).sum();
    if !token.is_empty() {
        len += field_len(token.len());
    }
    let mut out = framed(len);
    for job in jobs {
        put_field(&mut out, 1, job);
    }
    if !token.is_empty() {
        put_field(&mut out, 2, token.as_bytes());
    }
    out.freeze()
}

/// The bytes of a length-delimited field of `len` bytes (its tag is one byte).
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

fn put_field(out: &mut BytesMut, tag: u32, value: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(value.len() as u64, out);
    out.put_slice(value);
}

/// A buffer holding the 5-byte prefix of an uncompressed message of `len` bytes.
fn framed(len: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(5 + len);
    out.put_u8(0);
    out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    out
}

/// The one message of a unary request, as tonic reads it: uncompressed (petitd
/// accepts no encoding), whole, and decodable. The body is already bounded by
/// `serve::grpc_request` (RESOURCE_EXHAUSTED over the limit).
async fn read_message<M: Message + Default>(request: Request) -> Result<M, Status> {
    if let Some(encoding) = request.headers().get("grpc-encoding") {
        if encoding.as_bytes() != b"identity" {
            let mut status = Status::unimplemented(format!(
                "Content is compressed with `{}` which isn't supported",
                String::from_utf8_lossy(encoding.as_bytes())
            ));
            status
                .metadata_mut()
                .insert("grpc-accept-encoding", "identity".parse().expect("ascii"));
            return Err(status);
        }
    }
    let body = request
        .into_body()
        .collect()
        .await
        .map_err(|e| Status::from_error(e.into()))?
        .to_bytes();
    let mut rest = &body[..];
    if rest.is_empty() {
        return Err(Status::internal("Missing request message."));
    }
    if rest.len() < 5 {
        return Err(Status::internal(
            "protocol error: the request ends inside a message prefix",
        ));
    }
    let compressed = rest.get_u8();
    let len = rest.get_u32() as usize;
    if compressed != 0 {
        return Err(Status::internal(
            "protocol error: received message with compressed-flag but no grpc-encoding was specified",
        ));
    }
    if rest.len() < len {
        return Err(Status::internal(format!(
            "protocol error: the request ends {} bytes into a message of {len}",
            rest.len()
        )));
    }
    M::decode(&rest[..len]).map_err(|e| Status::internal(e.to_string()))
}

/// A unary gRPC response: the message, then `grpc-status: 0` in the trailers; or a
/// failure as trailers only, as tonic sends it.
fn reply(answer: Result<Bytes, Status>) -> Response {
    match answer {
        Ok(message) => {
            let mut response = Response::new(Body::new(Unary {
                message: Some(message),
                done: false,
            }));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            response
        }
        Err(status) => {
            let (parts, ()) = status.into_http::<()>().into_parts();
            Response::from_parts(parts, Body::empty())
        }
    }
}

/// One data frame, then the OK trailers.
struct Unary {
    message: Option<Bytes>,
    done: bool,
}

impl HttpBody for Unary {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(message) = self.message.take() {
            return Poll::Ready(Some(Ok(Frame::data(message))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        self.done = true;
        let mut trailers = HeaderMap::with_capacity(1);
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use crate::api::grpc::job_cache::tests::entry;

    /// What tonic would send: the response message encoded by prost, prefixed.
    fn prost_framed(message: &impl Message) -> Vec<u8> {
        let body = message.encode_to_vec();
        let mut out = vec![0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn get_job_writes_the_bytes_prost_writes() {
        let entry = entry(true, false);
        let expected = prost_framed(&pb::GetJobResponse {
            job: Some(entry.job(Shape::Full).clone()),
        });
        assert_eq!(get_job_response(&entry)[..], expected[..]);
    }

    #[test]
    fn list_jobs_writes_the_bytes_prost_writes_in_both_views_with_and_without_a_token() {
        let entries: Vec<Arc<JobEntry>> = vec![
            Arc::new(entry(true, false)),
            Arc::new(entry(false, true)),
            Arc::new(entry(true, true)),
        ];
        for shape in [Shape::Basic, Shape::Full] {
            for token in ["", "b2Zmc2V0OjM"] {
                let expected = prost_framed(&pb::ListJobsResponse {
                    jobs: entries.iter().map(|e| e.job(shape).clone()).collect(),
                    next_page_token: token.to_string(),
                });
                let written = list_jobs_response(&entries, shape, token);
                assert_eq!(written[..], expected[..], "{shape:?}, token {token:?}");
            }
        }
        let empty = prost_framed(&pb::ListJobsResponse::default());
        assert_eq!(list_jobs_response(&[], Shape::Basic, "")[..], empty[..]);
    }

    #[test]
    fn a_job_of_more_than_127_bytes_gets_a_longer_length() {
        // A full job with tasks is well over one byte of length: the varint grows.
        let entry = entry(true, false);
        assert!(entry.proto(Shape::Full).len() > 127);
        assert_eq!(
            field_len(entry.proto(Shape::Full).len()),
            1 + 2 + entry.proto(Shape::Full).len()
        );
    }
}
