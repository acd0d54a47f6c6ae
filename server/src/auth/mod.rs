//! Who may call what: API tokens with a role each, kept as hashes in a tokens file
//! (`tokens`), the live set that follows that file's changes (`keyring`), which role
//! each call needs (`access`), and the middleware in front of every gRPC method and
//! REST route (`check`). Health stays open; with no tokens file configured every caller
//! is the anonymous admin (the loopback default, see `petitd --help`).

mod access;
mod keyring;
mod tokens;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

pub use access::{required_role, Access, METHOD_ROLES};
pub use keyring::Keyring;
pub use tokens::{create_token, hex, list_tokens, revoke_token, Role, TokenEntry, TokensError};

/// The caller of a request, as the services see it (an extension of every request that
/// passed the check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name; [`Caller::ANONYMOUS`] when authentication is off.
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// The name calls are recorded under when petitd runs without tokens.
    pub const ANONYMOUS: &'static str = "anonymous";

    fn anonymous() -> Caller {
        Caller {
            name: Caller::ANONYMOUS.to_string(),
            role: Role::Admin,
        }
    }

    /// The caller of a tonic request (anonymous when the request did not pass through
    /// the check, as in unit tests that call a service directly).
    pub fn of<T>(request: &tonic::Request<T>) -> Caller {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(Caller::anonymous)
    }
}

/// What the middleware checks against: the keyring, or nothing (authentication off).
#[derive(Clone, Default)]
pub struct Authenticator {
    keyring: Option<Arc<Keyring>>,
}

impl Authenticator {
    pub fn new(keyring: Option<Arc<Keyring>>) -> Authenticator {
        Authenticator { keyring }
    }

    pub fn enabled(&self) -> bool {
        self.keyring.is_some()
    }

    /// The caller of a request to `path` with these headers, or the status that refuses
    /// it.
    pub fn check(&self, path: &str, headers: &http::HeaderMap) -> Result<Caller, tonic::Status> {
        let needed = match required_role(path) {
            Access::Open => return Ok(Caller::anonymous()),
            Access::Needs(role) => role,
        };
        let Some(keyring) = &self.keyring else {
            return Ok(Caller::anonymous());
        };
        let caller = keyring.authenticate(headers.get(http::header::AUTHORIZATION))?;
        if caller.role < needed {
            tracing::warn!(token = %caller.name, role = %caller.role, call = %path, "refused: the token's role is not enough");
            return Err(tonic::Status::permission_denied(format!(
                "token '{}' has role {}; {} needs {}",
                caller.name,
                caller.role,
                call_name(path),
                needed
            )));
        }
        Ok(caller)
    }
}

/// `/petit.v1.JobService/TriggerJob` -> `TriggerJob`.
pub fn call_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The middleware: refuses the request with a gRPC status (which the REST shim maps to
/// 401 / 403), or passes it on with its [`Caller`] attached.
pub async fn middleware(
    State(auth): State<Authenticator>,
    mut request: Request,
    next: Next,
) -> Response {
    match auth.check(request.uri().path(), request.headers()) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(status) => {
            let (parts, ()) = status.into_http::<()>().into_parts();
            Response::from_parts(parts, axum::body::Body::empty())
        }
    }
}
