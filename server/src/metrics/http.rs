//! `GET /metrics`: behind the same token check as the API when tokens are on (any
//! role may scrape), open otherwise.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::{Metrics, CONTENT_TYPE as OPENMETRICS};
use crate::auth::Authenticator;
use crate::engine::Engine;

/// The path Prometheus scrapes.
pub const PATH: &str = "/metrics";

#[derive(Clone)]
struct Scrape {
    metrics: Arc<Metrics>,
    engine: Engine,
    auth: Authenticator,
}

pub fn router(metrics: Arc<Metrics>, engine: Engine, auth: Authenticator) -> Router {
    Router::new().route(PATH, get(scrape)).with_state(Scrape {
        metrics,
        engine,
        auth,
    })
}

async fn scrape(State(s): State<Scrape>, headers: HeaderMap) -> Response {
    if let Err(status) = s.auth.check(PATH, &headers) {
        let code = match status.code() {
            tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        };
        let mut response = (code, format!("{}\n", status.message())).into_response();
        if code == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"petit\""),
            );
        }
        return response;
    }
    let body = s.metrics.render(&s.engine);
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
    response
}
