//! The cluster store on etcd (v3 API, `etcd-client`). Every change that
//! must not race another host's is one etcd transaction that compares
//! what it read: two hosts never create two networks with one name, VNI
//! or overlapping subnets, nor take one address twice.
use std::{net::Ipv4Addr, time::Duration};

use anyhow::{Context, Result};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};

use super::{
    keys,
    records::{value, AddressClaim, EndpointRecord, HostRecord, NetworkRecord},
    store::{Claimed, ClusterStore, Created, Event, Watch},
    view::{Change, View},
};

/// How long one request may take before the store counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A handle on the cluster store (cheap to clone: one shared channel).
#[derive(Clone)]
pub struct Etcd {
    client: Client,
}

impl Etcd {
    /// Connects lazily: an unreachable store is found by the first request.
    pub async fn connect(endpoints: &[String]) -> Result<Etcd> {
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let client = Client::connect(endpoints, Some(options))
            .await
            .with_context(|| format!("cannot use cluster store {}", endpoints.join(",")))?;
        Ok(Etcd { client })
    }

    /// The view and the mod revision of the network change marker, read
    /// at one revision.
    async fn read_all(&self) -> Result<(View, i64)> {
        let mut c = self.client.clone();
        let resp = c
            .get(keys::PREFIX, Some(GetOptions::new().with_prefix()))
            .await
            .context("cannot read the cluster store")?;
        let mut view = View {
            revision: resp.header().map(|h| h.revision()).unwrap_or(0),
            ..View::default()
        };
        let mut marker = 0;
        for kv in resp.kvs() {
            if let Ok(key) = kv.key_str() {
                if key == keys::NETWORK_CHANGES {
                    marker = kv.mod_revision();
                }
                view.apply(Change::Put(key, kv.value()));
            }
        }
        Ok((view, marker))
    }
}

#[async_trait::async_trait]
impl ClusterStore for Etcd {
    async fn snapshot(&self) -> Result<View> {
        Ok(self.read_all().await?.0)
    }

    /// The revision is the mod revision of the change marker.
    async fn networks(&self) -> Result<(i64, Vec<NetworkRecord>)> {
        let (view, marker) = self.read_all().await?;
        Ok((marker, view.networks.into_values().collect()))
    }

    async fn create_network(&self, net: &NetworkRecord, seen: i64) -> Result<Created> {
        let mut c = self.client.clone();
        let txn = Txn::new()
            .when([
                Compare::mod_revision(keys::NETWORK_CHANGES, CompareOp::Equal, seen),
                Compare::create_revision(keys::name(&net.name), CompareOp::Equal, 0),
                Compare::create_revision(keys::vni(net.vni), CompareOp::Equal, 0),
            ])
            .and_then([
                TxnOp::put(keys::network(&net.id), value(net), None),
                TxnOp::put(keys::name(&net.name), net.id.as_bytes(), None),
                TxnOp::put(keys::vni(net.vni), net.id.as_bytes(), None),
                TxnOp::put(keys::NETWORK_CHANGES, net.id.as_bytes(), None),
            ]);
        let resp = c
            .txn(txn)
            .await
            .context("cannot write to the cluster store")?;
        if resp.succeeded() {
            return Ok(Created::Done);
        }
        let name = c
            .get(keys::name(&net.name), None)
            .await
            .context("cannot read the cluster store")?;
        Ok(if name.kvs().is_empty() {
            Created::Raced
        } else {
            Created::NameTaken
        })
    }

    async fn remove_network(&self, id: &str, name: &str, vni: u32) -> Result<bool> {
        let mut c = self.client.clone();
        let txn = Txn::new()
            .when([Compare::version(keys::addresses_of(id), CompareOp::Equal, 0).with_prefix()])
            .and_then([
                TxnOp::delete(keys::network(id), None),
                TxnOp::delete(keys::name(name), None),
                TxnOp::delete(keys::vni(vni), None),
                TxnOp::put(keys::NETWORK_CHANGES, id.as_bytes(), None),
            ]);
        let resp = c
            .txn(txn)
            .await
            .context("cannot write to the cluster store")?;
        Ok(resp.succeeded())
    }

    async fn used_addresses(&self, net: &str) -> Result<Vec<Ipv4Addr>> {
        let mut c = self.client.clone();
        let prefix = keys::addresses_of(net);
        let resp = c
            .get(
                prefix.as_str(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await
            .context("cannot read the cluster store")?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| kv.key_str().ok()?.strip_prefix(&prefix)?.parse().ok())
            .collect())
    }

    async fn claim_address(
        &self,
        ep: &EndpointRecord,
        claim: &AddressClaim,
        lease: i64,
    ) -> Result<Claimed> {
        let mut c = self.client.clone();
        let address = keys::address(&ep.network_id, ep.ip);
        let network = keys::network(&ep.network_id);
        let txn = Txn::new()
            .when([
                Compare::create_revision(address.as_str(), CompareOp::Equal, 0),
                Compare::version(network.as_str(), CompareOp::Greater, 0),
            ])
            .and_then([
                TxnOp::put(address.as_str(), value(claim), None),
                TxnOp::put(
                    keys::endpoint(&ep.network_id, ep.ip),
                    value(ep),
                    Some(PutOptions::new().with_lease(lease)),
                ),
            ]);
        let resp = c
            .txn(txn)
            .await
            .context("cannot write to the cluster store")?;
        if resp.succeeded() {
            return Ok(Claimed::Done);
        }
        let exists = c
            .get(network, None)
            .await
            .context("cannot read the cluster store")?;
        Ok(if exists.kvs().is_empty() {
            Claimed::NoNetwork
        } else {
            Claimed::Taken
        })
    }

