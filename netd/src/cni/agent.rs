//! The agent's API as netd-cni uses it: bounded calls, and failures turned
//! into CNI errors (an unreachable or silent agent is "try again later").
use std::{future::Future, path::Path, time::Duration};

use serde::{de::DeserializeOwned, Serialize};

use super::error::{CniError, AGENT_REFUSED, TRY_AGAIN_LATER};
use crate::{
    api::client::{ApiStatus, Client},
    schema::{
        ContainerAdd, ContainerView, Created, NetworkConnect, NetworkCreate, NetworkDisconnect,
        NetworkView, Problems, Removed,
    },
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

    async fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = anyhow::Result<T>>,
    ) -> ApiResult<T> {
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

    async fn get<T: DeserializeOwned>(&self, what: &str, path: &str) -> ApiResult<T> {
        self.call(what, self.client.get(path)).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        body: &B,
    ) -> ApiResult<T> {
        self.call(what, self.client.post(path, body)).await
    }

    /// Does the agent answer? (CNI STATUS)
    pub async fn status(&self) -> ApiResult<()> {
        self.get::<serde::de::IgnoredAny>("report its status", "/v1/status")
            .await
            .map(|_| ())
    }

    pub async fn network(&self, name: &str) -> ApiResult<NetworkView> {
        self.get(
            &format!("find network {name}"),
            &format!("/v1/networks/{}", enc(name)),
        )
        .await
    }

    pub async fn create_network(&self, req: &NetworkCreate) -> ApiResult<Created> {
        self.post(&format!("create network {}", req.name), "/v1/networks", req)
            .await
    }

    pub async fn containers(&self) -> ApiResult<Vec<ContainerView>> {
        self.get("list containers", "/v1/containers").await
    }

    pub async fn container(&self, id: &str) -> ApiResult<ContainerView> {
        self.get(
            "inspect the container",
            &format!("/v1/containers/{}", enc(id)),
        )
        .await
    }

    pub async fn add_container(&self, req: &ContainerAdd) -> ApiResult<String> {
        let created: Created = self
            .post(
                &format!("add container {}", req.name),
                "/v1/containers",
                req,
            )
            .await?;
        Ok(created.id)
    }

    pub async fn connect(&self, network: &str, req: &NetworkConnect) -> ApiResult<ContainerView> {
        self.post(
            &format!("connect the container to {network}"),
            &format!("/v1/networks/{}/connect", enc(network)),
            req,
        )
        .await
    }

    pub async fn disconnect(
        &self,
        network: &str,
        req: &NetworkDisconnect,
    ) -> ApiResult<ContainerView> {
        self.post(
            &format!("disconnect the container from {network}"),
            &format!("/v1/networks/{}/disconnect", enc(network)),
            req,
        )
        .await
    }

    pub async fn remove_container(&self, id: &str) -> ApiResult<Removed> {
        self.call(
            "remove the container",
            self.client
                .delete(&format!("/v1/containers/{}?force=true", enc(id))),
        )
        .await
    }

    pub async fn check(&self, id: &str, ifname: &str) -> ApiResult<Vec<String>> {
        let p: Problems = self
            .get(
                "check the container",
                &format!("/v1/containers/{}/check?ifname={}", enc(id), enc(ifname)),
            )
            .await?;
        Ok(p.problems)
    }
}
