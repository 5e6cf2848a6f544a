//! UDP datagrams larger than the MTU, in fragments both ways, over IPv4
//! and IPv6 (NAT66): the later fragments carry no ports and must follow
//! the first. Between a masqueraded container and the world, between the
//! world and a published port (the client's address kept), and between
//! containers and a published port through a host address (another
//! network's container, and the publishing container itself). Every
//! network is dual-stack, each test checks both families in one bed. With
//! eBPF host routing the fragments are delivered as unfragmented packets
//! are, past the host's stack: they get through on a host whose firewall
//! drops forwarded traffic too (`NETD_TEST_FIREWALL`). With `--host-routing
//! kernel` the bridge and the kernel forward what the programs passed, and
//! every row holds too (there the later fragments another network's
//! container sends to a published port pass the target's `to_container`,
//! which must let them cross networks as it let their first); that bed
//! runs on the permissive host only, as a host firewall that drops
//! forwarded traffic drops kernel-routed packets by design.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use netd_tests::{
    bed::Bed,
    firewall::Firewall,
    ports::{big_udp_exchange, BigDatagram},
    world::{UPLINK, UPLINK6, UPLINK_LIMIT, WORLD, WORLD6},
};

const LEN: usize = 4000;

/// A bed (agent flags `args`) whose uplink has IPv4 and IPv6
/// ([`Bed::make_world6`]), its agent following both addresses. Returns the
/// world netns name too.
fn bed(args: &[&str]) -> (Bed, String) {
    let bed = Bed::without_agent(args);
    let world = bed.make_world6();
    bed.start_agent();
    bed.wait_uplink(UPLINK, UPLINK_LIMIT);
    bed.wait_uplink6(UPLINK6, UPLINK_LIMIT);
    (bed, world)
}

/// A dual-stack network `name` with subnets 10.99.`n`.0/24 and
/// fd00:99:`n`::/64.
fn network(bed: &Bed, name: &str, n: u8) {
    let (v4, v6) = (format!("10.99.{n}.0/24"), format!("fd00:99:{n}::/64"));
    bed.network(name, &["--subnet", &v4, "--ipv6", "--subnet", &v6]);
}

/// The unspecified address of `ip`'s family with `port`: what a server
/// of that family binds.
fn any(ip: IpAddr, port: u16) -> SocketAddr {
    let any: IpAddr = match ip {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    SocketAddr::new(any, port)
}

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
    let (bed, world) = bed(&[]);
    masqueraded_rows(&bed, &world);
}

fn masqueraded_rows(bed: &Bed, world: &str) {
    network(bed, "n1", 1);
    let c = bed.container("m", &["--network", "n1"]);
    for (remote, uplink) in [
        (IpAddr::from(WORLD), IpAddr::from(UPLINK)),
        (WORLD6.into(), UPLINK6.into()),
    ] {
        let server = SocketAddr::new(remote, 9053);
        let (request, reply) = big_udp_exchange(world, server, &c.ns, server, LEN);
        let request = whole(request, &format!("the world ({server})"), bed);
        assert_eq!(
            request.from.ip(),
            uplink,
            "every fragment to {server} was masqueraded"
        );
        let reply = whole(reply, &format!("the container ({server})"), bed);
        assert_eq!(reply.from, server, "the reply's source");
    }
}

/// The world -> a published port, on a masqueraded network and on a
/// `--masquerade=false` one: there only the first fragment's translation
/// makes the reply's later fragments leave as the published address (no
/// masquerade would).
#[test]
fn fragmented_udp_both_ways_through_a_published_port() {
    let (bed, world) = bed(&[]);
    published_rows(&bed, &world);
}

