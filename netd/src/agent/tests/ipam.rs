//! Subnets against the host's routes and the other networks; addresses
//! within a network.
use super::{ip, net, Bed};
use crate::{
    error::AgentError,
    schema::{NetworkConnect, NetworkCreate},
};

fn create(name: &str, subnet: Option<&str>) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        subnet: subnet.map(net),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_automatic_subnet_skips_host_routes_and_other_networks() {
    let mut bed = Bed::new().await;
    // The first pool is a host route, the second another network's.
    bed.fake.with(|s| s.routes.push(net("172.18.5.0/24")));
    bed.network("mine", "172.19.0.0/16").await;
    let n = bed
        .agent
        .create_network(create("auto", None))
        .await
        .unwrap();
    assert_eq!(n.subnet, net("172.20.0.0/16"));
    assert_eq!(n.gateway, ip("172.20.0.1"));
}

#[tokio::test]
async fn a_given_subnet_overlapping_a_host_route_is_refused() {
    let bed = Bed::new().await;
    bed.fake.with(|s| s.routes.push(net("10.20.0.0/16")));
    let before = bed.snapshot().await;
    let e = bed
        .agent
        .create_network(create("x", Some("10.20.30.0/24")))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AgentError::Conflict(m) if m.contains("a host route to 10.20.0.0/16")),
        "{e}"
    );
    // The uplink's connected route counts too.
    let e = bed
        .agent
        .create_network(create("y", Some("192.0.2.128/25")))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AgentError::Conflict(m) if m.contains("192.0.2.0/24")),
        "{e}"
    );
    assert_eq!(bed.snapshot().await, before);
}

#[tokio::test]
async fn a_given_subnet_overlapping_another_network_is_refused() {
    let mut bed = Bed::new().await;
    bed.network("n1", "10.1.0.0/16").await;
    let before = bed.snapshot().await;
    for subnet in ["10.1.2.0/24", "10.0.0.0/8", "10.1.0.0/16"] {
        let e = bed
            .agent
            .create_network(create("n2", Some(subnet)))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, AgentError::Conflict(m) if m.contains("network n1 (10.1.0.0/16)")),
            "{subnet}: {e}"
        );
    }
    assert_eq!(bed.snapshot().await, before);
    // Adjacent is fine.
    bed.network("n2", "10.2.0.0/16").await;
}

#[tokio::test]
async fn exhausted_pools_are_a_conflict_that_names_the_way_out() {
    let bed =
        Bed::with_config(|c| c.default_pools = vec![net("10.50.0.0/24"), net("10.51.0.0/24")])
            .await;
    bed.fake.with(|s| s.routes.push(net("10.51.0.0/16")));
    let n = bed.agent.create_network(create("a", None)).await.unwrap();
    assert_eq!(n.subnet, net("10.50.0.0/24"));
    let e = bed
        .agent
        .create_network(create("b", None))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AgentError::Conflict(m) if m.contains("give --subnet")),
        "{e}"
    );
}

#[tokio::test]
async fn the_default_bridge_moves_off_a_taken_172_17() {
    let bed = Bed::with_config(|c| c.default_bridge = true).await;
    assert_eq!(
        bed.state().await.find_network("bridge").unwrap().subnet,
        net("172.17.0.0/16")
    );
    // Another runtime's docker0 holds 172.17.0.0/16.
    let bed = Bed::new().await;
    bed.fake
        .add_host_link("docker0", "bridge", Some(net("172.17.0.1/16")));
    let Bed { fake, agent, dir } = bed;
    drop(agent);
    let bed = Bed::reopen_with(fake, dir, |c| c.default_bridge = true).await;
    assert_eq!(
        bed.state().await.find_network("bridge").unwrap().subnet,
        net("172.18.0.0/16")
    );
}

#[tokio::test]
async fn addresses_skip_the_gateway_and_taken_ones_and_respect_the_range() {
    let mut bed = Bed::new().await;
    bed.agent
        .create_network(NetworkCreate {
            name: "n1".into(),
            subnet: Some(net("10.1.0.0/24")),
            ip_range: Some(net("10.1.0.128/30")),
            ..Default::default()
        })
        .await
        .unwrap();
    let a = bed.container("a", "n1", &[]).await;
    assert_eq!(a.endpoints[0].ip, ip("10.1.0.128"));
    let mut req = bed.add_request("b", "n1", &[]);
    req.ip = Some(ip("10.1.0.129"));
    let b = bed.agent.add_container(req).await.unwrap();
    assert_eq!(b.endpoints[0].ip, ip("10.1.0.129"));
    // A taken address is a conflict, one outside the subnet invalid.
    let mut req = bed.add_request("c", "n1", &[]);
    req.ip = Some(ip("10.1.0.129"));
    let before = bed.snapshot().await;
    let e = bed.agent.add_container(req).await.unwrap_err();
    assert!(matches!(e, AgentError::Conflict(_)), "{e}");
    let mut req = bed.add_request("c", "n1", &[]);
    req.ip = Some(ip("10.9.0.5"));
    let e = bed.agent.add_container(req).await.unwrap_err();
    assert!(matches!(e, AgentError::Invalid(_)), "{e}");
    let mut req = bed.add_request("c", "n1", &[]);
    req.ip = Some(ip("10.1.0.1"));
    let e = bed.agent.add_container(req).await.unwrap_err();
    assert!(
        matches!(e, AgentError::Conflict(_) | AgentError::Invalid(_)),
        "{e}"
    );
    // The add_request netns is new each time: drop it from the comparison.
    let mut after = bed.snapshot().await;
    after.kernel.namespaces = before.kernel.namespaces.clone();
    assert_eq!(after, before);
    // The range has two more: then it is full.
    bed.container("c", "n1", &[]).await;
    bed.container("d", "n1", &[]).await;
    let req = bed.add_request("e", "n1", &[]);
    let e = bed.agent.add_container(req).await.unwrap_err();
    assert!(matches!(e, AgentError::Conflict(_)), "{e}");
    // A removed container's address is free again.
    bed.agent.remove_container("b", false).await.unwrap();
    let e = bed.container("e", "n1", &[]).await;
    assert_eq!(e.endpoints[0].ip, ip("10.1.0.129"));
}

#[tokio::test]
async fn the_same_address_on_two_networks_is_two_endpoints() {
    let mut bed = Bed::new().await;
    bed.network("n1", "10.1.0.0/24").await;
    bed.network("n2", "10.2.0.0/24").await;
    let c = bed.container("c", "n1", &[]).await;
    let c = bed
        .agent
        .connect(
            "n2",
            NetworkConnect {
                container: c.name.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ips: Vec<_> = c
        .endpoints
        .iter()
        .map(|e| (e.ifname.as_str(), e.ip))
        .collect();
    assert_eq!(
        ips,
        vec![("eth0", ip("10.1.0.2")), ("eth1", ip("10.2.0.2"))]
    );
    let s = bed.fake.state();
    assert_eq!(s.endpoints.len(), 2);
    assert_eq!(s.namespaces[&c.netns].ifaces.len(), 2);
    // The first network keeps the default route.
    assert_eq!(
        s.namespaces[&c.netns].default_route,
        Some(("eth0".into(), ip("10.1.0.1")))
    );
}
