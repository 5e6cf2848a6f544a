//! The API server: axum routes on a Unix socket (mode 0600). Reads take
//! the agent's state for a moment; the hot writes run phased, side by side
//! (see `agent::shared`), each in a task of its own, so a client that goes
//! away never leaves one half done; the rest run exclusively.
use std::{os::unix::fs::PermissionsExt, path::Path, sync::Arc};

use anyhow::{Context, Result};
use axum::{
    extract::{rejection::JsonRejection, Path as UrlPath, Query, State},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::UnixListener;

use crate::{
    agent::SharedAgent,
    datapath::Sandbox,
    error::AgentError,
    schema::{
        ContainerAdd, ContainerView, Created, ErrorBody, Explain, NetworkConnect, NetworkCreate,
        NetworkDisconnect, NetworkView, Problems, Pruned, Removed, ResolvConf, StatusView,
    },
};

type Shared = Arc<SharedAgent>;

/// Runs a write in a task of its own: it completes even if the client
/// disconnects (axum drops the handler's future then).
async fn detached<T: Send + 'static>(
    f: impl std::future::Future<Output = Result<T, AgentError>> + Send + 'static,
) -> Result<T, AgentError> {
    tokio::spawn(f)
        .await
        .map_err(|e| AgentError::Internal(anyhow::anyhow!("the request's task failed: {e}")))?
}

struct ApiError(AgentError);

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        ApiError(e)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError(AgentError::Invalid(format!(
            "bad request body: {}",
            e.body_text()
        )))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            super::status_of(&self.0),
            Json(ErrorBody {
                message: self.0.to_string(),
            }),
        )
            .into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

pub fn router(agent: Shared) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/networks", get(list_networks).post(create_network))
        .route("/v1/networks/prune", post(prune_networks))
        .route(
            "/v1/networks/{name}",
            get(inspect_network).delete(remove_network),
        )
        .route("/v1/networks/{name}/connect", post(connect))
        .route("/v1/networks/{name}/disconnect", post(disconnect))
        .route("/v1/containers", get(list_containers).post(add_container))
        .route(
            "/v1/containers/{name}",
            get(inspect_container).delete(remove_container),
        )
        .route("/v1/reset", post(reset))
        .route("/v1/containers/{name}/resolv-conf", get(resolv_conf))
        .route("/v1/containers/{name}/check", get(check_container))
        .route("/v1/explain", post(explain))
        .route("/v1/monitor", get(monitor))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn(crate::metrics::track))
        .with_state(agent)
}

/// The datapath's verdict for one packet. The sandbox (a second load of
/// the programs with maps of its own) is built without the agent's lock;
/// copying the live maps into it and the walk hold it.
async fn explain(
    State(agent): State<Shared>,
    body: Result<Json<Explain>, JsonRejection>,
) -> ApiResult<Value> {
    let Json(req) = body?;
    let (bpffs, ct_size) = agent.lock().await.sandbox_params()?;
    let mut sandbox = tokio::task::spawn_blocking(move || Sandbox::load(&bpffs, ct_size))
        .await
        .map_err(|e| AgentError::Internal(e.into()))?
        .map_err(AgentError::from)?;
    Ok(Json(agent.lock().await.explain(&req, &mut sandbox)?))
}

#[derive(Deserialize)]
struct MonitorQuery {
    /// Comma-separated event types (default: all).
    types: Option<String>,
    container: Option<String>,
    network: Option<String>,
}

/// How often an idle monitor stream gets a heartbeat line: a client that
/// went away is noticed on the next write, and its event types released.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// Live datapath events, one JSON object per line, until the client goes.
async fn monitor(
    State(agent): State<Shared>,
    Query(mut q): Query<MonitorQuery>,
) -> Result<Response, ApiError> {
    let mut bits = 0;
    for t in q
        .types
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|t| !t.is_empty())
    {
        let Some((_, b)) = crate::monitor::TYPES.iter().find(|(n, _)| *n == t) else {
            return Err(AgentError::Invalid(format!(
                "unknown event type {t:?} (drop, flow, nat, policy)"
            ))
            .into());
        };
        bits |= b;
    }
    if bits == 0 {
        bits = crate::monitor::TYPES.iter().fold(0, |a, (_, b)| a | b);
    }
    let hub = {
        let agent = agent.state().await;
        q.container = q.container.map(|c| agent.container_name(&c)).transpose()?;
        q.network = q.network.map(|n| agent.network_name(&n)).transpose()?;
        agent.monitor_hub()
    };
    let sub = hub.subscribe(bits);
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = (sub, beat, q);
    let stream = futures::stream::unfold(state, move |(mut sub, mut beat, q)| async move {
        loop {
            let line = tokio::select! {
                ev = sub.events.recv() => match ev {
                    Ok(ev) => {
                        let wanted = ev.bits & bits != 0
                            && q.container.as_deref().is_none_or(|c| ev.involves_container(c))
                            && q.network.as_deref().is_none_or(|n| ev.involves_network(n));
                        if !wanted {
                            continue;
                        }
                        serde_json::to_string(&*ev).unwrap_or_default()
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        json!({"type": "lost", "events": n}).to_string()
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
                _ = beat.tick() => json!({"type": "heartbeat"}).to_string(),
            };
            let bytes = axum::body::Bytes::from(line + "\n");
            return Some((Ok::<_, std::convert::Infallible>(bytes), (sub, beat, q)));
        }
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// Only `/metrics`: what `--metrics ADDR:PORT` serves over TCP (the API
/// itself stays on the Unix socket, mode 0600).
pub fn metrics_router(agent: Shared) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn(crate::metrics::track))
        .with_state(agent)
}

/// Serves [`metrics_router`] on an already bound TCP listener.
pub async fn serve_metrics(agent: Shared, listener: tokio::net::TcpListener) -> Result<()> {
    axum::serve(listener, metrics_router(agent))
        .await
        .context("metrics server failed")
}

/// Prometheus text exposition of the agent's and the datapath's counters.
async fn metrics(State(agent): State<Shared>) -> Result<Response, ApiError> {
    let text = agent.state().await.metrics(&crate::metrics::API_LATENCY)?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        text,
    )
        .into_response())
}

