//! Plain HTTP/1.1 GETs to the agent: over its API socket, or over TCP from
//! inside a namespace (`--metrics ADDR:PORT`). One request per connection.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::netns::{join, spawn_in};

/// A response: status code, headers (lower-cased names), body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn exchange<S: Read + Write>(s: S, path: &str) -> anyhow::Result<Response> {
    request(s, "GET", path, "")
}

fn request<S: Read + Write>(
    mut s: S,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<Response> {
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: netd\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).context("reading the response")?;
    let text = String::from_utf8(raw).context("response is not UTF-8")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in {text:?}"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        anyhow::bail!("chunked responses are not expected from the agent");
    }
    Ok(Response {
        status,
        headers,
        body: body.to_string(),
    })
}

/// GET `path` over the agent's Unix socket.
pub fn get_unix(socket: &Path, path: &str) -> anyhow::Result<Response> {
    let s = UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    exchange(s, path)
}

/// POST `body` to `path` over a Unix socket (e.g. the Docker driver's).
pub fn post_unix(socket: &Path, path: &str, body: &str) -> anyhow::Result<Response> {
    let s = UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    request(s, "POST", path, body)
}

/// GET `path` from `addr` over TCP, from inside netns `ns`.
pub fn get_tcp(ns: &str, addr: SocketAddr, path: &str) -> anyhow::Result<Response> {
    let path = path.to_string();
    join(spawn_in(ns, move || {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .with_context(|| format!("connecting to {addr}"))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        exchange(s, &path)
    }))
}
