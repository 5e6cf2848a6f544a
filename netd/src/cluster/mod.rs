//! The cluster: overlay networks every agent of a cluster sees, kept in
//! etcd (`--cluster-store etcd://HOST:PORT[,...]`).
//!
//! - `keys`: the key layout; `records`: the values.
//! - `view`: the agent's mirror of the store (snapshot + watch).
//! - `store`: the seam, the store's operations the agent uses
//!   (transactions where hosts race, leases, snapshot, watch);
//!   `etcd` implements it, `fake` (tests only) in memory with faults.
//! - `desired`: what the datapath must hold, from the view.
//!
//! The embedded store (redb) stays the truth for everything local; the
//! cluster store holds what hosts share: overlay network definitions and
//! their VNIs, address claims, endpoints with their host, and each host's
//! tunnel address (the last two on the host's lease).
pub mod desired;
pub mod etcd;
#[cfg(test)]
pub mod fake;
pub mod keys;
pub mod reclaim;
pub mod records;
pub mod store;
pub mod view;

use std::{
    net::{Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket},
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{bail, Context, Result};

/// Lease of a host's registration, in seconds: a host that stops renewing
/// it disappears from the others this long after.
pub const DEFAULT_LEASE_TTL: u32 = 10;

/// Seconds a host may be away (unregistered) before the others give back
/// the overlay addresses it held (`--cluster-reclaim-after`; 0: never).
pub const DEFAULT_RECLAIM_AFTER: u32 = 86_400;

/// First VNI given to overlay networks (lower ones are left to others).
pub const FIRST_VNI: u32 = 4096;
/// The largest VXLAN network identifier (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// The cluster flags of `netd daemon`, as given.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// `http://HOST:PORT` of each etcd endpoint (from [`parse_store_url`]).
    pub endpoints: Vec<String>,
    pub advertise: Option<Ipv4Addr>,
    pub lease_ttl: u32,
    /// Seconds (0: never), see [`DEFAULT_RECLAIM_AFTER`].
    pub reclaim_after: u32,
}

impl ClusterSettings {
    /// Resolves what was left out: this host's id (kept in `state_dir`)
    /// and tunnel address.
    pub fn resolve(&self, state_dir: &Path) -> Result<ClusterConfig> {
        let advertise = match self.advertise {
            Some(ip) => ip,
            None => route_source(&self.endpoints[0])?,
        };
        Ok(ClusterConfig {
            endpoints: self.endpoints.clone(),
            advertise,
            host_id: host_id(state_dir)?,
            hostname: hostname(),
            lease_ttl: self.lease_ttl,
            reclaim_after: (self.reclaim_after > 0)
                .then(|| Duration::from_secs(u64::from(self.reclaim_after))),
        })
    }
}

/// How the daemon joins the cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// `http://HOST:PORT` of each etcd endpoint.
    pub endpoints: Vec<String>,
    /// This host's tunnel address (`--advertise-addr`, or the address the
    /// host reaches the first endpoint from).
    pub advertise: Ipv4Addr,
    /// This host's id in the cluster (kept in the state dir).
    pub host_id: String,
    pub hostname: String,
    pub lease_ttl: u32,
    /// How long another host may be away before this one gives back the
    /// addresses it held (`None`: never).
    pub reclaim_after: Option<Duration>,
}

/// `etcd://HOST:PORT[,HOST:PORT...]` → `http://HOST:PORT` each.
pub fn parse_store_url(s: &str) -> Result<Vec<String>, String> {
    let Some(rest) = s.strip_prefix("etcd://") else {
        return Err(format!(
            "cluster store {s:?} is not an etcd://HOST:PORT[,HOST:PORT...] URL"
        ));
    };
    let mut out = Vec::new();
    for part in rest.split(',') {
        let part = part.trim().trim_end_matches('/');
        let port_ok = part.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok {
            return Err(format!(
                "cluster store endpoint {part:?} needs HOST:PORT (etcd's client port is usually 2379)"
            ));
        }
        out.push(format!("http://{part}"));
    }
    Ok(out)
}

