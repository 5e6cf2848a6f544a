//! BPF_PROG_TEST_RUN tests of NAT66 and IPv6 host routing: masquerade of
//! container TCP, UDP and ICMPv6 echo at uplink_out (the uplink's IPv6
//! address, a port of the shared allocator), replies translated back at
//! uplink_in, ICMPv6 errors (Packet Too Big, Destination Unreachable, Time
//! Exceeded) translated inside and out, each frame compared byte for byte
//! with one built from scratch (so every checksum is the one a sender
//! would compute); routed (`--masquerade=false`) and internal networks;
//! and the fib paths of `from_container` for IPv6 (redirect with the
//! neighbour's MAC and the hop limit decremented, unresolved neighbour,
//! and each counted fallback). A fragmented datagram and its fragmented
//! reply: the first fragment translated by its ports (the UDP checksum
//! over the whole datagram), the later one following it (out: the
//! address; in: to the container, delivered with eBPF host routing),
//! strays left to the host or refused. Needs root.
mod common;

use std::net::Ipv6Addr;

use common::{
    counter, endpoint, endpoint6, enter_private_netns, link, load, network, network6,
    packet::{tcp, udp_with},
    packet6::{Pkt6, DSTOPTS},
    run_classifier,
    verify::{csum, fill_checksum, pseudo6, verify6},
    Bpffs, LO_IFINDEX, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT,
};
use netd::datapath::{
    addr6_key, addr_key, Datapath, HostRouting, FROM_CONTAINER, UPLINK_IN, UPLINK_OUT,
};
use netd_common::{
    proto::{IPPROTO_ICMPV6 as ICMPV6, IPPROTO_TCP as TCP, IPPROTO_UDP as UDP},
    Uplink, Uplink6, NET_F_ICC, NET_F_INTERNAL, NET_F_MASQUERADE,
};

/// Container on the masquerading network fd00:7::/64.
const ME: &str = "fd00:7::2";
const GW: &str = "fd00:7::1";
/// Container on the routed network fd00:8::/64 (`--masquerade=false`).
const ROUTED: &str = "fd00:8::2";
/// Container on the internal network fd00:9::/64.
const INSIDE: &str = "fd00:9::2";
const UPLINK6: &str = "2001:db8:7::7";
const WORLD: &str = "2001:db8:5::9";
/// A router on the way, sending ICMPv6 errors.
const ROUTER: &str = "2001:db8:6::1";
const PORTS: (u16, u16) = (40000, 40009);
const MY_MAC: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x02];
const GW_MAC: [u8; 6] = [0x02, 0x42, 10, 7, 0, 1];
const WORLD_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x09];

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// Networks fd00:7::/64 (masquerade), fd00:8::/64 (routed), fd00:9::/64
/// (internal), the loopback device as uplink with UPLINK6, and the
/// container ME behind the loopback device as its veth.
fn datapath(fs: &Bpffs, mode: HostRouting) -> Datapath {
    let mut dp = load(fs);
    let masq = NET_F_ICC | NET_F_MASQUERADE;
    network(&mut dp, 1, "10.7.0.0/24", [10, 7, 0, 1], masq);
    network6(&mut dp, 1, "fd00:7::/64", GW, masq);
    network(&mut dp, 2, "10.8.0.0/24", [10, 8, 0, 1], NET_F_ICC);
    network6(&mut dp, 2, "fd00:8::/64", "fd00:8::1", NET_F_ICC);
    let internal = NET_F_ICC | NET_F_INTERNAL;
    network(&mut dp, 3, "10.9.0.0/24", [10, 9, 0, 1], internal);
    network6(&mut dp, 3, "fd00:9::/64", "fd00:9::1", internal);
    let up = Uplink {
        addr: addr_key([198, 51, 100, 7].into()),
        port_min: PORTS.0,
        port_max: PORTS.1,
    };
    dp.set_uplink_entry(LO_IFINDEX, up).unwrap();
    let up6 = Uplink6 {
        addr: addr6_key(v6(UPLINK6)),
        port_min: PORTS.0,
        port_max: PORTS.1,
        _pad: 0,
    };
    dp.set_uplink6(LO_IFINDEX, up6).unwrap();
    let mut ep = endpoint([10, 7, 0, 2], 1, masq, [10, 7, 0, 1]);
    ep.mac = MY_MAC;
    dp.set_endpoint(LO_IFINDEX, ep).unwrap();
    dp.set_endpoint6(LO_IFINDEX, endpoint6(ME, GW, GW_MAC))
        .unwrap();
    dp.set_host_routing(mode).unwrap();
    dp
}

