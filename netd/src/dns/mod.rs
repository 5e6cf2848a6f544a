//! Embedded DNS for user-defined networks (issue 7): the agent hands the
//! name service a fresh `DnsView` after every change; the service answers
//! on `127.0.0.11:53` inside the netns of each container on a user network
//! (as Docker's embedded DNS does: behind no host firewall), and on each
//! served network's gateway, port 53, UDP and TCP.
//!
//! - `records`: the name table (who asks, which names it may see);
//! - `answer`: one query in, one decision out (answer, forward, drop);
//! - `server`: the UDP/TCP listeners of one network or one container;
//! - `netns`: sockets made inside a container's network namespace;
//! - `forward`: the upstream resolvers, with a time limit;
//! - `ratelimit`: per-source token bucket and in-flight caps.
mod answer;
pub mod forward;
mod netns;
mod ratelimit;
pub mod records;
mod server;

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
};

use ipnet::Ipv4Net;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use self::{
    ratelimit::{Limiter, Slot},
    records::Table,
    server::Listener,
};

/// A network as the name service sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsNetwork {
    pub id: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// The IPv6 subnet of a dual-stack network (for reverse lookups).
    pub subnet6: Option<ipnet::Ipv6Net>,
    pub internal: bool,
    /// False for the default `bridge` network, which has no name service.
    pub serve: bool,
}

/// One container's names on one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsName {
    pub network_id: String,
    pub container: String,
    pub aliases: Vec<String>,
    /// 0.0.0.0 on an IPv6-only network (no A record).
    pub ip: Ipv4Addr,
    /// The endpoint's IPv6 address (AAAA and ip6.arpa PTR records).
    pub ip6: Option<std::net::Ipv6Addr>,
    /// A container of another host (an overlay network's endpoint): its
    /// names resolve here, but it never asks here.
    pub remote: bool,
}

/// Where a container on a served network is answered: the address every
/// container netns has on `lo` (127.0.0.0/8 is local there), as Docker's.
pub const CONTAINER_RESOLVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// A container netns that gets a listener on `CONTAINER_RESOLVER`, and who
/// asks through it: the container's endpoint `ip` on its first served
/// network `network_id` (so the answers are those the gateway listener of
/// that network gives to that address); its IPv6 address on an IPv6-only
/// network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsResolver {
    pub container_id: String,
    pub netns: PathBuf,
    pub network_id: String,
    pub ip: std::net::IpAddr,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsView {
    pub networks: Vec<DnsNetwork>,
    pub names: Vec<DnsName>,
    /// One per container netns with a served network (containers sharing a
    /// netns share its listener).
    pub resolvers: Vec<DnsResolver>,
    /// Where names netd does not know are forwarded.
    pub upstreams: Vec<SocketAddr>,
}

/// Forwarded queries in flight over all sources.
const MAX_FORWARDS: usize = 512;

#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct Stats {
    queries: Counter,
    answered: Counter,
    forwarded: Counter,
    upstream_failures: Counter,
    rate_limited: Counter,
    malformed: Counter,
    /// Replies sent, by response code (`RCODES`, then "other").
    rcodes: [Counter; RCODES.len() + 1],
}

/// Response codes counted one by one (index = code); the rest are "other".
const RCODES: [&str; 6] = [
    "noerror", "formerr", "servfail", "nxdomain", "notimp", "refused",
];

impl Stats {
    /// Counts a reply about to be sent by its response code.
    fn replied(&self, reply: &[u8]) {
        let code = reply.get(3).map_or(usize::MAX, |b| usize::from(b & 0x0f));
        self.rcodes[code.min(RCODES.len())].inc();
    }
}

/// What the listeners share: replaced whole on every sync.
struct Shared {
    table: RwLock<Arc<Table>>,
    upstreams: RwLock<Arc<Vec<SocketAddr>>>,
    limiter: Limiter,
    forwards: Arc<Semaphore>,
    stats: Stats,
}