fn published_rows(bed: &Bed, world: &str) {
    network(bed, "n2", 2);
    let c = bed.container("p", &["--network", "n2", "-p", "8090:90/udp"]);
    bed.network(
        "r5",
        &[
            "--subnet",
            "10.99.5.0/24",
            "--ipv6",
            "--subnet",
            "fd00:99:5::/64",
            "--masquerade=false",
        ],
    );
    let r = bed.container("r", &["--network", "r5", "-p", "8092:90/udp"]);
    for (host, client) in [
        (IpAddr::from(UPLINK), IpAddr::from(WORLD)),
        (UPLINK6.into(), WORLD6.into()),
    ] {
        for (ctr, port) in [(&c, 8090), (&r, 8092)] {
            let published = SocketAddr::new(host, port);
            let what = format!("world -> {published} ({})", ctr.name);
            let (request, reply) = big_udp_exchange(&ctr.ns, any(host, 90), world, published, LEN);
            let request = whole(request, &format!("{what}: the container"), bed);
            assert_eq!(
                request.from.ip(),
                client,
                "{what}: the client's address kept"
            );
            let reply = whole(reply, &format!("{what}: the world"), bed);
            assert_eq!(
                reply.from, published,
                "{what}: every fragment left as the published port"
            );
        }
    }
}

#[test]
fn fragmented_udp_both_ways_from_containers_to_a_published_port_via_host_addresses() {
    let (bed, _world) = bed(&[]);
    via_host_rows(&bed);
}

fn via_host_rows(bed: &Bed) {
    network(bed, "n3", 3);
    network(bed, "n4", 4);
    let c = bed.container("c", &["--network", "n3", "-p", "8091:91/udp"]);
    let d = bed.container("d", &["--network", "n4"]);
    let families: [(IpAddr, IpAddr, IpAddr, IpAddr, IpAddr); 2] = [
        (
            bed.ip(&c, "n3").into(),
            bed.ip(&d, "n4").into(),
            bed.gateway("n3").into(),
            bed.gateway("n4").into(),
            UPLINK.into(),
        ),
        (
            bed.ip6(&c, "n3").into(),
            bed.ip6(&d, "n4").into(),
            bed.gateway6("n3").into(),
            bed.gateway6("n4").into(),
            UPLINK6.into(),
        ),
    ];
    for (c_ip, d_ip, gw3, gw4, uplink) in families {
        let bind = any(c_ip, 91);
        // Another network's container, through the uplink's address and
        // its own gateway: the target sees it as itself.
        for host in [uplink, gw4] {
            let published = SocketAddr::new(host, 8091);
            let what = format!("d -> {published}");
            let (request, reply) = big_udp_exchange(&c.ns, bind, &d.ns, published, LEN);
            let request = whole(request, &format!("{what}: the target"), bed);
            assert_eq!(request.from.ip(), d_ip, "{what}: the client's address kept");
            let reply = whole(reply, &format!("{what}: the client"), bed);
            assert_eq!(
                reply.from, published,
                "{what}: every fragment came back as the address dialled"
            );
        }
        // Hairpin: the publishing container through its gateway and the
        // uplink's address.
        for host in [gw3, uplink] {
            let published = SocketAddr::new(host, 8091);
            let what = format!("c -> {published}");
            let (request, reply) = big_udp_exchange(&c.ns, bind, &c.ns, published, LEN);
            let request = whole(request, &format!("{what}: the target"), bed);
            // SPEC: a hairpin may appear as the gateway address.
            assert!(
                [gw3, c_ip].contains(&request.from.ip()),
                "{what}: the hairpin came from {}",
                request.from
            );
            let reply = whole(reply, &format!("{what}: the client"), bed);
            assert_eq!(
                reply.from, published,
                "{what}: every fragment came back as the address dialled"
            );
        }
    }
}

/// Every row above with `--host-routing kernel`, in one bed: the
/// programs translate, the bridge and the kernel's routing forward.
#[test]
fn fragmented_udp_every_row_with_kernel_host_routing() {
    if Firewall::from_env().expect("NETD_TEST_FIREWALL") != Firewall::Permissive {
        eprintln!(
            "SKIPPED: kernel host routing forwards through the host's FORWARD chain, \
             which a hostile host drops by design"
        );
        return;
    }
    let (bed, world) = bed(&["--host-routing", "kernel"]);
    assert_eq!(
        bed.json(&["status", "--format", "json"])["host_routing"]["mode"],
        "kernel"
    );
    masqueraded_rows(&bed, &world);
    published_rows(&bed, &world);
    via_host_rows(&bed);
}
