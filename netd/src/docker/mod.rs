//! The Docker remote network driver (libnetwork's plugin protocol) on a
//! Unix socket: dockerd finds it by name under `/run/docker/plugins`
//! (`netd.sock` is driver `netd`) and drives netd networks and endpoints
//! with `docker network create -d netd`, `docker run --network`, ...
//!
//! - `types`: the request and answer bodies, as dockerd 20.10 sends them.
//! - `server`: the HTTP server (axum) that turns calls into agent
//!   operations (`agent::docker`) and errors into `{"Err": "..."}`.
//! - `names`: with `--docker-host`, asks dockerd which container each
//!   endpoint belongs to and names it so.
pub mod names;
pub mod server;
pub mod types;

/// The driver name dockerd knows a socket by: its base name without `.sock`.
pub fn driver_name(socket: &std::path::Path) -> String {
    let name = socket
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.strip_suffix(".sock").unwrap_or(&name).to_string()
}
