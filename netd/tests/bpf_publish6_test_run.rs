//! BPF_PROG_TEST_RUN tests of published ports over IPv6: a new flow from
//! the world to a published port at uplink_in gets the container's IPv6
//! address and port as destination (the client's kept), its next packets
//! too, and the reply leaves uplink_out as the host address and published
//! port; each frame compared byte for byte with one built from scratch
//! (so the TCP/UDP checksum is the one a sender would compute). A port
//! published on one host address is not translated on another; with eBPF
//! host routing the translated packet goes straight into the container
//! (redirect, hop limit decremented, the container's MACs). A packet
//! whose upper-layer header sits behind extension headers is translated
//! as well, a fragmented datagram by its first fragment (its later
//! fragments follow by source, destination and id, into the container
//! with eBPF host routing, and the reply's leave as its first did). Containers reach a
//! published port through a host address: another network's container is
//! seen with its own address, a hairpin to itself with its gateway's, the
//! replies go back as the published address (addresses and checksums
//! checked), and an internal network's container is refused; with kernel
//! host routing the target's veth lets a fragmented request's later
//! fragments in as its first (none of another datagram). Needs root.
mod common;

use std::net::Ipv6Addr;

use common::{
    assert_verdict, counter, endpoint, endpoint6, load, network, network6,
    packet::{tcp, udp_with},
    packet6::{Pkt6, DSTOPTS, HOPOPTS},
    run_classifier,
    verify::verify6,
    Bpffs, LO_IFINDEX, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT,
};
use netd::{
    datapath::{
        addr_key, Datapath, HostRouting, FROM_CONTAINER, TO_CONTAINER, UPLINK_IN, UPLINK_OUT,
    },
    ports::{PortMapping, Proto},
};
use netd_common::{
    proto::{IPPROTO_TCP as TCP, IPPROTO_UDP as UDP},
    Uplink, NET_F_ICC, NET_F_INTERNAL, NET_F_MASQUERADE, TCP_ACK, TCP_SYN,
};

/// The container behind the published ports.
const ME: &str = "fd00:7::2";
const GW: &str = "fd00:7::1";
/// The host's IPv6 addresses.
const HOST6: &str = "2001:db8:7::7";
const HOST6_B: &str = "2001:db8:7::8";
const WORLD: &str = "2001:db8:5::9";
const MY_MAC: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x02];
const GW_MAC: [u8; 6] = [0x02, 0x42, 10, 7, 0, 1];
const WORLD_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x09];
const UP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x07];

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// Network fd00:7::/64, the loopback device as uplink and as ME's veth,
/// HOST6, HOST6_B and the gateway as the host's IPv6 addresses.
fn datapath(fs: &Bpffs, mode: HostRouting) -> Datapath {
    let mut dp = load(fs);
    let masq = NET_F_ICC | NET_F_MASQUERADE;
    network(&mut dp, 1, "10.7.0.0/24", [10, 7, 0, 1], masq);
    network6(&mut dp, 1, "fd00:7::/64", GW, masq);
    let up = Uplink {
        addr: addr_key([198, 51, 100, 7].into()),
        port_min: 40000,
        port_max: 40009,
    };
    dp.set_uplink_entry(LO_IFINDEX, up).unwrap();
    let mut ep = endpoint([10, 7, 0, 2], 1, masq, [10, 7, 0, 1]);
    ep.mac = MY_MAC;
    dp.set_endpoint(LO_IFINDEX, ep).unwrap();
    dp.set_endpoint6(LO_IFINDEX, endpoint6(ME, GW, GW_MAC))
        .unwrap();
    dp.set_host_addrs6(&[v6(HOST6), v6(HOST6_B), v6(GW)].into())
        .unwrap();
    dp.set_host_routing(mode).unwrap();
    dp
}

fn mapping(host: Option<&str>, host_port: u16, container_port: u16, proto: Proto) -> PortMapping {
    PortMapping {
        host_ip: Some(v6(host.unwrap_or("::")).into()),
        host_port,
        container_port,
        proto,
    }
}

fn l4(proto: u8, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    if proto == TCP {
        tcp(sport, dport, flags)
    } else {
        udp_with(sport, dport, b"sixteen bytes!!!")
    }
}