    async fn republish(
        &self,
        ep: &EndpointRecord,
        claim: &AddressClaim,
        lease: i64,
    ) -> Result<bool> {
        let mut c = self.client.clone();
        let address = keys::address(&ep.network_id, ep.ip);
        let put_ep = TxnOp::put(
            keys::endpoint(&ep.network_id, ep.ip),
            value(ep),
            Some(PutOptions::new().with_lease(lease)),
        );
        let txn = Txn::new()
            .when([Compare::value(
                address.as_str(),
                CompareOp::Equal,
                value(claim),
            )])
            .and_then([put_ep.clone()]);
        if c.txn(txn)
            .await
            .context("cannot write to the cluster store")?
            .succeeded()
        {
            return Ok(true);
        }
        Ok(matches!(
            self.claim_address(ep, claim, lease).await?,
            Claimed::Done
        ))
    }

    async fn release_address(&self, net: &str, ip: Ipv4Addr, claim: &AddressClaim) -> Result<()> {
        let mut c = self.client.clone();
        let address = keys::address(net, ip);
        let txn = Txn::new()
            .when([Compare::value(
                address.as_str(),
                CompareOp::Equal,
                value(claim),
            )])
            .and_then([
                TxnOp::delete(address.as_str(), None),
                TxnOp::delete(keys::endpoint(net, ip), None),
            ]);
        c.txn(txn)
            .await
            .context("cannot write to the cluster store")?;
        Ok(())
    }

    async fn reclaim_address(&self, net: &str, ip: Ipv4Addr, claim: &AddressClaim) -> Result<bool> {
        let mut c = self.client.clone();
        let address = keys::address(net, ip);
        let txn = Txn::new()
            .when([
                Compare::create_revision(keys::host(&claim.host), CompareOp::Equal, 0),
                Compare::value(address.as_str(), CompareOp::Equal, value(claim)),
            ])
            .and_then([
                TxnOp::delete(address.as_str(), None),
                TxnOp::delete(keys::endpoint(net, ip), None),
            ]);
        Ok(c.txn(txn)
            .await
            .context("cannot write to the cluster store")?
            .succeeded())
    }

    async fn grant(&self, ttl: i64) -> Result<i64> {
        let mut c = self.client.clone();
        Ok(c.lease_grant(ttl, None)
            .await
            .context("cannot get a lease from the cluster store")?
            .id())
    }

    async fn register(&self, host: &HostRecord, lease: i64) -> Result<()> {
        let mut c = self.client.clone();
        c.put(
            keys::host(&host.id),
            value(host),
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .context("cannot register this host in the cluster store")?;
        Ok(())
    }

    async fn keep_alive(&self, lease: i64, period: Duration, patience: Duration) -> anyhow::Error {
        let mut c = self.client.clone();
        let (mut keeper, mut stream) = match c.lease_keep_alive(lease).await {
            Ok(pair) => pair,
            Err(e) => return anyhow::Error::new(e).context("lease renewal failed"),
        };
        loop {
            if let Err(e) = keeper.keep_alive().await {
                return anyhow::Error::new(e).context("lease renewal failed");
            }
            match tokio::time::timeout(patience, stream.message()).await {
                Ok(Ok(Some(resp))) if resp.ttl() > 0 => {}
                Ok(Ok(Some(_))) => return anyhow::anyhow!("the lease ended"),
                Ok(Ok(None)) => return anyhow::anyhow!("lease renewal stream closed"),
                Ok(Err(e)) => return anyhow::Error::new(e).context("lease renewal failed"),
                Err(_) => return anyhow::anyhow!("lease renewal timed out"),
            }
            tokio::time::sleep(period).await;
        }
    }

    async fn watch(&self, from: i64) -> Result<Box<dyn Watch>> {
        let mut c = self.client.clone();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from + 1)
            .with_progress_notify();
        let stream = c
            .watch(keys::PREFIX, Some(options))
            .await
            .context("cannot watch the cluster store")?;
        Ok(Box::new(EtcdWatch { stream }))
    }
}

/// A watch on the whole layout.
struct EtcdWatch {
    stream: etcd_client::WatchStream,
}

#[async_trait::async_trait]
impl Watch for EtcdWatch {
    async fn next(&mut self) -> Result<(Vec<Event>, i64)> {
        let resp = self
            .stream
            .message()
            .await
            .context("the watch failed")?
            .context("the cluster store closed the watch")?;
        if resp.canceled() {
            anyhow::bail!(
                "the cluster store cancelled the watch ({}; compacted at {})",
                resp.cancel_reason(),
                resp.compact_revision()
            );
        }
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let events = resp
            .events()
            .iter()
            .filter_map(|ev| {
                let kv = ev.kv()?;
                Some(Event {
                    put: ev.event_type() == etcd_client::EventType::Put,
                    key: kv.key_str().ok()?.to_string(),
                    value: kv.value().to_vec(),
                })
            })
            .collect();
        Ok((events, revision))
    }
}
