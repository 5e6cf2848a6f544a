//! Published ports: conflicts with other containers, within a request and
//! with host processes; each refusal changes nothing.
use super::Bed;
use crate::error::AgentError;

async fn bed() -> Bed {
    let mut bed = Bed::new().await;
    bed.network("n1", "10.1.0.0/24").await;
    bed.container("web", "n1", &["8080:80", "127.0.0.1:9090:90/udp"])
        .await;
    bed
}

/// Adds `name` publishing `publish`; it must be refused as a conflict
/// naming `says`, with nothing changed.
async fn refused(bed: &mut Bed, name: &str, publish: &[&str], says: &str) {
    let req = bed.add_request(name, "n1", publish);
    let before = bed.snapshot().await;
    let e = bed.agent.add_container(req).await.unwrap_err();
    assert!(
        matches!(&e, AgentError::Conflict(m) if m.contains(says)),
        "{publish:?}: {e}"
    );
    assert_eq!(bed.snapshot().await, before, "{publish:?}");
}

#[tokio::test]
async fn a_port_another_container_publishes_is_refused() {
    let mut bed = bed().await;
    refused(&mut bed, "a", &["8080:81"], "already published by web").await;
    // Any address clashes with a specific one and the other way round.
    refused(
        &mut bed,
        "b",
        &["127.0.0.1:8080:80"],
        "already published by web",
    )
    .await;
    refused(&mut bed, "c", &["9090:90/udp"], "already published by web").await;
    // The conflict is found before anything was made: the ports first in
    // the request that were free are not left held.
    refused(
        &mut bed,
        "d",
        &["7070:70", "8080:80"],
        "already published by web",
    )
    .await;
}

#[tokio::test]
async fn ports_that_differ_in_protocol_or_address_do_not_clash() {
    let mut bed = bed().await;
    bed.container("a", "n1", &["8080:80/udp"]).await;
    bed.container("b", "n1", &["127.0.0.2:9090:90/udp"]).await;
    let s = bed.fake.state();
    assert_eq!(s.published.len(), 4);
    assert_eq!(s.held_ports.len(), 4);
}

#[tokio::test]
async fn a_request_that_clashes_with_itself_is_refused() {
    let mut bed = bed().await;
    refused(&mut bed, "a", &["7070:70", "7070:71"], "(this request)").await;
    refused(
        &mut bed,
        "a",
        &["7000-7002:70-72", "7001:80"],
        "(this request)",
    )
    .await;
}

#[tokio::test]
async fn a_port_a_host_process_uses_is_refused_and_nothing_is_left_held() {
    let mut bed = bed().await;
    bed.fake.with(|s| {
        s.busy_ports.insert((super::ANY, 7071, 6));
    });
    refused(
        &mut bed,
        "a",
        &["7070:70", "7071:71", "7072:72"],
        "already in use on the host",
    )
    .await;
    // The port is free once the host process is gone.
    bed.fake.with(|s| s.busy_ports.clear());
    bed.container("a", "n1", &["7070:70", "7071:71", "7072:72"])
        .await;
}

#[tokio::test]
async fn a_removed_containers_ports_are_free_again() {
    let mut bed = bed().await;
    bed.agent.remove_container("web", false).await.unwrap();
    let s = bed.fake.state();
    assert!(s.published.is_empty() && s.held_ports.is_empty(), "{s:?}");
    bed.container("again", "n1", &["8080:80", "127.0.0.1:9090:90/udp"])
        .await;
}

#[tokio::test]
async fn host_port_zero_gets_a_free_port() {
    let mut bed = bed().await;
    bed.fake.with(|s| {
        s.busy_ports.insert((super::ANY, 40_000, 6));
    });
    let a = bed.container("a", "n1", &["80"]).await;
    let b = bed.container("b", "n1", &["80"]).await;
    let ports: Vec<u16> = [&a, &b].iter().map(|c| c.ports[0].host_port).collect();
    assert_eq!(ports, vec![40_001, 40_002]);
}

