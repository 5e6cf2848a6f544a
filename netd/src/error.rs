//! What an agent operation fails with: a kind (what the caller did wrong,
//! or the agent's own failure) and one clear line. The API layer decides
//! what HTTP status each kind gets (`api::status_of`).
use thiserror::Error;

#[derive(Debug, Error)]
pub enum AgentError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

pub type AgentResult<T> = Result<T, AgentError>;

pub fn invalid<T>(msg: impl Into<String>) -> AgentResult<T> {
    Err(AgentError::Invalid(msg.into()))
}

pub fn conflict<T>(msg: impl Into<String>) -> AgentResult<T> {
    Err(AgentError::Conflict(msg.into()))
}
