//! The agent's API as netd-cni uses it: bounded calls, and failures turned
//! into CNI errors (an unreachable or silent agent is "try again later").
use std::{future::Future, path::Path, time::Duration};

use serde::Serialize;
use serde_json::Value;

use super::error::{CniError, AGENT_REFUSED, TRY_AGAIN_LATER};
use crate::api::{
    client::{ApiStatus, Client},
    types::{ContainerAdd, NetworkConnect, NetworkCreate, NetworkDisconnect},
};

/// How long one call may take before the runtime is told to retry.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A failed call: the HTTP status when the agent answered.
#[derive(Debug)]
pub struct Failure {
    pub status: Option<u16>,
    pub error: CniError,
}

impl Failure {
    pub fn not_found(&self) -> bool {
        self.status == Some(404)
    }
}

impl From<Failure> for CniError {
    fn from(f: Failure) -> Self {
        f.error
    }
}

pub type ApiResult<T> = Result<T, Failure>;

/// Percent-encodes everything but `[A-Za-z0-9._-]` for a path segment or
/// query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

pub struct AgentApi {
    client: Client,
    socket: String,
}

impl AgentApi {
    pub fn new(socket: &Path) -> Self {
        Self {
            client: Client::new(socket),
            socket: socket.display().to_string(),
        }
    }

    async fn call(
        &self,
        what: &str,
        fut: impl Future<Output = anyhow::Result<Value>>,
    ) -> ApiResult<Value> {
        let unreachable = |detail: String| {
            Failure {
            status: None,
            error: CniError::new(
                TRY_AGAIN_LATER,
                format!(
                    "cannot reach the netd agent at {} (is `netd daemon` running? the CNI config's \"socket\" names its API socket)",
                    self.socket
                ),
            )
            .with_details(detail),
        }
        };
        match tokio::time::timeout(CALL_TIMEOUT, fut).await {
            Err(_) => Err(unreachable(format!(
                "{what}: no answer within {} s",
                CALL_TIMEOUT.as_secs()
            ))),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => match e.downcast_ref::<ApiStatus>() {
                Some(s) => Err(Failure {
                    status: Some(s.status),
                    error: CniError::new(
                        AGENT_REFUSED,
                        format!("netd refused to {what}: {}", s.message),
                    ),
                }),
                None => Err(unreachable(format!("{what}: {e:#}"))),
            },
        }
    }

    async fn get(&self, what: &str, path: &str) -> ApiResult<Value> {
        self.call(what, self.client.get(path)).await
    }

    async fn post<B: Serialize>(&self, what: &str, path: &str, body: &B) -> ApiResult<Value> {
        self.call(what, self.client.post(path, body)).await
    }

    pub async fn status(&self) -> ApiResult<Value> {
        self.get("report its status", "/v1/status").await
    }

    pub async fn network(&self, name: &str) -> ApiResult<Value> {
        self.get(
            &format!("find network {name}"),
            &format!("/v1/networks/{}", enc(name)),
        )
        .await
    }

    pub async fn create_network(&self, req: &NetworkCreate) -> ApiResult<Value> {
        self.post(&format!("create network {}", req.name), "/v1/networks", req)
            .await
    }

    pub async fn containers(&self) -> ApiResult<Vec<Value>> {
        let v = self.get("list containers", "/v1/containers").await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    pub async fn container(&self, id: &str) -> ApiResult<Value> {
        self.get(
            "inspect the container",
            &format!("/v1/containers/{}", enc(id)),
        )
        .await
    }

    pub async fn add_container(&self, req: &ContainerAdd) -> ApiResult<String> {
        let v = self
            .post(
                &format!("add container {}", req.name),
                "/v1/containers",
                req,
            )
            .await?;
        Ok(v["Id"].as_str().unwrap_or_default().to_string())
    }

    pub async fn connect(&self, network: &str, req: &NetworkConnect) -> ApiResult<Value> {
        self.post(
            &format!("connect the container to {network}"),
            &format!("/v1/networks/{}/connect", enc(network)),
            req,
        )
        .await
    }

    pub async fn disconnect(&self, network: &str, req: &NetworkDisconnect) -> ApiResult<Value> {
        self.post(
            &format!("disconnect the container from {network}"),
            &format!("/v1/networks/{}/disconnect", enc(network)),
            req,
        )
        .await
    }

    pub async fn remove_container(&self, id: &str) -> ApiResult<Value> {
        self.call(
            "remove the container",
            self.client
                .delete(&format!("/v1/containers/{}?force=true", enc(id))),
        )
        .await
    }

    pub async fn check(&self, id: &str, ifname: &str) -> ApiResult<Vec<String>> {
        let v = self
            .get(
                "check the container",
                &format!("/v1/containers/{}/check?ifname={}", enc(id), enc(ifname)),
            )
            .await?;
        Ok(v["Problems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect())
    }
}
