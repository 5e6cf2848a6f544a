//! Errors the API returns: each maps to an HTTP status and one clear line.
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

impl AgentError {
    pub fn status(&self) -> u16 {
        match self {
            AgentError::NotFound(_) => 404,
            AgentError::Conflict(_) => 409,
            AgentError::Invalid(_) => 400,
            AgentError::Internal(_) => 500,
        }
    }
}

pub type AgentResult<T> = Result<T, AgentError>;

pub fn invalid<T>(msg: impl Into<String>) -> AgentResult<T> {
    Err(AgentError::Invalid(msg.into()))
}

pub fn conflict<T>(msg: impl Into<String>) -> AgentResult<T> {
    Err(AgentError::Conflict(msg.into()))
}
