//! The store's transactions on the fake's keys: the same compares and
//! writes as `etcd` (so a test may also run them as another host, from a
//! fault hook).
use std::net::Ipv4Addr;

use anyhow::Result;

use super::kv::{Kv, Op};
use crate::cluster::{
    keys,
    records::{value, AddressClaim, EndpointRecord, HostRecord, NetworkRecord},
    store::{Claimed, Created},
    view::{Change, View},
};

pub fn snapshot(kv: &Kv) -> View {
    let mut view = View {
        revision: kv.revision(),
        ..View::default()
    };
    for (key, e) in kv.prefixed(keys::PREFIX) {
        view.apply(Change::Put(key, &e.value));
    }
    view
}

pub fn networks(kv: &Kv) -> (i64, Vec<NetworkRecord>) {
    (
        kv.mod_revision(keys::NETWORK_CHANGES),
        snapshot(kv).networks.into_values().collect(),
    )
}

pub fn create_network(kv: &mut Kv, net: &NetworkRecord, seen: i64) -> Result<Created> {
    let name = keys::name(&net.name);
    if kv.mod_revision(keys::NETWORK_CHANGES) != seen
        || kv.create_revision(&name) != 0
        || kv.create_revision(&keys::vni(net.vni)) != 0
    {
        return Ok(if kv.get(&name).is_some() {
            Created::NameTaken
        } else {
            Created::Raced
        });
    }
    kv.commit(vec![
        Op::Put(keys::network(&net.id), value(net), 0),
        Op::Put(name, net.id.clone().into_bytes(), 0),
        Op::Put(keys::vni(net.vni), net.id.clone().into_bytes(), 0),
        Op::Put(keys::NETWORK_CHANGES.into(), net.id.clone().into_bytes(), 0),
    ])?;
    Ok(Created::Done)
}

pub fn remove_network(kv: &mut Kv, id: &str, name: &str, vni: u32) -> Result<bool> {
    if kv.prefixed(&keys::addresses_of(id)).next().is_some() {
        return Ok(false);
    }
    kv.commit(vec![
        Op::Delete(keys::network(id)),
        Op::Delete(keys::name(name)),
        Op::Delete(keys::vni(vni)),
        Op::Put(keys::NETWORK_CHANGES.into(), id.as_bytes().to_vec(), 0),
    ])?;
    Ok(true)
}

pub fn used_addresses(kv: &Kv, net: &str) -> Vec<Ipv4Addr> {
    let prefix = keys::addresses_of(net);
    kv.prefixed(&prefix)
        .filter_map(|(k, _)| k.strip_prefix(&prefix)?.parse().ok())
        .collect()
}

pub fn claim_address(
    kv: &mut Kv,
    ep: &EndpointRecord,
    claim: &AddressClaim,
    lease: i64,
) -> Result<Claimed> {
    let address = keys::address(&ep.network_id, ep.ip);
    let network = kv.get(&keys::network(&ep.network_id)).is_some();
    if kv.create_revision(&address) != 0 || !network {
        return Ok(if network {
            Claimed::Taken
        } else {
            Claimed::NoNetwork
        });
    }
    kv.commit(vec![
        Op::Put(address, value(claim), 0),
        Op::Put(keys::endpoint(&ep.network_id, ep.ip), value(ep), lease),
    ])?;
    Ok(Claimed::Done)
}

pub fn republish(
    kv: &mut Kv,
    ep: &EndpointRecord,
    claim: &AddressClaim,
    lease: i64,
) -> Result<bool> {
    let address = keys::address(&ep.network_id, ep.ip);
    if kv.value(&address) == Some(value(claim).as_slice()) {
        kv.commit(vec![Op::Put(
            keys::endpoint(&ep.network_id, ep.ip),
            value(ep),
            lease,
        )])?;
        return Ok(true);
    }
    Ok(claim_address(kv, ep, claim, lease)? == Claimed::Done)
}

pub fn release_address(kv: &mut Kv, net: &str, ip: Ipv4Addr, claim: &AddressClaim) -> Result<()> {
    let address = keys::address(net, ip);
    if kv.value(&address) == Some(value(claim).as_slice()) {
        kv.commit(vec![
            Op::Delete(address),
            Op::Delete(keys::endpoint(net, ip)),
        ])?;
    }
    Ok(())
}

pub fn reclaim_address(kv: &mut Kv, net: &str, ip: Ipv4Addr, claim: &AddressClaim) -> Result<bool> {
    let address = keys::address(net, ip);
    if kv.create_revision(&keys::host(&claim.host)) != 0
        || kv.value(&address) != Some(value(claim).as_slice())
    {
        return Ok(false);
    }
    kv.commit(vec![
        Op::Delete(address),
        Op::Delete(keys::endpoint(net, ip)),
    ])?;
    Ok(true)
}

pub fn register(kv: &mut Kv, host: &HostRecord, lease: i64) -> Result<()> {
    kv.commit(vec![Op::Put(keys::host(&host.id), value(host), lease)])
}
