//! The versioned HTTP/JSON API on `RUN_DIR/netd.sock`, and its client.
//! The bodies it carries are [`crate::schema`]'s; what HTTP status an
//! agent error gets is decided here ([`status_of`]) and nowhere else.
pub mod client;
pub mod server;

use axum::http::StatusCode;

use crate::error::AgentError;

/// The HTTP status of an agent error (the API's and the Docker driver's).
pub fn status_of(e: &AgentError) -> StatusCode {
    match e {
        AgentError::NotFound(_) => StatusCode::NOT_FOUND,
        AgentError::Conflict(_) => StatusCode::CONFLICT,
        AgentError::Invalid(_) => StatusCode::BAD_REQUEST,
        AgentError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod wire;