/// `src`:`sport` -> `dst`:`dport` (`flags` for TCP) between the world
/// and the uplink, checksum from scratch: as the world sends it when
/// `src` is WORLD (hop limit 64), as the host forwards it to the world
/// otherwise (63, from the bridge's MAC).
fn frame(src: &str, dst: &str, proto: u8, (sport, dport): (u16, u16), flags: u8) -> Vec<u8> {
    let p = Pkt6::new(src, dst, proto, l4(proto, sport, dport, flags));
    if src == WORLD {
        p.link(UP_MAC, WORLD_MAC, 64).bytes()
    } else {
        p.link(WORLD_MAC, GW_MAC, 63).bytes()
    }
}

/// One step of a flow: the program, the frame sent, the frame as the
/// program must leave it (verdict TC_ACT_OK), the step's name.
type Step = (&'static str, Vec<u8>, Vec<u8>, String);

/// Runs the steps in order (each may need the state of the last).
fn steps(dp: &mut Datapath, steps: Vec<Step>) {
    for (prog, sent, want, what) in steps {
        let (v, out) = run_classifier(dp, prog, &sent);
        assert_eq!((v, out), (TC_ACT_OK, want), "{what}");
    }
}

#[test]
fn world_to_published_ipv6_port_is_translated_both_ways() {
    let fs = Bpffs::new("pub6-world");
    let mut dp = datapath(&fs, HostRouting::Kernel);
    let (syn, synack) = (TCP_SYN, TCP_SYN | TCP_ACK);
    for (proto, p) in [(TCP, Proto::Tcp), (UDP, Proto::Udp)] {
        dp.publish6(&mapping(None, 8080, 80, p), v6(ME)).unwrap();
        let (world, published, container) = ((50000, 8080), (50000, 80), (80, 50000));
        #[rustfmt::skip]
        let flow: Vec<Step> = vec![
            // The destination becomes ME:80, the world's address and port stay.
            (UPLINK_IN, frame(WORLD, HOST6, proto, world, syn),
                frame(WORLD, ME, proto, published, syn),
                format!("proto {proto}: translated frame (checksum included)")),
            // The reply leaves as HOST6:8080.
            (UPLINK_OUT, frame(ME, WORLD, proto, container, synack),
                frame(HOST6, WORLD, proto, (8080, 50000), synack),
                format!("proto {proto}: reply as the published port")),
            // The flow's next packet is translated as the first was.
            (UPLINK_IN, frame(WORLD, HOST6, proto, world, TCP_ACK),
                frame(WORLD, ME, proto, published, TCP_ACK),
                format!("proto {proto}: next packet translated")),
        ];
        steps(&mut dp, flow);
    }
}

#[test]
fn a_port_published_on_one_ipv6_address_is_not_translated_on_another() {
    let fs = Bpffs::new("pub6-addr");
    let mut dp = datapath(&fs, HostRouting::Kernel);
    dp.publish6(&mapping(Some(HOST6_B), 9090, 90, Proto::Tcp), v6(ME))
        .unwrap();
    let on_b = frame(WORLD, HOST6_B, TCP, (50001, 9090), TCP_SYN);
    let want = frame(WORLD, ME, TCP, (50001, 90), TCP_SYN);
    let mut cases: Vec<Step> = vec![(
        UPLINK_IN,
        on_b,
        want,
        "translated on its own address".into(),
    )];
    for (dst, proto, sport, what) in [
        (HOST6, TCP, 50002, "another host address"),
        ("2001:db8:7::99", TCP, 50003, "not a host address at all"),
        (HOST6_B, UDP, 50004, "another protocol on the port"),
    ] {
        let other = frame(WORLD, dst, proto, (sport, 9090), TCP_SYN);
        cases.push((
            UPLINK_IN,
            other.clone(),
            other,
            format!("{what}: left as it was"),
        ));
    }
    steps(&mut dp, cases);
}

#[test]
fn with_ebpf_host_routing_the_translated_packet_goes_into_the_container() {
    let fs = Bpffs::new("pub6-peer");
    let mut dp = datapath(&fs, HostRouting::Ebpf);
    dp.publish6(&mapping(None, 8080, 80, Proto::Tcp), v6(ME))
        .unwrap();
    let sent = frame(WORLD, HOST6, TCP, (50000, 8080), TCP_SYN);
    let (v, out) = run_classifier(&mut dp, UPLINK_IN, &sent);
    assert_eq!(v, TC_ACT_REDIRECT);
    // Hop limit 63, the container's MAC from the bridge's.
    let want = Pkt6::tcp(WORLD, ME, 50000, 80, TCP_SYN).link(MY_MAC, GW_MAC, 63);
    assert_eq!(out, want.bytes(), "delivered frame");
}

// ------------------------------------------ extension headers, fragments

/// A UDP datagram's first fragment: the UDP header (length and checksum
/// as if the datagram were these 32 bytes) and 24 bytes of data.
fn first_fragment(src: &str, dst: &str, (sport, dport): (u16, u16), id: u32) -> Pkt6 {
    Pkt6::new(src, dst, UDP, udp_with(sport, dport, &[0x5a; 24]))
        .fragment(0, true, id)
        .link(UP_MAC, WORLD_MAC, 64)
}

/// A later fragment (offset 32 bytes, the last) of datagram `id`: data
/// only, no UDP header. The frame as sent; the program may change nothing
/// but the destination address.
fn later_fragment(src: &str, dst: &str, id: u32) -> Vec<u8> {
    // Fewer than 8 bytes: the builder fills no checksum into data.
    Pkt6::new(src, dst, UDP, vec![0x77; 7])
        .fragment(4, false, id)
        .link(UP_MAC, WORLD_MAC, 64)
        .bytes()
}

/// `frame` with its IPv6 destination address replaced.
fn with_dst(frame: &[u8], dst: &str) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[38..54].copy_from_slice(&v6(dst).octets());
    f
}

