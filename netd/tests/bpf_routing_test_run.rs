//! BPF_PROG_TEST_RUN tests of eBPF host routing in `from_container`: each
//! forwarding decision (fib lookup success, no neighbour, fragmentation
//! needed, blackhole / unreachable / prohibit routes, a route onto a
//! bridge the agent listed, TTL, IP options; fragments are routed), the redirect target it
//! chose (seen in the rewritten MACs and TTL), the counter it bumped, and
//! `--host-routing kernel` leaving every packet to the stack.
//!
//! The fib lookups run in the test thread's netns: every test unshares a
//! fresh one and builds its routes there with iproute2 (dummy devices,
//! permanent neighbours), never touching the real host's. Needs root.
mod common;

use std::collections::HashSet;

use common::{
    counter, csum, endpoint, enter_private_netns, link, load, network, packet::Pkt, run_classifier,
    Bpffs, LO_IFINDEX, TC_ACT_OK, TC_ACT_REDIRECT,
};
use netd::datapath::{addr_key, Datapath, HostRouting, FROM_CONTAINER};
use netd_common::{mac_for_addr as mac_of, Uplink, NET_F_ICC, NET_F_MASQUERADE};

const ME: [u8; 4] = [10, 1, 0, 2];
const PEER: [u8; 4] = [10, 1, 0, 3];
const GATEWAY: [u8; 4] = [10, 1, 0, 1];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const OTHER_ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// What the private netns holds, for the assertions.
struct Net {
    up0: (u32, [u8; 6]),
}

/// Moves this test's thread into a new netns and builds: uplink `up0`
/// (198.51.100.7/24, router .1 resolved, default route), `other0`
/// (100.64.0.1/24, router .2 resolved, not an uplink), `peer0` and
/// `small0` (MTU 1280) standing for container veths (veth pairs: this
/// kernel has no dummy driver), and routes to
/// 192.0.2.x: .1 blackhole, .2 unreachable, .3 prohibit, .4 via an
/// unresolved router, .5 with a locked MTU of 1000 (what forwarding
/// honours, as the stack does), .6 via `other0`.
fn private_netns() -> Net {
    enter_private_netns(&[
        &["sysctl", "-qw", "net.ipv4.ip_forward=1"],
        &[
            "ip", "link", "add", "up0", "type", "veth", "peer", "name", "up0p",
        ],
        &["ip", "link", "set", "up0p", "up"],
        &["ip", "addr", "add", "198.51.100.7/24", "dev", "up0"],
        &["ip", "link", "set", "up0", "up"],
        &[
            "ip",
            "neigh",
            "add",
            "198.51.100.1",
            "lladdr",
            "02:00:00:00:00:01",
            "dev",
            "up0",
            "nud",
            "permanent",
        ],
        &["ip", "route", "add", "default", "via", "198.51.100.1"],
        &[
            "ip", "link", "add", "other0", "type", "veth", "peer", "name", "other0p",
        ],
        &["ip", "link", "set", "other0p", "up"],
        &["ip", "addr", "add", "100.64.0.1/24", "dev", "other0"],
        &["ip", "link", "set", "other0", "up"],
        &[
            "ip",
            "neigh",
            "add",
            "100.64.0.2",
            "lladdr",
            "02:00:00:00:00:02",
            "dev",
            "other0",
            "nud",
            "permanent",
        ],
        &[
            "ip", "link", "add", "peer0", "type", "veth", "peer", "name", "peer0p",
        ],
        &["ip", "link", "set", "peer0p", "up"],
        &["ip", "link", "set", "peer0", "up"],
        &[
            "ip", "link", "add", "small0", "mtu", "1280", "type", "veth", "peer", "name", "small0p",
        ],
        &["ip", "link", "set", "small0", "up"],
        &["ip", "link", "set", "small0p", "up"],
        &["ip", "route", "add", "blackhole", "192.0.2.1/32"],
        &["ip", "route", "add", "unreachable", "192.0.2.2/32"],
        &["ip", "route", "add", "prohibit", "192.0.2.3/32"],
        &["ip", "route", "add", "192.0.2.4/32", "via", "198.51.100.99"],
        &[
            "ip",
            "route",
            "add",
            "192.0.2.5/32",
            "via",
            "198.51.100.1",
            "mtu",
            "lock",
            "1000",
        ],
        &["ip", "route", "add", "192.0.2.6/32", "via", "100.64.0.2"],
    ]);
    Net { up0: link("up0") }
}

/// Container 10.1.0.2 on network 1 (10.1.0.0/24) behind `lo`; its peer
/// 10.1.0.3 behind `peer0`, 10.1.0.4 behind `small0`; `up0` the uplink.
fn datapath(fs: &Bpffs, net: &Net) -> Datapath {
    let mut dp = load(fs);
    let flags = NET_F_ICC | NET_F_MASQUERADE;
    network(&mut dp, 1, "10.1.0.0/24", GATEWAY, flags);
    let ep = |a: [u8; 4]| endpoint(a, 1, flags, GATEWAY);
    dp.set_endpoint(LO_IFINDEX, ep(ME)).unwrap();
    dp.set_endpoint(link("peer0").0, ep(PEER)).unwrap();
    dp.set_endpoint(link("small0").0, ep([10, 1, 0, 4]))
        .unwrap();
    let up = Uplink {
        addr: addr_key([198, 51, 100, 7].into()),
        port_min: 61000,
        port_max: 65535,
    };
    dp.set_uplink_entry(net.up0.0, up).unwrap();
    dp
}

