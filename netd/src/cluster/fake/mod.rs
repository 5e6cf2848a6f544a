//! An in-memory cluster store for unit tests: one [`FakeCluster`] shared
//! by the agents of a test, each through its own [`FakeClient`] (a host's
//! connection), with etcd's semantics where the agent relies on them
//! (`kv`: revisions, leases, watch history; `txn`: the transactions).
//!
//! Every request yields once before it runs, so that requests of agents
//! running side by side interleave between a read and the transaction
//! that compares it, as they do against etcd.
//!
//! Fault injection:
//! - [`FakeCluster::cut_off`] / [`FakeCluster::set_down`]: a host cannot
//!   reach the store, or no host can: requests fail, watches end, lease
//!   renewals stop (the leases themselves live until
//!   [`FakeCluster::expire_leases_of`]);
//! - [`FakeCluster::expire_leases_of`]: a host's leases end (its TTL
//!   passed without renewal) and the keys on them go;
//! - [`FakeCluster::before`]: a competing host's write that lands just
//!   before the next request of a kind (winning a claim, a name, a race);
//! - [`FakeCluster::drop_watches`]: a host's watches break.
mod kv;
pub mod txn;

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use anyhow::{anyhow, bail, Result};

pub use kv::Kv;

use super::{
    records::{AddressClaim, EndpointRecord, HostRecord, NetworkRecord},
    store::{Claimed, ClusterStore, Created, Event, Watch},
    view::View,
};

/// The kinds of request a fault hook can precede.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Snapshot,
    Networks,
    CreateNetwork,
    RemoveNetwork,
    UsedAddresses,
    ClaimAddress,
    Republish,
    ReleaseAddress,
    ReclaimAddress,
    Grant,
    Register,
    Watch,
}

type Hook = Box<dyn FnOnce(&mut Kv) + Send>;

#[derive(Default)]
struct Inner {
    kv: Kv,
    down: bool,
    cut_off: BTreeSet<String>,
    hooks: Vec<(Request, Hook)>,
    /// Requests served, per kind (for tests that count them).
    served: Vec<(String, Request)>,
}