/// The local address packets to `endpoint` (`http://HOST:PORT`) leave
/// from: what the kernel's routes pick (a connected UDP socket; nothing is
/// sent).
pub fn route_source(endpoint: &str) -> Result<Ipv4Addr> {
    let hostport = endpoint.trim_start_matches("http://");
    let target: SocketAddr = hostport
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve cluster store endpoint {hostport}"))?
        .find(SocketAddr::is_ipv4)
        .with_context(|| format!("cluster store endpoint {hostport} has no IPv4 address"))?;
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    sock.connect(target).with_context(|| {
        format!("no route to cluster store endpoint {target}; give --advertise-addr")
    })?;
    match sock.local_addr()?.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_unspecified() && !ip.is_loopback() => Ok(ip),
        ip => bail!(
            "this host reaches the cluster store from {ip}, which other hosts cannot reach; give --advertise-addr"
        ),
    }
}

/// This host's cluster id: made once, kept in `STATE_DIR/host-id`.
pub fn host_id(state_dir: &Path) -> Result<String> {
    let path = state_dir.join("host-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if is_host_id(s.trim()) => return Ok(s.trim().to_string()),
        Ok(_) => bail!(
            "{} does not hold a host id (32 hex digits); remove it to get a new one",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let id = crate::model::new_id()[..32].to_string();
    let tmp = state_dir.join("host-id.tmp");
    std::fs::write(&tmp, format!("{id}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

fn is_host_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The host name (UTS namespace), for people reading `netd status`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The connection as the follower task last saw it (for `netd status` and
/// for writes that need the lease).
#[derive(Clone, Debug, Default)]
pub struct Session {
    pub connected: bool,
    /// The lease this host's keys are on (0: none yet).
    pub lease: i64,
    pub last_error: Option<String>,
    /// When the store was last reached (RFC 3339).
    pub last_contact: Option<String>,
    /// Sessions started (registrations).
    pub sessions: u64,
    /// This host's endpoints the last session could not publish again (their
    /// address was given to another container while this host was away).
    pub unpublished: Vec<String>,
}

/// The cluster side of a running agent.
#[derive(Clone)]
pub struct Cluster {
    pub config: ClusterConfig,
    pub store: Arc<dyn store::ClusterStore>,
    pub session: Arc<Mutex<Session>>,
}

impl Cluster {
    pub fn session(&self) -> Session {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut Session)) {
        f(&mut self.session.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The lease to put this host's keys on, or why writes cannot be made
    /// now. While a session is being made again the last lease is still
    /// tried: the store itself says (by a timeout) whether it answers.
    pub fn lease(&self) -> Result<i64, String> {
        let s = self.session();
        if s.lease != 0 {
            Ok(s.lease)
        } else {
            Err(format!(
                "the cluster store is unreachable ({}); overlay networks keep forwarding, but \
                 changes to them wait until it is back",
                s.last_error.as_deref().unwrap_or("not connected yet")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        assert_eq!(
            parse_store_url("etcd://10.0.0.1:2379,etcd2:2379").unwrap(),
            vec!["http://10.0.0.1:2379", "http://etcd2:2379"]
        );
        assert!(parse_store_url("http://10.0.0.1:2379").is_err());
        assert!(parse_store_url("etcd://10.0.0.1").is_err());
        assert!(parse_store_url("etcd://:2379").is_err());
        assert!(parse_store_url("etcd://a:0").is_err());
        assert!(parse_store_url("etcd://").is_err());
    }

    #[test]
    fn host_id_is_kept() {
        let dir = std::env::temp_dir().join(format!("netd-hostid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = host_id(&dir).unwrap();
        assert!(is_host_id(&a));
        assert_eq!(host_id(&dir).unwrap(), a);
        std::fs::write(dir.join("host-id"), "junk").unwrap();
        assert!(host_id(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
