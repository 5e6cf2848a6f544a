//! The seam between the agent and the cluster store: the operations the
//! overlay code and the cluster session need, each a whole transaction
//! (reads and compares with the writes), so the agent never holds a
//! store-side lock. `etcd` implements them on etcd's v3 API; the
//! in-memory `fake` (tests only) implements them with fault injection.
//!
//! Outages: every operation fails (with an error, within a bounded time)
//! while the store cannot be reached; a [`Watch`] ends with an error and
//! [`ClusterStore::keep_alive`] returns. The agent then keeps forwarding
//! with its last view and the session starts again (`agent::follow`).
use std::{net::Ipv4Addr, time::Duration};

use anyhow::Result;

use super::{
    records::{AddressClaim, EndpointRecord, HostRecord, NetworkRecord},
    view::{Change, View},
};

/// What a network creation found.
#[derive(Debug, PartialEq, Eq)]
pub enum Created {
    Done,
    /// Another network has this name.
    NameTaken,
    /// The networks changed since they were read: read again and retry.
    Raced,
}

/// What an address claim found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claimed {
    Done,
    /// Someone else holds it.
    Taken,
    /// The network is gone from the store.
    NoNetwork,
}

/// One change: put (key, value) or delete (key, empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub put: bool,
    pub key: String,
    pub value: Vec<u8>,
}

impl Event {
    pub fn change(&self) -> Change<'_> {
        if self.put {
            Change::Put(&self.key, &self.value)
        } else {
            Change::Delete(&self.key)
        }
    }
}

/// A watch on the whole key layout (`keys::PREFIX`).
#[async_trait::async_trait]
pub trait Watch: Send {
    /// The next batch of changes and the revision it brings the view to;
    /// an error when the watch broke (lost connection, compaction).
    async fn next(&mut self) -> Result<(Vec<Event>, i64)>;
}

/// The cluster store as the agent uses it.
#[async_trait::async_trait]
pub trait ClusterStore: Send + Sync {
    /// Everything below the prefix, and the revision it was read at.
    async fn snapshot(&self) -> Result<View>;

    /// The overlay networks and the revision of the last change among
    /// them (what [`ClusterStore::create_network`] compares).
    async fn networks(&self) -> Result<(i64, Vec<NetworkRecord>)>;

    /// Creates `net` if nothing changed among the networks since `seen`
    /// (of [`ClusterStore::networks`]) and its name and VNI are free.
    async fn create_network(&self, net: &NetworkRecord, seen: i64) -> Result<Created>;

    /// Removes network `id` (with its name and VNI) unless an address on
    /// it is still taken (by a container on any host). `Ok(false)`: it is
    /// in use.
    async fn remove_network(&self, id: &str, name: &str, vni: u32) -> Result<bool>;

    /// Addresses taken on network `net`, read now.
    async fn used_addresses(&self, net: &str) -> Result<Vec<Ipv4Addr>>;

    /// Takes `ep.ip` on its network for `claim` and publishes the endpoint
    /// on `lease`, at once: only if the address is free and the network
    /// exists.
    async fn claim_address(
        &self,
        ep: &EndpointRecord,
        claim: &AddressClaim,
        lease: i64,
    ) -> Result<Claimed>;

    /// Publishes an endpoint again (after a new lease) if its address is
    /// still `claim`'s, or claims it again if it is free. `Ok(false)`:
    /// another container holds the address now.
    async fn republish(
        &self,
        ep: &EndpointRecord,
        claim: &AddressClaim,
        lease: i64,
    ) -> Result<bool>;

    /// Gives an address back (and withdraws its endpoint), if `claim` still
    /// holds it.
    async fn release_address(&self, net: &str, ip: Ipv4Addr, claim: &AddressClaim) -> Result<()>;

    /// Gives back an address of a host gone for good (see `reclaim`): only
    /// while that host is not registered and the claim is still `claim`.
    /// `Ok(true)`: given back.
    async fn reclaim_address(&self, net: &str, ip: Ipv4Addr, claim: &AddressClaim) -> Result<bool>;

    /// A new lease of `ttl` seconds: the keys put on it go when it is not
    /// renewed for that long.
    async fn grant(&self, ttl: i64) -> Result<i64>;

    /// Puts this host's record on `lease`.
    async fn register(&self, host: &HostRecord, lease: i64) -> Result<()>;

    /// Renews `lease` every `period` until it fails (no answer within
    /// `patience`, a lost connection, or the lease ended: then its keys are
    /// gone); returns why.
    async fn keep_alive(&self, lease: i64, period: Duration, patience: Duration) -> anyhow::Error;

    /// Follows every change after revision `from`.
    async fn watch(&self, from: i64) -> Result<Box<dyn Watch>>;
}