#[test]
fn extension_headers_and_fragments_to_a_published_ipv6_port_are_translated() {
    let fs = Bpffs::new("pub6-ext");
    let mut dp = datapath(&fs, HostRouting::Kernel);
    dp.publish6(&mapping(None, 8080, 80, Proto::Udp), v6(ME))
        .unwrap();
    dp.publish6(&mapping(None, 8080, 80, Proto::Tcp), v6(ME))
        .unwrap();

    // Behind a destination options header (and hop-by-hop options): the
    // ports and checksum are found at the upper-layer header's offset.
    for (proto, sport) in [(UDP, 50010), (TCP, 50011)] {
        let sent = Pkt6::new(WORLD, HOST6, proto, l4(proto, sport, 8080, TCP_SYN))
            .opts(HOPOPTS, 1)
            .opts(DSTOPTS, 2)
            .link(UP_MAC, WORLD_MAC, 64);
        let want = Pkt6::new(WORLD, ME, proto, l4(proto, sport, 80, TCP_SYN))
            .opts(HOPOPTS, 1)
            .opts(DSTOPTS, 2)
            .link(UP_MAC, WORLD_MAC, 64);
        let (v, out) = run_classifier(&mut dp, UPLINK_IN, &sent.bytes());
        assert_eq!(
            (v, &out),
            (TC_ACT_OK, &want.bytes()),
            "proto {proto} behind options headers"
        );
        let seen = verify6(&out);
        assert_eq!((seen.dst, seen.dport), (v6(ME), 80), "proto {proto}");
    }

    // The first fragment carries the ports: translated (checksum over the
    // new pseudo header and port) and remembered.
    let id = 0x1234_5678;
    let first = first_fragment(WORLD, HOST6, (50012, 8080), id);
    let want = first_fragment(WORLD, ME, (50012, 80), id);
    let (v, out) = run_classifier(&mut dp, UPLINK_IN, &first.bytes());
    assert_eq!((v, out), (TC_ACT_OK, want.bytes()), "first fragment");

    // A later fragment follows it to the container, its data untouched.
    let later = later_fragment(WORLD, HOST6, id);
    let (v, out) = run_classifier(&mut dp, UPLINK_IN, &later);
    assert_eq!(
        (v, out),
        (TC_ACT_OK, with_dst(&later, ME)),
        "later fragment"
    );
    // Another datagram's (another id, another source) is left alone.
    for (src, id, what) in [
        (WORLD, id + 1, "another id"),
        ("2001:db8:5::10", id, "another source"),
    ] {
        let other = later_fragment(src, HOST6, id);
        let (v, out) = run_classifier(&mut dp, UPLINK_IN, &other);
        assert_eq!((v, out), (TC_ACT_OK, other), "later fragment of {what}");
    }
    // The reply of the fragmented flow leaves as the published port.
    let reply = frame(ME, WORLD, UDP, (80, 50012), 0);
    let (v, out) = run_classifier(&mut dp, UPLINK_OUT, &reply);
    assert_eq!(
        (v, out),
        (TC_ACT_OK, frame(HOST6, WORLD, UDP, (8080, 50012), 0)),
        "reply of the fragmented flow"
    );
}