/// Binds `RUN_DIR/netd.sock` (replacing a stale socket: the agent's lock on
/// the run dir says no other agent owns it), mode 0600, or 0660 for
/// `group`. Connections wait in the backlog until [`serve`] runs.
pub fn bind(socket: &Path, group: Option<nix::unistd::Gid>) -> Result<UnixListener> {
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)
        .with_context(|| format!("failed to bind {}", socket.display()))?;
    let mode = match group {
        None => 0o600,
        Some(gid) => {
            nix::unistd::chown(socket, None, Some(gid))
                .with_context(|| format!("failed to give {} to group {gid}", socket.display()))?;
            0o660
        }
    };
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set the mode of {}", socket.display()))?;
    Ok(listener)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    agent: Shared,
    listener: UnixListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router(agent))
        .with_graceful_shutdown(shutdown)
        .await
        .context("API server failed")
}

async fn status(State(agent): State<Shared>) -> ApiResult<StatusView> {
    Ok(Json(agent.state().await.status()?))
}

async fn list_networks(State(agent): State<Shared>) -> ApiResult<Vec<NetworkView>> {
    Ok(Json(agent.state().await.list_networks()))
}

async fn create_network(
    State(agent): State<Shared>,
    body: Result<Json<NetworkCreate>, JsonRejection>,
) -> ApiResult<Created> {
    let Json(req) = body?;
    let net = detached(async move { agent.create_network(req).await }).await?;
    Ok(Json(Created { id: net.id }))
}

async fn inspect_network(
    State(agent): State<Shared>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<NetworkView> {
    Ok(Json(agent.state().await.inspect_network(&name)?))
}

async fn remove_network(
    State(agent): State<Shared>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<Removed<String>> {
    let removed = detached(async move { agent.remove_network(&name).await }).await?;
    Ok(Json(Removed { removed }))
}

async fn prune_networks(State(agent): State<Shared>) -> ApiResult<Pruned> {
    let networks_deleted = detached(async move { agent.prune_networks().await }).await?;
    Ok(Json(Pruned { networks_deleted }))
}

async fn connect(
    State(agent): State<Shared>,
    UrlPath(name): UrlPath<String>,
    body: Result<Json<NetworkConnect>, JsonRejection>,
) -> ApiResult<ContainerView> {
    let Json(req) = body?;
    let c = {
        let agent = agent.clone();
        detached(async move { agent.connect(&name, req).await }).await?
    };
    Ok(Json(agent.state().await.container_view(&c)))
}

async fn disconnect(
    State(agent): State<Shared>,
    UrlPath(name): UrlPath<String>,
    body: Result<Json<NetworkDisconnect>, JsonRejection>,
) -> ApiResult<ContainerView> {
    let Json(req) = body?;
    let c = {
        let agent = agent.clone();
        detached(async move { agent.disconnect(&name, req).await }).await?
    };
    Ok(Json(agent.state().await.container_view(&c)))
}

async fn list_containers(State(agent): State<Shared>) -> ApiResult<Vec<ContainerView>> {
    Ok(Json(agent.state().await.list_containers()))
}

async fn add_container(
    State(agent): State<Shared>,
    body: Result<Json<ContainerAdd>, JsonRejection>,
) -> ApiResult<Created> {
    let Json(req) = body?;
    let c = detached(async move { agent.add_container(req).await }).await?;
    Ok(Json(Created { id: c.id }))
}

async fn inspect_container(
    State(agent): State<Shared>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<ContainerView> {
    Ok(Json(agent.state().await.inspect_container(&name)?))
}

async fn resolv_conf(
    State(agent): State<Shared>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<ResolvConf> {
    Ok(Json(agent.state().await.resolv_conf(&name)?))
}

/// Removes everything, answers, then ends the agent: there is nothing
/// left for it to serve.
async fn reset(State(agent): State<Shared>) -> ApiResult<Removed> {
    let removed = agent.lock().await.reset().await.map_err(AgentError::from)?;
    tokio::spawn(async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        std::process::exit(0);
    });
    Ok(Json(Removed { removed }))
}

#[derive(Deserialize)]
struct CheckQuery {
    ifname: Option<String>,
}

/// What the kernel lacks of a container's stored state (`Problems`).
async fn check_container(
    State(agent): State<Shared>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<CheckQuery>,
) -> ApiResult<Problems> {
    let problems = agent
        .lock()
        .await
        .check_container(&name, q.ifname.as_deref())
        .await?;
    Ok(Json(Problems { problems }))
}

#[derive(Deserialize)]
struct RemoveQuery {
    #[serde(default)]
    force: bool,
}

async fn remove_container(
    State(agent): State<Shared>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<RemoveQuery>,
) -> ApiResult<Removed> {
    let removed = detached(async move { agent.remove_container(&name, q.force).await }).await?;
    Ok(Json(Removed { removed }))
}