// ------------------------------------------------------------- frames

/// An IPv6 packet (from its version field on) carrying `l4`, its
/// checksum computed from scratch.
fn packet(src: &str, dst: &str, hops: u8, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = Pkt6::new(src, dst, proto, l4.to_vec());
    p.hop_limit = hops;
    p.bytes()[14..].to_vec()
}

/// `packet` in an Ethernet frame from `smac` to `dmac`.
fn frame(dmac: [u8; 6], smac: [u8; 6], ip: &[u8]) -> Vec<u8> {
    let mut f = dmac.to_vec();
    f.extend_from_slice(&smac);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(ip);
    f
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    udp_with(sport, dport, b"sixteen bytes!!!")
}

fn echo(request: bool, id: u16) -> Vec<u8> {
    let mut h = vec![if request { 128 } else { 129 }, 0, 0, 0];
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&[0, 1, 0xcc, 0xcc, 0xcc, 0xcc]);
    h
}

/// An ICMPv6 error of `ty` (the 4 bytes after the checksum: `word`)
/// quoting `quoted`.
fn error(ty: u8, word: u32, quoted: &[u8]) -> Vec<u8> {
    let mut h = vec![ty, 0, 0, 0];
    h.extend_from_slice(&word.to_be_bytes());
    h.extend_from_slice(quoted);
    h
}

/// (source, destination, source port or echo id, destination port) of an
/// IPv6 frame, after asserting its upper-layer checksum.
fn seen(f: &[u8]) -> (Ipv6Addr, Ipv6Addr, u16, u16) {
    let s = verify6(f);
    (s.src, s.dst, s.sport, s.dport)
}

fn run(dp: &mut Datapath, prog: &str, f: &[u8]) -> (u32, Vec<u8>) {
    run_classifier(dp, prog, f)
}

/// The container's packet as it leaves the host, translated; returns the
/// NAT port (or id) after checking the frame byte for byte.
fn leaves(dp: &mut Datapath, proto: u8, l4: impl Fn(u16) -> Vec<u8>, sport: u16) -> u16 {
    let sent = frame(WORLD_MAC, GW_MAC, &packet(ME, WORLD, 63, proto, &l4(sport)));
    let (v, out) = run(dp, UPLINK_OUT, &sent);
    assert_eq!(v, TC_ACT_OK, "proto {proto} out");
    let (src, _, port, _) = seen(&out);
    assert_eq!(src, v6(UPLINK6), "proto {proto}: masqueraded source");
    assert!(
        (PORTS.0..=PORTS.1).contains(&port),
        "proto {proto}: port {port} out of {PORTS:?}"
    );
    let want = frame(
        WORLD_MAC,
        GW_MAC,
        &packet(UPLINK6, WORLD, 63, proto, &l4(port)),
    );
    assert_eq!(out, want, "proto {proto}: the frame as it leaves");
    port
}