/// A UDP packet from this container to `dst`, sent to the gateway's MAC
/// (what a container sends off its subnet).
fn to(dst: [u8; 4]) -> Pkt {
    sized(dst, 16)
}

/// [`to`] with `payload` bytes.
fn sized(dst: [u8; 4], payload: usize) -> Pkt {
    Pkt {
        dmac: mac_of(GATEWAY),
        smac: mac_of(ME),
        ..Pkt::udp(ME, dst, payload)
    }
}

fn run(dp: &mut Datapath, frame: &[u8]) -> (u32, Vec<u8>) {
    run_classifier(dp, FROM_CONTAINER, frame)
}

/// Asserts the frame left routed: MACs as given, TTL one less, header
/// checksum still right, addresses untouched.
fn assert_routed(out: &[u8], sent: &[u8], dmac: [u8; 6], smac: [u8; 6]) {
    assert_eq!(&out[0..6], &dmac, "destination MAC");
    assert_eq!(&out[6..12], &smac, "source MAC");
    assert_eq!(out[14 + 8], sent[14 + 8] - 1, "TTL decremented");
    let ihl = usize::from(out[14] & 0x0f) * 4;
    assert_eq!(csum(&out[14..14 + ihl], 0), 0, "IPv4 header checksum");
    assert_eq!(&out[14 + 12..14 + 20], &sent[14 + 12..14 + 20], "addresses");
    assert_eq!(&out[14 + ihl..], &sent[14 + ihl..], "payload");
}

#[test]
fn fib_success_redirects_to_the_uplink_router() {
    let net = private_netns();
    let fs = Bpffs::new("route-fib");
    let mut dp = datapath(&fs, &net);
    let sent = to([203, 0, 113, 9]).bytes();
    let (rc, out) = run(&mut dp, &sent);
    assert_eq!(rc, TC_ACT_REDIRECT);
    assert_routed(&out, &sent, ROUTER_MAC, net.up0.1);
    assert_eq!(counter(&dp, "fib-redirect"), 1);
}

#[test]
fn no_neighbour_leaves_resolution_to_the_kernel() {
    let net = private_netns();
    let fs = Bpffs::new("route-neigh");
    let mut dp = datapath(&fs, &net);
    let sent = to([192, 0, 2, 4]).bytes();
    let (rc, out) = run(&mut dp, &sent);
    assert_eq!(
        rc, TC_ACT_REDIRECT,
        "redirect_neigh with the fib's next hop"
    );
    // The kernel writes the MACs once it resolved 198.51.100.99.
    assert_eq!(out[14 + 8], 63, "TTL decremented");
    assert_eq!(csum(&out[14..34], 0), 0);
    assert_eq!(counter(&dp, "fib-redirect-neigh"), 1);
    assert_eq!(counter(&dp, "fib-redirect"), 0);
}

#[test]
fn larger_than_the_route_mtu_goes_to_the_stack() {
    let net = private_netns();
    let fs = Bpffs::new("route-mtu");
    let mut dp = datapath(&fs, &net);
    let mut big = sized([192, 0, 2, 5], 1200);
    let sent = big.bytes();
    let (rc, out) = run(&mut dp, &sent);
    assert_eq!(rc, TC_ACT_OK, "the stack sends fragmentation needed");
    assert_eq!(out, sent, "left unchanged");
    assert_eq!(counter(&dp, "frag-needed"), 1);
    // The same size fits the default route's 1500.
    big.dst = [203, 0, 113, 9];
    assert_eq!(run(&mut dp, &big.bytes()).0, TC_ACT_REDIRECT);
    // And a small one fits the 1000 route.
    assert_eq!(run(&mut dp, &to([192, 0, 2, 5]).bytes()).0, TC_ACT_REDIRECT);
    assert_eq!(counter(&dp, "fib-redirect"), 2);
}

#[test]
fn refusing_routes_go_to_the_stack_counted() {
    let net = private_netns();
    let fs = Bpffs::new("route-refused");
    let mut dp = datapath(&fs, &net);
    for last in [1u8, 2, 3] {
        let sent = to([192, 0, 2, last]).bytes();
        let (rc, out) = run(&mut dp, &sent);
        assert_eq!(rc, TC_ACT_OK, "192.0.2.{last}");
        assert_eq!(out, sent, "192.0.2.{last} left unchanged");
    }
    assert_eq!(counter(&dp, "route-refused"), 3);
    assert_eq!(counter(&dp, "fib-redirect"), 0);
    // A route by another (non-bridge) device is taken, to its router...
    let sent = to([192, 0, 2, 6]).bytes();
    let (rc, out) = run(&mut dp, &sent);
    assert_eq!(rc, TC_ACT_REDIRECT);
    assert_routed(&out, &sent, OTHER_ROUTER_MAC, link("other0").1);
    assert_eq!(counter(&dp, "fib-redirect"), 1);
    // ...but not once the agent lists the device as a bridge (another
    // runtime's): that stays the host firewall's to judge.
    dp.set_no_shortcut(&HashSet::from([link("other0").0]))
        .unwrap();
    assert_eq!(run(&mut dp, &sent), (TC_ACT_OK, sent));
    assert_eq!(counter(&dp, "to-bridge"), 1);
    assert_eq!(counter(&dp, "fib-redirect"), 1);
}

