//! Hosts racing for names, VNIs, subnets and addresses. Two agents
//! allocating from one store side by side (their requests interleave
//! between each read and the transaction that compares it) never get one
//! VNI, subnet or address twice; a host that wins between this host's
//! read and its transaction (`FakeCluster::before`) makes it pick again,
//! or refuse with the reason.
use std::collections::BTreeSet;

use futures::future::join_all;

use super::{addr, ip, FakeCluster, Host};
use crate::{
    cluster::{
        fake::{txn, Request},
        records::{AddressClaim, EndpointRecord, NetworkRecord},
        store::{Claimed, Created},
    },
    error::AgentError,
};

#[tokio::test]
async fn two_hosts_never_get_one_vni_subnet_or_address() {
    let store = FakeCluster::new();
    let a = Host::start(&store, "a", 1).await;
    let b = Host::start(&store, "b", 2).await;
    let jobs = |prefix: &str, n| -> Vec<(&Host, String)> {
        (0..n)
            .flat_map(|i| [(&a, format!("{prefix}a{i}")), (&b, format!("{prefix}b{i}"))])
            .collect()
    };
    let nets = jobs("", 4);
    let made: Vec<_> = join_all(nets.iter().map(|(h, n)| h.overlay(n, None)))
        .await
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let vnis: BTreeSet<_> = made.iter().map(|n| n.vni.unwrap()).collect();
    let subnets: BTreeSet<_> = made.iter().map(|n| n.subnet).collect();
    assert_eq!((vnis.len(), subnets.len()), (8, 8), "{made:?}");
    assert_eq!(store.view().networks.len(), 8);
    // Every host realises every network.
    for h in [&a, &b] {
        h.caught_up().await;
        assert_eq!(h.bed.state().await.networks.len(), 8, "{}", h.id);
    }

    let ctrs = jobs("c", 6);
    let added: Vec<_> = join_all(ctrs.iter().map(|(h, n)| h.add(n, "a0", None)))
        .await
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let ips: BTreeSet<_> = added.iter().map(addr).collect();
    assert_eq!(ips.len(), 12, "{ips:?}");
    assert_eq!(store.view().addresses.len(), 12);
    let of = |prefix: &str| -> Vec<_> {
        added
            .iter()
            .filter(|c| c.name.starts_with(prefix))
            .map(addr)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    a.wait_remotes(&of("cb"), &b).await;
    b.wait_remotes(&of("ca"), &a).await;
}

/// A network of host `x` (which runs no agent here).
fn record_of_x(name: &str, vni: u32, subnet: &str) -> NetworkRecord {
    let subnet: ipnet::Ipv4Net = subnet.parse().unwrap();
    NetworkRecord {
        id: crate::model::new_id(),
        name: name.into(),
        vni,
        subnet,
        gateway: subnet.hosts().next().unwrap(),
        ip_range: None,
        internal: false,
        icc: true,
        masquerade: true,
        mtu: None,
        labels: Default::default(),
        options: Default::default(),
        created: String::new(),
        created_by: "host-x".into(),
    }
}

/// Host x creates `net` just before this host's transaction: it wins.
fn x_creates_first(store: &FakeCluster, net: NetworkRecord) {
    store.before(Request::CreateNetwork, move |kv| {
        let seen = kv.mod_revision(crate::cluster::keys::NETWORK_CHANGES);
        assert_eq!(txn::create_network(kv, &net, seen).unwrap(), Created::Done);
    });
}

#[tokio::test]
async fn a_host_winning_the_vni_and_subnet_first_makes_this_one_pick_again() {
    let store = FakeCluster::new();
    let a = Host::start(&store, "a", 1).await;
    x_creates_first(&store, record_of_x("x1", 4096, "10.0.0.0/24"));
    let ov = a.overlay("ov", None).await.unwrap();
    assert_eq!(
        (ov.vni, ov.subnet),
        (Some(4097), "10.0.1.0/24".parse().unwrap())
    );
    assert_eq!(store.served("a", Request::CreateNetwork), 2, "one retry");
    a.has_network("x1").await;
}

#[tokio::test]
async fn a_host_winning_the_name_first_makes_this_one_refuse() {
    let store = FakeCluster::new();
    let a = Host::start(&store, "a", 1).await;
    x_creates_first(&store, record_of_x("ov", 5000, "10.7.0.0/24"));
    match a.overlay("ov", None).await {
        Err(AgentError::Conflict(m)) => assert!(m.contains("already exists in the cluster"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Only x's: the name's network is realised here, not a second one.
    let ov = a.has_network("ov").await;
    assert_eq!(ov.vni, Some(5000));
    assert_eq!(store.view().networks.len(), 1);
}

#[tokio::test]
async fn a_host_winning_an_address_first_makes_this_one_take_the_next() {
    let store = FakeCluster::new();
    let a = Host::start(&store, "a", 1).await;
    let ov = a.overlay("ov", Some("10.0.0.0/24")).await.unwrap();
    let x_claims = |ip: &str| {
        let (net, ip) = (ov.id.clone(), ip.parse().unwrap());
        move |kv: &mut crate::cluster::fake::Kv| {
            let ep = EndpointRecord {
                network_id: net,
                host: "x".into(),
                container_id: "cx".into(),
                container: "cx".into(),
                ip,
                mac: crate::model::mac_for(ip),
                aliases: vec![],
            };
            let claim = AddressClaim {
                host: "x".into(),
                container_id: "cx".into(),
            };
            assert_eq!(
                txn::claim_address(kv, &ep, &claim, 0).unwrap(),
                Claimed::Done
            );
        }
    };
    // x takes the address a read as free, between a's read and its claim.
    store.before(Request::ClaimAddress, x_claims("10.0.0.2"));
    let c1 = a.add("c1", "ov", None).await.unwrap();
    assert_eq!(addr(&c1), ip("10.0.0.3"));
    // Asked for by address: refused, nothing left behind.
    store.before(Request::ClaimAddress, x_claims("10.0.0.9"));
    match a.add("c2", "ov", Some("10.0.0.9")).await {
        Err(AgentError::Conflict(m)) => assert!(m.contains("another host"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(a.bed.state().await.find_container("c2").is_err());
    let holders: Vec<_> = store
        .view()
        .addresses
        .iter()
        .map(|((_, ip), c)| (ip.to_string(), c.container_id.clone()))
        .collect();
    assert_eq!(
        holders,
        [
            ("10.0.0.2".to_string(), "cx".to_string()),
            ("10.0.0.3".into(), c1.id.clone()),
            ("10.0.0.9".into(), "cx".into())
        ]
    );
}

#[tokio::test]
async fn a_network_removed_between_the_read_and_the_claim_is_refused() {
    let store = FakeCluster::new();
    let a = Host::start(&store, "a", 1).await;
    let ov = a.overlay("ov", None).await.unwrap();
    let (id, name, vni) = (ov.id.clone(), ov.name.clone(), ov.vni.unwrap());
    store.before(Request::ClaimAddress, move |kv| {
        assert!(txn::remove_network(kv, &id, &name, vni).unwrap());
    });
    match a.add("c1", "ov", None).await {
        Err(AgentError::Conflict(m)) => assert!(m.contains("was removed from the cluster"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(store.view().addresses.is_empty());
    super::eventually("a removes ov", || async {
        a.bed.state().await.find_network("ov").is_err()
    })
    .await;
}
