//! The periodic sweep: each kind of drift is repaired, each kind of orphan
//! removed, and what is not netd's is left alone.
use super::{ip, net, Bed, UPLINK};
use crate::kernel::fake::{Iface, Kind, Link};

/// n1 with c1 (one published port) and c2; the sweep finds nothing.
async fn bed() -> Bed {
    let mut bed = Bed::new().await;
    bed.network("n1", "10.1.0.0/24").await;
    bed.container("c1", "n1", &["8080:80"]).await;
    bed.container("c2", "n1", &[]).await;
    assert_eq!(
        bed.sweep().await,
        Vec::<String>::new(),
        "a clean host drifted"
    );
    bed
}

async fn host_ifname(bed: &Bed, container: &str) -> String {
    bed.find(container).await.endpoints[0].host_ifname.clone()
}

async fn assert_whole(bed: &mut Bed, container: &str) {
    let problems = bed.check(container).await;
    assert!(problems.is_empty(), "{container}: {problems:?}");
}

fn has(repairs: &[String], what: &str) -> bool {
    repairs.iter().any(|r| r.contains(what))
}

#[tokio::test]
async fn a_deleted_host_veth_is_recreated() {
    let mut bed = bed().await;
    let veth = host_ifname(&bed, "c1").await;
    bed.fake.with(|s| {
        let i = s.index_of(&veth).unwrap();
        s.delete_index(i);
    });
    let repairs = bed.sweep().await;
    assert!(has(&repairs, "recreated eth0 of c1"), "{repairs:?}");
    assert_whole(&mut bed, "c1").await;
    assert_whole(&mut bed, "c2").await;
    // The stale entry of the old ifindex went with it.
    let s = bed.fake.state();
    assert_eq!(s.endpoints.len(), 2);
    assert_eq!(s.endpoint_by_ip.len(), 2);
}

#[tokio::test]
async fn a_container_interface_deleted_inside_is_recreated() {
    let mut bed = bed().await;
    let ns = bed.find("c1").await.netns.clone();
    // Deleting the peer inside deletes the pair.
    let veth = host_ifname(&bed, "c1").await;
    bed.fake.with(|s| s.delete_in_netns(&ns, "eth0"));
    assert!(bed.fake.state().link(&veth).is_none());
    let repairs = bed.sweep().await;
    assert!(has(&repairs, "recreated eth0 of c1"), "{repairs:?}");
    assert_whole(&mut bed, "c1").await;
}

#[tokio::test]
async fn a_deleted_bridge_is_recreated_with_its_veths_on_it() {
    let mut bed = bed().await;
    let bridge = bed
        .state()
        .await
        .networks
        .values()
        .next()
        .unwrap()
        .bridge
        .clone();
    bed.fake.with(|s| {
        let i = s.index_of(&bridge).unwrap();
        s.delete_index(i);
    });
    let repairs = bed.sweep().await;
    assert!(has(&repairs, "recreated bridge"), "{repairs:?}");
    assert!(has(&repairs, "back on"), "{repairs:?}");
    let s = bed.fake.state();
    let index = s.index_of(&bridge).unwrap();
    let l = s.link(&bridge).unwrap();
    assert!(l.up && l.addrs == vec![net("10.1.0.1/24")], "{l:?}");
    for c in ["c1", "c2"] {
        let veth = s.link(&host_ifname(&bed, c).await).unwrap();
        assert_eq!(veth.master, Some(index), "{c}");
        assert!(veth.up, "{c}");
    }
    assert!(s.no_shortcut.contains(&index));
    assert!(s.host_addrs.contains(&ip("10.1.0.1")));
}

#[tokio::test]
async fn a_bridge_set_down_is_brought_up() {
    let mut bed = bed().await;
    let bridge = bed
        .state()
        .await
        .networks
        .values()
        .next()
        .unwrap()
        .bridge
        .clone();
    bed.fake.with(|s| s.link_mut(&bridge).unwrap().up = false);
    bed.sweep().await;
    assert!(bed.fake.state().link(&bridge).unwrap().up);
}

#[tokio::test]
async fn a_veth_moved_off_its_bridge_is_put_back() {
    let mut bed = bed().await;
    let other = bed.fake.add_host_link("docker0", "bridge", None);
    let veth = host_ifname(&bed, "c2").await;
    let before = bed.snapshot().await;
    bed.fake
        .with(|s| s.link_mut(&veth).unwrap().master = Some(other));
    let repairs = bed.sweep().await;
    assert!(has(&repairs, "put eth0 of c2 back on"), "{repairs:?}");
    assert_eq!(bed.snapshot().await.kernel.links, before.kernel.links);
}

