//! Embedded DNS for user-defined networks (issue 7): the agent hands the
//! name service a fresh `DnsView` after every change; the service answers
//! on each served network's gateway, port 53, UDP and TCP.
//!
//! - `records`: the name table (who asks, which names it may see);
//! - `answer`: one query in, one decision out (answer, forward, drop);
//! - `server`: the UDP/TCP listeners of one network;
//! - `forward`: the upstream resolvers, with a time limit;
//! - `ratelimit`: per-source token bucket and in-flight caps.
mod answer;
pub mod forward;
mod ratelimit;
pub mod records;
mod server;

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
};

use ipnet::Ipv4Net;
use serde_json::{json, Value};
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
    pub ip: Ipv4Addr,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsView {
    pub networks: Vec<DnsNetwork>,
    pub names: Vec<DnsName>,
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

/// The name service: the current table plus one listener per served
/// network.
pub struct NameService {
    shared: Arc<Shared>,
    listeners: BTreeMap<String, Listener>,
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
        }
    }

    /// Takes the current networks and names; starts and stops listeners.
    /// The new records answer from the next query on. Outside a tokio
    /// runtime only the records change.
    pub fn sync(&mut self, view: DnsView) -> anyhow::Result<()> {
        let served: BTreeMap<String, Ipv4Addr> = view
            .networks
            .iter()
            .filter(|n| n.serve)
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
        // Stop listeners of removed networks (or whose gateway moved).
        self.listeners
            .retain(|id, l| served.get(id) == Some(&l.gateway));
        if tokio::runtime::Handle::try_current().is_err() {
            return Ok(());
        }
        for (id, gateway) in served {
            if !self.listeners.contains_key(&id) {
                let l = server::start(self.shared.clone(), id.clone(), gateway);
                self.listeners.insert(id, l);
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
    pub fn stats(&self) -> Value {
        let s = &self.shared.stats;
        json!({
            "listeners": self.listeners.len(),
            "upstreams": self.shared.upstreams().iter().map(|u| u.to_string()).collect::<Vec<_>>(),
            "queries": s.queries.get(),
            "answered": s.answered.get(),
            "forwarded": s.forwarded.get(),
            "upstream_failures": s.upstream_failures.get(),
            "rate_limited": s.rate_limited.get(),
            "malformed": s.malformed.get(),
        })
    }
}
