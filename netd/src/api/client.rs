//! A minimal HTTP/1 client for the agent's Unix socket. Answers are read
//! as the [`crate::schema`] type the caller names (or as a
//! `serde_json::Value`).
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, Method, Request};
use hyper_util::rt::TokioIo;
use serde::{de::DeserializeOwned, Serialize};
use tokio::net::UnixStream;

use crate::schema::ErrorBody;

/// The agent answered with an error status (the CLI shows only the message).
#[derive(Debug)]
pub struct ApiStatus {
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for ApiStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiStatus {}

pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::GET, path, None::<&()>).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::DELETE, path, None::<&()>).await
    }

    /// A fresh HTTP/1 connection to the agent's socket.
    async fn connect(&self) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
        let stream = UnixStream::connect(&self.socket).await.with_context(|| {
            format!(
                "cannot reach the netd agent at {} (is `netd daemon` running? set -H or NETD_HOST)",
                self.socket.display()
            )
        })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// GET `path` and hand each line of the streamed answer to `line`
    /// until it returns false or the agent ends the stream.
    pub async fn stream(&self, path: &str, mut line: impl FnMut(&str) -> bool) -> Result<()> {
        let mut sender = self.connect().await?;
        let req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header("host", "netd")
            .body(Full::new(Bytes::new()))?;
        let resp = sender
            .send_request(req)
            .await
            .context("the agent closed the connection")?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = body.collect().await?.to_bytes();
            let msg = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| e.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            anyhow::bail!("{msg}");
        }
        let mut pending = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.context("the agent ended the stream")?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            pending.extend_from_slice(data);
            while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                let text = String::from_utf8_lossy(&pending[..nl]).into_owned();
                pending.drain(..=nl);
                if !line(&text) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let mut sender = self.connect().await?;
        let bytes = match body {
            Some(b) => serde_json::to_vec(b)?,
            None => Vec::new(),
        };
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "netd")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))?;
        let resp = sender
            .send_request(req)
            .await
            .context("the agent closed the connection")?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            let msg = serde_json::from_slice::<ErrorBody>(&body)
                .map(|e| e.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            return Err(ApiStatus {
                status: status.as_u16(),
                message: msg,
            }
            .into());
        }
        serde_json::from_slice(&body).map_err(|e| anyhow!("bad answer from the agent: {e}"))
    }
}