#[tokio::test]
async fn detached_programs_and_lost_entries_are_put_back() {
    let mut bed = bed().await;
    let good = bed.snapshot().await;
    let (v1, v2) = (host_ifname(&bed, "c1").await, host_ifname(&bed, "c2").await);
    bed.fake.with(|s| {
        // c1 lost one program, c2 its endpoint entry.
        s.pins.retain(|p| !p.starts_with(&format!("{v1}_to")));
        let i = s.index_of(&v2).unwrap();
        s.endpoints.remove(&i);
    });
    let repairs = bed.sweep().await;
    assert!(has(&repairs, "re-attached programs of c1"), "{repairs:?}");
    assert!(has(&repairs, "re-attached programs of c2"), "{repairs:?}");
    assert_eq!(bed.snapshot().await, good);
}

#[tokio::test]
async fn a_lost_network_entry_is_written_again() {
    let mut bed = bed().await;
    let good = bed.snapshot().await;
    bed.fake.with(|s| s.networks.clear());
    bed.sweep().await;
    assert_eq!(bed.snapshot().await, good);
}

#[tokio::test]
async fn a_container_whose_netns_is_gone_is_released() {
    let mut bed = bed().await;
    let ns = bed.find("c1").await.netns.clone();
    let v1 = host_ifname(&bed, "c1").await;
    bed.fake.remove_netns(&ns);
    let repairs = bed.sweep().await;
    assert!(has(&repairs, "released container c1"), "{repairs:?}");
    let snap = bed.snapshot().await;
    assert!(!snap.containers.values().any(|c| c.name == "c1"));
    assert!(!snap.stored_containers.iter().any(|c| c.name == "c1"));
    assert!(snap.kernel.published.is_empty(), "its port stays published");
    assert!(snap.held.is_empty(), "its host port stays held");
    assert_eq!(snap.kernel.endpoints.len(), 1);
    assert!(
        !snap.kernel.pins.iter().any(|p| p.starts_with(&v1)),
        "{:?}",
        snap.kernel.pins
    );
    assert_whole(&mut bed, "c2").await;
}

#[tokio::test]
async fn a_stale_datapath_network_is_removed() {
    let mut bed = bed().await;
    let good = bed.snapshot().await;
    bed.fake.with(|s| {
        let info = *s.networks.values().next().unwrap();
        s.networks.insert(net("10.99.0.0/24"), info);
    });
    let repairs = bed.sweep().await;
    assert!(
        has(&repairs, "removed stale datapath network 10.99.0.0/24"),
        "{repairs:?}"
    );
    assert_eq!(bed.snapshot().await, good);
}

/// A marked link of an unknown owner, a marked veth whose name no
/// endpoint has, an unmarked veth with netd's name pattern (creation cut
/// short), pins and an entry nobody owns: all go. Other software's links,
/// unmarked and named otherwise, stay.
#[tokio::test]
async fn orphans_are_removed_and_other_links_left_alone() {
    let mut bed = bed().await;
    let good = bed.snapshot().await;
    let bridge_index = good
        .kernel
        .index_of(&bed.state().await.networks.values().next().unwrap().bridge)
        .unwrap();
    let c1 = bed.find("c1").await.id.clone();
    let theirs = bed
        .fake
        .add_host_link("docker0", "bridge", Some(net("172.17.0.1/16")));
    let their_veth = bed.fake.add_host_link("vethabc", "veth", None);
    let veth = |name: &str, owner: Option<&str>| Link {
        name: name.into(),
        kind: Kind::Veth {
            peer: format!("p{name}"),
            netns: None,
        },
        up: true,
        master: Some(bridge_index),
        owner: owner.map(str::to_string),
        addrs: Vec::new(),
        addrs6: Vec::new(),
        mac: [2, 0, 0, 0, 0, 9],
        mtu: 1500,
    };
    bed.fake.with(|s| {
        s.links
            .insert(901, veth("nd00000000001", Some("0123456789abcdef")));
        s.links.insert(902, veth("nd00000000002", Some(&c1)));
        s.links.insert(903, veth("nd00000000003", None));
        s.links.insert(
            904,
            Link {
                kind: Kind::Bridge,
                master: None,
                ..veth("br-orphan", Some("fedcba9876543210"))
            },
        );
        for p in ["from_container", "to_container"] {
            s.pins.insert(format!("nd00000000004_{p}"));
        }
        let ep = *s.endpoints.values().next().unwrap();
        s.endpoints.insert(905, ep);
    });
    let repairs = bed.sweep().await;
    for name in [
        "nd00000000001",
        "nd00000000002",
        "nd00000000003",
        "br-orphan",
    ] {
        assert!(
            has(&repairs, &format!("deleted orphan link {name}")),
            "{name}: {repairs:?}"
        );
    }
    assert!(has(&repairs, "nd00000000004"), "{repairs:?}");
    assert!(
        has(&repairs, "removed orphan endpoint entry 905"),
        "{repairs:?}"
    );
    let s = bed.fake.state();
    assert!(s.links.contains_key(&theirs) && s.links.contains_key(&their_veth));
    assert!(s.link(UPLINK).is_some());
    // Apart from the links of others (and the host addresses and the
    // shortcut exceptions that follow them), the kernel is as it was.
    let mut s = s;
    s.links.remove(&theirs);
    s.links.remove(&their_veth);
    s.host_addrs.remove(&ip("172.17.0.1"));
    s.no_shortcut.remove(&theirs);
    assert_eq!(s, good.kernel);
    assert_whole(&mut bed, "c1").await;
}