/// `frame` (a later fragment sent to HOST6) as delivered into ME's netns:
/// ME as destination, ME's MAC from the bridge's, one hop less.
fn into_me(frame: &[u8]) -> Vec<u8> {
    let mut f = with_dst(frame, ME);
    f[..6].copy_from_slice(&MY_MAC);
    f[6..12].copy_from_slice(&GW_MAC);
    f[21] -= 1;
    f
}

#[test]
fn with_ebpf_host_routing_options_and_fragments_go_into_the_container() {
    let fs = Bpffs::new("pub6-ext-peer");
    let mut dp = datapath(&fs, HostRouting::Ebpf);
    dp.publish6(&mapping(None, 8080, 80, Proto::Udp), v6(ME))
        .unwrap();
    let sent = Pkt6::udp(WORLD, HOST6, 50020, 8080)
        .opts(DSTOPTS, 1)
        .link(UP_MAC, WORLD_MAC, 64);
    let (v, out) = run_classifier(&mut dp, UPLINK_IN, &sent.bytes());
    let want = Pkt6::udp(WORLD, ME, 50020, 80)
        .opts(DSTOPTS, 1)
        .link(MY_MAC, GW_MAC, 63);
    assert_eq!((v, out), (TC_ACT_REDIRECT, want.bytes()), "options header");

    // Fragments go in as unfragmented packets do, the later ones after
    // their first; none falls back to the stack.
    let id = 77;
    let (fallbacks, peer) = (counter(&dp, "fragment"), counter(&dp, "peer-routed"));
    let first = first_fragment(WORLD, HOST6, (50021, 8080), id);
    let (v, out) = run_classifier(&mut dp, UPLINK_IN, &first.bytes());
    let want = first_fragment(WORLD, ME, (50021, 80), id).link(MY_MAC, GW_MAC, 63);
    assert_eq!((v, out), (TC_ACT_REDIRECT, want.bytes()), "first fragment");
    let later = later_fragment(WORLD, HOST6, id);
    let (v, out) = run_classifier(&mut dp, UPLINK_IN, &later);
    assert_eq!(
        (v, out),
        (TC_ACT_REDIRECT, into_me(&later)),
        "later fragment"
    );
    // One that overtook its first (none seen) is not translated: the
    // host's, whose own datagram it may be.
    let stray = later_fragment(WORLD, HOST6, id + 1);
    let (v, out) = run_classifier(&mut dp, UPLINK_IN, &stray);
    assert_eq!(
        (v, out),
        (TC_ACT_OK, stray),
        "later fragment before its first"
    );
    assert_eq!(counter(&dp, "peer-routed") - peer, 2, "delivered");
    assert_eq!(counter(&dp, "fragment"), fallbacks, "no fragment fallback");

    // The container's fragmented reply leaves as the published address
    // and port, its later fragment (no ports) as its first (the network
    // has no IPv6 masquerade address here: nothing else would set it).
    let reply = first_fragment(ME, WORLD, (80, 50021), id + 2);
    let (v, out) = run_classifier(&mut dp, UPLINK_OUT, &reply.bytes());
    let want = first_fragment(HOST6, WORLD, (8080, 50021), id + 2);
    assert_eq!((v, out), (TC_ACT_OK, want.bytes()), "first reply fragment");
    let (v, out) = run_classifier(&mut dp, UPLINK_OUT, &later_fragment(ME, WORLD, id + 2));
    assert_eq!(
        (v, out),
        (TC_ACT_OK, later_fragment(HOST6, WORLD, id + 2)),
        "later reply fragment"
    );
    // Another datagram's (its first not seen) keeps the container's source.
    let other = later_fragment(ME, WORLD, id + 3);
    let (v, out) = run_classifier(&mut dp, UPLINK_OUT, &other);
    assert_eq!(
        (v, out),
        (TC_ACT_OK, other),
        "later fragment of another reply"
    );
}