#[test]
fn ttl_and_options_go_to_the_stack_fragments_are_routed() {
    let net = private_netns();
    let fs = Bpffs::new("route-slow");
    let mut dp = datapath(&fs, &net);
    let world = [203, 0, 113, 9];
    let mut p = to(world);
    p.ttl = 1;
    assert_eq!(run(&mut dp, &p.bytes()).0, TC_ACT_OK);
    assert_eq!(counter(&dp, "ttl-expired"), 1);
    let mut p = to(world);
    p.ihl_words = 7;
    assert_eq!(run(&mut dp, &p.bytes()).0, TC_ACT_OK);
    assert_eq!(counter(&dp, "ip-options"), 1);
    // Fragments (first, later) are routed as whole datagrams are: the
    // uplink's egress translates the later ones as their first.
    for frag in [0x2000u16, 0x0010] {
        let mut p = to(world);
        p.frag = frag;
        let sent = p.bytes();
        let (rc, out) = run(&mut dp, &sent);
        assert_eq!(rc, TC_ACT_REDIRECT, "frag {frag:#x}");
        assert_routed(&out, &sent, ROUTER_MAC, net.up0.1);
    }
    assert_eq!(counter(&dp, "fragment"), 0);
    assert_eq!(counter(&dp, "fib-redirect"), 2);
    let mut p = to([224, 0, 0, 251]);
    p.dmac = [0x01, 0x00, 0x5e, 0, 0, 0xfb];
    assert_eq!(run(&mut dp, &p.bytes()).0, TC_ACT_OK);
    let p = to([10, 1, 0, 255]);
    assert_eq!(run(&mut dp, &p.bytes()).0, TC_ACT_OK);
    assert_eq!(counter(&dp, "broadcast-multicast"), 2);
    assert_eq!(counter(&dp, "fib-redirect"), 2);
}

#[test]
fn same_network_goes_into_the_peer_as_sent() {
    let net = private_netns();
    let fs = Bpffs::new("route-peer");
    let mut dp = datapath(&fs, &net);
    let mut p = to(PEER);
    p.dmac = mac_of(PEER);
    let sent = p.bytes();
    let (rc, out) = run(&mut dp, &sent);
    assert_eq!(rc, TC_ACT_REDIRECT);
    assert_eq!(out, sent, "bridged frames are not rewritten");
    assert_eq!(counter(&dp, "peer-same-network"), 1);
    // Sent to the gateway's MAC: routed back, as the host would.
    let sent = to(PEER).bytes();
    let (rc, out) = run(&mut dp, &sent);
    assert_eq!(rc, TC_ACT_REDIRECT);
    assert_routed(&out, &sent, mac_of(PEER), mac_of(GATEWAY));
    assert_eq!(counter(&dp, "peer-routed"), 1);
    // Larger than the receiver's MTU: the stack's path.
    let big = sized([10, 1, 0, 4], 1300);
    assert_eq!(run(&mut dp, &big.bytes()).0, TC_ACT_OK);
    assert_eq!(counter(&dp, "frag-needed"), 1);
    // No endpoint at the address: the bridge's business.
    let mut p = to([10, 1, 0, 9]);
    p.dmac = mac_of([10, 1, 0, 9]);
    assert_eq!(run(&mut dp, &p.bytes()).0, TC_ACT_OK);
    assert_eq!(counter(&dp, "no-endpoint"), 1);
}

#[test]
fn kernel_mode_leaves_every_packet_to_the_stack() {
    let net = private_netns();
    let fs = Bpffs::new("route-kernel");
    let mut dp = datapath(&fs, &net);
    dp.set_host_routing(HostRouting::Kernel).unwrap();
    assert_eq!(dp.host_routing().unwrap(), HostRouting::Kernel);
    let mut same = to(PEER);
    same.dmac = mac_of(PEER);
    for p in [to([203, 0, 113, 9]), same, to(PEER)] {
        let sent = p.bytes();
        assert_eq!(run(&mut dp, &sent), (TC_ACT_OK, sent));
    }
    let c = dp.routing_counts().unwrap();
    assert!(
        c.shortcuts
            .iter()
            .chain(c.fallbacks.iter())
            .all(|(_, n)| *n == 0),
        "{c:?}"
    );
    dp.set_host_routing(HostRouting::Ebpf).unwrap();
    assert_eq!(
        run(&mut dp, &to([203, 0, 113, 9]).bytes()).0,
        TC_ACT_REDIRECT
    );
}
