//! Default routes per address family (Docker 28): the IPv4 one by the
//! first endpoint with IPv4, the IPv6 one by the first with IPv6, on add,
//! connect, disconnect, a restart that recreates a veth, in `inspect` and
//! in `container check`.
use std::net::{Ipv4Addr, Ipv6Addr};

use super::{ip, Bed};
use crate::schema::{NetworkConnect, NetworkCreate, NetworkDisconnect};

/// six (IPv6 only), four (IPv4 only), dual (both).
async fn bed() -> Bed {
    let bed = Bed::new().await;
    let create = |name: &str, subnet: Option<&str>, subnet6: Option<&str>| NetworkCreate {
        name: name.into(),
        subnet: subnet.map(|s| s.parse().unwrap()),
        ipv6: subnet6.is_some(),
        ipv4: subnet.is_none().then_some(false),
        subnet6: subnet6.map(|s| s.parse().unwrap()),
        ..Default::default()
    };
    for req in [
        create("six", None, Some("fd00:60::/64")),
        create("four", Some("10.70.0.0/24"), None),
        create("dual", Some("10.71.0.0/24"), Some("fd00:71::/64")),
    ] {
        bed.agent.create_network(req).await.unwrap();
    }
    bed
}

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

async fn connect(bed: &Bed, net: &str, container: &str) {
    let req = NetworkConnect {
        container: container.into(),
        ..Default::default()
    };
    bed.agent
        .connect(net, req)
        .await
        .unwrap_or_else(|e| panic!("connect {container} to {net}: {e}"));
}

async fn disconnect(bed: &Bed, net: &str, container: &str) {
    let req = NetworkDisconnect {
        container: container.into(),
        unpublish: false,
    };
    bed.agent
        .disconnect(net, req)
        .await
        .unwrap_or_else(|e| panic!("disconnect {container} from {net}: {e}"));
}

type Routes = (Option<(String, Ipv4Addr)>, Option<(String, Ipv6Addr)>);

/// The default routes of `container`'s netns in the kernel.
async fn routes(bed: &Bed, container: &str) -> Routes {
    let path = bed.find(container).await.netns;
    let s = bed.fake.state();
    let ns = &s.namespaces[&path];
    (ns.default_route.clone(), ns.default_route6.clone())
}

fn v4(ifname: &str, gw: &str) -> Option<(String, Ipv4Addr)> {
    Some((ifname.into(), ip(gw)))
}

fn v6(ifname: &str, gw: &str) -> Option<(String, Ipv6Addr)> {
    Some((ifname.into(), ip6(gw)))
}

/// `inspect`'s (DefaultRoute, DefaultRoute6) of each network of
/// `container`, and `container check` finds nothing wrong.
async fn shown(bed: &Bed, container: &str) -> Vec<(String, bool, bool)> {
    let problems = bed.check(container).await;
    assert!(problems.is_empty(), "{container}: {problems:?}");
    let view = bed.state().await.inspect_container(container).unwrap();
    view.networks
        .iter()
        .map(|(n, e)| (n.clone(), e.default_route, e.default_route6))
        .collect()
}

fn row(net: &str, v4: bool, v6: bool) -> (String, bool, bool) {
    (net.into(), v4, v6)
}

#[tokio::test]
async fn an_ipv6_only_first_network_leaves_ipv4_to_the_next_network_with_ipv4() {
    let mut bed = bed().await;
    bed.container("c", "six", &[]).await;
    assert_eq!(routes(&bed, "c").await, (None, v6("eth0", "fd00:60::1")));
    assert_eq!(shown(&bed, "c").await, [row("six", false, true)]);

    // The first network with IPv4 takes the IPv4 default route; IPv6 stays.
    connect(&bed, "four", "c").await;
    assert_eq!(
        routes(&bed, "c").await,
        (v4("eth1", "10.70.0.1"), v6("eth0", "fd00:60::1"))
    );
    // A later dual-stack network takes neither.
    connect(&bed, "dual", "c").await;
    assert_eq!(
        routes(&bed, "c").await,
        (v4("eth1", "10.70.0.1"), v6("eth0", "fd00:60::1"))
    );
    assert_eq!(
        shown(&bed, "c").await,
        [
            row("dual", false, false),
            row("four", true, false),
            row("six", false, true)
        ]
    );

    // Disconnecting the IPv4 carrier moves IPv4 alone, to the next
    // network with IPv4; then the IPv6 carrier's leaving moves IPv6.
    disconnect(&bed, "four", "c").await;
    assert_eq!(
        routes(&bed, "c").await,
        (v4("eth2", "10.71.0.1"), v6("eth0", "fd00:60::1"))
    );
    assert_eq!(
        shown(&bed, "c").await,
        [row("dual", true, false), row("six", false, true)]
    );
    disconnect(&bed, "six", "c").await;
    assert_eq!(
        routes(&bed, "c").await,
        (v4("eth2", "10.71.0.1"), v6("eth2", "fd00:71::1"))
    );
    assert_eq!(shown(&bed, "c").await, [row("dual", true, true)]);
}