#[test]
fn tcp_udp_and_echo_are_masqueraded_and_replies_translated_back() {
    let fs = Bpffs::new("nat66-flows");
    let mut dp = datapath(&fs, HostRouting::Kernel);
    for proto in [TCP, UDP] {
        let l4 = |s| {
            if proto == TCP {
                tcp(s, 80, 0x02)
            } else {
                udp(s, 80)
            }
        };
        let port = leaves(&mut dp, proto, l4, 33333);
        // The flow keeps its port.
        assert_eq!(leaves(&mut dp, proto, l4, 33333), port);
        let reply_l4 = |d| {
            if proto == TCP {
                tcp(80, d, 0x12)
            } else {
                udp(80, d)
            }
        };
        let reply = frame(
            GW_MAC,
            WORLD_MAC,
            &packet(WORLD, UPLINK6, 60, proto, &reply_l4(port)),
        );
        let (v, back) = run(&mut dp, UPLINK_IN, &reply);
        assert_eq!(v, TC_ACT_OK, "proto {proto}: reply in");
        let want = frame(
            GW_MAC,
            WORLD_MAC,
            &packet(WORLD, ME, 60, proto, &reply_l4(33333)),
        );
        assert_eq!(back, want, "proto {proto}: reply translated back");
        // Another port of the uplink address is no reply: the host's.
        let other = frame(
            GW_MAC,
            WORLD_MAC,
            &packet(WORLD, UPLINK6, 60, proto, &reply_l4(port ^ 1)),
        );
        let (v, back) = run(&mut dp, UPLINK_IN, &other);
        assert_eq!(
            (v, &back),
            (TC_ACT_OK, &other),
            "proto {proto}: host traffic untouched"
        );
    }
    // ICMPv6 echo: the id is translated, the reply comes back with it.
    let id = leaves(&mut dp, ICMPV6, |i| echo(true, i), 77);
    let reply = frame(
        GW_MAC,
        WORLD_MAC,
        &packet(WORLD, UPLINK6, 60, ICMPV6, &echo(false, id)),
    );
    let (v, back) = run(&mut dp, UPLINK_IN, &reply);
    assert_eq!(v, TC_ACT_OK);
    assert_eq!(
        back,
        frame(
            GW_MAC,
            WORLD_MAC,
            &packet(WORLD, ME, 60, ICMPV6, &echo(false, 77))
        ),
        "echo reply translated back"
    );
}

#[test]
fn two_containers_one_port_get_distinct_nat_ports() {
    let fs = Bpffs::new("nat66-ports");
    let mut dp = datapath(&fs, HostRouting::Kernel);
    let a = leaves(&mut dp, UDP, |s| udp(s, 53), 5353);
    // A second container (same network) from the same port to the same
    // server.
    let sent = frame(
        WORLD_MAC,
        GW_MAC,
        &packet("fd00:7::3", WORLD, 63, UDP, &udp(5353, 53)),
    );
    let (v, out) = run(&mut dp, UPLINK_OUT, &sent);
    assert_eq!(v, TC_ACT_OK);
    let (src, _, b, _) = seen(&out);
    assert_eq!(src, v6(UPLINK6));
    assert_ne!(a, b, "two flows to one server share no NAT port");
}

/// The error `ty` a router sends about the packet `sent_l4` of protocol
/// `proto` from ME as it left (translated): it reaches the container with
/// the outer destination and the quote (address, port or id, the quoted
/// checksum) as ME sent it, byte for byte.
fn error_comes_back(
    dp: &mut Datapath,
    ty: u8,
    word: u32,
    proto: u8,
    l4: impl Fn(u16) -> Vec<u8>,
    sport: u16,
) {
    let port = leaves(dp, proto, &l4, sport);
    let as_left = packet(UPLINK6, WORLD, 62, proto, &l4(port));
    let err = frame(
        GW_MAC,
        WORLD_MAC,
        &packet(ROUTER, UPLINK6, 60, ICMPV6, &error(ty, word, &as_left)),
    );
    let (v, back) = run(dp, UPLINK_IN, &err);
    assert_eq!(v, TC_ACT_OK, "error {ty} about proto {proto}");
    let as_sent = packet(ME, WORLD, 62, proto, &l4(sport));
    let want = frame(
        GW_MAC,
        WORLD_MAC,
        &packet(ROUTER, ME, 60, ICMPV6, &error(ty, word, &as_sent)),
    );
    assert_eq!(
        back, want,
        "error {ty} about proto {proto}, translated inside and out"
    );
}

