//! The driver's HTTP server: `POST /Plugin.Activate`, `POST
//! /NetworkDriver.<Call>`, JSON bodies, answers typed
//! `application/vnd.docker.plugins.v1.2+json`. Every failure, an unknown
//! call included, is an `{"Err": "..."}` body carrying netd's one-line
//! message, which the docker CLI shows. Calls take the agent lock like API
//! calls, so they see and leave a consistent state.
use std::{
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{bail, Context, Result};
use axum::{
    body::Bytes,
    extract::{Path as UrlPath, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Router,
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};
use tokio::net::UnixListener;
use tracing::{debug, info, warn};

use super::types;
use crate::{agent::SharedAgent, error::AgentError};

type Shared = Arc<SharedAgent>;

/// The media type every answer carries.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

fn answer(status: StatusCode, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], bytes).into_response()
}

fn failure(call: &str, e: &AgentError) -> Response {
    let status = crate::api::status_of(e);
    warn!(call, error = %e, "docker driver call refused");
    answer(status, &json!({ "Err": e.to_string() }))
}

/// The request body as `T` (an empty body as `{}`).
fn body<T: DeserializeOwned>(call: &str, bytes: &Bytes) -> Result<T, AgentError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(text)
        .map_err(|e| AgentError::Invalid(format!("bad {call} request from Docker: {e}")))
}

pub fn router(agent: Shared) -> Router {
    Router::new()
        .route("/{call}", post(dispatch))
        .fallback(|| async { failure("?", &AgentError::NotFound(
            "not a Docker plugin call (expected POST /Plugin.Activate or /NetworkDriver.<Call>)".into(),
        )) })
        .with_state(agent)
}

async fn dispatch(
    State(agent): State<Shared>,
    UrlPath(call): UrlPath<String>,
    bytes: Bytes,
) -> Response {
    debug!(call, body = %String::from_utf8_lossy(&bytes), "docker driver call");
    match handle(&agent, &call, &bytes).await {
        Ok(v) => answer(StatusCode::OK, &v),
        Err(e) => failure(&call, &e),
    }
}

async fn handle(agent: &Shared, call: &str, bytes: &Bytes) -> Result<Value, AgentError> {
    let v = match call {
        "Plugin.Activate" => json!({ "Implements": ["NetworkDriver"] }),
        "NetworkDriver.GetCapabilities" => {
            json!({ "Scope": "local", "ConnectivityScope": "local" })
        }
        "NetworkDriver.CreateNetwork" => {
            let req: types::CreateNetwork = body(call, bytes)?;
            agent.lock().await.docker_create_network(req).await?;
            json!({})
        }
        "NetworkDriver.DeleteNetwork" => {
            let req: types::NetworkRef = body(call, bytes)?;
            agent
                .lock()
                .await
                .docker_delete_network(&req.network_id)
                .await?;
            json!({})
        }
        "NetworkDriver.CreateEndpoint" => {
            let req: types::CreateEndpoint = body(call, bytes)?;
            let a = agent.lock().await.docker_create_endpoint(req).await?;
            to_json(&a)?
        }
        "NetworkDriver.DeleteEndpoint" => {
            let req: types::EndpointRef = body(call, bytes)?;
            agent.lock().await.docker_delete_endpoint(&req).await?;
            json!({})
        }
        "NetworkDriver.EndpointOperInfo" => {
            let req: types::EndpointRef = body(call, bytes)?;
            json!({ "Value": agent.lock().await.docker_endpoint_info(&req)? })
        }
        "NetworkDriver.Join" => {
            let req: types::Join = body(call, bytes)?;
            let a = agent.lock().await.docker_join(req).await?;
            to_json(&a)?
        }
        "NetworkDriver.Leave" => {
            let req: types::EndpointRef = body(call, bytes)?;
            agent.lock().await.docker_leave(&req)?;
            json!({})
        }
        "NetworkDriver.ProgramExternalConnectivity" => {
            let req: types::Program = body(call, bytes)?;
            agent.lock().await.docker_program(req)?;
            json!({})
        }
        "NetworkDriver.RevokeExternalConnectivity" => {
            let req: types::EndpointRef = body(call, bytes)?;
            agent.lock().await.docker_revoke(&req)?;
            json!({})
        }
        // Discovery events concern multi-host drivers; nothing to do.
        "NetworkDriver.DiscoverNew" | "NetworkDriver.DiscoverDelete" => json!({}),
        "NetworkDriver.AllocateNetwork" | "NetworkDriver.FreeNetwork" => {
            return Err(AgentError::Invalid(
                "netd is a local-scope driver: swarm networks are not supported".into(),
            ))
        }
        other => {
            return Err(AgentError::NotFound(format!(
                "netd's Docker driver does not implement {other}"
            )))
        }
    };
    Ok(v)
}

fn to_json(v: &impl Serialize) -> Result<Value, AgentError> {
    serde_json::to_value(v).map_err(|e| AgentError::Internal(e.into()))
}

/// Fails when some live process answers on `socket` (checked before the
/// agent starts, so such a start changes nothing, and again at bind).
pub fn refuse_if_served(socket: &Path) -> Result<()> {
    if UnixStream::connect(socket).is_ok() {
        bail!(
            "another process serves the Docker driver socket {}; stop it or give --docker-plugin another path (or none)",
            socket.display()
        );
    }
    Ok(())
}

/// Binds the driver socket. A socket some live process still answers on
/// is refused (two drivers must not share a name); a stale one is replaced.
pub fn bind(socket: &Path) -> Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
    }
    refuse_if_served(socket)?;
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket).with_context(|| {
        format!(
            "failed to bind the Docker driver socket {}",
            socket.display()
        )
    })?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves the driver until `shutdown` resolves, then removes the socket
/// (dockerd waits ~15 s per call on a stale one).
pub async fn serve(
    agent: Shared,
    listener: UnixListener,
    socket: PathBuf,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    info!(socket = %socket.display(), driver = %super::driver_name(&socket), "Docker network driver ready");
    let ours = inode(&socket);
    let result = axum::serve(listener, router(agent))
        .with_graceful_shutdown(shutdown)
        .await
        .context("Docker driver server failed");
    // Only our own socket: a successor may have bound the path meanwhile.
    if ours.is_some() && inode(&socket) == ours {
        let _ = std::fs::remove_file(&socket);
    }
    result
}

fn inode(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}