// ------------------------------------------------- containers, hairpin

/// Another network's container, the client of the cross-network cases.
const OTHER: &str = "fd00:8::2";
const OTHER_GW: &str = "fd00:8::1";
const OTHER_MAC: [u8; 6] = [0x02, 0x42, 10, 8, 0, 2];
const OTHER_GW_MAC: [u8; 6] = [0x02, 0x42, 10, 8, 0, 1];
/// A made-up host veth for the endpoint that is not on lo at the time:
/// what the programs redirect to (test runs redirect nowhere).
const SPARE_IFINDEX: u32 = 999;

/// OTHER's network 2 (`flags`), and ME's port 80 published as 8080 (TCP).
fn other_network(dp: &mut Datapath, flags: u32) {
    network6(dp, 2, "fd00:8::/64", OTHER_GW, flags);
    network(dp, 2, "10.8.0.0/24", [10, 8, 0, 1], flags);
    dp.publish6(&mapping(None, 8080, 80, Proto::Tcp), v6(ME))
        .unwrap();
}

/// Puts the client OTHER (network 2, `flags`) or ME behind `ifindex`.
fn place(dp: &mut Datapath, ifindex: u32, who: &str, flags: u32) {
    let ep = if who == OTHER {
        let mut ep = endpoint([10, 8, 0, 2], 2, flags, [10, 8, 0, 1]);
        ep.mac = OTHER_MAC;
        dp.set_endpoint(ifindex, ep).unwrap();
        endpoint6(OTHER, OTHER_GW, OTHER_GW_MAC)
    } else {
        let mut ep = endpoint(
            [10, 7, 0, 2],
            1,
            NET_F_ICC | NET_F_MASQUERADE,
            [10, 7, 0, 1],
        );
        ep.mac = MY_MAC;
        dp.set_endpoint(ifindex, ep).unwrap();
        endpoint6(ME, GW, GW_MAC)
    };
    dp.set_endpoint6(ifindex, ep).unwrap();
}

/// A frame leaving container `src` (its MAC to its bridge's).
fn sent_by(src: &str, dst: &str, proto: u8, ports: (u16, u16), flags: u8) -> Vec<u8> {
    on_veth(src, false, (src, dst), proto, ports, flags)
}

/// A frame entering container `to` from its bridge (hop limit 64: the
/// programs redirect it from veth to veth, no router between).
fn received_by(to: &str, addrs: (&str, &str), proto: u8, ports: (u16, u16), flags: u8) -> Vec<u8> {
    on_veth(to, true, addrs, proto, ports, flags)
}

/// A frame on the veth of container `who`, entering it or leaving it.
fn on_veth(
    who: &str,
    entering: bool,
    (src, dst): (&str, &str),
    proto: u8,
    ports: (u16, u16),
    flags: u8,
) -> Vec<u8> {
    let (mac, gw_mac) = if who == OTHER {
        (OTHER_MAC, OTHER_GW_MAC)
    } else {
        (MY_MAC, GW_MAC)
    };
    let (dmac, smac) = if entering {
        (mac, gw_mac)
    } else {
        (gw_mac, mac)
    };
    Pkt6::new(src, dst, proto, l4(proto, ports.0, ports.1, flags))
        .link(dmac, smac, 64)
        .bytes()
}

fn run_ok(dp: &mut Datapath, prog: &str, sent: &[u8], verdict: u32, want: Vec<u8>, what: &str) {
    let (v, out) = run_classifier(dp, prog, sent);
    assert_eq!((v, &out), (verdict, &want), "{what}");
    verify6(&out);
}