#[test]
fn icmpv6_errors_are_translated_inside_and_out() {
    let fs = Bpffs::new("nat66-errors");
    let mut dp = datapath(&fs, HostRouting::Kernel);
    // Packet Too Big about a UDP datagram (the MTU in the word).
    error_comes_back(&mut dp, 2, 1280, UDP, |s| udp(s, 4433), 4444);
    // Destination Unreachable (port) about a TCP segment.
    error_comes_back(&mut dp, 1, 0, TCP, |s| tcp(s, 443, 0x02), 3333);
    // Time Exceeded about an echo request.
    error_comes_back(&mut dp, 3, 0, ICMPV6, |i| echo(true, i), 91);
    // An error quoting no tracked flow is the host's.
    let stray = packet(UPLINK6, WORLD, 62, UDP, &udp(PORTS.1 + 1, 9));
    let err = frame(
        GW_MAC,
        WORLD_MAC,
        &packet(ROUTER, UPLINK6, 60, ICMPV6, &error(2, 1280, &stray)),
    );
    let (v, back) = run(&mut dp, UPLINK_IN, &err);
    assert_eq!((v, &back), (TC_ACT_OK, &err));
}

#[test]
fn routed_and_internal_networks() {
    let fs = Bpffs::new("nat66-routed");
    let mut dp = datapath(&fs, HostRouting::Kernel);
    // --masquerade=false: leaves as it is, its reply gets in.
    let sent = frame(
        WORLD_MAC,
        GW_MAC,
        &packet(ROUTED, WORLD, 63, TCP, &tcp(1234, 80, 0x02)),
    );
    let (v, out) = run(&mut dp, UPLINK_OUT, &sent);
    assert_eq!((v, &out), (TC_ACT_OK, &sent), "routed: untouched");
    let reply = frame(
        GW_MAC,
        WORLD_MAC,
        &packet(WORLD, ROUTED, 60, TCP, &tcp(80, 1234, 0x12)),
    );
    let (v, back) = run(&mut dp, UPLINK_IN, &reply);
    assert_eq!((v, &back), (TC_ACT_OK, &reply), "routed: reply in");
    // Internal: nothing leaves.
    let before = counter(&dp, "internal-network");
    let sent = frame(
        WORLD_MAC,
        GW_MAC,
        &packet(INSIDE, WORLD, 63, UDP, &udp(1234, 53)),
    );
    let (v, _) = run(&mut dp, UPLINK_OUT, &sent);
    assert_eq!(v, TC_ACT_SHOT);
    assert_eq!(counter(&dp, "internal-network"), before + 1);
    // An uplink without a global IPv6 address routes.
    dp.remove_uplink6(LO_IFINDEX).unwrap();
    let sent = frame(
        WORLD_MAC,
        GW_MAC,
        &packet(ME, WORLD, 63, UDP, &udp(2222, 53)),
    );
    let (v, out) = run(&mut dp, UPLINK_OUT, &sent);
    assert_eq!((v, &out), (TC_ACT_OK, &sent), "no uplink address: routed");
}

#[test]
fn replies_are_delivered_into_the_container_with_ebpf_routing() {
    let fs = Bpffs::new("nat66-deliver");
    let mut dp = datapath(&fs, HostRouting::Ebpf);
    let port = leaves(&mut dp, TCP, |s| tcp(s, 443, 0x02), 3333);
    let peer = counter(&dp, "peer-routed");
    let reply = frame(
        GW_MAC,
        WORLD_MAC,
        &packet(WORLD, UPLINK6, 60, TCP, &tcp(443, port, 0x12)),
    );
    let (v, back) = run(&mut dp, UPLINK_IN, &reply);
    assert_eq!(v, TC_ACT_REDIRECT, "straight into the container");
    assert_eq!(
        back,
        frame(
            MY_MAC,
            GW_MAC,
            &packet(WORLD, ME, 59, TCP, &tcp(443, 3333, 0x12))
        ),
        "container and bridge MACs, hop limit decremented"
    );
    assert_eq!(counter(&dp, "peer-routed"), peer + 1);
    // A hop limit that runs out here: the stack answers.
    let expired = counter(&dp, "ttl-expired");
    let last = frame(
        GW_MAC,
        WORLD_MAC,
        &packet(WORLD, UPLINK6, 1, TCP, &tcp(443, port, 0x10)),
    );
    let (v, _) = run(&mut dp, UPLINK_IN, &last);
    assert_eq!(v, TC_ACT_OK);
    assert_eq!(counter(&dp, "ttl-expired"), expired + 1);
}

// ---------------------------------------------------------- fib paths