#[tokio::test]
async fn internal_networks_publish_nothing() {
    let bed = bed().await;
    bed.agent
        .create_network(crate::schema::NetworkCreate {
            name: "inner".into(),
            subnet: Some("10.9.0.0/24".parse().unwrap()),
            internal: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let req = bed.add_request("a", "inner", &["7070:70"]);
    let e = bed.agent.add_container(req).await.unwrap_err();
    assert!(
        matches!(&e, AgentError::Invalid(m) if m.contains("internal network inner")),
        "{e}"
    );
}

#[tokio::test]
async fn disconnecting_the_published_network_needs_unpublish() {
    let bed = bed().await;
    let before = bed.snapshot().await;
    let req = crate::schema::NetworkDisconnect {
        container: "web".into(),
        unpublish: false,
    };
    let e = bed.agent.disconnect("n1", req).await.unwrap_err();
    assert!(matches!(e, AgentError::Conflict(_)), "{e}");
    assert_eq!(bed.snapshot().await, before);
    let req = crate::schema::NetworkDisconnect {
        container: "web".into(),
        unpublish: true,
    };
    let c = bed.agent.disconnect("n1", req).await.unwrap();
    assert!(c.ports.is_empty() && c.endpoints.is_empty());
    let s = bed.fake.state();
    assert!(s.published.is_empty() && s.held_ports.is_empty() && s.endpoints.is_empty());
}

/// A bed with IPv6-only network v6 (`--ipv6 --ipv4=false`).
async fn bed6() -> Bed {
    let bed = Bed::new().await;
    bed.agent
        .create_network(crate::schema::NetworkCreate {
            name: "v6".into(),
            ipv6: true,
            ipv4: Some(false),
            subnet6: Some("fd00:60::/64".parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    bed
}

/// The published entries of the fake kernel, IPv6 ones as
/// `(host address, port, proto) -> container address`.
fn published6(bed: &Bed) -> Vec<String> {
    use crate::datapath::addr6_of;
    let s = bed.fake.state();
    assert!(s.published.is_empty(), "IPv4 entries: {:?}", s.published);
    let mut v: Vec<String> = s
        .published6
        .iter()
        .map(|(k, t)| {
            format!(
                "[{}]:{}/{} -> [{}]:{}",
                addr6_of(k.addr),
                u16::from_be(k.port),
                k.proto,
                addr6_of(t.addr),
                u16::from_be(t.port)
            )
        })
        .collect();
    v.sort();
    v
}

/// Docker 28: an IPv6-only container's ports without a host address are
/// published on `::` alone; IPv6 host addresses as usual; restart keeps
/// them.
#[tokio::test]
async fn an_ipv6_only_container_publishes_on_ipv6_alone() {
    let mut bed = bed6().await;
    let c = bed
        .container("a", "v6", &["8080:80", "[::]:8081:81", "[::1]:9090:90/udp"])
        .await;
    let shown: Vec<String> = c.ports.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        shown,
        [
            "80/tcp -> [::]:8080",
            "81/tcp -> [::]:8081",
            "90/udp -> [::1]:9090"
        ]
    );
    let ip6 = c.endpoints[0].ip6.unwrap();
    let want = [
        format!("[::1]:9090/17 -> [{ip6}]:90"),
        format!("[::]:8080/6 -> [{ip6}]:80"),
        format!("[::]:8081/6 -> [{ip6}]:81"),
    ];
    assert_eq!(published6(&bed), want);
    let held: Vec<String> = bed.snapshot().await.held;
    assert_eq!(held.len(), 3, "{held:?}");
    assert!(held.iter().all(|h| h.contains("Some(::")), "{held:?}");
    // A restart holds the ports again and rewrites lost entries.
    bed.fake.with(|s| s.published6.clear());
    let bed = bed.restart().await;
    assert_eq!(published6(&bed), want);
    assert_eq!(bed.snapshot().await.held, held);
}

/// CHECK finds IPv6 mappings in `PUBLISHED6` (it looked for them in the
/// IPv4 map only, so every IPv6 port was reported missing), and reports
/// one whose entry is gone; on IPv6-only and dual-stack containers.
#[tokio::test]
async fn check_finds_ipv6_ports_in_their_map() {
    let mut bed = bed6().await;
    bed.agent
        .create_network(crate::schema::NetworkCreate {
            name: "ds".into(),
            subnet: Some("10.61.0.0/24".parse().unwrap()),
            ipv6: true,
            subnet6: Some("fd00:61::/64".parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    bed.container("a", "v6", &["8080:80", "[::]:8081:81"]).await;
    bed.container("b", "ds", &["8090:80", "[::1]:8091:81/udp"])
        .await;
    assert_eq!(bed.check("a").await, Vec::<String>::new());
    assert_eq!(bed.check("b").await, Vec::<String>::new());
    bed.fake.with(|s| {
        s.published6
            .retain(|(k, _)| u16::from_be(k.port) != 8081 && u16::from_be(k.port) != 8090)
    });
    assert_eq!(
        bed.check("a").await,
        ["published port 81/tcp -> [::]:8081 is not in the datapath"]
    );
    assert_eq!(
        bed.check("b").await,
        ["published port 80/tcp -> [::]:8090 is not in the datapath"]
    );
}

/// An IPv4 host address for an IPv6-only container is refused with what
/// to do, before anything is held or written.
#[tokio::test]
async fn an_ipv4_host_address_for_an_ipv6_only_container_is_refused() {
    let bed = bed6().await;
    // (The fake netns of the request exists before the snapshot.)
    bed.netns("a");
    let before = bed.snapshot().await;
    for ip in ["0.0.0.0", "127.0.0.1", "10.0.0.5"] {
        let spec = format!("{ip}:8081:81");
        let req = bed.add_request("a", "v6", &["7070:70", spec.as_str()]);
        let e = bed.agent.add_container(req).await.unwrap_err();
        assert!(
            matches!(&e, AgentError::Invalid(m) if m.contains("has no IPv4 address")
                && m.contains("network v6 is IPv6-only")
                && m.contains("[::]:8081:81")),
            "{spec}: {e}"
        );
        assert_eq!(bed.snapshot().await, before, "{spec}");
    }
}

/// Docker's rule on a dual-stack network: a port without a host port gets
/// one port for both families, one free on both (here 40000 is taken on
/// IPv6 by a host process, so both get 40001); the IPv4 ports tried
/// are not left held.
#[tokio::test]
async fn a_picked_port_is_the_same_on_both_families() {
    let bed = Bed::new().await;
    bed.agent
        .create_network(crate::schema::NetworkCreate {
            name: "ds".into(),
            subnet: Some("10.6.0.0/24".parse().unwrap()),
            ipv6: true,
            subnet6: Some("fd00:61::/64".parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    let any6: std::net::IpAddr = std::net::Ipv6Addr::UNSPECIFIED.into();
    bed.fake.with(|s| {
        s.busy_ports.insert((any6, 40_000, 6));
    });
    let mut bed = bed;
    let c = bed.container("a", "ds", &["80", "80/udp"]).await;
    let shown: Vec<String> = c.ports.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        shown,
        [
            "80/tcp -> 0.0.0.0:40001",
            "80/tcp -> [::]:40001",
            "80/udp -> 0.0.0.0:40000",
            "80/udp -> [::]:40000"
        ]
    );
    let held = bed.fake.state().held_ports;
    assert_eq!(held.len(), 4, "{held:?}");
}