#[test]
fn a_container_reaches_its_own_published_ipv6_port_through_a_host_address() {
    let fs = Bpffs::new("pub6-hairpin");
    let mut dp = datapath(&fs, HostRouting::Ebpf);
    let (synack, ack) = (TCP_SYN | TCP_ACK, TCP_ACK);
    for (proto, p) in [(TCP, Proto::Tcp), (UDP, Proto::Udp)] {
        dp.publish6(&mapping(None, 8080, 80, p), v6(ME)).unwrap();
        for (host, sport) in [(HOST6, 41000), (GW, 41001)] {
            let what = format!("proto {proto} ME -> [{host}]:8080");
            // In: the target (ME:80) sees its gateway, back on its own veth.
            run_ok(
                &mut dp,
                FROM_CONTAINER,
                &sent_by(ME, host, proto, (sport, 8080), TCP_SYN),
                TC_ACT_REDIRECT,
                received_by(ME, (GW, ME), proto, (sport, 80), TCP_SYN),
                &format!("{what}: request"),
            );
            // The reply to the gateway leaves as the address dialled.
            run_ok(
                &mut dp,
                FROM_CONTAINER,
                &sent_by(ME, GW, proto, (80, sport), synack),
                TC_ACT_REDIRECT,
                received_by(ME, (host, ME), proto, (8080, sport), synack),
                &format!("{what}: reply"),
            );
            // The next packet takes the tracked flow.
            run_ok(
                &mut dp,
                FROM_CONTAINER,
                &sent_by(ME, host, proto, (sport, 8080), ack),
                TC_ACT_REDIRECT,
                received_by(ME, (GW, ME), proto, (sport, 80), ack),
                &format!("{what}: next packet"),
            );
        }
    }
}

#[test]
fn another_networks_container_reaches_a_published_ipv6_port_as_itself() {
    let fs = Bpffs::new("pub6-cross");
    let mut dp = datapath(&fs, HostRouting::Kernel);
    let masq = NET_F_ICC | NET_F_MASQUERADE;
    other_network(&mut dp, masq);
    dp.publish6(&mapping(None, 8080, 80, Proto::Udp), v6(ME))
        .unwrap();
    for (proto, sport) in [(TCP, 42000), (UDP, 42001)] {
        let what = format!("proto {proto} OTHER -> [{HOST6}]:8080");
        // The request leaves OTHER's veth (on lo) for ME:80, from OTHER.
        place(&mut dp, LO_IFINDEX, OTHER, masq);
        place(&mut dp, SPARE_IFINDEX, ME, 0);
        let sent = sent_by(OTHER, HOST6, proto, (sport, 8080), TCP_SYN);
        let mut want = sent_by(OTHER, ME, proto, (sport, 80), TCP_SYN);
        run_ok(
            &mut dp,
            FROM_CONTAINER,
            &sent,
            TC_ACT_OK,
            want.clone(),
            &format!("{what}: request"),
        );
        // ME (now on lo) lets it in though it crosses networks; not so
        // another flow from OTHER to ME:80.
        place(&mut dp, LO_IFINDEX, ME, 0);
        place(&mut dp, SPARE_IFINDEX, OTHER, masq);
        want[0..12].copy_from_slice(&[MY_MAC, GW_MAC].concat());
        let (v, _) = run_classifier(&mut dp, TO_CONTAINER, &want);
        assert_eq!(v, TC_ACT_OK, "{what}: into the target");
        let direct = received_by(ME, (OTHER, ME), proto, (sport + 100, 80), TCP_SYN);
        assert_verdict(
            &mut dp,
            TO_CONTAINER,
            &direct,
            TC_ACT_SHOT,
            "network-isolation",
            &format!("{what}: a flow not through the published port"),
        );
        // The reply goes to OTHER's veth as HOST6:8080.
        run_ok(
            &mut dp,
            FROM_CONTAINER,
            &sent_by(ME, OTHER, proto, (80, sport), TCP_SYN | TCP_ACK),
            TC_ACT_REDIRECT,
            received_by(
                OTHER,
                (HOST6, OTHER),
                proto,
                (8080, sport),
                TCP_SYN | TCP_ACK,
            ),
            &format!("{what}: reply"),
        );
    }
}