/// The store all hosts of a test share.
#[derive(Clone)]
pub struct FakeCluster {
    inner: Arc<Mutex<Inner>>,
    /// Bumped by every fault: lease renewals look again.
    faults: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for FakeCluster {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeCluster {
    pub fn new() -> Self {
        FakeCluster {
            inner: Default::default(),
            faults: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fault(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.lock());
        self.faults.send_modify(|n| *n += 1);
    }

    /// The connection of host `host` (its id, as the agent's config has
    /// it).
    pub fn client(&self, host: &str) -> FakeClient {
        FakeClient {
            cluster: self.clone(),
            host: host.to_string(),
        }
    }

    /// `host` can (`false`) or cannot (`true`) reach the store.
    pub fn cut_off(&self, host: &str, cut: bool) {
        self.fault(|i| {
            if cut {
                i.cut_off.insert(host.to_string());
                i.kv.drop_watches(host);
            } else {
                i.cut_off.remove(host);
            }
        });
    }

    /// The whole store is down (`true`) or back (`false`).
    pub fn set_down(&self, down: bool) {
        self.fault(|i| {
            i.down = down;
            if down {
                i.kv.drop_all_watches();
            }
        });
    }

    /// `host`'s leases end; the keys on them go.
    pub fn expire_leases_of(&self, host: &str) {
        self.fault(|i| i.kv.expire_leases_of(host));
    }

    /// `host`'s watches break.
    pub fn drop_watches(&self, host: &str) {
        self.fault(|i| i.kv.drop_watches(host));
    }

    /// Runs `f` on the store just before the next request of kind `what`
    /// (of any host): another host's write landing first.
    pub fn before(&self, what: Request, f: impl FnOnce(&mut Kv) + Send + 'static) {
        self.lock().hooks.push((what, Box::new(f)));
    }

    /// What the store holds now.
    pub fn view(&self) -> View {
        txn::snapshot(&self.lock().kv)
    }

    /// Works on the store directly (as another host would, unhindered by
    /// faults).
    pub fn with<R>(&self, f: impl FnOnce(&mut Kv) -> R) -> R {
        f(&mut self.lock().kv)
    }

    /// How many requests of kind `what` `host` made.
    pub fn served(&self, host: &str, what: Request) -> usize {
        self.lock()
            .served
            .iter()
            .filter(|(h, r)| h == host && *r == what)
            .count()
    }
}

/// One host's connection to the [`FakeCluster`].
pub struct FakeClient {
    cluster: FakeCluster,
    host: String,
}

impl FakeClient {
    /// Runs one request of kind `what` on the store, after the hooks
    /// waiting for it; fails while this host cannot reach the store.
    async fn request<R: Send>(
        &self,
        what: Request,
        f: impl FnOnce(&mut Kv, &str) -> R + Send,
    ) -> Result<R> {
        tokio::task::yield_now().await;
        let mut inner = self.cluster.lock();
        if inner.down || inner.cut_off.contains(&self.host) {
            bail!(
                "cannot reach the cluster store (fake: {what:?} from {})",
                self.host
            );
        }
        while let Some(pos) = inner.hooks.iter().position(|(r, _)| *r == what) {
            let (_, hook) = inner.hooks.remove(pos);
            hook(&mut inner.kv);
        }
        inner.served.push((self.host.clone(), what));
        Ok(f(&mut inner.kv, &self.host))
    }
}

#[async_trait::async_trait]
impl ClusterStore for FakeClient {
    async fn snapshot(&self) -> Result<View> {
        self.request(Request::Snapshot, |kv, _| txn::snapshot(kv))
            .await
    }

    async fn networks(&self) -> Result<(i64, Vec<NetworkRecord>)> {
        self.request(Request::Networks, |kv, _| txn::networks(kv))
            .await
    }

    async fn create_network(&self, net: &NetworkRecord, seen: i64) -> Result<Created> {
        self.request(Request::CreateNetwork, |kv, _| {
            txn::create_network(kv, net, seen)
        })
        .await?
    }

    async fn remove_network(&self, id: &str, name: &str, vni: u32) -> Result<bool> {
        self.request(Request::RemoveNetwork, |kv, _| {
            txn::remove_network(kv, id, name, vni)
        })
        .await?
    }

    async fn used_addresses(&self, net: &str) -> Result<Vec<Ipv4Addr>> {
        self.request(Request::UsedAddresses, |kv, _| txn::used_addresses(kv, net))
            .await
    }

    async fn claim_address(
        &self,
        ep: &EndpointRecord,
        claim: &AddressClaim,
        lease: i64,
    ) -> Result<Claimed> {
        self.request(Request::ClaimAddress, |kv, _| {
            txn::claim_address(kv, ep, claim, lease)
        })
        .await?
    }

    async fn republish(
        &self,
        ep: &EndpointRecord,
        claim: &AddressClaim,
        lease: i64,
    ) -> Result<bool> {
        self.request(Request::Republish, |kv, _| {
            txn::republish(kv, ep, claim, lease)
        })
        .await?
    }

    async fn release_address(&self, net: &str, ip: Ipv4Addr, claim: &AddressClaim) -> Result<()> {
        self.request(Request::ReleaseAddress, |kv, _| {
            txn::release_address(kv, net, ip, claim)
        })
        .await?
    }

    async fn reclaim_address(&self, net: &str, ip: Ipv4Addr, claim: &AddressClaim) -> Result<bool> {
        self.request(Request::ReclaimAddress, |kv, _| {
            txn::reclaim_address(kv, net, ip, claim)
        })
        .await?
    }

    async fn grant(&self, _ttl: i64) -> Result<i64> {
        self.request(Request::Grant, |kv, host| kv.grant(host))
            .await
    }

    async fn register(&self, host: &HostRecord, lease: i64) -> Result<()> {
        self.request(Request::Register, |kv, _| txn::register(kv, host, lease))
            .await?
    }

    /// Returns once this host cannot reach the store or the lease ended
    /// (the fake's leases end only by [`FakeCluster::expire_leases_of`]).
    async fn keep_alive(
        &self,
        lease: i64,
        _period: Duration,
        _patience: Duration,
    ) -> anyhow::Error {
        loop {
            let mut faults = {
                let inner = self.cluster.lock();
                if inner.down || inner.cut_off.contains(&self.host) {
                    return anyhow!("lease renewal failed: cannot reach the cluster store (fake)");
                }
                if !inner.kv.lease_alive(lease) {
                    return anyhow!("the lease ended");
                }
                self.cluster.faults.subscribe()
            };
            if faults.changed().await.is_err() {
                return anyhow!("the fake cluster store is gone");
            }
        }
    }

    async fn watch(&self, from: i64) -> Result<Box<dyn Watch>> {
        let rx = self
            .request(Request::Watch, |kv, host| kv.watch(host, from))
            .await?;
        Ok(Box::new(FakeWatch { rx }))
    }
}

struct FakeWatch {
    rx: tokio::sync::mpsc::UnboundedReceiver<kv::Batch>,
}

#[async_trait::async_trait]
impl Watch for FakeWatch {
    async fn next(&mut self) -> Result<(Vec<Event>, i64)> {
        self.rx
            .recv()
            .await
            .ok_or_else(|| anyhow!("the cluster store closed the watch (fake)"))
    }
}