impl Shared {
    fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn upstreams(&self) -> Arc<Vec<SocketAddr>> {
        self.upstreams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A per-source slot and a global permit for one forwarded query.
    fn begin_forward(&self, src: std::net::IpAddr) -> Option<(Slot, OwnedSemaphorePermit)> {
        let slot = self.limiter.begin(src)?;
        let permit = self.forwards.clone().try_acquire_owned().ok()?;
        Some((slot, permit))
    }
}

/// The name service: the current table, one listener per served network
/// (on its gateway) and one per container netns (on 127.0.0.11).
pub struct NameService {
    shared: Arc<Shared>,
    /// Network id -> (gateway, listener).
    listeners: BTreeMap<String, (Ipv4Addr, Listener)>,
    /// Container id -> (netns path, listener inside it).
    in_containers: BTreeMap<String, (PathBuf, Listener)>,
    /// Off: only the records change (an agent on the in-memory kernel).
    listen: bool,
}

impl Default for NameService {
    fn default() -> Self {
        Self::new()
    }
}

impl NameService {
    pub fn new() -> Self {
        NameService {
            shared: Arc::new(Shared {
                table: RwLock::new(Arc::new(Table::default())),
                upstreams: RwLock::new(Arc::new(Vec::new())),
                limiter: Limiter::default(),
                forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
                stats: Stats::default(),
            }),
            listeners: BTreeMap::new(),
            in_containers: BTreeMap::new(),
            listen: true,
        }
    }

    /// A name service that keeps its records but opens no sockets.
    #[cfg(test)]
    pub fn records_only() -> Self {
        NameService {
            listen: false,
            ..Self::new()
        }
    }

    /// Takes the current networks and names; starts and stops listeners.
    /// The new records answer from the next query on. Outside a tokio
    /// runtime only the records change.
    pub fn sync(&mut self, view: DnsView) -> anyhow::Result<()> {
        let served: BTreeMap<String, Ipv4Addr> = view
            .networks
            .iter()
            // An IPv6-only network has no IPv4 gateway to listen on; its
            // containers ask 127.0.0.11 inside their netns.
            .filter(|n| n.serve && !n.gateway.is_unspecified())
            .map(|n| (n.id.clone(), n.gateway))
            .collect();
        // Never forward to ourselves.
        let upstreams: Vec<SocketAddr> = view
            .upstreams
            .iter()
            .filter(|u| !served.values().any(|gw| u.ip() == *gw))
            .copied()
            .collect();
        *self.shared.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Table::new(&view));
        *self
            .shared
            .upstreams
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(upstreams);
        let resolvers: BTreeMap<String, PathBuf> = view
            .resolvers
            .iter()
            .map(|r| (r.container_id.clone(), r.netns.clone()))
            .collect();
        // Stop listeners of removed networks (or whose gateway moved), and
        // of containers that are gone or left every served network (their
        // sockets close, which also lets go of their netns).
        self.listeners
            .retain(|id, (gw, _)| served.get(id) == Some(gw));
        self.in_containers
            .retain(|id, (ns, _)| resolvers.get(id) == Some(ns));
        if !self.listen || tokio::runtime::Handle::try_current().is_err() {
            return Ok(());
        }
        for (id, gateway) in served {
            if !self.listeners.contains_key(&id) {
                let l = server::start(self.shared.clone(), id.clone(), gateway);
                self.listeners.insert(id, (gateway, l));
            }
        }
        for (id, ns) in resolvers {
            if !self.in_containers.contains_key(&id) {
                let l = server::start_in_netns(self.shared.clone(), id.clone(), ns.clone());
                self.in_containers.insert(id, (ns, l));
            }
        }
        Ok(())
    }

    /// Queries by what the asker got: a reply of each response code, or
    /// none (rate limited, or dropped as malformed).
    pub fn answers(&self) -> Vec<(&'static str, u64)> {
        let s = &self.shared.stats;
        let mut out: Vec<(&'static str, u64)> = RCODES
            .iter()
            .zip(&s.rcodes)
            .map(|(name, n)| (*name, n.get()))
            .collect();
        out.push(("other", s.rcodes[RCODES.len()].get()));
        out.push(("rate-limited", s.rate_limited.get()));
        out.push(("dropped", s.malformed.get()));
        out
    }

    /// Queries received, forwarded, and forwards no upstream answered.
    pub fn totals(&self) -> (u64, u64, u64) {
        let s = &self.shared.stats;
        (
            s.queries.get(),
            s.forwarded.get(),
            s.upstream_failures.get(),
        )
    }

    /// Counters for `netd status`.
    pub fn stats(&self) -> crate::schema::DnsStatus {
        let s = &self.shared.stats;
        crate::schema::DnsStatus {
            listeners: self.listeners.len(),
            container_listeners: self.in_containers.len(),
            container_listeners_bound: self
                .in_containers
                .values()
                .filter(|(_, l)| l.bound())
                .count(),
            upstreams: self
                .shared
                .upstreams()
                .iter()
                .map(|u| u.to_string())
                .collect(),
            queries: s.queries.get(),
            answered: s.answered.get(),
            forwarded: s.forwarded.get(),
            upstream_failures: s.upstream_failures.get(),
            rate_limited: s.rate_limited.get(),
            malformed: s.malformed.get(),
        }
    }
}