#[tokio::test]
async fn a_dual_stack_first_network_keeps_both_until_it_leaves() {
    let mut bed = bed().await;
    bed.container("c", "dual", &[]).await;
    connect(&bed, "six", "c").await;
    connect(&bed, "four", "c").await;
    assert_eq!(
        routes(&bed, "c").await,
        (v4("eth0", "10.71.0.1"), v6("eth0", "fd00:71::1"))
    );
    // A network that carries nothing leaves: nothing moves.
    disconnect(&bed, "four", "c").await;
    assert_eq!(
        routes(&bed, "c").await,
        (v4("eth0", "10.71.0.1"), v6("eth0", "fd00:71::1"))
    );
    // The carrier of both leaves: IPv6 moves to six; no network with
    // IPv4 is left, so no IPv4 default route (none via 0.0.0.0 either).
    disconnect(&bed, "dual", "c").await;
    assert_eq!(routes(&bed, "c").await, (None, v6("eth1", "fd00:60::1")));
    assert_eq!(shown(&bed, "c").await, [row("six", false, true)]);
    // Connecting an IPv4 network again gives IPv4 its route back.
    connect(&bed, "four", "c").await;
    assert_eq!(
        routes(&bed, "c").await,
        (v4("eth0", "10.70.0.1"), v6("eth1", "fd00:60::1"))
    );
}

#[tokio::test]
async fn a_restart_recreates_each_veth_with_the_routes_of_its_families() {
    let mut bed = bed().await;
    bed.container("c", "six", &[]).await;
    connect(&bed, "four", "c").await;
    connect(&bed, "dual", "c").await;
    let want = (v4("eth1", "10.70.0.1"), v6("eth0", "fd00:60::1"));
    assert_eq!(routes(&bed, "c").await, want);
    // A restart with every veth in place changes nothing.
    let before = bed.snapshot().await;
    let bed = bed.restart().await;
    assert_eq!(bed.snapshot().await, before);
    // Every veth deleted while the agent is down (their routes go with
    // them): each comes back with the routes it carried.
    let hosts: Vec<String> = bed
        .find("c")
        .await
        .endpoints
        .iter()
        .map(|e| e.host_ifname.clone())
        .collect();
    bed.fake.with(|s| {
        for h in &hosts {
            let i = s.index_of(h).unwrap();
            s.delete_index(i);
        }
    });
    assert_eq!(routes(&bed, "c").await, (None, None));
    let bed = bed.restart().await;
    let recreated = bed
        .repairs()
        .await
        .iter()
        .filter(|r| r.starts_with("recreated eth"))
        .count();
    assert_eq!(recreated, 3, "{:?}", bed.repairs().await);
    assert_eq!(routes(&bed, "c").await, want);
    assert_eq!(
        shown(&bed, "c").await,
        [
            row("dual", false, false),
            row("four", true, false),
            row("six", false, true)
        ]
    );
}

#[tokio::test]
async fn check_wants_each_family_by_its_carrier() {
    let mut bed = bed().await;
    bed.container("c", "six", &[]).await;
    connect(&bed, "four", "c").await;
    assert_eq!(bed.check("c").await, Vec::<String>::new());
    let path = bed.find("c").await.netns;
    // The IPv4 route lost: check names it on eth1 (not on eth0, which
    // has no IPv4).
    bed.fake
        .with(|s| s.namespaces.get_mut(&path).unwrap().default_route = None);
    assert_eq!(
        bed.check("c").await,
        ["no default route via 10.70.0.1 on eth1"]
    );
}