/// Moves the test thread into a new netns: uplink `up0`
/// (2001:db8:7::7/64, router 2001:db8:7::1 resolved, the default route),
/// a route via an unresolved router, a blackhole and a route whose MTU is
/// locked at 1300.
fn private_netns() -> (u32, [u8; 6]) {
    enter_private_netns(&[
        &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"],
        &[
            "ip", "link", "add", "up0", "type", "veth", "peer", "name", "up0p",
        ],
        &["ip", "link", "set", "up0p", "up"],
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8:7::7/64",
            "dev",
            "up0",
            "nodad",
        ],
        &["ip", "link", "set", "up0", "up"],
        &[
            "ip",
            "-6",
            "neigh",
            "add",
            "2001:db8:7::1",
            "lladdr",
            "02:00:00:00:00:01",
            "dev",
            "up0",
            "nud",
            "permanent",
        ],
        &[
            "ip",
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:7::1",
        ],
        &[
            "ip",
            "-6",
            "route",
            "add",
            "2001:db8:44::/64",
            "via",
            "2001:db8:7::44",
        ],
        &["ip", "-6", "route", "add", "blackhole", "2001:db8:66::/64"],
        &[
            "ip",
            "-6",
            "route",
            "add",
            "2001:db8:13::/64",
            "via",
            "2001:db8:7::1",
            "mtu",
            "lock",
            "1300",
        ],
    ]);
    link("up0")
}

/// A frame ME sends to the bridge for `dst` with hop limit `hops` and
/// `extra` payload bytes.
fn to_world(dst: &str, hops: u8, extra: usize) -> Vec<u8> {
    let mut l4 = udp(5555, 53);
    l4.extend(std::iter::repeat_n(0x5a, extra));
    let len = (l4.len() as u16).to_be_bytes();
    l4[4..6].copy_from_slice(&len);
    frame(GW_MAC, MY_MAC, &packet(ME, dst, hops, UDP, &l4))
}