#[tokio::test]
async fn an_uplink_that_went_away_loses_its_programs() {
    let mut bed = bed().await;
    let s = bed.fake.state();
    let eth0 = s.index_of(UPLINK).unwrap();
    assert!(s.uplinks.contains_key(&eth0));
    assert!(s.pins.iter().any(|p| p.starts_with("eth0_uplink")));
    let eth1 = bed
        .fake
        .add_host_link("eth1", "veth", Some(net("198.51.100.2/24")));
    bed.fake.with(|s| s.default_route = vec![eth1]);
    bed.sweep().await;
    let s = bed.fake.state();
    assert!(!s.uplinks.contains_key(&eth0) && s.uplinks.contains_key(&eth1));
    assert!(
        !s.pins.iter().any(|p| p.starts_with("eth0_")),
        "{:?}",
        s.pins
    );
    assert!(s.pins.iter().any(|p| p.starts_with("eth1_uplink")));
    // An uplink entry and pins of a device that is no uplink: removed.
    bed.fake.with(|s| {
        let u = *s.uplinks.values().next().unwrap();
        s.uplinks.insert(eth0, u);
        s.pins.insert("eth0_uplink_in".into());
    });
    bed.sweep().await;
    let s = bed.fake.state();
    assert!(!s.uplinks.contains_key(&eth0));
    assert!(!s.pins.contains("eth0_uplink_in"));
}

/// The fake itself: a veth peer inside a netns goes with its host end.
#[tokio::test]
async fn deleting_a_host_veth_takes_its_peer() {
    let bed = bed().await;
    let veth = host_ifname(&bed, "c1").await;
    let ns = bed.find("c1").await.netns.clone();
    bed.fake.with(|s| {
        assert!(matches!(
            s.namespaces[&ns].ifaces.get("eth0"),
            Some(Iface { up: true, .. })
        ));
        let i = s.index_of(&veth).unwrap();
        s.delete_index(i);
        assert!(s.namespaces[&ns].ifaces.is_empty());
        assert!(s.namespaces[&ns].default_route.is_none());
    });
}

#[tokio::test]
async fn ipv6_default_routes_make_ipv6_uplinks_with_their_global_address() {
    let mut bed = Bed::new().await;
    let eth0 = bed.fake.state().index_of(UPLINK).unwrap();
    assert!(bed.fake.state().uplinks6.is_empty(), "no IPv6 route yet");
    // An IPv6 default route via eth0 with a ULA and a global address:
    // the global one masquerades, with the IPv4 port range.
    bed.fake.with(|s| {
        s.default_route6.push(eth0);
        let l = s.links.get_mut(&eth0).unwrap();
        l.addrs6 = vec![
            "fd00:1::10/64".parse().unwrap(),
            "2001:db8::10/64".parse().unwrap(),
        ];
    });
    bed.sweep().await;
    let s = bed.fake.state();
    let u6 = s.uplinks6[&eth0];
    assert_eq!(
        u6.addr,
        crate::datapath::addr6_key("2001:db8::10".parse().unwrap())
    );
    assert_eq!(
        (u6.port_min, u6.port_max),
        (s.uplinks[&eth0].port_min, s.uplinks[&eth0].port_max)
    );
    // An uplink with only an IPv6 default route gets the programs too.
    let eth1 = bed.fake.add_host_link("eth1", "veth", None);
    bed.fake.with(|s| {
        s.default_route6 = vec![eth1];
        s.links.get_mut(&eth1).unwrap().addrs6 = vec!["2001:db8:1::10/64".parse().unwrap()];
    });
    bed.sweep().await;
    let s = bed.fake.state();
    assert!(s.uplinks.contains_key(&eth1) && s.pins.iter().any(|p| p.starts_with("eth1_uplink")));
    assert!(s.uplinks6.contains_key(&eth1));
    assert!(
        !s.uplinks6.contains_key(&eth0),
        "eth0 lost its IPv6 route: {:?}",
        s.uplinks6
    );
    // The route goes: the IPv6 entry goes with it.
    bed.fake.with(|s| s.default_route6.clear());
    bed.sweep().await;
    assert!(bed.fake.state().uplinks6.is_empty());
}