#[test]
fn an_internal_networks_container_is_refused_a_published_ipv6_port() {
    let fs = Bpffs::new("pub6-internal");
    let mut dp = datapath(&fs, HostRouting::Ebpf);
    let internal = NET_F_INTERNAL | NET_F_ICC;
    other_network(&mut dp, internal);
    place(&mut dp, LO_IFINDEX, OTHER, internal);
    place(&mut dp, SPARE_IFINDEX, ME, 0);
    for dst in [HOST6, GW] {
        assert_verdict(
            &mut dp,
            FROM_CONTAINER,
            &sent_by(OTHER, dst, TCP, (43000, 8080), TCP_SYN),
            TC_ACT_SHOT,
            "internal-network",
            &format!("internal OTHER -> [{dst}]:8080"),
        );
    }
}

/// A fragment of UDP datagram `id` `src` -> `dst`: the first (with its UDP
/// header, `ports`) or, without ports, a later one (data only).
fn fragment_of(src: &str, dst: &str, ports: Option<(u16, u16)>, id: u32) -> Pkt6 {
    match ports {
        Some(ports) => first_fragment(src, dst, ports, id),
        None => Pkt6::new(src, dst, UDP, vec![0x77; 7]).fragment(4, false, id),
    }
}

/// `p` leaving OTHER's veth, and entering ME's from the bridge (kernel
/// host routing: the stack routed it, one hop less).
fn from_other(p: Pkt6) -> Vec<u8> {
    p.link(OTHER_GW_MAC, OTHER_MAC, 64).bytes()
}

fn into_me_routed(p: Pkt6) -> Vec<u8> {
    p.link(MY_MAC, GW_MAC, 63).bytes()
}

#[test]
fn with_kernel_routing_fragments_to_a_published_ipv6_port_enter_its_target() {
    let fs = Bpffs::new("pub6-frag-kernel");
    let mut dp = datapath(&fs, HostRouting::Kernel);
    let masq = NET_F_ICC | NET_F_MASQUERADE;
    other_network(&mut dp, masq);
    dp.publish6(&mapping(None, 8080, 80, Proto::Udp), v6(ME))
        .unwrap();
    place(&mut dp, LO_IFINDEX, OTHER, masq);
    place(&mut dp, SPARE_IFINDEX, ME, 0);
    // OTHER -> [HOST6]:8080 in two fragments: both leave OTHER's veth for
    // ME (the stack forwards them), the later one after its first.
    let id = 0x0bad_f00d;
    let (sport, first, later) = (42100, Some((42100, 8080)), None);
    for (ports, to_me, what) in [(first, Some((sport, 80)), "first"), (later, None, "later")] {
        let (v, out) = run_classifier(
            &mut dp,
            FROM_CONTAINER,
            &from_other(fragment_of(OTHER, HOST6, ports, id)),
        );
        let want = from_other(fragment_of(OTHER, ME, to_me, id));
        assert_eq!((v, out), (TC_ACT_OK, want), "{what} fragment to ME");
    }

    // At ME's veth both cross networks as the published flow's: the first
    // by its ports, the later one by its first's.
    place(&mut dp, LO_IFINDEX, ME, 0);
    place(&mut dp, SPARE_IFINDEX, OTHER, masq);
    for (ports, what) in [(Some((sport, 80)), "first"), (None, "later")] {
        assert_verdict(
            &mut dp,
            TO_CONTAINER,
            &into_me_routed(fragment_of(OTHER, ME, ports, id)),
            TC_ACT_OK,
            "network-isolation",
            &format!("{what} fragment into the target"),
        );
    }
    // Not a later fragment of another datagram (its first was not sent to
    // the published port), nor one from another container of OTHER's
    // network with the same id.
    for (src, id, what) in [
        (OTHER, id + 1, "another datagram"),
        ("fd00:8::3", id, "another sender"),
    ] {
        assert_verdict(
            &mut dp,
            TO_CONTAINER,
            &into_me_routed(fragment_of(src, ME, None, id)),
            TC_ACT_SHOT,
            "network-isolation",
            &format!("later fragment of {what}"),
        );
    }
}
