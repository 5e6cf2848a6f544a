//! UDP datagrams larger than the MTU, in fragments both ways: the later
//! fragments carry no ports and must follow the first. Between a
//! masqueraded container and the world, between the world and a
//! published port (the client's address kept), and between containers and
//! a published port through a host address (another network's container,
//! and the publishing container itself). With eBPF host routing the
//! fragments are delivered as unfragmented packets are, past the host's
//! stack: they get through on a host whose firewall drops forwarded
//! traffic too (`NETD_TEST_FIREWALL`).
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use netd_tests::{
    bed::Bed,
    ports::{big_udp_exchange, BigDatagram},
    world::{UPLINK, WORLD},
};

const LEN: usize = 4000;

/// Asserts a side of the exchange got the whole datagram; returns it.
fn whole(got: anyhow::Result<BigDatagram>, what: &str, bed: &Bed) -> BigDatagram {
    let got = got.unwrap_or_else(|e| {
        panic!(
            "{what}: the fragmented datagram must arrive whole (host firewall: {}): {e:#}",
            bed.firewall().name()
        )
    });
    assert_eq!(got.len, LEN, "{what}: {} bytes arrived", got.len);
    assert!(got.intact, "{what}: the datagram's bytes changed");
    got
}

#[test]
fn fragmented_udp_both_ways_between_a_masqueraded_container_and_the_world() {
    let (bed, world) = Bed::with_world(&[]);
    bed.network("n1", &["--subnet", "10.99.1.0/24"]);
    let c = bed.container("c", &["--network", "n1"]);
    let server = SocketAddr::from((WORLD, 9053));
    let (request, reply) = big_udp_exchange(&world, server, &c.ns, server, LEN);
    let request = whole(request, "the world", &bed);
    assert_eq!(
        request.from.ip(),
        IpAddr::V4(UPLINK),
        "every fragment was masqueraded"
    );
    let reply = whole(reply, "the container", &bed);
    assert_eq!(reply.from, server, "the reply's source");
}

#[test]
fn fragmented_udp_both_ways_through_a_published_port() {
    let (bed, world) = Bed::with_world(&[]);
    bed.network("n1", &["--subnet", "10.99.2.0/24"]);
    let c = bed.container("c", &["--network", "n1", "-p", "8090:90/udp"]);
    let published = SocketAddr::from((UPLINK, 8090));
    let bind = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 90));
    let (request, reply) = big_udp_exchange(&c.ns, bind, &world, published, LEN);
    let request = whole(request, "the container", &bed);
    assert_eq!(
        request.from.ip(),
        IpAddr::V4(WORLD),
        "the client's address kept"
    );
    let reply = whole(reply, "the world", &bed);
    assert_eq!(
        reply.from, published,
        "every fragment left as the published port"
    );
}

#[test]
fn fragmented_udp_both_ways_from_containers_to_a_published_port_via_host_addresses() {
    let (bed, _world) = Bed::with_world(&[]);
    bed.network("n1", &["--subnet", "10.99.3.0/24"]);
    bed.network("n2", &["--subnet", "10.99.4.0/24"]);
    let c = bed.container("c", &["--network", "n1", "-p", "8091:91/udp"]);
    let d = bed.container("d", &["--network", "n2"]);
    let (c_ip, d_ip) = (bed.ip(&c, "n1"), bed.ip(&d, "n2"));
    let (gw1, gw2) = (bed.gateway("n1"), bed.gateway("n2"));
    let bind = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 91));
    // Another network's container, through the uplink's address and its
    // own gateway: the target sees it as itself.
    for host in [UPLINK, gw2] {
        let published = SocketAddr::from((host, 8091));
        let what = format!("d -> {published}");
        let (request, reply) = big_udp_exchange(&c.ns, bind, &d.ns, published, LEN);
        let request = whole(request, &format!("{what}: the target"), &bed);
        assert_eq!(
            request.from.ip(),
            IpAddr::V4(d_ip),
            "{what}: the client's address kept"
        );
        let reply = whole(reply, &format!("{what}: the client"), &bed);
        assert_eq!(
            reply.from, published,
            "{what}: every fragment came back as the address dialled"
        );
    }
    // Hairpin: the publishing container through its gateway and the
    // uplink's address.
    for host in [gw1, UPLINK] {
        let published = SocketAddr::from((host, 8091));
        let what = format!("c -> {published}");
        let (request, reply) = big_udp_exchange(&c.ns, bind, &c.ns, published, LEN);
        let request = whole(request, &format!("{what}: the target"), &bed);
        // SPEC: a hairpin may appear as the gateway address.
        assert!(
            [IpAddr::V4(gw1), IpAddr::V4(c_ip)].contains(&request.from.ip()),
            "{what}: the hairpin came from {}",
            request.from
        );
        let reply = whole(reply, &format!("{what}: the client"), &bed);
        assert_eq!(
            reply.from, published,
            "{what}: every fragment came back as the address dialled"
        );
    }
}