#[test]
fn fib_paths_of_container_ipv6_to_the_world() {
    let (up0, up0_mac) = private_netns();
    let fs = Bpffs::new("nat66-fib");
    let mut dp = datapath(&fs, HostRouting::Ebpf);
    dp.set_uplink_entry(
        up0,
        Uplink {
            addr: 0,
            port_min: PORTS.0,
            port_max: PORTS.1,
        },
    )
    .unwrap();

    // Resolved neighbour: the router's MAC, the uplink's, hop limit - 1.
    let n = counter(&dp, "fib-redirect");
    let sent = to_world(WORLD, 64, 0);
    let (v, out) = run(&mut dp, FROM_CONTAINER, &sent);
    assert_eq!(v, TC_ACT_REDIRECT, "redirected to the uplink");
    let mut want = sent.clone();
    want[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    want[6..12].copy_from_slice(&up0_mac);
    want[14 + 7] = 63;
    assert_eq!(out, want, "router MAC, uplink MAC, hop limit decremented");
    assert_eq!(counter(&dp, "fib-redirect"), n + 1);

    // Unresolved next hop: redirect_neigh lets the kernel resolve it.
    let n = counter(&dp, "fib-redirect-neigh");
    let (v, _) = run(&mut dp, FROM_CONTAINER, &to_world("2001:db8:44::1", 64, 0));
    assert_eq!(v, TC_ACT_REDIRECT);
    assert_eq!(counter(&dp, "fib-redirect-neigh"), n + 1);

    // Fragments are routed as whole datagrams are (a fragment header is
    // no router's business); other extension headers take the stack.
    let n = counter(&dp, "fib-redirect");
    let udp_first = Pkt6::new(ME, WORLD, UDP, udp_with(5555, 53, &[0x5a; 24]));
    let later = Pkt6::new(ME, WORLD, UDP, vec![0x77; 7]);
    for (p, what) in [
        (udp_first.clone().fragment(0, true, 5), "first fragment"),
        (later.clone().fragment(4, false, 5), "later fragment"),
    ] {
        let sent = p.link(GW_MAC, MY_MAC, 64).bytes();
        let (v, out) = run(&mut dp, FROM_CONTAINER, &sent);
        assert_eq!(v, TC_ACT_REDIRECT, "{what}: redirected to the uplink");
        assert_eq!(out[14 + 7], 63, "{what}: hop limit decremented");
        assert_eq!(&out[14..14 + 7], &sent[14..14 + 7], "{what}: header");
        assert_eq!(&out[14 + 8..], &sent[14 + 8..], "{what}: the rest");
    }
    assert_eq!(counter(&dp, "fib-redirect"), n + 2);
    let before = (counter(&dp, "ip-options"), counter(&dp, "fragment"));
    let behind = later.opts(DSTOPTS, 1).fragment(4, false, 6);
    let sent = behind.link(GW_MAC, MY_MAC, 64).bytes();
    assert_eq!(run(&mut dp, FROM_CONTAINER, &sent), (TC_ACT_OK, sent));
    assert_eq!(
        (counter(&dp, "ip-options"), counter(&dp, "fragment")),
        (before.0 + 1, before.1),
        "a fragment behind a destination options header: ip-options"
    );

    // Counted fallbacks, each left to the stack unchanged.
    for (dst, hops, extra, name) in [
        ("2001:db8:66::1", 64, 0, "route-refused"),
        ("2001:db8:13::1", 64, 1300, "frag-needed"),
        (WORLD, 1, 0, "ttl-expired"),
        ("ff0e::1", 64, 0, "broadcast-multicast"),
        // A peer address of the network with no endpoint on this host.
        ("fd00:7::3", 64, 0, "no-endpoint"),
    ] {
        let before = counter(&dp, name);
        let sent = to_world(dst, hops, extra);
        let (v, out) = run(&mut dp, FROM_CONTAINER, &sent);
        assert_eq!(
            (v, &out),
            (TC_ACT_OK, &sent),
            "{name}: to the stack as it was"
        );
        assert_eq!(counter(&dp, name), before + 1, "{name} counted");
    }

    // --host-routing kernel: the stack routes it.
    dp.set_host_routing(HostRouting::Kernel).unwrap();
    let n = counter(&dp, "fib-redirect");
    let sent = to_world(WORLD, 64, 0);
    let (v, out) = run(&mut dp, FROM_CONTAINER, &sent);
    assert_eq!((v, &out), (TC_ACT_OK, &sent));
    assert_eq!(counter(&dp, "fib-redirect"), n);
}

// ------------------------------------------------------------ fragments

/// A UDP datagram `sport` -> `dport` with 40 data bytes in two fragments
/// of identification `id`, as IPv6 packets (from the version field on)
/// with hop limit `hops`: the first holds the UDP header, whose length
/// and checksum cover the whole datagram, and 24 data bytes; the later
/// one (offset 32, the last) the other 16.
fn fragments(src: &str, dst: &str, hops: u8, (sport, dport): (u16, u16), id: u32) -> [Vec<u8>; 2] {
    let (s, d) = (v6(src), v6(dst));
    let mut whole = udp_with(sport, dport, &(0..40).collect::<Vec<u8>>());
    let init = pseudo6(&s.octets(), &d.octets(), UDP, whole.len());
    fill_checksum(&mut whole, UDP, init);
    let part = |l4: &[u8], offset8: u16, more: bool| {
        let mut p = Pkt6::new(s, d, UDP, l4.to_vec()).fragment(offset8, more, id);
        p.hop_limit = hops;
        let mut ip = p.bytes()[14..].to_vec();
        // The builder sums `l4` as a datagram of its own: the bytes as
        // they are instead.
        ip.truncate(40 + 8);
        ip.extend_from_slice(l4);
        ip
    };
    [part(&whole[..32], 0, true), part(&whole[32..], 4, false)]
}

/// The UDP checksum over the datagram that the fragment frames `first`
/// and `later` make, with their addresses: 0 when it is right.
fn reassembled_csum(first: &[u8], later: &[u8]) -> u16 {
    assert_eq!(&later[22..54], &first[22..54], "the fragments' addresses");
    let src: [u8; 16] = first[22..38].try_into().unwrap();
    let dst: [u8; 16] = first[38..54].try_into().unwrap();
    let mut l4 = first[62..].to_vec();
    l4.extend_from_slice(&later[62..]);
    csum(&l4, pseudo6(&src, &dst, UDP, l4.len()))
}

/// The two fragments `sent` through `prog`, each verdict `want`.
fn run_both(dp: &mut Datapath, prog: &str, sent: &[Vec<u8>; 2], want: u32) -> [Vec<u8>; 2] {
    sent.clone().map(|f| {
        let (v, out) = run(dp, prog, &f);
        assert_eq!(v, want, "{prog}: verdict");
        out
    })
}

#[test]
fn fragments_of_a_masqueraded_datagram_and_of_its_reply_follow_their_first() {
    let fs = Bpffs::new("nat66-frags");
    let mut dp = datapath(&fs, HostRouting::Kernel);
    let on = |dmac, smac, ip: [Vec<u8>; 2]| ip.map(|p| frame(dmac, smac, &p));

    // The container's datagram: the first fragment gets the uplink's
    // address and a NAT port (the checksum, over the whole datagram,
    // follows both), the later one the address its first got.
    let id = 0x0a0b_0c0d;
    let sent = on(WORLD_MAC, GW_MAC, fragments(ME, WORLD, 63, (5353, 53), id));
    let out = run_both(&mut dp, UPLINK_OUT, &sent, TC_ACT_OK);
    let port = u16::from_be_bytes([out[0][62], out[0][63]]);
    assert!(
        (PORTS.0..=PORTS.1).contains(&port),
        "NAT port {port} out of {PORTS:?}"
    );
    let want = on(
        WORLD_MAC,
        GW_MAC,
        fragments(UPLINK6, WORLD, 63, (port, 53), id),
    );
    assert_eq!(out[0], want[0], "the first fragment as it leaves");
    assert_eq!(out[1], want[1], "the later fragment as it leaves");
    assert_eq!(reassembled_csum(&out[0], &out[1]), 0, "UDP checksum out");

    // The reply in fragments: the first is translated back by its ports,
    // the later one follows it to the container, its data untouched.
    let id = 0x5151;
    let reply = on(
        GW_MAC,
        WORLD_MAC,
        fragments(WORLD, UPLINK6, 60, (53, port), id),
    );
    let back = run_both(&mut dp, UPLINK_IN, &reply, TC_ACT_OK);
    let want = on(GW_MAC, WORLD_MAC, fragments(WORLD, ME, 60, (53, 5353), id));
    assert_eq!(back[0], want[0], "the first reply fragment translated back");
    assert_eq!(back[1], want[1], "the later reply fragment follows it");
    assert_eq!(reassembled_csum(&back[0], &back[1]), 0, "UDP checksum in");

    // Later fragments of another datagram (another id, another source)
    // are the host's, untouched; one addressed to the container whose
    // first was not let in is refused.
    for (src, id, what) in [
        (WORLD, id + 1, "another id"),
        (ROUTER, id, "another source"),
    ] {
        let [_, stray] = on(
            GW_MAC,
            WORLD_MAC,
            fragments(src, UPLINK6, 60, (53, port), id),
        );
        let (v, out) = run(&mut dp, UPLINK_IN, &stray);
        assert_eq!((v, &out), (TC_ACT_OK, &stray), "later fragment of {what}");
    }
    let refused = counter(&dp, "not-a-reply");
    let [_, stray] = on(
        GW_MAC,
        WORLD_MAC,
        fragments(WORLD, ME, 60, (53, 5353), id + 2),
    );
    assert_eq!(run(&mut dp, UPLINK_IN, &stray).0, TC_ACT_SHOT);
    assert_eq!(counter(&dp, "not-a-reply"), refused + 1, "not-a-reply");

    // With eBPF host routing both go straight into the container: its
    // and the bridge's MACs, one hop less.
    dp.set_host_routing(HostRouting::Ebpf).unwrap();
    let id = 0x5152;
    let reply = on(
        GW_MAC,
        WORLD_MAC,
        fragments(WORLD, UPLINK6, 60, (53, port), id),
    );
    let back = run_both(&mut dp, UPLINK_IN, &reply, TC_ACT_REDIRECT);
    let want = on(MY_MAC, GW_MAC, fragments(WORLD, ME, 59, (53, 5353), id));
    assert_eq!(back, want, "both fragments delivered into the container");
}
